use std::time::Duration;

use crate::helpers::*;

#[tokio::test]
async fn every_committed_change_is_published_with_its_version() {
    let app = spawn_app().await;
    let sim = start_simulator().await;
    let shop = unique_shop();
    let other_shop = unique_shop();
    app.put_catalog(&other_shop).await;

    let (key, checked_version) = app.registered_and_checked(&sim, &shop).await; // v1 catalog, v2 register, v3 check
    let enabled = app
        .set_enabled(&shop, true, checked_version)
        .await
        .expect("enabled"); // v4
    let disabled = app
        .set_enabled(&shop, false, enabled.version)
        .await
        .expect("disabled"); // v5

    // Nothing is published for what changes nothing: a refused enable (stale), a no-op
    // disable, an identical catalog, a try-check.
    assert!(app.set_enabled(&shop, true, 1).await.is_err());
    app.set_enabled(&shop, false, disabled.version)
        .await
        .expect("no-op");
    app.put_catalog(&shop).await;
    app.try_check(&shop, &key, &sim.base_url()).await;

    let registered = app
        .register(&shop, disabled.version, full_detail(&sim.base_url()), None)
        .await
        .expect("registered"); // v6
    assert_eq!(registered.version, 6);

    app.events_until(&shop, 6).await;
    let events = app.settings_events(&shop).await;
    let summary: Vec<(i64, &str, bool)> = events
        .iter()
        .map(|(e, _)| (e.version, e.change.as_str(), e.enabled))
        .collect();
    assert_eq!(
        summary,
        [
            (1, "status_catalog", false),
            (2, "registered", false),
            (3, "connection_checked", false),
            (4, "enabled", true),
            (5, "disabled", false),
            (6, "registered", false),
        ]
    );
    for (event, msg_id) in &events {
        assert_eq!(event.shop_id, shop);
        assert!(!event.event_id.is_empty());
        assert_eq!(
            msg_id.as_deref(),
            Some(event.event_id.as_str()),
            "Nats-Msg-Id = event_id"
        );
        assert!(event.changed_at.is_some());
        // The committed detail settings the consumers need (order-events' R4 lock): none
        // before the settings are registered.
        let registered = event.version >= 2;
        assert_eq!(
            (event.shipment_results, event.sync_period_days),
            if registered { (true, 45) } else { (false, 0) },
            "v{} {}",
            event.version,
            event.change
        );
    }

    // The other shop's events are its own.
    let others = app.events_until(&other_shop, 1).await;
    assert_eq!(others.len(), 1);
    assert_eq!(others[0].shop_id, other_shop);
}

/// A connection check that ran while the shop was switched off reports the switch as
/// committed with the check, not as it was when the check started.
#[tokio::test]
async fn a_check_reports_the_switch_as_committed() {
    let app = spawn_app_with(|config| config.wms.request_timeout_ms = 10_000).await;
    let sim = start_simulator().await;
    let shop = unique_shop();
    let (key, version) = app.registered_and_checked(&sim, &shop).await;
    app.set_enabled(&shop, true, version)
        .await
        .expect("enabled");
    let searches = || {
        sim.state()
            .counters(&key)
            .expect("counters")
            .requests
            .get("search")
            .copied()
            .unwrap_or(0)
    };
    let before = searches();
    sim.state()
        .set_faults(
            &key,
            wmslink_wms_simulator::Faults {
                latency_ms: 1_500,
                ..wmslink_wms_simulator::Faults::default()
            },
        )
        .expect("faults");

    // Switched off while the WMS is answering the check.
    let (checked, stopped) = tokio::join!(app.check(&shop), async {
        wmslink_testkit::eventually(Duration::from_secs(10), "the check at the WMS", || async {
            (searches() > before).then_some(())
        })
        .await;
        app.set_enabled(&shop, false, 0).await
    });
    assert!(!stopped.expect("switched off").enabled);
    assert!(checked.recorded, "{checked:?}");

    let events = app.events_until(&shop, checked.version).await;
    let check_event = events
        .iter()
        .find(|e| e.change == "connection_checked" && e.version == checked.version)
        .expect("the check's event");
    assert!(!check_event.enabled, "{check_event:?}");
}
