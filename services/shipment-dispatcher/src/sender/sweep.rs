//! E1 and E2: the periodic sweep and the manual run queue every never-sent order of an enabled
//! shop that is in a target status (⑤) and whose order date is within the sync period (⑧) —
//! so enabling a shop never floods the WMS with years-old orders — and wake the sender of every
//! shop with work (queued, in doubt after a crash, or cancel-requested). A disabled shop is
//! never touched (R6). Each periodic sweep also samples the queue gauges ([`metrics`]).
//!
//! The sweep also re-checks cancellations ([`recheck_cancels`]): a `QUEUED`, `ERROR`, `SENT`
//! or `SHIPPED` shipment whose stored cart status is (now) a cancel status of the shop's
//! catalog is cancelled as its order event would have done (I2).

use std::sync::Arc;

use chrono::Utc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::consumers::facts_of;
use crate::core::Core;
use crate::metrics::{self, QueueGauges};
use crate::settings::{Lookup, ShopView};
use crate::state_machine::{Input, OrderFacts, plan_order_event};
use crate::store::{self, History};

/// Shipments queued per transaction by E1/E2.
const QUEUE_CHUNK: i64 = 500;
/// Shipments re-checked for a missed cancellation per shop and sweep.
const RECHECK_BATCH: i64 = 500;

/// E1/E2: queues every never-sent shipment of the shop whose order is in a target status and
/// whose order date is within the sync period. Returns the order numbers queued.
pub async fn queue_due(
    core: &Core,
    shop_id: &str,
    view: &ShopView,
    why: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let policy = &view.policy;
    if !(policy.enabled && policy.shipment_instructions) {
        return Ok(Vec::new());
    }
    let codes: Vec<String> = policy
        .target_status_codes
        .iter()
        .filter(|code| !policy.is_cancel(code))
        .cloned()
        .collect();
    if codes.is_empty() {
        return Ok(Vec::new());
    }
    let days = i64::from(view.sync_period_days.max(1));
    let since = Utc::now() - chrono::Duration::days(days);
    let mut queued = Vec::new();
    // In chunks, one transaction each: enabling a shop with many due orders never holds
    // one long transaction over all of them.
    loop {
        let mut tx = core.pool.begin().await?;
        let rows = store::lock_not_sent_due(&mut tx, shop_id, &codes, since, QUEUE_CHUNK).await?;
        let last = rows.len() < usize::try_from(QUEUE_CHUNK).unwrap_or(usize::MAX);
        for mut row in rows {
            let reason = format!(
                "{why}: order in target status '{}' within the {days}-day sync period",
                row.order_status_code
            );
            if let Ok(line) = row.apply(Input::Queue, reason) {
                store::persist(&mut tx, &core.subjects, &mut row, &[line], true).await?;
                queued.push(row.order_no);
            }
        }
        tx.commit().await?;
        if last {
            break;
        }
    }
    if !queued.is_empty() {
        core.relay.wake();
        tracing::info!(
            shop = shop_id,
            count = queued.len(),
            why,
            "queued orders not yet sent"
        );
    }
    Ok(queued)
}

/// I2: cancels what the cart cancelled but the dispatcher did not (see the module docs).
/// Returns how many shipments changed.
pub async fn recheck_cancels(
    core: &Core,
    shop_id: &str,
    view: &ShopView,
) -> Result<usize, sqlx::Error> {
    let policy = &view.policy;
    let codes: Vec<String> = policy.cancel_status_codes.iter().cloned().collect();
    if codes.is_empty() {
        return Ok(0);
    }
    let mut tx = core.pool.begin().await?;
    let rows = store::lock_cancelled_in_cart(&mut tx, shop_id, &codes, RECHECK_BATCH).await?;
    let mut changed = 0;
    for mut row in rows {
        let facts = OrderFacts {
            revision: row.order_revision,
            status_code: row.order_status_code.clone(),
            fingerprint: row.content_fingerprint.clone(),
        };
        let plan = plan_order_event(Some(&facts_of(&row)), &facts, policy);
        let mut history = Vec::new();
        if let Some(note) = plan.note {
            history.push(History::note(format!("sweep: {note}")));
        }
        if let Some((input, _, reason)) = plan.change {
            match row.apply(input, format!("sweep: {reason}")) {
                Ok(line) => history.push(line),
                Err(refused) => history.push(History::note(format!("internal: {refused}"))),
            }
        }
        row.cancel_not_sent |= plan.cancel_not_sent;
        if history.is_empty() && !plan.cancel_not_sent {
            continue;
        }
        store::persist(&mut tx, &core.subjects, &mut row, &history, true).await?;
        changed += 1;
    }
    tx.commit().await?;
    if changed > 0 {
        core.relay.wake();
        tracing::info!(
            shop = shop_id,
            count = changed,
            "sweep: cancellations the cart made and the dispatcher had missed"
        );
    }
    Ok(changed)
}

/// E1 for one shop: queue what is due, re-check missed cancellations, and wake the sender when
/// there is work (including shipments left in doubt by a crash).
pub async fn sweep_shop(core: &Core, shop_id: &str) {
    match core.settings.get(shop_id).await {
        Ok(Lookup::Known(view)) if view.policy.enabled => {
            if let Err(err) = queue_due(core, shop_id, &view, "E1 sweep").await {
                tracing::warn!(shop = shop_id, error = %err, "sweep: queueing failed");
            }
            if let Err(err) = recheck_cancels(core, shop_id, &view).await {
                tracing::warn!(shop = shop_id, error = %err, "sweep: re-checking cancellations failed");
            }
        }
        Ok(_) => return,
        Err(err) => {
            tracing::warn!(shop = shop_id, error = %err, "sweep: settings unavailable");
            return;
        }
    }
    match store::has_work(&core.pool, shop_id).await {
        Ok(true) => core.sender.wake(shop_id),
        Ok(false) => {}
        Err(err) => tracing::warn!(shop = shop_id, error = %err, "sweep: database"),
    }
}

/// The shops a periodic sweep visits: the enabled ones, from the settings service (a disabled
/// shop is never touched, R6; a shop seen once long ago costs nothing). When the settings
/// service is out of reach, the shops with work (queued, in doubt, cancel requested), from
/// the partial indexes.
async fn shops_to_sweep(core: &Core) -> Result<Vec<String>, sqlx::Error> {
    match core.settings.client().list_shops(true).await {
        Ok(shops) => Ok(shops.into_iter().map(|shop| shop.shop_id).collect()),
        Err(err) => {
            tracing::warn!(error = %err, "sweep: cannot list the enabled shops; sweeping the shops with work");
            store::shops_with_work(&core.pool).await
        }
    }
}

/// Sweeps every enabled shop now and every `sweep_interval`, and a shop at once when its settings
/// change (e.g. it was just enabled). Each periodic sweep also refreshes the queue gauges
/// ([`metrics`]).
pub async fn run_sweeper(
    core: Arc<Core>,
    changed_rx: &mut mpsc::UnboundedReceiver<String>,
    shutdown: CancellationToken,
) {
    let mut interval = tokio::time::interval(core.config.sweep_interval());
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {
                match shops_to_sweep(&core).await {
                    Ok(shops) => {
                        match metrics::sample(&core.pool, &shops).await {
                            Ok(queues) => QueueGauges::global().set(queues),
                            Err(err) => tracing::warn!(error = %err, "sweep: cannot sample the queues"),
                        }
                        for shop in shops {
                            if shutdown.is_cancelled() {
                                return;
                            }
                            sweep_shop(&core, &shop).await;
                        }
                    }
                    Err(err) => tracing::warn!(error = %err, "sweep: cannot list shops"),
                }
            }
            changed = changed_rx.recv() => {
                let Some(shop) = changed else { return };
                sweep_shop(&core, &shop).await;
            }
        }
    }
}
