//! The per-shop sender: registrations in batches and cancellations, one pass at a time per shop
//! across replicas ([`shop_lock`]), woken after commits and by the periodic sweep
//! ([`scheduler`], [`sweep`]).
//!
//! A pass, with the shop's lock held ([`pass`]):
//! 1. [`reconcile`]: resolves the `SENDING` shipments whose search is due (claimed longer
//!    than the WMS request timeout plus a margin ago, or searched without a hit an interval
//!    ago) by searching the WMS; a miss keeps them in doubt;
//! 2. [`register`]: claims up to `batch_size` `QUEUED` shipments, builds their instructions
//!    (unbuildable ones go to `ERROR` naming what is missing), commits them `SENDING`
//!    **before** the call, registers them in one call and settles each from the per-row
//!    answer ([`crate::settle`]); repeats while full batches come;
//! 3. [`cancel`]: sends the cancellations of `CANCEL_REQUESTED` shipments.
//!
//! A WMS that is down or rate limited puts the batch back to `QUEUED` and the shop into
//! back-off (the `Retry-After` of a 429 is honoured, and the shared limiter is pushed back by
//! the WMS client); an already registered order number is resolved by a search at once; an
//! unknown outcome (timeout, reset, 5xx) keeps the rows `SENDING`, possibly in the WMS, until
//! a later search settles them ([`crate::settle`]). A pass that leaves searches pending asks
//! to run again when the first is due ([`PassOutcome::due_in`]).

pub mod cancel;
pub mod reconcile;
pub mod register;
pub mod scheduler;
pub mod shop_lock;
pub mod sweep;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Mutex as AsyncMutex;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::core::Core;
use crate::errors::PassError;
use crate::settings::{Lookup, ShopView};
use shop_lock::ShopLock;

/// Batches one pass sends before it lets cancellations and other shops have a turn.
const MAX_BATCHES_PER_PASS: usize = 10;
/// How long a pass waits before trying again when another replica holds the shop.
const BUSY_RETRY: Duration = Duration::from_millis(500);

/// What a pass asks of the scheduler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassOutcome {
    /// Full batches were sent and more may be queued: run again at once.
    pub more: bool,
    /// The shop is backing off (or busy elsewhere): run again after this.
    pub retry_in: Option<Duration>,
    /// Another replica held the shop.
    pub busy: bool,
    /// Shipments in doubt wait for a later search: run again after this.
    pub due_in: Option<Duration>,
}

/// A shop's back-off after failed passes.
#[derive(Debug, Default)]
struct ShopState {
    backoff_until: Option<Instant>,
    failures: u32,
}

/// Wakes shops' senders and serialises passes per shop within the process.
pub struct Sender {
    wake_tx: mpsc::UnboundedSender<String>,
    shops: Mutex<HashMap<String, Arc<AsyncMutex<ShopState>>>>,
}

impl Sender {
    pub fn new() -> (Self, mpsc::UnboundedReceiver<String>) {
        let (wake_tx, wake_rx) = mpsc::unbounded_channel();
        (
            Self {
                wake_tx,
                shops: Mutex::new(HashMap::new()),
            },
            wake_rx,
        )
    }

    /// Asks for a pass of `shop_id` soon (after the linger).
    pub fn wake(&self, shop_id: &str) {
        // Only fails when the scheduler is gone (shutting down); the sweep catches up.
        let _ = self.wake_tx.send(shop_id.to_owned());
    }

    fn shop(&self, shop_id: &str) -> Arc<AsyncMutex<ShopState>> {
        let mut shops = self.shops.lock().unwrap_or_else(|p| p.into_inner());
        shops.entry(shop_id.to_owned()).or_default().clone()
    }
}

/// How long a shop backs off after its `failures`-th failed pass in a row: `base` doubling per
/// failure up to `max`, or the wait the WMS asked for (at least 100 ms) when it gave one.
pub(crate) fn backoff_wait(
    failures: u32,
    base: Duration,
    max: Duration,
    retry_after: Option<Duration>,
) -> Duration {
    match retry_after {
        Some(retry_after) => retry_after.max(Duration::from_millis(100)),
        None => base
            .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(16)))
            .min(max),
    }
}

/// One pass for a shop (see the module docs). Never fails: trouble becomes back-off.
#[tracing::instrument(name = "sender_pass", skip(core))]
pub async fn pass(core: &Core, shop_id: &str) -> PassOutcome {
    let state = core.sender.shop(shop_id);
    let mut state = state.lock().await;
    if let Some(until) = state.backoff_until {
        let now = Instant::now();
        if until > now {
            return PassOutcome {
                retry_in: Some(until - now),
                ..PassOutcome::default()
            };
        }
    }
    match run_pass(core, shop_id).await {
        Ok(outcome) => {
            state.failures = 0;
            state.backoff_until = None;
            outcome
        }
        Err(PassError::Busy) => PassOutcome {
            retry_in: Some(BUSY_RETRY),
            busy: true,
            ..PassOutcome::default()
        },
        Err(err) => {
            state.failures = state.failures.saturating_add(1);
            let wait = backoff_wait(
                state.failures,
                core.config.base_backoff(),
                core.config.max_backoff(),
                err.retry_after(),
            );
            tracing::warn!(shop = shop_id, error = %err, ?wait, failures = state.failures, "sender pass failed; backing off");
            state.backoff_until = Some(Instant::now() + wait);
            PassOutcome {
                retry_in: Some(wait),
                ..PassOutcome::default()
            }
        }
    }
}

async fn run_pass(core: &Core, shop_id: &str) -> Result<PassOutcome, PassError> {
    let view = match core.settings.get(shop_id).await? {
        Lookup::Known(view) if view.policy.enabled => view,
        // R6: a shop that is not enabled is never touched; its work waits.
        _ => return Ok(PassOutcome::default()),
    };
    let Some(lock) = ShopLock::acquire(&core.pool, shop_id).await? else {
        return Err(PassError::Busy);
    };
    let result = locked_pass(core, shop_id, &view).await;
    lock.release().await;
    result
}

async fn locked_pass(
    core: &Core,
    shop_id: &str,
    view: &ShopView,
) -> Result<PassOutcome, PassError> {
    let wms = core.wms.get(shop_id).await?;
    let wms = wms.as_ref();
    reconcile::resolve_in_doubt(core, shop_id, wms, view).await?;

    let mut more = false;
    if view.policy.shipment_instructions {
        let batch = core.config.batch_size().min(wms.limits().register_batch);
        for round in 0.. {
            if core.shutdown.is_cancelled() {
                break;
            }
            if round == MAX_BATCHES_PER_PASS {
                more = true;
                break;
            }
            let claimed = register::claim(core, shop_id, wms, view, batch).await?;
            if !claimed.instructions.is_empty() {
                register::register(
                    core,
                    shop_id,
                    wms,
                    view,
                    claimed.instructions,
                    &claimed.claims,
                )
                .await?;
            }
            if claimed.total < batch {
                break;
            }
        }
    }
    cancel::cancel_requested(core, shop_id, wms).await?;
    let due_in = crate::store::next_search(&core.pool, shop_id)
        .await?
        .map(|at| (at - chrono::Utc::now()).to_std().unwrap_or_default());
    Ok(PassOutcome {
        more,
        due_in,
        ..PassOutcome::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_up_to_the_cap_unless_the_wms_says_how_long() {
        let (base, max) = (Duration::from_secs(1), Duration::from_secs(60));
        let waits: Vec<u64> = (1..=8)
            .map(|failures| backoff_wait(failures, base, max, None).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(
            backoff_wait(40, base, max, None),
            max,
            "many failures never overflow"
        );
        assert_eq!(
            backoff_wait(1, base, max, Some(Duration::from_secs(7))),
            Duration::from_secs(7),
            "a 429's Retry-After wins, even over the cap"
        );
        assert_eq!(
            backoff_wait(3, base, max, Some(Duration::ZERO)),
            Duration::from_millis(100)
        );
    }
}
