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
pub mod service;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;
use wmslink_platform::auth::Authenticator;
use wmslink_platform::db;
use wmslink_platform::grpc as platform_grpc;
use wmslink_platform::nats::{self, StreamKind, Subjects};
use wmslink_platform::outbox::{self, OutboxRelay};
use wmslink_platform::secrets::KeyRing;
use wmslink_proto::settings::v1::settings_service_server::SettingsServiceServer;

pub use config::Config;
pub use errors::{RunError, StartupError};

use crate::grpc::SettingsApi;
use crate::service::SettingsService;

/// Largest request the service decodes (a full catalog of 500 statuses fits well).
const MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// Published outbox rows are kept this long, then pruned.
const OUTBOX_KEEP: Duration = Duration::from_secs(7 * 24 * 3600);
const OUTBOX_PRUNE_EVERY: Duration = Duration::from_secs(3600);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The running service: listener bound, database migrated, streams ensured.
pub struct Application {
    grpc_addr: SocketAddr,
    listener: TcpListener,
    routes: Routes,
    relay: OutboxRelay,
    pool: PgPool,
    shutdown: CancellationToken,
}

impl Application {
    /// Connects to PostgreSQL (migrating) and NATS (ensuring the settings stream), and binds
    /// the gRPC listener (port 0 picks a free one).
    pub async fn build(config: Config, shutdown: CancellationToken) -> Result<Self, StartupError> {
        let keys = KeyRing::from_config(&config.secrets)?;
        let pool = db::connect(&config.database).await?;
        db::migrate(&pool, &MIGRATOR).await?;

        let client = nats::connect(&config.nats).await?;
        let js = async_nats::jetstream::new(client);
        let subjects = Subjects::new(&config.nats.prefix)?;
        nats::ensure_streams(
            &js,
            &subjects,
            &[StreamKind::Settings],
            config.nats.stream_replicas,
        )
        .await?;
        let relay = OutboxRelay::new(pool.clone(), js);

        let limiter = config.rate_limit.connect(&pool).await?;
        let service = Arc::new(SettingsService::new(
            pool.clone(),
            keys,
            subjects,
            relay.waker(),
            config.wms.clone(),
            limiter,
        ));

        let (routes, health) = platform_grpc::base_routes()?;
        health
            .set_serving::<SettingsServiceServer<SettingsApi>>()
            .await;
        let server = SettingsServiceServer::new(SettingsApi::new(service))
            .max_decoding_message_size(MAX_REQUEST_BYTES);
        let routes = routes.add_service(InterceptedService::new(
            server,
            Authenticator::new(&config.auth),
        ));
        let (listener, grpc_addr) = platform_grpc::bind(&config.grpc).await?;
        Ok(Self {
            grpc_addr,
            listener,
            routes,
            relay,
            pool,
            shutdown,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// Serves until the shutdown token is cancelled, then drains in-flight calls and
    /// publishes what the outbox still holds.
    pub async fn run_until_stopped(self) -> Result<(), RunError> {
        let tasks = self.shutdown.child_token();
        let relay = tokio::spawn(self.relay.clone().run(tasks.clone()));
        let pruner = tokio::spawn(prune_outbox(self.pool.clone(), tasks.clone()));

        let served = platform_grpc::serve(self.listener, self.routes, self.shutdown.clone()).await;
        tasks.cancel();
        let _ = relay.await;
        let _ = pruner.await;
        // Best effort: whatever is left goes out at the next start anyway.
        match tokio::time::timeout(Duration::from_secs(5), self.relay.publish_batch()).await {
            Ok(Err(err)) => tracing::warn!(error = %err, "final outbox flush failed"),
            Err(_) => tracing::warn!("final outbox flush timed out"),
            Ok(Ok(_)) => {}
        }
        Ok(served?)
    }
}

async fn prune_outbox(pool: PgPool, shutdown: CancellationToken) {
    loop {
        match outbox::prune(&pool, OUTBOX_KEEP).await {
            Ok(0) => {}
            Ok(pruned) => tracing::debug!(pruned, "pruned published outbox rows"),
            Err(err) => tracing::warn!(error = %err, "outbox prune failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(OUTBOX_PRUNE_EVERY) => {}
        }
    }
}
