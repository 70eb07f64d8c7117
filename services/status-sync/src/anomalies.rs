//! R5, anomalies: while the integration is on, shipment instructions must not also be
//! registered in the WMS by CSV or by hand, and cancellations must be made in the cart. wmslink
//! cannot stop either, so it reports them:
//!
//! | kind | suspected when |
//! | --- | --- |
//! | `NOT_SENT_BY_WMSLINK` | the WMS shows an order (not cancelled, updated in the sync period) whose number wmslink never sent ([`not_sent_by_wmslink`]), or a second WMS order with the number of one wmslink registered ([`registered_again`]) |
//! | `CANCELLED_UNREQUESTED` | a watched order turns up cancelled in the WMS while the cart never asked for it ([`cancelled_unrequested`]) |
//! | `MISSING_IN_WMS` | a watched order is absent from the answer to an `order_no-in` search ([`missing_in_wms`]) |
//! | `REGISTERED_OUTSIDE_WMSLINK` | the WMS shows an order (not cancelled, updated in the sync period) with the number of an order the cart sent that wmslink had not registered: not sent, queued, being sent, error, cancelled before sending ([`registered_outside`]) |
//!
//! A suspect is found while a WMS answer is reviewed (`review.rs` walks the answer and asks
//! the rules here), kept in `anomaly_candidates`, and after the grace time re-checked against
//! the watch list without another WMS call ([`still_holds`], [`settle_suspects`]): the
//! dispatcher's events may have explained it meanwhile. What still holds is recorded once and
//! published on `wms.{shop}.anomaly`.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use uuid::Uuid;
use wmslink_platform::nats::Subjects;
use wmslink_platform::shop::ShopId;
use wmslink_proto::sync::v1::{AnomalyKind, WmsAnomaly};
use wmslink_wms_client::port::WmsOrder;

use wmslink_proto::to_timestamp as timestamp;

use crate::events;
use crate::model::{Observation, Period, WatchRow};
use crate::store::Store;

/// Something that looks like an anomaly; reported if it still holds after the grace time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub kind: AnomalyKind,
    pub order_no: String,
    /// The WMS order concerned (ours for a missing one, 0 when unknown).
    pub wms_order_id: i64,
    pub wms_status_id: i32,
    pub wms_status_name: String,
    pub detail: String,
}

/// A stored anomaly, as listed and as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnomalyRecord {
    pub anomaly_id: Uuid,
    pub shop_id: String,
    pub kind: AnomalyKind,
    pub order_no: String,
    pub wms_order_id: i64,
    pub wms_status_id: i32,
    pub wms_status_name: String,
    pub detail: String,
    pub detected_at: DateTime<Utc>,
    pub run_id: Uuid,
}

impl AnomalyRecord {
    pub fn to_proto(&self) -> WmsAnomaly {
        WmsAnomaly {
            event_id: self.anomaly_id.to_string(),
            shop_id: self.shop_id.clone(),
            order_no: self.order_no.clone(),
            kind: self.kind.into(),
            wms_order_id: self.wms_order_id,
            detail: self.detail.clone(),
            detected_at: Some(timestamp(self.detected_at)),
            wms_status_id: self.wms_status_id,
            wms_status_name: self.wms_status_name.clone(),
            run_id: self.run_id.to_string(),
        }
    }
}

/// The short name a kind is stored under (`MISSING_IN_WMS`, …).
pub fn kind_key(kind: AnomalyKind) -> &'static str {
    let name = kind.as_str_name();
    name.strip_prefix("ANOMALY_KIND_").unwrap_or(name)
}

pub fn kind_from_key(key: &str) -> AnomalyKind {
    AnomalyKind::from_str_name(&format!("ANOMALY_KIND_{key}")).unwrap_or(AnomalyKind::Unspecified)
}

/// A WMS order whose number wmslink never sent: a suspect unless it is cancelled or was last
/// updated before the sync period (the WMS search cannot filter by order date).
pub fn not_sent_by_wmslink(order: &WmsOrder, period: &Period) -> Option<Candidate> {
    let in_period = order.updated_at >= period.from;
    (!order.cancelled && in_period).then(|| {
        candidate(
            AnomalyKind::NotSentByWmslink,
            order,
            format!(
                "WMS order #{} with order number {} was not registered by wmslink \
                 (status {} {}); registered by CSV or by hand?",
                order.order_id, order.order_no, order.status_id, order.status_name
            ),
        )
    })
}

/// Another WMS order than ours with the number of an order wmslink registered: a suspect
/// unless it is cancelled.
pub fn registered_again(row: &WatchRow, other: &WmsOrder) -> Option<Candidate> {
    (!other.cancelled).then(|| {
        candidate(
            AnomalyKind::NotSentByWmslink,
            other,
            format!(
                "WMS order #{} has the order number {} of wmslink's WMS order #{} \
                 (status {} {}): registered a second time by CSV or by hand?",
                other.order_id,
                other.order_no,
                row.wms_order_id,
                other.status_id,
                other.status_name
            ),
        )
    })
}

/// A WMS order carrying the number of an order the cart sent to wmslink that wmslink has not
/// registered (its shipment is not sent, queued, being sent, in error or cancelled before
/// sending): a suspect unless it is cancelled or was last updated before the sync period.
pub fn registered_outside(row: &WatchRow, order: &WmsOrder, period: &Period) -> Option<Candidate> {
    (!order.cancelled && order.updated_at >= period.from).then(|| {
        candidate(
            AnomalyKind::RegisteredOutsideWmslink,
            order,
            format!(
                "WMS order #{} carries the number of order {}, which wmslink had not registered \
                 (shipping status {}; WMS status {} {}): registered outside wmslink, by CSV or by \
                 hand? wmslink adopts it rather than sending it again",
                order.order_id,
                row.order_no,
                row.shipping_status,
                order.status_id,
                order.status_name
            ),
        )
    })
}

/// Our WMS order seen cancelled for the first time while the cart never asked for it (its
/// shipping status is neither `CANCEL_REQUESTED` nor `CANCELLED`).
pub fn cancelled_unrequested(
    row: &WatchRow,
    ours: &WmsOrder,
    observation: &Observation,
) -> Option<Candidate> {
    let was_cancelled = row.last.as_ref().is_some_and(|last| last.cancelled);
    (observation.cancelled && !was_cancelled && !row.cancellation_requested()).then(|| {
        candidate(
            AnomalyKind::CancelledUnrequested,
            ours,
            format!(
                "the WMS shows order {} (WMS order #{}) cancelled, but wmslink never \
                 requested it (shipping status {}); cancel in the cart, not in the WMS",
                row.order_no, ours.order_id, row.shipping_status
            ),
        )
    })
}

/// A watched order asked for by number and not in the answer as our WMS order; `others` are
/// the WMS orders the answer holds with its number.
pub fn missing_in_wms(row: &WatchRow, others: &[&WmsOrder]) -> Candidate {
    let detail = if others.is_empty() {
        format!(
            "the WMS no longer knows order {} (WMS order #{}, shipping status {}): \
             absent from an order_no search",
            row.order_no, row.wms_order_id, row.shipping_status
        )
    } else {
        let ids: Vec<String> = others.iter().map(|o| format!("#{}", o.order_id)).collect();
        format!(
            "the WMS no longer knows order {} as WMS order #{} (shipping status {}); \
             it knows only {}",
            row.order_no,
            row.wms_order_id,
            row.shipping_status,
            ids.join(", ")
        )
    };
    Candidate {
        kind: AnomalyKind::MissingInWms,
        order_no: row.order_no.clone(),
        wms_order_id: row.wms_order_id,
        wms_status_id: 0,
        wms_status_name: String::new(),
        detail,
    }
}

fn candidate(kind: AnomalyKind, order: &WmsOrder, detail: String) -> Candidate {
    Candidate {
        kind,
        order_no: order.order_no.clone(),
        wms_order_id: order.order_id,
        wms_status_id: order.status_id,
        wms_status_name: order.status_name.clone(),
        detail,
    }
}

/// Whether a suspect first seen at `suspected_at` is still an anomaly, given the stored row of
/// its order number now (an event of the dispatcher may have explained it meanwhile).
pub fn still_holds(
    kind: AnomalyKind,
    wms_order_id: i64,
    row: Option<&WatchRow>,
    suspected_at: DateTime<Utc>,
) -> bool {
    match kind {
        // Unknown then, and still not ours now.
        AnomalyKind::NotSentByWmslink => {
            row.is_none_or(|row| row.wms_order_id != 0 && row.wms_order_id != wms_order_id)
        }
        // Not asked for then, and not since: the dispatcher reports the WMS's cancellation as
        // CANCELLED too, with its flag saying nobody asked.
        AnomalyKind::CancelledUnrequested => {
            row.is_some_and(|row| row.cancelled_unrequested || !row.cancellation_requested())
        }
        // Still not registered by wmslink (and not being sent), adopted by the dispatcher as
        // registered outside wmslink, or wmslink registered another WMS order for it. Not when
        // the dispatcher registered that very WMS order itself (its send was in flight).
        // A shipment the dispatcher sent with an unknown outcome (possibly in the WMS, e.g. an
        // ERROR after its bounded searches) may be wmslink's own, applied late: not reported.
        AnomalyKind::RegisteredOutsideWmslink => row.is_none_or(|row| {
            row.registered_outside
                || (row.wms_order_id == 0
                    && row.shipping_status != "SENDING"
                    && !row.possibly_in_wms)
                || (row.wms_order_id != 0 && row.wms_order_id != wms_order_id)
        }),
        AnomalyKind::MissingInWms => row.is_some_and(|row| {
            row.shipping_status != "CANCELLED"
                && !row.before_registration()
                && row.seen_in_wms_at.is_none_or(|at| at < suspected_at)
        }),
        AnomalyKind::Unspecified => false,
    }
}

/// The shop's suspects past the grace time: each one that still holds is recorded as an
/// anomaly of `run_id` and published (once), every one is dropped. Returns how many anomalies
/// were new.
pub async fn settle_suspects(
    store: &Store,
    subjects: &Subjects,
    shop_id: &ShopId,
    grace: Duration,
    run_id: Uuid,
) -> Result<u64, sqlx::Error> {
    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::zero());
    let shop = shop_id.as_str();
    let suspects = store.ripe_suspects(shop, Utc::now() - grace).await?;
    if suspects.is_empty() {
        return Ok(0);
    }
    let mut order_nos: Vec<String> = suspects
        .iter()
        .map(|s| s.candidate.order_no.clone())
        .collect();
    order_nos.sort();
    order_nos.dedup();
    let rows: HashMap<_, _> = store.rows_for(shop, &order_nos).await?;
    let mut recorded_anomalies = 0;
    for suspect in &suspects {
        let candidate = &suspect.candidate;
        let holds = still_holds(
            candidate.kind,
            candidate.wms_order_id,
            rows.get(&candidate.order_no),
            suspect.first_seen_at,
        );
        let anomaly = holds.then(|| {
            let record = AnomalyRecord {
                anomaly_id: Uuid::now_v7(),
                shop_id: shop.to_owned(),
                kind: candidate.kind,
                order_no: candidate.order_no.clone(),
                wms_order_id: candidate.wms_order_id,
                wms_status_id: candidate.wms_status_id,
                wms_status_name: candidate.wms_status_name.clone(),
                detail: candidate.detail.clone(),
                // As PostgreSQL stores it, so the event and the listing agree.
                detected_at: Utc::now().trunc_subsecs(6),
                run_id,
            };
            let message = events::anomaly_message(subjects, shop_id, &record);
            (record, message)
        });
        let recorded = store
            .settle_suspect(
                shop,
                candidate,
                anomaly.as_ref().map(|(r, m)| (r, m.clone())),
            )
            .await?;
        if recorded {
            recorded_anomalies += 1;
            tracing::warn!(
                kind = candidate.kind.as_str_name(),
                order_no = %candidate.order_no,
                wms_order_id = candidate.wms_order_id,
                "anomaly: {}",
                candidate.detail
            );
        }
    }
    Ok(recorded_anomalies)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::fixtures::{ctx, now, row, rows, wms};
    use crate::review::{Search, review};

    #[test]
    fn anomaly_kinds_round_trip_short_names() {
        assert_eq!(kind_key(AnomalyKind::MissingInWms), "MISSING_IN_WMS");
        assert_eq!(
            kind_from_key("NOT_SENT_BY_WMSLINK"),
            AnomalyKind::NotSentByWmslink
        );
        for kind in [
            AnomalyKind::NotSentByWmslink,
            AnomalyKind::CancelledUnrequested,
            AnomalyKind::MissingInWms,
            AnomalyKind::RegisteredOutsideWmslink,
        ] {
            assert_eq!(kind_from_key(kind_key(kind)), kind);
        }
    }

    #[test]
    fn unknown_orders_are_suspects_unless_cancelled_or_old() {
        let stranger = wms("CSV-1", 99, 50);
        let mut cancelled = wms("CSV-2", 98, 50);
        cancelled.cancelled = true;
        let mut old = wms("CSV-3", 97, 50);
        old.updated_at = now() - chrono::Duration::days(40);
        let out = review(
            &rows(vec![]),
            &[stranger, cancelled, old],
            Search::UpdatedSince,
            &ctx(),
        );
        assert_eq!(out.candidates.len(), 1);
        let found = &out.candidates[0];
        assert_eq!(found.kind, AnomalyKind::NotSentByWmslink);
        assert_eq!((found.order_no.as_str(), found.wms_order_id), ("CSV-1", 99));
        assert!(found.detail.contains("CSV-1"));
    }

    #[test]
    fn known_orders_are_never_orders_wmslink_never_sent() {
        let list = rows(vec![
            row("C", 11, "CANCELLED"),
            row("Q", 0, "SENDING"),
            row("E", 0, "ERROR"),
        ]);
        let orders = [wms("C", 11, 50), wms("Q", 12, 50), wms("E", 13, 50)];
        let out = review(&list, &orders, Search::UpdatedSince, &ctx());
        assert!(out.seen.is_empty(), "not watched: nothing to publish");
        // Not registered by wmslink yet: suspected of being registered outside wmslink.
        let suspects: Vec<(AnomalyKind, &str)> = out
            .candidates
            .iter()
            .map(|c| (c.kind, c.order_no.as_str()))
            .collect();
        assert_eq!(
            suspects,
            vec![
                (AnomalyKind::RegisteredOutsideWmslink, "E"),
                (AnomalyKind::RegisteredOutsideWmslink, "Q"),
            ]
        );
        // After the grace time: still in error, it holds; still being sent, it may be ours.
        assert!(still_holds(
            AnomalyKind::RegisteredOutsideWmslink,
            13,
            list.get("E"),
            now()
        ));
        assert!(!still_holds(
            AnomalyKind::RegisteredOutsideWmslink,
            12,
            list.get("Q"),
            now()
        ));
        // In error after a send with an unknown outcome: it may be wmslink's own, applied late.
        let mut in_doubt = row("E", 0, "ERROR");
        in_doubt.possibly_in_wms = true;
        assert!(!still_holds(
            AnomalyKind::RegisteredOutsideWmslink,
            13,
            Some(&in_doubt),
            now()
        ));
        // Registered by the dispatcher itself meanwhile: not an anomaly; adopted after a
        // duplicate: it is.
        let mut sent = row("Q", 12, "SENT");
        assert!(!still_holds(
            AnomalyKind::RegisteredOutsideWmslink,
            12,
            Some(&sent),
            now()
        ));
        sent.registered_outside = true;
        assert!(still_holds(
            AnomalyKind::RegisteredOutsideWmslink,
            12,
            Some(&sent),
            now()
        ));
    }

    #[test]
    fn a_second_wms_order_with_our_number_is_a_suspect() {
        let out = review(
            &rows(vec![row("A", 10, "SENT")]),
            &[wms("A", 10, 50), wms("A", 55, 50)],
            Search::UpdatedSince,
            &ctx(),
        );
        assert_eq!(out.seen.len(), 1);
        assert_eq!(out.seen[0].observation.wms_order_id, 10);
        assert_eq!(out.candidates.len(), 1);
        assert_eq!(out.candidates[0].kind, AnomalyKind::NotSentByWmslink);
        assert_eq!(out.candidates[0].wms_order_id, 55);
    }

    #[test]
    fn unrequested_cancellation_is_a_suspect_once() {
        let mut cancelled = wms("A", 10, 50);
        cancelled.cancelled = true;
        let sent = row("A", 10, "SENT");
        let out = review(
            &rows(vec![sent.clone()]),
            &[cancelled.clone()],
            Search::UpdatedSince,
            &ctx(),
        );
        assert_eq!(out.candidates.len(), 1);
        assert_eq!(out.candidates[0].kind, AnomalyKind::CancelledUnrequested);
        assert!(out.seen[0].changed, "the cancellation is published too");

        let mut seen_before = sent.clone();
        seen_before.last = Some(out.seen[0].observation.clone());
        let again = review(
            &rows(vec![seen_before]),
            &[cancelled.clone()],
            Search::UpdatedSince,
            &ctx(),
        );
        assert!(again.candidates.is_empty(), "already seen cancelled");

        let requested = review(
            &rows(vec![row("A", 10, "CANCEL_REQUESTED")]),
            std::slice::from_ref(&cancelled),
            Search::UpdatedSince,
            &ctx(),
        );
        assert!(requested.candidates.is_empty(), "the cart asked for it");
        let rejected = review(
            &rows(vec![row("A", 10, "CANCEL_REJECTED")]),
            &[cancelled],
            Search::UpdatedSince,
            &ctx(),
        );
        assert_eq!(
            rejected.candidates.len(),
            1,
            "the cart's cancel was refused; the WMS cancelled anyway"
        );
    }

    #[test]
    fn absent_from_an_order_no_answer_is_missing() {
        let asked = vec!["A".to_owned(), "B".to_owned(), "C".to_owned()];
        let mut old = row("C", 30, "SENT");
        old.order_date = now() - chrono::Duration::days(45);
        let list = rows(vec![row("A", 10, "SENT"), row("B", 20, "SENT"), old]);
        let out = review(
            &list,
            &[wms("A", 10, 50), wms("B", 21, 50)],
            Search::OrderNos(&asked),
            &ctx(),
        );
        assert_eq!(out.seen.len(), 1);
        let missing: Vec<_> = out
            .candidates
            .iter()
            .filter(|c| c.kind == AnomalyKind::MissingInWms)
            .collect();
        assert_eq!(missing.len(), 1, "{:?}", out.candidates);
        assert_eq!(missing[0].order_no, "B");
        assert!(missing[0].detail.contains("#21"));
    }

    #[test]
    fn suspects_explained_meanwhile_are_dropped() {
        let at = now();
        assert!(still_holds(AnomalyKind::NotSentByWmslink, 99, None, at));
        let queued = row("CSV-1", 0, "QUEUED");
        assert!(!still_holds(
            AnomalyKind::NotSentByWmslink,
            99,
            Some(&queued),
            at
        ));
        let ours = row("CSV-1", 99, "SENT");
        assert!(!still_holds(
            AnomalyKind::NotSentByWmslink,
            99,
            Some(&ours),
            at
        ));
        let other = row("CSV-1", 10, "SENT");
        assert!(still_holds(
            AnomalyKind::NotSentByWmslink,
            99,
            Some(&other),
            at
        ));

        let sent = row("A", 10, "SENT");
        assert!(still_holds(
            AnomalyKind::CancelledUnrequested,
            10,
            Some(&sent),
            at
        ));
        let requested = row("A", 10, "CANCEL_REQUESTED");
        assert!(!still_holds(
            AnomalyKind::CancelledUnrequested,
            10,
            Some(&requested),
            at
        ));
        let mut applied = row("A", 10, "CANCELLED");
        assert!(!still_holds(
            AnomalyKind::CancelledUnrequested,
            10,
            Some(&applied),
            at
        ));
        applied.cancelled_unrequested = true;
        assert!(still_holds(
            AnomalyKind::CancelledUnrequested,
            10,
            Some(&applied),
            at
        ));

        assert!(still_holds(AnomalyKind::MissingInWms, 10, Some(&sent), at));
        let mut seen_since = sent.clone();
        seen_since.seen_in_wms_at = Some(at + chrono::Duration::seconds(1));
        assert!(!still_holds(
            AnomalyKind::MissingInWms,
            10,
            Some(&seen_since),
            at
        ));
        let cancelled = row("A", 10, "CANCELLED");
        assert!(!still_holds(
            AnomalyKind::MissingInWms,
            10,
            Some(&cancelled),
            at
        ));
        assert!(!still_holds(AnomalyKind::MissingInWms, 10, None, at));
    }
}
