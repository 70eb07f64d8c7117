//! Resolving shipments in doubt (`SENDING`): after a crash, a lost answer or an `E_DUPLICATE`,
//! the WMS is searched by `order_no` (`order_no-in`, 100 per call) and what it holds is
//! adopted. Only orders the WMS does not have go back to the queue: never a blind re-send.
//!
//! [`settle`] is also how the sender applies a registration answer, so a cart cancellation
//! that arrived while `SENDING` (`cancel_pending`) is acted on however the send resolves.

use std::collections::HashMap;

use chrono::Utc;
use wmslink_wms_client::{WmsClient, WmsOrder};

use crate::core::Core;
use crate::sender::PassError;
use crate::settings::ShopView;
use crate::state_machine::{Input, Status};
use crate::store::{self, History, ShipmentRow};

/// How a send resolved for one shipment.
#[derive(Debug, Clone)]
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

/// Applies `outcome` to a `SENDING` row and returns its history lines.
pub fn settle(row: &mut ShipmentRow, outcome: Settle, view: &ShopView) -> Vec<History> {
    let mut history = Vec::new();
    let step = |row: &mut ShipmentRow, history: &mut Vec<History>, input: Input, reason: String| {
        match row.apply(input, reason) {
            Ok(line) => history.push(line),
            Err(refused) => {
                tracing::error!(shop = %row.shop_id, order_no = %row.order_no, %refused, "refused transition");
                history.push(History::note(format!("internal: {refused}")));
            }
        }
    };
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
                if view.policy.cancellations {
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
            cancel_if_pending(row, &mut history, step);
        }
        Settle::Failed { reason } => {
            row.last_error = Some(reason.clone());
            step(row, &mut history, Input::SendFailed, reason);
            row.sent_revision = None;
            row.sent_fingerprint = None;
            cancel_if_pending(row, &mut history, step);
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

fn cancel_if_pending(
    row: &mut ShipmentRow,
    history: &mut Vec<History>,
    step: impl Fn(&mut ShipmentRow, &mut Vec<History>, Input, String),
) {
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
    let updated = wms.update_date.with_timezone(&Utc);
    if row.wms_updated_at.is_some_and(|last| updated < last) {
        return;
    }
    row.wms_status_id = Some(wms.status_id);
    row.wms_status_name = Some(wms.status_name.clone());
    row.wms_updated_at = Some(updated);
}

/// Every `SENDING` shipment of the shop: with the shop's sender lock held, none of them has a
/// call in flight, so each is in doubt and is resolved by a search.
pub async fn resolve_in_doubt(
    core: &Core,
    shop_id: &str,
    client: &WmsClient,
    view: &ShopView,
) -> Result<usize, PassError> {
    let mut resolved = 0;
    // Each round settles every row it reads; the bound only guards against a surprise.
    for _ in 0..1_000 {
        let rows = store::in_status(&core.pool, shop_id, Status::Sending, 500).await?;
        if rows.is_empty() {
            return Ok(resolved);
        }
        let order_nos: Vec<String> = rows.into_iter().map(|row| row.order_no).collect();
        tracing::info!(
            shop = shop_id,
            count = order_nos.len(),
            "resolving shipments in doubt"
        );
        resolve(
            core,
            shop_id,
            client,
            view,
            &order_nos,
            "in doubt (SENDING) with no call in flight",
        )
        .await?;
        resolved += order_nos.len();
        if core.shutdown.is_cancelled() {
            return Ok(resolved);
        }
    }
    Ok(resolved)
}

/// Searches the WMS for `order_nos` and settles each that is still `SENDING`.
pub async fn resolve(
    core: &Core,
    shop_id: &str,
    client: &WmsClient,
    view: &ShopView,
    order_nos: &[String],
    why: &str,
) -> Result<(), PassError> {
    let found = client
        .find_by_order_nos(order_nos)
        .await
        .map_err(PassError::wms)?;
    let mut by_no: HashMap<&str, Vec<&WmsOrder>> = HashMap::new();
    for order in &found {
        by_no
            .entry(order.order_no.as_str())
            .or_default()
            .push(order);
    }
    let calls = order_nos.len().div_ceil(wmslink_wms_client::MAX_IN_VALUES);
    let request = format!(
        "GET /order/search order_no-in ({} order numbers, {calls} call(s)): {why}",
        order_nos.len()
    );

    let mut tx = core.pool.begin().await?;
    for mut row in store::lock_many(&mut tx, shop_id, order_nos).await? {
        if row.status != Status::Sending {
            continue;
        }
        let candidates = by_no
            .get(row.order_no.as_str())
            .cloned()
            .unwrap_or_default();
        let live = candidates
            .iter()
            .filter(|o| !o.is_cancelled())
            .max_by_key(|o| o.order_id);
        let cancelled = candidates
            .iter()
            .filter(|o| o.is_cancelled())
            .max_by_key(|o| o.order_id);
        let (response, outcome) = match (live, cancelled) {
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
        };
        let mut history = vec![History::wms_call(request.clone(), response, "")];
        history.extend(settle(&mut row, outcome, view));
        store::persist(&mut tx, &core.subjects, &mut row, &history, true).await?;
    }
    tx.commit().await?;
    core.relay.wake();
    Ok(())
}
