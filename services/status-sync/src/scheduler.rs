//! Background loops: the per-shop scheduler (E1) with the discovery of enabled shops, what a
//! settings change does, housekeeping.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wmslink_platform::shop::ShopId;

use crate::runner::Runner;

/// Every tick, starts a pass for each due shop that has none running in this replica. Each
/// shop's pass is its own task, so one shop's slow or failing WMS never holds up another;
/// the lease makes it one runner per shop across replicas.
pub async fn run(runner: Arc<Runner>, shutdown: CancellationToken) {
    let sync = runner.sync_config().clone();
    let permits = Arc::new(Semaphore::new(sync.max_concurrent_shops));
    let mut tasks: HashMap<String, JoinHandle<()>> = HashMap::new();
    let mut tick = tokio::time::interval(sync.tick());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is at once: the enabled shops are asked for at start.
    let mut next_discovery = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        if Instant::now() >= next_discovery {
            let discovered = tokio::select! {
                _ = shutdown.cancelled() => break,
                discovered = discover_shops(&runner) => discovered,
            };
            // A failure is tried again sooner (the first retry delay of a pass).
            let wait = if discovered {
                sync.discover()
            } else {
                sync.discover().min(sync.retry_delay(1, None))
            };
            next_discovery = Instant::now() + wait;
        }
        tasks.retain(|_, task| !task.is_finished());
        let due = match runner.store().due_shops().await {
            Ok(due) => due,
            Err(err) => {
                tracing::warn!(error = %err, "scheduler: cannot list due shops");
                continue;
            }
        };
        for shop in due {
            if tasks.contains_key(&shop) {
                continue;
            }
            let runner = runner.clone();
            let permits = permits.clone();
            let token = shutdown.clone();
            let name = shop.clone();
            let task = tokio::spawn(async move {
                let Ok(_permit) = permits.acquire_owned().await else {
                    return;
                };
                if token.is_cancelled() {
                    return;
                }
                runner.run_scheduled(&name, token).await;
            });
            tasks.insert(shop, task);
        }
    }
    // Passes see the cancellation, record themselves as interrupted and release their lease.
    for (shop, task) in tasks {
        if let Err(err) = task.await {
            tracing::warn!(%shop, error = %err, "scheduled pass ended abnormally");
        }
    }
}

/// Adds every enabled shop of the settings service (`ListShops`) to the known shops: a shop
/// new to status-sync is due at once, the others keep their schedule. This is how a shop
/// enabled while status-sync was down (so no `settings.{shop}.changed` was seen), with no
/// shipments yet, gets synced. Returns whether it succeeded.
pub async fn discover_shops(runner: &Runner) -> bool {
    let shops = match runner.shops().enabled_shops().await {
        Ok(shops) => shops,
        Err(err) => {
            tracing::warn!(error = %err, "scheduler: cannot list the enabled shops");
            return false;
        }
    };
    let ids: Vec<String> = shops.iter().map(|shop| shop.as_str().to_owned()).collect();
    match runner.store().add_shops(&ids).await {
        Ok(added) => {
            if added > 0 {
                tracing::info!(added, "scheduler: enabled shops discovered");
            }
            true
        }
        Err(err) => {
            tracing::warn!(error = %err, "scheduler: cannot record the enabled shops");
            false
        }
    }
}

/// What a `settings.{shop}.changed` event does (see `wmslink_settings_client::watch_changes`):
/// drops the shop's cached settings and makes the shop due now (so enabling a shop syncs it at
/// once). Core NATS: a lost message only costs the cache TTL.
pub async fn settings_changed(runner: Arc<Runner>, shop: String) {
    let Ok(shop) = ShopId::parse(&shop) else {
        return;
    };
    runner.shops().invalidate(shop.as_str());
    if let Err(err) = runner.store().shop_changed(shop.as_str()).await {
        tracing::warn!(%shop, error = %err, "cannot record a settings change");
    }
    tracing::debug!(%shop, "settings changed");
}

/// Hourly pruning of the service's own tables: old runs, stale suspects, long-closed watched
/// orders (the platform's tables are pruned by the runtime's pruner).
pub async fn housekeeping(runner: Arc<Runner>, shutdown: CancellationToken) {
    let keep_runs = runner.sync_config().keep_runs();
    let mut pause = Duration::from_secs(60);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = Duration::from_secs(3600);
        match runner.store().prune(keep_runs).await {
            Ok(deleted) => tracing::debug!(deleted, "housekeeping"),
            Err(err) => tracing::warn!(error = %err, "housekeeping failed"),
        }
    }
}
