//! `spawn_app()` and the helpers every test uses: the real service in-process on port 0 (as
//! `wmslink-test-harness` starts it) with a fresh database, a unique NATS prefix, a generated
//! master key and four tokens.

use std::net::SocketAddr;
use std::time::Duration;

use prost::Message;
use tonic::transport::Channel;
use tonic::{Code, Status};
use wmslink_platform::auth::scopes;
use wmslink_platform::nats::StreamKind;
use wmslink_platform::secrets::KeyRing;
use wmslink_platform::shop::ShopId;
use wmslink_proto::settings::v1 as pb;
use wmslink_settings::Config;
pub use wmslink_test_harness::grpc::SettingsClient as Client;
use wmslink_test_harness::grpc::{self, token};
pub use wmslink_test_harness::shop::{catalog, full_detail};
pub use wmslink_test_harness::wms::start_simulator;
use wmslink_test_harness::{SettingsService, wms};
use wmslink_testkit::{TestDb, TestNats};
use wmslink_wms_simulator::{KeyOptions, RunningSimulator};

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
    service: SettingsService,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the service with the test defaults, changed by `configure`.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    let nats = TestNats::create().await.expect("test NATS");
    let (keys, key_line) = KeyRing::generate("test-k1");
    let tokens = vec![
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
    ];
    let service = SettingsService::start_with(&nats, &key_line, tokens, configure).await;
    let channel = grpc::connect(service.addr()).await;
    TestApp {
        addr: service.addr(),
        db: service.db.clone(),
        nats,
        keys,
        admin: client_for(&channel, ADMIN_TOKEN),
        reader: client_for(&channel, READER_TOKEN),
        writer: client_for(&channel, WRITER_TOKEN),
        dispatcher: client_for(&channel, DISPATCHER_TOKEN),
        service,
    }
}

pub fn client_for(channel: &Channel, token: &str) -> Client {
    grpc::settings_client(channel.clone(), token)
}

impl TestApp {
    pub async fn channel(&self) -> Channel {
        grpc::connect(self.addr).await
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        self.service.stop().await;
    }

    pub async fn put_catalog(&self, shop: &str) -> i64 {
        self.admin
            .clone()
            .put_order_status_catalog(pb::PutOrderStatusCatalogRequest {
                shop_id: shop.into(),
                statuses: catalog(),
                expected_version: None,
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

    /// Every `SettingsChanged` of `shop` stored in the test's stream so far, with its
    /// message id.
    pub async fn settings_events(&self, shop: &str) -> Vec<(pb::SettingsChanged, Option<String>)> {
        let shop = ShopId::parse(shop).expect("shop id");
        self.nats
            .stored(
                StreamKind::Settings,
                self.nats.subjects.settings_changed(&shop),
            )
            .await
            .iter()
            .map(|message| {
                let msg_id = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                    .map(|v| v.as_str().to_owned());
                (
                    pb::SettingsChanged::decode(message.payload.as_ref()).expect("SettingsChanged"),
                    msg_id,
                )
            })
            .collect()
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

pub use wmslink_test_harness::shop::unique_shop_id as unique_shop;

/// A fresh account in the simulator; returns its access key.
pub fn sim_key(sim: &RunningSimulator) -> String {
    wms::new_account(sim, KeyOptions::default())
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
