//! Cancellation (flow 3, R2, I2): every `CANCEL_REQUESTED` shipment of the shop is cancelled
//! in the WMS. Confirmed → `CANCELLED`; refused (already packed or shipped) →
//! `CANCEL_REJECTED` with the WMS's reason; a lost answer → the order is read back: cancelled
//! → `CANCELLED`, otherwise it stays `CANCEL_REQUESTED` and is sent again by the next pass
//! (cancelling a cancelled order is confirmed).
//!
//! A shipment cancelled while it may exist in the WMS without a known WMS order id (sent
//! before with an unknown outcome, `CancelInDoubt`) is first searched by order number
//! ([`crate::settle::of_cancel_search`]): a live order is cancelled, a miss is searched again
//! later, a bounded number of times; it never ends `CANCELLED` without that search.

use chrono::Utc;
use wmslink_wms_client::port::{CancelOutcome, Exchange, Wms};

use super::reconcile;

use crate::core::Core;
use crate::errors::PassError;
use crate::settle::{self, CancelSearch};
use crate::state_machine::{Input, Status};
use crate::store::{self, History, ShipmentRow};

/// Cancellations sent per pass.
const MAX_CANCELS_PER_PASS: i64 = 200;

/// Sends the cancellation of every `CANCEL_REQUESTED` shipment of the shop.
pub async fn cancel_requested(core: &Core, shop_id: &str, wms: &dyn Wms) -> Result<(), PassError> {
    let rows = store::in_status(
        &core.pool,
        shop_id,
        Status::CancelRequested,
        MAX_CANCELS_PER_PASS,
    )
    .await?;
    let (known, unknown): (Vec<ShipmentRow>, Vec<ShipmentRow>) =
        rows.into_iter().partition(|row| row.wms_order_id.is_some());
    let mut targets: Vec<(String, i64)> = known
        .into_iter()
        .filter_map(|row| Some((row.order_no, row.wms_order_id?)))
        .collect();
    let now = Utc::now();
    let due: Vec<String> = unknown
        .into_iter()
        .filter(|row| row.search_after.is_none_or(|at| at <= now))
        .map(|row| row.order_no)
        .collect();
    if !due.is_empty() {
        targets.extend(search_for_cancel(core, shop_id, wms, &due).await?);
    }
    for (order_no, order_id) in targets {
        if core.shutdown.is_cancelled() {
            break;
        }
        let request = wms.describe(Exchange::Cancel { order_id });
        match wms.cancel(order_id).await {
            Ok(CancelOutcome::Cancelled) => {
                finish_cancel(
                    core,
                    shop_id,
                    &order_no,
                    vec![History::wms_call(request, "OK", "")],
                    Input::CancelConfirmed,
                    format!("the WMS cancelled order {order_id}"),
                )
                .await?;
            }
            Ok(CancelOutcome::Refused { code, message }) => {
                let reason = format!("the WMS refused the cancellation: {code}: {message}");
                finish_cancel(
                    core,
                    shop_id,
                    &order_no,
                    vec![History::wms_call(
                        request,
                        format!("NG {code}: {message}"),
                        "",
                    )],
                    Input::CancelRefused,
                    reason,
                )
                .await?;
            }
            Err(err) if err.may_have_been_applied() => {
                let mut history = vec![History::wms_call(request, "", err.to_string())];
                let lookup = wms.describe(Exchange::Get { order_id });
                match wms.get(order_id).await {
                    Ok(order) if order.cancelled => {
                        history.push(History::wms_call(
                            lookup,
                            wms.describe(Exchange::CancelState(&order)),
                            "",
                        ));
                        finish_cancel(
                            core,
                            shop_id,
                            &order_no,
                            history,
                            Input::CancelConfirmed,
                            format!("the WMS shows order {order_id} cancelled"),
                        )
                        .await?;
                    }
                    Ok(order) => {
                        history.push(History::wms_call(
                            lookup,
                            wms.describe(Exchange::CancelState(&order)),
                            "",
                        ));
                        history.push(History::note(
                            "the cancellation did not take effect: it is sent again",
                        ));
                        note_only(core, shop_id, &order_no, history).await?;
                    }
                    Err(read_err) => {
                        history.push(History::wms_call(lookup, "", read_err.to_string()));
                        note_only(core, shop_id, &order_no, history).await?;
                        return Err(PassError::Wms(read_err));
                    }
                }
            }
            Err(err) => return Err(PassError::Wms(err)),
        }
    }
    Ok(())
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

/// Moves a `CANCEL_REQUESTED` shipment on (`input` is `CancelConfirmed` or `CancelRefused`),
/// unless something settled it meanwhile.
async fn finish_cancel(
    core: &Core,
    shop_id: &str,
    order_no: &str,
    mut history: Vec<History>,
    input: Input,
    reason: String,
) -> Result<(), PassError> {
    let mut tx = core.pool.begin().await?;
    let Some(mut row) = store::lock(&mut tx, shop_id, order_no).await? else {
        return Ok(());
    };
    // An observation may have settled it meanwhile.
    if row.status != Status::CancelRequested {
        return Ok(());
    }
    if input == Input::CancelRefused {
        row.cancel_rejected = true;
        row.last_error = Some(reason.clone());
    }
    match row.apply(input, reason) {
        Ok(line) => history.push(line),
        Err(refused) => history.push(History::note(format!("internal: {refused}"))),
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
