//! Settling a shipment in doubt (`SENDING`): what a registration answer, a failed call or a
//! search of the WMS means for it, and how the row changes. Pure: no I/O, no clock beyond the
//! state machine's; the sender's steps ([`crate::sender`]) do the calls and the commits.
//!
//! | what came back | decision | settles as |
//! | --- | --- | --- |
//! | a row registered with an `order_id` | [`of_registration`] | `Registered` → `SENT` |
//! | a row refused as already registered (the WMS's duplicate check) | [`of_registration`] | search first ([`RowAnswer::Search`]) |
//! | a row refused otherwise | [`of_registration`] | `Failed` → `ERROR` |
//! | a call whose answer was lost (timeout, reset, 5xx: may have been applied) | [`of_call_failure`] | `InDoubt`: stays `SENDING`, possibly in the WMS, searched later |
//! | a call refused as a whole with an `NG` (maintenance, busy, ...) | [`of_call_failure`] | `Requeue` → `QUEUED`, the shop backs off (never 200 rows to `ERROR`) |
//! | a batch refused whole with a 4xx and no `NG` (a proxy's 413 body limit) | [`of_call_failure`] | [`CallFailure::Split`]: sent again in halves until the refused row is alone |
//! | one row refused alone that way, or an invalid request | [`of_call_failure`] | `Failed` → `ERROR` |
//! | a call that was not applied (down, 429, 401, TLS, policy) | [`of_call_failure`] | `Requeue` → `QUEUED`, the shop backs off |
//! | a search found a live WMS order | [`of_search`] | `Registered` → `SENT` (the newest live one) |
//! | a search found only cancelled WMS orders | [`of_search`] | `AdoptCancelled` → `CANCELLED` (R3) |
//! | a search after an unknown outcome found nothing | [`of_search`] | `NotFound`: stays `SENDING` and is searched again later; after [`DoubtRules::max_searches`] misses `ERROR` (or `CANCELLED` when the cart cancelled it) |
//! | a search after `E_DUPLICATE` found nothing | [`of_search`] | `DuplicateNotFound` → `ERROR` (the WMS holds a live order we cannot find) |
//!
//! "Not found" is not "never applied": the WMS may apply a request after the client gave up.
//! So a shipment sent with an unknown outcome is searched only once its claim is older than
//! the WMS request timeout plus a margin ([`claim`], [`DoubtRules`]), a miss keeps it in
//! doubt, and it stays `possibly_in_wms` until a search finds it: a cart cancel then searches
//! and cancels in the WMS (`CancelInDoubt`) instead of ending `CANCELLED` without a call.
//!
//! [`settle`] then applies the outcome to the row: a cart cancellation that arrived while
//! `SENDING` (`cancel_pending`) is acted on however the send resolved, and edits that arrived
//! during the call are flagged (R1). Every settle step is fenced by the claim it was made
//! for ([`stale`]): an answer that meets a row no longer `SENDING` under that claim changes
//! nothing, and a WMS order it names is recorded as an anomaly.

use chrono::{DateTime, Utc};
use wmslink_wms_client::WmsError;
use wmslink_wms_client::port::{RegistrationOutcome, WmsOrder};

use crate::state_machine::{Input, ShopPolicy};
use crate::store::{History, ShipmentRow};

/// How a send resolved for one shipment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    /// The WMS holds it under `order_id`.
    Registered {
        order_id: i64,
        wms: Option<WmsOrder>,
        reason: String,
        /// Found by a search after the WMS refused it as a duplicate (`E_DUPLICATE`): someone
        /// registered it outside wmslink (R5), unless wmslink itself may have sent it before.
        after_duplicate: bool,
    },
    /// The WMS does not have it (or was unavailable): back to the queue.
    Requeue {
        reason: String,
        error: Option<String>,
    },
    /// The WMS refused the row.
    Failed { reason: String },
    /// The only WMS order with this order number is cancelled.
    AdoptCancelled { order_id: i64, wms: WmsOrder },
    /// The call's outcome is unknown (it may have been applied, now or later): stays
    /// `SENDING`, possibly in the WMS, searched once the WMS had time to apply it.
    InDoubt { error: String },
    /// A search after an unknown outcome found nothing: searched again later, a bounded
    /// number of times.
    NotFound,
    /// The WMS refused it as already registered, and a search finds no order with its number.
    DuplicateNotFound,
}

/// When shipments in doubt are searched, and how often before giving up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DoubtRules {
    /// From a claim to its first search: the WMS request timeout plus a margin, so no call
    /// can still be in flight (after a crash, a dropped `RunDispatch`, a lost lock).
    pub claim_expiry: chrono::Duration,
    /// From an unknown outcome to its first search: the WMS may still apply the request.
    pub margin: chrono::Duration,
    /// Between searches that found nothing.
    pub search_interval: chrono::Duration,
    /// Searches that find nothing before the shipment goes to `ERROR`.
    pub max_searches: i32,
}

/// What one row of a registration answer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowAnswer {
    /// Settle the row now; `response` is the answer for its history.
    Settle { response: String, outcome: Settle },
    /// The answer proves nothing yet: search the WMS for the order number before anything
    /// else; `note` says why in the history.
    Search {
        response: String,
        note: &'static str,
    },
}

/// What a registration answer says of one row.
pub fn of_registration(outcome: RegistrationOutcome) -> RowAnswer {
    match outcome {
        RegistrationOutcome::Registered { order_id } => RowAnswer::Settle {
            response: format!("OK order_id {order_id}"),
            outcome: Settle::Registered {
                order_id,
                wms: None,
                reason: format!("registered in the WMS as order {order_id}"),
                after_duplicate: false,
            },
        },
        RegistrationOutcome::AlreadyRegistered { code, message } => RowAnswer::Search {
            response: format!("NG {code}: {message}"),
            note: "the WMS already has this order number: searching for it",
        },
        RegistrationOutcome::Refused { code, message } => RowAnswer::Settle {
            response: format!("NG {code}: {message}"),
            outcome: Settle::Failed {
                reason: format!("the WMS refused the row: {code}: {message}"),
            },
        },
    }
}

/// What a registration call that failed as a whole means for every row of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallFailure {
    /// The WMS may have applied it, now or later: every row stays in doubt
    /// ([`Settle::InDoubt`]) and is searched later, never sent again blindly.
    InDoubt(Settle),
    /// Retrying the same rows cannot help: every row settles as this.
    Settle(Settle),
    /// Down, rate limited, or a problem a person must fix in the settings: every row settles
    /// as this (back to the queue) and the shop backs off.
    BackOff(Settle),
    /// The batch was refused whole without a reason (surely not applied): send each half on
    /// its own, so one bad row does not hold the others.
    Split,
}

/// Classifies the error of a registration call of `rows` rows.
pub fn of_call_failure(err: &WmsError, rows: usize) -> CallFailure {
    if err.may_have_been_applied() {
        return CallFailure::InDoubt(Settle::InDoubt {
            error: err.to_string(),
        });
    }
    match err {
        WmsError::UnexpectedStatus { status } if (400..500).contains(status) && rows > 1 => {
            CallFailure::Split
        }
        WmsError::UnexpectedStatus { status } if (400..500).contains(status) => {
            CallFailure::Settle(Settle::Failed {
                reason: format!(
                    "the WMS (or a proxy before it) refused this row on its own with HTTP {status} and no reason: {err}"
                ),
            })
        }
        WmsError::Rejected { code, message, .. } => CallFailure::BackOff(Settle::Requeue {
            reason: format!(
                "the WMS refused the call as a whole ({code}: {message}); nothing registered, queued again"
            ),
            error: Some(err.to_string()),
        }),
        WmsError::InvalidRequest(_) => CallFailure::Settle(Settle::Failed {
            reason: err.to_string(),
        }),
        _ => CallFailure::BackOff(Settle::Requeue {
            reason: format!("not registered, queued again: {err}"),
            error: Some(err.to_string()),
        }),
    }
}

/// Why the WMS was searched for an order number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchCause {
    /// The outcome of a call is unknown (lost answer, 5xx, crash, dropped call).
    UnknownOutcome,
    /// The WMS answered `E_DUPLICATE`: it says it holds the order number.
    Duplicate,
}

/// What a search of the WMS for one order number found (every WMS order carrying it), as the
/// answer for the history and the outcome: the newest live order is ours; with none live, the
/// newest cancelled one is adopted; with none at all, the shipment stays in doubt (or, after
/// `E_DUPLICATE`, fails: the WMS holds an order we cannot find). Never back to the queue.
pub fn of_search(found: &[&WmsOrder], cause: SearchCause) -> (String, Settle) {
    let live = found
        .iter()
        .filter(|o| !o.cancelled)
        .max_by_key(|o| o.order_id);
    let cancelled = found
        .iter()
        .filter(|o| o.cancelled)
        .max_by_key(|o| o.order_id);
    match (live, cancelled) {
        (Some(order), _) => (
            format!(
                "found order_id {} (status {} {})",
                order.order_id, order.status_id, order.status_name
            ),
            Settle::Registered {
                order_id: order.order_id,
                wms: Some((*order).clone()),
                reason: format!(
                    "the WMS holds it as order {}: adopted without sending again",
                    order.order_id
                ),
                after_duplicate: cause == SearchCause::Duplicate,
            },
        ),
        (None, Some(order)) => (
            format!("found only cancelled order_id {}", order.order_id),
            Settle::AdoptCancelled {
                order_id: order.order_id,
                wms: (*order).clone(),
            },
        ),
        (None, None) => (
            "not found".to_owned(),
            match cause {
                SearchCause::UnknownOutcome => Settle::NotFound,
                SearchCause::Duplicate => Settle::DuplicateNotFound,
            },
        ),
    }
}

/// Claims a queued row for a registration call: a new claim token (the fence of every settle
/// step of this call) and no search before the call is surely over.
pub fn claim(row: &mut ShipmentRow, rules: &DoubtRules, now: DateTime<Utc>) {
    row.claim_token = row.claim_token.wrapping_add(1);
    row.doubt_searches = 0;
    row.search_after = Some(now + rules.claim_expiry);
}

/// Whether an answer for the claim `token` comes too late: the row is no longer `SENDING`
/// under that claim (settled by another pass, or claimed again). Then nothing is applied;
/// `Some(history)` says what is recorded. A WMS order the answer names that the row does not
/// hold is an anomaly (the second line, when set, is the anomaly to raise).
pub fn stale(row: &ShipmentRow, token: i64, outcome: &Settle) -> Option<(Vec<History>, bool)> {
    if row.status == crate::state_machine::Status::Sending && row.claim_token == token {
        return None;
    }
    let named = match outcome {
        Settle::Registered { order_id, .. } | Settle::AdoptCancelled { order_id, .. } => {
            Some(*order_id)
        }
        _ => None,
    };
    match named {
        Some(order_id) if row.wms_order_id != Some(order_id) => Some((
            vec![History::note(format!(
                "anomaly: the WMS holds this order number as order {order_id}, but the shipment is {} (claim {}, answer for claim {token}) and holds {}: not applied, check the WMS",
                row.status,
                row.claim_token,
                row.wms_order_id
                    .map_or_else(|| "no WMS order".to_owned(), |id| format!("order {id}"))
            ))],
            true,
        )),
        _ => Some((Vec::new(), false)),
    }
}

/// What a search found for a cancellation of a shipment that may exist in the WMS without
/// a known WMS order id (`CANCEL_REQUESTED` after `CancelInDoubt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelSearch {
    /// A live WMS order holds the number: cancel it.
    Cancel { order_id: i64, wms: WmsOrder },
    /// Nothing live in the WMS: the cancellation is done (`CancelConfirmed`).
    Done { reason: String },
    /// Not found yet: the WMS may still apply the earlier send; searched again later.
    Again { note: String },
}

/// Decides a cancellation search for `row` (its `doubt_searches` so far) and updates its
/// doubt counters: a live order is cancelled, only cancelled orders or a miss after
/// [`DoubtRules::max_searches`] searches end it, a miss before that searches again later.
pub fn of_cancel_search(
    row: &mut ShipmentRow,
    found: &[&WmsOrder],
    rules: &DoubtRules,
    now: DateTime<Utc>,
) -> CancelSearch {
    let live = found
        .iter()
        .filter(|o| !o.cancelled)
        .max_by_key(|o| o.order_id);
    let cancelled = found
        .iter()
        .filter(|o| o.cancelled)
        .max_by_key(|o| o.order_id);
    match (live, cancelled) {
        (Some(order), _) => {
            row.wms_order_id = Some(order.order_id);
            row.possibly_in_wms = false;
            row.search_after = None;
            apply_wms_status(row, order);
            CancelSearch::Cancel {
                order_id: order.order_id,
                wms: (*order).clone(),
            }
        }
        (None, Some(order)) => {
            row.wms_order_id = Some(order.order_id);
            row.possibly_in_wms = false;
            row.search_after = None;
            apply_wms_status(row, order);
            CancelSearch::Done {
                reason: format!(
                    "the WMS holds this order number only as cancelled order {}",
                    order.order_id
                ),
            }
        }
        (None, None) => {
            row.doubt_searches = row.doubt_searches.saturating_add(1);
            let searches = row.doubt_searches;
            if searches < rules.max_searches {
                row.search_after = Some(now + rules.search_interval);
                CancelSearch::Again {
                    note: format!(
                        "cancellation: not found in the WMS (search {searches} of {}); the WMS may still apply the earlier send: searched again",
                        rules.max_searches
                    ),
                }
            } else {
                row.search_after = None;
                row.possibly_in_wms = false;
                CancelSearch::Done {
                    reason: format!(
                        "not found in the WMS after {searches} searches since it was sent with an unknown outcome: nothing to cancel"
                    ),
                }
            }
        }
    }
}

/// Applies `outcome` to a `SENDING` row at `now` and returns its history lines.
pub fn settle(
    row: &mut ShipmentRow,
    outcome: Settle,
    policy: &ShopPolicy,
    rules: &DoubtRules,
    now: DateTime<Utc>,
) -> Vec<History> {
    let mut history = Vec::new();
    match outcome {
        Settle::Registered {
            order_id,
            wms,
            reason,
            after_duplicate,
        } => {
            // R5: the WMS already held the order number when wmslink first sent it. A row that
            // may be in the WMS from an earlier send of ours (unknown outcome) is not flagged.
            if after_duplicate && !row.possibly_in_wms {
                row.registered_outside_wmslink = true;
                history.push(History::note(format!(
                    "registered outside wmslink: the WMS refused it as a duplicate and holds it as order {order_id} (CSV import or manual entry?); adopted, not sent again (R5)"
                )));
            }
            step(row, &mut history, Input::Registered, reason);
            row.wms_order_id = Some(order_id);
            row.last_error = None;
            row.possibly_in_wms = false;
            row.search_after = None;
            if let Some(wms) = wms {
                apply_wms_status(row, &wms);
            }
            // R1: edits that arrived while the call was in flight were not sent.
            if row.sent_fingerprint.as_deref() != Some(row.content_fingerprint.as_str()) {
                row.edited_after_sending = true;
                row.edited_revision = Some(row.order_revision);
                history.push(History::note(format!(
                    "edited in the cart while it was being registered (revision {}); the edit is not sent to the WMS (R1)",
                    row.order_revision
                )));
            }
            if row.cancel_pending {
                row.cancel_pending = false;
                if policy.cancellations {
                    step(
                        row,
                        &mut history,
                        Input::CartCancel,
                        "cancellation received while it was being registered; cancelling in the WMS"
                            .to_owned(),
                    );
                } else {
                    row.cancel_not_sent = true;
                    history.push(History::note(
                        "cancellation received while it was being registered, not sent to the WMS: cancellations are not a data target of the shop",
                    ));
                }
            }
        }
        Settle::Requeue { reason, error } => {
            step(row, &mut history, Input::Requeue, reason);
            row.sent_revision = None;
            row.sent_fingerprint = None;
            if let Some(error) = error {
                row.last_error = Some(error);
            }
            cancel_if_pending(row, &mut history, policy);
        }
        Settle::Failed { reason } => {
            row.last_error = Some(reason.clone());
            step(row, &mut history, Input::SendFailed, reason);
            row.sent_revision = None;
            row.sent_fingerprint = None;
            cancel_if_pending(row, &mut history, policy);
        }
        Settle::AdoptCancelled { order_id, wms } => {
            step(
                row,
                &mut history,
                Input::AdoptCancelled,
                format!(
                    "the WMS holds this order number only as cancelled order {order_id}; adopted, never sent again (R3)"
                ),
            );
            row.wms_order_id = Some(order_id);
            row.possibly_in_wms = false;
            row.search_after = None;
            apply_wms_status(row, &wms);
            if !row.cancel_pending {
                row.cancelled_in_wms_unrequested = true;
            }
            row.cancel_pending = false;
        }
        Settle::InDoubt { error } => {
            row.possibly_in_wms = true;
            row.last_error = Some(error);
            let first = now + rules.margin;
            row.search_after = Some(row.search_after.map_or(first, |at| at.max(first)));
            history.push(History::note(format!(
                "the outcome is unknown: the WMS may have applied it, now or later; searched from {} before anything is sent again",
                row.search_after.map_or_else(String::new, |at| at.to_rfc3339())
            )));
        }
        Settle::NotFound => {
            row.possibly_in_wms = true;
            row.doubt_searches = row.doubt_searches.saturating_add(1);
            let searches = row.doubt_searches;
            if searches < rules.max_searches {
                row.search_after = Some(now + rules.search_interval);
                history.push(History::note(format!(
                    "not found in the WMS (search {searches} of {}): still in doubt, the WMS may apply it later; searched again",
                    rules.max_searches
                )));
            } else if row.cancel_pending {
                row.cancel_pending = false;
                row.search_after = None;
                let reason = format!(
                    "sent with an unknown outcome and not found in the WMS after {searches} searches; cancelled in the cart meanwhile: nothing to cancel in the WMS"
                );
                step(row, &mut history, Input::SendFailed, reason.clone());
                step(row, &mut history, Input::CartCancel, reason);
            } else {
                row.search_after = None;
                let reason = format!(
                    "sent with an unknown outcome and not found in the WMS after {searches} searches: not sent again without a person (RetryShipment sends it again)"
                );
                row.last_error = Some(reason.clone());
                step(row, &mut history, Input::SendFailed, reason);
            }
        }
        Settle::DuplicateNotFound => {
            row.possibly_in_wms = true;
            row.search_after = None;
            let reason = "the WMS refused it as already registered (E_DUPLICATE) but a search finds no order with this number: the WMS holds a live order we cannot find".to_owned();
            row.last_error = Some(reason.clone());
            step(row, &mut history, Input::SendFailed, reason);
            row.sent_revision = None;
            row.sent_fingerprint = None;
            cancel_if_pending(row, &mut history, policy);
        }
    }
    history
}

/// One transition through the state machine; a refused one is kept in the history as an
/// internal note (and logged) rather than lost.
fn step(row: &mut ShipmentRow, history: &mut Vec<History>, input: Input, reason: String) {
    match row.apply(input, reason) {
        Ok(line) => history.push(line),
        Err(refused) => {
            tracing::error!(shop = %row.shop_id, order_no = %row.order_no, %refused, "refused transition");
            history.push(History::note(format!("internal: {refused}")));
        }
    }
}

/// A cancellation recorded while `SENDING`, for an order that turned out not registered by
/// this call: cancelled without any WMS call, unless an earlier call with an unknown outcome
/// may have put it in the WMS (then it is searched and cancelled there).
fn cancel_if_pending(row: &mut ShipmentRow, history: &mut Vec<History>, policy: &ShopPolicy) {
    if !row.cancel_pending {
        return;
    }
    row.cancel_pending = false;
    if row.possibly_in_wms && policy.cancellations {
        step(
            row,
            history,
            Input::CancelInDoubt,
            "cancellation received while it was being registered; an earlier send may have put it in the WMS: searching and cancelling there"
                .to_owned(),
        );
    } else if row.possibly_in_wms {
        row.cancel_not_sent = true;
        step(
            row,
            history,
            Input::CartCancel,
            "cancellation received while it was being registered; an earlier send may have put it in the WMS, but the cancel is not sent: cancellations are not a data target of the shop"
                .to_owned(),
        );
    } else {
        step(
            row,
            history,
            Input::CartCancel,
            "cancellation received while it was being registered; it was not registered, so no WMS call"
                .to_owned(),
        );
    }
}

/// Copies the WMS's status of an order onto the row (newer observations only).
pub fn apply_wms_status(row: &mut ShipmentRow, wms: &WmsOrder) {
    let updated = wms.updated_at.with_timezone(&Utc);
    if row.wms_updated_at.is_some_and(|last| updated < last) {
        return;
    }
    row.wms_status_id = Some(wms.status_id);
    row.wms_status_name = Some(wms.status_name.clone());
    row.wms_updated_at = Some(updated);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::{DateTime, Utc};

    use super::*;
    use crate::state_machine::Status;

    fn sending() -> ShipmentRow {
        let mut row = ShipmentRow::new("shop", "A-1");
        row.status = Status::Sending;
        row.order_revision = 3;
        row.content_fingerprint = "sent".into();
        row.sent_revision = Some(3);
        row.sent_fingerprint = Some("sent".into());
        row
    }

    fn policy(cancellations: bool) -> ShopPolicy {
        ShopPolicy {
            enabled: true,
            shipment_instructions: true,
            cancellations,
            ..ShopPolicy::default()
        }
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).expect("a time")
    }

    /// The test's "now".
    const NOW: i64 = 5_000;

    fn rules() -> DoubtRules {
        DoubtRules {
            claim_expiry: chrono::Duration::seconds(30),
            margin: chrono::Duration::seconds(10),
            search_interval: chrono::Duration::seconds(60),
            max_searches: 3,
        }
    }

    fn settle_at(row: &mut ShipmentRow, outcome: Settle, policy: &ShopPolicy) -> Vec<History> {
        settle(row, outcome, policy, &rules(), at(NOW))
    }

    fn notes(history: &[History]) -> Vec<&str> {
        history
            .iter()
            .filter(|h| h.kind == History::NOTE)
            .map(|h| h.reason.as_str())
            .collect()
    }

    fn wms(order_id: i64, cancelled: bool) -> WmsOrder {
        WmsOrder {
            order_id,
            order_no: "A-1".into(),
            status_id: 50,
            status_name: "出荷待ち".into(),
            cancelled,
            shipped: false,
            processing: false,
            carrier: None,
            tracking_code: None,
            shipping_date: None,
            updated_at: at(2_000),
        }
    }

    fn transitions(history: &[History]) -> Vec<(String, String)> {
        history
            .iter()
            .filter(|h| h.kind == History::STATE_CHANGE)
            .map(|h| (h.from_status.clone(), h.to_status.clone()))
            .collect()
    }

    fn pair(from: Status, to: Status) -> (String, String) {
        (from.as_str().to_owned(), to.as_str().to_owned())
    }

    fn registered(order_id: i64, wms: Option<WmsOrder>) -> Settle {
        Settle::Registered {
            order_id,
            wms,
            reason: "registered".into(),
            after_duplicate: false,
        }
    }

    #[test]
    fn registered_moves_to_sent_with_the_wms_id_and_clears_the_error() {
        let mut row = sending();
        row.last_error = Some("an earlier 503".into());
        let history = settle_at(&mut row, registered(7, None), &policy(true));
        assert_eq!(transitions(&history), [pair(Status::Sending, Status::Sent)]);
        assert_eq!(row.status, Status::Sent);
        assert_eq!(row.wms_order_id, Some(7));
        assert_eq!(row.last_error, None);
        assert_eq!(
            row.wms_status_id, None,
            "no WMS status without an order read"
        );
        assert!(!row.edited_after_sending);
        assert_eq!(history.len(), 1);
    }

    #[test]
    fn registered_from_a_search_takes_the_wms_status() {
        let mut row = sending();
        settle_at(&mut row, registered(7, Some(wms(7, false))), &policy(true));
        assert_eq!(row.wms_status_id, Some(50));
        assert_eq!(row.wms_status_name.as_deref(), Some("出荷待ち"));
        assert_eq!(row.wms_updated_at, Some(at(2_000)));
    }

    #[test]
    fn an_edit_during_the_call_is_flagged_not_sent() {
        let mut row = sending();
        row.content_fingerprint = "edited".into();
        row.order_revision = 4;
        let history = settle_at(&mut row, registered(7, None), &policy(true));
        assert!(row.edited_after_sending);
        assert_eq!(row.edited_revision, Some(4));
        assert!(
            history
                .iter()
                .any(|h| h.kind == History::NOTE && h.reason.contains("(R1)")),
            "{history:?}"
        );
    }

    #[test]
    fn a_cancellation_during_the_call_of_a_registered_order_is_requested() {
        let mut row = sending();
        row.cancel_pending = true;
        let history = settle_at(&mut row, registered(7, None), &policy(true));
        assert_eq!(
            transitions(&history),
            [
                pair(Status::Sending, Status::Sent),
                pair(Status::Sent, Status::CancelRequested)
            ]
        );
        assert!(!row.cancel_pending);
    }

    #[test]
    fn a_cancellation_during_the_call_is_noted_when_cancellations_are_off() {
        let mut row = sending();
        row.cancel_pending = true;
        let history = settle_at(&mut row, registered(7, None), &policy(false));
        assert_eq!(row.status, Status::Sent);
        assert!(!row.cancel_pending);
        assert!(row.cancel_not_sent, "the shipment shows it");
        assert!(
            history
                .iter()
                .any(|h| h.kind == History::NOTE && h.reason.contains("not a data target")),
            "{history:?}"
        );
    }

    #[test]
    fn requeue_forgets_what_was_sent_and_keeps_the_error() {
        let mut row = sending();
        let history = settle_at(
            &mut row,
            Settle::Requeue {
                reason: "down".into(),
                error: Some("HTTP 503".into()),
            },
            &policy(true),
        );
        assert_eq!(
            transitions(&history),
            [pair(Status::Sending, Status::Queued)]
        );
        assert_eq!(
            (row.sent_revision, row.sent_fingerprint.as_deref()),
            (None, None)
        );
        assert_eq!(row.last_error.as_deref(), Some("HTTP 503"));
        assert!(row.queued_at.is_some());

        let mut row = sending();
        row.last_error = Some("kept".into());
        settle_at(
            &mut row,
            Settle::Requeue {
                reason: "not found".into(),
                error: None,
            },
            &policy(true),
        );
        assert_eq!(
            row.last_error.as_deref(),
            Some("kept"),
            "no new error, none lost"
        );
    }

    #[test]
    fn failed_moves_to_error_with_the_reason() {
        let mut row = sending();
        let history = settle_at(
            &mut row,
            Settle::Failed {
                reason: "the WMS refused the row: E_INVALID: bad".into(),
            },
            &policy(true),
        );
        assert_eq!(
            transitions(&history),
            [pair(Status::Sending, Status::Error)]
        );
        assert_eq!(
            row.last_error.as_deref(),
            Some("the WMS refused the row: E_INVALID: bad")
        );
        assert_eq!(row.sent_fingerprint, None);
    }

    #[test]
    fn a_cancellation_during_a_call_that_registered_nothing_cancels_without_a_call() {
        for outcome in [
            Settle::Requeue {
                reason: "429".into(),
                error: None,
            },
            Settle::Failed {
                reason: "refused".into(),
            },
        ] {
            let mut row = sending();
            row.cancel_pending = true;
            let history = settle_at(&mut row, outcome.clone(), &policy(true));
            assert_eq!(row.status, Status::Cancelled, "{outcome:?}");
            assert!(!row.cancel_pending);
            assert!(
                history.iter().any(|h| h.reason.contains("so no WMS call")),
                "{history:?}"
            );
        }
    }

    #[test]
    fn adopting_a_cancelled_order_is_final_and_flags_what_was_not_requested() {
        let mut row = sending();
        let history = settle_at(
            &mut row,
            Settle::AdoptCancelled {
                order_id: 9,
                wms: wms(9, true),
            },
            &policy(true),
        );
        assert_eq!(
            transitions(&history),
            [pair(Status::Sending, Status::Cancelled)]
        );
        assert_eq!(row.wms_order_id, Some(9));
        assert_eq!(row.wms_status_id, Some(50));
        assert!(row.cancelled_in_wms_unrequested, "R5: nobody asked");

        let mut row = sending();
        row.cancel_pending = true;
        settle_at(
            &mut row,
            Settle::AdoptCancelled {
                order_id: 9,
                wms: wms(9, true),
            },
            &policy(true),
        );
        assert_eq!(row.status, Status::Cancelled);
        assert!(!row.cancelled_in_wms_unrequested, "the cart asked for it");
        assert!(!row.cancel_pending);
    }

    #[test]
    fn a_refused_transition_is_kept_as_an_internal_note() {
        let mut row = sending();
        row.status = Status::Sent;
        let history = settle_at(&mut row, registered(7, None), &policy(true));
        assert_eq!(row.status, Status::Sent);
        assert!(
            history
                .iter()
                .any(|h| h.kind == History::NOTE && h.reason.starts_with("internal:")),
            "{history:?}"
        );
    }

    #[test]
    fn an_older_wms_status_never_replaces_a_newer_one() {
        let mut row = sending();
        row.wms_status_id = Some(60);
        row.wms_updated_at = Some(at(3_000));
        apply_wms_status(&mut row, &wms(7, false));
        assert_eq!(row.wms_status_id, Some(60));
        let mut newer = wms(7, false);
        newer.updated_at = at(3_000);
        apply_wms_status(&mut row, &newer);
        assert_eq!(row.wms_status_id, Some(50), "the same time is applied");
    }

    #[test]
    fn registration_answers_settle_search_or_fail() {
        assert_eq!(
            of_registration(RegistrationOutcome::Registered { order_id: 5 }),
            RowAnswer::Settle {
                response: "OK order_id 5".into(),
                outcome: Settle::Registered {
                    order_id: 5,
                    wms: None,
                    reason: "registered in the WMS as order 5".into(),
                    after_duplicate: false,
                }
            }
        );
        assert!(matches!(
            of_registration(RegistrationOutcome::AlreadyRegistered {
                code: "E_DUPLICATE".into(),
                message: "exists".into()
            }),
            RowAnswer::Search { response, .. } if response == "NG E_DUPLICATE: exists"
        ));
        assert_eq!(
            of_registration(RegistrationOutcome::Refused {
                code: "E_INVALID".into(),
                message: "bad zip".into()
            }),
            RowAnswer::Settle {
                response: "NG E_INVALID: bad zip".into(),
                outcome: Settle::Failed {
                    reason: "the WMS refused the row: E_INVALID: bad zip".into()
                }
            }
        );
    }

    #[test]
    fn call_failures_stay_in_doubt_fail_or_back_off() {
        let lost = WmsError::UnknownOutcome {
            detail: "timeout".into(),
        };
        assert_eq!(
            of_call_failure(&lost, 3),
            CallFailure::InDoubt(Settle::InDoubt {
                error: lost.to_string()
            })
        );
        let rejected = WmsError::Rejected {
            code: "E_AUTH".into(),
            message: "robot".into(),
            details: vec![],
        };
        assert!(
            matches!(
                of_call_failure(&rejected, 200),
                CallFailure::BackOff(Settle::Requeue { reason, .. }) if reason.contains("as a whole (E_AUTH: robot)")
            ),
            "a whole-call NG never sends the rows to ERROR"
        );
        let too_large = WmsError::UnexpectedStatus { status: 413 };
        assert_eq!(of_call_failure(&too_large, 2), CallFailure::Split);
        assert!(matches!(
            of_call_failure(&too_large, 1),
            CallFailure::Settle(Settle::Failed { reason }) if reason.contains("HTTP 413")
        ));
        assert!(matches!(
            of_call_failure(&WmsError::InvalidRequest("201 rows".into()), 201),
            CallFailure::Settle(Settle::Failed { reason }) if reason.contains("201 rows")
        ));
        for err in [
            WmsError::RateLimited {
                retry_after: Duration::from_secs(3),
            },
            WmsError::Transient {
                status: Some(503),
                detail: "HTTP 503".into(),
            },
            WmsError::Unauthorized,
            WmsError::Timeout,
            WmsError::Unreachable("refused".into()),
            WmsError::Tls("certificate".into()),
            WmsError::PolicyRefused("http".into()),
            WmsError::Limiter("db down".into()),
        ] {
            match of_call_failure(&err, 5) {
                CallFailure::BackOff(Settle::Requeue { reason, error }) => {
                    assert!(
                        reason.starts_with("not registered, queued again"),
                        "{reason}"
                    );
                    assert_eq!(error, Some(err.to_string()));
                }
                other => panic!("{err}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_search_adopts_the_newest_live_order_then_a_cancelled_one_else_requeues() {
        let (old, new, void) = (wms(7, false), wms(8, false), wms(9, true));
        let (response, outcome) = of_search(&[&old, &void, &new], SearchCause::UnknownOutcome);
        assert_eq!(response, "found order_id 8 (status 50 出荷待ち)");
        assert!(
            matches!(&outcome, Settle::Registered { order_id: 8, wms: Some(w), .. } if w.order_id == 8)
        );

        let older_void = wms(6, true);
        let (response, outcome) = of_search(&[&older_void, &void], SearchCause::UnknownOutcome);
        assert_eq!(response, "found only cancelled order_id 9");
        assert!(matches!(
            outcome,
            Settle::AdoptCancelled { order_id: 9, .. }
        ));

        let (response, outcome) = of_search(&[], SearchCause::UnknownOutcome);
        assert_eq!(response, "not found");
        assert_eq!(outcome, Settle::NotFound, "not found is not never applied");
        let (_, outcome) = of_search(&[], SearchCause::Duplicate);
        assert_eq!(outcome, Settle::DuplicateNotFound);
    }

    #[test]
    fn a_cancellation_search_cancels_a_live_order_ends_on_a_cancelled_one_and_retries_a_miss() {
        let mut row = sending();
        row.status = Status::CancelRequested;
        row.possibly_in_wms = true;
        let (live, void) = (wms(8, false), wms(9, true));
        assert_eq!(
            of_cancel_search(&mut row, &[&void, &live], &rules(), at(NOW)),
            CancelSearch::Cancel {
                order_id: 8,
                wms: live.clone()
            }
        );
        assert_eq!(row.wms_order_id, Some(8));
        assert!(!row.possibly_in_wms);

        let mut row = sending();
        row.possibly_in_wms = true;
        assert!(matches!(
            of_cancel_search(&mut row, &[&void], &rules(), at(NOW)),
            CancelSearch::Done { reason } if reason.contains("only as cancelled order 9")
        ));
        assert_eq!(row.wms_order_id, Some(9));

        let mut row = sending();
        row.possibly_in_wms = true;
        for search in 1..3 {
            assert!(matches!(
                of_cancel_search(&mut row, &[], &rules(), at(NOW)),
                CancelSearch::Again { note } if note.contains(&format!("search {search} of 3"))
            ));
            assert_eq!(row.search_after, Some(at(NOW + 60)));
        }
        assert!(matches!(
            of_cancel_search(&mut row, &[], &rules(), at(NOW)),
            CancelSearch::Done { reason } if reason.contains("after 3 searches")
        ));
        assert_eq!(row.wms_order_id, None);
    }

    #[test]
    fn a_claim_takes_a_new_token_and_is_not_searched_before_the_call_is_surely_over() {
        let mut row = sending();
        row.claim_token = 41;
        row.doubt_searches = 2;
        claim(&mut row, &rules(), at(NOW));
        assert_eq!(row.claim_token, 42);
        assert_eq!(row.doubt_searches, 0);
        assert_eq!(row.search_after, Some(at(NOW + 30)));
    }

    #[test]
    fn an_unknown_outcome_stays_sending_possibly_in_the_wms_searched_after_the_margin() {
        let mut row = sending();
        row.search_after = Some(at(NOW + 30));
        let history = settle_at(
            &mut row,
            Settle::InDoubt {
                error: "HTTP 500".into(),
            },
            &policy(true),
        );
        assert_eq!(row.status, Status::Sending);
        assert!(row.possibly_in_wms);
        assert_eq!(row.last_error.as_deref(), Some("HTTP 500"));
        assert_eq!(
            row.search_after,
            Some(at(NOW + 30)),
            "never before the claim's expiry"
        );
        assert!(transitions(&history).is_empty());
        assert!(notes(&history)[0].contains("the outcome is unknown"));

        let mut row = sending();
        row.search_after = Some(at(NOW - 1));
        settle_at(
            &mut row,
            Settle::InDoubt {
                error: "timeout".into(),
            },
            &policy(true),
        );
        assert_eq!(
            row.search_after,
            Some(at(NOW + 10)),
            "the margin after the call"
        );
    }

    #[test]
    fn a_miss_keeps_it_in_doubt_then_fails_after_the_bound_with_the_reason() {
        let mut row = sending();
        row.possibly_in_wms = true;
        for search in 1..3 {
            let history = settle_at(&mut row, Settle::NotFound, &policy(true));
            assert_eq!(row.status, Status::Sending, "search {search}");
            assert_eq!(row.doubt_searches, search);
            assert_eq!(row.search_after, Some(at(NOW + 60)));
            assert!(
                notes(&history)[0].contains(&format!("search {search} of 3")),
                "{history:?}"
            );
        }
        let history = settle_at(&mut row, Settle::NotFound, &policy(true));
        assert_eq!(
            transitions(&history),
            [pair(Status::Sending, Status::Error)]
        );
        assert!(row.possibly_in_wms, "still possibly in the WMS");
        assert_eq!(row.search_after, None);
        let error = row.last_error.clone().unwrap_or_default();
        assert!(
            error.contains("not found in the WMS after 3 searches"),
            "{error}"
        );
    }

    #[test]
    fn a_cancel_pending_on_a_row_never_found_ends_cancelled_after_the_bound_only() {
        let mut row = sending();
        row.cancel_pending = true;
        row.doubt_searches = 1;
        settle_at(&mut row, Settle::NotFound, &policy(true));
        assert_eq!(row.status, Status::Sending, "not cancelled on a first miss");
        assert!(row.cancel_pending);
        let history = settle_at(&mut row, Settle::NotFound, &policy(true));
        assert_eq!(
            transitions(&history),
            [
                pair(Status::Sending, Status::Error),
                pair(Status::Error, Status::Cancelled)
            ]
        );
        assert!(!row.cancel_pending);
        assert!(
            history[0].reason.contains("nothing to cancel"),
            "{history:?}"
        );
    }

    #[test]
    fn e_duplicate_with_no_order_found_is_an_error_not_a_requeue() {
        let mut row = sending();
        let history = settle_at(&mut row, Settle::DuplicateNotFound, &policy(true));
        assert_eq!(
            transitions(&history),
            [pair(Status::Sending, Status::Error)]
        );
        assert!(row.possibly_in_wms);
        assert!(
            row.last_error
                .as_deref()
                .is_some_and(|e| e.contains("live order we cannot find")),
            "{:?}",
            row.last_error
        );
        // A cancel pending meanwhile is searched and cancelled in the WMS.
        let mut row = sending();
        row.cancel_pending = true;
        let history = settle_at(&mut row, Settle::DuplicateNotFound, &policy(true));
        assert_eq!(
            transitions(&history),
            [
                pair(Status::Sending, Status::Error),
                pair(Status::Error, Status::CancelRequested)
            ]
        );
    }

    #[test]
    fn a_cancel_pending_on_a_row_possibly_in_the_wms_is_never_cancelled_without_a_call() {
        for outcome in [
            Settle::Requeue {
                reason: "429".into(),
                error: None,
            },
            Settle::Failed {
                reason: "refused".into(),
            },
        ] {
            let mut row = sending();
            row.possibly_in_wms = true;
            row.cancel_pending = true;
            let history = settle_at(&mut row, outcome.clone(), &policy(true));
            assert_eq!(row.status, Status::CancelRequested, "{outcome:?}");
            assert!(
                history
                    .iter()
                    .any(|h| h.reason.contains("searching and cancelling there")),
                "{history:?}"
            );
            // Cancellations off: cancelled here, the history says the cancel was not sent.
            let mut row = sending();
            row.possibly_in_wms = true;
            row.cancel_pending = true;
            let history = settle_at(&mut row, outcome.clone(), &policy(false));
            assert_eq!(row.status, Status::Cancelled, "{outcome:?}");
            assert!(
                history
                    .iter()
                    .any(|h| h.reason.contains("the cancel is not sent")),
                "{history:?}"
            );
        }
    }

    #[test]
    fn a_found_order_clears_the_doubt() {
        let mut row = sending();
        row.possibly_in_wms = true;
        row.search_after = Some(at(NOW));
        settle_at(&mut row, registered(7, Some(wms(7, false))), &policy(true));
        assert!(!row.possibly_in_wms);
        assert_eq!(row.search_after, None);
        let mut row = sending();
        row.possibly_in_wms = true;
        settle_at(
            &mut row,
            Settle::AdoptCancelled {
                order_id: 9,
                wms: wms(9, true),
            },
            &policy(true),
        );
        assert!(!row.possibly_in_wms);
    }

    #[test]
    fn an_answer_for_an_older_claim_changes_nothing_and_a_wms_order_it_names_is_an_anomaly() {
        let mut row = sending();
        row.claim_token = 2;
        assert_eq!(
            stale(&row, 2, &registered(7, None)),
            None,
            "the current claim"
        );
        // Claimed again since: the answer of claim 1 is stale.
        let (history, anomaly) = stale(&row, 1, &registered(7, None)).expect("stale");
        assert!(anomaly);
        assert!(history[0].reason.starts_with("anomaly:"), "{history:?}");
        // Settled meanwhile as another order.
        row.status = Status::Sent;
        row.wms_order_id = Some(8);
        let (_, anomaly) = stale(&row, 2, &registered(7, None)).expect("stale");
        assert!(anomaly);
        // Settled meanwhile as the same order: nothing to raise.
        let (history, anomaly) = stale(&row, 2, &registered(8, None)).expect("stale");
        assert!(!anomaly);
        assert!(history.is_empty());
        // A failure for a stale claim is dropped quietly: it names no WMS order.
        let (history, anomaly) = stale(&row, 1, &Settle::NotFound).expect("stale");
        assert!(!anomaly && history.is_empty());
        // A cancelled row meeting a live WMS order is an anomaly (a cancelled order live in
        // the WMS).
        row.status = Status::Cancelled;
        row.wms_order_id = None;
        let (_, anomaly) = stale(&row, 2, &registered(7, None)).expect("stale");
        assert!(anomaly);
    }
}
