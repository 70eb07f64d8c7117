//! `spawn_app()`: the real settings service, the WMS simulator and the dispatcher, all
//! in-process on port 0, with fresh databases and a unique NATS prefix per test; and the
//! helpers that publish order events as order-events would.

use std::net::SocketAddr;
use std::time::Duration;

use async_nats::jetstream::consumer::pull;
use prost::Message;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Code, Response, Status};
use wmslink_platform::auth::scopes;
use wmslink_platform::consumer::DEAD_LETTER_REASON;
use wmslink_platform::nats::StreamKind;
use wmslink_platform::secrets::KeyRing;
use wmslink_platform::shop::ShopId;
use wmslink_proto::dispatch::v1 as dpb;
use wmslink_proto::orders::v1::{
    Address, Amounts, LineItem, Order, OrderStatusChanged, OrderUpdated, ShippingStatus,
};
use wmslink_proto::settings::v1 as spb;
use wmslink_proto::sync::v1::WmsObserved;
use wmslink_shipment_dispatcher::{Application, Config};
pub use wmslink_test_harness::grpc::{
    DispatchClient as Dispatch, SettingsClient as Settings, connect as channel, dispatch_client,
};
use wmslink_test_harness::grpc::{
    OrdersClient, operator_and_reader, orders_client, port_zero, token,
};
use wmslink_test_harness::settings::{
    self, SETTINGS_ADMIN_TOKEN, admin_token, reader_service_token,
};
use wmslink_test_harness::{RunningService, SettingsService, shop, wms};
use wmslink_testkit::{TestDb, TestNats, eventually};
use wmslink_wms_simulator::{
    Counters, Endpoint, Faults, KeyOptions, RunningSimulator, SimOrder, SimRateLimit,
};

const SETTINGS_DISPATCHER_TOKEN: &str = "test-settings-dispatcher-token-0123";
pub const OPERATOR_TOKEN: &str = "test-operator-token-0123456789";
pub const READER_TOKEN: &str = "test-orders-reader-token-0123456";
/// The cart's token at order-events (orders.write).
const CART_TOKEN: &str = "test-order-events-cart-token-0123";
/// The dispatcher's token at order-events (orders.read).
const DISPATCHER_AT_ORDERS_TOKEN: &str = "test-order-events-dispatcher-0123";

/// How long `eventually` waits.
pub const WAIT: Duration = Duration::from_secs(20);

pub struct TestApp {
    pub sim: RunningSimulator,
    pub nats: TestNats,
    pub db: TestDb,
    pub config: Config,
    pub settings: Settings,
    pub operator: Dispatch,
    pub reader: Dispatch,
    dispatcher: Option<RunningService>,
    settings_service: SettingsService,
    /// The cart's client of order-events (with [`spawn_app_losing_order_events`]).
    pub orders: Option<OrdersClient>,
    _order_events: Option<LosingOrderEvents>,
}

/// An order-events service that publishes its order events on a NATS of its own, where the
/// dispatcher does not listen: every order event it publishes is lost to the dispatcher.
struct LosingOrderEvents {
    service: RunningService,
    _nats: TestNats,
    _db: TestDb,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts everything with the test defaults; `configure` changes the dispatcher's config.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    spawn(configure, false, false).await
}

/// [`spawn_app_with`], with a settings service that publishes its `settings.{shop}.changed`
/// events where the dispatcher does not listen: what a dispatcher that missed them sees (its
/// settings watch is a plain subscription, so a reconnect loses what was sent meanwhile).
pub async fn spawn_app_missing_settings_events(configure: impl FnOnce(&mut Config)) -> TestApp {
    spawn(configure, true, false).await
}

/// [`spawn_app_with`], with a real order-events service (orders sent through
/// [`TestApp::orders`]) whose order events never reach the dispatcher (they go to a NATS of
/// their own): every event is lost. The dispatcher asks it in its rebuild sweep
/// (`order_events`, every second).
pub async fn spawn_app_losing_order_events(configure: impl FnOnce(&mut Config)) -> TestApp {
    spawn(configure, false, true).await
}

async fn start_losing_order_events(settings_url: &str) -> LosingOrderEvents {
    let nats = TestNats::create().await.expect("order-events' own NATS");
    let db = TestDb::create().await.expect("order-events database");
    let mut config = wmslink_order_events::Config {
        database: db.config(),
        nats: nats.config(),
        grpc: port_zero(),
        ..wmslink_order_events::Config::default()
    };
    config.auth.tokens = vec![
        token(
            "cart",
            CART_TOKEN,
            &[scopes::ORDERS_WRITE, scopes::ORDERS_READ],
        ),
        token(
            "shipment-dispatcher",
            DISPATCHER_AT_ORDERS_TOKEN,
            &[scopes::ORDERS_READ],
        ),
    ];
    config.consumers.ack_wait_ms = 2_000;
    // Its settings events are elsewhere too: it asks the settings service about shops.
    config.settings.url = settings_url.to_owned();
    config.settings.token = SecretString::from(SETTINGS_DISPATCHER_TOKEN.to_owned());
    let shutdown = CancellationToken::new();
    let app = wmslink_order_events::Application::build(config, shutdown.clone())
        .await
        .expect("order-events starts");
    let service = RunningService::spawn(
        "order-events",
        app.grpc_addr(),
        shutdown,
        app.run_until_stopped(),
    );
    LosingOrderEvents {
        service,
        _nats: nats,
        _db: db,
    }
}

async fn spawn(
    configure: impl FnOnce(&mut Config),
    settings_events_missed: bool,
    losing_order_events: bool,
) -> TestApp {
    let nats = TestNats::create().await.expect("test NATS");
    let sim = wms::start_simulator().await;
    let (_, master_keys) = KeyRing::generate("test-k1");
    let elsewhere = match settings_events_missed {
        true => Some(TestNats::create().await.expect("test NATS")),
        false => None,
    };
    let settings_service = SettingsService::start(
        elsewhere.as_ref().unwrap_or(&nats),
        &master_keys,
        vec![
            admin_token(),
            reader_service_token("shipment-dispatcher", SETTINGS_DISPATCHER_TOKEN),
        ],
    )
    .await;

    let db = TestDb::create().await.expect("dispatcher database");
    let mut config = Config {
        database: db.config(),
        nats: nats.config(),
        grpc: port_zero(),
        auth: operator_and_reader(OPERATOR_TOKEN, READER_TOKEN),
        secrets: settings::master_keys(&master_keys),
        ..Config::default()
    };
    config.settings.url = format!("http://{}", settings_service.addr());
    config.settings.token = SecretString::from(SETTINGS_DISPATCHER_TOKEN.to_owned());
    config.settings.cache_ttl_ms = 2_000;
    config.wms.allow_http_hosts = vec!["127.0.0.1".into()];
    config.wms.refuse_private_addresses = false; // the simulator listens on loopback
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
    // Shipments in doubt: first searched 0.5 s after an unknown outcome (and the request
    // timeout plus 0.5 s after their claim), then every 0.5 s, 3 times before ERROR.
    config.sender.in_doubt_margin_ms = 500;
    config.sender.in_doubt_search_interval_ms = 500;
    config.sender.in_doubt_max_searches = 3;
    config.consumers.ack_wait_ms = 2_000;
    config.consumers.max_deliver = 5;
    config.consumers.retry_base_delay_ms = 100;
    let order_events = match losing_order_events {
        true => Some(start_losing_order_events(&config.settings.url).await),
        false => None,
    };
    if let Some(order_events) = &order_events {
        config.order_events.url = format!("http://{}", order_events.service.addr);
        config.order_events.token = SecretString::from(DISPATCHER_AT_ORDERS_TOKEN.to_owned());
        config.order_events.rebuild_interval_ms = 1_000;
    }
    configure(&mut config);

    let mut app = TestApp {
        sim,
        nats,
        db,
        config,
        settings: settings_service.client(SETTINGS_ADMIN_TOKEN),
        operator: placeholder_client(),
        reader: placeholder_client(),
        dispatcher: None,
        settings_service,
        orders: order_events.as_ref().map(|o| {
            orders_client(
                wmslink_test_harness::grpc::channel(o.service.addr),
                CART_TOKEN,
            )
        }),
        _order_events: order_events,
    };
    app.start().await;
    app
}

fn placeholder_client() -> Dispatch {
    dispatch_client(
        Channel::from_static("http://127.0.0.1:9").connect_lazy(),
        READER_TOKEN,
    )
}

impl TestApp {
    /// Builds and runs a dispatcher with the test's config.
    async fn run_dispatcher(&self) -> RunningService {
        let shutdown = CancellationToken::new();
        let app = Application::build(self.config.clone(), shutdown.clone())
            .await
            .expect("dispatcher starts");
        RunningService::spawn(
            "shipment-dispatcher",
            app.grpc_addr(),
            shutdown,
            app.run_until_stopped(),
        )
    }

    /// Starts a dispatcher on the test's database (again, after [`crash`](Self::crash)).
    pub async fn start(&mut self) {
        let running = self.run_dispatcher().await;
        let channel = channel(running.addr).await;
        self.operator = dispatch_client(channel.clone(), OPERATOR_TOKEN);
        self.reader = dispatch_client(channel, READER_TOKEN);
        self.dispatcher = Some(running);
    }

    /// Another replica of the dispatcher on the same database and NATS (stopped when dropped).
    pub async fn replica(&self) -> RunningService {
        self.run_dispatcher().await
    }

    /// Stops the dispatcher gracefully (SIGTERM) and waits for it.
    pub async fn stop(&mut self) {
        if let Some(mut running) = self.dispatcher.take() {
            running.stop().await;
        }
    }

    /// Kills the dispatcher at once, whatever it is doing (like `kill -9`: no graceful path).
    pub async fn crash(&mut self) {
        if let Some(mut running) = self.dispatcher.take() {
            running.crash().await;
        }
    }

    /// Stops the settings service gracefully and waits until it no longer listens: the
    /// dispatcher's calls to it fail from then on.
    pub async fn stop_settings(&mut self) {
        self.settings_service.stop().await;
    }

    /// Starts a new settings service on the same database and the same address as the first
    /// one (after [`stop_settings`](Self::stop_settings)).
    pub async fn restart_settings(&mut self) {
        self.settings_service.restart().await;
        self.settings = self.settings_service.client(SETTINGS_ADMIN_TOKEN);
    }

    /// Restarts the settings service with the dispatcher's token holding only `scopes` there
    /// (say, none: every call of the dispatcher is refused `PERMISSION_DENIED`).
    pub async fn settings_grant_dispatcher(&mut self, scopes: &[&str]) {
        self.settings_service.stop().await;
        for token in &mut self.settings_service.config.auth.tokens {
            if token.caller == "shipment-dispatcher" {
                token.scopes = scopes.iter().map(|scope| (*scope).to_owned()).collect();
            }
        }
        self.restart_settings().await;
    }

    /// Restarts the settings service so that it asks this dispatcher (`GetInFlight`) before a
    /// shop's endpoint URL changes, as deployed (off in the other tests: the dispatcher's
    /// address is only known once it runs).
    pub async fn settings_ask_the_dispatcher(&mut self) {
        let addr = self.dispatcher_addr().expect("the dispatcher runs");
        self.settings_service.stop().await;
        let config = &mut self.settings_service.config;
        config.dispatcher.url = format!("http://{addr}");
        config.dispatcher.token = SecretString::from(READER_TOKEN.to_owned());
        self.restart_settings().await;
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
        let key = wms::new_account(&self.sim, KeyOptions::default());
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
        self.shop_with_id(shop::unique_shop_id(), detail, endpoint, key, enabled)
            .await
    }

    /// [`Self::shop_at`] with a shop id of the test's choosing.
    pub async fn shop_with_id(
        &self,
        id: String,
        detail: spb::DetailSettings,
        endpoint: &str,
        key: &str,
        enabled: bool,
    ) -> Shop {
        let detail = spb::DetailSettings {
            endpoint_url: endpoint.to_owned(),
            ..detail
        };
        shop::setup(&id, detail, key)
            .register_and_check(&mut self.settings.clone())
            .await
            .expect("shop registered and its connection checked");
        let shop = Shop {
            id,
            key: key.to_owned(),
        };
        if enabled {
            self.set_enabled(&shop, true).await;
        }
        shop
    }

    /// Rotates the shop's access key in settings while it stays enabled, as an operator does:
    /// the new key checked against the registered endpoint, then registered.
    pub async fn rotate_key(&self, shop: &mut Shop, new_key: &str) {
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
        let detail = current.detail.expect("detail");
        let checked = settings
            .check_connection(spb::CheckConnectionRequest {
                shop_id: shop.id.clone(),
                access_key: Some(new_key.to_owned()),
                endpoint_url: Some(detail.endpoint_url.clone()),
            })
            .await
            .expect("check answered")
            .into_inner();
        assert_eq!(
            checked.check.map(|check| check.outcome()),
            Some(spb::ConnectionCheckOutcome::Ok),
            "the new key passes its check"
        );
        settings
            .register_settings(spb::RegisterSettingsRequest {
                shop_id: shop.id.clone(),
                expected_version: current.version,
                detail: Some(detail),
                access_key: Some(new_key.to_owned()),
            })
            .await
            .expect("the key rotated while enabled");
        shop.key = new_key.to_owned();
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
        self.nats
            .publish(subject, payload, msg_id, "application/protobuf")
            .await;
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
            wmslink_change: 0,
        };
        let json = wmslink_proto::json::encode("wmslink.orders.v1.OrderStatusChanged", &event)
            .expect("JSON");
        let shop = ShopId::parse(&order.shop_id).expect("shop id");
        self.nats
            .publish(
                self.nats.subjects.order_status_changed(&shop),
                json,
                Some(&event_id),
                "application/json",
            )
            .await;
    }

    pub async fn status_changed_with_id(&self, order: &Order, msg_id: &str) {
        let event = OrderStatusChanged {
            event_id: msg_id.to_owned(),
            order: Some(order.clone()),
            previous_status_code: String::new(),
            new_status_code: order.status_code.clone(),
            revision: order.revision,
            occurred_at: None,
            wmslink_change: 0,
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
        match get_shipment(&self.reader, &shop.id, order_no).await {
            Ok(answer) => Some((answer.shipment.expect("shipment"), answer.history)),
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

    /// `count` new orders of the shop in `status` (revision 1), published as order-events
    /// would. Returns their order numbers.
    pub async fn publish_orders(&self, shop: &Shop, count: usize, status: &str) -> Vec<String> {
        let numbers: Vec<String> = (0..count).map(|_| unique_order_no()).collect();
        for no in &numbers {
            self.status_changed(&order(shop, no, status, 1)).await;
        }
        numbers
    }

    /// Waits until each of the shop's `numbers` is in `status`.
    pub async fn wait_for_all(&self, shop: &Shop, numbers: &[String], status: ShippingStatus) {
        for no in numbers {
            self.wait_for(shop, no, status).await;
        }
    }

    /// Makes the simulator misbehave on the shop's key at `endpoint` as `faults` says.
    pub fn fault(&self, shop: &Shop, endpoint: Endpoint, faults: Faults) {
        self.sim
            .state()
            .set_faults(
                &shop.key,
                Faults {
                    endpoints: vec![endpoint],
                    ..faults
                },
            )
            .expect("faults");
    }

    /// The simulator behaves again on the shop's key.
    pub fn clear_faults(&self, shop: &Shop) {
        self.sim
            .state()
            .set_faults(&shop.key, Faults::default())
            .expect("faults cleared");
    }

    pub fn counters(&self, shop: &Shop) -> Counters {
        self.sim.state().counters(&shop.key).expect("simulator key")
    }

    /// Registration rows carrying `order_no` that reached the WMS (accepted, refused, failed
    /// or applied late): what was **sent**.
    pub fn rows_received(&self, shop: &Shop, order_no: &str) -> u64 {
        self.sim
            .state()
            .order_no_counter(&shop.key, order_no)
            .expect("simulator key")
            .received
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

    /// `ShipmentUpdated` events of the shop, in stream order.
    pub async fn shipment_events(&self, shop: &Shop) -> Vec<dpb::ShipmentUpdated> {
        let shop_id = ShopId::parse(&shop.id).expect("shop id");
        self.nats
            .stored(
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
        self.nats
            .stored(
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

/// No sweep unless asked: enabling a shop sends nothing, and the periodic sweep waits an hour.
pub fn without_sweeps(config: &mut Config) {
    config.sender.sweep_on_settings_change = false;
    config.sender.sweep_interval_ms = 3_600_000;
}

/// `RunDispatch` of the shop, as `client` (the operator, or the reader to see it refused).
pub async fn run_dispatch(
    client: &Dispatch,
    shop_id: &str,
) -> Result<dpb::RunDispatchResponse, Status> {
    client
        .clone()
        .run_dispatch(dpb::RunDispatchRequest {
            shop_id: shop_id.to_owned(),
            retry_errors: false,
        })
        .await
        .map(Response::into_inner)
}

/// `RunDispatch` of the shop that also retries its ERROR shipments.
pub async fn run_dispatch_retrying_errors(
    client: &Dispatch,
    shop_id: &str,
) -> Result<dpb::RunDispatchResponse, Status> {
    client
        .clone()
        .run_dispatch(dpb::RunDispatchRequest {
            shop_id: shop_id.to_owned(),
            retry_errors: true,
        })
        .await
        .map(Response::into_inner)
}

pub async fn retry_shipment(
    client: &Dispatch,
    shop_id: &str,
    order_no: &str,
) -> Result<dpb::RetryShipmentResponse, Status> {
    client
        .clone()
        .retry_shipment(dpb::RetryShipmentRequest {
            shop_id: shop_id.to_owned(),
            order_no: order_no.to_owned(),
        })
        .await
        .map(Response::into_inner)
}

pub async fn retry_cancel(
    client: &Dispatch,
    shop_id: &str,
    order_no: &str,
) -> Result<dpb::RetryCancelResponse, Status> {
    client
        .clone()
        .retry_cancel(dpb::RetryCancelRequest {
            shop_id: shop_id.to_owned(),
            order_no: order_no.to_owned(),
        })
        .await
        .map(Response::into_inner)
}

pub async fn get_shipment(
    client: &Dispatch,
    shop_id: &str,
    order_no: &str,
) -> Result<dpb::GetShipmentResponse, Status> {
    client
        .clone()
        .get_shipment(dpb::GetShipmentRequest {
            shop_id: shop_id.to_owned(),
            order_no: order_no.to_owned(),
        })
        .await
        .map(Response::into_inner)
}

/// The status a call was refused with; fails the test (naming `what`) unless it was refused
/// with `code`.
pub fn refused<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, what: &str) -> Status {
    match result {
        Ok(answer) => panic!("{what}: expected {code:?}, got {answer:?}"),
        Err(status) => {
            assert_eq!(status.code(), code, "{what}: {status:?}");
            status
        }
    }
}

pub struct Shop {
    pub id: String,
    pub key: String,
}

/// The harness's test shop detail (every data target and every kind of mapping; target
/// statuses `paid` and `ready`; a 45-day sync period); [`TestApp::shop_at`] sets the endpoint.
pub fn full_detail() -> spb::DetailSettings {
    shop::full_detail("")
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

/// The state changes of a shipment registered at its first attempt.
pub fn sent_at_first_attempt() -> Vec<(String, String)> {
    vec![
        pair("NOT_SENT", "QUEUED"),
        pair("QUEUED", "SENDING"),
        pair("SENDING", "SENT"),
    ]
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
