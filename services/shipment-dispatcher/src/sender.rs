//! The per-shop sender: registrations in batches and cancellations, one pass at a time per shop
//! across replicas (a PostgreSQL advisory lock held for the pass), woken after commits and by
//! the periodic sweep.
//!
//! A pass, with the shop's lock held:
//! 1. resolves every `SENDING` shipment by searching the WMS (nothing is in flight for the
//!    shop, so every one of them is in doubt);
//! 2. claims up to `batch_size` `QUEUED` shipments, builds their rows (unbuildable ones go to
//!    `ERROR` naming what is missing), commits them `SENDING` **before** the call, registers
//!    them in one call and settles each from the per-row answer; repeats while full batches
//!    come;
//! 3. sends the cancellations of `CANCEL_REQUESTED` shipments.
//!
//! A WMS that is down or rate limited puts the batch back to `QUEUED` and the shop into
//! back-off (the `Retry-After` of a 429 is honoured, and the shared limiter is pushed back by
//! the client); an unknown outcome or `E_DUPLICATE` is resolved by a search at once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};
use tokio::sync::Mutex as AsyncMutex;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wmslink_wms_client::{RowOutcome, ShipmentInstruction, WmsClient, WmsError};

use crate::core::Core;
use crate::metrics::{self, QueueGauges};
use crate::reconciler::{self, Settle};
use crate::rows;
use crate::settings::{Lookup, SettingsError, ShopView};
use crate::snapshot;
use crate::state_machine::{Input, Status};
use crate::store::{self, History};
use crate::wms::ClientError;

/// Namespace of the per-shop advisory locks (`pg_try_advisory_lock(NS, hashtext(shop))`).
const SHOP_LOCK_NAMESPACE: i32 = 7_262_101;
/// Batches one pass sends before it lets cancellations and other shops have a turn.
const MAX_BATCHES_PER_PASS: usize = 10;
/// How long a pass waits before trying again when another replica holds the shop.
const BUSY_RETRY: Duration = Duration::from_millis(500);
/// Passes of different shops running at once (each holds a pooled connection for its lock).
const MAX_PARALLEL_SHOPS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("another sender holds the shop")]
    Busy,
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("WMS: {message}")]
    Wms {
        message: String,
        retry_after: Option<Duration>,
    },
}

impl PassError {
    pub fn wms(err: WmsError) -> Self {
        Self::Wms {
            message: err.to_string(),
            retry_after: err.retry_after(),
        }
    }
}

/// What a pass asks of the scheduler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassOutcome {
    /// Full batches were sent and more may be queued: run again at once.
    pub more: bool,
    /// The shop is backing off (or busy elsewhere): run again after this.
    pub retry_in: Option<Duration>,
    /// Another replica held the shop.
    pub busy: bool,
}

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

/// Runs passes for woken shops until `shutdown`; then lets the passes in flight finish (for a
/// while) and aborts the rest, which leaves their shipments `SENDING`, resolved next start.
pub async fn run_scheduler(
    core: Arc<Core>,
    mut wake_rx: mpsc::UnboundedReceiver<String>,
    shutdown: CancellationToken,
) {
    let linger = core.config.linger();
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
            if running.len() >= MAX_PARALLEL_SHOPS {
                break;
            }
            due.remove(&shop);
            let core = core.clone();
            let name = shop.clone();
            let handle = passes.spawn(async move { pass(&core, &name).await });
            running.insert(handle.id(), shop);
        }
        // At capacity, only a finished pass or a wake-up can change anything.
        let next = if running.len() < MAX_PARALLEL_SHOPS {
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
                    None if again => Some(now + linger),
                    None => None,
                };
                if let Some(at) = at {
                    due.insert(shop, at);
                }
            }
            _ = sleep_until(next), if next.is_some() => {}
        }
    }
    let drain = async { while passes.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(10), drain)
        .await
        .is_err()
    {
        tracing::warn!(
            "sender passes still running at shutdown were aborted; their shipments are resolved at the next start"
        );
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
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
            let exponent = state.failures.saturating_sub(1).min(16);
            let mut wait = core
                .config
                .base_backoff()
                .saturating_mul(2u32.saturating_pow(exponent))
                .min(core.config.max_backoff());
            if let PassError::Wms {
                retry_after: Some(retry_after),
                ..
            } = &err
            {
                wait = (*retry_after).max(Duration::from_millis(100));
            }
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
    let client = core.wms.client(shop_id).await?;
    reconciler::resolve_in_doubt(core, shop_id, &client, view).await?;

    let mut more = false;
    if view.policy.shipment_instructions {
        let batch = core.config.batch_size();
        for round in 0.. {
            if core.shutdown.is_cancelled() {
                break;
            }
            if round == MAX_BATCHES_PER_PASS {
                more = true;
                break;
            }
            let claimed = claim(core, shop_id, view, batch).await?;
            if !claimed.rows.is_empty() {
                register(core, shop_id, &client, view, claimed.rows).await?;
            }
            if claimed.total < batch {
                break;
            }
        }
    }
    cancel_requested(core, shop_id, &client).await?;
    Ok(PassOutcome {
        more,
        ..PassOutcome::default()
    })
}

struct Claimed {
    /// Rows moved to SENDING with what will be sent.
    rows: Vec<ShipmentInstruction>,
    /// Rows taken off the queue (built or refused).
    total: usize,
}

/// Takes up to `batch` queued shipments: builds each row, moves the buildable ones to
/// `SENDING` and the others to `ERROR`, and commits before any call.
async fn claim(
    core: &Core,
    shop_id: &str,
    view: &ShopView,
    batch: usize,
) -> Result<Claimed, PassError> {
    let limit = i64::try_from(batch).unwrap_or(200);
    let mut tx = core.pool.begin().await?;
    let queued = store::lock_queued(&mut tx, shop_id, limit).await?;
    let total = queued.len();
    let mut rows = Vec::with_capacity(total);
    for mut row in queued {
        let built = snapshot::decode(&row.order_snapshot)
            .map_err(|err| rows::BuildError {
                problems: vec![format!("the stored order snapshot cannot be read: {err}")],
            })
            .and_then(|order| rows::build_row(&order, &view.detail));
        let history = match built {
            Ok(instruction) => {
                let line = row.apply(
                    Input::Claim,
                    format!(
                        "taken for registration (revision {}): {}",
                        row.order_revision,
                        rows::summarize(&instruction)
                    ),
                );
                row.sent_revision = Some(row.order_revision);
                row.sent_fingerprint = Some(row.content_fingerprint.clone());
                rows.push(instruction);
                line
            }
            Err(err) => {
                row.last_error = Some(err.to_string());
                row.apply(Input::BuildFailed, err.to_string())
            }
        };
        let history = match history {
            Ok(line) => vec![line],
            Err(refused) => vec![History::note(format!("internal: {refused}"))],
        };
        store::persist(&mut tx, &core.subjects, &mut row, &history, true).await?;
    }
    tx.commit().await?;
    core.relay.wake();
    Ok(Claimed { rows, total })
}

/// One registration call for claimed rows, then each row settled from the answer.
async fn register(
    core: &Core,
    shop_id: &str,
    client: &WmsClient,
    view: &ShopView,
    rows: Vec<ShipmentInstruction>,
) -> Result<(), PassError> {
    let order_nos: Vec<String> = rows.iter().map(|r| r.order_no.clone()).collect();
    let request = format!("POST /order/ (batch of {} rows)", rows.len());
    let summaries: HashMap<String, String> = rows
        .iter()
        .map(|r| (r.order_no.clone(), rows::summarize(r)))
        .collect();
    let request_of = |order_no: &str| {
        format!(
            "{request}: {}",
            summaries
                .get(order_no)
                .map(String::as_str)
                .unwrap_or(order_no)
        )
    };
    tracing::info!(
        shop = shop_id,
        rows = rows.len(),
        "registering shipment instructions"
    );
    match client.register_batch(&rows).await {
        Ok(results) => {
            let mut answers: HashMap<String, RowOutcome> = results
                .into_iter()
                .map(|r| (r.order_no, r.outcome))
                .collect();
            let mut duplicates = Vec::new();
            let mut tx = core.pool.begin().await?;
            for mut row in store::lock_many(&mut tx, shop_id, &order_nos).await? {
                if row.status != Status::Sending {
                    continue;
                }
                let Some(answer) = answers.remove(&row.order_no) else {
                    // No result for the row: leave it in doubt for the search below.
                    duplicates.push(row.order_no.clone());
                    continue;
                };
                let history = match answer {
                    RowOutcome::Registered { order_id } => {
                        let mut history = vec![History::wms_call(
                            request_of(&row.order_no),
                            format!("OK order_id {order_id}"),
                            "",
                        )];
                        history.extend(reconciler::settle(
                            &mut row,
                            Settle::Registered {
                                order_id,
                                wms: None,
                                reason: format!("registered in the WMS as order {order_id}"),
                            },
                            view,
                        ));
                        history
                    }
                    RowOutcome::Rejected { code, message, .. } if code == "E_DUPLICATE" => {
                        duplicates.push(row.order_no.clone());
                        vec![
                            History::wms_call(
                                request_of(&row.order_no),
                                format!("NG {code}: {message}"),
                                "",
                            ),
                            History::note(
                                "the WMS already has this order number: searching for it",
                            ),
                        ]
                    }
                    RowOutcome::Rejected { code, message, .. } => {
                        let reason = format!("the WMS refused the row: {code}: {message}");
                        let mut history = vec![History::wms_call(
                            request_of(&row.order_no),
                            format!("NG {code}: {message}"),
                            "",
                        )];
                        history.extend(reconciler::settle(
                            &mut row,
                            Settle::Failed { reason },
                            view,
                        ));
                        history
                    }
                };
                let publish = row.status != Status::Sending;
                store::persist(&mut tx, &core.subjects, &mut row, &history, publish).await?;
            }
            tx.commit().await?;
            core.relay.wake();
            if !duplicates.is_empty() {
                reconciler::resolve(
                    core,
                    shop_id,
                    client,
                    view,
                    &duplicates,
                    "after E_DUPLICATE",
                )
                .await?;
            }
            Ok(())
        }
        Err(err) if err.may_have_been_applied() => {
            tracing::warn!(shop = shop_id, error = %err, "registration outcome unknown; searching the WMS");
            let mut tx = core.pool.begin().await?;
            for mut row in store::lock_many(&mut tx, shop_id, &order_nos).await? {
                let history = [
                    History::wms_call(request_of(&row.order_no), "", err.to_string()),
                    History::note(
                        "the answer was lost: searching the WMS before anything is sent again",
                    ),
                ];
                store::persist(&mut tx, &core.subjects, &mut row, &history, false).await?;
            }
            tx.commit().await?;
            reconciler::resolve(
                core,
                shop_id,
                client,
                view,
                &order_nos,
                "after an unknown outcome",
            )
            .await
        }
        Err(err) if is_permanent_for_rows(&err) => {
            let reason = match &err {
                WmsError::Rejected { code, message, .. } => {
                    format!("the WMS refused the call: {code}: {message}")
                }
                other => other.to_string(),
            };
            settle_all(core, shop_id, view, &order_nos, |order_no| {
                (
                    History::wms_call(request_of(order_no), "", err.to_string()),
                    Settle::Failed {
                        reason: reason.clone(),
                    },
                )
            })
            .await?;
            Ok(())
        }
        Err(err) => {
            // Down, rate limited, or a problem a person must fix in the settings: the rows
            // wait in the queue, the shop backs off.
            settle_all(core, shop_id, view, &order_nos, |order_no| {
                (
                    History::wms_call(request_of(order_no), "", err.to_string()),
                    Settle::Requeue {
                        reason: format!("not registered, queued again: {err}"),
                        error: Some(err.to_string()),
                    },
                )
            })
            .await?;
            Err(PassError::wms(err))
        }
    }
}

/// The call was refused as a whole in a way that retrying the same rows cannot fix.
fn is_permanent_for_rows(err: &WmsError) -> bool {
    matches!(err, WmsError::Rejected { .. } | WmsError::InvalidRequest(_))
}

async fn settle_all(
    core: &Core,
    shop_id: &str,
    view: &ShopView,
    order_nos: &[String],
    outcome_of: impl Fn(&str) -> (History, Settle),
) -> Result<(), PassError> {
    let mut tx = core.pool.begin().await?;
    for mut row in store::lock_many(&mut tx, shop_id, order_nos).await? {
        if row.status != Status::Sending {
            continue;
        }
        let (call, outcome) = outcome_of(&row.order_no);
        let mut history = vec![call];
        history.extend(reconciler::settle(&mut row, outcome, view));
        store::persist(&mut tx, &core.subjects, &mut row, &history, true).await?;
    }
    tx.commit().await?;
    core.relay.wake();
    Ok(())
}

/// Sends the cancellation of every `CANCEL_REQUESTED` shipment of the shop.
async fn cancel_requested(core: &Core, shop_id: &str, client: &WmsClient) -> Result<(), PassError> {
    let rows = store::in_status(&core.pool, shop_id, Status::CancelRequested, 200).await?;
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
        let request = format!("GET /order_cancel/{order_id}");
        match client.cancel_order(order_id).await {
            Ok(()) => {
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
            Err(WmsError::Rejected { code, message, .. }) => {
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
                let lookup = format!("GET /order/{order_id}");
                match client.get_order(order_id).await {
                    Ok(order) if order.is_cancelled() => {
                        history.push(History::wms_call(lookup, "cancel_flag 1", ""));
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
                            format!(
                                "cancel_flag 0 (status {} {})",
                                order.status_id, order.status_name
                            ),
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
                        return Err(PassError::wms(read_err));
                    }
                }
            }
            Err(err) => return Err(PassError::wms(err)),
        }
    }
    Ok(())
}

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
    mut changed_rx: mpsc::UnboundedReceiver<String>,
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

/// The shop's sender lock: a session advisory lock on a dedicated pooled connection. Dropped
/// without [`release`](Self::release) (a cancelled pass), the connection is closed instead of
/// returned to the pool, which ends the session and so the lock.
struct ShopLock {
    conn: Option<PoolConnection<Postgres>>,
    shop_id: String,
}

impl ShopLock {
    async fn acquire(pool: &PgPool, shop_id: &str) -> Result<Option<Self>, sqlx::Error> {
        let mut conn = pool.acquire().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext($2))")
            .bind(SHOP_LOCK_NAMESPACE)
            .bind(shop_id)
            .fetch_one(&mut *conn)
            .await?;
        Ok(locked.then(|| Self {
            conn: Some(conn),
            shop_id: shop_id.to_owned(),
        }))
    }

    async fn release(mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1, hashtext($2))")
            .bind(SHOP_LOCK_NAMESPACE)
            .bind(&self.shop_id)
            .execute(&mut *conn)
            .await;
        if let Err(err) = unlocked {
            tracing::warn!(shop = %self.shop_id, error = %err, "cannot release the shop lock; closing its connection");
            drop(conn.detach());
        }
    }
}

impl Drop for ShopLock {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            drop(conn.detach());
        }
    }
}
