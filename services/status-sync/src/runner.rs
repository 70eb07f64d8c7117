//! One sync pass of one shop, under the shop's lease:
//!
//! 1. What changed since the start of the last successful search, minus the overlap (at most
//!    the sync period back), page by page (`Wms::changed_since`; COMMERCE ROBO:
//!    `update_date-gte`, 200 a page): what changed lately, watched or unknown.
//! 2. On a full pass, a look-up of the watched orders in the period that step 1 did not
//!    return, by the WMS's look-up batch (`Wms::lookup`; COMMERCE ROBO: `order_no-in`, 100 per
//!    call); one absent from the answer is a suspect.
//! 3. Suspects old enough (the grace time) that still hold become anomalies.
//!
//! Every page is stored in one transaction with the events it causes (outbox), so a pass
//! interrupted anywhere is simply done again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;
use wmslink_platform::nats::Subjects;
use wmslink_platform::outbox::{OutboxMessage, RelayWaker};
use wmslink_platform::shop::ShopId;
use wmslink_wms_client::WmsError;
use wmslink_wms_client::port::{Page, PageCursor, Wms};

use crate::anomalies;
use crate::config::SyncConfig;
use crate::errors::{ShopError, SyncError};
use crate::events;
use crate::model::{Observation, Period, WatchRow};
use crate::review::{self, Review, ReviewContext, Search};
use crate::shops::{Shop, ShopDirectory};
use crate::store::{RunRecord, Store};

/// Readings of the `update_date` changes in one pass while orders keep moving under the paging.
const MAX_READINGS: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Scheduled,
    Manual,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Manual => "manual",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassKind {
    /// The search of what changed since the last pass only.
    Incremental,
    /// The search of what changed, then a look-up of the watched orders it did not return.
    Full,
    /// A look-up of the watched orders of an explicit period.
    Period,
}

impl PassKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Incremental => "incremental",
            Self::Full => "full",
            Self::Period => "period",
        }
    }
    fn searches_updates(self) -> bool {
        self != Self::Period
    }
    fn asks_order_nos(self) -> bool {
        self != Self::Incremental
    }
}

/// Why a pass stopped early.
#[derive(Debug, thiserror::Error)]
enum PassFailure {
    #[error("{0}")]
    Wms(#[from] WmsError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("interrupted: {0}")]
    Interrupted(&'static str),
}

#[derive(Debug, Default)]
struct Stats {
    asked: u64,
    changed: u64,
    anomalies: u64,
    wms_calls: u64,
    errors: u64,
    last_error: String,
}

fn count(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Runs passes; shared by the scheduler and the gRPC `RunSync`.
pub struct Runner {
    store: Store,
    shops: Arc<ShopDirectory>,
    subjects: Subjects,
    sync: SyncConfig,
    relay: RelayWaker,
    /// Tells this replica's leases apart from the others'.
    replica: String,
}

struct PassState<'a> {
    shop_id: &'a ShopId,
    wms: &'a dyn Wms,
    ctx: ReviewContext,
    stats: Stats,
    /// Watched orders already seen in this pass.
    seen: HashSet<String>,
    token: CancellationToken,
    /// The `update_date` answer kept moving under the paging on every reading: the pass does
    /// not move the shop's cursor, so the next pass reads the same changes again.
    unsettled: bool,
}

impl Runner {
    pub fn new(
        store: Store,
        shops: Arc<ShopDirectory>,
        subjects: Subjects,
        sync: SyncConfig,
        relay: RelayWaker,
    ) -> Self {
        Self {
            store,
            shops,
            subjects,
            sync,
            relay,
            replica: Uuid::new_v4().simple().to_string(),
        }
    }

    pub fn sync_config(&self) -> &SyncConfig {
        &self.sync
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn shops(&self) -> &Arc<ShopDirectory> {
        &self.shops
    }

    fn holder(&self) -> String {
        format!("{}:{}", self.replica, Uuid::new_v4().simple())
    }

    /// E3: a pass now. `period`: only a look-up of the watched orders dated in it;
    /// `None`: a full pass over the sync period. Waits a while for a running pass of the shop.
    pub async fn run_manual(
        &self,
        shop_id: &ShopId,
        period: Option<Period>,
        shutdown: CancellationToken,
    ) -> Result<RunRecord, SyncError> {
        let shop = self.shops.get(shop_id).await?;
        let Some(wms) = shop.syncable() else {
            return Err(SyncError::NotSyncable(shop_id.to_string()));
        };
        let holder = self.holder();
        let deadline = tokio::time::Instant::now() + self.sync.manual_wait();
        while !self
            .store
            .try_lease(shop_id.as_str(), &holder, self.sync.lease_ttl())
            .await?
        {
            if tokio::time::Instant::now() >= deadline || shutdown.is_cancelled() {
                return Err(SyncError::Busy(shop_id.to_string()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let result = self
            .leased_pass(&shop, wms, Trigger::Manual, period, &holder, shutdown)
            .await;
        self.release(shop_id, &holder).await;
        Ok(result?.0)
    }

    /// E1: the scheduled pass of a due shop, if this replica gets its lease. Never fails:
    /// whatever goes wrong postpones the shop's next pass.
    pub async fn run_scheduled(&self, shop_id: &str, shutdown: CancellationToken) {
        let Ok(shop_id) = ShopId::parse(shop_id) else {
            tracing::warn!(shop = shop_id, "not a valid shop id; ignored");
            self.postpone(shop_id, Duration::from_secs(24 * 3600), false)
                .await;
            return;
        };
        let shop = match self.shops.get(&shop_id).await {
            Ok(shop) => shop,
            Err(ShopError::Unknown(_)) => {
                self.postpone(shop_id.as_str(), self.sync.interval(), false)
                    .await;
                return;
            }
            Err(err) => {
                let failures = self.failures(&shop_id).await;
                tracing::warn!(shop = %shop_id, error = %err, failures, "cannot sync the shop now");
                self.postpone(
                    shop_id.as_str(),
                    self.sync.retry_delay(failures, None),
                    true,
                )
                .await;
                return;
            }
        };
        let Some(wms) = shop.syncable() else {
            self.postpone(shop_id.as_str(), self.sync.interval(), false)
                .await;
            return;
        };
        let holder = self.holder();
        match self
            .store
            .try_lease(shop_id.as_str(), &holder, self.sync.lease_ttl())
            .await
        {
            Ok(true) => {}
            Ok(false) => return, // another replica (or a manual run) has it
            Err(err) => {
                tracing::warn!(shop = %shop_id, error = %err, "lease");
                return;
            }
        }
        // Another replica may have finished a pass between the due check and the lease.
        let still_due = match self.store.cursor(shop_id.as_str()).await {
            Ok(cursor) => cursor.next_due_at.is_none_or(|at| at <= Utc::now()),
            Err(err) => {
                tracing::warn!(shop = %shop_id, error = %err, "cursor");
                false
            }
        };
        if still_due
            && let Err(err) = self
                .leased_pass(&shop, wms, Trigger::Scheduled, None, &holder, shutdown)
                .await
        {
            tracing::warn!(shop = %shop_id, error = %err, "sync pass not recorded");
        }
        self.release(&shop_id, &holder).await;
    }

    async fn failures(&self, shop_id: &ShopId) -> u32 {
        self.store
            .cursor(shop_id.as_str())
            .await
            .map(|cursor| {
                u32::try_from(cursor.failures)
                    .unwrap_or(0)
                    .saturating_add(1)
            })
            .unwrap_or(1)
    }

    async fn postpone(&self, shop_id: &str, delay: Duration, failed: bool) {
        if let Err(err) = self.store.postpone(shop_id, delay, failed).await {
            tracing::warn!(shop = shop_id, error = %err, "cannot postpone the next pass");
        }
    }

    async fn release(&self, shop_id: &ShopId, holder: &str) {
        if let Err(err) = self.store.release_lease(shop_id.as_str(), holder).await {
            // It expires by itself.
            tracing::warn!(shop = %shop_id, error = %err, "cannot release the lease");
        }
    }

    /// A pass with the lease held: records the run, renews the lease while it runs, and
    /// updates the shop's cursor. Returns the run and the wait the WMS asked for, if any.
    async fn leased_pass(
        &self,
        shop: &Shop,
        wms: &dyn Wms,
        trigger: Trigger,
        explicit: Option<Period>,
        holder: &str,
        shutdown: CancellationToken,
    ) -> Result<(RunRecord, Option<Duration>), sqlx::Error> {
        let run_id = Uuid::now_v7();
        let span = tracing::info_span!(
            "sync_pass",
            shop = %shop.shop_id,
            run_id = %run_id,
            trigger = trigger.as_str(),
            pass = tracing::field::Empty,
        );
        self.pass(run_id, shop, wms, trigger, explicit, holder, shutdown)
            .instrument(span)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn pass(
        &self,
        run_id: Uuid,
        shop: &Shop,
        wms: &dyn Wms,
        trigger: Trigger,
        explicit: Option<Period>,
        holder: &str,
        shutdown: CancellationToken,
    ) -> Result<(RunRecord, Option<Duration>), sqlx::Error> {
        let shop_id = &shop.shop_id;
        let closed = self.store.close_interrupted_runs(shop_id.as_str()).await?;
        if closed > 0 {
            tracing::info!(shop = %shop_id, closed, "closed runs interrupted earlier");
        }
        let cursor = self.store.cursor(shop_id.as_str()).await?;
        // Times as PostgreSQL stores them (microseconds), so answers and listings agree.
        let started_at = Utc::now().trunc_subsecs(6);
        let kind = match (trigger, explicit) {
            (_, Some(_)) => PassKind::Period,
            (Trigger::Manual, None) => PassKind::Full,
            (Trigger::Scheduled, None) => {
                let every = i32::try_from(self.sync.full_pass_every).unwrap_or(i32::MAX);
                if cursor.last_full_at.is_none()
                    || cursor.passes_since_full.saturating_add(1) >= every
                {
                    PassKind::Full
                } else {
                    PassKind::Incremental
                }
            }
        };
        let period =
            explicit.unwrap_or_else(|| Period::last_days(started_at, shop.sync_period_days));
        tracing::Span::current().record("pass", kind.as_str());
        let mut run = RunRecord {
            run_id,
            shop_id: shop_id.to_string(),
            trigger: trigger.as_str().to_owned(),
            pass: kind.as_str().to_owned(),
            outcome: "running".to_owned(),
            period_from: period.from,
            period_to: period.to,
            started_at,
            finished_at: None,
            asked: 0,
            changed: 0,
            anomalies: 0,
            wms_calls: 0,
            errors: 0,
            last_error: String::new(),
        };
        self.store.insert_run(&run).await?;

        let token = shutdown.child_token();
        let mut state = PassState {
            shop_id,
            wms,
            ctx: ReviewContext {
                now: started_at,
                period,
                shipped_watch: self.sync.shipped_watch(),
                wms_order_no_prefix: shop.wms_order_no_prefix.clone(),
            },
            stats: Stats::default(),
            seen: HashSet::new(),
            token: token.clone(),
            unsettled: false,
        };
        let since = kind.searches_updates().then(|| {
            let overlap =
                chrono::Duration::from_std(self.sync.overlap()).unwrap_or(chrono::Duration::zero());
            cursor
                .updated_since
                .map_or(period.from, |last| (last - overlap).max(period.from))
        });
        let outcome = {
            let pass = self.execute(&mut state, kind, since, run.run_id);
            tokio::pin!(pass);
            let renew_every = self.sync.lease_ttl() / 3;
            loop {
                tokio::select! {
                    outcome = &mut pass => break outcome,
                    _ = tokio::time::sleep(renew_every) => {
                        match self.store.try_lease(shop_id.as_str(), holder, self.sync.lease_ttl()).await {
                            Ok(true) => {}
                            Ok(false) => {
                                tracing::warn!("lost the shop's lease; stopping the pass");
                                token.cancel();
                            }
                            Err(err) => tracing::warn!(error = %err, "cannot renew the lease"),
                        }
                    }
                }
            }
        };
        self.relay.wake();

        let stats = state.stats;
        let searched_updates = kind.searches_updates() && !state.unsettled;
        run.asked = count(stats.asked);
        run.changed = count(stats.changed);
        run.anomalies = count(stats.anomalies);
        run.wms_calls = count(stats.wms_calls);
        run.errors = count(stats.errors);
        run.last_error = stats.last_error;
        run.finished_at = Some(Utc::now().trunc_subsecs(6));
        let retry_after = match &outcome {
            Ok(()) => {
                run.outcome = "succeeded".to_owned();
                None
            }
            Err(failure) => {
                run.outcome = "failed".to_owned();
                if !matches!(failure, PassFailure::Wms(_)) {
                    run.errors = run.errors.saturating_add(1);
                    run.last_error = failure.to_string();
                }
                match failure {
                    PassFailure::Wms(err) => err.retry_after(),
                    _ => None,
                }
            }
        };
        self.store.finish_run(&run).await?;
        match &outcome {
            Ok(()) => {
                tracing::info!(
                    asked = run.asked,
                    changed = run.changed,
                    anomalies = run.anomalies,
                    wms_calls = run.wms_calls,
                    "sync pass done"
                );
                let next = (trigger == Trigger::Scheduled).then(|| self.sync.interval());
                self.store
                    .pass_succeeded(
                        shop_id.as_str(),
                        started_at,
                        searched_updates,
                        kind == PassKind::Full,
                        next,
                    )
                    .await?;
            }
            Err(failure) => {
                tracing::warn!(error = %failure, errors = run.errors, "sync pass failed");
                if trigger == Trigger::Scheduled {
                    let failures = u32::try_from(cursor.failures)
                        .unwrap_or(0)
                        .saturating_add(1);
                    self.store
                        .postpone(
                            shop_id.as_str(),
                            self.sync.retry_delay(failures, retry_after),
                            true,
                        )
                        .await?;
                }
            }
        }
        Ok((run, retry_after))
    }

    async fn execute(
        &self,
        state: &mut PassState<'_>,
        kind: PassKind,
        since: Option<DateTime<Utc>>,
        run_id: Uuid,
    ) -> Result<(), PassFailure> {
        if let Some(since) = since {
            // Paging by offset over a moving answer can skip an order: when an order the pass
            // already read changes, a WMS that answers in `update_date` order moves it to the
            // end and every order behind it one place forward, across a page boundary. Seeing
            // an order again with another `update_date` is the sign: then the changes are read
            // again until a reading sees none move (at most `MAX_READINGS` times).
            let mut readings = 0;
            loop {
                readings += 1;
                if !self.read_changes(state, since).await? {
                    break;
                }
                if readings >= MAX_READINGS {
                    tracing::warn!(shop = %state.shop_id, readings, "orders kept changing while the changes were paged; the next pass reads them again from the same time");
                    state.unsettled = true;
                    break;
                }
                tracing::info!(shop = %state.shop_id, readings, "orders changed while the changes were paged; reading them again");
            }
        }

        if kind.asks_order_nos() {
            let watched = self
                .store
                .watched_in_period(
                    state.shop_id.as_str(),
                    &state.ctx.period,
                    state.ctx.now,
                    state.ctx.shipped_watch,
                )
                .await?;
            let to_ask: Vec<String> = watched
                .into_iter()
                .map(|row| row.order_no)
                .filter(|order_no| !state.seen.contains(order_no))
                .collect();
            for chunk in to_ask.chunks(state.wms.limits().lookup_batch.max(1)) {
                state.stats.asked += chunk.len() as u64;
                let mut orders = Vec::new();
                let mut cursor = PageCursor::FIRST;
                loop {
                    let page = self.call(state, Ask::OrderNos(chunk), cursor).await?;
                    orders.extend(page.orders);
                    match page.next {
                        Some(next) => cursor = next,
                        None => break,
                    }
                }
                // Fresh rows: the dispatcher may have moved some since the list was read.
                let rows = self.store.rows_for(state.shop_id.as_str(), chunk).await?;
                let review = review::review(&rows, &orders, Search::OrderNos(chunk), &state.ctx);
                self.save(state, &rows, &review).await?;
            }
        }

        if kind.asks_order_nos() {
            self.reconcile(state).await?;
        }

        state.stats.anomalies += anomalies::settle_suspects(
            &self.store,
            &self.subjects,
            state.shop_id,
            self.sync.anomaly_grace(),
            run_id,
        )
        .await?;
        Ok(())
    }

    /// One reading of the changes since `since`, page by page. Returns whether an order came
    /// back twice with different `update_date`s (it changed during the reading, so an order
    /// behind it may have been skipped).
    async fn read_changes(
        &self,
        state: &mut PassState<'_>,
        since: DateTime<Utc>,
    ) -> Result<bool, PassFailure> {
        let mut dates: HashMap<i64, DateTime<Utc>> = HashMap::new();
        let mut moved = false;
        let mut cursor = PageCursor::FIRST;
        loop {
            let page = self.call(state, Ask::ChangedSince(since), cursor).await?;
            for order in &page.orders {
                if let Some(before) = dates.insert(order.order_id, order.updated_at) {
                    moved |= before != order.updated_at;
                }
            }
            let mut order_nos: Vec<String> =
                page.orders.iter().map(|o| o.order_no.clone()).collect();
            order_nos.sort();
            order_nos.dedup();
            let rows = self
                .store
                .rows_for(state.shop_id.as_str(), &order_nos)
                .await?;
            let review = review::review(&rows, &page.orders, Search::UpdatedSince, &state.ctx);
            state.stats.asked += review.seen.len() as u64;
            self.save(state, &rows, &review).await?;
            match page.next {
                Some(next) => cursor = next,
                None => break,
            }
        }
        Ok(moved)
    }

    /// Publishes again each observation the dispatcher has not reflected a while after it was
    /// published (its `wms.{shop}.observed` may have been lost): R4 and the order list depend
    /// on it. Counted with the changed ones.
    async fn reconcile(&self, state: &mut PassState<'_>) -> Result<(), PassFailure> {
        let now = Utc::now();
        let published_before = now
            - chrono::Duration::from_std(self.sync.reconcile_after())
                .unwrap_or(chrono::Duration::zero());
        let rows = self
            .store
            .not_reflected(state.shop_id.as_str(), published_before)
            .await?;
        let messages: Vec<(&str, OutboxMessage)> = rows
            .iter()
            .filter_map(|row| {
                let observation = row.last.as_ref()?;
                let event = events::observed(state.shop_id, &row.order_no, observation, now);
                Some((
                    row.order_no.as_str(),
                    events::observed_message(
                        &self.subjects,
                        state.shop_id,
                        &event,
                        row.traceparent.as_deref(),
                    ),
                ))
            })
            .collect();
        if messages.is_empty() {
            return Ok(());
        }
        self.store
            .republish(state.shop_id.as_str(), now, &messages)
            .await?;
        tracing::info!(shop = %state.shop_id, count = messages.len(), "observations the dispatcher has not reflected published again");
        state.stats.changed += messages.len() as u64;
        self.relay.wake();
        Ok(())
    }

    /// Stores one review: changed observations with their events, the others' WMS update time,
    /// the suspects.
    async fn save(
        &self,
        state: &mut PassState<'_>,
        rows: &HashMap<String, WatchRow>,
        review: &Review,
    ) -> Result<(), PassFailure> {
        let now = Utc::now();
        let changed: Vec<(&str, &Observation, OutboxMessage)> = review
            .changed()
            .map(|seen| {
                let event = events::observed(state.shop_id, &seen.order_no, &seen.observation, now);
                let traceparent = rows
                    .get(&seen.order_no)
                    .and_then(|row| row.traceparent.as_deref());
                (
                    seen.order_no.as_str(),
                    &seen.observation,
                    events::observed_message(&self.subjects, state.shop_id, &event, traceparent),
                )
            })
            .collect();
        let unchanged: Vec<(&str, DateTime<Utc>)> = review
            .seen
            .iter()
            .filter(|seen| !seen.changed)
            .map(|seen| (seen.order_no.as_str(), seen.observation.wms_updated_at))
            .collect();
        self.store
            .save_review(
                state.shop_id.as_str(),
                now,
                &changed,
                &unchanged,
                &review.candidates,
            )
            .await?;
        state.stats.changed += changed.len() as u64;
        state
            .seen
            .extend(review.seen.iter().map(|seen| seen.order_no.clone()));
        if !changed.is_empty() {
            self.relay.wake();
        }
        Ok(())
    }

    /// One page of one search, retried on retryable errors (after the WMS's `Retry-After` when
    /// it gave one). Counts calls and errors.
    async fn call(
        &self,
        state: &mut PassState<'_>,
        ask: Ask<'_>,
        cursor: PageCursor,
    ) -> Result<Page, PassFailure> {
        let attempts = self.sync.call_attempts;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let result = tokio::select! {
                _ = state.token.cancelled() => return Err(PassFailure::Interrupted("shutdown or lease lost")),
                result = ask.page(state.wms, cursor) => result,
            };
            match result {
                Ok(page) => {
                    state.stats.wms_calls += 1;
                    return Ok(page);
                }
                Err(err) => {
                    if reached_the_wms(&err) {
                        state.stats.wms_calls += 1;
                    }
                    state.stats.errors += 1;
                    state.stats.last_error = err.to_string();
                    if !err.is_retryable() || attempt >= attempts {
                        return Err(err.into());
                    }
                    let wait = err.retry_after().unwrap_or_else(|| {
                        self.sync
                            .call_retry_base()
                            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(10)))
                    });
                    tracing::warn!(error = %err, attempt, ?wait, "WMS search failed; retrying");
                    tokio::select! {
                        _ = state.token.cancelled() => return Err(PassFailure::Interrupted("shutdown or lease lost")),
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }
}

/// What a pass asks the WMS.
#[derive(Debug, Clone, Copy)]
enum Ask<'a> {
    /// The orders changed since a time.
    ChangedSince(DateTime<Utc>),
    /// The orders with these order numbers (at most the WMS's look-up batch).
    OrderNos(&'a [String]),
}

impl Ask<'_> {
    async fn page(self, wms: &dyn Wms, cursor: PageCursor) -> Result<Page, WmsError> {
        match self {
            Ask::ChangedSince(since) => wms.changed_since(since, cursor).await,
            Ask::OrderNos(order_nos) => wms.lookup(order_nos, cursor).await,
        }
    }
}

/// Whether a failed call got as far as the WMS (for the call count).
fn reached_the_wms(err: &WmsError) -> bool {
    !matches!(
        err,
        WmsError::Limiter(_)
            | WmsError::PolicyRefused(_)
            | WmsError::Config(_)
            | WmsError::InvalidRequest(_)
            | WmsError::Unreachable(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_calls_that_left_count() {
        assert!(reached_the_wms(&WmsError::Timeout));
        assert!(reached_the_wms(&WmsError::RateLimited {
            retry_after: Duration::from_secs(1)
        }));
        assert!(!reached_the_wms(&WmsError::Limiter("db down".into())));
        assert!(!reached_the_wms(&WmsError::Unreachable("refused".into())));
    }

    #[test]
    fn pass_kinds_say_what_they_ask() {
        assert!(
            PassKind::Incremental.searches_updates() && !PassKind::Incremental.asks_order_nos()
        );
        assert!(PassKind::Full.searches_updates() && PassKind::Full.asks_order_nos());
        assert!(!PassKind::Period.searches_updates() && PassKind::Period.asks_order_nos());
    }
}
