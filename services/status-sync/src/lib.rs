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
use std::time::Duration;

use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use wmslink_platform::auth::Authenticator;
use wmslink_platform::consumer::{self, ConsumerSpec};
use wmslink_platform::db;
use wmslink_platform::nats::{self, StreamKind, Subjects};
use wmslink_platform::outbox::OutboxRelay;
use wmslink_platform::secrets::KeyRing;
use wmslink_proto::sync::v1::sync_service_server::SyncServiceServer;

pub use config::Config;
pub use errors::{RunError, StartupError};

use crate::consumers::{CONSUMER, WatchListHandler};
use crate::runner::Runner;
use crate::shops::ShopDirectory;
use crate::store::Store;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub struct Application {
    config: Config,
    pool: PgPool,
    nats: async_nats::Client,
    js: async_nats::jetstream::Context,
    subjects: Subjects,
    relay: OutboxRelay,
    runner: Arc<Runner>,
    listener: TcpListener,
    grpc_addr: SocketAddr,
    routes: Routes,
    shutdown: CancellationToken,
}

impl Application {
    /// Connects to PostgreSQL (migrating), the rate-limit database, NATS (ensuring the
    /// streams) and binds the gRPC port. Nothing runs until [`Self::run_until_stopped`].
    pub async fn build(config: Config, shutdown: CancellationToken) -> Result<Self, StartupError> {
        // Configuration mistakes first, before anything is touched.
        let keys = KeyRing::from_config(&config.secrets)?;
        let subjects = Subjects::new(&config.nats.prefix)?;
        let pool = db::connect(&config.database).await?;
        db::migrate(&pool, &MIGRATOR).await?;

        let limiter = config.rate_limit.connect(&pool).await?;

        let shops = Arc::new(ShopDirectory::new(
            &config.settings,
            keys,
            config.wms.clone(),
            limiter,
        )?);

        let nats = nats::connect(&config.nats).await?;
        let js = async_nats::jetstream::new(nats.clone());
        nats::ensure_streams(
            &js,
            &subjects,
            &[
                StreamKind::Shipments,
                StreamKind::Wms,
                StreamKind::DeadLetters,
            ],
            config.nats.stream_replicas,
        )
        .await?;
        let relay = OutboxRelay::new(pool.clone(), js.clone());

        let runner = Arc::new(Runner::new(
            Store::new(pool.clone()),
            shops,
            subjects.clone(),
            config.sync.clone(),
            relay.waker(),
        ));

        let (listener, grpc_addr) = wmslink_platform::grpc::bind(&config.grpc).await?;
        let (routes, reporter) = wmslink_platform::grpc::base_routes()?;
        let api = grpc::SyncApi::new(runner.clone(), shutdown.clone());
        let service = SyncServiceServer::with_interceptor(api, Authenticator::new(&config.auth));
        reporter
            .set_serving::<SyncServiceServer<grpc::SyncApi>>()
            .await;
        let routes = routes.add_service(service);

        Ok(Self {
            config,
            pool,
            nats,
            js,
            subjects,
            relay,
            runner,
            listener,
            grpc_addr,
            routes,
            shutdown,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The service's database (for tests and tools).
    pub fn db(&self) -> &PgPool {
        &self.pool
    }

    /// Serves gRPC and runs the consumer, the relay, the scheduler and the settings listener
    /// until the shutdown token is cancelled; then lets in-flight passes record themselves.
    pub async fn run_until_stopped(self) -> Result<(), RunError> {
        let Self {
            config,
            pool,
            nats,
            js,
            subjects,
            relay,
            runner,
            listener,
            grpc_addr,
            routes,
            shutdown,
        } = self;
        tracing::info!(%grpc_addr, "status-sync listening");

        let final_flush = relay.clone();
        let mut background = tokio::task::JoinSet::new();
        background.spawn(relay.run(shutdown.clone()));
        if config.sync.scheduled {
            background.spawn(scheduler::run(runner.clone(), shutdown.clone()));
        }
        background.spawn(wmslink_settings_client::watch_changes(
            nats.clone(),
            subjects.clone(),
            {
                let runner = runner.clone();
                move |shop| scheduler::settings_changed(runner.clone(), shop)
            },
            shutdown.clone(),
        ));
        background.spawn(scheduler::housekeeping(runner.clone(), shutdown.clone()));

        let mut spec = ConsumerSpec::new(
            subjects.stream_name(StreamKind::Shipments),
            CONSUMER.to_owned(),
            subjects.shipments_updated_all(),
        );
        spec.ack_wait = Duration::from_secs(config.sync.consumer_ack_wait_secs.max(1));
        spec.max_deliver = config.sync.consumer_max_deliver.max(2);
        let consumer = consumer::run(
            js,
            subjects.clone(),
            spec,
            WatchListHandler::new(pool, subjects),
            shutdown.clone(),
        );
        // A consumer that cannot start stops the service (and so does a gRPC failure).
        let consumer_shutdown = shutdown.clone();
        let consumer = tokio::spawn(async move {
            let result = consumer.await;
            if let Err(err) = &result {
                tracing::error!(error = %err, "watch-list consumer failed");
                consumer_shutdown.cancel();
            }
            result
        });
        let served = wmslink_platform::grpc::serve(listener, routes, shutdown.clone()).await;
        shutdown.cancel();
        let consumed = match consumer.await {
            Ok(result) => result,
            Err(err) => {
                tracing::warn!(error = %err, "watch-list consumer ended abnormally");
                Ok(())
            }
        };
        while let Some(joined) = background.join_next().await {
            if let Err(err) = joined {
                tracing::warn!(error = %err, "background task ended abnormally");
            }
        }
        // Publish what the last passes enqueued; what cannot go now goes at the next start.
        match tokio::time::timeout(Duration::from_secs(5), final_flush.publish_batch()).await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "final outbox flush failed"),
            Err(_) => tracing::warn!("final outbox flush timed out"),
        }
        tracing::info!("status-sync stopped");
        served?;
        consumed?;
        Ok(())
    }
}
