//! Settling a shipment in doubt (`SENDING`): what a registration answer, a failed call or a
//! search of the WMS means for it, and how the row changes. Pure: no I/O, no clock beyond the
//! state machine's; the sender's steps ([`crate::sender`]) do the calls and the commits.
//!
//! | what came back | decision | settles as |
//! | --- | --- | --- |
//! | a row registered with an `order_id` | [`of_registration`] | `Registered` → `SENT` |
//! | a row refused as already registered (the WMS's duplicate check) | [`of_registration`] | search first ([`RowAnswer::Search`]) |
//! | a row refused otherwise | [`of_registration`] | `Failed` → `ERROR` |
//! | a call whose answer was lost (may have been applied) | [`of_call_failure`] | search first ([`CallFailure::SearchFirst`]) |
//! | a call refused as a whole, or an invalid request | [`of_call_failure`] | `Failed` → `ERROR` |
//! | a call that failed otherwise (down, 429, 5xx, 401, TLS, policy) | [`of_call_failure`] | `Requeue` → `QUEUED`, the shop backs off |
//! | a search found a live WMS order | [`of_search`] | `Registered` → `SENT` (the newest live one) |
//! | a search found only cancelled WMS orders | [`of_search`] | `AdoptCancelled` → `CANCELLED` (R3) |
//! | a search found nothing | [`of_search`] | `Requeue` → `QUEUED` |
//!
//! [`settle`] then applies the outcome to the row: a cart cancellation that arrived while
//! `SENDING` (`cancel_pending`) is acted on however the send resolved, and edits that arrived
//! during the call are flagged (R1).

use chrono::Utc;
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
    /// The WMS may have applied it: search before anything is sent again.
    SearchFirst,
    /// Retrying the same rows cannot help: every row settles as this.
    Settle(Settle),
    /// Down, rate limited, or a problem a person must fix in the settings: every row settles
    /// as this (back to the queue) and the shop backs off.
    BackOff(Settle),
}

/// Classifies a registration call's error.
pub fn of_call_failure(err: &WmsError) -> CallFailure {
    if err.may_have_been_applied() {
        return CallFailure::SearchFirst;
    }
    match err {
        WmsError::Rejected { code, message, .. } => CallFailure::Settle(Settle::Failed {
            reason: format!("the WMS refused the call: {code}: {message}"),
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

/// What a search of the WMS for one order number found (every WMS order carrying it), as the
/// answer for the history and the outcome: the newest live order is ours; with none live, the
/// newest cancelled one is adopted; with none at all, the order goes back to the queue.
pub fn of_search(found: &[&WmsOrder]) -> (String, Settle) {
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
            Settle::Requeue {
                reason: "the WMS does not have it: queued to be sent again".to_owned(),
                error: None,
            },
        ),
    }
}

/// Applies `outcome` to a `SENDING` row and returns its history lines.
pub fn settle(row: &mut ShipmentRow, outcome: Settle, policy: &ShopPolicy) -> Vec<History> {
    let mut history = Vec::new();
    match outcome {
        Settle::Registered {
            order_id,
            wms,
            reason,
        } => {
            step(row, &mut history, Input::Registered, reason);
            row.wms_order_id = Some(order_id);
            row.last_error = None;
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
            cancel_if_pending(row, &mut history);
        }
        Settle::Failed { reason } => {
            row.last_error = Some(reason.clone());
            step(row, &mut history, Input::SendFailed, reason);
            row.sent_revision = None;
            row.sent_fingerprint = None;
            cancel_if_pending(row, &mut history);
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
            apply_wms_status(row, &wms);
            if !row.cancel_pending {
                row.cancelled_in_wms_unrequested = true;
            }
            row.cancel_pending = false;
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

/// A cancellation recorded while `SENDING`, for an order that turned out not registered:
/// cancelled without any WMS call.
fn cancel_if_pending(row: &mut ShipmentRow, history: &mut Vec<History>) {
    if row.cancel_pending {
        row.cancel_pending = false;
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
        }
    }

    #[test]
    fn registered_moves_to_sent_with_the_wms_id_and_clears_the_error() {
        let mut row = sending();
        row.last_error = Some("an earlier 503".into());
        let history = settle(&mut row, registered(7, None), &policy(true));
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
        settle(&mut row, registered(7, Some(wms(7, false))), &policy(true));
        assert_eq!(row.wms_status_id, Some(50));
        assert_eq!(row.wms_status_name.as_deref(), Some("出荷待ち"));
        assert_eq!(row.wms_updated_at, Some(at(2_000)));
    }

    #[test]
    fn an_edit_during_the_call_is_flagged_not_sent() {
        let mut row = sending();
        row.content_fingerprint = "edited".into();
        row.order_revision = 4;
        let history = settle(&mut row, registered(7, None), &policy(true));
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
        let history = settle(&mut row, registered(7, None), &policy(true));
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
        let history = settle(&mut row, registered(7, None), &policy(false));
        assert_eq!(row.status, Status::Sent);
        assert!(!row.cancel_pending);
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
        let history = settle(
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
        settle(
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
        let history = settle(
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
                reason: "not found".into(),
                error: None,
            },
            Settle::Failed {
                reason: "refused".into(),
            },
        ] {
            let mut row = sending();
            row.cancel_pending = true;
            let history = settle(&mut row, outcome.clone(), &policy(true));
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
        let history = settle(
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
        settle(
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
        let history = settle(&mut row, registered(7, None), &policy(true));
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
                    reason: "registered in the WMS as order 5".into()
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
    fn call_failures_search_fail_or_back_off() {
        let lost = WmsError::UnknownOutcome {
            detail: "timeout".into(),
        };
        assert_eq!(of_call_failure(&lost), CallFailure::SearchFirst);
        let rejected = WmsError::Rejected {
            code: "E_AUTH".into(),
            message: "robot".into(),
            details: vec![],
        };
        assert_eq!(
            of_call_failure(&rejected),
            CallFailure::Settle(Settle::Failed {
                reason: "the WMS refused the call: E_AUTH: robot".into()
            })
        );
        assert!(matches!(
            of_call_failure(&WmsError::InvalidRequest("201 rows".into())),
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
            match of_call_failure(&err) {
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
        let (response, outcome) = of_search(&[&old, &void, &new]);
        assert_eq!(response, "found order_id 8 (status 50 出荷待ち)");
        assert!(
            matches!(&outcome, Settle::Registered { order_id: 8, wms: Some(w), .. } if w.order_id == 8)
        );

        let older_void = wms(6, true);
        let (response, outcome) = of_search(&[&older_void, &void]);
        assert_eq!(response, "found only cancelled order_id 9");
        assert!(matches!(
            outcome,
            Settle::AdoptCancelled { order_id: 9, .. }
        ));

        let (response, outcome) = of_search(&[]);
        assert_eq!(response, "not found");
        assert!(matches!(outcome, Settle::Requeue { error: None, .. }));
    }
}
