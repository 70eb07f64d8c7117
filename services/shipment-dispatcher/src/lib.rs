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
pub mod order_events;
pub mod sender;
pub mod settings;
pub mod settle;
pub mod snapshot;
pub mod state_machine;
pub mod store;
pub mod wms;

use std::net::SocketAddr;
use std::sync::Arc;

use async_nats::jetstream;
use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;
use wmslink_platform::authz::Authorize;
use wmslink_platform::config::Validate;
use wmslink_platform::consumer::{self, ConsumerSpec};
use wmslink_platform::db;
use wmslink_platform::nats::{self, StreamKind, Subjects};
use wmslink_platform::outbox::OutboxRelay;
use wmslink_platform::runtime::{DeferredService, Runtime, Starting, Task};
use wmslink_platform::secrets::KeyRing;
use wmslink_proto::dispatch::v1::dispatch_service_server::DispatchServiceServer;

pub use crate::config::Config;
use crate::consumers::{Observations, OrderEvents};
use crate::core::Core;
pub use crate::errors::{RunError, StartupError};
use crate::grpc::DispatchApi;
use crate::order_events::OrderEventsClient;
use crate::sender::Sender;
use crate::settings::SettingsCache;
use crate::wms::WmsClients;

/// The service's name in logs and telemetry.
pub const SERVICE_NAME: &str = "wmslink-shipment-dispatcher";

/// The streams the dispatcher publishes to or consumes from.
pub const STREAMS: &[StreamKind] = &[
    StreamKind::Orders,
    StreamKind::Wms,
    StreamKind::Shipments,
    StreamKind::DeadLetters,
];

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

const MAX_REQUEST_BYTES: usize = 64 * 1024;

type Api = Authorize<DispatchServiceServer<DispatchApi>>;

/// The service, ready to run: database migrated, streams and consumers ensured, the settings
/// service reached, API installed. Nothing but the gRPC server runs until
/// [`run_until_stopped`](Self::run_until_stopped); dropping that future (or the application)
/// stops every task at once, like a killed process.
pub struct Application {
    runtime: Runtime,
    core: Arc<Core>,
    relay: Option<OutboxRelay>,
    js: jetstream::Context,
    nats: async_nats::Client,
    wake_rx: mpsc::UnboundedReceiver<String>,
    /// The rebuild sweep's client (`None`: off).
    order_events: Option<OrderEventsClient>,
    config: Config,
}

/// The durable consumers: order status changes, order updates, WMS observations.
fn consumer_specs(config: &Config, subjects: &Subjects) -> [ConsumerSpec; 3] {
    let spec = |stream: StreamKind, durable: &str, filter: String| {
        config
            .consumers
            .spec(subjects.stream_name(stream), durable, filter)
    };
    [
        spec(
            StreamKind::Orders,
            consumers::STATUS_CHANGED_CONSUMER,
            subjects.order_status_changed_all(),
        ),
        spec(
            StreamKind::Orders,
            consumers::UPDATED_CONSUMER,
            subjects.order_updated_all(),
        ),
        spec(
            StreamKind::Wms,
            consumers::OBSERVED_CONSUMER,
            subjects.wms_observed_all(),
        ),
    ]
}

impl Application {
    /// [`start`](Self::start), then waits until the dependencies are reached.
    pub async fn build(config: Config, shutdown: CancellationToken) -> Result<Self, StartupError> {
        Self::start(config, shutdown).await?.ready().await
    }

    /// Checks the configuration and binds the gRPC port (port 0 picks a free one): health
    /// answers `NOT_SERVING` from here on. [`Starting::ready`] then waits for PostgreSQL (and the
    /// rate-limit database), NATS and the settings service.
    pub async fn start(
        config: Config,
        shutdown: CancellationToken,
    ) -> Result<Starting<Self, StartupError>, StartupError> {
        config.validate()?;
        let keys = KeyRing::from_config(&config.secrets)?;
        let settings = Arc::new(SettingsCache::new(&config.settings)?);
        let api = DeferredService::new();
        let runtime =
            Runtime::start(SERVICE_NAME, &config.runtime, &config.grpc, &api, &shutdown).await?;
        Ok(Starting::new(
            runtime.grpc_addr(),
            Self::connect(config, keys, settings, runtime, api),
        ))
    }

    async fn connect(
        config: Config,
        keys: KeyRing,
        settings: Arc<SettingsCache>,
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
        let client = nats::connect(&config.nats).await?;
        let js = jetstream::new(client.clone());
        let subjects = Subjects::new(&config.nats.prefix)?;
        runtime
            .wait_for("NATS JetStream", || async {
                nats::ensure_streams(&js, &subjects, STREAMS, config.nats.stream_replicas).await?;
                for spec in &consumer_specs(&config, &subjects) {
                    consumer::ensure_consumer(&js, spec).await?;
                }
                Ok::<_, StartupError>(())
            })
            .await?;
        runtime
            .wait_for("the settings service", || settings.client().check_serving())
            .await?;

        let order_events = OrderEventsClient::new(&config.order_events)?;
        let relay = config.outbox.relay(&pool, &js);
        let wms = WmsClients::new(settings.clone(), keys, config.wms.clone(), limiter);
        let (sender, wake_rx) = Sender::new(&pool, config.sender.max_parallel_shops());
        let core = Arc::new(Core {
            pool,
            subjects,
            relay: relay.as_ref().map(OutboxRelay::waker).unwrap_or_default(),
            settings,
            wms,
            config: config.sender.clone(),
            linger: config
                .sender
                .effective_linger(config.rate_limit.requests_per_second),
            doubt: config.sender.doubt_rules(config.wms.request_timeout_ms),
            replica: core::replica_name(),
            sender,
            shutdown: runtime.stopping(),
        });
        let server = DispatchServiceServer::new(DispatchApi::new(core.clone()))
            .max_decoding_message_size(MAX_REQUEST_BYTES);
        runtime.serve_dead_letters(js.clone(), core.subjects.clone(), &config.auth);
        api.set(Authorize::new(
            server,
            &config.auth,
            grpc::AUTHORIZATION,
            MAX_REQUEST_BYTES,
        ));
        Ok(Self {
            runtime,
            core,
            relay,
            js,
            nats: client,
            wake_rx,
            order_events,
            config,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.runtime.grpc_addr()
    }

    pub fn pool(&self) -> &PgPool {
        &self.core.pool
    }

    /// Runs the consumers, the sender, the sweep, the settings watch, the outbox relay and the
    /// pruner until the shutdown token is cancelled; then stops taking work, lets passes in
    /// flight finish (for `runtime.drain_timeout_ms`) and flushes the outbox (see
    /// `wmslink_platform::runtime`).
    pub async fn run_until_stopped(self) -> Result<(), RunError> {
        let Self {
            runtime,
            core,
            relay,
            js,
            nats,
            wake_rx,
            order_events,
            config,
        } = self;
        // A restarted task takes its channel up again.
        let wake_rx = Arc::new(Mutex::new(wake_rx));
        let (changed_tx, changed_rx) = mpsc::unbounded_channel();
        let changed_rx = Arc::new(Mutex::new(changed_rx));
        let [status_changed, updated, observed] = consumer_specs(&config, &core.subjects);

        let mut tasks = vec![
            Task::batch_consumer(
                js.clone(),
                core.subjects.clone(),
                status_changed,
                OrderEvents::status_changed(core.clone()),
            ),
            Task::batch_consumer(
                js.clone(),
                core.subjects.clone(),
                updated,
                OrderEvents::updated(core.clone()),
            ),
            Task::batch_consumer(
                js.clone(),
                core.subjects.clone(),
                observed,
                Observations::new(core.clone()),
            ),
            Task::required("sender", {
                let core = core.clone();
                move |ctx| {
                    let (core, wake_rx) = (core.clone(), wake_rx.clone());
                    async move {
                        let mut wake_rx = wake_rx.lock().await;
                        sender::scheduler::run_scheduler(core, &mut wake_rx, ctx.stop().clone())
                            .await;
                        Ok(())
                    }
                }
            }),
            Task::required("sweeper", {
                let core = core.clone();
                move |ctx| {
                    let (core, changed_rx) = (core.clone(), changed_rx.clone());
                    async move {
                        let mut changed_rx = changed_rx.lock().await;
                        sender::sweep::run_sweeper(core, &mut changed_rx, ctx.stop().clone()).await;
                        Ok(())
                    }
                }
            }),
            Task::required("settings watch", {
                let core = core.clone();
                move |ctx| {
                    let on_change = {
                        let core = core.clone();
                        let changed_tx = changed_tx.clone();
                        move |shop: String| {
                            core.settings.invalidate(&shop);
                            core.wms.invalidate(&shop);
                            if core.config.sweep_on_settings_change {
                                let _ = changed_tx.send(shop);
                            }
                            std::future::ready(())
                        }
                    };
                    let watch = settings::watch_changes(
                        nats.clone(),
                        core.subjects.clone(),
                        on_change,
                        ctx.stop().clone(),
                    );
                    async move {
                        watch.await;
                        Ok(())
                    }
                }
            }),
            Task::pruner(
                core.pool.clone(),
                config.outbox.keep_published(),
                Some(config.consumers.keep_processed()),
            ),
        ];
        if let Some(client) = order_events {
            let interval = config.order_events.rebuild_interval();
            tasks.push(Task::background("rebuild sweep", {
                let core = core.clone();
                move |ctx| {
                    let rebuild = sender::rebuild::run_rebuilder(
                        core.clone(),
                        client.clone(),
                        interval,
                        ctx.stop().clone(),
                    );
                    async move {
                        rebuild.await;
                        Ok(())
                    }
                }
            }));
        }
        tasks.extend(relay.map(Task::outbox_relay));
        Ok(runtime.run(tasks).await?)
    }
}
