//! Resolving shipments in doubt (`SENDING`, I1): after a crash, a lost answer or an "already
//! registered" answer, the WMS is searched by order number (by the WMS's look-up batch) and
//! each shipment settled from what it holds ([`crate::settle::of_search`]). Only orders the WMS
//! does not have go back to the queue: never a blind re-send.

use std::collections::HashMap;

use wmslink_wms_client::port::{Exchange, Wms, WmsOrder};

use crate::core::Core;
use crate::errors::PassError;
use crate::settings::ShopView;
use crate::settle;
use crate::state_machine::Status;
use crate::store::{self, History};

/// Every `SENDING` shipment of the shop: with the shop's sender lock held, none of them has a
/// call in flight, so each is in doubt and is resolved by a search.
pub async fn resolve_in_doubt(
    core: &Core,
    shop_id: &str,
    wms: &dyn Wms,
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
            wms,
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
    wms: &dyn Wms,
    view: &ShopView,
    order_nos: &[String],
    why: &str,
) -> Result<(), PassError> {
    let found = wms.find_by_order_nos(order_nos).await?;
    let mut by_no: HashMap<&str, Vec<&WmsOrder>> = HashMap::new();
    for order in &found {
        by_no
            .entry(order.order_no.as_str())
            .or_default()
            .push(order);
    }
    let request = format!(
        "{}: {why}",
        wms.describe(Exchange::Lookup {
            order_nos: order_nos.len()
        })
    );

    let mut tx = core.pool.begin().await?;
    for mut row in store::lock_many(&mut tx, shop_id, order_nos).await? {
        if row.status != Status::Sending {
            continue;
        }
        let found = by_no
            .get(row.order_no.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        let (response, outcome) = settle::of_search(found);
        let mut history = vec![History::wms_call(request.clone(), response, "")];
        history.extend(settle::settle(&mut row, outcome, &view.policy));
        store::persist(&mut tx, &core.subjects, &mut row, &history, true).await?;
    }
    tx.commit().await?;
    core.relay.wake();
    Ok(())
}
