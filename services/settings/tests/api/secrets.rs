use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use prost::Message;
use secrecy::ExposeSecret;
use tonic::Code;
use wmslink_platform::secrets::Sealed;
use wmslink_proto::settings::v1 as pb;

use crate::helpers::*;

/// Every way the key could show up in bytes or text.
fn spellings(key: &str) -> Vec<String> {
    let hex: String = key.bytes().map(|b| format!("{b:02x}")).collect();
    vec![
        key.to_owned(),
        STANDARD.encode(key),
        STANDARD_NO_PAD.encode(key),
        URL_SAFE.encode(key),
        URL_SAFE_NO_PAD.encode(key),
        hex,
    ]
}

fn assert_absent(haystack: &str, key: &str, what: &str) {
    for spelling in spellings(key) {
        assert!(
            !haystack.contains(&spelling),
            "{what} contains the key as {spelling:?}"
        );
    }
}

fn assert_not_in_message(message: &(impl Message + std::fmt::Debug), key: &str, what: &str) {
    let bytes = message.encode_to_vec();
    assert!(
        !bytes.windows(key.len()).any(|w| w == key.as_bytes()),
        "{what} carries the key"
    );
    assert_absent(&format!("{message:?}"), key, what);
}

#[tokio::test]
async fn the_key_is_masked_in_every_answer() {
    let app = spawn_app().await;
    let sim = start_simulator().await;
    let shop = unique_shop();
    let key = sim_key(&sim);
    let masked = format!("********{}", &key[key.len() - 4..]);
    app.put_catalog(&shop).await;

    let registered = app
        .register(&shop, 0, full_detail(&sim.base_url()), Some(&key))
        .await
        .expect("registered");
    assert_eq!(registered.access_key_masked, masked);
    assert_not_in_message(&registered, &key, "RegisterSettings answer");

    let checked = app.check(&shop).await;
    assert_not_in_message(&checked, &key, "CheckConnection answer");
    let enabled = app
        .set_enabled(&shop, true, checked.version)
        .await
        .expect("enabled");
    assert_eq!(enabled.access_key_masked, masked);
    assert_not_in_message(&enabled, &key, "SetEnabled answer");
    let fetched = app.get(&shop).await.expect("get");
    assert_eq!(fetched.access_key_masked, masked);
    assert_not_in_message(&fetched, &key, "GetSettings answer");

    // A short key is masked whole.
    let short_shop = unique_shop();
    app.put_catalog(&short_shop).await;
    let short = app
        .register(
            &short_shop,
            0,
            full_detail(&sim.base_url()),
            Some("k-123456"),
        )
        .await
        .expect("registered");
    assert_eq!(short.access_key_masked, "********");
}

/// Every row of every table, as JSON text (bytea as hex).
async fn dump_database(app: &TestApp) -> String {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    )
    .fetch_all(&app.db.pool)
    .await
    .expect("tables");
    assert!(tables.contains(&"shop_settings".to_owned()), "{tables:?}");
    let mut dump = String::new();
    for table in tables {
        let sql = format!(
            "SELECT coalesce(string_agg(row_to_json(t)::text, E'\\n'), '') FROM \"{table}\" t"
        );
        let rows: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&app.db.pool)
            .await
            .expect("dump");
        dump.push_str(&rows);
        dump.push('\n');
    }
    dump
}

#[tokio::test]
async fn the_key_is_encrypted_at_rest() {
    let app = spawn_app().await;
    let sim = start_simulator().await;
    let shop = unique_shop();
    let (key, version) = app.registered_and_checked(&sim, &shop).await;
    app.set_enabled(&shop, true, version)
        .await
        .expect("enabled");
    app.events_until(&shop, version + 1).await;

    let dump = dump_database(&app).await;
    assert!(dump.contains(&shop), "the dump holds the shop's rows");
    assert_absent(&dump, &key, "the database");

    // What is stored is the key sealed for this shop: it opens with the master key and the
    // shop id, and with nothing else.
    let (key_id, blob): (String, Vec<u8>) = sqlx::query_as(
        "SELECT access_key_id, access_key_sealed FROM shop_settings WHERE shop_id = $1",
    )
    .bind(&shop)
    .fetch_one(&app.db.pool)
    .await
    .expect("row");
    assert_eq!(key_id, "test-k1");
    let sealed = Sealed { key_id, blob };
    assert_eq!(
        app.keys
            .open(&sealed, shop.as_bytes())
            .expect("opens")
            .expose_secret(),
        key
    );
    assert!(app.keys.open(&sealed, b"another-shop").is_err());
}

#[tokio::test]
async fn services_that_call_the_wms_get_the_sealed_key() {
    let app = spawn_app().await;
    let sim = start_simulator().await;
    let shop = unique_shop();
    let (key, version) = app.registered_and_checked(&sim, &shop).await;

    let credentials = app
        .dispatcher
        .clone()
        .get_wms_credentials(pb::GetWmsCredentialsRequest {
            shop_id: shop.clone(),
        })
        .await
        .expect("credentials")
        .into_inner();
    assert_eq!(credentials.endpoint_url, sim.base_url());
    assert_eq!(credentials.version, version);
    assert!(!credentials.enabled);
    assert_not_in_message(&credentials, &key, "GetWmsCredentials answer");
    let sealed = Sealed {
        key_id: credentials.key_id,
        blob: credentials.sealed_access_key,
    };
    assert_eq!(
        app.keys
            .open(&sealed, shop.as_bytes())
            .expect("opens")
            .expose_secret(),
        key
    );

    // Only with the credentials scope.
    let status = assert_code(
        app.admin
            .clone()
            .get_wms_credentials(pb::GetWmsCredentialsRequest {
                shop_id: shop.clone(),
            })
            .await,
        Code::PermissionDenied,
    );
    assert!(status.message().contains("settings.credentials"));
    assert_code(
        app.dispatcher
            .clone()
            .get_wms_credentials(pb::GetWmsCredentialsRequest {
                shop_id: unique_shop(),
            })
            .await,
        Code::NotFound,
    );
}

#[tokio::test]
async fn a_new_key_is_sealed_afresh_and_the_same_key_is_kept() {
    let app = spawn_app().await;
    let shop = unique_shop();
    app.put_catalog(&shop).await;
    let url = "https://api.crobo.jp/v1";
    let blob = || async {
        let blob: Vec<u8> =
            sqlx::query_scalar("SELECT access_key_sealed FROM shop_settings WHERE shop_id = $1")
                .bind(&shop)
                .fetch_one(&app.db.pool)
                .await
                .expect("row");
        blob
    };
    let v = app
        .register(&shop, 0, full_detail(url), Some("ak-first-0001"))
        .await
        .expect("ok")
        .version;
    let first = blob().await;
    let v = app
        .register(&shop, v, full_detail(url), Some("ak-first-0001"))
        .await
        .expect("ok")
        .version;
    assert_eq!(blob().await, first, "the same key keeps its seal");
    let second = app
        .register(&shop, v, full_detail(url), Some("ak-second-002"))
        .await
        .expect("ok");
    assert_ne!(blob().await, first);
    assert_eq!(
        second.access_key_masked, "********002",
        "a short key shows at most a quarter"
    );
}

/// After a rotation, `reseal` moves every stored key to the new active master key: it opens
/// with the new ring as the same key, the old master key is no longer needed, and the
/// connection check stays valid.
#[tokio::test]
async fn resealing_moves_every_key_to_the_active_master_key() {
    let app = spawn_app().await;
    let sim = start_simulator().await;
    let shop = unique_shop();
    let (key, version) = app.registered_and_checked(&sim, &shop).await;
    let (rotated, _) = app.keys.with_generated("test-k2");

    let resealed = wmslink_settings::reseal::reseal_all(&app.db.pool, &rotated)
        .await
        .expect("resealed");
    assert!(resealed >= 1);
    let (key_id, blob): (String, Vec<u8>) = sqlx::query_as(
        "SELECT access_key_id, access_key_sealed FROM shop_settings WHERE shop_id = $1",
    )
    .bind(&shop)
    .fetch_one(&app.db.pool)
    .await
    .expect("row");
    assert_eq!(key_id, "test-k2");
    let (only_new, _) = wmslink_platform::secrets::KeyRing::generate("unused")
        .0
        .with_generated("test-k2");
    assert!(
        only_new
            .open(
                &Sealed {
                    key_id: key_id.clone(),
                    blob: blob.clone()
                },
                shop.as_bytes()
            )
            .is_err(),
        "another key with the same id does not open it"
    );
    let opened = rotated
        .open(&Sealed { key_id, blob }, shop.as_bytes())
        .expect("opens with the new key");
    assert_eq!(opened.expose_secret(), key);
    assert_eq!(
        wmslink_settings::reseal::reseal_all(&app.db.pool, &rotated)
            .await
            .expect("again"),
        0,
        "nothing left to re-seal"
    );
    // Re-sealing is no settings change: the version and the check are as they were.
    let settings = app.get(&shop).await.expect("get");
    assert_eq!(settings.version, version);
    assert!(settings.last_connection_check.expect("check").current);
}
