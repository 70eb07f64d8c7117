//! What one WMS answer means for the watch list: which watched orders changed, and which
//! anomalies it suggests (R5). Pure: the runner loads the rows, calls the WMS, and stores what
//! this decides.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use wmslink_proto::sync::v1::AnomalyKind;
use wmslink_wms_client::port::WmsOrder;

use crate::model::{Candidate, Observation, Period, WatchRow};

/// How the answer was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Search<'a> {
    /// What changed since a time: any order of the shop may come back; unknown ones are
    /// suspects.
    UpdatedSince,
    /// A look-up of these watched order numbers: one absent is a suspect.
    OrderNos(&'a [String]),
}

#[derive(Debug, Clone, Copy)]
pub struct ReviewContext {
    pub now: DateTime<Utc>,
    pub period: Period,
    pub shipped_watch: Duration,
}

/// A watched order in the period as the WMS showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub order_no: String,
    pub observation: Observation,
    /// Different from the last observation (or the first one): to publish.
    pub changed: bool,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Review {
    pub seen: Vec<Seen>,
    pub candidates: Vec<Candidate>,
}

impl Review {
    pub fn changed(&self) -> impl Iterator<Item = &Seen> {
        self.seen.iter().filter(|seen| seen.changed)
    }
}

/// Reviews one WMS answer. `rows` holds the stored rows of (at least) every order number in
/// `orders` and in the asked list, watched or not.
pub fn review(
    rows: &HashMap<String, WatchRow>,
    orders: &[WmsOrder],
    search: Search<'_>,
    ctx: &ReviewContext,
) -> Review {
    let asked: Option<BTreeSet<&str>> = match search {
        Search::OrderNos(asked) => Some(asked.iter().map(String::as_str).collect()),
        Search::UpdatedSince => None,
    };
    let mut groups: BTreeMap<&str, Vec<&WmsOrder>> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for order in orders {
        // A look-up answer holds only what was asked; anything else is ignored.
        if asked
            .as_ref()
            .is_some_and(|asked| !asked.contains(order.order_no.as_str()))
        {
            continue;
        }
        // The same WMS order twice (paging while the WMS changes) counts once.
        if ids.insert(order.order_id) {
            groups
                .entry(order.order_no.as_str())
                .or_default()
                .push(order);
        }
    }

    let mut out = Review::default();
    let mut found = BTreeSet::new();
    for (order_no, group) in &groups {
        let Some(row) = rows.get(*order_no) else {
            for order in group {
                let in_period = order.updated_at >= ctx.period.from;
                if !order.cancelled && in_period {
                    out.candidates.push(candidate(
                        AnomalyKind::NotSentByWmslink,
                        order,
                        format!(
                            "WMS order #{} with order number {} was not registered by wmslink \
                             (status {} {}); registered by CSV or by hand?",
                            order.order_id, order.order_no, order.status_id, order.status_name
                        ),
                    ));
                }
            }
            continue;
        };
        if row.wms_order_id == 0 && row.before_registration() {
            // The dispatcher is registering it right now; the WMS order is most likely ours.
            continue;
        }
        let ours = pick_ours(row, group);
        for other in group
            .iter()
            .filter(|o| Some(o.order_id) != ours.map(|o| o.order_id))
        {
            if !other.cancelled && ours.is_some() {
                out.candidates.push(candidate(
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
                ));
            }
        }
        let Some(ours) = ours else { continue };
        if !(row.is_watched(ctx.now, ctx.shipped_watch) && ctx.period.contains(row.order_date)) {
            continue;
        }
        found.insert(row.order_no.as_str());
        let observation = Observation::from_wms(ours);
        let was_cancelled = row.last.as_ref().is_some_and(|last| last.cancelled);
        if observation.cancelled && !was_cancelled && !row.cancellation_requested() {
            out.candidates.push(candidate(
                AnomalyKind::CancelledUnrequested,
                ours,
                format!(
                    "the WMS shows order {} (WMS order #{}) cancelled, but wmslink never \
                     requested it (shipping status {}); cancel in the cart, not in the WMS",
                    row.order_no, ours.order_id, row.shipping_status
                ),
            ));
        }
        let changed = row
            .last
            .as_ref()
            .is_none_or(|last| observation.differs_from(last));
        out.seen.push(Seen {
            order_no: row.order_no.clone(),
            observation,
            changed,
        });
    }

    if let Search::OrderNos(asked) = search {
        for order_no in asked {
            let Some(row) = rows.get(order_no) else {
                continue;
            };
            if found.contains(order_no.as_str())
                || !row.is_watched(ctx.now, ctx.shipped_watch)
                || !ctx.period.contains(row.order_date)
            {
                continue;
            }
            let others: Vec<String> = groups
                .get(order_no.as_str())
                .map(|group| group.iter().map(|o| format!("#{}", o.order_id)).collect())
                .unwrap_or_default();
            let detail = if others.is_empty() {
                format!(
                    "the WMS no longer knows order {} (WMS order #{}, shipping status {}): \
                     absent from an order_no search",
                    row.order_no, row.wms_order_id, row.shipping_status
                )
            } else {
                format!(
                    "the WMS no longer knows order {} as WMS order #{} (shipping status {}); \
                     it knows only {}",
                    row.order_no,
                    row.wms_order_id,
                    row.shipping_status,
                    others.join(", ")
                )
            };
            out.candidates.push(Candidate {
                kind: AnomalyKind::MissingInWms,
                order_no: row.order_no.clone(),
                wms_order_id: row.wms_order_id,
                wms_status_id: 0,
                wms_status_name: String::new(),
                detail,
            });
        }
    }
    out
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
        AnomalyKind::CancelledUnrequested => row.is_some_and(|row| !row.cancellation_requested()),
        AnomalyKind::MissingInWms => row.is_some_and(|row| {
            row.shipping_status != "CANCELLED"
                && !row.before_registration()
                && row.seen_in_wms_at.is_none_or(|at| at < suspected_at)
        }),
        AnomalyKind::Unspecified => false,
    }
}

/// Our WMS order among those with our order number: the one with our id; without an id, the
/// newest one not cancelled (else the newest).
fn pick_ours<'a>(row: &WatchRow, group: &[&'a WmsOrder]) -> Option<&'a WmsOrder> {
    if row.wms_order_id != 0 {
        return group
            .iter()
            .copied()
            .find(|o| o.order_id == row.wms_order_id);
    }
    group
        .iter()
        .copied()
        .filter(|o| !o.cancelled)
        .max_by_key(|o| o.order_id)
        .or_else(|| group.iter().copied().max_by_key(|o| o.order_id))
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::TimeZone;
    use wmslink_wms_client::port::CarrierStatus;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 3, 0, 0).unwrap()
    }

    fn ctx() -> ReviewContext {
        ReviewContext {
            now: now(),
            period: Period::last_days(now(), 30),
            shipped_watch: Duration::from_secs(14 * 86_400),
        }
    }

    fn wms(order_no: &str, order_id: i64, status_id: i32) -> WmsOrder {
        WmsOrder {
            order_id,
            order_no: order_no.into(),
            status_id,
            status_name: format!("status {status_id}"),
            cancelled: false,
            shipped: false,
            processing: false,
            carrier: None,
            tracking_code: None,
            shipping_date: None,
            updated_at: now() - chrono::Duration::hours(1),
        }
    }

    fn row(order_no: &str, wms_order_id: i64, status: &str) -> WatchRow {
        WatchRow {
            order_no: order_no.into(),
            wms_order_id,
            order_date: now() - chrono::Duration::days(2),
            shipping_status: status.into(),
            sequence: 3,
            shipped_at: None,
            last: None,
            seen_in_wms_at: None,
        }
    }

    fn rows(list: Vec<WatchRow>) -> HashMap<String, WatchRow> {
        list.into_iter().map(|r| (r.order_no.clone(), r)).collect()
    }

    #[test]
    fn first_sight_is_a_change_and_the_same_again_is_not() {
        let mut watched = row("A", 10, "SENT");
        let order = wms("A", 10, 50);
        let first = review(
            &rows(vec![watched.clone()]),
            std::slice::from_ref(&order),
            Search::UpdatedSince,
            &ctx(),
        );
        assert_eq!(first.seen.len(), 1);
        assert!(first.seen[0].changed);
        assert!(first.candidates.is_empty());

        watched.last = Some(first.seen[0].observation.clone());
        let mut touched = order.clone();
        touched.updated_at += chrono::Duration::minutes(5);
        let again = review(
            &rows(vec![watched.clone()]),
            &[touched],
            Search::UpdatedSince,
            &ctx(),
        );
        assert_eq!(again.seen.len(), 1);
        assert!(!again.seen[0].changed, "only the WMS's update time moved");

        let mut processing = order;
        processing.status_id = 20;
        processing.status_name = "処理中".into();
        processing.processing = true;
        let moved = review(
            &rows(vec![watched]),
            &[processing],
            Search::UpdatedSince,
            &ctx(),
        );
        assert!(moved.seen[0].changed);
        assert_eq!(moved.seen[0].observation.status_id, 20);
    }

    #[test]
    fn tracking_code_and_shipping_date_are_observed() {
        let mut shipped = wms("A", 10, 100);
        shipped.shipped = true;
        shipped.tracking_code = Some("1234-5678-9012".into());
        shipped.shipping_date = chrono::NaiveDate::from_ymd_opt(2026, 11, 27);
        shipped.carrier = Some(CarrierStatus {
            id: 5,
            name: "依頼受付".into(),
            is_final: false,
        });
        let out = review(
            &rows(vec![row("A", 10, "SENT")]),
            &[shipped],
            Search::UpdatedSince,
            &ctx(),
        );
        let seen = &out.seen[0].observation;
        assert!(seen.shipped);
        assert_eq!(seen.tracking_code, "1234-5678-9012");
        assert_eq!(seen.shipping_date, "2026-11-27");
        assert_eq!(seen.shipping_status_id, 5);
        assert_eq!(seen.shipping_status_name, "依頼受付");
        assert!(!seen.carrier_final);
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
    fn known_orders_are_never_suspects_even_when_not_watched() {
        let list = rows(vec![
            row("C", 11, "CANCELLED"),
            row("Q", 0, "SENDING"),
            row("E", 0, "ERROR"),
        ]);
        let orders = [wms("C", 11, 50), wms("Q", 12, 50), wms("E", 13, 50)];
        let out = review(&list, &orders, Search::UpdatedSince, &ctx());
        assert!(out.candidates.is_empty(), "{:?}", out.candidates);
        assert!(out.seen.is_empty(), "not watched: nothing to publish");
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
    fn an_order_no_answer_is_read_for_the_asked_numbers_only() {
        let asked = vec!["A".to_owned()];
        let out = review(
            &rows(vec![row("A", 10, "SENT")]),
            &[wms("A", 10, 50), wms("STRANGER", 77, 50)],
            Search::OrderNos(&asked),
            &ctx(),
        );
        assert_eq!(out.seen.len(), 1);
        assert!(out.candidates.is_empty(), "{:?}", out.candidates);
    }

    #[test]
    fn outside_the_period_nothing_is_published() {
        let mut old = row("A", 10, "SENT");
        old.order_date = now() - chrono::Duration::days(31);
        let out = review(
            &rows(vec![old]),
            &[wms("A", 10, 20)],
            Search::UpdatedSince,
            &ctx(),
        );
        assert!(out.seen.is_empty());
        assert!(out.candidates.is_empty());
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

    #[test]
    fn duplicate_rows_in_one_answer_count_once() {
        let order = wms("A", 10, 50);
        let out = review(
            &rows(vec![row("A", 10, "SENT")]),
            &[order.clone(), order],
            Search::UpdatedSince,
            &ctx(),
        );
        assert_eq!(out.seen.len(), 1);
        assert!(out.candidates.is_empty());
    }
}
