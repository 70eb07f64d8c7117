//! `SettingsClient` against a fake settings service (no database, no NATS): caching, the
//! generation guard, the stale entry when the service is down, the catalog, WMS clients.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::SecretString;
use tokio::sync::Notify;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};
use wmslink_platform::secrets::KeyRing;
use wmslink_proto::settings::v1 as pb;
use wmslink_proto::settings::v1::settings_service_server::{
    SettingsService, SettingsServiceServer,
};
use wmslink_settings_client::{
    SettingsClient, SettingsClientConfig, SettingsClientError, ShopSnapshot,
};
use wmslink_wms_client::{Unlimited, WmsClientConfig};

const TOKEN: &str = "test-settings-token";
const ACCESS_KEY: &str = "shop-access-key-never-shown";

#[derive(Default)]
struct State {
    /// shop → (version, enabled)
    shops: HashMap<String, (i64, bool)>,
    sealed: HashMap<String, pb::GetWmsCredentialsResponse>,
    down: bool,
    /// When set, GetSettings waits for it before answering.
    hold: Option<Arc<Notify>>,
    calls: HashMap<&'static str, usize>,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<State>>);

impl Fake {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().expect("fake state")
    }
    fn calls(&self, call: &str) -> usize {
        self.state().calls.get(call).copied().unwrap_or(0)
    }
    fn enter<T>(&self, call: &'static str, request: &Request<T>) -> Result<(), Status> {
        let mut state = self.state();
        *state.calls.entry(call).or_insert(0) += 1;
        let authorized = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            == Some(&format!("Bearer {TOKEN}"));
        if !authorized {
            return Err(Status::unauthenticated("bad token"));
        }
        if state.down {
            return Err(Status::unavailable("down for the test"));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl SettingsService for Fake {
    async fn get_settings(
        &self,
        request: Request<pb::GetSettingsRequest>,
    ) -> Result<Response<pb::GetSettingsResponse>, Status> {
        self.enter("GetSettings", &request)?;
        let shop_id = request.into_inner().shop_id;
        // Read first, answer after the hold: what a slow answer looks like.
        let (shop, hold) = {
            let state = self.state();
            (state.shops.get(&shop_id).copied(), state.hold.clone())
        };
        if let Some(hold) = hold {
            hold.notified().await;
        }
        let Some((version, enabled)) = shop else {
            return Err(Status::not_found("no such shop"));
        };
        Ok(Response::new(pb::GetSettingsResponse {
            settings: Some(pb::ShopSettings {
                shop_id,
                version,
                enabled,
                detail: Some(pb::DetailSettings {
                    endpoint_url: "http://127.0.0.1:8090/v1".into(),
                    sync_period_days: 0,
                    ..pb::DetailSettings::default()
                }),
                ..pb::ShopSettings::default()
            }),
        }))
    }

    async fn register_settings(
        &self,
        _: Request<pb::RegisterSettingsRequest>,
    ) -> Result<Response<pb::RegisterSettingsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn check_connection(
        &self,
        _: Request<pb::CheckConnectionRequest>,
    ) -> Result<Response<pb::CheckConnectionResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn set_enabled(
        &self,
        _: Request<pb::SetEnabledRequest>,
    ) -> Result<Response<pb::SetEnabledResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn put_order_status_catalog(
        &self,
        _: Request<pb::PutOrderStatusCatalogRequest>,
    ) -> Result<Response<pb::PutOrderStatusCatalogResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn list_order_statuses(
        &self,
        request: Request<pb::ListOrderStatusesRequest>,
    ) -> Result<Response<pb::ListOrderStatusesResponse>, Status> {
        self.enter("ListOrderStatuses", &request)?;
        Ok(Response::new(pb::ListOrderStatusesResponse {
            statuses: vec![pb::OrderStatus {
                code: "cancelled".into(),
                display_name: "Cancelled".into(),
                kind: pb::OrderStatusKind::Cancelled as i32,
            }],
            version: 1,
        }))
    }

    async fn get_wms_credentials(
        &self,
        request: Request<pb::GetWmsCredentialsRequest>,
    ) -> Result<Response<pb::GetWmsCredentialsResponse>, Status> {
        self.enter("GetWmsCredentials", &request)?;
        let shop_id = request.into_inner().shop_id;
        self.state()
            .sealed
            .get(&shop_id)
            .cloned()
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("shop {shop_id} has no settings")))
    }

    /// Pages of at most two shops, whatever the page size asked for.
    async fn list_shops(
        &self,
        request: Request<pb::ListShopsRequest>,
    ) -> Result<Response<pb::ListShopsResponse>, Status> {
        self.enter("ListShops", &request)?;
        let request = request.into_inner();
        let mut shops: Vec<pb::ShopSummary> = self
            .state()
            .shops
            .iter()
            .filter(|(shop_id, (_, enabled))| {
                (!request.enabled_only || *enabled)
                    && shop_id.as_str() > request.page_token.as_str()
            })
            .map(|(shop_id, (version, enabled))| pb::ShopSummary {
                shop_id: shop_id.clone(),
                version: *version,
                enabled: *enabled,
            })
            .collect();
        shops.sort_by(|a, b| a.shop_id.cmp(&b.shop_id));
        let page_size = (request.page_size as usize).clamp(1, 2);
        let next_page_token = if shops.len() > page_size {
            shops.truncate(page_size);
            shops
                .last()
                .map(|shop| shop.shop_id.clone())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListShopsResponse {
            shops,
            next_page_token,
        }))
    }
}

async fn serve(fake: Fake) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(SettingsServiceServer::new(fake))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    format!("http://{addr}")
}

async fn client_with(fake: &Fake, cache_ttl_ms: u64) -> SettingsClient {
    let url = serve(fake.clone()).await;
    SettingsClient::new(&SettingsClientConfig {
        url,
        token: SecretString::from(TOKEN),
        cache_ttl_ms,
        timeout_ms: 2_000,
        tls: Default::default(),
    })
    .expect("client")
}

fn fake_with(shop: &str, version: i64) -> Fake {
    let fake = Fake::default();
    fake.state().shops.insert(shop.into(), (version, true));
    fake
}

#[tokio::test]
async fn answers_are_cached_per_shop_until_invalidated() {
    let fake = fake_with("s1", 1);
    let client = client_with(&fake, 60_000).await;

    let first = client.get("s1").await.expect("get").expect("known");
    assert_eq!((first.shop_id.as_str(), first.version), ("s1", 1));
    assert!(first.enabled);
    assert_eq!(first.sync_period_days(), 30);
    let again = client.get("s1").await.expect("get").expect("known");
    assert!(Arc::ptr_eq(&first, &again), "the same snapshot");
    assert_eq!(fake.calls("GetSettings"), 1);
    assert_eq!(fake.calls("ListOrderStatuses"), 0, "not asked for");
    assert_eq!(first.order_statuses, None);

    fake.state().shops.insert("s1".into(), (2, false));
    client.invalidate("s1");
    let changed = client.get("s1").await.expect("get").expect("known");
    assert_eq!((changed.version, changed.enabled), (2, false));
    assert_eq!(fake.calls("GetSettings"), 2);

    // refresh always asks, and caches.
    let refreshed = client.refresh("s1").await.expect("refresh").expect("known");
    assert_eq!(fake.calls("GetSettings"), 3);
    let cached = client.get("s1").await.expect("get").expect("known");
    assert!(Arc::ptr_eq(&refreshed, &cached));
    assert_eq!(fake.calls("GetSettings"), 3);
}

#[tokio::test]
async fn an_unknown_shop_is_none_and_cached_too() {
    let fake = Fake::default();
    let client = client_with(&fake, 60_000).await;
    assert!(client.get("nobody").await.expect("get").is_none());
    assert!(client.get("nobody").await.expect("get").is_none());
    assert_eq!(fake.calls("GetSettings"), 1);
}

#[tokio::test]
async fn the_catalog_is_fetched_when_asked_for() {
    let fake = fake_with("s1", 1);
    let client = client_with(&fake, 60_000).await.with_order_statuses();
    let snapshot = client.get("s1").await.expect("get").expect("known");
    assert_eq!(
        snapshot
            .status_codes(pb::OrderStatusKind::Cancelled)
            .collect::<Vec<_>>(),
        ["cancelled"]
    );
    assert_eq!(fake.calls("ListOrderStatuses"), 1);
}

#[tokio::test]
async fn an_expired_entry_is_used_while_the_service_is_down_an_invalidated_one_never() {
    let fake = fake_with("s1", 1);
    // TTL 0: every get asks again.
    let client = client_with(&fake, 0).await;
    let fetched = client.get("s1").await.expect("get").expect("known");

    fake.state().down = true;
    let stale = client.get("s1").await.expect("stale").expect("known");
    assert!(Arc::ptr_eq(&fetched, &stale));
    assert_eq!(fake.calls("GetSettings"), 2, "it did ask");

    let err = client
        .refresh("s1")
        .await
        .expect_err("refresh does not fall back");
    assert!(err.is_unavailable(), "{err}");

    client.invalidate("s1");
    let err = client
        .get("s1")
        .await
        .expect_err("no entry to fall back on");
    assert!(matches!(err, SettingsClientError::Unavailable(_)), "{err}");
    let err = client.get("s2").await.expect_err("never fetched");
    assert!(err.is_unavailable(), "{err}");
}

#[tokio::test]
async fn a_fetch_in_flight_during_an_invalidation_is_returned_but_not_cached() {
    let fake = fake_with("s1", 1);
    let hold = Arc::new(Notify::new());
    fake.state().hold = Some(hold.clone());
    let client = Arc::new(client_with(&fake, 60_000).await);

    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { client.get("s1").await }
    });
    wmslink_testkit::eventually(
        Duration::from_secs(5),
        "the fetch to be in flight",
        || async { (fake.calls("GetSettings") > 0).then_some(()) },
    )
    .await;
    fake.state().shops.insert("s1".into(), (2, true));
    client.invalidate("s1");
    fake.state().hold = None;
    hold.notify_one();

    let old = in_flight.await.expect("task").expect("get").expect("known");
    assert_eq!(old.version, 1, "answered as fetched");
    let current = client.get("s1").await.expect("get").expect("known");
    assert_eq!(current.version, 2, "the old answer was not cached");
    assert_eq!(fake.calls("GetSettings"), 2);
}

#[tokio::test]
async fn wms_clients_come_from_the_sealed_key_and_errors_never_show_it() {
    let fake = fake_with("s1", 1);
    let (keys, _) = KeyRing::generate("k1");
    let sealed = keys
        .seal(&SecretString::from(ACCESS_KEY), b"s1")
        .expect("seal");
    fake.state().sealed.insert(
        "s1".into(),
        pb::GetWmsCredentialsResponse {
            endpoint_url: "http://127.0.0.1:8090/v1".into(),
            key_id: sealed.key_id,
            sealed_access_key: sealed.blob,
            version: 1,
            enabled: true,
        },
    );
    let client = client_with(&fake, 60_000).await;
    let config = WmsClientConfig {
        allow_http_hosts: vec!["127.0.0.1".into()],
        // The simulator listens on loopback.
        refuse_private_addresses: false,
        ..WmsClientConfig::default()
    };

    let shop = |shop_id: &str| ShopSnapshot {
        shop_id: shop_id.into(),
        version: 1,
        enabled: true,
        detail: pb::DetailSettings {
            wms_kind: pb::WmsKind::CommerceRobo as i32,
            ..pb::DetailSettings::default()
        },
        order_statuses: None,
    };
    let wms = client
        .wms(&shop("s1"), &keys, &config, Arc::new(Unlimited))
        .await
        .expect("client");
    assert!(!format!("{wms:?}").contains(ACCESS_KEY));
    assert_eq!(fake.calls("GetWmsCredentials"), 1);

    let refused = client
        .wms(
            &shop("s1"),
            &keys,
            &WmsClientConfig::default(),
            Arc::new(Unlimited),
        )
        .await
        .expect_err("plain http refused by the rules");
    assert!(
        matches!(refused, SettingsClientError::WmsClient { .. }),
        "{refused}"
    );
    assert!(!refused.to_string().contains(ACCESS_KEY), "{refused}");

    let missing = client
        .wms(&shop("s2"), &keys, &config, Arc::new(Unlimited))
        .await
        .expect_err("no credentials");
    assert!(
        matches!(missing, SettingsClientError::NoCredentials { ref shop, .. } if shop == "s2"),
        "{missing}"
    );

    fake.state().down = true;
    let down = client
        .wms(&shop("s1"), &keys, &config, Arc::new(Unlimited))
        .await
        .expect_err("down");
    assert!(down.is_unavailable(), "{down}");
}

#[tokio::test]
async fn a_wrong_token_is_an_unavailable_service_not_an_unknown_shop() {
    let fake = fake_with("s1", 1);
    let url = serve(fake.clone()).await;
    let client = SettingsClient::new(&SettingsClientConfig {
        url,
        token: SecretString::from("wrong"),
        ..SettingsClientConfig::default()
    })
    .expect("client");
    let err = client.get("s1").await.expect_err("refused");
    assert!(err.is_unavailable(), "{err}");
    assert!(err.to_string().contains("Unauthenticated"), "{err}");
}

#[tokio::test]
async fn an_unusable_url_is_a_config_error() {
    let err = SettingsClient::new(&SettingsClientConfig {
        url: "not a url".into(),
        ..SettingsClientConfig::default()
    })
    .expect_err("refused");
    assert!(matches!(err, SettingsClientError::Config(_)), "{err}");
}

#[tokio::test]
async fn enabled_shops_are_listed_across_every_page() {
    let fake = Fake::default();
    for (shop, enabled) in [
        ("s1", true),
        ("s2", false),
        ("s3", true),
        ("s4", true),
        ("s5", true),
        ("s6", false),
        ("s7", true),
    ] {
        fake.state().shops.insert(shop.into(), (1, enabled));
    }
    let client = client_with(&fake, 60_000).await;
    let shops = client.list_enabled_shops().await.expect("listed");
    assert_eq!(shops, ["s1", "s3", "s4", "s5", "s7"]);
    assert_eq!(fake.calls("ListShops"), 3, "pages of two");

    fake.state().down = true;
    let err = client.list_enabled_shops().await.expect_err("down");
    assert!(err.is_unavailable(), "{err}");
}

/// The settings service over TLS (`grpc.tls` of the platform's server): the client reaches it
/// with `settings.tls.ca_file` and an `https://` URL; trusting another authority it cannot.
#[tokio::test]
async fn the_settings_service_is_reached_over_tls_with_its_authority_only() {
    use wmslink_platform::grpc::{self, ClientTls, GrpcConfig, ServerTls};

    wmslink_platform::install_crypto_provider();
    let dir = std::env::temp_dir().join(wmslink_testkit::unique("wmslink-settings-tls-"));
    let files = wmslink_testkit::TestCerts::generate()
        .expect("certs")
        .write_to(&dir)
        .expect("written");
    let other = wmslink_testkit::TestCerts::generate()
        .expect("certs")
        .write_to(&dir.join("other"))
        .expect("written");
    let config = GrpcConfig {
        tls: ServerTls {
            cert_file: files.server_cert.clone(),
            key_file: files.server_key.clone(),
            client_ca_file: String::new(),
        },
        ..GrpcConfig::listening_on("127.0.0.1:0")
    };
    let (listener, addr) = grpc::bind(&config).await.expect("bind");
    let routes = tonic::service::Routes::new(SettingsServiceServer::new(fake_with("s1", 1)));
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move { grpc::serve(listener, routes, &config, stop).await }
    });
    let client = |ca_file: &str| {
        SettingsClient::new(&SettingsClientConfig {
            url: format!("https://localhost:{}", addr.port()),
            token: SecretString::from(TOKEN),
            tls: ClientTls {
                ca_file: ca_file.to_owned(),
                ..ClientTls::default()
            },
            ..SettingsClientConfig::default()
        })
        .expect("client")
    };

    let snapshot = client(&files.ca)
        .get("s1")
        .await
        .expect("answered over TLS");
    assert!(snapshot.is_some(), "the shop is known");
    let untrusted = client(&other.ca).get("s1").await.expect_err("refused");
    assert!(untrusted.is_unavailable(), "{untrusted}");

    let plaintext_with_ca = SettingsClient::new(&SettingsClientConfig {
        url: format!("http://localhost:{}", addr.port()),
        tls: ClientTls {
            ca_file: files.ca.clone(),
            ..ClientTls::default()
        },
        ..SettingsClientConfig::default()
    })
    .expect_err("a CA with an http:// URL");
    assert!(
        matches!(plaintext_with_ca, SettingsClientError::Config(_)),
        "{plaintext_with_ca}"
    );
    stop.cancel();
    let _ = std::fs::remove_dir_all(&dir);
}
