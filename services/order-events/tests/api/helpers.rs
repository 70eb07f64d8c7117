//! `spawn_app()`: the real Application on port 0 with a fresh database and a unique NATS prefix,
//! gRPC clients holding tokens of different scopes, and helpers to publish and to read streams.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::message::StreamMessage;
use prost::Message;
use secrecy::SecretString;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use wmslink_order_events::{Application, Config, Metrics, RunError, STREAMS};
use wmslink_platform::auth::{AuthConfig, BearerToken, TokenConfig, scopes};
use wmslink_platform::consumer::{DEAD_LETTER_REASON, DEAD_LETTER_SUBJECT};
use wmslink_platform::nats::StreamKind;
use wmslink_platform::shop::ShopId;
use wmslink_proto::dispatch::v1::{Shipment, ShipmentUpdated};
use wmslink_proto::orders::v1::order_service_client::OrderServiceClient;
use wmslink_proto::orders::v1::{
    Address, Amounts, GetOrderRequest, LineItem, Order, OrderStatusChangeRejected,
    OrderStatusChanged, OrderUpdated, OrderView, ShippingStatus, UpsertOrderRequest,
    UpsertOrderResponse,
};
use wmslink_proto::settings::v1::SettingsChanged;
use wmslink_testkit::{TestDb, TestNats, eventually};

pub const DEADLINE: Duration = Duration::from_secs(15);

pub type Client = OrderServiceClient<InterceptedService<Channel, BearerToken>>;

pub const CART_TOKEN: &str = "cart-token-read-write";
pub const READER_TOKEN: &str = "reader-token-read-only";
pub const WRITER_TOKEN: &str = "writer-token-write-only";
pub const OTHER_TOKEN: &str = "settings-token-no-order-scopes";

fn auth_config() -> AuthConfig {
    let token = |caller: &str, token: &str, scopes: &[&str]| TokenConfig {
        caller: caller.into(),
        token: SecretString::from(token),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        shops: Vec::new(),
    };
    AuthConfig {
        tokens: vec![
            token(
                "cart",
                CART_TOKEN,
                &[scopes::ORDERS_READ, scopes::ORDERS_WRITE],
            ),
            token("operator-ui", READER_TOKEN, &[scopes::ORDERS_READ]),
            token("importer", WRITER_TOKEN, &[scopes::ORDERS_WRITE]),
            token("settings-ui", OTHER_TOKEN, &[scopes::SETTINGS_READ]),
        ],
    }
}

fn init_test_logs() {
    // `TEST_LOG=debug cargo test ...` shows the service's logs.
    if let Ok(filter) = std::env::var("TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub db: TestDb,
    pub nats: TestNats,
    pub config: Config,
    pub metrics: Arc<Metrics>,
    /// Scopes orders.read + orders.write.
    pub cart: Client,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<Result<(), RunError>>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    init_test_logs();
    let db = TestDb::create().await.expect("test database");
    let nats = TestNats::create().await.expect("test NATS");
    let mut config = Config::default();
    config.database = db.config();
    config.nats = nats.config();
    config.grpc.listen_addr = "127.0.0.1:0".into();
    config.auth = auth_config();
    config.consumers.ack_wait_ms = 5_000;
    config.consumers.retry_base_delay_ms = 50;
    config.consumers.retry_max_delay_ms = 500;
    // Shops are known from the settings events the tests publish; `settings_lookup.rs` starts
    // a settings service and turns this on.
    config.orders.ask_settings = false;
    tweak(&mut config);
    let (addr, metrics, shutdown, handle) = start(config.clone()).await;
    let cart = client_at(addr, CART_TOKEN).await;
    TestApp {
        addr,
        db,
        nats,
        config,
        metrics,
        cart,
        shutdown,
        handle: Some(handle),
    }
}

type Started = (
    SocketAddr,
    Arc<Metrics>,
    CancellationToken,
    JoinHandle<Result<(), RunError>>,
);

async fn start(config: Config) -> Started {
    let shutdown = CancellationToken::new();
    let app = Application::build(config, shutdown.clone())
        .await
        .expect("application builds");
    let addr = app.grpc_addr();
    let metrics = app.metrics();
    let handle = tokio::spawn(app.run_until_stopped());
    (addr, metrics, shutdown, handle)
}

pub async fn client_at(addr: SocketAddr, token: &str) -> Client {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect to the gRPC server");
    let bearer = BearerToken::new(&SecretString::from(token)).expect("token");
    OrderServiceClient::with_interceptor(channel, bearer)
}

impl TestApp {
    pub async fn client(&self, token: &str) -> Client {
        client_at(self.addr, token).await
    }

    /// Stops the service (as SIGTERM would) and waits until every task ended.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            handle
                .await
                .expect("service task")
                .expect("service stopped cleanly");
        }
    }

    /// Stops the service and starts a new one on the same database and NATS prefix.
    pub async fn restart_with(&mut self, tweak: impl FnOnce(&mut Config)) {
        self.stop().await;
        tweak(&mut self.config);
        let (addr, metrics, shutdown, handle) = start(self.config.clone()).await;
        self.addr = addr;
        self.metrics = metrics;
        self.shutdown = shutdown;
        self.handle = Some(handle);
        self.cart = client_at(addr, CART_TOKEN).await;
    }

    pub async fn upsert(&self, order: &Order) -> Result<UpsertOrderResponse, tonic::Status> {
        self.cart
            .clone()
            .upsert_order(UpsertOrderRequest {
                order: Some(order.clone()),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn get(&self, shop: &str, order_no: &str) -> Option<OrderView> {
        match self
            .cart
            .clone()
            .get_order(GetOrderRequest {
                shop_id: shop.into(),
                order_no: order_no.into(),
            })
            .await
        {
            Ok(response) => response.into_inner().order,
            Err(status) if status.code() == tonic::Code::NotFound => None,
            Err(status) => panic!("GetOrder {shop}/{order_no}: {status:?}"),
        }
    }

    /// Waits until the stored order has `revision`, and returns it.
    pub async fn wait_for_revision(&self, shop: &str, order_no: &str, revision: i64) -> OrderView {
        eventually(
            DEADLINE,
            &format!("order {shop}/{order_no} at revision {revision}"),
            || async {
                self.get(shop, order_no)
                    .await
                    .filter(|view| view.order.as_ref().map(|o| o.revision) == Some(revision))
            },
        )
        .await
    }

    /// Waits until the projection of the order says `check`.
    pub async fn wait_for_integration(
        &self,
        shop: &str,
        order_no: &str,
        what: &str,
        check: impl Fn(&wmslink_proto::orders::v1::IntegrationStatus) -> bool,
    ) -> OrderView {
        eventually(DEADLINE, what, || async {
            self.get(shop, order_no)
                .await
                .filter(|view| view.integration.as_ref().is_some_and(&check))
        })
        .await
    }

    pub async fn publish(&self, subject: String, headers: HeaderMap, payload: Vec<u8>) {
        self.nats
            .js
            .publish_with_headers(subject, headers, payload.into())
            .await
            .expect("publish")
            .await
            .expect("publish ack");
    }

    /// Publishes a settings change as the settings service does.
    pub async fn publish_settings(&self, shop: &str, version: i64, change: &str) {
        let event = SettingsChanged {
            shop_id: shop.into(),
            version,
            enabled: false,
            change: change.into(),
            changed_at: Some(wmslink_proto::timestamp(1_770_000_000 + version, 0)),
            ..SettingsChanged::default()
        };
        let subject = self.nats.subjects.settings_changed(&shop_id(shop));
        self.publish(subject, HeaderMap::new(), event.encode_to_vec())
            .await;
    }

    /// Publishes the settings service's event of a shop whose integration is on or off, with
    /// shipment results on or off and a sync period, and waits until order-events has it.
    pub async fn publish_shop_sync(
        &self,
        shop: &str,
        version: i64,
        enabled: bool,
        shipment_results: bool,
        sync_period_days: u32,
    ) {
        let event = SettingsChanged {
            shop_id: shop.into(),
            version,
            enabled,
            change: if enabled { "enabled" } else { "disabled" }.into(),
            changed_at: Some(wmslink_proto::timestamp(1_770_000_000 + version, 0)),
            shipment_results,
            sync_period_days,
            ..SettingsChanged::default()
        };
        let subject = self.nats.subjects.settings_changed(&shop_id(shop));
        self.publish(subject, HeaderMap::new(), event.encode_to_vec())
            .await;
        let pool = &self.db.pool;
        eventually(DEADLINE, &format!("shop {shop} at v{version}"), || async {
            let stored: i64 =
                sqlx::query_scalar("SELECT settings_version FROM shops WHERE shop_id = $1")
                    .bind(shop)
                    .fetch_optional(pool)
                    .await
                    .expect("query shops")
                    .unwrap_or_default();
            (stored >= version).then_some(())
        })
        .await;
    }

    /// A shop registered and enabled with shipment results on and a 30-day sync period: the
    /// state in which R4 can lock its orders.
    pub async fn make_shop_synced(&self, shop: &str) {
        self.make_shop_known(shop).await;
        self.publish_shop_sync(shop, 2, true, true, 30).await;
    }

    /// Registers the shop's settings (as far as order-events can tell) and waits until the shop
    /// is known.
    pub async fn make_shop_known(&self, shop: &str) {
        self.publish_settings(shop, 1, "registered").await;
        let pool = &self.db.pool;
        eventually(DEADLINE, &format!("shop {shop} known"), || async {
            let known: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM shops WHERE shop_id = $1 AND registered)",
            )
            .bind(shop)
            .fetch_one(pool)
            .await
            .expect("query shops");
            known.then_some(())
        })
        .await;
    }

    /// Publishes an order snapshot as the cart does (protobuf, no content type).
    pub async fn publish_order(&self, order: &Order) {
        let subject = self
            .nats
            .subjects
            .cart_order_upserted(&shop_id(&order.shop_id));
        self.publish(subject, HeaderMap::new(), order.encode_to_vec())
            .await;
    }

    pub async fn publish_shipment(&self, update: &ShipmentUpdated) {
        let shop = update
            .shipment
            .as_ref()
            .map(|s| s.shop_id.clone())
            .unwrap_or_default();
        let subject = self.nats.subjects.shipments_updated(&shop_id(&shop));
        self.publish(subject, HeaderMap::new(), update.encode_to_vec())
            .await;
    }

    /// Every message currently in one of the service's streams, in stream order.
    pub async fn stream_messages(&self, kind: StreamKind) -> Vec<StreamMessage> {
        let name = self.nats.subjects.stream_name(kind);
        let mut stream = self.nats.js.get_stream(&name).await.expect("stream");
        let state = stream.info().await.expect("stream info").state.clone();
        let mut messages = Vec::new();
        if state.messages == 0 {
            return messages;
        }
        for sequence in state.first_sequence..=state.last_sequence {
            if let Ok(message) = stream.get_raw_message(sequence).await {
                messages.push(message);
            }
        }
        messages
    }

    /// The events order-events published, in order.
    pub async fn order_events(&self) -> Vec<OrderEvent> {
        self.stream_messages(StreamKind::Orders)
            .await
            .into_iter()
            .map(|message| OrderEvent::decode(&message))
            .collect()
    }

    /// The events about one order, in order.
    pub async fn events_of(&self, shop: &str, order_no: &str) -> Vec<OrderEvent> {
        self.order_events()
            .await
            .into_iter()
            .filter(|event| event.shop() == shop && event.order_no() == order_no)
            .collect()
    }

    /// Waits until `count` events about the order were published.
    pub async fn wait_for_events(
        &self,
        shop: &str,
        order_no: &str,
        count: usize,
    ) -> Vec<OrderEvent> {
        eventually(
            DEADLINE,
            &format!("{count} events of {shop}/{order_no}"),
            || async {
                let events = self.events_of(shop, order_no).await;
                (events.len() >= count).then_some(events)
            },
        )
        .await
    }

    /// Dead letters: (original subject, reason, payload).
    pub async fn dead_letters(&self) -> Vec<DeadLetter> {
        self.stream_messages(StreamKind::DeadLetters)
            .await
            .into_iter()
            .map(|message| {
                let header = |name: &str| {
                    message
                        .headers
                        .get(name)
                        .map(|value| value.as_str().to_owned())
                        .unwrap_or_default()
                };
                DeadLetter {
                    subject: message.subject.to_string(),
                    original_subject: header(DEAD_LETTER_SUBJECT),
                    reason: header(DEAD_LETTER_REASON),
                    payload: message.payload.to_vec(),
                }
            })
            .collect()
    }

    pub async fn wait_for_dead_letters(&self, count: usize) -> Vec<DeadLetter> {
        eventually(DEADLINE, &format!("{count} dead letters"), || async {
            let letters = self.dead_letters().await;
            (letters.len() >= count).then_some(letters)
        })
        .await
    }

    /// Rows of the outbox: (subject, published).
    pub async fn outbox(&self) -> Vec<(String, bool)> {
        sqlx::query_as("SELECT subject, published_at IS NOT NULL FROM outbox ORDER BY id")
            .fetch_all(&self.db.pool)
            .await
            .expect("outbox rows")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        // Remove this test's streams from the shared NATS server (best effort).
        let names: Vec<String> = STREAMS
            .iter()
            .map(|kind| self.nats.subjects.stream_name(*kind))
            .collect();
        let url = wmslink_testkit::nats_url();
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(client) = async_nats::connect(url).await {
                    let js = async_nats::jetstream::new(client);
                    for name in names {
                        let _ = js.delete_stream(&name).await;
                    }
                }
            });
        });
        let _ = cleanup.join();
    }
}

#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub subject: String,
    pub original_subject: String,
    pub reason: String,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum OrderEvent {
    StatusChanged(OrderStatusChanged),
    Updated(OrderUpdated),
    Rejected(OrderStatusChangeRejected),
}

impl OrderEvent {
    fn decode(message: &StreamMessage) -> Self {
        let subject = message.subject.as_str();
        let payload = message.payload.as_ref();
        assert_eq!(
            message
                .headers
                .get("Content-Type")
                .map(|value| value.as_str()),
            Some("application/protobuf"),
            "content type of {subject}"
        );
        let msg_id = message
            .headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .map(|value| value.as_str().to_owned())
            .unwrap_or_default();
        let event = if subject.ends_with(".status_changed") {
            Self::StatusChanged(OrderStatusChanged::decode(payload).expect("status_changed"))
        } else if subject.ends_with(".updated") {
            Self::Updated(OrderUpdated::decode(payload).expect("updated"))
        } else if subject.ends_with(".status_change_rejected") {
            Self::Rejected(OrderStatusChangeRejected::decode(payload).expect("rejected"))
        } else {
            panic!("unexpected subject {subject}");
        };
        assert_eq!(msg_id, event.event_id(), "Nats-Msg-Id is the event id");
        assert!(
            subject.contains(&format!(".orders.{}.", event.shop())),
            "{subject} carries the shop"
        );
        event
    }

    pub fn event_id(&self) -> &str {
        match self {
            Self::StatusChanged(e) => &e.event_id,
            Self::Updated(e) => &e.event_id,
            Self::Rejected(e) => &e.event_id,
        }
    }

    pub fn shop(&self) -> &str {
        match self {
            Self::StatusChanged(e) => e.order.as_ref().map(|o| o.shop_id.as_str()).unwrap_or(""),
            Self::Updated(e) => e.order.as_ref().map(|o| o.shop_id.as_str()).unwrap_or(""),
            Self::Rejected(e) => &e.shop_id,
        }
    }

    pub fn order_no(&self) -> &str {
        match self {
            Self::StatusChanged(e) => e.order.as_ref().map(|o| o.order_no.as_str()).unwrap_or(""),
            Self::Updated(e) => e.order.as_ref().map(|o| o.order_no.as_str()).unwrap_or(""),
            Self::Rejected(e) => &e.order_no,
        }
    }

    /// A short description, e.g. `status_changed 1 ->new` or `updated 3`.
    pub fn describe(&self) -> String {
        match self {
            Self::StatusChanged(e) => format!(
                "status_changed {} {}->{}",
                e.revision, e.previous_status_code, e.new_status_code
            ),
            Self::Updated(e) => format!("updated {}", e.revision),
            Self::Rejected(e) => format!(
                "rejected {} {}->{}",
                e.revision, e.current_status_code, e.requested_status_code
            ),
        }
    }
}

pub fn shop_id(shop: &str) -> ShopId {
    ShopId::parse(shop).expect("valid shop id")
}

/// A realistic order snapshot.
pub fn order(shop: &str, order_no: &str, revision: i64, status: &str) -> Order {
    let address = Address {
        name: "山田 太郎".into(),
        kana: "ヤマダ タロウ".into(),
        zip: "150-0001".into(),
        prefecture: "東京都".into(),
        address1: "渋谷区神宮前1-2-3".into(),
        address2: "ハイツ101".into(),
        phone: "03-1234-5678".into(),
        email: "taro@example.jp".into(),
    };
    Order {
        shop_id: shop.into(),
        order_no: order_no.into(),
        revision,
        order_date: Some(wmslink_proto::timestamp(1_777_598_100, 0)),
        status_code: status.into(),
        payment_method_code: "cod".into(),
        orderer: Some(address.clone()),
        shipping: Some(address),
        delivery_date: "2026-05-03".into(),
        delivery_time: "14-16".into(),
        amounts: Some(Amounts {
            products: 3000,
            shipping_fee: 500,
            cod_fee: 330,
            discount: 0,
            tax: 300,
            total: 4130,
        }),
        note: String::new(),
        lines: vec![LineItem {
            sku: "TS-RED-M".into(),
            name: "Tシャツ 赤 M".into(),
            quantity: 2,
            unit_price: 1500,
            options: HashMap::from([("color".to_owned(), "red".to_owned())]),
        }],
        extra: HashMap::from([("campaign".to_owned(), "spring".to_owned())]),
    }
}

/// An order snapshot dated an hour ago (within any sync period).
pub fn recent_order(shop: &str, order_no: &str, revision: i64, status: &str) -> Order {
    let mut order = order(shop, order_no, revision, status);
    order.order_date = Some(wmslink_proto::to_timestamp(
        chrono::Utc::now() - chrono::TimeDelta::hours(1),
    ));
    order
}

/// A shipment update as the dispatcher publishes it.
pub fn shipment(
    shop: &str,
    order_no: &str,
    sequence: i64,
    status: ShippingStatus,
    wms_status_id: i32,
    wms_status_name: &str,
) -> ShipmentUpdated {
    ShipmentUpdated {
        event_id: format!("shipment-{shop}-{order_no}-{sequence}"),
        shipment: Some(Shipment {
            shop_id: shop.into(),
            order_no: order_no.into(),
            shipping_status: status as i32,
            wms_status_id,
            wms_status_name: wms_status_name.into(),
            ..Shipment::default()
        }),
        sequence,
        occurred_at: Some(wmslink_proto::timestamp(1_777_600_000 + sequence, 0)),
    }
}
