//! The whole wmslink system in one process: the WMS simulator and the four services, each on
//! port 0 with a fresh database, all sharing one unique NATS prefix and one rate-limit database.
//! Real PostgreSQL, real NATS JetStream, real gRPC over loopback; nothing is mocked.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use wmslink_platform::auth::{AuthConfig, BearerToken, TokenConfig, scopes};
use wmslink_platform::grpc::GrpcConfig;
use wmslink_platform::secrets::{KeyRing, MasterKeyConfig};
use wmslink_proto::dispatch::v1::dispatch_service_client::DispatchServiceClient;
use wmslink_proto::orders::v1 as orders;
use wmslink_proto::orders::v1::order_service_client::OrderServiceClient;
use wmslink_proto::settings::v1 as settings;
use wmslink_proto::settings::v1::settings_service_client::SettingsServiceClient;
use wmslink_proto::sync::v1::sync_service_client::SyncServiceClient;
use wmslink_testkit::{TestDb, TestNats};
use wmslink_wms_client::WmsClientConfig;
use wmslink_wms_simulator::{KeyOptions, RunningSimulator, SimConfig, SimRateLimit, Simulator};

type Authed = InterceptedService<Channel, BearerToken>;
pub type SettingsClient = SettingsServiceClient<Authed>;
pub type OrdersClient = OrderServiceClient<Authed>;
pub type DispatchClient = DispatchServiceClient<Authed>;
pub type SyncClient = SyncServiceClient<Authed>;

/// One token with every scope, as the cart platform's back office would hold.
pub const OPERATOR_TOKEN: &str = "e2e-operator-token-0123456789";
const DISPATCHER_TOKEN: &str = "e2e-dispatcher-token-0123456789";
const SYNC_TOKEN: &str = "e2e-sync-token-0123456789";

/// The cart statuses every shop of the system gets.
pub const STATUS_NEW: &str = "new";
pub const STATUS_READY: &str = "ready_to_ship";
pub const STATUS_HOLD: &str = "on_hold";
pub const STATUS_CANCELLED: &str = "cancelled";

/// How the system is started.
#[derive(Debug, Clone)]
pub struct SystemOptions {
    /// The simulator's per-key rate limit (the WMS's documented one by default).
    pub wms_rate_limit: SimRateLimit,
    /// Run status-sync on its own schedule; off, only `RunSync` syncs.
    pub scheduled_sync: bool,
}

impl Default for SystemOptions {
    fn default() -> Self {
        Self {
            wms_rate_limit: SimRateLimit::new(1.0, 60),
            scheduled_sync: false,
        }
    }
}

pub struct System {
    pub nats: TestNats,
    pub simulator: RunningSimulator,
    pub settings_addr: SocketAddr,
    pub orders_addr: SocketAddr,
    pub dispatch_addr: SocketAddr,
    pub sync_addr: SocketAddr,
    options: SystemOptions,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

fn token(caller: &str, token: &str, granted: &[&str]) -> TokenConfig {
    TokenConfig {
        caller: caller.into(),
        token: SecretString::from(token.to_owned()),
        scopes: granted.iter().map(|scope| (*scope).to_owned()).collect(),
    }
}

fn auth(tokens: Vec<TokenConfig>) -> AuthConfig {
    AuthConfig { tokens }
}

fn port_zero() -> GrpcConfig {
    GrpcConfig {
        listen_addr: "127.0.0.1:0".into(),
    }
}

fn wms_config() -> WmsClientConfig {
    WmsClientConfig {
        allow_http_hosts: vec!["127.0.0.1".into()],
        connect_timeout_ms: 2_000,
        request_timeout_ms: 5_000,
        ..WmsClientConfig::default()
    }
}

fn all_scopes() -> Vec<&'static str> {
    vec![
        scopes::SETTINGS_READ,
        scopes::SETTINGS_WRITE,
        scopes::ORDERS_READ,
        scopes::ORDERS_WRITE,
        scopes::OPERATE,
    ]
}

fn spawn<F, E>(run: F) -> JoinHandle<()>
where
    F: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display,
{
    tokio::spawn(async move {
        if let Err(err) = run.await {
            tracing::error!(error = %err, "service stopped with an error");
        }
    })
}

impl System {
    pub async fn start(options: SystemOptions) -> anyhow::Result<Self> {
        wmslink_platform::install_crypto_provider();
        let shutdown = CancellationToken::new();
        let nats = TestNats::create().await?;
        let (_, master_key_line) = KeyRing::generate("e2e");
        let secrets = MasterKeyConfig {
            master_keys: SecretString::from(master_key_line),
            ..MasterKeyConfig::default()
        };
        let rate_limit_db = TestDb::create().await?;
        let mut tasks = Vec::new();

        let simulator = Simulator::build(SimConfig::for_tests()).await?.spawn();

        let settings_db = TestDb::create().await?;
        let settings_app = wmslink_settings::Application::build(
            wmslink_settings::Config {
                database: settings_db.config(),
                nats: nats.config(),
                grpc: port_zero(),
                auth: auth(vec![
                    token("operator", OPERATOR_TOKEN, &all_scopes()),
                    token(
                        "shipment-dispatcher",
                        DISPATCHER_TOKEN,
                        &[scopes::SETTINGS_READ, scopes::SETTINGS_CREDENTIALS],
                    ),
                    token(
                        "status-sync",
                        SYNC_TOKEN,
                        &[scopes::SETTINGS_READ, scopes::SETTINGS_CREDENTIALS],
                    ),
                ]),
                secrets: secrets.clone(),
                wms: wms_config(),
                rate_limit: wmslink_wms_client::SharedRateLimitConfig {
                    database_url: rate_limit_db.url.clone(),
                    requests_per_second: options.wms_rate_limit.per_second,
                    burst: options.wms_rate_limit.burst,
                    ..Default::default()
                },
                ..wmslink_settings::Config::default()
            },
            shutdown.child_token(),
        )
        .await?;
        let settings_addr = settings_app.grpc_addr();
        tasks.push(spawn(settings_app.run_until_stopped()));
        let settings_url = format!("http://{settings_addr}");

        let orders_db = TestDb::create().await?;
        let mut orders_config = wmslink_order_events::Config {
            database: orders_db.config(),
            nats: nats.config(),
            grpc: port_zero(),
            auth: auth(vec![token("operator", OPERATOR_TOKEN, &all_scopes())]),
            ..wmslink_order_events::Config::default()
        };
        orders_config.consumers.ack_wait_ms = 2_000;
        let orders_app =
            wmslink_order_events::Application::build(orders_config, shutdown.child_token()).await?;
        let orders_addr = orders_app.grpc_addr();
        tasks.push(spawn(orders_app.run_until_stopped()));

        let dispatch_db = TestDb::create().await?;
        let mut dispatch_config = wmslink_shipment_dispatcher::Config {
            database: dispatch_db.config(),
            nats: nats.config(),
            grpc: port_zero(),
            auth: auth(vec![token("operator", OPERATOR_TOKEN, &all_scopes())]),
            secrets: secrets.clone(),
            wms: wms_config(),
            ..wmslink_shipment_dispatcher::Config::default()
        };
        dispatch_config.settings.url = settings_url.clone();
        dispatch_config.settings.token = SecretString::from(DISPATCHER_TOKEN.to_owned());
        dispatch_config.rate_limit.database_url = rate_limit_db.url.clone();
        dispatch_config.rate_limit.requests_per_second = options.wms_rate_limit.per_second;
        dispatch_config.rate_limit.burst = options.wms_rate_limit.burst;
        dispatch_config.sender.sweep_interval_ms = 1_000;
        dispatch_config.sender.consumer_ack_wait_ms = 2_000;
        let dispatch_app = wmslink_shipment_dispatcher::Application::build(
            dispatch_config,
            shutdown.child_token(),
        )
        .await?;
        let dispatch_addr = dispatch_app.grpc_addr();
        tasks.push(spawn(dispatch_app.run_until_stopped()));

        let sync_db = TestDb::create().await?;
        let mut sync_config = wmslink_status_sync::Config {
            database: sync_db.config(),
            nats: nats.config(),
            grpc: port_zero(),
            auth: auth(vec![token("operator", OPERATOR_TOKEN, &all_scopes())]),
            secrets,
            wms: wms_config(),
            ..wmslink_status_sync::Config::default()
        };
        sync_config.settings.url = settings_url;
        sync_config.settings.token = SecretString::from(SYNC_TOKEN.to_owned());
        sync_config.rate_limit.database_url = rate_limit_db.url.clone();
        sync_config.rate_limit.requests_per_second = options.wms_rate_limit.per_second;
        sync_config.rate_limit.burst = options.wms_rate_limit.burst;
        sync_config.sync.scheduled = options.scheduled_sync;
        sync_config.sync.interval_secs = 1;
        sync_config.sync.tick_ms = 200;
        sync_config.sync.full_pass_every = 1;
        sync_config.sync.consumer_ack_wait_secs = 2;
        let sync_app =
            wmslink_status_sync::Application::build(sync_config, shutdown.child_token()).await?;
        let sync_addr = sync_app.grpc_addr();
        tasks.push(spawn(sync_app.run_until_stopped()));

        Ok(Self {
            nats,
            simulator,
            settings_addr,
            orders_addr,
            dispatch_addr,
            sync_addr,
            options,
            shutdown,
            tasks,
        })
    }

    fn channel(addr: SocketAddr) -> anyhow::Result<Channel> {
        Ok(Channel::from_shared(format!("http://{addr}"))?.connect_lazy())
    }

    fn operator() -> anyhow::Result<BearerToken> {
        Ok(BearerToken::new(&SecretString::from(
            OPERATOR_TOKEN.to_owned(),
        ))?)
    }

    pub fn settings(&self) -> anyhow::Result<SettingsClient> {
        Ok(SettingsServiceClient::with_interceptor(
            Self::channel(self.settings_addr)?,
            Self::operator()?,
        ))
    }

    pub fn orders(&self) -> anyhow::Result<OrdersClient> {
        Ok(OrderServiceClient::with_interceptor(
            Self::channel(self.orders_addr)?,
            Self::operator()?,
        ))
    }

    pub fn dispatch(&self) -> anyhow::Result<DispatchClient> {
        Ok(DispatchServiceClient::with_interceptor(
            Self::channel(self.dispatch_addr)?,
            Self::operator()?,
        ))
    }

    pub fn sync(&self) -> anyhow::Result<SyncClient> {
        Ok(SyncServiceClient::with_interceptor(
            Self::channel(self.sync_addr)?,
            Self::operator()?,
        ))
    }

    /// Creates the shop's WMS account in the simulator and registers, checks and enables the
    /// shop through the settings service, as an operator would. Returns the shop's access key.
    pub async fn enable_shop(&self, shop_id: &str) -> anyhow::Result<String> {
        let access_key = format!("ak-{shop_id}-{}", wmslink_testkit::unique(""));
        self.simulator.state().add_key(
            &access_key,
            KeyOptions {
                rate_limit: Some(self.options.wms_rate_limit),
            },
        )?;
        let mut client = self.settings()?;
        use settings::OrderStatusKind as Kind;
        let status = |code: &str, kind: Kind| settings::OrderStatus {
            code: code.into(),
            display_name: code.into(),
            kind: kind as i32,
        };
        client
            .put_order_status_catalog(settings::PutOrderStatusCatalogRequest {
                shop_id: shop_id.into(),
                statuses: vec![
                    status(STATUS_NEW, Kind::Open),
                    status(STATUS_READY, Kind::Open),
                    status(STATUS_HOLD, Kind::Open),
                    status(STATUS_CANCELLED, Kind::Cancelled),
                ],
            })
            .await?;
        let registered = client
            .register_settings(settings::RegisterSettingsRequest {
                shop_id: shop_id.into(),
                expected_version: 0,
                access_key: Some(access_key.clone()),
                detail: Some(settings::DetailSettings {
                    wms_kind: settings::WmsKind::CommerceRobo as i32,
                    endpoint_url: format!("{}/v1", self.simulator.base_url()),
                    data_targets: Some(settings::DataTargets {
                        shipment_instructions: true,
                        cancellations: true,
                        shipment_results: true,
                    }),
                    target_status_codes: vec![STATUS_READY.into()],
                    shipper_id: 3,
                    delivery_method_id: 2,
                    sync_period_days: 30,
                    robot_id: 12,
                    payment_mappings: vec![settings::PaymentMapping {
                        payment_method_code: "card".into(),
                        wms_payment_method_id: 7,
                        delivery_company_id: 0,
                    }],
                    header_free_fields: vec![settings::FreeFieldMapping {
                        slot: 1,
                        cart_field: "note".into(),
                    }],
                    line_free_fields: vec![],
                }),
            })
            .await?
            .into_inner();
        let checked = client
            .check_connection(settings::CheckConnectionRequest {
                shop_id: shop_id.into(),
                access_key: None,
                endpoint_url: None,
            })
            .await?
            .into_inner();
        anyhow::ensure!(
            checked.check.as_ref().map(|check| check.outcome())
                == Some(settings::ConnectionCheckOutcome::Ok),
            "connection check: {:?}",
            checked.check
        );
        let version = registered
            .settings
            .map_or(0, |settings| settings.version)
            .max(checked.version);
        client
            .set_enabled(settings::SetEnabledRequest {
                shop_id: shop_id.into(),
                enabled: true,
                expected_version: version,
            })
            .await?;
        Ok(access_key)
    }

    /// Stops every service and waits for them.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

/// A complete cart order, in `status_code`, paid by card.
pub fn order(shop_id: &str, order_no: &str, revision: i64, status_code: &str) -> orders::Order {
    let now = chrono::Utc::now();
    let address = orders::Address {
        name: "山田 太郎".into(),
        kana: "ヤマダ タロウ".into(),
        zip: "150-0001".into(),
        prefecture: "東京都".into(),
        address1: "渋谷区神宮前1-1-1".into(),
        address2: "101".into(),
        phone: "03-0000-0000".into(),
        email: "taro@example.com".into(),
    };
    orders::Order {
        shop_id: shop_id.into(),
        order_no: order_no.into(),
        revision,
        order_date: Some(prost_types::Timestamp {
            seconds: now.timestamp(),
            nanos: 0,
        }),
        status_code: status_code.into(),
        payment_method_code: "card".into(),
        orderer: Some(address.clone()),
        shipping: Some(address),
        delivery_date: String::new(),
        delivery_time: String::new(),
        amounts: Some(orders::Amounts {
            products: 5400,
            shipping_fee: 600,
            cod_fee: 0,
            discount: 0,
            tax: 545,
            total: 6000,
        }),
        note: format!("note of {order_no}"),
        lines: vec![orders::LineItem {
            sku: "TSHIRT-RED-M".into(),
            name: "Tシャツ 赤 M".into(),
            quantity: 2,
            unit_price: 2700,
            options: Default::default(),
        }],
        extra: Default::default(),
    }
}
