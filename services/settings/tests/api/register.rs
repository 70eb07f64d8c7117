use tonic::Code;
use wmslink_proto::settings::v1 as pb;

use crate::helpers::*;

#[tokio::test]
async fn register_then_get_round_trips_every_field() {
    let app = spawn_app().await;
    let shop = unique_shop();
    let catalog_version = app.put_catalog(&shop).await;
    assert_eq!(catalog_version, 1);
    let detail = full_detail("https://api12.crobo.jp/v1/");

    let registered = app
        .register(
            &shop,
            catalog_version,
            detail.clone(),
            Some("ak-live-ABCDEFGH-wxyz"),
        )
        .await
        .expect("registered");
    let fetched = app.get(&shop).await.expect("get");
    assert_eq!(registered, fetched);

    let mut expected = detail;
    expected.endpoint_url = "https://api12.crobo.jp/v1".into(); // trailing slash stripped
    assert_eq!(fetched.detail, Some(expected));
    assert_eq!(fetched.shop_id, shop);
    assert_eq!(fetched.version, 2);
    assert!(fetched.access_key_set);
    assert_eq!(fetched.access_key_masked, "********wxyz");
    assert!(!fetched.enabled);
    assert_eq!(fetched.last_connection_check, None);
    assert!(fetched.updated_at.is_some());
}

#[tokio::test]
async fn first_registration_accepts_version_zero_and_defaults_the_sync_period() {
    let app = spawn_app().await;
    let shop = unique_shop();
    app.put_catalog(&shop).await;
    let mut detail = full_detail("https://api.crobo.jp/v1");
    detail.sync_period_days = 0;
    let registered = app
        .register(&shop, 0, detail, Some("ak-1234567890"))
        .await
        .expect("registered with version 0");
    assert_eq!(registered.detail.expect("detail").sync_period_days, 30);
    assert_eq!(registered.version, 2);
}

#[tokio::test]
async fn a_stale_version_is_aborted_and_nothing_is_saved() {
    let app = spawn_app().await;
    let shop = unique_shop();
    app.put_catalog(&shop).await;
    let first = app
        .register(
            &shop,
            0,
            full_detail("https://api.crobo.jp/v1"),
            Some("ak-1234567890"),
        )
        .await
        .expect("registered");

    // Version 0 no longer works once settings exist, nor does an old or future version.
    let mut changed = full_detail("https://api.crobo.jp/v1");
    changed.shipper_id = 99;
    for stale in [0, first.version - 1, first.version + 1] {
        let status = assert_code(
            app.register(&shop, stale, changed.clone(), None).await,
            Code::Aborted,
        );
        assert!(
            status
                .message()
                .contains(&format!("version {}", first.version)),
            "{status:?}"
        );
    }
    assert_eq!(app.get(&shop).await.expect("get"), first);

    // The current version works.
    let second = app
        .register(&shop, first.version, changed, None)
        .await
        .expect("registered");
    assert_eq!(second.version, first.version + 1);
    assert_eq!(second.detail.expect("detail").shipper_id, 99);
}

#[tokio::test]
async fn an_unknown_shop_has_no_settings() {
    let app = spawn_app().await;
    let status = assert_code(app.get(&unique_shop()).await, Code::NotFound);
    assert!(status.message().contains("no settings"));
}

#[tokio::test]
async fn updating_without_a_key_keeps_the_stored_key_and_the_check() {
    let app = spawn_app().await;
    let sim = start_simulator().await;
    let shop = unique_shop();
    let (key, version) = app.registered_and_checked(&sim, &shop).await;

    let mut detail = full_detail(&sim.base_url());
    detail.robot_id = 77;
    let updated = app
        .register(&shop, version, detail.clone(), None)
        .await
        .expect("registered");
    assert_eq!(
        updated.access_key_masked,
        format!("********{}", &key[key.len() - 4..])
    );
    let check = updated.last_connection_check.expect("check kept");
    assert!(check.current, "same key and URL: the check still applies");

    // Sending the very same key again does not void the check either.
    let again = app
        .register(&shop, updated.version, detail, Some(&key))
        .await
        .expect("registered");
    assert!(again.last_connection_check.expect("check").current);
}

#[tokio::test]
async fn data_targets_and_lists_can_be_emptied() {
    let app = spawn_app().await;
    let shop = unique_shop();
    app.put_catalog(&shop).await;
    let first = app
        .register(
            &shop,
            0,
            full_detail("https://api.crobo.jp/v1"),
            Some("ak-1234567890"),
        )
        .await
        .expect("registered");
    let minimal = pb::DetailSettings {
        wms_kind: pb::WmsKind::CommerceRobo as i32,
        endpoint_url: "https://api.crobo.jp/v1".into(),
        ..Default::default()
    };
    let saved = app
        .register(&shop, first.version, minimal, None)
        .await
        .expect("registered");
    let detail = saved.detail.expect("detail");
    assert_eq!(detail.data_targets, Some(pb::DataTargets::default()));
    assert!(detail.target_status_codes.is_empty());
    assert!(detail.payment_mappings.is_empty());
    assert!(detail.header_free_fields.is_empty());
    assert_eq!(detail.shipper_id, 0);
}

#[tokio::test]
async fn of_concurrent_registrations_with_one_version_exactly_one_wins() {
    let app = spawn_app().await;
    let shop = unique_shop();
    let version = app.put_catalog(&shop).await;
    let attempts = (0..8).map(|n| {
        let app = &app;
        let shop = shop.clone();
        async move {
            let mut detail = full_detail("https://api.crobo.jp/v1");
            detail.shipper_id = 100 + n;
            app.register(&shop, version, detail, Some("ak-1234567890"))
                .await
        }
    });
    let results = futures::future::join_all(attempts).await;
    let winners: Vec<&pb::ShopSettings> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for result in &results {
        if let Err(status) = result {
            assert_eq!(status.code(), Code::Aborted, "{status:?}");
        }
    }
    assert_eq!(app.get(&shop).await.expect("get"), *winners[0]);
    assert_eq!(winners[0].version, version + 1);
}

/// Moving the endpoint needs the dispatcher's word that nothing is in flight at the current
/// one: unreachable, the change is refused (`UNAVAILABLE`), other registrations go on.
#[tokio::test]
async fn an_endpoint_change_is_refused_while_the_dispatcher_cannot_be_asked() {
    let port = closed_port().await;
    let app = spawn_app_with(|config| {
        config.dispatcher.url = format!("http://127.0.0.1:{port}");
        config.dispatcher.token = "test-settings-token-0123456789".to_owned().into();
        config.dispatcher.timeout_ms = 500;
    })
    .await;
    let sim = start_simulator().await;
    let shop = unique_shop();
    let (key, version) = app.registered_and_checked(&sim, &shop).await;

    let same = app
        .register(&shop, version, full_detail(&sim.base_url()), None)
        .await
        .expect("the same endpoint: the dispatcher is not asked");
    let status = assert_code(
        app.register(
            &shop,
            same.version,
            full_detail(&format!("{}/moved", sim.base_url())),
            Some(&key),
        )
        .await,
        Code::Unavailable,
    );
    assert!(
        status
            .message()
            .contains("the shipment dispatcher did not say what is in flight"),
        "{status:?}"
    );
    let now = app.get(&shop).await.expect("get");
    assert_eq!(
        now.detail.expect("detail").endpoint_url,
        sim.base_url(),
        "nothing saved"
    );
}
