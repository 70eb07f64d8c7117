//! The scheduler of sender passes: a shop woken after a commit runs after `linger_ms` (so
//! orders arriving together share a call; shorter when the key budget earns a call back
//! sooner, see `SenderConfig::effective_linger`), at most `sender.max_parallel_shops` shops at once
//! and one pass per shop at a time; a shop woken while its pass runs runs again after it; a pass that
//! found more work runs again at once, one that backs off runs again when its wait is over.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{PassOutcome, pass};
use crate::core::Core;

/// Runs passes for woken shops until `shutdown`; then lets the passes in flight finish (the
/// runtime aborts what outlasts its drain time, which leaves those shipments `SENDING`,
/// resolved at the next start).
pub async fn run_scheduler(
    core: Arc<Core>,
    wake_rx: &mut mpsc::UnboundedReceiver<String>,
    shutdown: CancellationToken,
) {
    let linger = core.linger;
    let parallel = core.config.max_parallel_shops();
    let mut due: HashMap<String, Instant> = HashMap::new();
    let mut running: HashMap<tokio::task::Id, String> = HashMap::new();
    let mut rerun: HashSet<String> = HashSet::new();
    let mut passes: JoinSet<PassOutcome> = JoinSet::new();
    loop {
        let now = Instant::now();
        let busy: HashSet<&String> = running.values().collect();
        let mut ready: Vec<(Instant, String)> = due
            .iter()
            .filter(|(shop, at)| **at <= now && !busy.contains(shop))
            .map(|(shop, at)| (*at, shop.clone()))
            .collect();
        ready.sort();
        for (_, shop) in ready {
            if running.len() >= parallel {
                break;
            }
            due.remove(&shop);
            let core = core.clone();
            let name = shop.clone();
            let handle = passes.spawn(async move { pass(&core, &name).await });
            running.insert(handle.id(), shop);
        }
        // At capacity, only a finished pass or a wake-up can change anything.
        let next = if running.len() < parallel {
            due.values().min().copied()
        } else {
            None
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            woken = wake_rx.recv() => {
                let Some(shop) = woken else { break };
                if running.values().any(|s| *s == shop) {
                    rerun.insert(shop);
                } else {
                    let at = Instant::now() + linger;
                    due.entry(shop).and_modify(|d| *d = (*d).min(at)).or_insert(at);
                }
            }
            joined = passes.join_next_with_id(), if !passes.is_empty() => {
                let (id, outcome) = match joined {
                    Some(Ok((id, outcome))) => (id, outcome),
                    Some(Err(err)) => {
                        tracing::error!(error = %err, "sender pass failed");
                        (err.id(), PassOutcome { retry_in: Some(core.config.base_backoff()), ..PassOutcome::default() })
                    }
                    None => continue,
                };
                let Some(shop) = running.remove(&id) else { continue };
                let now = Instant::now();
                let again = rerun.remove(&shop);
                let at = match outcome.retry_in {
                    Some(wait) => Some(now + wait),
                    None if outcome.more => Some(now),
                    None if again => Some(now + outcome.due_in.map_or(linger, |due| due.min(linger))),
                    None => outcome.due_in.map(|due| now + due),
                };
                if let Some(at) = at {
                    due.insert(shop, at);
                }
            }
            _ = sleep_until(next), if next.is_some() => {}
        }
    }
    while passes.join_next().await.is_some() {}
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
