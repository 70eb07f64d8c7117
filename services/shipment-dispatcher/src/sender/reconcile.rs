//! Resolving shipments in doubt (`SENDING`, I1): after a crash, a lost answer or an "already
//! registered" answer, the WMS is searched by order number (by the WMS's look-up batch) and
//! each shipment settled from what it holds ([`crate::settle::of_search`]). "Not found" is not
//! "never applied": a shipment whose outcome is unknown is searched only once its claim is
//! older than the WMS request timeout plus a margin, a miss keeps it in doubt and searches
//! again later (a bounded number of times, then `ERROR` with the reason). Never a blind
//! re-send.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use wmslink_wms_client::port::{Exchange, Wms, WmsOrder};

use crate::core::Core;
use crate::errors::PassError;
use crate::metrics;
use crate::settings::ShopView;
use crate::settle::{self, SearchCause, Settle};
use crate::state_machine::Status;
use crate::store::{self, Appends, History, ShipmentRow};

/// Claim tokens of shipments in doubt, by order number: each settle step is fenced by the
/// claim it was made for.
pub type Claims = HashMap<String, i64>;

/// Rows searched per round (several look-up calls of the WMS's batch each).
const ROUND: i64 = 500;

/// Every `SENDING` shipment of the shop whose search is due (its claim is older than the
/// request timeout plus the margin, or its last miss is an interval old) is searched and
/// settled. With the shop's sender lock held, none of them has a call in flight.
pub async fn resolve_in_doubt(
    core: &Core,
    shop_id: &str,
    wms: &dyn Wms,
    view: &ShopView,
) -> Result<usize, PassError> {
    let mut resolved = 0;
    // Each round moves every row it reads out of "due" (settled, or searched again later);
    // the bound only guards against a surprise.
    for _ in 0..100 {
        let rows = store::search_due(&core.pool, shop_id, Status::Sending, ROUND).await?;
        if rows.is_empty() {
            return Ok(resolved);
        }
        let claims: Claims = rows.into_iter().collect();
        tracing::info!(
            shop = shop_id,
            count = claims.len(),
            "searching shipments in doubt"
        );
        let searched = resolve(
            core,
            shop_id,
            wms,
            view,
            &claims,
            SearchCause::UnknownOutcome,
            "in doubt (SENDING, outcome unknown)",
        )
        .await;
        match searched {
            Ok(()) => {}
            // A failing search holds nothing else of the shop: only these rows wait.
            Err(PassError::Wms(err)) => {
                let order_nos: Vec<String> = claims.keys().cloned().collect();
                search_failed(core, shop_id, &order_nos, &err).await?;
                return Ok(resolved);
            }
            Err(err) => return Err(err),
        }
        resolved += claims.len();
        if core.shutdown.is_cancelled() {
            return Ok(resolved);
        }
    }
    Ok(resolved)
}

/// Searches the WMS for the order numbers of `claims` and settles each that is still
/// `SENDING` under its claim.
pub async fn resolve(
    core: &Core,
    shop_id: &str,
    wms: &dyn Wms,
    view: &ShopView,
    claims: &Claims,
    cause: SearchCause,
    why: &str,
) -> Result<(), PassError> {
    let order_nos: Vec<String> = claims.keys().cloned().collect();
    let found = wms.find_by_order_nos(&order_nos).await?;
    let by_no = by_order_no(&found);
    let request = format!(
        "{}: {why}",
        wms.describe(Exchange::Lookup {
            order_nos: order_nos.len()
        })
    );

    let now = Utc::now();
    let mut tx = core.pool.begin().await?;
    let mut appends = Appends::new(&core.subjects);
    for mut row in store::lock_many(&mut tx, shop_id, &order_nos).await? {
        let token = claims.get(&row.order_no).copied().unwrap_or_default();
        let found = by_no
            .get(row.order_no.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        let (response, outcome) = settle::of_search(found, cause);
        let history = vec![History::wms_call(request.clone(), response, "")];
        settle_row(
            core,
            &mut tx,
            &mut appends,
            &mut row,
            token,
            history,
            outcome,
            view,
            now,
        )
        .await?;
    }
    appends.commit(tx).await?;
    core.relay.wake();
    Ok(())
}

/// A search for `order_nos` failed: each waits `in_doubt_search_interval_ms` before its next
/// search (not counted as a miss), with the failure in its history.
pub async fn search_failed(
    core: &Core,
    shop_id: &str,
    order_nos: &[String],
    err: &wmslink_wms_client::WmsError,
) -> Result<(), PassError> {
    tracing::warn!(shop = shop_id, count = order_nos.len(), error = %err, "search of shipments in doubt failed; searched again later");
    let next = Utc::now() + core.doubt.search_interval;
    let mut tx = core.pool.begin().await?;
    let mut appends = Appends::new(&core.subjects);
    for mut row in store::lock_many(&mut tx, shop_id, order_nos).await? {
        if !matches!(row.status, Status::Sending | Status::CancelRequested) {
            continue;
        }
        row.search_after = Some(next);
        let history = [History::note(format!(
            "the search of the WMS failed ({err}): searched again later"
        ))];
        appends.save(&mut tx, &mut row, &history, false).await?;
    }
    appends.commit(tx).await?;
    Ok(())
}

/// Every WMS order found, by its order number.
pub fn by_order_no(found: &[WmsOrder]) -> HashMap<&str, Vec<&WmsOrder>> {
    let mut by_no: HashMap<&str, Vec<&WmsOrder>> = HashMap::new();
    for order in found {
        by_no
            .entry(order.order_no.as_str())
            .or_default()
            .push(order);
    }
    by_no
}

/// Applies `outcome` to a locked row claimed with `token` and saves it with `history` (its
/// history and event left in `appends`): when the row is no longer `SENDING` under that claim
/// nothing is applied, and a WMS order the outcome names is recorded and raised as an anomaly.
#[allow(clippy::too_many_arguments)]
pub async fn settle_row(
    core: &Core,
    conn: &mut PgConnection,
    appends: &mut Appends<'_>,
    row: &mut ShipmentRow,
    token: i64,
    mut history: Vec<History>,
    outcome: Settle,
    view: &ShopView,
    now: DateTime<Utc>,
) -> Result<(), PassError> {
    if let Some((lines, anomaly)) = settle::stale(row, token, &outcome) {
        if anomaly {
            tracing::error!(shop = %row.shop_id, order_no = %row.order_no, status = %row.status, ?outcome, "anomaly: a WMS order met a shipment no longer in doubt under this claim");
            metrics::anomaly(&row.shop_id);
        }
        if !lines.is_empty() {
            history.extend(lines);
            appends.save(conn, row, &history, false).await?;
        }
        return Ok(());
    }
    history.extend(settle::settle(row, outcome, &view.policy, &core.doubt, now));
    appends.save(conn, row, &history, true).await?;
    Ok(())
}
