//! # wmslink settings service
//!
//! Owns each shop's WMS integration settings (requirements S1–S5, R6): the detail settings,
//! the access key (AES-256-GCM sealed at rest), the connection-check result bound to the
//! key and URL it was made with, the enable switch and the shop's order-status catalog.
//! Serves `wmslink.settings.v1.SettingsService` over gRPC and publishes `SettingsChanged` on
//! `settings.{shop}.changed` through the transactional outbox. See the README.

pub mod config;
pub mod domain;
pub mod errors;
pub mod events;
pub mod grpc;
pub mod in_flight;
pub mod passed_checks;
pub mod reseal;
pub mod service;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;

use async_nats::jetstream;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use wmslink_platform::authz::Authorize;
use wmslink_platform::config::Validate;
use wmslink_platform::db;
use wmslink_platform::nats::{self, StreamKind, Subjects};
use wmslink_platform::outbox::OutboxRelay;
use wmslink_platform::runtime::{DeferredService, Runtime, Starting, Task};
use wmslink_platform::secrets::KeyRing;
use wmslink_proto::settings::v1::settings_service_server::SettingsServiceServer;
use wmslink_wms_client::InProcessRateLimiter;

pub use config::Config;
pub use errors::{RunError, StartupError};

use crate::grpc::SettingsApi;
use crate::service::SettingsService;

/// The service's name in logs and telemetry.
pub const SERVICE_NAME: &str = "wmslink-settings";

/// The streams the settings service publishes to.
pub const STREAMS: &[StreamKind] = &[StreamKind::Settings];

/// Largest request the service decodes (a full catalog of 500 statuses fits well).
const MAX_REQUEST_BYTES: usize = 1024 * 1024;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

type Api = Authorize<SettingsServiceServer<SettingsApi>>;

/// The service, ready to run: database migrated, stream ensured, API installed.
pub struct Application {
    runtime: Runtime,
    pool: PgPool,
    relay: Option<OutboxRelay>,
    config: Config,
}

impl Application {
    /// [`start`](Self::start), then waits until the dependencies are reached.
    pub async fn build(config: Config, shutdown: CancellationToken) -> Result<Self, StartupError> {
        Self::start(config, shutdown).await?.ready().await
    }

    /// Checks the configuration and binds the gRPC port (port 0 picks a free one): health
    /// answers `NOT_SERVING` from here on. [`Starting::ready`] then waits for PostgreSQL (and
    /// the rate-limit database) and NATS, migrating and ensuring the stream.
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
        let js = jetstream::new(nats::connect(&config.nats).await?);
        let subjects = Subjects::new(&config.nats.prefix)?;
        runtime
            .wait_for("NATS JetStream", || {
                nats::ensure_streams(&js, &subjects, STREAMS, config.nats.stream_replicas)
            })
            .await?;
        let relay = config.outbox.relay(&pool, &js);
        let probe_limiter = Arc::new(InProcessRateLimiter::new(config.rate_limit.limits())?);

        let service = Arc::new(
            SettingsService::new(
                pool.clone(),
                keys,
                subjects,
                relay.as_ref().map(OutboxRelay::waker).unwrap_or_default(),
                config.wms.clone(),
                limiter,
                probe_limiter,
            )
            .with_in_flight_check(in_flight::InFlightCheck::new(&config.dispatcher)?),
        );
        let server = SettingsServiceServer::new(SettingsApi::new(service))
            .max_decoding_message_size(MAX_REQUEST_BYTES);
        api.set(Authorize::new(
            server,
            &config.auth,
            grpc::AUTHORIZATION,
            MAX_REQUEST_BYTES,
        ));
        Ok(Self {
            runtime,
            pool,
            relay,
            config,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.runtime.grpc_addr()
    }

    /// Runs the service's tasks until the shutdown token is cancelled, then drains in-flight
    /// calls and publishes what the outbox still holds (see `wmslink_platform::runtime`).
    pub async fn run_until_stopped(self) -> Result<(), RunError> {
        let mut tasks = vec![Task::pruner(
            self.pool.clone(),
            self.config.outbox.keep_published(),
            None,
        )];
        tasks.extend(self.relay.map(Task::outbox_relay));
        Ok(self.runtime.run(tasks).await?)
    }
}
