//! Named tasks under one failure policy: a task that fails (returns an error, panics, or ends
//! before the service stops) is restarted after a back-off that doubles per failure up to a cap.
//! While a *required* task is down (and until it is ready at start) the service reports
//! `NOT_SERVING`; a *background* task (housekeeping) is restarted the same way without touching
//! health.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use futures::FutureExt;
use futures::future::BoxFuture;
use sqlx::PgPool;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::health::Health;
use crate::consumer::{self, BatchHandler, ConsumerSpec, Handler};
use crate::nats::Subjects;
use crate::outbox::{self, OutboxRelay};

/// Why a task stopped.
pub type TaskError = Box<dyn std::error::Error + Send + Sync>;

type RunFn = Arc<dyn Fn(TaskContext) -> BoxFuture<'static, Result<(), TaskError>> + Send + Sync>;
type StopHook = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// How long the outbox's final flush may take at shutdown, after the drain.
pub const FINAL_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// How often published outbox rows and old processed-message ids are pruned.
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// One long-running piece of a service (a consumer, the outbox relay, a sweeper, …).
pub struct Task {
    pub(super) name: String,
    pub(super) required: bool,
    signals_ready: bool,
    run: RunFn,
    pub(super) after_stop: Option<StopHook>,
}

/// What a running task is given.
#[derive(Clone)]
pub struct TaskContext {
    stop: CancellationToken,
    health: Option<Health>,
    key: String,
}

impl TaskContext {
    /// Cancelled when the service stops: finish or release what is in flight, then return.
    pub fn stop(&self) -> &CancellationToken {
        &self.stop
    }

    /// Marks the task ready (for a task built with [`Task::signals_ready`]; others are ready
    /// when they start).
    pub async fn ready(&self) {
        if let Some(health) = &self.health {
            health.up(&self.key).await;
        }
    }
}

impl Task {
    fn new<F, Fut>(name: impl Into<String>, required: bool, run: F) -> Self
    where
        F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), TaskError>> + Send + 'static,
    {
        Self {
            name: name.into(),
            required,
            signals_ready: false,
            run: Arc::new(move |ctx| Box::pin(run(ctx))),
            after_stop: None,
        }
    }

    /// A task the service cannot work without: `NOT_SERVING` while it is down. `run` is called
    /// again for every restart.
    pub fn required<F, Fut>(name: impl Into<String>, run: F) -> Self
    where
        F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), TaskError>> + Send + 'static,
    {
        Self::new(name, true, run)
    }

    /// Housekeeping: restarted like the others, but health does not depend on it.
    pub fn background<F, Fut>(name: impl Into<String>, run: F) -> Self
    where
        F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), TaskError>> + Send + 'static,
    {
        Self::new(name, false, run)
    }

    /// The task says itself when it is ready ([`TaskContext::ready`], e.g. once its consumer is
    /// set up), instead of being ready as soon as it starts.
    pub fn signals_ready(mut self) -> Self {
        self.signals_ready = true;
        self
    }

    /// Runs `hook` once at shutdown, after every task has stopped (or was aborted).
    pub fn after_stop<F, Fut>(mut self, hook: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.after_stop = Some(Box::new(move || Box::pin(hook())));
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A durable JetStream consumer: set up (ready once it is), then consuming until the
    /// service stops. A consumer that cannot be set up is retried like any failed task.
    pub fn consumer<H: Handler>(
        js: jetstream::Context,
        subjects: Subjects,
        spec: ConsumerSpec,
        handler: H,
    ) -> Self {
        let name = format!("consumer {}", spec.durable_name);
        let shared = Arc::new((js, subjects, spec, handler));
        Self::required(name, move |ctx| {
            let shared = shared.clone();
            async move {
                let (js, subjects, spec, handler) = &*shared;
                consumer::run(js, subjects, spec, handler, ctx.stop(), ctx.ready()).await?;
                Ok(())
            }
        })
        .signals_ready()
    }

    /// Like [`Task::consumer`], with a handler that takes the messages already delivered
    /// together, up to the spec's `max_batch` ([`consumer::run_batched`]).
    pub fn batch_consumer<H: BatchHandler>(
        js: jetstream::Context,
        subjects: Subjects,
        spec: ConsumerSpec,
        handler: H,
    ) -> Self {
        let name = format!("consumer {}", spec.durable_name);
        let shared = Arc::new((js, subjects, spec, handler));
        Self::required(name, move |ctx| {
            let shared = shared.clone();
            async move {
                let (js, subjects, spec, handler) = &*shared;
                consumer::run_batched(js, subjects, spec, handler, ctx.stop(), ctx.ready()).await?;
                Ok(())
            }
        })
        .signals_ready()
    }

    /// The outbox relay, and at shutdown (after the other tasks, which may still have
    /// enqueued events) a final flush of what the outbox holds, for at most
    /// [`FINAL_FLUSH_TIMEOUT`].
    pub fn outbox_relay(relay: OutboxRelay) -> Self {
        let last = relay.clone();
        Self::required("outbox relay", move |ctx| {
            let relay = relay.clone();
            async move {
                relay.run(ctx.stop().clone()).await;
                Ok(())
            }
        })
        .after_stop(move || async move {
            match last.flush(FINAL_FLUSH_TIMEOUT).await {
                Ok(published) => tracing::info!(published, "final outbox flush"),
                Err(err) => tracing::warn!(error = %err, "final outbox flush failed; the rest goes out at the next start"),
            }
        })
    }

    /// Prunes the platform's tables at start and every [`PRUNE_EVERY`]: published outbox rows
    /// older than `keep_published`, and (for a service with consumers) processed message ids
    /// older than `keep_processed`.
    pub fn pruner(
        pool: PgPool,
        keep_published: Duration,
        keep_processed: Option<Duration>,
    ) -> Self {
        Self::background("pruner", move |ctx| {
            let pool = pool.clone();
            async move {
                loop {
                    prune(&pool, keep_published, keep_processed).await;
                    tokio::select! {
                        _ = ctx.stop().cancelled() => return Ok(()),
                        _ = tokio::time::sleep(PRUNE_EVERY) => {}
                    }
                }
            }
        })
    }
}

/// One pruning pass (see [`Task::pruner`]); failures are logged and tried again next time.
pub async fn prune(pool: &PgPool, keep_published: Duration, keep_processed: Option<Duration>) {
    match outbox::prune(pool, keep_published).await {
        Ok(0) => {}
        Ok(deleted) => tracing::info!(deleted, "published outbox rows pruned"),
        Err(err) => tracing::warn!(error = %err, "outbox pruning failed"),
    }
    if let Some(keep) = keep_processed {
        match crate::db::prune_processed(pool, keep).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "processed message ids pruned"),
            Err(err) => tracing::warn!(error = %err, "processed message ids pruning failed"),
        }
    }
}

/// The health key of a task.
pub(super) fn health_key(name: &str) -> String {
    format!("task:{name}")
}

/// Runs `task` until `stop`, restarting it after each failure.
pub(super) async fn supervise(
    task: Task,
    stop: CancellationToken,
    health: Health,
    base: Duration,
    max: Duration,
) {
    let key = health_key(&task.name);
    let mut failures: u32 = 0;
    loop {
        let ctx = TaskContext {
            stop: stop.clone(),
            health: task.required.then(|| health.clone()),
            key: key.clone(),
        };
        if !task.signals_ready {
            ctx.ready().await;
        }
        let started = Instant::now();
        let outcome = AssertUnwindSafe((task.run)(ctx)).catch_unwind().await;
        if stop.is_cancelled() {
            if let Ok(Err(err)) = &outcome {
                tracing::warn!(task = %task.name, error = %err, "task ended with an error while stopping");
            }
            return;
        }
        let reason = match outcome {
            Ok(Ok(())) => "ended before the service stopped".to_owned(),
            Ok(Err(err)) => err.to_string(),
            Err(panic) => format!("panicked: {}", panic_message(panic.as_ref())),
        };
        // A task that ran well for a while starts its back-off afresh.
        if started.elapsed() >= max {
            failures = 0;
        }
        failures = failures.saturating_add(1);
        let wait = crate::backoff::delay(base, max, failures);
        tracing::error!(task = %task.name, %reason, failures, restart_in = ?wait, "task failed; restarting");
        if task.required {
            health
                .down(&key, format!("{reason} (restarting in {wait:?})"))
                .await;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    if let Some(text) = panic.downcast_ref::<&str>() {
        text
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text
    } else {
        "a panic"
    }
}
