//! # status-sync
//!
//! Brings WMS statuses, tracking codes and anomalies back (flow 4; E1, E3, R5). The WMS has no
//! webhooks, so this polls, in bulk and only for what is open:
//!
//! - [`consumers`] keeps the watch list of shipments from the dispatcher's
//!   `shipments.{shop}.updated` events;
//! - [`scheduler`] starts a pass per enabled shop every interval (one runner per shop across
//!   replicas through a lease), [`runner`] does it: an `update_date` search since the last
//!   pass, periodically `order_no-in` for every watched order of the sync period, each WMS call
//!   drawn from the per-key budget shared with the dispatcher;
//! - what changed goes out on `wms.{shop}.observed` ([`review`] reads each WMS answer),
//!   anomalies on `wms.{shop}.anomaly` (the R5 rules are in [`anomalies`]), through the
//!   outbox;
//! - [`grpc`] serves `wmslink.sync.v1.SyncService` (run now, runs, anomalies).

pub mod anomalies;
pub mod config;
pub mod consumers;
pub mod errors;
pub mod events;
#[cfg(test)]
mod fixtures;
pub mod grpc;
pub mod model;
pub mod review;
pub mod runner;
pub mod scheduler;
pub mod shops;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use wmslink_platform::authz::Authorize;
use wmslink_platform::config::Validate;
use wmslink_platform::consumer::{self, ConsumerSpec};
use wmslink_platform::db;
use wmslink_platform::nats::{self, StreamKind, Subjects};
use wmslink_platform::outbox::OutboxRelay;
use wmslink_platform::runtime::{DeferredService, Runtime, Starting, Task};
use wmslink_platform::secrets::KeyRing;
use wmslink_proto::sync::v1::sync_service_server::SyncServiceServer;

pub use config::Config;
pub use errors::{RunError, StartupError};

use crate::consumers::{CONSUMER, WatchListHandler};
use crate::runner::Runner;
use crate::shops::ShopDirectory;
use crate::store::Store;

/// The service's name in logs and telemetry.
pub const SERVICE_NAME: &str = "wmslink-status-sync";

/// The streams status-sync publishes to or consumes from.
pub const STREAMS: &[StreamKind] = &[
    StreamKind::Shipments,
    StreamKind::Wms,
    StreamKind::DeadLetters,
];

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Requests are small (a shop id, a period, a limit).
const MAX_REQUEST_BYTES: usize = 64 * 1024;

type Api = Authorize<SyncServiceServer<grpc::SyncApi>>;

/// The service, ready to run: database migrated, streams and consumer ensured, the settings
/// service reached, API installed.
pub struct Application {
    runtime: Runtime,
    config: Config,
    pool: PgPool,
    nats: async_nats::Client,
    js: async_nats::jetstream::Context,
    subjects: Subjects,
    relay: Option<OutboxRelay>,
    runner: Arc<Runner>,
}

/// The durable consumer of `shipments.*.updated`.
fn consumer_spec(config: &Config, subjects: &Subjects) -> ConsumerSpec {
    config.consumers.spec(
        subjects.stream_name(StreamKind::Shipments),
        CONSUMER,
        subjects.shipments_updated_all(),
    )
}

impl Application {
    /// [`start`](Self::start), then waits until the dependencies are reached.
    pub async fn build(config: Config, shutdown: CancellationToken) -> Result<Self, StartupError> {
        Self::start(config, shutdown).await?.ready().await
    }

    /// Checks the configuration and binds the gRPC port (port 0 picks a free one): health
    /// answers `NOT_SERVING` from here on. [`Starting::ready`] then waits for PostgreSQL (and the
    /// rate-limit database), NATS and the settings service. Nothing runs until
    /// [`Self::run_until_stopped`].
    pub async fn start(
        config: Config,
        shutdown: CancellationToken,
    ) -> Result<Starting<Self, StartupError>, StartupError> {
        config.validate()?;
        let keys = KeyRing::from_config(&config.secrets)?;
        let api = DeferredService::new();
        let runtime =
            Runtime::start(SERVICE_NAME, &config.runtime, &config.grpc, &api, &shutdown).await?;
        Ok(Starting::new(
            runtime.grpc_addr(),
            Self::connect(config, keys, runtime, api),
        ))
    }

    async fn connect(
        config: Config,
        keys: KeyRing,
        runtime: Runtime,
        api: DeferredService<Api>,
    ) -> Result<Self, StartupError> {
        let pool = runtime
            .wait_for("PostgreSQL", || {
                db::connect_and_migrate(&config.database, &MIGRATOR)
            })
            .await?;
        let limiter = runtime
            .wait_for("the rate-limit database", || {
                config.rate_limit.connect(&pool)
            })
            .await?;
        let shops = Arc::new(ShopDirectory::new(
            &config.settings,
            keys,
            config.wms.clone(),
            limiter,
        )?);
        let nats = nats::connect(&config.nats).await?;
        let js = async_nats::jetstream::new(nats.clone());
        let subjects = Subjects::new(&config.nats.prefix)?;
        runtime
            .wait_for("NATS JetStream", || async {
                nats::ensure_streams(&js, &subjects, STREAMS, config.nats.stream_replicas).await?;
                consumer::ensure_consumer(&js, &consumer_spec(&config, &subjects)).await?;
                Ok::<_, StartupError>(())
            })
            .await?;
        runtime
            .wait_for("the settings service", || shops.settings().check_serving())
            .await?;

        let relay = config.outbox.relay(&pool, &js);
        let runner = Arc::new(Runner::new(
            Store::new(pool.clone()),
            shops,
            subjects.clone(),
            config.sync.clone(),
            relay.as_ref().map(OutboxRelay::waker).unwrap_or_default(),
        ));
        let api_impl = grpc::SyncApi::new(runner.clone(), runtime.stopping());
        runtime.serve_dead_letters(js.clone(), subjects.clone(), &config.auth);
        api.set(Authorize::new(
            SyncServiceServer::new(api_impl).max_decoding_message_size(MAX_REQUEST_BYTES),
            &config.auth,
            grpc::AUTHORIZATION,
            MAX_REQUEST_BYTES,
        ));
        Ok(Self {
            runtime,
            config,
            pool,
            nats,
            js,
            subjects,
            relay,
            runner,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.runtime.grpc_addr()
    }

    /// The service's database (for tests and tools).
    pub fn db(&self) -> &PgPool {
        &self.pool
    }

    /// Runs the watch-list consumer, the scheduler, the settings watch, housekeeping, the
    /// outbox relay and the pruner until the shutdown token is cancelled; then lets in-flight
    /// passes record themselves and flushes the outbox (see `wmslink_platform::runtime`).
    pub async fn run_until_stopped(self) -> Result<(), RunError> {
        let Self {
            runtime,
            config,
            pool,
            nats,
            js,
            subjects,
            relay,
            runner,
        } = self;
        let mut tasks = vec![
            Task::batch_consumer(
                js,
                subjects.clone(),
                consumer_spec(&config, &subjects),
                WatchListHandler::new(pool.clone()),
            ),
            Task::required("settings watch", {
                let runner = runner.clone();
                move |ctx| {
                    let runner = runner.clone();
                    let watch = wmslink_settings_client::watch_changes(
                        nats.clone(),
                        subjects.clone(),
                        move |shop| scheduler::settings_changed(runner.clone(), shop),
                        ctx.stop().clone(),
                    );
                    async move {
                        watch.await;
                        Ok(())
                    }
                }
            }),
            Task::background("housekeeping", {
                let runner = runner.clone();
                move |ctx| {
                    let housekeeping = scheduler::housekeeping(runner.clone(), ctx.stop().clone());
                    async move {
                        housekeeping.await;
                        Ok(())
                    }
                }
            }),
            Task::pruner(
                pool,
                config.outbox.keep_published(),
                Some(config.consumers.keep_processed()),
            ),
        ];
        if config.sync.scheduled {
            tasks.push(Task::required("scheduler", move |ctx| {
                let scheduler = scheduler::run(runner.clone(), ctx.stop().clone());
                async move {
                    scheduler.await;
                    Ok(())
                }
            }));
        }
        tasks.extend(relay.map(Task::outbox_relay));
        Ok(runtime.run(tasks).await?)
    }
}
