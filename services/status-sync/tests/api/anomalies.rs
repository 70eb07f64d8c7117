//! R5: WMS cancellations wmslink never requested, WMS orders wmslink never sent, shipments the
//! WMS no longer knows: each found, stored, listed and published once.

use std::time::Duration;

use serde_json::json;
use wmslink_proto::orders::v1::ShippingStatus;
use wmslink_proto::sync::v1::AnomalyKind;
use wmslink_testkit::eventually;

use crate::helpers::*;

#[tokio::test]
async fn a_wms_cancellation_never_requested_is_reported_once() {
    let app = spawn_app().await;
    let shop = app.add_shop().await;
    let date = days_ago(2);
    let ids = app
        .sent_orders(&shop, &[("U-1".into(), date), ("R-1".into(), date)])
        .await;
    app.run_sync(&shop).await;
    // The cart asked for R-1's cancellation; nobody asked for U-1's.
    app.shipment(
        &shop,
        "R-1",
        ids["R-1"],
        ShippingStatus::CancelRequested,
        2,
        date,
    )
    .await;
    app.wait_for_shipment(&shop, "R-1", "CANCEL_REQUESTED", 2)
        .await;
    for order in ["U-1", "R-1"] {
        app.patch_order(&shop, ids[order], json!({ "cancel_flag": 1 }))
            .await;
    }

    let run = app.run_sync(&shop).await;
    assert_eq!((run.changed, run.anomalies), (2, 1), "{run:?}");
    let listed = app
        .anomalies(&shop, AnomalyKind::CancelledUnrequested)
        .await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let anomaly = &listed[0];
    assert_eq!(
        (
            anomaly.order_no.as_str(),
            anomaly.wms_order_id,
            anomaly.shop_id.as_str()
        ),
        ("U-1", ids["U-1"], shop.id.as_str())
    );
    assert_eq!(anomaly.kind(), AnomalyKind::CancelledUnrequested);
    assert!(
        anomaly.detail.contains("never requested"),
        "{}",
        anomaly.detail
    );
    assert_eq!(anomaly.run_id, run.run_id);
    // The dispatcher sees the cancellation too.
    let cancelled = app.observed_by_order(&shop).await["U-1"]
        .last()
        .map(|e| e.cancelled);
    assert_eq!(cancelled, Some(true));

    // Seen again by later passes: not reported again.
    let again = app.run_sync(&shop).await;
    assert_eq!(again.anomalies, 0, "{again:?}");
    assert_eq!(
        app.anomalies(&shop, AnomalyKind::Unspecified).await.len(),
        1
    );
    let published = app.anomaly_events(&shop).await;
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(published[0], listed[0]);
}

#[tokio::test]
async fn a_wms_cancellation_is_still_reported_after_the_dispatcher_applied_it() {
    let app = spawn_app_with(wmslink_wms_simulator::SimConfig::for_tests(), |config| {
        config.sync.anomaly_grace_ms = 1_000;
    })
    .await;
    let shop = app.add_shop().await;
    let date = days_ago(2);
    let ids = app.sent_orders(&shop, &[("U-2".into(), date)]).await;
    app.run_sync(&shop).await;
    app.patch_order(&shop, ids["U-2"], json!({ "cancel_flag": 1 }))
        .await;
    let first = app.run_sync(&shop).await;
    assert_eq!(first.anomalies, 0, "within the grace time: {first:?}");

    // Within the grace time the dispatcher applies the observation: CANCELLED, and its flag
    // says nobody asked. That explains nothing: it is the anomaly itself.
    app.cancelled_unrequested(&shop, "U-2", ids["U-2"], 2, date)
        .await;
    app.wait_for_shipment(&shop, "U-2", "CANCELLED", 2).await;

    let reported = eventually(
        Duration::from_secs(10),
        "the grace time to pass",
        || async {
            app.run_sync(&shop).await;
            let listed = app
                .anomalies(&shop, AnomalyKind::CancelledUnrequested)
                .await;
            (!listed.is_empty()).then_some(listed)
        },
    )
    .await;
    let found: Vec<(&str, i64)> = reported
        .iter()
        .map(|a| (a.order_no.as_str(), a.wms_order_id))
        .collect();
    assert_eq!(found, vec![("U-2", ids["U-2"])]);
    assert_eq!(app.anomaly_events(&shop).await.len(), 1);
}

#[tokio::test]
async fn wms_orders_wmslink_never_sent_are_reported() {
    let app = spawn_app().await;
    let shop = app.add_shop().await;
    app.sent_orders(&shop, &[("OURS-1".into(), days_ago(1))])
        .await;
    // One the dispatcher is registering right now (known, no WMS id yet), and one registered
    // by CSV that wmslink never heard of.
    let queued = register_in_wms(&shop.wms, &[("Q-1".into(), days_ago(1))]).await;
    app.shipment(&shop, "Q-1", 0, ShippingStatus::Sending, 1, days_ago(1))
        .await;
    app.wait_for_shipment(&shop, "Q-1", "SENDING", 1).await;
    let csv = register_in_wms(&shop.wms, &[("CSV-1".into(), days_ago(1))]).await;

    let run = app.run_sync(&shop).await;
    assert_eq!(run.anomalies, 1, "{run:?}");
    let listed = app.anomalies(&shop, AnomalyKind::NotSentByWmslink).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0].order_no.as_str(), listed[0].wms_order_id),
        ("CSV-1", csv["CSV-1"])
    );
    assert_eq!(listed[0].wms_status_id, 50);
    assert!(listed[0].detail.contains("CSV"), "{}", listed[0].detail);
    assert!(queued.contains_key("Q-1"));

    assert_eq!(app.run_sync(&shop).await.anomalies, 0);
    assert_eq!(app.anomaly_events(&shop).await.len(), 1);
}

#[tokio::test]
async fn a_shipment_the_wms_no_longer_knows_is_reported() {
    let app = spawn_app().await;
    let shop = app.add_shop().await;
    app.sent_orders(&shop, &[("REAL-1".into(), days_ago(1))])
        .await;
    app.shipment(
        &shop,
        "GHOST-1",
        987_654,
        ShippingStatus::Sent,
        1,
        days_ago(1),
    )
    .await;
    app.wait_for_watch_list(&shop, 2).await;

    let run = app.run_sync(&shop).await;
    assert_eq!((run.pass.as_str(), run.anomalies), ("full", 1), "{run:?}");
    let listed = app.anomalies(&shop, AnomalyKind::MissingInWms).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0].order_no.as_str(), listed[0].wms_order_id),
        ("GHOST-1", 987_654)
    );
    assert!(
        listed[0].detail.contains("no longer knows"),
        "{}",
        listed[0].detail
    );
    let published = app.anomaly_events(&shop).await;
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].kind(), AnomalyKind::MissingInWms);
    assert!(
        app.anomalies(&shop, AnomalyKind::CancelledUnrequested)
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_suspect_explained_within_the_grace_time_is_not_reported() {
    let app = spawn_app_with(wmslink_wms_simulator::SimConfig::for_tests(), |config| {
        config.sync.anomaly_grace_ms = 1_000;
    })
    .await;
    let shop = app.add_shop().await;
    let date = days_ago(1);
    // Registered by the dispatcher, whose event is late, and one by CSV.
    let late = register_in_wms(&shop.wms, &[("LATE-1".into(), date)]).await;
    register_in_wms(&shop.wms, &[("CSV-2".into(), date)]).await;
    let first = app.run_sync(&shop).await;
    assert_eq!(first.anomalies, 0, "still within the grace time: {first:?}");

    app.shipment(
        &shop,
        "LATE-1",
        late["LATE-1"],
        ShippingStatus::Sent,
        1,
        date,
    )
    .await;
    app.wait_for_shipment(&shop, "LATE-1", "SENT", 1).await;

    let reported = eventually(
        Duration::from_secs(10),
        "the grace time to pass",
        || async {
            app.run_sync(&shop).await;
            let listed = app.anomalies(&shop, AnomalyKind::NotSentByWmslink).await;
            (!listed.is_empty()).then_some(listed)
        },
    )
    .await;
    let order_nos: Vec<&str> = reported.iter().map(|a| a.order_no.as_str()).collect();
    assert_eq!(order_nos, vec!["CSV-2"]);
}

/// R3/R5: after wmslink's WMS order was cancelled, the number is registered again by hand. The
/// update_date search returns only the new WMS order (ours did not change since the last pass):
/// still an anomaly.
#[tokio::test]
async fn a_number_registered_again_is_reported_without_our_order_in_the_answer() {
    let app = spawn_app().await;
    let shop = app.add_shop().await;
    let date = days_ago(1);
    let ids = app.sent_orders(&shop, &[("RR-1".into(), date)]).await;
    app.shipment(
        &shop,
        "RR-1",
        ids["RR-1"],
        ShippingStatus::CancelRequested,
        2,
        date,
    )
    .await;
    app.patch_order(&shop, ids["RR-1"], json!({ "cancel_flag": 1 }))
        .await;
    app.shipment(
        &shop,
        "RR-1",
        ids["RR-1"],
        ShippingStatus::Cancelled,
        3,
        date,
    )
    .await;
    app.wait_for_shipment(&shop, "RR-1", "CANCELLED", 3).await;
    // The WMS's update_date has whole seconds: let the clock pass the cancellation's second,
    // so the passes from here on start after it and no longer return our WMS order.
    let cancelled_at = chrono::Utc::now().timestamp();
    eventually(WAIT, "the clock past the cancellation", || async {
        (chrono::Utc::now().timestamp() > cancelled_at + 1).then_some(())
    })
    .await;
    let first = app.run_sync(&shop).await;
    assert_eq!(first.anomalies, 0, "{first:?}");

    // Registered again after the pass: the next search returns only the new WMS order.
    let again = register_in_wms(&shop.wms, &[("RR-1".into(), date)]).await;
    assert_ne!(again["RR-1"], ids["RR-1"]);
    let run = app.run_sync(&shop).await;
    assert_eq!(run.anomalies, 1, "{run:?}");
    let listed = app.anomalies(&shop, AnomalyKind::NotSentByWmslink).await;
    let found: Vec<(&str, i64)> = listed
        .iter()
        .map(|a| (a.order_no.as_str(), a.wms_order_id))
        .collect();
    assert_eq!(found, vec![("RR-1", again["RR-1"])]);
    assert!(
        listed[0].detail.contains("second time"),
        "{}",
        listed[0].detail
    );
}

/// A WMS-side cancellation seen in a search is reported even for an order dated before the
/// sync period (no longer asked about, but returned by the update_date search).
#[tokio::test]
async fn a_wms_cancellation_outside_the_sync_period_is_reported() {
    let app = spawn_app().await;
    let shop = app.add_shop().await;
    let old = days_ago(i64::from(SYNC_PERIOD_DAYS) + 5);
    let ids = app.sent_orders(&shop, &[("OLD-1".into(), old)]).await;
    app.run_sync(&shop).await;
    app.patch_order(&shop, ids["OLD-1"], json!({ "cancel_flag": 1 }))
        .await;

    let run = app.run_sync(&shop).await;
    assert_eq!(run.anomalies, 1, "{run:?}");
    let listed = app
        .anomalies(&shop, AnomalyKind::CancelledUnrequested)
        .await;
    let found: Vec<(&str, i64)> = listed
        .iter()
        .map(|a| (a.order_no.as_str(), a.wms_order_id))
        .collect();
    assert_eq!(found, vec![("OLD-1", ids["OLD-1"])]);
}

/// Multi-channel WMS accounts: with the shop's order-number prefix set, another channel's WMS
/// orders are not reported as registered outside wmslink; the shop's own still are.
#[tokio::test]
async fn other_channels_orders_are_not_this_shops_anomalies() {
    let app = spawn_app().await;
    let shop = app.add_shop_with_prefix("WEB-").await;
    let date = days_ago(1);
    let csv = register_in_wms(
        &shop.wms,
        &[("WEB-9".into(), date), ("MALL-1".into(), date)],
    )
    .await;

    let run = app.run_sync(&shop).await;
    assert_eq!(run.anomalies, 1, "{run:?}");
    let listed = app.anomalies(&shop, AnomalyKind::Unspecified).await;
    let found: Vec<(&str, i64)> = listed
        .iter()
        .map(|a| (a.order_no.as_str(), a.wms_order_id))
        .collect();
    assert_eq!(found, vec![("WEB-9", csv["WEB-9"])]);
}

#[tokio::test]
async fn an_order_wmslink_has_not_registered_that_appears_in_the_wms_is_registered_outside_wmslink()
{
    let app = spawn_app().await;
    let shop = app.add_shop().await;
    let date = days_ago(1);
    // The cart sent these to wmslink; wmslink has not registered them: not sent (the shop's
    // target status not reached), queued, in error, cancelled before sending; and one being
    // sent right now (its WMS order is most likely wmslink's own).
    let known = [
        ("NS-1", ShippingStatus::NotSent),
        ("QU-1", ShippingStatus::Queued),
        ("ER-1", ShippingStatus::Error),
        ("CA-1", ShippingStatus::Cancelled),
        ("SE-1", ShippingStatus::Sending),
    ];
    for (no, status) in known {
        app.shipment(&shop, no, 0, status, 1, date).await;
    }
    // And one the dispatcher sent with an unknown outcome and never found (ERROR, possibly in
    // the WMS): a WMS order with its number may be wmslink's own, applied late.
    let mut in_doubt = shipment_event(&shop.id, "ID-1", 0, ShippingStatus::Error, 1, date);
    if let Some(shipment) = in_doubt.shipment.as_mut() {
        shipment.possibly_in_wms = true;
    }
    publish_raw(
        &app.nats,
        &shop.id,
        &in_doubt.event_id,
        prost::Message::encode_to_vec(&in_doubt),
    )
    .await;
    for (no, status) in known {
        app.wait_for_shipment(&shop, no, status_key_of(status), 1)
            .await;
    }
    app.wait_for_shipment(&shop, "ID-1", "ERROR", 1).await;
    // Someone registers them in the WMS by CSV or by hand (ID-1: wmslink's late send).
    let orders: Vec<(String, chrono::DateTime<chrono::Utc>)> = known
        .iter()
        .map(|(no, _)| (*no).to_owned())
        .chain(["ID-1".to_owned()])
        .map(|no| (no, date))
        .collect();
    let ids = register_in_wms(&shop.wms, &orders).await;

    let run = app.run_sync(&shop).await;
    assert_eq!(run.anomalies, 4, "{run:?}");
    let listed = app
        .anomalies(&shop, AnomalyKind::RegisteredOutsideWmslink)
        .await;
    let mut found: Vec<(&str, i64)> = listed
        .iter()
        .map(|a| (a.order_no.as_str(), a.wms_order_id))
        .collect();
    found.sort();
    assert_eq!(
        found,
        vec![
            ("CA-1", ids["CA-1"]),
            ("ER-1", ids["ER-1"]),
            ("NS-1", ids["NS-1"]),
            ("QU-1", ids["QU-1"]),
        ]
    );
    assert!(
        listed[0].detail.contains("registered outside wmslink"),
        "{}",
        listed[0].detail
    );
    // Not reported as orders wmslink never heard of: the cart sent them.
    assert!(
        app.anomalies(&shop, AnomalyKind::NotSentByWmslink)
            .await
            .is_empty()
    );
    // Published once each, for the order list.
    assert_eq!(app.run_sync(&shop).await.anomalies, 0);
    let published = app.anomaly_events(&shop).await;
    assert_eq!(published.len(), 4, "{published:?}");
    assert!(
        published
            .iter()
            .all(|a| a.kind() == AnomalyKind::RegisteredOutsideWmslink)
    );
}

fn status_key_of(status: ShippingStatus) -> &'static str {
    match status {
        ShippingStatus::NotSent => "NOT_SENT",
        ShippingStatus::Queued => "QUEUED",
        ShippingStatus::Error => "ERROR",
        ShippingStatus::Cancelled => "CANCELLED",
        ShippingStatus::Sending => "SENDING",
        _ => "SENT",
    }
}
