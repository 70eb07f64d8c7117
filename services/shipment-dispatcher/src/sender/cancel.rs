//! Cancellation (flow 3, R2, I2): every `CANCEL_REQUESTED` shipment of the shop is cancelled
//! in the WMS. Confirmed → `CANCELLED`; refused (already packed or shipped) →
//! `CANCEL_REJECTED` with the WMS's reason; a lost answer → the order is read back: cancelled
//! → `CANCELLED`, otherwise it stays `CANCEL_REQUESTED` and is sent again by the next pass
//! (cancelling a cancelled order is confirmed).

use wmslink_wms_client::port::{CancelOutcome, Exchange, Wms};

use crate::core::Core;
use crate::errors::PassError;
use crate::state_machine::{Input, Status};
use crate::store::{self, History};

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
    for row in rows {
        if core.shutdown.is_cancelled() {
            break;
        }
        let Some(order_id) = row.wms_order_id else {
            finish_cancel(
                core,
                &row.shop_id,
                &row.order_no,
                vec![],
                Input::CancelRefused,
                "the shipment has no WMS order id to cancel".to_owned(),
            )
            .await?;
            continue;
        };
        let request = wms.describe(Exchange::Cancel { order_id });
        match wms.cancel(order_id).await {
            Ok(CancelOutcome::Cancelled) => {
                finish_cancel(
                    core,
                    shop_id,
                    &row.order_no,
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
                    &row.order_no,
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
                            &row.order_no,
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
                        note_only(core, shop_id, &row.order_no, history).await?;
                    }
                    Err(read_err) => {
                        history.push(History::wms_call(lookup, "", read_err.to_string()));
                        note_only(core, shop_id, &row.order_no, history).await?;
                        return Err(PassError::Wms(read_err));
                    }
                }
            }
            Err(err) => return Err(PassError::Wms(err)),
        }
    }
    Ok(())
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
