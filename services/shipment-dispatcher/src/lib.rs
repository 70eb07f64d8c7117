//! # wmslink shipment dispatcher
//!
//! Turns order events into WMS shipment instructions and cancellations, exactly once (I1) and
//! without losing a cancellation (I2); applies the WMS observations of status-sync; serves
//! `wmslink.dispatch.v1.DispatchService`; publishes every change on `shipments.{shop}.updated`
//! through the outbox. See the README for the state machine and how exactly-once is achieved.
//!
//! | module | what |
//! | --- | --- |
//! | [`state_machine`] | the shipping-status state machine and the decisions of order events and observations (pure) |
//! | [`settle`] | what a registration answer, a failed call or a search of the WMS means for a shipment in doubt, and applying it (pure) |
//! | [`consumers`] | order events and WMS observations, one transaction per message |
//! | [`sender`] | the per-shop pass, in the order it runs: [`sender::reconcile`] (search what is in doubt), [`sender::register`] (claim, build, register, settle), [`sender::cancel`] (cancellations); with [`sender::shop_lock`] (one pass per shop across replicas), [`sender::scheduler`] (wake-ups, linger, back-off) and [`sender::sweep`] (E1/E2: queue what is due) |
//! | [`store`] | `shipments`, `shipment_history`, and [`store::persist`] (row + history + outbox) |
//! | [`snapshot`] | stored order snapshots and the content fingerprint (R1) |
//! | [`settings`], [`wms`] | shop settings over `wmslink-settings-client`; each shop's WMS behind the port of `wmslink-wms-client` (built by its `wms_kind`) |
//! | [`grpc`] | `DispatchService` |
//! | [`errors`] | start-up, pass and API errors; the one mapping to gRPC status |
//! | [`metrics`] | queue depth and oldest-queued age per shop, sampled by the sweep |
//!
//! The WMS row of an order (every mapping of S3 ⑥–⑬) is built by the WMS adapter
//! (`wmslink_wms_client::commerce_robo`), not here: the dispatcher sees an opaque instruction.

pub mod config;
pub mod consumers;
pub mod core;
pub mod errors;
pub mod events;
pub mod grpc;
pub mod metrics;
pub mod sender;
pub mod settings;
pub mod settle;
pub mod snapshot;
pub mod state_machine;
pub mod store;
pub mod wms;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;
use wmslink_platform::auth::Authenticator;
use wmslink_platform::consumer::{self, ConsumerSpec};
use wmslink_platform::db;
use wmslink_platform::grpc as platform_grpc;
use wmslink_platform::nats::{self, StreamKind, Subjects};
use wmslink_platform::outbox::{self, OutboxRelay};
use wmslink_platform::secrets::KeyRing;
use wmslink_proto::dispatch::v1::dispatch_service_server::DispatchServiceServer;

pub use crate::config::Config;
use crate::consumers::{Observations, OrderEventKind, OrderEvents};
use crate::core::Core;
pub use crate::errors::{RunError, StartupError};
use crate::grpc::DispatchApi;
use crate::sender::Sender;
use crate::settings::SettingsCache;
use crate::wms::WmsClients;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

const MAX_REQUEST_BYTES: usize = 64 * 1024;
const OUTBOX_KEEP: Duration = Duration::from_secs(7 * 24 * 3600);
const OUTBOX_PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The built service: database migrated, streams and consumers ensured, listener bound.
/// Nothing runs until [`run_until_stopped`](Self::run_until_stopped); dropping that future
/// (or the application) stops every task at once, like a killed process.
pub struct Application {
    grpc_addr: SocketAddr,
    listener: TcpListener,
    routes: Routes,
    relay: OutboxRelay,
    core: Arc<Core>,
    js: jetstream::Context,
    nats: async_nats::Client,
    consumers: Vec<ConsumerSpec>,
    wake_rx: mpsc::UnboundedReceiver<String>,
    shutdown: CancellationToken,
}

impl Application {
    pub async fn build(config: Config, shutdown: CancellationToken) -> Result<Self, StartupError> {
        let keys = KeyRing::from_config(&config.secrets)?;
        let pool = db::connect(&config.database).await?;
        db::migrate(&pool, &MIGRATOR).await?;

        let limiter = config.rate_limit.connect(&pool).await?;

        let client = nats::connect(&config.nats).await?;
        let js = jetstream::new(client.clone());
        let subjects = Subjects::new(&config.nats.prefix)?;
        nats::ensure_streams(
            &js,
            &subjects,
            &[
                StreamKind::Orders,
                StreamKind::Wms,
                StreamKind::Shipments,
                StreamKind::DeadLetters,
            ],
            config.nats.stream_replicas,
        )
        .await?;
        let consumers = consumer_specs(&config, &subjects);
        for spec in &consumers {
            consumer::ensure_consumer(&js, spec).await?;
        }
        let relay = OutboxRelay::new(pool.clone(), js.clone());

        let settings = Arc::new(SettingsCache::new(&config.settings)?);
        let wms = WmsClients::new(settings.clone(), keys, config.wms.clone(), limiter);
        let (sender, wake_rx) = Sender::new();
        let core = Arc::new(Core {
            pool,
            subjects,
            relay: relay.waker(),
            settings,
            wms,
            config: config.sender.clone(),
            sender,
            shutdown: shutdown.child_token(),
        });

        let (routes, health) = platform_grpc::base_routes()?;
        health
            .set_serving::<DispatchServiceServer<DispatchApi>>()
            .await;
        let server = DispatchServiceServer::new(DispatchApi::new(core.clone()))
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
            core,
            js,
            nats: client,
            consumers,
            wake_rx,
            shutdown,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    pub fn pool(&self) -> &PgPool {
        &self.core.pool
    }

    /// Runs the consumers, the sender, the sweep, the outbox relay and the gRPC server until
    /// the shutdown token is cancelled; then stops taking work, lets passes in flight finish
    /// (for a while) and flushes the outbox.
    pub async fn run_until_stopped(self) -> Result<(), RunError> {
        let core = self.core.clone();
        let tasks = core.shutdown.clone();
        let mut background = JoinSet::new();

        background.spawn(self.relay.clone().run(tasks.clone()));
        background.spawn(prune_outbox(core.pool.clone(), tasks.clone()));
        background.spawn(sender::scheduler::run_scheduler(
            core.clone(),
            self.wake_rx,
            tasks.clone(),
        ));

        let (changed_tx, changed_rx) = mpsc::unbounded_channel();
        background.spawn(sender::sweep::run_sweeper(
            core.clone(),
            changed_rx,
            tasks.clone(),
        ));
        let on_change = {
            let core = core.clone();
            move |shop: String| {
                core.settings.invalidate(&shop);
                core.wms.invalidate(&shop);
                if core.config.sweep_on_settings_change {
                    let _ = changed_tx.send(shop);
                }
                std::future::ready(())
            }
        };
        background.spawn(settings::watch_changes(
            self.nats.clone(),
            core.subjects.clone(),
            on_change,
            tasks.clone(),
        ));

        for spec in self.consumers {
            let js = self.js.clone();
            let subjects = core.subjects.clone();
            let token = tasks.clone();
            let name = spec.durable_name.clone();
            let kind = if spec.filter_subject == core.subjects.order_status_changed_all() {
                Some(OrderEventKind::StatusChanged)
            } else if spec.filter_subject == core.subjects.order_updated_all() {
                Some(OrderEventKind::Updated)
            } else {
                None
            };
            let core = core.clone();
            background.spawn(async move {
                let result = match kind {
                    Some(kind) => {
                        let handler = OrderEvents::new(core, name.clone(), kind);
                        consumer::run(js, subjects, spec, handler, token).await
                    }
                    None => {
                        let handler = Observations::new(core, name.clone());
                        consumer::run(js, subjects, spec, handler, token).await
                    }
                };
                if let Err(err) = result {
                    tracing::error!(consumer = %name, error = %err, "consumer stopped");
                }
            });
        }

        let served = platform_grpc::serve(self.listener, self.routes, self.shutdown.clone()).await;
        tasks.cancel();
        let drain = async { while background.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(15), drain)
            .await
            .is_err()
        {
            tracing::warn!("background tasks did not stop in time");
        }
        match tokio::time::timeout(Duration::from_secs(5), self.relay.publish_batch()).await {
            Ok(Err(err)) => tracing::warn!(error = %err, "final outbox flush failed"),
            Err(_) => tracing::warn!("final outbox flush timed out"),
            Ok(Ok(_)) => {}
        }
        Ok(served?)
    }
}

fn consumer_specs(config: &Config, subjects: &Subjects) -> Vec<ConsumerSpec> {
    let prefix = &config.sender.consumer_prefix;
    let sender = &config.sender;
    let spec = |stream: StreamKind, name: &str, filter: String| {
        let mut spec = ConsumerSpec::new(
            subjects.stream_name(stream),
            format!("{prefix}-{name}"),
            filter,
        );
        spec.ack_wait = Duration::from_millis(sender.consumer_ack_wait_ms.max(100));
        spec.max_deliver = sender.consumer_max_deliver.max(1);
        spec.base_delay = Duration::from_millis(sender.consumer_retry_base_ms.max(1));
        spec
    };
    vec![
        spec(
            StreamKind::Orders,
            "status-changed",
            subjects.order_status_changed_all(),
        ),
        spec(StreamKind::Orders, "updated", subjects.order_updated_all()),
        spec(StreamKind::Wms, "observed", subjects.wms_observed_all()),
    ]
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
