//! E1 and E2: the periodic sweep and the manual run queue every never-sent order of an enabled
//! shop that is in a target status (⑤) and whose order date is within the sync period (⑧) —
//! so enabling a shop never floods the WMS with years-old orders — and wake the sender of every
//! shop with work (queued, in doubt after a crash, or cancel-requested). A disabled shop is
//! never touched (R6). Each periodic sweep also samples the queue gauges ([`metrics`]).

use std::sync::Arc;

use chrono::Utc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::core::Core;
use crate::metrics::{self, QueueGauges};
use crate::settings::{Lookup, ShopView};
use crate::state_machine::Input;
use crate::store;

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
    let mut tx = core.pool.begin().await?;
    let rows = store::lock_not_sent_due(&mut tx, shop_id, &codes, since).await?;
    let mut queued = Vec::with_capacity(rows.len());
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

/// E1 for one shop: queue what is due, and wake the sender when there is work (including
/// shipments left in doubt by a crash).
pub async fn sweep_shop(core: &Core, shop_id: &str) {
    match core.settings.get(shop_id).await {
        Ok(Lookup::Known(view)) if view.policy.enabled => {
            if let Err(err) = queue_due(core, shop_id, &view, "E1 sweep").await {
                tracing::warn!(shop = shop_id, error = %err, "sweep: queueing failed");
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

/// Sweeps every shop now and every `sweep_interval`, and a shop at once when its settings
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
                match store::shops(&core.pool).await {
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
