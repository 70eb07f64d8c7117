//! Cancellation (flow 3, R2, I2): every `CANCEL_REQUESTED` shipment of the shop whose turn has
//! come is cancelled in the WMS, and judged by [`of_answer`] / [`of_read_back`] (pure):
//!
//! | what came back | verdict |
//! | --- | --- |
//! | cancelled | `CANCELLED` |
//! | refused for good (`NotCancellable`: shipped, being packed) | `CANCEL_REJECTED` with the WMS's reason |
//! | refused for now (any other `NG`: maintenance, busy, not found) or a lost answer (timeout, 5xx) | the order is read back: cancelled → `CANCELLED`; shipped or past cancelling → `CANCEL_REJECTED`; otherwise it stays `CANCEL_REQUESTED` and is tried again after a back-off of its own (`base_backoff_ms` doubling up to `max_backoff_ms`) |
//! | the WMS unavailable as a whole (429, unreachable, 401) | the pass stops and the shop backs off |
//!
//! An operator sends a rejected cancellation again with `RetryCancel`.
//!
//! A shipment cancelled while it may exist in the WMS without a known WMS order id (sent
//! before with an unknown outcome, `CancelInDoubt`) is first searched by order number
//! ([`crate::settle::of_cancel_search`]): a live order is cancelled, a miss is searched again
//! later, a bounded number of times; it never ends `CANCELLED` without that search.

use chrono::Utc;
use wmslink_wms_client::WmsError;
use wmslink_wms_client::port::{CancelOutcome, Exchange, Wms, WmsOrder};

use super::{Progress, backoff_wait, reconcile, still_enabled};
use crate::core::Core;
use crate::errors::PassError;
use crate::settle::{self, CancelSearch};
use crate::state_machine::{Input, Status};
use crate::store::{self, History};

/// How a cancellation attempt is judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The WMS holds the order cancelled: `CANCELLED`.
    Confirmed(String),
    /// The WMS will not cancel it: `CANCEL_REJECTED`.
    Rejected(String),
    /// Not cancelled yet, not refused for good: tried again after a back-off.
    Again(String),
    /// Read the order back before judging, because of this.
    ReadBack(String),
}

/// What a cancel answer says.
pub fn of_answer(answer: &Result<CancelOutcome, WmsError>, order_id: i64) -> Verdict {
    match answer {
        Ok(CancelOutcome::Cancelled) => {
            Verdict::Confirmed(format!("the WMS cancelled order {order_id}"))
        }
        Ok(CancelOutcome::NotCancellable { code, message }) => Verdict::Rejected(format!(
            "the WMS refused the cancellation: {code}: {message}"
        )),
        Ok(CancelOutcome::Refused { code, message }) => Verdict::ReadBack(format!(
            "the WMS refused the cancellation for now: {code}: {message}"
        )),
        Err(err) if err.may_have_been_applied() => {
            Verdict::ReadBack(format!("the cancel answer was lost: {err}"))
        }
        Err(err) => Verdict::Again(format!("the cancellation could not be sent: {err}")),
    }
}

/// What the order read back says after `why` (a refusal for now or a lost answer).
pub fn of_read_back(order: &WmsOrder, past_cancel: bool, why: &str) -> Verdict {
    if order.cancelled {
        Verdict::Confirmed(format!("the WMS shows order {} cancelled", order.order_id))
    } else if past_cancel {
        Verdict::Rejected(format!(
            "{why}; the WMS shows order {} in status {} {} (shipped or being packed): it cannot be cancelled",
            order.order_id, order.status_id, order.status_name
        ))
    } else {
        Verdict::Again(format!(
            "{why}; the order is not cancelled in the WMS: tried again"
        ))
    }
}

/// Sends the cancellation of up to `limit` `CANCEL_REQUESTED` shipments of the shop whose
/// turn has come; returns how many were taken.
pub async fn cancel_requested(
    core: &Core,
    shop_id: &str,
    wms: &dyn Wms,
    limit: usize,
    progress: &Progress,
) -> Result<usize, PassError> {
    let rows = store::cancels_due(
        &core.pool,
        shop_id,
        i64::try_from(limit).unwrap_or(i64::MAX),
    )
    .await?;
    let taken = rows.len();
    let mut targets: Vec<(String, i64)> = Vec::new();
    let mut due: Vec<String> = Vec::new();
    for (order_no, wms_order_id) in rows {
        match wms_order_id {
            Some(order_id) => targets.push((order_no, order_id)),
            None => due.push(order_no),
        }
    }
    if !due.is_empty() {
        match search_for_cancel(core, shop_id, wms, &due).await {
            Ok(found) => targets.extend(found),
            // One failing search never holds the shop's other cancellations.
            Err(PassError::Wms(err)) => {
                reconcile::search_failed(core, shop_id, &due, &err).await?;
            }
            Err(err) => return Err(err),
        }
    }
    for (order_no, order_id) in targets {
        // Disabling the shop stops its cancellations before the next call (R6).
        if core.shutdown.is_cancelled() || !still_enabled(core, shop_id, false).await {
            break;
        }
        let request = wms.describe(Exchange::Cancel { order_id });
        let answer = wms.cancel(order_id).await;
        let mut history = vec![match &answer {
            Ok(CancelOutcome::Cancelled) => History::wms_call(request, "OK", ""),
            Ok(
                CancelOutcome::NotCancellable { code, message }
                | CancelOutcome::Refused { code, message },
            ) => History::wms_call(request, format!("NG {code}: {message}"), ""),
            Err(err) => History::wms_call(request, "", err.to_string()),
        }];
        let verdict = match (of_answer(&answer, order_id), answer) {
            (Verdict::Again(_), Err(err)) => {
                // The WMS is unavailable as a whole: the shop backs off, the row is untouched.
                note_only(core, shop_id, &order_no, history).await?;
                return Err(PassError::Wms(err));
            }
            (Verdict::ReadBack(why), _) => {
                let lookup = wms.describe(Exchange::Get { order_id });
                match wms.get(order_id).await {
                    Ok(order) => {
                        history.push(History::wms_call(
                            lookup,
                            wms.describe(Exchange::CancelState(&order)),
                            "",
                        ));
                        of_read_back(&order, wms.past_cancel(&order), &why)
                    }
                    Err(err) => {
                        history.push(History::wms_call(lookup, "", err.to_string()));
                        Verdict::Again(format!(
                            "{why}; the order could not be read back: tried again"
                        ))
                    }
                }
            }
            (verdict, _) => verdict,
        };
        if matches!(verdict, Verdict::Confirmed(_) | Verdict::Rejected(_)) {
            progress.made();
        }
        finish_cancel(core, shop_id, &order_no, history, verdict).await?;
    }
    Ok(taken)
}

/// Searches the WMS for cancel-requested shipments without a WMS order id (they may exist in
/// the WMS) and settles each from what it holds; returns the live WMS orders to cancel.
async fn search_for_cancel(
    core: &Core,
    shop_id: &str,
    wms: &dyn Wms,
    order_nos: &[String],
) -> Result<Vec<(String, i64)>, PassError> {
    let found = wms.find_by_order_nos(order_nos).await?;
    let by_no = reconcile::by_order_no(&found);
    let request = format!(
        "{}: cancellation of an order that may exist in the WMS",
        wms.describe(Exchange::Lookup {
            order_nos: order_nos.len()
        })
    );
    let now = Utc::now();
    let mut to_cancel = Vec::new();
    let mut tx = core.pool.begin().await?;
    for mut row in store::lock_many(&mut tx, shop_id, order_nos).await? {
        if row.status != Status::CancelRequested || row.wms_order_id.is_some() {
            continue;
        }
        let found = by_no
            .get(row.order_no.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        let (response, _) = settle::of_search(found, settle::SearchCause::UnknownOutcome);
        let mut history = vec![History::wms_call(request.clone(), response, "")];
        let publish = match settle::of_cancel_search(&mut row, found, &core.doubt, now) {
            CancelSearch::Cancel { order_id, .. } => {
                history.push(History::note(format!(
                    "the WMS holds it as order {order_id}: cancelling it"
                )));
                to_cancel.push((row.order_no.clone(), order_id));
                true
            }
            CancelSearch::Done { reason } => {
                match row.apply(Input::CancelConfirmed, reason) {
                    Ok(line) => history.push(line),
                    Err(refused) => history.push(History::note(format!("internal: {refused}"))),
                }
                true
            }
            CancelSearch::Again { note } => {
                history.push(History::note(note));
                false
            }
        };
        store::persist(&mut tx, &core.subjects, &mut row, &history, publish).await?;
    }
    tx.commit().await?;
    core.relay.wake();
    Ok(to_cancel)
}

/// Moves a `CANCEL_REQUESTED` shipment on by `verdict`, unless something settled it meanwhile.
async fn finish_cancel(
    core: &Core,
    shop_id: &str,
    order_no: &str,
    mut history: Vec<History>,
    verdict: Verdict,
) -> Result<(), PassError> {
    let mut tx = core.pool.begin().await?;
    let Some(mut row) = store::lock(&mut tx, shop_id, order_no).await? else {
        return Ok(());
    };
    // An observation may have settled it meanwhile.
    if row.status != Status::CancelRequested {
        return Ok(());
    }
    let change = match verdict {
        Verdict::Confirmed(reason) => Some((Input::CancelConfirmed, reason)),
        Verdict::Rejected(reason) => {
            row.cancel_rejected = true;
            row.last_error = Some(reason.clone());
            Some((Input::CancelRefused, reason))
        }
        Verdict::Again(reason) | Verdict::ReadBack(reason) => {
            row.cancel_attempts = row.cancel_attempts.saturating_add(1);
            let wait = backoff_wait(
                u32::try_from(row.cancel_attempts).unwrap_or(u32::MAX),
                core.config.base_backoff(),
                core.config.max_backoff(),
                None,
            );
            row.cancel_after = Some(Utc::now() + wait);
            history.push(History::note(format!(
                "{reason} (attempt {}, next in {} ms)",
                row.cancel_attempts,
                wait.as_millis()
            )));
            row.last_error = Some(reason);
            None
        }
    };
    if let Some((input, reason)) = change {
        row.cancel_attempts = 0;
        row.cancel_after = None;
        match row.apply(input, reason) {
            Ok(line) => history.push(line),
            Err(refused) => history.push(History::note(format!("internal: {refused}"))),
        }
    }
    store::persist(&mut tx, &core.subjects, &mut row, &history, true).await?;
    tx.commit().await?;
    core.relay.wake();
    Ok(())
}

/// Records the exchange in the history without changing the shipment.
async fn note_only(
    core: &Core,
    shop_id: &str,
    order_no: &str,
    history: Vec<History>,
) -> Result<(), PassError> {
    let mut tx = core.pool.begin().await?;
    if let Some(mut row) = store::lock(&mut tx, shop_id, order_no).await? {
        store::persist(&mut tx, &core.subjects, &mut row, &history, false).await?;
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;

    fn order(cancelled: bool, status_id: i32) -> WmsOrder {
        WmsOrder {
            order_id: 7,
            order_no: "A-1".into(),
            status_id,
            status_name: "status".into(),
            cancelled,
            shipped: false,
            processing: false,
            carrier: None,
            tracking_code: None,
            shipping_date: None,
            updated_at: DateTime::from_timestamp(2_000, 0).expect("a time"),
        }
    }

    #[test]
    fn only_a_refusal_for_good_rejects_other_refusals_and_lost_answers_read_back() {
        assert!(matches!(
            of_answer(&Ok(CancelOutcome::Cancelled), 7),
            Verdict::Confirmed(_)
        ));
        let rejected = of_answer(
            &Ok(CancelOutcome::NotCancellable {
                code: "E_NOT_CANCELLABLE".into(),
                message: "shipped".into(),
            }),
            7,
        );
        assert_eq!(
            rejected,
            Verdict::Rejected(
                "the WMS refused the cancellation: E_NOT_CANCELLABLE: shipped".into()
            )
        );
        for answer in [
            Ok(CancelOutcome::Refused {
                code: "E_MAINTENANCE".into(),
                message: "later".into(),
            }),
            Ok(CancelOutcome::Refused {
                code: "E_NOT_FOUND".into(),
                message: "no such order".into(),
            }),
            Err(WmsError::UnknownOutcome {
                detail: "HTTP 500".into(),
            }),
        ] {
            assert!(
                matches!(of_answer(&answer, 7), Verdict::ReadBack(_)),
                "{answer:?}"
            );
        }
        for err in [
            WmsError::RateLimited {
                retry_after: std::time::Duration::from_secs(1),
            },
            WmsError::Unreachable("refused".into()),
            WmsError::Unauthorized,
        ] {
            let answer = Err(err);
            assert!(
                matches!(of_answer(&answer, 7), Verdict::Again(_)),
                "{answer:?}"
            );
        }
    }

    #[test]
    fn a_read_back_confirms_rejects_past_cancelling_or_tries_again() {
        assert_eq!(
            of_read_back(&order(true, 50), false, "lost"),
            Verdict::Confirmed("the WMS shows order 7 cancelled".into())
        );
        assert!(matches!(
            of_read_back(&order(false, 90), true, "E_BUSY"),
            Verdict::Rejected(reason) if reason.starts_with("E_BUSY;") && reason.contains("cannot be cancelled")
        ));
        assert!(matches!(
            of_read_back(&order(false, 50), false, "E_BUSY"),
            Verdict::Again(reason) if reason.contains("tried again")
        ));
    }
}
