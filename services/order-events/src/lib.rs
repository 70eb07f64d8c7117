//! order-events: where the cart's orders enter wmslink (flows 1 and 4; O1, O2, R1, R4, R6).
//!
//! - In: full order snapshots on `cart.orders.{shop}.upserted` (protobuf, or proto3 JSON) and
//!   gRPC `OrderService`; checked, stored by revision, and turned into
//!   `orders.{shop}.status_changed` / `orders.{shop}.updated` through the transactional outbox.
//! - R4: a status change is refused while the WMS is processing the order.
//! - The projection of `shipments.{shop}.updated` gives the two-level WMS/OMS status of the list.
//! - Known shops come from `settings.{shop}.changed` (R6), and from the settings service for a
//!   shop whose event has not arrived and at start.

pub mod config;
pub mod consumers;
pub mod domain;
pub mod errors;
pub mod events;
pub mod grpc;
pub mod list_bench;
pub mod metrics;
pub mod service;
pub mod shop_directory;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;

use async_nats::jetstream;
use tokio_util::sync::CancellationToken;
use wmslink_platform::authz::Authorize;
use wmslink_platform::config::Validate;
use wmslink_platform::consumer::{self, ConsumerSpec};
use wmslink_platform::nats::{StreamKind, Subjects};
use wmslink_platform::outbox::OutboxRelay;
use wmslink_platform::runtime::{DeferredService, Runtime, Starting, Task};
use wmslink_platform::{db, nats};
use wmslink_proto::orders::v1::order_service_server::OrderServiceServer;

pub use config::Config;
pub use errors::{RunError, StartupError};
pub use metrics::Metrics;

use crate::grpc::OrderApi;
use crate::service::Orders;
use crate::shop_directory::ShopDirectory;

/// The service's name in logs and telemetry.
pub const SERVICE_NAME: &str = "wmslink-order-events";

/// The streams order-events publishes to or consumes from.
pub const STREAMS: &[StreamKind] = &[
    StreamKind::CartOrders,
    StreamKind::Orders,
    StreamKind::Settings,
    StreamKind::Shipments,
    StreamKind::Wms,
    StreamKind::DeadLetters,
];

/// Slack on top of the largest order for the rest of a gRPC request.
const GRPC_DECODING_SLACK: usize = 64 * 1024;

/// Room an order event (`OrderStatusChanged`, `OrderUpdated`) takes around the order it
/// carries: event id, status codes (64 characters each), revision, time, and its headers
/// (`Nats-Msg-Id`, `traceparent`, `tracestate`), with a wide margin.
pub const EVENT_HEADROOM_BYTES: usize = 8 * 1024;

/// The largest order accepted (I5): `orders.max_message_bytes`, lowered so that every event
/// of the order fits the NATS server's `max_payload`. An order the outbox could never publish
/// is refused at the door (`INVALID_ARGUMENT`, or a dead letter on NATS) instead of being
/// moved aside after it was accepted.
pub fn max_order_bytes(configured: usize, max_payload: usize) -> usize {
    configured.min(max_payload.saturating_sub(EVENT_HEADROOM_BYTES))
}

type Api = Authorize<OrderServiceServer<OrderApi>>;

/// The service, ready to run: database migrated, streams and consumers ensured, API installed.
pub struct Application {
    runtime: Runtime,
    js: jetstream::Context,
    subjects: Subjects,
    pool: sqlx::PgPool,
    orders: Orders,
    relay: Option<OutboxRelay>,
    config: Config,
    metrics: Arc<Metrics>,
}

/// The durable consumers, each with the `[consumers]` rules and the order size limit.
fn consumer_specs(config: &Config, subjects: &Subjects) -> [ConsumerSpec; 4] {
    let spec = |stream: StreamKind, durable: &str, filter: String| {
        config
            .consumers
            .spec(subjects.stream_name(stream), durable, filter)
            .with_max_message_bytes(config.orders.max_message_bytes)
    };
    [
        spec(
            StreamKind::CartOrders,
            consumers::CART_ORDERS_CONSUMER,
            subjects.cart_orders_upserted_all(),
        ),
        spec(
            StreamKind::Settings,
            consumers::SETTINGS_CONSUMER,
            subjects.settings_changed_all(),
        ),
        spec(
            StreamKind::Shipments,
            consumers::SHIPMENTS_CONSUMER,
            subjects.shipments_updated_all(),
        ),
        spec(
            StreamKind::Wms,
            consumers::ANOMALIES_CONSUMER,
            subjects.wms_anomaly_all(),
        ),
    ]
}

impl Application {
    /// [`start`](Self::start), then waits until the dependencies are reached.
    pub async fn build(config: Config, shutdown: CancellationToken) -> Result<Self, StartupError> {
        Self::start(config, shutdown).await?.ready().await
    }

    /// Checks the configuration and binds the gRPC port (port 0 picks a free one): health
    /// answers `NOT_SERVING` from here on. [`Starting::ready`] then waits for PostgreSQL and
    /// NATS, migrating and ensuring the streams and consumers.
    pub async fn start(
        config: Config,
        shutdown: CancellationToken,
    ) -> Result<Starting<Self, StartupError>, StartupError> {
        config.validate()?;
        let api = DeferredService::new();
        let runtime =
            Runtime::start(SERVICE_NAME, &config.runtime, &config.grpc, &api, &shutdown).await?;
        Ok(Starting::new(
            runtime.grpc_addr(),
            Self::connect(config, runtime, api),
        ))
    }

    async fn connect(
        mut config: Config,
        runtime: Runtime,
        api: DeferredService<Api>,
    ) -> Result<Self, StartupError> {
        let pool = runtime
            .wait_for("PostgreSQL", || {
                db::connect_and_migrate(&config.database, &store::MIGRATOR)
            })
            .await?;
        let js = jetstream::new(nats::connect(&config.nats).await?);
        let subjects = Subjects::new(&config.nats.prefix)?;
        let specs = consumer_specs(&config, &subjects);
        runtime
            .wait_for("NATS JetStream", || async {
                nats::ensure_streams(&js, &subjects, STREAMS, config.nats.stream_replicas).await?;
                for spec in &specs {
                    consumer::ensure_consumer(&js, spec).await?;
                }
                Ok::<_, StartupError>(())
            })
            .await?;

        // Known once the server answered (JetStream did, above).
        let max_payload = js.client().server_info().max_payload;
        let max_order = max_order_bytes(config.orders.max_message_bytes, max_payload);
        if max_payload > 0 && max_order < config.orders.max_message_bytes {
            tracing::warn!(
                configured = config.orders.max_message_bytes,
                max_payload,
                accepted = max_order,
                "orders.max_message_bytes lowered so that every order event fits NATS's max_payload"
            );
            config.orders.max_message_bytes = max_order;
        }
        let relay = config.outbox.relay(&pool, &js);
        let metrics = Arc::new(Metrics::default());
        let directory = if config.orders.ask_settings {
            Some(Arc::new(ShopDirectory::new(&config.settings)?))
        } else {
            None
        };
        let orders = Orders::new(
            pool.clone(),
            subjects.clone(),
            &config.orders.processing_wms_status_ids,
            relay.as_ref().map(OutboxRelay::waker),
            metrics.clone(),
            directory,
        );
        let max_request_bytes = config
            .orders
            .max_message_bytes
            .saturating_add(GRPC_DECODING_SLACK);
        let server = OrderServiceServer::new(OrderApi::new(
            orders.clone(),
            config.orders.max_message_bytes,
        ))
        .max_decoding_message_size(max_request_bytes);
        runtime.serve_dead_letters(js.clone(), subjects.clone(), &config.auth);
        api.set(Authorize::new(
            server,
            &config.auth,
            grpc::AUTHORIZATION,
            max_request_bytes,
        ));
        tracing::info!(prefix = %config.nats.prefix, relay = relay.is_some(), "order-events ready");
        Ok(Self {
            runtime,
            js,
            subjects,
            pool,
            orders,
            relay,
            config,
            metrics,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.runtime.grpc_addr()
    }

    /// Counters of notable outcomes (stale revisions, refusals, conflicts).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Runs the consumers, the outbox relay and the pruner until the shutdown token is
    /// cancelled, then drains and flushes the outbox (see `wmslink_platform::runtime`).
    pub async fn run_until_stopped(self) -> Result<(), RunError> {
        let Self {
            runtime,
            js,
            subjects,
            pool,
            orders,
            relay,
            config,
            ..
        } = self;
        let [cart_orders, settings, shipments, anomalies] = consumer_specs(&config, &subjects);
        let mut tasks = vec![
            Task::batch_consumer(
                js.clone(),
                subjects.clone(),
                cart_orders,
                consumers::CartOrders {
                    orders: orders.clone(),
                    max_message_bytes: config.orders.max_message_bytes,
                },
            ),
            Task::consumer(
                js.clone(),
                subjects.clone(),
                settings,
                consumers::Settings {
                    orders: orders.clone(),
                },
            ),
            Task::batch_consumer(
                js.clone(),
                subjects.clone(),
                shipments,
                consumers::Shipments {
                    orders: orders.clone(),
                },
            ),
            Task::consumer(
                js.clone(),
                subjects.clone(),
                anomalies,
                consumers::Anomalies {
                    orders: orders.clone(),
                },
            ),
            // Once at start (restarted with back-off while the settings service is out of
            // reach), then idle until the service stops.
            Task::background("learn shops", move |ctx| {
                let orders = orders.clone();
                async move {
                    orders.learn_shops().await?;
                    ctx.stop().cancelled().await;
                    Ok(())
                }
            }),
            Task::pruner(
                pool,
                config.outbox.keep_published(),
                Some(config.consumers.keep_processed()),
            ),
        ];
        tasks.extend(relay.map(Task::outbox_relay));
        Ok(runtime.run(tasks).await?)
    }
}
