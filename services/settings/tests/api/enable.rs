use tonic::Code;
use wmslink_proto::settings::v1 as pb;

use crate::helpers::*;

fn subjects(status: &tonic::Status) -> Vec<String> {
    precondition_subjects(status)
        .into_iter()
        .map(|(s, _)| s)
        .collect()
}

#[tokio::test]
async fn enabling_needs_a_passing_check_first() {
    let app = spawn_app().await;
    let sim = start_simulator().await;
    let shop = unique_shop();
    let key = sim_key(&sim);
    app.put_catalog(&shop).await;
    let registered = app
        .register(&shop, 0, full_detail(&sim.base_url()), Some(&key))
        .await
        .expect("registered");

    let status = assert_code(
        app.set_enabled(&shop, true, registered.version).await,
        Code::FailedPrecondition,
    );
    assert_eq!(subjects(&status), ["last_connection_check"]);
    assert!(status.message().contains("CheckConnection"), "{status:?}");
    assert!(!app.get(&shop).await.expect("get").enabled);

    // A failing check does not do either.
    sim.state().remove_key(&key);
    let failed = app.check(&shop).await;
    assert_eq!(
        failed.check.expect("check").outcome(),
        pb::ConnectionCheckOutcome::Unauthorized
    );
    let status = assert_code(
        app.set_enabled(&shop, true, failed.version).await,
        Code::FailedPrecondition,
    );
    assert!(status.message().contains("unauthorized"), "{status:?}");

    // Once the check passes, it does.
    sim.state()
        .add_key(&key, Default::default())
        .expect("key back");
    let passed = app.check(&shop).await;
    let enabled = app
        .set_enabled(&shop, true, passed.version)
        .await
        .expect("enabled");
    assert!(enabled.enabled);
    assert_eq!(enabled.version, passed.version + 1);
    assert!(app.get(&shop).await.expect("get").enabled);

    // Asking again changes nothing.
    let again = app
        .set_enabled(&shop, true, enabled.version)
        .await
        .expect("no-op");
    assert_eq!(again, enabled);
}

/// S2 in the help page's order: key and URL, connection check, detail fields, 登録, switch.
/// The check of exactly the key and URL then registered counts: no second check.
#[tokio::test]
async fn a_passed_check_of_the_registered_key_and_url_counts() {
    let app = spawn_app().await;
    let sim = start_simulator().await;
    let shop = unique_shop();
    let key = sim_key(&sim);
    app.put_catalog(&shop).await;

    let tried = app.try_check(&shop, &key, &sim.base_url()).await;
    assert_eq!(tried.outcome(), pb::ConnectionCheckOutcome::Ok);
    let registered = app
        .register(&shop, 0, full_detail(&sim.base_url()), Some(&key))
        .await
        .expect("registered");
    let check = registered.last_connection_check.expect("the check counts");
    assert_eq!(check.outcome(), pb::ConnectionCheckOutcome::Ok);
    let enabled = app
        .set_enabled(&shop, true, registered.version)
        .await
        .expect("enabled without a second check");
    assert!(enabled.enabled);

    // Another key than the one checked does not count.
    let other_shop = unique_shop();
    let other_key = sim_key(&sim);
    app.put_catalog(&other_shop).await;
    app.try_check(&other_shop, &key, &sim.base_url()).await;
    let other = app
        .register(
            &other_shop,
            0,
            full_detail(&sim.base_url()),
            Some(&other_key),
        )
        .await
        .expect("registered");
    assert!(other.last_connection_check.is_none(), "{other:?}");
    assert_code(
        app.set_enabled(&other_shop, true, other.version).await,
        Code::FailedPrecondition,
    );
}

/// S4: a leaked key is rotated without turning the integration off: the new key must pass a
/// check before it replaces the old.
#[tokio::test]
async fn a_checked_new_key_replaces_the_old_while_enabled() {
    let app = spawn_app().await;
    let sim = start_simulator().await;
    let shop = unique_shop();
    let (_old_key, version) = app.registered_and_checked(&sim, &shop).await;
    let enabled = app
        .set_enabled(&shop, true, version)
        .await
        .expect("enabled");

    // Not checked first: refused, as before.
    let new_key = sim_key(&sim);
    assert_code(
        app.register(
            &shop,
            enabled.version,
            full_detail(&sim.base_url()),
            Some(&new_key),
        )
        .await,
        Code::FailedPrecondition,
    );

    // Checked, then registered: replaced, still enabled, the check current.
    let tried = app.try_check(&shop, &new_key, &sim.base_url()).await;
    assert_eq!(tried.outcome(), pb::ConnectionCheckOutcome::Ok);
    let rotated = app
        .register(
            &shop,
            enabled.version,
            full_detail(&sim.base_url()),
            Some(&new_key),
        )
        .await
        .expect("rotated while enabled");
    assert!(rotated.enabled);
    assert_eq!(
        rotated
            .last_connection_check
            .expect("current check")
            .outcome(),
        pb::ConnectionCheckOutcome::Ok
    );
    let now = app.get(&shop).await.expect("get");
    assert!(now.enabled);
    assert_ne!(now.access_key_masked, enabled.access_key_masked);
}

#[tokio::test]
async fn enabling_is_refused_after_the_key_changes() {
    let app = spawn_app().await;
    let sim = start_simulator().await;
    let shop = unique_shop();
    let (_key, version) = app.registered_and_checked(&sim, &shop).await;
    let changed = app
        .register(
            &shop,
            version,
            full_detail(&sim.base_url()),
            Some(&sim_key(&sim)),
        )
        .await
        .expect("registered");
    let status = assert_code(
        app.set_enabled(&shop, true, changed.version).await,
        Code::FailedPrecondition,
    );
    assert_eq!(subjects(&status), ["last_connection_check"]);
    assert!(
        status
            .message()
            .contains("changed after the last connection check"),
        "{status:?}"
    );
}

#[tokio::test]
async fn enabling_is_refused_while_the_detail_settings_are_incomplete() {
    let app = spawn_app().await;
    let sim = start_simulator().await;
    let shop = unique_shop();
    let key = sim_key(&sim);
    app.put_catalog(&shop).await;
    let mut detail = full_detail(&sim.base_url());
    detail.target_status_codes.clear();
    detail.shipper_id = 0;
    detail.delivery_method_id = 0;
    detail.robot_id = 0;
    detail.payment_mappings.clear();
    app.register(&shop, 0, detail, Some(&key))
        .await
        .expect("registered");
    let checked = app.check(&shop).await;
    assert_eq!(
        checked.check.expect("check").outcome(),
        pb::ConnectionCheckOutcome::Ok
    );

    let status = assert_code(
        app.set_enabled(&shop, true, checked.version).await,
        Code::FailedPrecondition,
    );
    assert_eq!(
        subjects(&status),
        [
            "detail.target_status_codes",
            "detail.shipper_id",
            "detail.delivery_method_id",
            "detail.robot_id",
            "detail.payment_mappings",
        ]
    );
    assert!(status.message().contains("shipper"), "{status:?}");

    // Without any data target there is nothing to enable either.
    let none = pb::DetailSettings {
        wms_kind: pb::WmsKind::CommerceRobo as i32,
        endpoint_url: sim.base_url(),
        ..Default::default()
    };
    let saved = app
        .register(&shop, checked.version, none, None)
        .await
        .expect("registered");
    let status = assert_code(
        app.set_enabled(&shop, true, saved.version).await,
        Code::FailedPrecondition,
    );
    assert_eq!(subjects(&status), ["detail.data_targets"]);
}

#[tokio::test]
async fn cancellations_need_a_cancelled_status_in_the_catalog() {
    let app = spawn_app().await;
    let sim = start_simulator().await;
    let shop = unique_shop();
    let key = sim_key(&sim);
    let open_only: Vec<pb::OrderStatus> = catalog()
        .into_iter()
        .filter(|s| s.kind() != pb::OrderStatusKind::Cancelled)
        .collect();
    app.admin
        .clone()
        .put_order_status_catalog(pb::PutOrderStatusCatalogRequest {
            shop_id: shop.clone(),
            statuses: open_only,
            expected_version: None,
        })
        .await
        .expect("catalog");
    app.register(&shop, 0, full_detail(&sim.base_url()), Some(&key))
        .await
        .expect("registered");
    let checked = app.check(&shop).await;
    let status = assert_code(
        app.set_enabled(&shop, true, checked.version).await,
        Code::FailedPrecondition,
    );
    assert_eq!(subjects(&status), ["order_status_catalog"]);
}

#[tokio::test]
async fn disabling_always_works() {
    let app = spawn_app().await;
    let sim = start_simulator().await;
    let shop = unique_shop();
    let (key, version) = app.registered_and_checked(&sim, &shop).await;
    let enabled = app
        .set_enabled(&shop, true, version)
        .await
        .expect("enabled");

    // The WMS starts refusing the key: the check fails, the shop can still be switched off.
    sim.state().remove_key(&key);
    let failed = app.check(&shop).await;
    assert_eq!(failed.version, enabled.version + 1);
    let disabled = app
        .set_enabled(&shop, false, failed.version)
        .await
        .expect("disabled");
    assert!(!disabled.enabled);
    assert_eq!(disabled.version, failed.version + 1);

    // Disabling a disabled shop is fine too, and changes nothing.
    let again = app
        .set_enabled(&shop, false, disabled.version)
        .await
        .expect("no-op");
    assert_eq!(again, disabled);
}

/// S4: the emergency stop works whatever version the operator last saw.
#[tokio::test]
async fn disabling_works_with_a_stale_version() {
    let app = spawn_app().await;
    let sim = start_simulator().await;
    let shop = unique_shop();
    let (_key, version) = app.registered_and_checked(&sim, &shop).await;
    let enabled = app
        .set_enabled(&shop, true, version)
        .await
        .expect("enabled");
    // Someone else changed the settings meanwhile (a recorded check bumps the version).
    let checked = app.check(&shop).await;
    assert!(checked.version > enabled.version);

    let stopped = app
        .set_enabled(&shop, false, version - 1)
        .await
        .expect("switched off with an old version");
    assert!(!stopped.enabled);
    assert!(!app.get(&shop).await.expect("get").enabled);
    // Switching on still needs the current version.
    assert_code(app.set_enabled(&shop, true, version).await, Code::Aborted);
}

#[tokio::test]
async fn the_switch_needs_the_current_version_and_known_settings() {
    let app = spawn_app().await;
    let sim = start_simulator().await;
    let shop = unique_shop();
    let (_key, version) = app.registered_and_checked(&sim, &shop).await;
    assert_code(
        app.set_enabled(&shop, true, version - 1).await,
        Code::Aborted,
    );
    assert!(!app.get(&shop).await.expect("get").enabled);
    assert_code(
        app.set_enabled(&unique_shop(), false, 0).await,
        Code::NotFound,
    );
}

#[tokio::test]
async fn while_enabled_the_settings_stay_complete_and_checked() {
    let app = spawn_app().await;
    let sim = start_simulator().await;
    let shop = unique_shop();
    let (key, version) = app.registered_and_checked(&sim, &shop).await;
    let enabled = app
        .set_enabled(&shop, true, version)
        .await
        .expect("enabled");

    // A new key (or URL) needs a new check: disable first.
    let status = assert_code(
        app.register(
            &shop,
            enabled.version,
            full_detail(&sim.base_url()),
            Some(&sim_key(&sim)),
        )
        .await,
        Code::FailedPrecondition,
    );
    assert!(status.message().contains("disable"), "{status:?}");
    let other_url = format!("{}/v1", sim.base_url());
    assert_code(
        app.register(&shop, enabled.version, full_detail(&other_url), Some(&key))
            .await,
        Code::FailedPrecondition,
    );

    // Incomplete settings are refused.
    let mut incomplete = full_detail(&sim.base_url());
    incomplete.robot_id = 0;
    let status = assert_code(
        app.register(&shop, enabled.version, incomplete, None).await,
        Code::FailedPrecondition,
    );
    assert_eq!(subjects(&status), ["detail.robot_id"]);
    assert_eq!(app.get(&shop).await.expect("get"), enabled, "nothing saved");

    // Complete settings with the same key and URL are fine and stay enabled.
    let mut changed = full_detail(&sim.base_url());
    changed.sync_period_days = 10;
    let saved = app
        .register(&shop, enabled.version, changed, None)
        .await
        .expect("registered");
    assert!(saved.enabled);
    assert!(saved.last_connection_check.expect("check").current);
}

/// Two shops on one WMS account: with the same key and endpoint, adopting an order by its
/// number could take the other shop's order, so the second is never enabled. Compared by a
/// keyed fingerprint that is stored, and never logged nor answered.
#[tokio::test(flavor = "current_thread")]
async fn a_second_shop_on_the_same_key_and_endpoint_cannot_be_enabled() {
    let (logs, _guard) = wmslink_testkit::LogCapture::install();
    let app = spawn_app().await;
    let sim = start_simulator().await;
    let first = unique_shop();
    let (key, version) = app.registered_and_checked(&sim, &first).await;
    app.set_enabled(&first, true, version)
        .await
        .expect("the first shop enabled");

    let second = unique_shop();
    app.put_catalog(&second).await;
    app.register(&second, 0, full_detail(&sim.base_url()), Some(&key))
        .await
        .expect("registered: only enabling is refused");
    let checked = app.check(&second).await;
    let status = assert_code(
        app.set_enabled(&second, true, checked.version).await,
        Code::FailedPrecondition,
    );
    assert_eq!(subjects(&status), ["access_key / detail.endpoint_url"]);
    assert!(
        status
            .message()
            .contains("same WMS access key and endpoint URL"),
        "{status:?}"
    );
    assert!(
        !status.message().contains(&first),
        "the other shop is not named"
    );

    // An enabled shop cannot rotate onto the first shop's account either.
    let third = unique_shop();
    let (_, third_version) = app.registered_and_checked(&sim, &third).await;
    let third_enabled = app
        .set_enabled(&third, true, third_version)
        .await
        .expect("another account: enabled");
    let tried = app.try_check(&third, &key, &sim.base_url()).await;
    assert_eq!(tried.outcome(), pb::ConnectionCheckOutcome::Ok);
    let status = assert_code(
        app.register(
            &third,
            third_enabled.version,
            full_detail(&sim.base_url()),
            Some(&key),
        )
        .await,
        Code::FailedPrecondition,
    );
    assert_eq!(subjects(&status), ["access_key / detail.endpoint_url"]);

    // Once the first shop is switched off, the second may take the account.
    app.set_enabled(&first, false, 0).await.expect("disabled");
    app.set_enabled(&second, true, checked.version)
        .await
        .expect("the account is free again");
    let status = assert_code(
        app.set_enabled(&first, true, version + 2).await,
        Code::FailedPrecondition,
    );
    assert_eq!(subjects(&status), ["access_key / detail.endpoint_url"]);

    // The fingerprints are stored (so no key is opened to compare), never logged.
    let pool = sqlx::PgPool::connect(&app.db.url).await.expect("database");
    let fingerprints: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT credentials_fingerprint FROM shop_settings
          WHERE shop_id = ANY($1) AND credentials_fingerprint IS NOT NULL",
    )
    .bind(vec![first.clone(), second.clone()])
    .fetch_all(&pool)
    .await
    .expect("fingerprints");
    assert_eq!(fingerprints.len(), 2);
    assert_eq!(fingerprints[0], fingerprints[1]);
    app.stop().await;
    let captured = logs.contents();
    assert!(
        captured.contains("integration switched"),
        "the capture works"
    );
    let fingerprint = &fingerprints[0];
    let hex: String = fingerprint.iter().map(|b| format!("{b:02x}")).collect();
    assert!(!captured.contains(&hex));
    assert!(!captured.contains(&base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        fingerprint
    )));
    assert!(!captured.contains(&key));
}
