//! `spawn_app()`: the real settings service, the WMS simulator and the dispatcher, all
//! in-process on port 0, with fresh databases and a unique NATS prefix per test; and the
//! helpers that publish order events as order-events would.

use std::net::SocketAddr;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use futures::StreamExt;
use prost::Message;
use secrecy::SecretString;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use wmslink_platform::auth::{AuthConfig, BearerToken, TokenConfig, scopes};
use wmslink_platform::consumer::DEAD_LETTER_REASON;
use wmslink_platform::grpc::GrpcConfig;
use wmslink_platform::nats::StreamKind;
use wmslink_platform::secrets::{KeyRing, MasterKeyConfig};
use wmslink_platform::shop::ShopId;
use wmslink_proto::dispatch::v1 as dpb;
use wmslink_proto::dispatch::v1::dispatch_service_client::DispatchServiceClient;
use wmslink_proto::orders::v1::{
    Address, Amounts, LineItem, Order, OrderStatusChanged, OrderUpdated, ShippingStatus,
};
use wmslink_proto::settings::v1 as spb;
use wmslink_proto::settings::v1::settings_service_client::SettingsServiceClient;
use wmslink_proto::sync::v1::WmsObserved;
use wmslink_shipment_dispatcher::{Application, Config};
use wmslink_testkit::{TestDb, TestNats, eventually};
use wmslink_wms_simulator::{
    Counters, KeyOptions, RunningSimulator, SimConfig, SimOrder, SimRateLimit, Simulator,
};

pub type Dispatch = DispatchServiceClient<InterceptedService<Channel, BearerToken>>;
pub type Settings = SettingsServiceClient<InterceptedService<Channel, BearerToken>>;

const SETTINGS_ADMIN_TOKEN: &str = "test-settings-admin-token-0123";
const SETTINGS_DISPATCHER_TOKEN: &str = "test-settings-dispatcher-token-0123";
pub const OPERATOR_TOKEN: &str = "test-operator-token-0123456789";
pub const READER_TOKEN: &str = "test-orders-reader-token-0123456";

/// How long `eventually` waits.
pub const WAIT: Duration = Duration::from_secs(20);

pub struct Running {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

/// The settings service of a test, as started by [`start_settings`].
struct RunningSettings {
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

pub struct TestApp {
    pub sim: RunningSimulator,
    pub nats: TestNats,
    pub db: TestDb,
    pub config: Config,
    pub settings: Settings,
    pub operator: Dispatch,
    pub reader: Dispatch,
    dispatcher: Option<Running>,
    settings_service: Option<RunningSettings>,
    /// The settings service's config, listening on the address it was first given, so that a
    /// restarted one is where the dispatcher expects it.
    settings_config: wmslink_settings::Config,
    _settings_db: TestDb,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(settings) = self.settings_service.take() {
            settings.shutdown.cancel();
        }
        if let Some(running) = self.dispatcher.take() {
            running.shutdown.cancel();
        }
    }
}

fn token(caller: &str, token: &str, scopes: &[&str]) -> TokenConfig {
    TokenConfig {
        caller: caller.into(),
        token: SecretString::from(token.to_owned()),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
    }
}

pub fn bearer(token: &str) -> BearerToken {
    BearerToken::new(&SecretString::from(token.to_owned())).expect("ascii token")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts everything with the test defaults; `configure` changes the dispatcher's config.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    let nats = TestNats::create().await.expect("test NATS");
    let sim = Simulator::build(SimConfig::for_tests())
        .await
        .expect("simulator builds")
        .spawn();
    let (_, key_line) = KeyRing::generate("test-k1");
    let secrets = MasterKeyConfig {
        master_keys: SecretString::from(key_line),
        ..MasterKeyConfig::default()
    };

    // The real settings service.
    let settings_db = TestDb::create().await.expect("settings database");
    let mut settings_config = wmslink_settings::Config {
        database: settings_db.config(),
        nats: nats.config(),
        grpc: GrpcConfig {
            listen_addr: "127.0.0.1:0".into(),
        },
        auth: AuthConfig {
            tokens: vec![
                token(
                    "admin",
                    SETTINGS_ADMIN_TOKEN,
                    &[scopes::SETTINGS_READ, scopes::SETTINGS_WRITE],
                ),
                token(
                    "shipment-dispatcher",
                    SETTINGS_DISPATCHER_TOKEN,
                    &[scopes::SETTINGS_READ, scopes::SETTINGS_CREDENTIALS],
                ),
            ],
        },
        secrets: secrets.clone(),
        ..wmslink_settings::Config::default()
    };
    settings_config.wms.allow_http_hosts = vec!["127.0.0.1".into()];
    // The settings test database holds its own rate-limit buckets (no machine-wide database).
    settings_config.rate_limit.database_url = String::new();
    let (settings_service, settings_addr) = start_settings(&settings_config).await;
    settings_config.grpc.listen_addr = settings_addr.to_string();
    let settings_channel = channel(settings_addr).await;

    // The dispatcher.
    let db = TestDb::create().await.expect("dispatcher database");
    let mut config = Config {
        database: db.config(),
        nats: nats.config(),
        grpc: GrpcConfig {
            listen_addr: "127.0.0.1:0".into(),
        },
        auth: AuthConfig {
            tokens: vec![
                token(
                    "operator",
                    OPERATOR_TOKEN,
                    &[scopes::OPERATE, scopes::ORDERS_READ],
                ),
                token("reader", READER_TOKEN, &[scopes::ORDERS_READ]),
            ],
        },
        secrets,
        ..Config::default()
    };
    config.settings.url = format!("http://{settings_addr}");
    config.settings.token = SecretString::from(SETTINGS_DISPATCHER_TOKEN.to_owned());
    config.settings.cache_ttl_ms = 2_000;
    config.wms.allow_http_hosts = vec!["127.0.0.1".into()];
    config.wms.connect_timeout_ms = 1_000;
    config.wms.request_timeout_ms = 3_000;
    config.rate_limit.database_url = db.url.clone();
    config.rate_limit.requests_per_second = 1_000.0;
    config.rate_limit.burst = 1_000;
    config.sender.linger_ms = 30;
    config.sender.sweep_interval_ms = 1_000;
    config.sender.base_backoff_ms = 100;
    config.sender.max_backoff_ms = 1_000;
    config.sender.run_dispatch_wait_ms = 15_000;
    config.sender.consumer_ack_wait_ms = 2_000;
    config.sender.consumer_max_deliver = 5;
    config.sender.consumer_retry_base_ms = 100;
    configure(&mut config);

    let mut app = TestApp {
        sim,
        nats,
        db,
        config,
        settings: SettingsServiceClient::with_interceptor(
            settings_channel,
            bearer(SETTINGS_ADMIN_TOKEN),
        ),
        operator: placeholder_client(),
        reader: placeholder_client(),
        dispatcher: None,
        settings_service: Some(settings_service),
        settings_config,
        _settings_db: settings_db,
    };
    app.start().await;
    app
}

/// Starts a settings service with `config`; a port taken (e.g. by a settings service that has
/// just stopped on the same address) is tried again until [`WAIT`] has passed.
async fn start_settings(config: &wmslink_settings::Config) -> (RunningSettings, SocketAddr) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let shutdown = CancellationToken::new();
    let app = loop {
        match wmslink_settings::Application::build(config.clone(), shutdown.clone()).await {
            Ok(app) => break app,
            Err(
                err @ wmslink_settings::StartupError::Grpc(
                    wmslink_platform::grpc::GrpcError::Bind { .. },
                ),
            ) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %err, "settings service not started yet; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!(
                "settings service starts on {}: {err}",
                config.grpc.listen_addr
            ),
        }
    };
    let addr = app.grpc_addr();
    let task = tokio::spawn(async move {
        let _ = app.run_until_stopped().await;
    });
    (RunningSettings { shutdown, task }, addr)
}

fn placeholder_client() -> Dispatch {
    let channel = Channel::from_static("http://127.0.0.1:9").connect_lazy();
    DispatchServiceClient::with_interceptor(channel, bearer(READER_TOKEN))
}

pub async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connects")
}

impl TestApp {
    /// Starts a dispatcher on the test's database (again, after [`crash`](Self::crash)).
    pub async fn start(&mut self) {
        let shutdown = CancellationToken::new();
        let app = Application::build(self.config.clone(), shutdown.clone())
            .await
            .expect("dispatcher starts");
        let addr = app.grpc_addr();
        let task = tokio::spawn(async move {
            app.run_until_stopped().await.expect("dispatcher runs");
        });
        let channel = channel(addr).await;
        self.operator =
            DispatchServiceClient::with_interceptor(channel.clone(), bearer(OPERATOR_TOKEN));
        self.reader = DispatchServiceClient::with_interceptor(channel, bearer(READER_TOKEN));
        self.dispatcher = Some(Running {
            addr,
            shutdown,
            task,
        });
    }

    /// Another replica of the dispatcher on the same database and NATS (stopped on drop of
    /// the returned token's guard).
    pub async fn replica(&self) -> tokio_util::sync::DropGuard {
        let shutdown = CancellationToken::new();
        let app = Application::build(self.config.clone(), shutdown.clone())
            .await
            .expect("replica starts");
        tokio::spawn(async move {
            let _ = app.run_until_stopped().await;
        });
        shutdown.drop_guard()
    }

    /// Stops the dispatcher gracefully (SIGTERM) and waits for it.
    pub async fn stop(&mut self) {
        if let Some(running) = self.dispatcher.take() {
            running.shutdown.cancel();
            tokio::time::timeout(Duration::from_secs(30), running.task)
                .await
                .expect("stops within 30 s")
                .expect("dispatcher task");
        }
    }

    /// Kills the dispatcher at once, whatever it is doing (like `kill -9`: no graceful path).
    pub async fn crash(&mut self) {
        if let Some(running) = self.dispatcher.take() {
            running.task.abort();
            let _ = running.task.await;
        }
    }

    /// Stops the settings service gracefully and waits until it no longer listens: the
    /// dispatcher's calls to it fail from then on.
    pub async fn stop_settings(&mut self) {
        if let Some(settings) = self.settings_service.take() {
            settings.shutdown.cancel();
            tokio::time::timeout(Duration::from_secs(30), settings.task)
                .await
                .expect("settings service stops within 30 s")
                .expect("settings service task");
        }
    }

    /// Starts a new settings service on the same database and the same address as the first
    /// one (after [`stop_settings`](Self::stop_settings)).
    pub async fn restart_settings(&mut self) {
        assert!(
            self.settings_service.is_none(),
            "stop the settings service first"
        );
        let (settings, addr) = start_settings(&self.settings_config).await;
        assert_eq!(addr.to_string(), self.settings_config.grpc.listen_addr);
        self.settings_service = Some(settings);
        self.settings = SettingsServiceClient::with_interceptor(
            channel(addr).await,
            bearer(SETTINGS_ADMIN_TOKEN),
        );
    }

    /// The info of one of the dispatcher's durable consumers on a stream of the test.
    pub async fn consumer_info(
        &self,
        stream: StreamKind,
        durable: &str,
    ) -> async_nats::jetstream::consumer::Info {
        let stream = self
            .nats
            .js
            .get_stream(self.nats.subjects.stream_name(stream))
            .await
            .expect("stream");
        let mut consumer = stream
            .get_consumer::<pull::Config>(durable)
            .await
            .expect("consumer");
        consumer.info().await.expect("consumer info").clone()
    }

    pub fn dispatcher_addr(&self) -> Option<SocketAddr> {
        self.dispatcher.as_ref().map(|r| r.addr)
    }

    /// A shop registered through the settings API with `detail` (catalog, settings, a passing
    /// connection check), enabled when asked. Returns the shop id and its WMS access key.
    pub async fn shop_with(&self, detail: spb::DetailSettings, enabled: bool) -> Shop {
        let key = format!("ak-{}", uuid::Uuid::new_v4().simple());
        self.sim
            .state()
            .add_key(&key, KeyOptions::default())
            .expect("simulator key");
        self.shop_at(detail, &self.sim.base_url(), &key, enabled)
            .await
    }

    /// A shop whose WMS is at `endpoint` with access key `key` (e.g. a wiremock server).
    pub async fn shop_at(
        &self,
        detail: spb::DetailSettings,
        endpoint: &str,
        key: &str,
        enabled: bool,
    ) -> Shop {
        let id = wmslink_testkit::unique("shop-");
        let mut settings = self.settings.clone();
        settings
            .put_order_status_catalog(spb::PutOrderStatusCatalogRequest {
                shop_id: id.clone(),
                statuses: catalog(),
            })
            .await
            .expect("catalog stored");
        settings
            .register_settings(spb::RegisterSettingsRequest {
                shop_id: id.clone(),
                expected_version: 0,
                detail: Some(spb::DetailSettings {
                    endpoint_url: endpoint.to_owned(),
                    ..detail
                }),
                access_key: Some(key.to_owned()),
            })
            .await
            .expect("settings registered");
        let check = settings
            .check_connection(spb::CheckConnectionRequest {
                shop_id: id.clone(),
                access_key: None,
                endpoint_url: None,
            })
            .await
            .expect("check answered")
            .into_inner();
        assert_eq!(
            check.check.as_ref().map(|c| c.outcome()),
            Some(spb::ConnectionCheckOutcome::Ok),
            "{check:?}"
        );
        let shop = Shop {
            id,
            key: key.to_owned(),
        };
        if enabled {
            self.set_enabled(&shop, true).await;
        }
        shop
    }

    pub async fn shop(&self) -> Shop {
        self.shop_with(full_detail(), true).await
    }

    pub async fn set_enabled(&self, shop: &Shop, enabled: bool) {
        let mut settings = self.settings.clone();
        let current = settings
            .get_settings(spb::GetSettingsRequest {
                shop_id: shop.id.clone(),
            })
            .await
            .expect("settings")
            .into_inner()
            .settings
            .expect("settings in answer");
        settings
            .set_enabled(spb::SetEnabledRequest {
                shop_id: shop.id.clone(),
                enabled,
                expected_version: current.version,
            })
            .await
            .expect("switched");
    }

    async fn publish(&self, subject: String, payload: Vec<u8>, msg_id: Option<&str>) {
        let mut headers = HeaderMap::new();
        headers.insert("Content-Type", "application/protobuf");
        if let Some(msg_id) = msg_id {
            headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id);
        }
        self.nats
            .js
            .publish_with_headers(subject, headers, payload.into())
            .await
            .expect("publish")
            .await
            .expect("stored");
    }

    /// Publishes `orders.{shop}.status_changed` as order-events would (its own message id).
    pub async fn status_changed(&self, order: &Order) -> String {
        let event_id = uuid::Uuid::now_v7().to_string();
        self.status_changed_with_id(order, &event_id).await;
        event_id
    }

    /// Publishes `orders.{shop}.status_changed` as proto3 JSON (`Content-Type: application/json`).
    pub async fn status_changed_json(&self, order: &Order) {
        let event_id = uuid::Uuid::now_v7().to_string();
        let event = OrderStatusChanged {
            event_id: event_id.clone(),
            order: Some(order.clone()),
            previous_status_code: String::new(),
            new_status_code: order.status_code.clone(),
            revision: order.revision,
            occurred_at: None,
        };
        let json = wmslink_proto::json::encode("wmslink.orders.v1.OrderStatusChanged", &event)
            .expect("JSON");
        let shop = ShopId::parse(&order.shop_id).expect("shop id");
        let mut headers = HeaderMap::new();
        headers.insert("Content-Type", "application/json");
        headers.insert(async_nats::header::NATS_MESSAGE_ID, event_id.as_str());
        self.nats
            .js
            .publish_with_headers(
                self.nats.subjects.order_status_changed(&shop),
                headers,
                json.into(),
            )
            .await
            .expect("publish")
            .await
            .expect("stored");
    }

    pub async fn status_changed_with_id(&self, order: &Order, msg_id: &str) {
        let event = OrderStatusChanged {
            event_id: msg_id.to_owned(),
            order: Some(order.clone()),
            previous_status_code: String::new(),
            new_status_code: order.status_code.clone(),
            revision: order.revision,
            occurred_at: None,
        };
        let shop = ShopId::parse(&order.shop_id).expect("shop id");
        self.publish(
            self.nats.subjects.order_status_changed(&shop),
            event.encode_to_vec(),
            Some(msg_id),
        )
        .await;
    }

    /// Publishes `orders.{shop}.updated` (content changed, status did not).
    pub async fn updated(&self, order: &Order) {
        let event_id = uuid::Uuid::now_v7().to_string();
        let event = OrderUpdated {
            event_id: event_id.clone(),
            order: Some(order.clone()),
            revision: order.revision,
            occurred_at: None,
        };
        let shop = ShopId::parse(&order.shop_id).expect("shop id");
        self.publish(
            self.nats.subjects.order_updated(&shop),
            event.encode_to_vec(),
            Some(&event_id),
        )
        .await;
    }

    pub async fn observed(&self, observed: &WmsObserved) {
        let shop = ShopId::parse(&observed.shop_id).expect("shop id");
        self.publish(
            self.nats.subjects.wms_observed(&shop),
            observed.encode_to_vec(),
            Some(&observed.event_id),
        )
        .await;
    }

    /// Publishes anything on a subject of the test (e.g. garbage).
    pub async fn raw(&self, subject: String, payload: Vec<u8>) {
        self.publish(subject, payload, Some(&uuid::Uuid::now_v7().to_string()))
            .await;
    }

    pub async fn get(
        &self,
        shop: &Shop,
        order_no: &str,
    ) -> Option<(dpb::Shipment, Vec<dpb::HistoryEntry>)> {
        match self
            .reader
            .clone()
            .get_shipment(dpb::GetShipmentRequest {
                shop_id: shop.id.clone(),
                order_no: order_no.to_owned(),
            })
            .await
        {
            Ok(answer) => {
                let answer = answer.into_inner();
                Some((answer.shipment.expect("shipment"), answer.history))
            }
            Err(status) if status.code() == Code::NotFound => None,
            Err(status) => panic!("GetShipment: {status:?}"),
        }
    }

    /// Waits until the shipment is in `status` and returns it with its history.
    pub async fn wait_for(
        &self,
        shop: &Shop,
        order_no: &str,
        status: ShippingStatus,
    ) -> (dpb::Shipment, Vec<dpb::HistoryEntry>) {
        eventually(
            WAIT,
            &format!("{order_no} of {} {status:?}", shop.id),
            || async {
                self.get(shop, order_no)
                    .await
                    .filter(|(s, _)| s.shipping_status() == status)
            },
        )
        .await
    }

    pub async fn wait_until(
        &self,
        shop: &Shop,
        order_no: &str,
        what: &str,
        check: impl Fn(&dpb::Shipment) -> bool,
    ) -> (dpb::Shipment, Vec<dpb::HistoryEntry>) {
        eventually(WAIT, what, || async {
            self.get(shop, order_no).await.filter(|(s, _)| check(s))
        })
        .await
    }

    /// Waits until the shipment's history mentions `needle`.
    pub async fn wait_until_history(
        &self,
        shop: &Shop,
        order_no: &str,
        needle: &str,
    ) -> (dpb::Shipment, Vec<dpb::HistoryEntry>) {
        eventually(
            WAIT,
            &format!("history of {order_no} mentions {needle}"),
            || async {
                self.get(shop, order_no)
                    .await
                    .filter(|(_, history)| history_has(history, needle))
            },
        )
        .await
    }

    pub fn counters(&self, shop: &Shop) -> Counters {
        self.sim.state().counters(&shop.key).expect("simulator key")
    }

    pub fn register_calls(&self, shop: &Shop) -> u64 {
        self.counters(shop)
            .requests
            .get("register")
            .copied()
            .unwrap_or(0)
    }

    /// Every WMS order of the shop with this order number.
    pub fn wms_orders(&self, shop: &Shop, order_no: &str) -> Vec<SimOrder> {
        self.sim
            .state()
            .orders(&shop.key)
            .expect("simulator key")
            .into_iter()
            .filter(|o| o.order_no == order_no)
            .collect()
    }

    /// The one WMS order of the order number, and the row it was registered with.
    pub fn wms_row(&self, shop: &Shop, order_no: &str) -> (SimOrder, serde_json::Value) {
        let orders = self.wms_orders(shop, order_no);
        assert_eq!(
            orders.len(),
            1,
            "exactly one WMS order for {order_no}: {orders:?}"
        );
        let order = orders.into_iter().next().expect("one order");
        let row = self
            .sim
            .state()
            .order_row(&shop.key, order.order_id)
            .expect("row");
        (order, row)
    }

    pub fn limit_key(&self, shop: &Shop, per_second: f64, burst: u32) {
        self.sim
            .state()
            .add_key(
                &shop.key,
                KeyOptions {
                    rate_limit: Some(SimRateLimit::new(per_second, burst)),
                },
            )
            .expect("rate limit set");
    }

    /// Every message stored on `subject` of a stream so far.
    pub async fn stored(
        &self,
        stream: StreamKind,
        subject: String,
    ) -> Vec<async_nats::jetstream::Message> {
        let stream = self
            .nats
            .js
            .get_stream(self.nats.subjects.stream_name(stream))
            .await
            .expect("stream");
        let consumer = stream
            .create_consumer(pull::Config {
                filter_subject: subject,
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::None,
                inactive_threshold: Duration::from_secs(30),
                ..Default::default()
            })
            .await
            .expect("consumer");
        let pending = consumer.cached_info().num_pending;
        if pending == 0 {
            return Vec::new();
        }
        let mut batch = consumer
            .fetch()
            .max_messages(usize::try_from(pending).unwrap_or(10_000))
            .expires(Duration::from_secs(2))
            .messages()
            .await
            .expect("fetch");
        let mut out = Vec::new();
        while let Some(message) = batch.next().await {
            out.push(message.expect("message"));
        }
        out
    }

    /// `ShipmentUpdated` events of the shop, in stream order.
    pub async fn shipment_events(&self, shop: &Shop) -> Vec<dpb::ShipmentUpdated> {
        let shop_id = ShopId::parse(&shop.id).expect("shop id");
        self.stored(
            StreamKind::Shipments,
            self.nats.subjects.shipments_updated(&shop_id),
        )
        .await
        .iter()
        .map(|m| dpb::ShipmentUpdated::decode(m.payload.as_ref()).expect("ShipmentUpdated"))
        .collect()
    }

    /// Dead letters: (original subject, reason, payload).
    pub async fn dead_letters(&self) -> Vec<(String, String, Vec<u8>)> {
        self.stored(
            StreamKind::DeadLetters,
            self.nats.subjects.dead_letters_all(),
        )
        .await
        .iter()
        .map(|m| {
            let header = |name: &str| {
                m.headers
                    .as_ref()
                    .and_then(|h| h.get(name))
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default()
            };
            (
                header(wmslink_platform::consumer::DEAD_LETTER_SUBJECT),
                header(DEAD_LETTER_REASON),
                m.payload.to_vec(),
            )
        })
        .collect()
    }
}

pub struct Shop {
    pub id: String,
    pub key: String,
}

/// new, paid, ready (open), shipped (completed), cancel (cancelled).
pub fn catalog() -> Vec<spb::OrderStatus> {
    let status = |code: &str, name: &str, kind: spb::OrderStatusKind| spb::OrderStatus {
        code: code.into(),
        display_name: name.into(),
        kind: kind as i32,
    };
    vec![
        status("new", "新規受付", spb::OrderStatusKind::Open),
        status("paid", "入金済み", spb::OrderStatusKind::Open),
        status("ready", "出荷待ち", spb::OrderStatusKind::Open),
        status("shipped", "発送済み", spb::OrderStatusKind::Completed),
        status("cancel", "キャンセル", spb::OrderStatusKind::Cancelled),
    ]
}

/// Target statuses `paid` and `ready`; every data target; every kind of mapping.
pub fn full_detail() -> spb::DetailSettings {
    spb::DetailSettings {
        wms_kind: spb::WmsKind::CommerceRobo as i32,
        endpoint_url: String::new(),
        data_targets: Some(spb::DataTargets {
            shipment_instructions: true,
            cancellations: true,
            shipment_results: true,
        }),
        target_status_codes: vec!["paid".into(), "ready".into()],
        shipper_id: 3,
        delivery_method_id: 2,
        sync_period_days: 45,
        robot_id: 12,
        payment_mappings: vec![
            spb::PaymentMapping {
                payment_method_code: "credit".into(),
                wms_payment_method_id: 1,
                delivery_company_id: 0,
            },
            spb::PaymentMapping {
                payment_method_code: "cod".into(),
                wms_payment_method_id: 7,
                delivery_company_id: 5,
            },
        ],
        header_free_fields: vec![
            spb::FreeFieldMapping {
                slot: 1,
                cart_field: "extra.gift_message".into(),
            },
            spb::FreeFieldMapping {
                slot: 2,
                cart_field: "shipping.email".into(),
            },
            spb::FreeFieldMapping {
                slot: 10,
                cart_field: "amounts.total".into(),
            },
        ],
        line_free_fields: vec![
            spb::FreeFieldMapping {
                slot: 1,
                cart_field: "options.color".into(),
            },
            spb::FreeFieldMapping {
                slot: 3,
                cart_field: "sku".into(),
            },
        ],
    }
}

fn address(name: &str, email: &str) -> Address {
    Address {
        name: name.into(),
        kana: "ヤマダ".into(),
        zip: "100-0001".into(),
        prefecture: "東京都".into(),
        address1: "千代田区千代田1-1".into(),
        address2: "101号室".into(),
        phone: "03-1234-5678".into(),
        email: email.into(),
    }
}

/// When the test process started: the order date of every test order, so that every
/// revision of an order carries the same date.
fn placed_at() -> i64 {
    static PLACED_AT: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *PLACED_AT.get_or_init(|| chrono::Utc::now().timestamp())
}

/// A complete order placed today, paid cash on delivery.
pub fn order(shop: &Shop, order_no: &str, status: &str, revision: i64) -> Order {
    Order {
        shop_id: shop.id.clone(),
        order_no: order_no.into(),
        revision,
        order_date: Some(prost_types::Timestamp {
            seconds: placed_at(),
            nanos: 0,
        }),
        status_code: status.into(),
        payment_method_code: "cod".into(),
        orderer: Some(address("山田太郎", "taro@example.com")),
        shipping: Some(address("山田花子", "hanako@example.com")),
        delivery_date: "2026-12-24".into(),
        delivery_time: "14-16".into(),
        amounts: Some(Amounts {
            products: 5400,
            shipping_fee: 600,
            cod_fee: 330,
            discount: 0,
            tax: 545,
            total: 6330,
        }),
        note: "置き配希望".into(),
        lines: vec![
            LineItem {
                sku: "TS-RED-M".into(),
                name: "Tシャツ".into(),
                quantity: 2,
                unit_price: 2700,
                options: [("color".to_owned(), "red".to_owned())].into(),
            },
            LineItem {
                sku: "SOCKS-1".into(),
                name: "靴下".into(),
                quantity: 1,
                unit_price: 0,
                options: [("color".to_owned(), "navy".to_owned())].into(),
            },
        ],
        extra: [("gift_message".to_owned(), "お誕生日おめでとう".to_owned())].into(),
    }
}

pub fn unique_order_no() -> String {
    wmslink_testkit::unique("ORD-")
}

pub fn history_has(history: &[dpb::HistoryEntry], needle: &str) -> bool {
    history.iter().any(|h| {
        h.reason.contains(needle)
            || h.request_summary.contains(needle)
            || h.response_summary.contains(needle)
            || h.error.contains(needle)
    })
}

/// The (from, to) state changes of a history.
pub fn transitions(history: &[dpb::HistoryEntry]) -> Vec<(String, String)> {
    history
        .iter()
        .filter(|h| h.kind == "state_change")
        .map(|h| (h.from_status.clone(), h.to_status.clone()))
        .collect()
}

pub fn pair(from: &str, to: &str) -> (String, String) {
    (from.to_owned(), to.to_owned())
}

/// Checks `holds` every 20 ms for `period` and fails the test the moment it does not: how a
/// test shows that something does *not* happen (e.g. across a sweep interval).
pub async fn consistently(period: Duration, what: &str, holds: impl Fn() -> bool) {
    let end = tokio::time::Instant::now() + period;
    while tokio::time::Instant::now() < end {
        assert!(holds(), "no longer true: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
