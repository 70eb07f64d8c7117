//! `spawn_app()` and the helpers every test uses: the real service in-process on port 0 with a
//! fresh database, a unique NATS prefix, a generated master key and three tokens.

use std::net::SocketAddr;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use futures::StreamExt;
use prost::Message;
use secrecy::SecretString;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};
use wmslink_platform::auth::{AuthConfig, BearerToken, TokenConfig, scopes};
use wmslink_platform::grpc::GrpcConfig;
use wmslink_platform::nats::StreamKind;
use wmslink_platform::secrets::{KeyRing, MasterKeyConfig};
use wmslink_platform::shop::ShopId;
use wmslink_proto::settings::v1 as pb;
use wmslink_proto::settings::v1::settings_service_client::SettingsServiceClient;
use wmslink_settings::{Application, Config};
use wmslink_testkit::{TestDb, TestNats};
use wmslink_wms_simulator::{KeyOptions, RunningSimulator, SimConfig, Simulator};

pub type Client = SettingsServiceClient<InterceptedService<Channel, BearerToken>>;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const READER_TOKEN: &str = "test-reader-token-0123456789";
pub const WRITER_TOKEN: &str = "test-writer-token-0123456789";
pub const DISPATCHER_TOKEN: &str = "test-dispatcher-token-0123456789";

/// How long `eventually` waits.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestApp {
    pub addr: SocketAddr,
    pub db: TestDb,
    pub nats: TestNats,
    /// The master key ring the service was configured with.
    pub keys: KeyRing,
    /// `settings.read` + `settings.write`.
    pub admin: Client,
    /// `settings.read` only.
    pub reader: Client,
    /// `settings.write` only.
    pub writer: Client,
    /// `settings.credentials` only.
    pub dispatcher: Client,
    shutdown: CancellationToken,
    server: Option<JoinHandle<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn token(caller: &str, token: &str, scopes: &[&str]) -> TokenConfig {
    TokenConfig {
        caller: caller.into(),
        token: SecretString::from(token.to_owned()),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the service with the test defaults, changed by `configure`.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    let db = TestDb::create().await.expect("test database");
    let nats = TestNats::create().await.expect("test NATS");
    let (keys, key_line) = KeyRing::generate("test-k1");
    let mut config = Config {
        database: db.config(),
        nats: nats.config(),
        grpc: GrpcConfig {
            listen_addr: "127.0.0.1:0".into(),
        },
        auth: AuthConfig {
            tokens: vec![
                token(
                    "admin",
                    ADMIN_TOKEN,
                    &[scopes::SETTINGS_READ, scopes::SETTINGS_WRITE],
                ),
                token("reader", READER_TOKEN, &[scopes::SETTINGS_READ]),
                token("writer", WRITER_TOKEN, &[scopes::SETTINGS_WRITE]),
                token(
                    "shipment-dispatcher",
                    DISPATCHER_TOKEN,
                    &[scopes::SETTINGS_CREDENTIALS],
                ),
            ],
        },
        secrets: MasterKeyConfig {
            master_keys: SecretString::from(key_line),
            ..MasterKeyConfig::default()
        },
        ..Config::default()
    };
    config.wms.allow_http_hosts = vec!["127.0.0.1".into(), "localhost".into()];
    config.wms.connect_timeout_ms = 2_000;
    config.wms.request_timeout_ms = 5_000;
    // The test's own database holds the rate-limit buckets.
    config.rate_limit.database_url = String::new();
    configure(&mut config);

    let shutdown = CancellationToken::new();
    let app = Application::build(config, shutdown.clone())
        .await
        .expect("application starts");
    let addr = app.grpc_addr();
    let server = tokio::spawn(async move {
        app.run_until_stopped().await.expect("server runs");
    });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connects");
    TestApp {
        addr,
        db,
        nats,
        keys,
        admin: client_for(&channel, ADMIN_TOKEN),
        reader: client_for(&channel, READER_TOKEN),
        writer: client_for(&channel, WRITER_TOKEN),
        dispatcher: client_for(&channel, DISPATCHER_TOKEN),
        shutdown,
        server: Some(server),
    }
}

pub fn client_for(channel: &Channel, token: &str) -> Client {
    let bearer = BearerToken::new(&SecretString::from(token.to_owned())).expect("ascii token");
    SettingsServiceClient::with_interceptor(channel.clone(), bearer)
}

impl TestApp {
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .expect("uri")
            .connect()
            .await
            .expect("connects")
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.await.expect("server task");
        }
    }

    pub async fn put_catalog(&self, shop: &str) -> i64 {
        self.admin
            .clone()
            .put_order_status_catalog(pb::PutOrderStatusCatalogRequest {
                shop_id: shop.into(),
                statuses: catalog(),
            })
            .await
            .expect("catalog stored")
            .into_inner()
            .version
    }

    pub async fn register(
        &self,
        shop: &str,
        expected_version: i64,
        detail: pb::DetailSettings,
        access_key: Option<&str>,
    ) -> Result<pb::ShopSettings, Status> {
        self.admin
            .clone()
            .register_settings(pb::RegisterSettingsRequest {
                shop_id: shop.into(),
                expected_version,
                detail: Some(detail),
                access_key: access_key.map(str::to_owned),
            })
            .await
            .map(|r| r.into_inner().settings.expect("settings in answer"))
    }

    pub async fn get(&self, shop: &str) -> Result<pb::ShopSettings, Status> {
        self.admin
            .clone()
            .get_settings(pb::GetSettingsRequest {
                shop_id: shop.into(),
            })
            .await
            .map(|r| r.into_inner().settings.expect("settings in answer"))
    }

    pub async fn check(&self, shop: &str) -> pb::CheckConnectionResponse {
        self.admin
            .clone()
            .check_connection(pb::CheckConnectionRequest {
                shop_id: shop.into(),
                access_key: None,
                endpoint_url: None,
            })
            .await
            .expect("check answered")
            .into_inner()
    }

    /// Outcome of a try-check of a given pair (not recorded).
    pub async fn try_check(&self, shop: &str, key: &str, url: &str) -> pb::ConnectionCheck {
        let answer = self
            .admin
            .clone()
            .check_connection(pb::CheckConnectionRequest {
                shop_id: shop.into(),
                access_key: Some(key.into()),
                endpoint_url: Some(url.into()),
            })
            .await
            .expect("check answered")
            .into_inner();
        assert!(!answer.recorded, "a try is never recorded");
        answer.check.expect("check")
    }

    pub async fn set_enabled(
        &self,
        shop: &str,
        enabled: bool,
        expected_version: i64,
    ) -> Result<pb::ShopSettings, Status> {
        self.admin
            .clone()
            .set_enabled(pb::SetEnabledRequest {
                shop_id: shop.into(),
                enabled,
                expected_version,
            })
            .await
            .map(|r| r.into_inner().settings.expect("settings in answer"))
    }

    /// Catalog, registration with a simulator key and a passing check: ready to enable.
    pub async fn registered_and_checked(
        &self,
        sim: &RunningSimulator,
        shop: &str,
    ) -> (String, i64) {
        let key = sim_key(sim);
        self.put_catalog(shop).await;
        let registered = self
            .register(shop, 0, full_detail(&sim.base_url()), Some(&key))
            .await
            .expect("registered");
        let check = self.check(shop).await;
        assert_eq!(
            check.check.as_ref().map(|c| c.outcome()),
            Some(pb::ConnectionCheckOutcome::Ok),
            "{check:?}"
        );
        assert_eq!(check.version, registered.version + 1);
        (key, check.version)
    }

    /// Every `SettingsChanged` of `shop` stored in the test's stream so far.
    pub async fn settings_events(&self, shop: &str) -> Vec<(pb::SettingsChanged, Option<String>)> {
        let shop = ShopId::parse(shop).expect("shop id");
        let stream = self
            .nats
            .js
            .get_stream(self.nats.subjects.stream_name(StreamKind::Settings))
            .await
            .expect("settings stream exists");
        let consumer = stream
            .create_consumer(pull::Config {
                filter_subject: self.nats.subjects.settings_changed(&shop),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::None,
                inactive_threshold: Duration::from_secs(30),
                ..Default::default()
            })
            .await
            .expect("consumer");
        let mut batch = consumer
            .fetch()
            .max_messages(1000)
            .messages()
            .await
            .expect("fetch");
        let mut events = Vec::new();
        while let Some(message) = batch.next().await {
            let message = message.expect("message");
            let msg_id = message
                .headers
                .as_ref()
                .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                .map(|v| v.as_str().to_owned());
            events.push((
                pb::SettingsChanged::decode(message.payload.as_ref()).expect("SettingsChanged"),
                msg_id,
            ));
        }
        events
    }

    /// Waits until the events of `shop` reach `version`, and returns them all.
    pub async fn events_until(&self, shop: &str, version: i64) -> Vec<pb::SettingsChanged> {
        wmslink_testkit::eventually(
            WAIT,
            &format!("SettingsChanged v{version} of {shop}"),
            || async {
                let events = self.settings_events(shop).await;
                events
                    .iter()
                    .any(|(e, _)| e.version >= version)
                    .then(|| events.into_iter().map(|(e, _)| e).collect())
            },
        )
        .await
    }
}

pub fn unique_shop() -> String {
    wmslink_testkit::unique("shop-")
}

/// new, paid (open), shipped (completed), cancel (cancelled).
pub fn catalog() -> Vec<pb::OrderStatus> {
    let status = |code: &str, name: &str, kind: pb::OrderStatusKind| pb::OrderStatus {
        code: code.into(),
        display_name: name.into(),
        kind: kind as i32,
    };
    vec![
        status("new", "新規受付", pb::OrderStatusKind::Open),
        status("paid", "入金済み", pb::OrderStatusKind::Open),
        status("ready", "出荷待ち", pb::OrderStatusKind::Open),
        status("shipped", "発送済み", pb::OrderStatusKind::Completed),
        status("cancel", "キャンセル", pb::OrderStatusKind::Cancelled),
    ]
}

/// Detail settings with every field set, complete for enabling.
pub fn full_detail(endpoint_url: &str) -> pb::DetailSettings {
    pb::DetailSettings {
        wms_kind: pb::WmsKind::CommerceRobo as i32,
        endpoint_url: endpoint_url.into(),
        data_targets: Some(pb::DataTargets {
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
            pb::PaymentMapping {
                payment_method_code: "credit".into(),
                wms_payment_method_id: 1,
                delivery_company_id: 0,
            },
            pb::PaymentMapping {
                payment_method_code: "cod".into(),
                wms_payment_method_id: 7,
                delivery_company_id: 5,
            },
        ],
        header_free_fields: vec![
            pb::FreeFieldMapping {
                slot: 1,
                cart_field: "extra.gift_message".into(),
            },
            pb::FreeFieldMapping {
                slot: 2,
                cart_field: "shipping.email".into(),
            },
            pb::FreeFieldMapping {
                slot: 10,
                cart_field: "amounts.total".into(),
            },
        ],
        line_free_fields: vec![
            pb::FreeFieldMapping {
                slot: 1,
                cart_field: "options.color".into(),
            },
            pb::FreeFieldMapping {
                slot: 3,
                cart_field: "sku".into(),
            },
        ],
    }
}

/// A simulator on a free port (rate limit and warehouse off).
pub async fn start_simulator() -> RunningSimulator {
    Simulator::build(SimConfig::for_tests())
        .await
        .expect("simulator builds")
        .spawn()
}

/// A fresh account in the simulator; returns its access key.
pub fn sim_key(sim: &RunningSimulator) -> String {
    let key = format!("ak-{}", uuid::Uuid::new_v4().simple());
    sim.state()
        .add_key(&key, KeyOptions::default())
        .expect("key added");
    key
}

/// A loopback port nobody listens on.
pub async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    port
}

pub fn assert_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code) -> Status {
    match result {
        Ok(value) => panic!("expected {code:?}, got Ok({value:?})"),
        Err(status) => {
            assert_eq!(status.code(), code, "{status:?}");
            status
        }
    }
}

/// The (subject, description) pairs of a FAILED_PRECONDITION.
pub fn precondition_subjects(status: &Status) -> Vec<(String, String)> {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .precondition_failure()
        .map(|failure| {
            failure
                .violations
                .iter()
                .map(|v| (v.subject.clone(), v.description.clone()))
                .collect()
        })
        .unwrap_or_default()
}
