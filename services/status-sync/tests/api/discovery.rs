//! Shops status-sync learns of from the settings service (`ListShops`) rather than from a
//! shipment or a `settings.{shop}.changed` event.

use std::sync::Arc;

use secrecy::SecretString;
use wmslink_platform::secrets::KeyRing;
use wmslink_proto::sync::v1 as pb;
use wmslink_proto::sync::v1::AnomalyKind;
use wmslink_test_harness::settings::SETTINGS_ADMIN_TOKEN;
use wmslink_test_harness::{shop, wms};
use wmslink_testkit::{TestDb, TestNats, eventually};
use wmslink_wms_client::{RateLimiter, Unlimited, WmsClient};
use wmslink_wms_simulator::KeyOptions;

use crate::helpers::*;

#[tokio::test]
async fn a_shop_enabled_while_status_sync_was_down_is_synced_by_the_scheduler() {
    wmslink_platform::install_crypto_provider();
    let nats = TestNats::create().await.expect("test NATS");
    let sim = wms::start_simulator().await;
    let (_, master_keys) = KeyRing::generate("test-k1");
    let rate_limit_db = TestDb::create().await.expect("rate-limit database");
    let settings = start_settings(&nats, &master_keys).await;

    // The shop is enabled before status-sync runs, and has no shipments: status-sync sees
    // neither a settings event nor a shipment of it.
    let shop = shop::unique_shop_id();
    let key = wms::new_account(&sim, KeyOptions::default());
    enable_shop(
        &settings.client(SETTINGS_ADMIN_TOKEN),
        &shop,
        &sim.base_url(),
        &key,
    )
    .await;
    eventually(WAIT, "the settings events published", || async {
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                .fetch_one(&settings.db.pool)
                .await
                .ok()?;
        (pending == 0).then_some(())
    })
    .await;
    // An order in the shop's WMS account that wmslink never sent (entered by hand, a CSV…).
    let limiter: Arc<dyn RateLimiter> = Arc::new(Unlimited);
    let wms = WmsClient::new(
        &sim.base_url(),
        SecretString::from(key.clone()),
        &wms_test_config(),
        limiter,
    )
    .expect("WMS client");
    let ids = register_in_wms(&wms, &[("HAND-1".into(), days_ago(1))]).await;

    let db = TestDb::create().await.expect("status-sync database");
    let mut config = sync_config(
        &db,
        &nats,
        settings.addr(),
        &master_keys,
        &rate_limit_db.url,
    );
    config.sync.scheduled = true;
    config.sync.interval_ms = 1_000;
    config.sync.anomaly_grace_ms = 1_000;
    let sync = start_sync(config, db).await;
    let reader = sync_client(sync.addr, READER_TOKEN);

    let anomalies = eventually(WAIT, "HAND-1 reported by a scheduled pass", || async {
        let anomalies = reader
            .clone()
            .list_anomalies(pb::ListAnomaliesRequest {
                shop_id: shop.clone(),
                limit: 0,
                kind: AnomalyKind::NotSentByWmslink as i32,
            })
            .await
            .ok()?
            .into_inner()
            .anomalies;
        (!anomalies.is_empty()).then_some(anomalies)
    })
    .await;
    assert_eq!(anomalies.len(), 1, "{anomalies:?}");
    assert_eq!(
        (anomalies[0].order_no.as_str(), anomalies[0].wms_order_id),
        ("HAND-1", ids["HAND-1"])
    );
    let runs = reader
        .clone()
        .get_sync_runs(pb::GetSyncRunsRequest {
            shop_id: shop.clone(),
            limit: 0,
        })
        .await
        .expect("GetSyncRuns")
        .into_inner()
        .runs;
    assert!(
        !runs.is_empty() && runs.iter().all(|run| run.trigger == "scheduled"),
        "{runs:?}"
    );
}
