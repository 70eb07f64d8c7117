//! order-events: where the cart's orders enter wmslink (flows 1 and 4; O1, O2, R1, R4, R6).
//!
//! - In: full order snapshots on `cart.orders.{shop}.upserted` (protobuf, or proto3 JSON) and
//!   gRPC `OrderService`; checked, stored by revision, and turned into
//!   `orders.{shop}.status_changed` / `orders.{shop}.updated` through the transactional outbox.
//! - R4: a status change is refused while the WMS is processing the order.
//! - The projection of `shipments.{shop}.updated` gives the two-level WMS/OMS status of the list.
//! - Known shops come from `settings.{shop}.changed` (R6).

pub mod config;
pub mod consumers;
pub mod domain;
pub mod errors;
pub mod events;
pub mod grpc;
pub mod metrics;
pub mod service;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;
use wmslink_platform::auth::Authenticator;
use wmslink_platform::consumer::{self, ConsumerSpec, Handler};
use wmslink_platform::grpc as platform_grpc;
use wmslink_platform::nats::{StreamKind, Subjects};
use wmslink_platform::outbox::OutboxRelay;
use wmslink_platform::{db, nats, outbox};
use wmslink_proto::orders::v1::order_service_server::OrderServiceServer;

pub use config::Config;
pub use errors::{RunError, StartupError};
pub use metrics::Metrics;

use crate::grpc::OrderApi;
use crate::service::Orders;

/// The service's name in telemetry.
pub const SERVICE_NAME: &str = "order-events";

/// The streams order-events publishes to or consumes from.
pub const STREAMS: &[StreamKind] = &[
    StreamKind::CartOrders,
    StreamKind::Orders,
    StreamKind::Settings,
    StreamKind::Shipments,
    StreamKind::DeadLetters,
];

/// Slack on top of the largest order for the rest of a gRPC request.
const GRPC_DECODING_SLACK: usize = 64 * 1024;

/// A built service: database migrated, streams and consumers ensured, gRPC port bound.
pub struct Application {
    grpc_addr: SocketAddr,
    listener: TcpListener,
    routes: Routes,
    stop: CancellationToken,
    js: jetstream::Context,
    subjects: Subjects,
    pool: sqlx::PgPool,
    orders: Orders,
    relay: Option<OutboxRelay>,
    specs: Specs,
    config: Config,
    metrics: Arc<Metrics>,
}

struct Specs {
    cart_orders: ConsumerSpec,
    settings: ConsumerSpec,
    shipments: ConsumerSpec,
}

fn spec(config: &Config, stream: String, durable: &str, filter: String) -> ConsumerSpec {
    let mut spec = ConsumerSpec::new(stream, durable.to_owned(), filter);
    spec.ack_wait = config.consumers.ack_wait();
    spec.max_deliver = config.consumers.max_deliver.max(1);
    spec.base_delay = config.consumers.retry_base_delay();
    spec.max_delay = config.consumers.retry_max_delay();
    spec
}

fn check_config(config: &Config) -> Result<(), StartupError> {
    if config.orders.max_message_bytes == 0 {
        return Err(StartupError::Config(
            "orders.max_message_bytes must be positive".into(),
        ));
    }
    if config
        .orders
        .processing_wms_status_ids
        .iter()
        .any(|id| *id <= 0)
    {
        return Err(StartupError::Config(
            "orders.processing_wms_status_ids must be positive WMS status ids".into(),
        ));
    }
    Ok(())
}

impl Application {
    /// Connects, migrates, ensures streams and consumers, and binds the gRPC port. Stops when
    /// `shutdown` is cancelled.
    pub async fn build(config: Config, shutdown: CancellationToken) -> Result<Self, StartupError> {
        check_config(&config)?;
        let pool = db::connect(&config.database).await?;
        db::migrate(&pool, &store::MIGRATOR).await?;

        let client = nats::connect(&config.nats).await?;
        let js = jetstream::new(client);
        let subjects = Subjects::new(&config.nats.prefix)?;
        nats::ensure_streams(&js, &subjects, STREAMS, config.nats.stream_replicas).await?;

        let specs = Specs {
            cart_orders: spec(
                &config,
                subjects.stream_name(StreamKind::CartOrders),
                consumers::CART_ORDERS_CONSUMER,
                subjects.cart_orders_upserted_all(),
            ),
            settings: spec(
                &config,
                subjects.stream_name(StreamKind::Settings),
                consumers::SETTINGS_CONSUMER,
                subjects.settings_changed_all(),
            ),
            shipments: spec(
                &config,
                subjects.stream_name(StreamKind::Shipments),
                consumers::SHIPMENTS_CONSUMER,
                subjects.shipments_updated_all(),
            ),
        };
        for spec in [&specs.cart_orders, &specs.settings, &specs.shipments] {
            consumer::ensure_consumer(&js, spec).await?;
        }

        let relay = config
            .outbox
            .relay_enabled
            .then(|| OutboxRelay::new(pool.clone(), js.clone()));
        let metrics = Arc::new(Metrics::default());
        let orders = Orders::new(
            pool.clone(),
            subjects.clone(),
            &config.orders.processing_wms_status_ids,
            relay.as_ref().map(OutboxRelay::waker),
            metrics.clone(),
        );

        let (listener, grpc_addr) = platform_grpc::bind(&config.grpc).await?;
        let (routes, reporter) = platform_grpc::base_routes()?;
        let api = OrderServiceServer::new(OrderApi::new(
            orders.clone(),
            config.orders.max_message_bytes,
        ))
        .max_decoding_message_size(
            config
                .orders
                .max_message_bytes
                .saturating_add(GRPC_DECODING_SLACK),
        );
        let routes = routes.add_service(InterceptedService::new(
            api,
            Authenticator::new(&config.auth),
        ));
        reporter.set_serving::<OrderServiceServer<OrderApi>>().await;
        tracing::info!(%grpc_addr, prefix = %config.nats.prefix, relay = relay.is_some(), "order-events built");

        Ok(Self {
            grpc_addr,
            listener,
            routes,
            stop: shutdown.child_token(),
            js,
            subjects,
            pool,
            orders,
            relay,
            specs,
            config,
            metrics,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// Counters of notable outcomes (stale revisions, refusals, conflicts).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Serves gRPC and runs the consumers and the outbox relay until shutdown. If one of them
    /// fails, the others are stopped and the error returned.
    pub async fn run_until_stopped(self) -> Result<(), RunError> {
        let Self {
            listener,
            routes,
            stop,
            js,
            subjects,
            pool,
            orders,
            relay,
            specs,
            config,
            ..
        } = self;
        let max_bytes = config.orders.max_message_bytes;
        let mut tasks: JoinSet<(&'static str, Result<(), RunError>)> = JoinSet::new();

        let token = stop.clone();
        tasks.spawn(async move {
            let result = platform_grpc::serve(listener, routes, token).await;
            ("grpc", result.map_err(RunError::from))
        });
        spawn_consumer(
            &mut tasks,
            "cart-orders consumer",
            &js,
            &subjects,
            specs.cart_orders,
            consumers::CartOrders {
                orders: orders.clone(),
                subjects: subjects.clone(),
                max_message_bytes: max_bytes,
            },
            &stop,
        );
        spawn_consumer(
            &mut tasks,
            "settings consumer",
            &js,
            &subjects,
            specs.settings,
            consumers::Settings {
                orders: orders.clone(),
                subjects: subjects.clone(),
                max_message_bytes: max_bytes,
            },
            &stop,
        );
        spawn_consumer(
            &mut tasks,
            "shipments consumer",
            &js,
            &subjects,
            specs.shipments,
            consumers::Shipments {
                orders: orders.clone(),
                subjects: subjects.clone(),
                max_message_bytes: max_bytes,
            },
            &stop,
        );
        if let Some(relay) = relay {
            let token = stop.clone();
            tasks.spawn(async move {
                relay.run(token).await;
                ("outbox relay", Ok(()))
            });
        }
        let keep = Duration::from_secs(config.outbox.keep_published_hours.saturating_mul(3600));
        let token = stop.clone();
        tasks.spawn(async move {
            loop {
                match outbox::prune(&pool, keep).await {
                    Ok(0) => {}
                    Ok(deleted) => tracing::info!(deleted, "published outbox rows pruned"),
                    Err(err) => tracing::warn!(error = %err, "outbox prune failed"),
                }
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
                }
            }
            ("outbox prune", Ok(()))
        });

        let mut first_error = None;
        while let Some(joined) = tasks.join_next().await {
            let failure = match joined {
                Ok((_, Ok(()))) if stop.is_cancelled() => None,
                Ok((name, Ok(()))) => Some(RunError::TaskStopped(name)),
                Ok((name, Err(err))) => {
                    tracing::error!(task = name, error = %err, "task failed");
                    Some(err)
                }
                Err(err) => Some(RunError::TaskPanicked(err)),
            };
            if let Some(failure) = failure {
                stop.cancel();
                first_error.get_or_insert(failure);
            }
        }
        tracing::info!("order-events stopped");
        match first_error {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

fn spawn_consumer<H: Handler>(
    tasks: &mut JoinSet<(&'static str, Result<(), RunError>)>,
    name: &'static str,
    js: &jetstream::Context,
    subjects: &Subjects,
    spec: ConsumerSpec,
    handler: H,
    stop: &CancellationToken,
) {
    let run = consumer::run(js.clone(), subjects.clone(), spec, handler, stop.clone());
    tasks.spawn(async move { (name, run.await.map_err(RunError::from)) });
}
