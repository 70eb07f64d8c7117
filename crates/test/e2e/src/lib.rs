//! The whole wmslink system in one process: the WMS simulator and the four services, each on
//! port 0 with a fresh database, all sharing one unique NATS prefix and one rate-limit database.
//! Real PostgreSQL, real NATS JetStream, real gRPC over loopback; nothing is mocked. Shops are
//! the demo shop of `wmslink-demo`, set up the same way.

use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use wmslink_platform::auth::{TokenConfig, scopes};
use wmslink_platform::secrets::KeyRing;
use wmslink_proto::orders::v1 as orders;
use wmslink_test_harness::grpc::{
    self, DispatchClient, OrdersClient, SettingsClient, SyncClient, port_zero, token,
};
use wmslink_test_harness::settings::reader_service_token;
use wmslink_test_harness::{RunningService, SettingsService};
use wmslink_testkit::{TestDb, TestNats};
use wmslink_tools::demo;
pub use wmslink_tools::demo::{STATUS_CANCELLED, STATUS_HOLD, STATUS_NEW, STATUS_READY};
use wmslink_wms_client::SharedRateLimitConfig;
use wmslink_wms_simulator::{KeyOptions, RunningSimulator, SimConfig, SimRateLimit};

/// One token with every scope, as the cart platform's back office would hold.
pub const OPERATOR_TOKEN: &str = "e2e-operator-token-0123456789";
const DISPATCHER_TOKEN: &str = "e2e-dispatcher-token-0123456789";
const SYNC_TOKEN: &str = "e2e-sync-token-0123456789";
const ORDERS_SETTINGS_TOKEN: &str = "e2e-order-events-token-0123456789";
/// The dispatcher's rebuild sweep at order-events (orders.read).
const DISPATCHER_ORDERS_TOKEN: &str = "e2e-dispatcher-orders-token-0123456789";

/// How the system is started.
#[derive(Debug, Clone)]
pub struct SystemOptions {
    /// The simulator's per-key rate limit (the WMS's documented one by default).
    pub wms_rate_limit: SimRateLimit,
    /// Run status-sync on its own schedule; off, only `RunSync` syncs.
    pub scheduled_sync: bool,
    /// How long status-sync lets a suspected anomaly stand before it reports it.
    pub anomaly_grace_ms: u64,
    /// The simulator's warehouse moves orders on by itself every this many milliseconds;
    /// `None`: only when a test ticks it.
    pub warehouse_step_ms: Option<u64>,
}

impl Default for SystemOptions {
    fn default() -> Self {
        Self {
            wms_rate_limit: SimRateLimit::new(1.0, 60),
            scheduled_sync: false,
            anomaly_grace_ms: 120_000,
            warehouse_step_ms: None,
        }
    }
}

pub struct System {
    pub nats: TestNats,
    pub simulator: RunningSimulator,
    settings: SettingsService,
    orders: RunningService,
    dispatch: RunningService,
    sync: RunningService,
    options: SystemOptions,
}

fn operator() -> TokenConfig {
    token(
        "operator",
        OPERATOR_TOKEN,
        &[
            scopes::SETTINGS_READ,
            scopes::SETTINGS_WRITE,
            scopes::ORDERS_READ,
            scopes::ORDERS_WRITE,
            scopes::OPERATE,
        ],
    )
}

impl System {
    pub async fn start(options: SystemOptions) -> anyhow::Result<Self> {
        wmslink_platform::install_crypto_provider();
        let nats = TestNats::create().await?;
        let (_, master_keys) = KeyRing::generate("e2e");
        let secrets = wmslink_test_harness::settings::master_keys(&master_keys);
        // One WMS budget per access key, whichever service calls.
        let rate_limit_db = TestDb::create().await?;
        let rate_limit = SharedRateLimitConfig {
            database_url: rate_limit_db.url.clone(),
            requests_per_second: options.wms_rate_limit.per_second,
            burst: options.wms_rate_limit.burst,
            ..SharedRateLimitConfig::default()
        };

        let mut simulator_config = SimConfig::for_tests();
        if let Some(step_interval_ms) = options.warehouse_step_ms {
            simulator_config.warehouse.enabled = true;
            simulator_config.warehouse.step_interval_ms = step_interval_ms;
        }
        let simulator = wmslink_test_harness::wms::start_simulator_with(simulator_config).await;

        let settings = SettingsService::start_with(
            &nats,
            &master_keys,
            vec![
                operator(),
                reader_service_token("shipment-dispatcher", DISPATCHER_TOKEN),
                reader_service_token("status-sync", SYNC_TOKEN),
                token(
                    "order-events",
                    ORDERS_SETTINGS_TOKEN,
                    &[scopes::SETTINGS_READ],
                ),
            ],
            |config| config.rate_limit = rate_limit.clone(),
        )
        .await;
        let settings_url = format!("http://{}", settings.addr());

        let orders_db = TestDb::create().await?;
        let mut orders_config = wmslink_order_events::Config {
            database: orders_db.config(),
            nats: nats.config(),
            grpc: port_zero(),
            ..wmslink_order_events::Config::default()
        };
        orders_config.auth.tokens = vec![
            operator(),
            token(
                "shipment-dispatcher",
                DISPATCHER_ORDERS_TOKEN,
                &[scopes::ORDERS_READ],
            ),
        ];
        orders_config.consumers.ack_wait_ms = 2_000;
        orders_config.settings.url = settings_url.clone();
        orders_config.settings.token = ORDERS_SETTINGS_TOKEN.to_owned().into();
        let shutdown = CancellationToken::new();
        let app = wmslink_order_events::Application::build(orders_config, shutdown.clone()).await?;
        let orders = RunningService::spawn(
            "order-events",
            app.grpc_addr(),
            shutdown,
            app.run_until_stopped(),
        );

        let dispatch_db = TestDb::create().await?;
        let mut dispatch_config = wmslink_shipment_dispatcher::Config {
            database: dispatch_db.config(),
            nats: nats.config(),
            grpc: port_zero(),
            secrets: secrets.clone(),
            wms: wmslink_test_harness::wms::wms_test_config(),
            rate_limit: rate_limit.clone(),
            ..wmslink_shipment_dispatcher::Config::default()
        };
        dispatch_config.auth.tokens = vec![operator()];
        dispatch_config.settings.url = settings_url.clone();
        dispatch_config.settings.token = SecretString::from(DISPATCHER_TOKEN.to_owned());
        dispatch_config.sender.sweep_interval_ms = 1_000;
        // The rebuild sweep on, at its default interval.
        dispatch_config.order_events.url = format!("http://{}", orders.addr);
        dispatch_config.order_events.token = SecretString::from(DISPATCHER_ORDERS_TOKEN.to_owned());
        dispatch_config.consumers.ack_wait_ms = 2_000;
        let shutdown = CancellationToken::new();
        let app =
            wmslink_shipment_dispatcher::Application::build(dispatch_config, shutdown.clone())
                .await?;
        let dispatch = RunningService::spawn(
            "shipment-dispatcher",
            app.grpc_addr(),
            shutdown,
            app.run_until_stopped(),
        );

        let sync_db = TestDb::create().await?;
        let mut sync_config = wmslink_status_sync::Config {
            database: sync_db.config(),
            nats: nats.config(),
            grpc: port_zero(),
            secrets,
            wms: wmslink_test_harness::wms::wms_test_config(),
            rate_limit,
            ..wmslink_status_sync::Config::default()
        };
        sync_config.auth.tokens = vec![operator()];
        sync_config.settings.url = settings_url;
        sync_config.settings.token = SecretString::from(SYNC_TOKEN.to_owned());
        sync_config.sync.scheduled = options.scheduled_sync;
        sync_config.sync.interval_ms = 1_000;
        sync_config.sync.tick_ms = 200;
        sync_config.sync.full_pass_every = 1;
        sync_config.consumers.ack_wait_ms = 2_000;
        sync_config.sync.anomaly_grace_ms = options.anomaly_grace_ms;
        let shutdown = CancellationToken::new();
        let app = wmslink_status_sync::Application::build(sync_config, shutdown.clone()).await?;
        let sync = RunningService::spawn(
            "status-sync",
            app.grpc_addr(),
            shutdown,
            app.run_until_stopped(),
        );

        Ok(Self {
            nats,
            simulator,
            settings,
            orders,
            dispatch,
            sync,
            options,
        })
    }

    /// Where each service listens (for clients of their own, e.g. `wmsctl` in its tests).
    pub fn settings_addr(&self) -> std::net::SocketAddr {
        self.settings.addr()
    }

    pub fn orders_addr(&self) -> std::net::SocketAddr {
        self.orders.addr
    }

    pub fn dispatch_addr(&self) -> std::net::SocketAddr {
        self.dispatch.addr
    }

    pub fn sync_addr(&self) -> std::net::SocketAddr {
        self.sync.addr
    }

    pub fn settings(&self) -> SettingsClient {
        self.settings.client(OPERATOR_TOKEN)
    }

    pub fn orders(&self) -> OrdersClient {
        grpc::orders_client(grpc::channel(self.orders.addr), OPERATOR_TOKEN)
    }

    pub fn dispatch(&self) -> DispatchClient {
        grpc::dispatch_client(grpc::channel(self.dispatch.addr), OPERATOR_TOKEN)
    }

    pub fn sync(&self) -> SyncClient {
        grpc::sync_client(grpc::channel(self.sync.addr), OPERATOR_TOKEN)
    }

    /// Creates the shop's WMS account in the simulator and sets the demo shop up under
    /// `shop_id` through the settings service (registered, checked, enabled), as an operator
    /// would. Returns the shop's access key.
    pub async fn enable_shop(&self, shop_id: &str) -> anyhow::Result<String> {
        let access_key = format!("ak-{shop_id}-{}", wmslink_testkit::unique(""));
        self.simulator.state().add_key(
            &access_key,
            KeyOptions {
                rate_limit: Some(self.options.wms_rate_limit),
            },
        )?;
        let endpoint_url = format!("{}/v1", self.simulator.base_url());
        demo::shop(
            shop_id,
            SecretString::from(access_key.clone()),
            &endpoint_url,
        )
        .enable(&mut self.settings())
        .await?;
        Ok(access_key)
    }

    /// Stops every service and waits for them.
    pub async fn stop(mut self) {
        self.sync.stop().await;
        self.dispatch.stop().await;
        self.orders.stop().await;
        self.settings.stop().await;
    }
}

/// A complete cart order of the demo shop, in `status_code`, paid by card.
pub fn order(shop_id: &str, order_no: &str, revision: i64, status_code: &str) -> orders::Order {
    demo::order(shop_id, order_no, revision, status_code, "card")
}
