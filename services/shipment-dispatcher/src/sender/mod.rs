//! The per-shop sender: registrations in batches and cancellations, one pass at a time per shop
//! across replicas ([`shop_lock`]), woken after commits and by the periodic sweep
//! ([`scheduler`], [`sweep`]).
//!
//! A pass, with the shop's lock held ([`pass`]):
//! 1. [`reconcile`]: resolves the `SENDING` shipments whose search is due (claimed longer
//!    than the WMS request timeout plus a margin ago, or searched without a hit an interval
//!    ago) by searching the WMS; a miss keeps them in doubt;
//! 2. in turns, while either has more and for at most 20 s: [`register`] claims up to
//!    `batch_size` `QUEUED` shipments, builds their instructions (unbuildable ones go to
//!    `ERROR` naming what is missing), commits them `SENDING` **before** the call, registers
//!    them in one call and settles each from the per-row answer ([`crate::settle`]); then
//!    [`cancel`] sends up to 20 cancellations of `CANCEL_REQUESTED` shipments. The shop's
//!    settings are read again (from the cache) before each call: a shop disabled meanwhile
//!    stops sending at once.
//!
//! A WMS that is down or rate limited puts the batch back to `QUEUED` and the shop into
//! back-off (the `Retry-After` of a 429 is honoured, and the shared limiter is pushed back by
//! the WMS client); an already registered order number is resolved by a search at once; an
//! unknown outcome (timeout, reset, 5xx) keeps the rows `SENDING`, possibly in the WMS, until
//! a later search settles them ([`crate::settle`]). A pass that leaves searches pending asks
//! to run again when the first is due ([`PassOutcome::due_in`]).
//!
//! Back-off follows the failing thing: an order whose cancel keeps failing backs off on its
//! own (`cancel_after`), a search that fails moves only its rows' next search; the shop backs
//! off when a pass fails, from the bottom again after any progress. A 401 drops the shop's
//! cached WMS client and settings (a rotated key is picked up on the next pass).

pub mod cancel;
pub mod rebuild;
pub mod reconcile;
pub mod register;
pub mod scheduler;
pub mod shop_lock;
pub mod sweep;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::sync::{Mutex as AsyncMutex, Semaphore};
use tokio::time::Instant;
use tracing::Instrument as _;
use wmslink_platform::telemetry;

use crate::core::Core;
use crate::errors::PassError;
use crate::settings::{Lookup, ShopView};
use shop_lock::ShopLocks;
use wmslink_wms_client::WmsError;

/// How long one pass may go on before it lets other shops have a turn (it runs again at
/// once when work is left).
const MAX_PASS_DURATION: Duration = Duration::from_secs(20);
/// Cancellations sent per turn, between two registration batches.
const CANCELS_PER_TURN: usize = 20;
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
    /// Passes running at once in this process, from the scheduler and `RunDispatch` alike
    /// (`sender.max_parallel_shops`). A pass holds no pooled connection while it waits for
    /// the WMS: its lock is on the shared lock session, its transactions are short.
    slots: Semaphore,
    /// The shops' sender locks, all on one session.
    locks: ShopLocks,
}

impl Sender {
    /// A sender running at most `max_parallel_shops` passes at once, locking shops on a
    /// session of `pool`'s database.
    pub fn new(
        pool: &sqlx::PgPool,
        max_parallel_shops: usize,
    ) -> (Self, mpsc::UnboundedReceiver<String>) {
        let (wake_tx, wake_rx) = mpsc::unbounded_channel();
        (
            Self {
                wake_tx,
                shops: Mutex::new(HashMap::new()),
                slots: Semaphore::new(max_parallel_shops.max(1)),
                locks: ShopLocks::new(pool),
            },
            wake_rx,
        )
    }

    /// Shops whose sender lock this process holds now.
    pub async fn shops_locked(&self) -> usize {
        self.locks.held().await
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

/// The shop's count of failed passes after one more failed: back-off follows what keeps
/// failing, so a pass that got anything done starts it from the bottom again.
fn failures_after(failures: u32, progress: bool) -> u32 {
    if progress {
        1
    } else {
        failures.saturating_add(1)
    }
}

/// One pass for a shop (see the module docs). Never fails: trouble becomes back-off.
#[tracing::instrument(name = "sender_pass", skip(core))]
pub async fn pass(core: &Core, shop_id: &str) -> PassOutcome {
    // Only fails when the semaphore is closed, which it never is.
    let Ok(_slot) = core.sender.slots.acquire().await else {
        return PassOutcome::default();
    };
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
    let progress = Progress::default();
    match run_pass(core, shop_id, &progress).await {
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
            if let PassError::Wms(WmsError::Unauthorized) = err {
                // The key may have been rotated: build the shop's client again next time.
                core.wms.invalidate(shop_id);
                core.settings.invalidate(shop_id);
            }
            state.failures = failures_after(state.failures, progress.any());
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

async fn run_pass(
    core: &Core,
    shop_id: &str,
    progress: &Progress,
) -> Result<PassOutcome, PassError> {
    let view = match core.settings.get(shop_id).await? {
        Lookup::Known(view) if view.policy.enabled => view,
        // R6: a shop that is not enabled is never touched; its work waits.
        _ => return Ok(PassOutcome::default()),
    };
    let Some(lock) = core.sender.locks.acquire(shop_id).await? else {
        return Err(PassError::Busy);
    };
    let result = locked_pass(core, shop_id, &view, progress).await;
    lock.release().await;
    result
}

/// Whether the shop is still enabled (and sending shipment instructions when `registering`),
/// read from the settings cache before each WMS call: disabling a shop stops its sending
/// before the next call (R6).
pub(crate) async fn still_enabled(core: &Core, shop_id: &str, registering: bool) -> bool {
    match core.settings.get(shop_id).await {
        Ok(Lookup::Known(view)) => {
            view.policy.enabled && (!registering || view.policy.shipment_instructions)
        }
        Ok(Lookup::Unknown) => false,
        // The settings service out of reach: the cache keeps what it knew; go on.
        Err(_) => true,
    }
}

async fn locked_pass(
    core: &Core,
    shop_id: &str,
    view: &ShopView,
    progress: &Progress,
) -> Result<PassOutcome, PassError> {
    let wms = core.wms.get(shop_id).await?;
    let wms = wms.as_ref();
    let deadline = Instant::now() + MAX_PASS_DURATION;
    reconcile::resolve_in_doubt(core, shop_id, wms, view).await?;

    // Registrations and cancellations take turns, so neither holds the other up; the pass
    // ends when neither has more, or at its deadline (then it runs again at once).
    let batch = core.config.batch_size().min(wms.limits().register_batch);
    let mut more = false;
    loop {
        if core.shutdown.is_cancelled() {
            break;
        }
        if Instant::now() >= deadline {
            more = true;
            break;
        }
        let mut again = false;
        if view.policy.shipment_instructions && still_enabled(core, shop_id, true).await {
            let claimed = register::claim(core, shop_id, wms, view, batch).await?;
            if !claimed.instructions.is_empty() {
                // The call continues the trace of the batch's first order and links the
                // others', so every order's trace reaches the WMS call that carried it.
                let span = tracing::info_span!(
                    "register_batch",
                    shop = shop_id,
                    rows = claimed.instructions.len()
                );
                telemetry::continue_traces(&span, claimed.traceparents.iter().map(String::as_str));
                register::register(
                    core,
                    shop_id,
                    wms,
                    view,
                    claimed.instructions,
                    &claimed.claims,
                )
                .instrument(span)
                .await?;
                progress.made();
            }
            again |= claimed.total == batch;
        }
        let cancels =
            cancel::cancel_requested(core, shop_id, wms, CANCELS_PER_TURN, progress).await?;
        again |= cancels == CANCELS_PER_TURN;
        if !again {
            break;
        }
    }
    let due_in = crate::store::next_search(&core.pool, shop_id)
        .await?
        .map(|at| (at - chrono::Utc::now()).to_std().unwrap_or_default());
    Ok(PassOutcome {
        more,
        due_in,
        ..PassOutcome::default()
    })
}

/// Whether a pass got anything done (a registration answered, a cancellation settled): a
/// pass that made progress and then failed backs the shop off from the start again.
#[derive(Debug, Default)]
pub struct Progress(AtomicBool);

impl Progress {
    pub fn made(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
    fn any(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_progress_starts_the_shop_back_off_from_the_bottom() {
        assert_eq!(failures_after(0, false), 1);
        assert_eq!(failures_after(6, false), 7);
        assert_eq!(failures_after(6, true), 1, "a pass that got work done");
        assert_eq!(failures_after(u32::MAX, false), u32::MAX);
    }

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
