//! What one WMS answer means for the watch list: which watched orders changed (to publish on
//! `wms.{shop}.observed`), and which anomalies it suggests (the R5 rules are in
//! `anomalies.rs`; this walks the answer and asks them). Pure: the runner loads the rows,
//! calls the WMS, and stores what this decides.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use wmslink_wms_client::port::WmsOrder;

use crate::anomalies::{self, Candidate};
use crate::model::{Observation, Period, WatchRow};

/// How the answer was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Search<'a> {
    /// What changed since a time: any order of the shop may come back; unknown ones are
    /// suspects.
    UpdatedSince,
    /// A look-up of these watched order numbers: one absent is a suspect.
    OrderNos(&'a [String]),
}

#[derive(Debug, Clone)]
pub struct ReviewContext {
    pub now: DateTime<Utc>,
    pub period: Period,
    pub shipped_watch: Duration,
    /// Multi-channel WMS accounts: only WMS orders whose number starts with it are the shop's
    /// ("": all); another channel's order is never an anomaly of this shop.
    pub wms_order_no_prefix: String,
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
            if !order_no.starts_with(ctx.wms_order_no_prefix.as_str()) {
                // Another sales channel's order in a shared WMS account.
                continue;
            }
            out.candidates.extend(
                group
                    .iter()
                    .filter_map(|order| anomalies::not_sent_by_wmslink(order, &ctx.period)),
            );
            continue;
        };
        if row.wms_order_id == 0
            && (row.before_registration() || row.shipping_status == "CANCELLED")
        {
            // wmslink has not registered it (or is registering it right now): a WMS order with
            // its number is suspected of being registered outside wmslink. After the grace time
            // it still holds unless the dispatcher registered that WMS order itself.
            out.candidates.extend(
                group
                    .iter()
                    .filter_map(|order| anomalies::registered_outside(row, order, &ctx.period)),
            );
            continue;
        }
        let ours = pick_ours(row, group);
        // R5/R3: another WMS order with the number of one wmslink registered, whether or not
        // ours is in the same answer (an update_date search may return only the new one).
        let ours_id = ours.map_or(row.wms_order_id, |o| o.order_id);
        if ours_id != 0 {
            out.candidates.extend(
                group
                    .iter()
                    .filter(|o| o.order_id != ours_id)
                    .filter_map(|other| anomalies::registered_again(row, other)),
            );
        }
        let Some(ours) = ours else {
            continue;
        };
        let observation = Observation::from_wms(ours);
        // A WMS-side cancellation is reported wherever the search saw it, even for an order
        // outside the sync period or no longer watched.
        out.candidates
            .extend(anomalies::cancelled_unrequested(row, ours, &observation));
        if !(row.is_watched(ctx.now, ctx.shipped_watch) && ctx.period.contains(row.order_date)) {
            continue;
        }
        found.insert(row.order_no.as_str());
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
            let others = groups
                .get(order_no.as_str())
                .map(Vec::as_slice)
                .unwrap_or_default();
            out.candidates.push(anomalies::missing_in_wms(row, others));
        }
    }
    out
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::fixtures::{ctx, now, row, rows, wms};
    use wmslink_wms_client::port::CarrierStatus;

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
