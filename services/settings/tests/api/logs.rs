use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use wmslink_proto::settings::v1 as pb;
use wmslink_testkit::LogCapture;

use crate::helpers::*;

/// Everything logged (TRACE and up, every crate, span fields included) while registering and
/// checking keys holds none of them.
#[tokio::test(flavor = "current_thread")]
async fn no_access_key_in_the_logs() {
    let (logs, _guard) = LogCapture::install();
    let app = spawn_app().await;
    let sim = start_simulator().await;
    let shop = unique_shop();
    let good_key = sim_key(&sim);
    let wrong_key = "ak-WRONG-0f1e2d3c4b5a";
    let tried_key = "ak-TRIED-99887766554433";
    let invalid_key = "ak INVALID with-spaces-7766";

    app.put_catalog(&shop).await;
    let registered = app
        .register(&shop, 0, full_detail(&sim.base_url()), Some(wrong_key))
        .await
        .expect("registered");
    let failed = app.check(&shop).await;
    assert_eq!(
        failed.check.expect("check").outcome(),
        pb::ConnectionCheckOutcome::Unauthorized
    );
    app.try_check(&shop, tried_key, &sim.base_url()).await;
    assert!(
        app.register(
            &shop,
            failed.version,
            full_detail(&sim.base_url()),
            Some(invalid_key)
        )
        .await
        .is_err()
    );
    let fixed = app
        .register(
            &shop,
            failed.version,
            full_detail(&sim.base_url()),
            Some(&good_key),
        )
        .await
        .expect("registered");
    assert!(fixed.version > registered.version);
    let passed = app.check(&shop).await;
    assert_eq!(
        passed.check.expect("check").outcome(),
        pb::ConnectionCheckOutcome::Ok
    );
    app.get(&shop).await.expect("get");
    app.dispatcher
        .clone()
        .get_wms_credentials(pb::GetWmsCredentialsRequest {
            shop_id: shop.clone(),
        })
        .await
        .expect("credentials");
    app.events_until(&shop, passed.version).await;
    app.stop().await;

    let captured = logs.contents();
    assert!(
        captured.contains("settings registered"),
        "the capture works"
    );
    assert!(captured.contains("connection checked"), "the capture works");
    assert!(captured.contains("wms_call"), "the WMS calls are traced");
    for key in [good_key.as_str(), wrong_key, tried_key, invalid_key] {
        assert!(!captured.contains(key), "an access key is in the logs");
        assert!(
            !captured.contains(&STANDARD.encode(key)),
            "an access key is in the logs (base64)"
        );
    }
}

/// Every settings write is audit-logged with the caller, the RPC and the shop, refused ones too;
/// the key never.
#[tokio::test(flavor = "current_thread")]
async fn settings_writes_are_audit_logged_with_the_caller() {
    let (logs, _guard) = LogCapture::install();
    let app = spawn_app().await;
    let sim = start_simulator().await;
    let shop = unique_shop();
    let key = sim_key(&sim);
    app.put_catalog(&shop).await;
    let registered = app
        .writer
        .clone()
        .register_settings(pb::RegisterSettingsRequest {
            shop_id: shop.clone(),
            expected_version: 0,
            detail: Some(full_detail(&sim.base_url())),
            access_key: Some(key.clone()),
        })
        .await
        .expect("registered")
        .into_inner();
    let checked = app.check(&shop).await;
    // A refused write is audited too.
    let _ = app.set_enabled(&shop, true, 0).await;
    app.set_enabled(&shop, true, checked.version)
        .await
        .expect("enabled");
    app.stop().await;

    let captured = logs.contents();
    let audit: Vec<&str> = captured
        .lines()
        .filter(|line| line.contains("wmslink::audit") && line.contains(&shop))
        .collect();
    let has = |action: &str, caller: &str, outcome: &str| {
        audit
            .iter()
            .any(|l| l.contains(action) && l.contains(caller) && l.contains(outcome))
    };
    assert!(has("PutOrderStatusCatalog", "admin", "done"), "{audit:#?}");
    assert!(has("RegisterSettings", "writer", "done"), "{audit:#?}");
    assert!(has("CheckConnection", "admin", "done"), "{audit:#?}");
    assert!(has("SetEnabled", "admin", "stale_version"), "{audit:#?}");
    assert!(has("SetEnabled", "admin", "done"), "{audit:#?}");
    assert!(registered.settings.is_some());
    for line in &audit {
        assert!(!line.contains(&key), "the key is in the audit trail");
    }
}
