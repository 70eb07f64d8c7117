//! R4: while the WMS is processing an order (status 20, configurable), its status cannot change;
//! the lock releases when the WMS cancels the order, when the shop stops syncing, and for orders
//! older than the sync period.

use tonic::Code;
use wmslink_proto::orders::v1::{ChangeOrderStatusRequest, Order, ShippingStatus, UpsertOutcome};

use crate::helpers::{OrderEvent, TestApp, recent_order, shipment, spawn_app, spawn_app_with};

/// `A-1` of `shop-a` at `revision` in `status`, dated an hour ago.
fn order(shop: &str, order_no: &str, revision: i64, status: &str) -> Order {
    recent_order(shop, order_no, revision, status)
}

fn change(status: &str, expected_revision: i64) -> ChangeOrderStatusRequest {
    ChangeOrderStatusRequest {
        shop_id: "shop-a".into(),
        order_no: "A-1".into(),
        status_code: status.into(),
        expected_revision,
    }
}

/// An order `A-1` at revision 1 (status `new`) of an enabled shop with shipment results on,
/// sent to the WMS, which reports it with `wms_status_id`.
async fn order_in_wms_status(app: &TestApp, wms_status_id: i32, name: &str) {
    app.make_shop_synced("shop-a").await;
    app.upsert(&order("shop-a", "A-1", 1, "new"))
        .await
        .expect("v1");
    app.publish_shipment(&shipment(
        "shop-a",
        "A-1",
        1,
        ShippingStatus::Sent,
        wms_status_id,
        name,
    ))
    .await;
    app.wait_for_integration("shop-a", "A-1", "the WMS status arrives", |i| {
        i.wms_status_id == wms_status_id
    })
    .await;
}

#[tokio::test]
async fn over_grpc_a_status_change_is_refused_while_the_wms_processes_the_order() {
    let app = spawn_app().await;
    order_in_wms_status(&app, 20, "処理中").await;

    let status = app
        .upsert(&order("shop-a", "A-1", 2, "cancelled"))
        .await
        .expect_err("refused by R4");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("WMS status 20 処理中"),
        "{status:?}"
    );
    assert!(status.message().contains("R4"), "{status:?}");

    let refused = app
        .cart
        .clone()
        .change_order_status(change("cancelled", 1))
        .await
        .expect_err("refused by R4");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("processing"), "{refused:?}");

    // Other changes pass.
    let mut edited = order("shop-a", "A-1", 2, "new");
    edited.note = "fragile".into();
    assert_eq!(
        app.upsert(&edited).await.expect("content change").outcome(),
        UpsertOutcome::Updated
    );

    // Once the WMS is past processing, the change goes through.
    app.publish_shipment(&shipment(
        "shop-a",
        "A-1",
        2,
        ShippingStatus::Sent,
        30,
        "出荷待ち",
    ))
    .await;
    app.wait_for_integration("shop-a", "A-1", "WMS status 30", |i| i.wms_status_id == 30)
        .await;
    let view = app
        .cart
        .clone()
        .change_order_status(change("cancelled", 2))
        .await
        .expect("allowed now")
        .into_inner();
    assert_eq!(
        view.order.and_then(|v| v.order).map(|o| o.status_code),
        Some("cancelled".to_owned())
    );
    let described: Vec<String> = app
        .wait_for_events("shop-a", "A-1", 3)
        .await
        .iter()
        .map(OrderEvent::describe)
        .collect();
    assert_eq!(
        described,
        vec![
            "status_changed 1 ->new",
            "updated 2",
            "status_changed 2 new->cancelled"
        ]
    );
}

#[tokio::test]
async fn over_nats_a_refused_status_change_is_kept_apart_and_reported_to_the_cart() {
    let app = spawn_app().await;
    order_in_wms_status(&app, 20, "処理中").await;

    let refused = order("shop-a", "A-1", 2, "cancelled");
    app.publish_order(&refused).await;
    let mut edited = order("shop-a", "A-1", 3, "new");
    edited.note = "fragile".into();
    app.publish_order(&edited).await;

    // The content change behind it passes; the status change was not applied.
    let view = app.wait_for_revision("shop-a", "A-1", 3).await;
    assert_eq!(view.order.as_ref(), Some(&edited));

    let kept: Vec<(i64, String, String, i32, String)> = sqlx::query_as(
        "SELECT revision, requested_status_code, current_status_code, wms_status_id, reason
         FROM rejected_changes WHERE shop_id = 'shop-a' AND order_no = 'A-1'",
    )
    .fetch_all(&app.db.pool)
    .await
    .expect("rejected changes");
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(
        (kept[0].0, kept[0].1.as_str(), kept[0].2.as_str(), kept[0].3),
        (2, "cancelled", "new", 20)
    );

    let events = app.wait_for_events("shop-a", "A-1", 3).await;
    let described: Vec<String> = events.iter().map(OrderEvent::describe).collect();
    assert_eq!(
        described,
        vec![
            "status_changed 1 ->new",
            "rejected 2 new->cancelled",
            "updated 3"
        ]
    );
    let OrderEvent::Rejected(rejection) = &events[1] else {
        panic!("{events:?}");
    };
    assert_eq!(rejection.wms_status_id, 20);
    assert!(rejection.reason.contains("R4"), "{rejection:?}");
    assert_eq!(rejection.reason, kept[0].4);
    // Acked, not dead-lettered.
    assert!(app.dead_letters().await.is_empty());
}

#[tokio::test]
async fn the_locking_wms_statuses_are_configurable() {
    let app = spawn_app_with(|config| config.orders.processing_wms_status_ids = vec![25]).await;
    order_in_wms_status(&app, 20, "処理中").await;
    assert_eq!(
        app.upsert(&order("shop-a", "A-1", 2, "paid"))
            .await
            .expect("20 does not lock here")
            .outcome(),
        UpsertOutcome::StatusChanged
    );
    app.publish_shipment(&shipment(
        "shop-a",
        "A-1",
        2,
        ShippingStatus::Sent,
        25,
        "検品中",
    ))
    .await;
    app.wait_for_integration("shop-a", "A-1", "WMS status 25", |i| i.wms_status_id == 25)
        .await;
    let status = app
        .upsert(&order("shop-a", "A-1", 3, "cancelled"))
        .await
        .expect_err("25 locks");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("WMS status 25 検品中"),
        "{status:?}"
    );
}

/// Asks over gRPC to cancel `A-1` (expected at `revision`) and answers whether R4 refused.
async fn cancel_refused(app: &TestApp, revision: i64) -> bool {
    match app
        .cart
        .clone()
        .change_order_status(change("cancelled", revision))
        .await
    {
        Ok(_) => false,
        Err(status) if status.code() == Code::FailedPrecondition => {
            assert!(status.message().contains("R4"), "{status:?}");
            true
        }
        Err(status) => panic!("unexpected answer: {status:?}"),
    }
}

#[tokio::test]
async fn the_lock_releases_when_the_wms_cancels_the_order_while_processing_it() {
    let app = spawn_app().await;
    order_in_wms_status(&app, 20, "処理中").await;
    assert!(cancel_refused(&app, 1).await, "locked while 処理中");

    // The WMS keeps status 20 and sets its cancel flag; the dispatcher reports CANCELLED.
    let mut cancelled = shipment("shop-a", "A-1", 2, ShippingStatus::Cancelled, 20, "処理中");
    if let Some(shipment) = cancelled.shipment.as_mut() {
        shipment.cancelled_in_wms_unrequested = true;
    }
    app.publish_shipment(&cancelled).await;
    app.wait_for_integration("shop-a", "A-1", "cancelled in the WMS", |i| {
        i.shipping_status == ShippingStatus::Cancelled as i32
    })
    .await;

    assert!(!cancel_refused(&app, 1).await, "released once cancelled");
    let view = app.get("shop-a", "A-1").await.expect("order");
    assert_eq!(
        view.order.map(|o| (o.status_code, o.revision)),
        Some(("cancelled".to_owned(), 1))
    );
}

#[tokio::test]
async fn the_lock_releases_when_the_shop_stops_syncing_shipment_results() {
    let app = spawn_app().await;
    order_in_wms_status(&app, 20, "処理中").await;
    assert!(cancel_refused(&app, 1).await, "locked while 処理中");

    // The integration is turned off: status-sync no longer polls the shop.
    app.publish_shop_sync("shop-a", 3, false, true, 30).await;
    assert_eq!(
        app.upsert(&order("shop-a", "A-1", 2, "paid"))
            .await
            .expect("released while disabled")
            .outcome(),
        UpsertOutcome::StatusChanged
    );

    // On again: locked again.
    app.publish_shop_sync("shop-a", 4, true, true, 30).await;
    assert!(cancel_refused(&app, 2).await, "locked again once enabled");

    // Enabled, but shipment results off: not polled either.
    app.publish_shop_sync("shop-a", 5, true, false, 30).await;
    assert!(!cancel_refused(&app, 2).await, "released with results off");
}

#[tokio::test]
async fn an_order_older_than_the_sync_period_is_not_locked() {
    let app = spawn_app().await;
    app.make_shop_known("shop-a").await;
    app.publish_shop_sync("shop-a", 2, true, true, 7).await;
    let mut old = order("shop-a", "A-1", 1, "new");
    old.order_date = Some(wmslink_proto::to_timestamp(
        chrono::Utc::now() - chrono::TimeDelta::days(8),
    ));
    app.upsert(&old).await.expect("v1");
    app.publish_shipment(&shipment(
        "shop-a",
        "A-1",
        1,
        ShippingStatus::Sent,
        20,
        "処理中",
    ))
    .await;
    app.wait_for_integration("shop-a", "A-1", "WMS status 20", |i| i.wms_status_id == 20)
        .await;

    // Dated 8 days back with a 7-day sync period: status-sync no longer asks about it.
    assert!(
        !cancel_refused(&app, 1).await,
        "not locked out of the period"
    );

    // A 30-day period covers it: locked.
    let mut recent = order("shop-a", "A-2", 1, "new");
    recent.order_date = old.order_date;
    app.publish_shop_sync("shop-a", 3, true, true, 30).await;
    app.upsert(&recent).await.expect("A-2 v1");
    app.publish_shipment(&shipment(
        "shop-a",
        "A-2",
        1,
        ShippingStatus::Sent,
        20,
        "処理中",
    ))
    .await;
    app.wait_for_integration("shop-a", "A-2", "WMS status 20", |i| i.wms_status_id == 20)
        .await;
    let refused = app
        .upsert(&order("shop-a", "A-2", 2, "cancelled"))
        .await
        .expect_err("locked within the period");
    assert_eq!(refused.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn the_refusal_says_how_fresh_the_wms_status_is() {
    let app = spawn_app().await;
    app.make_shop_synced("shop-a").await;
    app.upsert(&order("shop-a", "A-1", 1, "new"))
        .await
        .expect("v1");
    let mut processing = shipment("shop-a", "A-1", 1, ShippingStatus::Sent, 20, "処理中");
    if let Some(shipment) = processing.shipment.as_mut() {
        shipment.updated_at = Some(wmslink_proto::timestamp(1_780_000_000, 0));
    }
    app.publish_shipment(&processing).await;
    app.wait_for_integration("shop-a", "A-1", "WMS status 20", |i| i.wms_status_id == 20)
        .await;
    let refused = app
        .cart
        .clone()
        .change_order_status(change("cancelled", 1))
        .await
        .expect_err("locked");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let message = refused.message();
    assert!(
        message.contains("as last reported at 2026-05-28T20:26:40Z"),
        "{message}"
    );
    assert!(message.contains("status-sync interval"), "{message}");
}
