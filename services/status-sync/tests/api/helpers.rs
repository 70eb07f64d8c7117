//! `spawn_app()` and the helpers every test uses: the real settings service, a WMS simulator and
//! status-sync, all in-process on port 0, with fresh databases and a unique NATS prefix.
//!
//! The building blocks ([`start_settings`], [`enable_shop`], [`sync_config`], [`start_sync`])
//! let a test assemble its own system, e.g. status-sync started after a shop was enabled.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use prost::Message;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use wmslink_platform::nats::StreamKind;
use wmslink_platform::secrets::KeyRing;
use wmslink_platform::shop::ShopId;
use wmslink_proto::dispatch::v1::{Shipment, ShipmentUpdated};
use wmslink_proto::orders::v1::ShippingStatus;
use wmslink_proto::settings::v1 as settings_pb;
use wmslink_proto::sync::v1 as pb;
use wmslink_status_sync::{Application, Config};
use wmslink_test_harness::grpc::{self, operator_and_reader, port_zero};
pub use wmslink_test_harness::grpc::{SettingsClient, SyncClient};
use wmslink_test_harness::settings::{
    self, SETTINGS_ADMIN_TOKEN, admin_token, reader_service_token,
};
use wmslink_test_harness::{RunningService, SettingsService, shop, wms};
use wmslink_testkit::{TestDb, TestNats, eventually};
use wmslink_wms_client::{
    Detail, FreeFields, Orderer, RateLimiter, ShipmentInstruction, Shipping, Unlimited, WmsClient,
    WmsClientConfig, jst,
};
use wmslink_wms_simulator::{KeyOptions, RunningSimulator, SimConfig, SimRateLimit};

/// status-sync's token at the settings service.
pub const SETTINGS_SYNC_TOKEN: &str = "test-settings-sync-0123456789";
pub const OPERATOR_TOKEN: &str = "test-sync-operator-0123456789";
pub const READER_TOKEN: &str = "test-sync-reader-0123456789";

/// How long `eventually` waits.
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// The sync period every test shop is registered with (days).
pub const SYNC_PERIOD_DAYS: u32 = 30;

/// The WMS client rules of status-sync and of the tests' own WMS clients: the harness's, with
/// a longer request timeout.
pub fn wms_test_config() -> WmsClientConfig {
    WmsClientConfig {
        request_timeout_ms: 10_000,
        ..wms::wms_test_config()
    }
}

/// status-sync running in-process on its own database.
pub struct RunningSync {
    pub addr: SocketAddr,
    pub db: TestDb,
    service: RunningService,
}

impl RunningSync {
    /// Stops status-sync gracefully (SIGTERM) and waits for it; its database stays.
    pub async fn stop(&mut self) {
        self.service.stop().await;
    }
}

/// The real settings service, with tokens for an admin and for status-sync.
pub async fn start_settings(nats: &TestNats, master_keys: &str) -> SettingsService {
    SettingsService::start(
        nats,
        master_keys,
        vec![
            admin_token(),
            reader_service_token("status-sync", SETTINGS_SYNC_TOKEN),
        ],
    )
    .await
}

pub fn sync_client(addr: SocketAddr, token: &str) -> SyncClient {
    grpc::sync_client(grpc::channel(addr), token)
}

/// Registers `shop` with the simulator's `key` and URL (a sync period of
/// [`SYNC_PERIOD_DAYS`]), checks the connection and enables it.
pub async fn enable_shop(settings: &SettingsClient, shop: &str, sim_url: &str, key: &str) {
    enable_shop_with(settings, shop, sim_url, key, |_| {}).await;
}

/// [`enable_shop`] with detail settings changed by `tweak`.
pub async fn enable_shop_with(
    settings: &SettingsClient,
    shop: &str,
    sim_url: &str,
    key: &str,
    tweak: impl FnOnce(&mut settings_pb::DetailSettings),
) {
    let mut detail = settings_pb::DetailSettings {
        sync_period_days: SYNC_PERIOD_DAYS,
        ..shop::full_detail(sim_url)
    };
    tweak(&mut detail);
    shop::setup(shop, detail, key)
        .enable(&mut settings.clone())
        .await
        .expect("shop set up and enabled");
}

/// status-sync's configuration for tests: no scheduler (tests run passes with `RunSync`),
/// no overlap and no grace time (so one run shows everything), quick retries, and the WMS
/// budget in `rate_limit_url` effectively unlimited.
pub fn sync_config(
    db: &TestDb,
    nats: &TestNats,
    settings_addr: SocketAddr,
    master_keys: &str,
    rate_limit_url: &str,
) -> Config {
    let mut config = Config {
        database: db.config(),
        nats: nats.config(),
        grpc: port_zero(),
        auth: operator_and_reader(OPERATOR_TOKEN, READER_TOKEN),
        secrets: settings::master_keys(master_keys),
        ..Config::default()
    };
    config.settings.url = format!("http://{settings_addr}");
    config.settings.token = SecretString::from(SETTINGS_SYNC_TOKEN.to_owned());
    config.wms = wms_test_config();
    config.rate_limit.database_url = rate_limit_url.to_owned();
    config.rate_limit.requests_per_second = 10_000.0;
    config.rate_limit.burst = 10_000;
    config.sync.scheduled = false;
    config.sync.overlap_ms = 0;
    config.sync.anomaly_grace_ms = 0;
    config.sync.call_attempts = 2;
    config.sync.call_retry_base_ms = 50;
    config.sync.retry_base_ms = 1_000;
    config.sync.lease_ttl_ms = 10_000;
    config.sync.manual_wait_ms = 10_000;
    config.sync.tick_ms = 50;
    config.consumers.ack_wait_ms = 5_000;
    config
}

pub async fn start_sync(config: Config, db: TestDb) -> RunningSync {
    let shutdown = CancellationToken::new();
    let app = Application::build(config, shutdown.clone())
        .await
        .expect("status-sync starts");
    let service = RunningService::spawn(
        "status-sync",
        app.grpc_addr(),
        shutdown,
        app.run_until_stopped(),
    );
    RunningSync {
        addr: service.addr,
        db,
        service,
    }
}

/// A shop of a test: its id, its simulator key and a client of its WMS account (unlimited,
/// for the test's own calls such as registering orders as the dispatcher would).
pub struct TestShop {
    pub id: String,
    pub key: String,
    pub wms: WmsClient,
}

pub struct TestApp {
    /// status-sync's configuration, as started.
    pub config: Config,
    pub nats: TestNats,
    pub sim: RunningSimulator,
    pub rate_limit_db: TestDb,
    pub settings: SettingsService,
    pub sync: RunningSync,
    /// `operate` + `orders.read`.
    pub operator: SyncClient,
    /// `orders.read` only.
    pub reader: SyncClient,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(SimConfig::for_tests(), |_| {}).await
}

/// Starts everything; `configure` changes status-sync's test configuration.
pub async fn spawn_app_with(sim_config: SimConfig, configure: impl FnOnce(&mut Config)) -> TestApp {
    wmslink_platform::install_crypto_provider();
    let nats = TestNats::create().await.expect("test NATS");
    let sim = wms::start_simulator_with(sim_config).await;
    let (_, master_keys) = KeyRing::generate("test-k1");
    let rate_limit_db = TestDb::create().await.expect("rate-limit database");
    let settings = start_settings(&nats, &master_keys).await;
    let db = TestDb::create().await.expect("status-sync database");
    let mut config = sync_config(
        &db,
        &nats,
        settings.addr(),
        &master_keys,
        &rate_limit_db.url,
    );
    configure(&mut config);
    let sync = start_sync(config.clone(), db).await;
    TestApp {
        config,
        operator: sync_client(sync.addr, OPERATOR_TOKEN),
        reader: sync_client(sync.addr, READER_TOKEN),
        nats,
        sim,
        rate_limit_db,
        settings,
        sync,
    }
}

/// A shipment instruction the simulator accepts.
pub fn instruction(order_no: &str, order_date: DateTime<Utc>) -> ShipmentInstruction {
    let party = |name: &str| (name.to_owned(), "100-0001".to_owned(), "東京都".to_owned());
    let (name, zip, pref) = party("山田 太郎");
    ShipmentInstruction {
        order_no: order_no.into(),
        robot_id: 12,
        shipper_id: 3,
        delivery_method_id: 2,
        delivery_company_id: None,
        payment_method_id: 1,
        order_date: order_date.with_timezone(&jst()),
        orderer: Orderer {
            name: name.clone(),
            zip: zip.clone(),
            pref: pref.clone(),
            address1: "千代田区千代田1-1".into(),
            tel: "03-0000-0000".into(),
            ..Orderer::default()
        },
        shipping: Shipping {
            name,
            zip,
            pref,
            address1: "千代田区千代田1-1".into(),
            tel: "03-0000-0000".into(),
            ..Shipping::default()
        },
        product_total: 1000,
        shipping_fee: 0,
        cod_fee: 0,
        discount: 0,
        tax_total: 91,
        pay_total: 1000,
        note: None,
        free_fields: FreeFields::new(),
        details: vec![Detail {
            sku: "SKU-1".into(),
            name: "テスト商品".into(),
            quantity: 1,
            unit_price: 1000,
            free_fields: FreeFields::new(),
        }],
    }
}

/// Registers orders in the WMS account (`POST /order/`, 200 per call); returns their ids.
pub async fn register_in_wms(
    wms: &WmsClient,
    orders: &[(String, DateTime<Utc>)],
) -> HashMap<String, i64> {
    let rows: Vec<ShipmentInstruction> = orders
        .iter()
        .map(|(order_no, date)| instruction(order_no, *date))
        .collect();
    let report = wms.register(&rows).await;
    assert!(
        report.failed.is_none(),
        "registration failed: {:?}",
        report.failed
    );
    report
        .rows
        .into_iter()
        .map(|row| {
            let id = row
                .order_id()
                .unwrap_or_else(|| panic!("{} refused: {:?}", row.order_no, row.outcome));
            (row.order_no, id)
        })
        .collect()
}

/// Publishes a `ShipmentUpdated` as the dispatcher would (JetStream, with a message id).
#[allow(clippy::too_many_arguments)]
pub async fn publish_shipment(
    nats: &TestNats,
    shop: &str,
    order_no: &str,
    wms_order_id: i64,
    status: ShippingStatus,
    sequence: i64,
    order_date: DateTime<Utc>,
) {
    let event = shipment_event(shop, order_no, wms_order_id, status, sequence, order_date);
    publish_raw(nats, shop, &event.event_id, event.encode_to_vec()).await;
}

/// A `ShipmentUpdated` as the dispatcher publishes it.
pub fn shipment_event(
    shop: &str,
    order_no: &str,
    wms_order_id: i64,
    status: ShippingStatus,
    sequence: i64,
    order_date: DateTime<Utc>,
) -> ShipmentUpdated {
    let event_id = uuid::Uuid::now_v7().to_string();
    ShipmentUpdated {
        event_id: event_id.clone(),
        shipment: Some(Shipment {
            shop_id: shop.into(),
            order_no: order_no.into(),
            shipping_status: status.into(),
            wms_order_id,
            order_date: Some(wmslink_proto::timestamp(
                order_date.timestamp(),
                order_date.timestamp_subsec_nanos(),
            )),
            ..Shipment::default()
        }),
        sequence,
        occurred_at: Some(wmslink_proto::timestamp(Utc::now().timestamp(), 0)),
    }
}

pub async fn publish_raw(nats: &TestNats, shop: &str, msg_id: &str, payload: Vec<u8>) {
    let shop = ShopId::parse(shop).expect("shop id");
    nats.publish(
        nats.subjects.shipments_updated(&shop),
        payload,
        Some(msg_id),
        "application/protobuf",
    )
    .await;
}

/// Every message of `subject` in `stream` so far, decoded.
pub async fn read_events<T: Message + Default>(
    nats: &TestNats,
    stream: StreamKind,
    subject: String,
) -> Vec<T> {
    nats.stored(stream, subject)
        .await
        .iter()
        .map(|message| T::decode(message.payload.as_ref()).expect("decodes"))
        .collect()
}

impl TestApp {
    /// Stops status-sync (gracefully) and starts it again on the same database.
    pub async fn restart_sync(&mut self) {
        self.sync.stop().await;
        self.sync = start_sync(self.config.clone(), self.sync.db.clone()).await;
        self.operator = sync_client(self.sync.addr, OPERATOR_TOKEN);
        self.reader = sync_client(self.sync.addr, READER_TOKEN);
    }

    /// A client of the settings service with `settings.read` and `settings.write`.
    pub fn settings_client(&self) -> SettingsClient {
        self.settings.client(SETTINGS_ADMIN_TOKEN)
    }

    /// A new shop: a simulator account (with `rate_limit`, or the simulator's default), its
    /// settings registered, checked and enabled.
    pub async fn add_shop_with(&self, rate_limit: Option<SimRateLimit>) -> TestShop {
        let id = shop::unique_shop_id();
        let key = wms::new_account(&self.sim, KeyOptions { rate_limit });
        enable_shop(&self.settings_client(), &id, &self.sim.base_url(), &key).await;
        let limiter: Arc<dyn RateLimiter> = Arc::new(Unlimited);
        let wms = WmsClient::new(
            &self.sim.base_url(),
            SecretString::from(key.clone()),
            &wms_test_config(),
            limiter,
        )
        .expect("WMS client");
        TestShop { id, key, wms }
    }

    pub async fn add_shop(&self) -> TestShop {
        self.add_shop_with(None).await
    }

    /// A shop of a multi-channel WMS account: its WMS orders are those numbered `prefix…`.
    pub async fn add_shop_with_prefix(&self, prefix: &str) -> TestShop {
        let id = shop::unique_shop_id();
        let key = wms::new_account(&self.sim, KeyOptions::default());
        enable_shop_with(
            &self.settings_client(),
            &id,
            &self.sim.base_url(),
            &key,
            |detail| detail.wms_order_no_prefix = prefix.to_owned(),
        )
        .await;
        let limiter: Arc<dyn RateLimiter> = Arc::new(Unlimited);
        let wms = WmsClient::new(
            &self.sim.base_url(),
            SecretString::from(key.clone()),
            &wms_test_config(),
            limiter,
        )
        .expect("WMS client");
        TestShop { id, key, wms }
    }

    /// Registers orders in the shop's WMS account and tells status-sync they were sent
    /// (`SENT`, sequence 1), then waits until its watch list has them. Returns the WMS ids.
    pub async fn sent_orders(
        &self,
        shop: &TestShop,
        orders: &[(String, DateTime<Utc>)],
    ) -> HashMap<String, i64> {
        let ids = register_in_wms(&shop.wms, orders).await;
        for (order_no, date) in orders {
            self.shipment(
                shop,
                order_no,
                ids[order_no],
                ShippingStatus::Sent,
                1,
                *date,
            )
            .await;
        }
        self.wait_for_watch_list(shop, orders.len()).await;
        ids
    }

    pub async fn shipment(
        &self,
        shop: &TestShop,
        order_no: &str,
        wms_order_id: i64,
        status: ShippingStatus,
        sequence: i64,
        order_date: DateTime<Utc>,
    ) {
        publish_shipment(
            &self.nats,
            &shop.id,
            order_no,
            wms_order_id,
            status,
            sequence,
            order_date,
        )
        .await;
    }

    /// The dispatcher's report of a WMS cancellation nobody asked for: `CANCELLED` with
    /// `cancelled_in_wms_unrequested` (R5).
    pub async fn cancelled_unrequested(
        &self,
        shop: &TestShop,
        order_no: &str,
        wms_order_id: i64,
        sequence: i64,
        order_date: DateTime<Utc>,
    ) {
        let mut event = shipment_event(
            &shop.id,
            order_no,
            wms_order_id,
            ShippingStatus::Cancelled,
            sequence,
            order_date,
        );
        if let Some(shipment) = event.shipment.as_mut() {
            shipment.cancelled_in_wms_unrequested = true;
        }
        publish_raw(&self.nats, &shop.id, &event.event_id, event.encode_to_vec()).await;
    }

    /// Waits until status-sync's watch list holds `count` shipments of the shop.
    pub async fn wait_for_watch_list(&self, shop: &TestShop, count: usize) {
        eventually(
            WAIT,
            &format!("{count} shipments of {} known", shop.id),
            || async {
                let known: i64 =
                    sqlx::query_scalar("SELECT count(*) FROM watch_list WHERE shop_id = $1")
                        .bind(&shop.id)
                        .fetch_one(&self.sync.db.pool)
                        .await
                        .ok()?;
                (usize::try_from(known).ok()? >= count).then_some(())
            },
        )
        .await;
    }

    /// Waits until the stored shipping status of `order_no` is `status` at `sequence`.
    pub async fn wait_for_shipment(
        &self,
        shop: &TestShop,
        order_no: &str,
        status: &str,
        sequence: i64,
    ) {
        eventually(WAIT, &format!("{order_no} {status}#{sequence}"), || async {
            let row: Option<(String, i64)> = sqlx::query_as(
                "SELECT shipping_status, sequence FROM watch_list WHERE shop_id = $1 AND order_no = $2",
            )
            .bind(&shop.id)
            .bind(order_no)
            .fetch_optional(&self.sync.db.pool)
            .await
            .ok()?;
            (row == Some((status.to_owned(), sequence))).then_some(())
        })
        .await;
    }

    pub async fn run_sync(&self, shop: &TestShop) -> pb::SyncRun {
        self.run_sync_request(pb::RunSyncRequest {
            shop_id: shop.id.clone(),
            from: None,
            to: None,
        })
        .await
        .expect("RunSync")
    }

    pub async fn run_sync_request(
        &self,
        request: pb::RunSyncRequest,
    ) -> Result<pb::SyncRun, tonic::Status> {
        let answer = self.operator.clone().run_sync(request).await?.into_inner();
        let run = answer.run.expect("run in the answer");
        assert_eq!(answer.run_id, run.run_id);
        Ok(run)
    }

    /// Search calls the simulator received with the shop's key.
    pub fn searches(&self, shop: &TestShop) -> u64 {
        self.counters(shop)
            .requests
            .get("search")
            .copied()
            .unwrap_or(0)
    }

    pub fn counters(&self, shop: &TestShop) -> wmslink_wms_simulator::Counters {
        self.sim.state().counters(&shop.key).expect("counters")
    }

    /// Changes an order in the simulator through its HTTP control API.
    pub async fn patch_order(&self, shop: &TestShop, order_id: i64, patch: serde_json::Value) {
        let url = format!(
            "{}/_sim/keys/{}/orders/{order_id}",
            self.sim.base_url(),
            shop.key
        );
        let response = reqwest::Client::new()
            .patch(url)
            .json(&patch)
            .send()
            .await
            .expect("simulator control call");
        assert!(
            response.status().is_success(),
            "patch refused: {}",
            response.status()
        );
    }

    /// Sets (or, with `None`, clears) the faults of the shop's key through `/_sim`.
    pub async fn faults(&self, shop: &TestShop, faults: Option<serde_json::Value>) {
        let url = format!("{}/_sim/keys/{}/faults", self.sim.base_url(), shop.key);
        let client = reqwest::Client::new();
        let response = match faults {
            Some(body) => client.put(url).json(&body).send().await,
            None => client.delete(url).send().await,
        }
        .expect("simulator control call");
        assert!(
            response.status().is_success(),
            "faults refused: {}",
            response.status()
        );
    }

    /// Waits until every event status-sync enqueued is published, then returns the shop's
    /// `WmsObserved` events (in publication order).
    pub async fn observed(&self, shop: &TestShop) -> Vec<pb::WmsObserved> {
        self.outbox_drained().await;
        let subject = self
            .nats
            .subjects
            .wms_observed(&ShopId::parse(&shop.id).expect("shop"));
        read_events(&self.nats, StreamKind::Wms, subject).await
    }

    pub async fn anomaly_events(&self, shop: &TestShop) -> Vec<pb::WmsAnomaly> {
        self.outbox_drained().await;
        let subject = self
            .nats
            .subjects
            .wms_anomaly(&ShopId::parse(&shop.id).expect("shop"));
        read_events(&self.nats, StreamKind::Wms, subject).await
    }

    /// The shop's observed events by order number, latest last.
    pub async fn observed_by_order(
        &self,
        shop: &TestShop,
    ) -> BTreeMap<String, Vec<pb::WmsObserved>> {
        let mut by_order: BTreeMap<String, Vec<pb::WmsObserved>> = BTreeMap::new();
        for event in self.observed(shop).await {
            by_order
                .entry(event.order_no.clone())
                .or_default()
                .push(event);
        }
        by_order
    }

    pub async fn outbox_drained(&self) {
        eventually(WAIT, "status-sync's outbox published", || async {
            let pending: i64 =
                sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                    .fetch_one(&self.sync.db.pool)
                    .await
                    .ok()?;
            (pending == 0).then_some(())
        })
        .await;
    }

    pub async fn anomalies(&self, shop: &TestShop, kind: pb::AnomalyKind) -> Vec<pb::WmsAnomaly> {
        self.reader
            .clone()
            .list_anomalies(pb::ListAnomaliesRequest {
                shop_id: shop.id.clone(),
                limit: 0,
                kind: kind as i32,
            })
            .await
            .expect("ListAnomalies")
            .into_inner()
            .anomalies
    }

    pub async fn runs(&self, shop: &TestShop) -> Vec<pb::SyncRun> {
        self.reader
            .clone()
            .get_sync_runs(pb::GetSyncRunsRequest {
                shop_id: shop.id.clone(),
                limit: 0,
            })
            .await
            .expect("GetSyncRuns")
            .into_inner()
            .runs
    }
}

pub fn days_ago(days: i64) -> DateTime<Utc> {
    Utc::now() - chrono::Duration::days(days)
}

pub fn timestamp(at: DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(wmslink_proto::timestamp(
        at.timestamp(),
        at.timestamp_subsec_nanos(),
    ))
}

/// `count` order numbers `<prefix>-0001`…, all dated `order_date`.
pub fn orders(
    prefix: &str,
    count: usize,
    order_date: DateTime<Utc>,
) -> Vec<(String, DateTime<Utc>)> {
    (1..=count)
        .map(|i| (format!("{prefix}-{i:04}"), order_date))
        .collect()
}
