//! The service runtime every wmslink service runs on (in the spirit of systeminit/si's graceful
//! shutdown groups):
//!
//! 1. [`Runtime::start`] binds the gRPC port and serves health (`NOT_SERVING`), reflection and
//!    the service's API ([`DeferredService`], `UNAVAILABLE` until it is installed) at once, and
//!    the dead-letter service for a service that consumes ([`Runtime::serve_dead_letters`]);
//! 2. [`Runtime::wait_for`] reaches each dependency (PostgreSQL, NATS, the settings service)
//!    with back-off, the service staying up and `NOT_SERVING` meanwhile, instead of exiting;
//! 3. [`Runtime::run`] runs the service's named [`Task`]s under one failure policy (restart with
//!    capped back-off, `NOT_SERVING` while a required task is down) and, on shutdown: health
//!    `NOT_SERVING`, the gRPC server stops taking calls and drains, tasks are cancelled and
//!    given `runtime.drain_timeout_ms` to finish (then aborted), and the after-stop hooks run
//!    (the outbox's final flush). The telemetry flush is the last step of `main`
//!    ([`crate::telemetry::TelemetryGuard::shutdown`]).

mod deferred;
mod health;
mod task;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tonic::body::Body;
use tonic::codegen::Service;
use tonic::server::NamedService;

pub use deferred::DeferredService;
pub use health::Health;
pub use task::{FINAL_FLUSH_TIMEOUT, PRUNE_EVERY, Task, TaskContext, TaskError, prune};

use crate::auth::AuthConfig;
use crate::config::{InvalidConfig, Validate, key};
use crate::dead_letters::{self, DeadLetterServer};
use crate::grpc::{self, GrpcConfig, GrpcError};

/// Health key while the service starts (until its tasks run).
const STARTING: &str = "starting";
/// Health key once it stops.
const STOPPING: &str = "stopping";

/// The `[runtime]` section of every service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RuntimeConfig {
    /// After SIGTERM, how long in-flight gRPC calls and tasks get to finish before they are
    /// aborted. In a service that calls the WMS it must be longer than `wms.request_timeout_ms`,
    /// so a WMS call in flight can finish and its answer be recorded.
    pub drain_timeout_ms: u64,
    /// First wait before trying an unreachable dependency again at start, or restarting a
    /// failed task; doubles per failure up to `retry_max_delay_ms`.
    pub retry_base_delay_ms: u64,
    pub retry_max_delay_ms: u64,
    /// `development` (default) or `production`. In production a service refuses to start with
    /// development secrets: the demo master key, inline master keys, a key file others can
    /// read, development or short tokens ([`crate::secrets::check_production`]).
    pub profile: Profile,
}

/// Which rules for secrets apply at start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    #[default]
    Development,
    Production,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            drain_timeout_ms: 30_000,
            retry_base_delay_ms: 500,
            retry_max_delay_ms: 30_000,
            profile: Profile::Development,
        }
    }
}

impl Validate for RuntimeConfig {
    fn check(&self, section: &str, problems: &mut InvalidConfig) {
        problems.check(
            self.drain_timeout_ms >= 1,
            key(section, "drain_timeout_ms"),
            "must be at least 1",
        );
        problems.check(
            self.retry_base_delay_ms >= 1,
            key(section, "retry_base_delay_ms"),
            "must be at least 1",
        );
        problems.check(
            self.retry_max_delay_ms >= self.retry_base_delay_ms,
            key(section, "retry_max_delay_ms"),
            "must be at least retry_base_delay_ms",
        );
    }
}

impl RuntimeConfig {
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }

    fn backoff(&self, failures: u32) -> Duration {
        crate::backoff::delay(
            Duration::from_millis(self.retry_base_delay_ms),
            Duration::from_millis(self.retry_max_delay_ms),
            failures,
        )
    }

    /// For a service that calls the WMS: the drain must outlast one WMS request
    /// (`request_key`, e.g. `wms.request_timeout_ms`).
    pub fn check_drain_outlasts(
        &self,
        section: &str,
        request_key: &str,
        request_timeout_ms: u64,
        problems: &mut InvalidConfig,
    ) {
        problems.check(
            self.drain_timeout_ms > request_timeout_ms,
            key(section, "drain_timeout_ms"),
            format!(
                "must be longer than {request_key} ({request_timeout_ms}), so that a WMS call in \
                 flight at shutdown can finish"
            ),
        );
    }
}

/// Shutdown was asked for before the service was ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stopped before the service was ready")]
pub struct Stopped;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Grpc(#[from] GrpcError),
    #[error("the gRPC server stopped by itself")]
    ServerStopped,
    #[error("the gRPC server panicked: {0}")]
    ServerPanicked(String),
}

/// A service whose gRPC port is bound but which may still be waiting for its dependencies:
/// its address is known (health answers `NOT_SERVING`), [`ready`](Self::ready) finishes the
/// start.
pub struct Starting<T, E> {
    grpc_addr: SocketAddr,
    ready: BoxFuture<'static, Result<T, E>>,
}

impl<T, E> Starting<T, E> {
    pub fn new(
        grpc_addr: SocketAddr,
        ready: impl Future<Output = Result<T, E>> + Send + 'static,
    ) -> Self {
        Self {
            grpc_addr,
            ready: Box::pin(ready),
        }
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// Waits for the dependencies and sets the service up.
    pub async fn ready(self) -> Result<T, E> {
        self.ready.await
    }
}

/// A running service skeleton (see the module docs).
pub struct Runtime {
    service: &'static str,
    config: RuntimeConfig,
    grpc_addr: SocketAddr,
    health: Health,
    /// Cancelled when the process is asked to stop, or when the runtime stops on its own.
    stop: CancellationToken,
    server: AbortOnDropHandle<Result<(), GrpcError>>,
    /// `wmslink.ops.v1.DeadLetterService`: `UNAVAILABLE` until [`Self::serve_dead_letters`].
    dead_letters: DeferredService<DeadLetterServer>,
}

impl Runtime {
    /// Binds `grpc.listen_addr` and serves health (`NOT_SERVING`), reflection and `api`
    /// (`UNAVAILABLE` until set) until `shutdown` is cancelled. `service` names the service in
    /// logs.
    pub async fn start<S, B>(
        service: &'static str,
        config: &RuntimeConfig,
        grpc: &GrpcConfig,
        api: &DeferredService<S>,
        shutdown: &CancellationToken,
    ) -> Result<Self, GrpcError>
    where
        S: Service<http::Request<Body>, Response = http::Response<B>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        B: http_body::Body<Data = tonic::codegen::Bytes> + Send + 'static,
        B::Error: Into<tonic::codegen::StdError>,
    {
        let (listener, grpc_addr) = grpc::bind(grpc).await?;
        let (routes, reporter) = grpc::base_routes(grpc)?;
        let dead_letters = DeferredService::new();
        let routes = routes
            .add_service(api.clone())
            .add_service(dead_letters.clone());
        let health = Health::new(
            reporter,
            &[<DeferredService<S> as NamedService>::NAME],
            (STARTING, "waiting for dependencies"),
        )
        .await;
        let stop = shutdown.child_token();
        let server = AbortOnDropHandle::new(tokio::spawn({
            let (grpc, stop) = (grpc.clone(), stop.clone());
            async move { grpc::serve(listener, routes, &grpc, stop).await }
        }));
        tracing::info!(service, %grpc_addr, "listening (NOT_SERVING until ready)");
        Ok(Self {
            service,
            config: config.clone(),
            grpc_addr,
            health,
            stop,
            server,
            dead_letters,
        })
    }

    /// Answers `wmslink.ops.v1.DeadLetterService` (scope `operate`) over the dead-letter stream
    /// of `subjects`' prefix: the services that consume call it once NATS is reached.
    pub fn serve_dead_letters(
        &self,
        js: async_nats::jetstream::Context,
        subjects: crate::nats::Subjects,
        auth: &AuthConfig,
    ) {
        self.dead_letters
            .set(dead_letters::service(js, subjects, auth));
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    /// A token cancelled when the service stops (for work that is not a task, such as a pass
    /// started by a gRPC call).
    pub fn stopping(&self) -> CancellationToken {
        self.stop.child_token()
    }

    /// Tries `attempt` until it succeeds, waiting with back-off between failures (logged, and
    /// `NOT_SERVING` meanwhile). Fails only when the service is asked to stop first.
    pub async fn wait_for<T, E, F, Fut>(
        &self,
        dependency: &str,
        mut attempt: F,
    ) -> Result<T, Stopped>
    where
        E: std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let key = format!("dependency:{dependency}");
        let mut failures: u32 = 0;
        loop {
            let outcome = tokio::select! {
                _ = self.stop.cancelled() => return Err(Stopped),
                outcome = attempt() => outcome,
            };
            match outcome {
                Ok(value) => {
                    if failures > 0 {
                        tracing::info!(dependency, failures, "dependency reached");
                        self.health.up(&key).await;
                    }
                    return Ok(value);
                }
                Err(err) => {
                    failures = failures.saturating_add(1);
                    let wait = self.config.backoff(failures);
                    tracing::warn!(dependency, error = %err, failures, retry_in = ?wait, "dependency unavailable; waiting for it");
                    self.health.down(&key, err.to_string()).await;
                    tokio::select! {
                        _ = self.stop.cancelled() => return Err(Stopped),
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    /// Runs `tasks` until the service is asked to stop, then shuts down gracefully (see the
    /// module docs). Fails when the gRPC server fails.
    pub async fn run(self, tasks: Vec<Task>) -> Result<(), RuntimeError> {
        let Self {
            service,
            config,
            health,
            stop,
            mut server,
            ..
        } = self;
        let base = Duration::from_millis(config.retry_base_delay_ms);
        let max = Duration::from_millis(config.retry_max_delay_ms);
        let mut running = JoinSet::new();
        let mut names = HashMap::new();
        let mut after_stop = Vec::new();
        for mut task in tasks {
            if task.required {
                health.down(&task::health_key(&task.name), "starting").await;
            }
            after_stop.extend(task.after_stop.take());
            let name = task.name.clone();
            let handle = running.spawn(task::supervise(
                task,
                stop.clone(),
                health.clone(),
                base,
                max,
            ));
            names.insert(handle.id(), name);
        }
        health.up(STARTING).await;
        tracing::info!(service, tasks = ?names.values().collect::<Vec<_>>(), "running");

        let early = tokio::select! {
            biased;
            _ = stop.cancelled() => None,
            served = &mut server => Some(served),
        };
        // The server ends by itself only on failure; when it ended because the service is
        // stopping, it has drained already.
        let (failure, server_done) = match early {
            None => (None, false),
            Some(Ok(Ok(()))) if stop.is_cancelled() => (None, true),
            Some(Ok(Ok(()))) => (Some(RuntimeError::ServerStopped), true),
            Some(Ok(Err(err))) => (Some(RuntimeError::Grpc(err)), true),
            Some(Err(err)) => (Some(RuntimeError::ServerPanicked(err.to_string())), true),
        };
        if let Some(err) = &failure {
            tracing::error!(service, error = %err, "stopping: the gRPC server failed");
        }
        health.down(STOPPING, "shutting down").await;
        stop.cancel();
        let drain = config.drain_timeout();
        tracing::info!(service, ?drain, "stopping: draining gRPC calls and tasks");
        let deadline = tokio::time::Instant::now() + drain;
        let mut server_error = None;
        if !server_done {
            match tokio::time::timeout_at(deadline, &mut server).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(err))) => server_error = Some(RuntimeError::Grpc(err)),
                Ok(Err(err)) => server_error = Some(RuntimeError::ServerPanicked(err.to_string())),
                Err(_) => {
                    tracing::warn!(service, "gRPC calls still running after the drain; aborted")
                }
            }
        }
        let drained = tokio::time::timeout_at(deadline, async {
            while let Some(joined) = running.join_next_with_id().await {
                let id = match joined {
                    Ok((id, ())) => id,
                    Err(err) => err.id(),
                };
                names.remove(&id);
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(service, still_running = ?names.values().collect::<Vec<_>>(), "tasks did not stop within the drain time; aborted");
            running.shutdown().await;
        }
        drop(server);
        for hook in after_stop {
            hook().await;
        }
        tracing::info!(service, "stopped");
        match failure.or(server_error) {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}
