//! The projection of `shipments.{shop}.updated`: latest by sequence, whatever the arrival order.

use wmslink_proto::dispatch::v1::ShipmentUpdated;
use wmslink_proto::orders::v1::{ListOrdersFilter, ListOrdersRequest, ShippingStatus};

use crate::helpers::{TestApp, order, recent_order, shipment, spawn_app};

/// Publishes a shipment update for another order and waits until it is applied: every update
/// published before it has been processed by then (one consumer, in stream order).
async fn flush_shipments(app: &TestApp, shop: &str) {
    let sentinel_no = format!("SENTINEL-{}", wmslink_testkit::unique(""));
    app.publish_shipment(&shipment(
        shop,
        &sentinel_no,
        1,
        ShippingStatus::Queued,
        0,
        "",
    ))
    .await;
    let pool = &app.db.pool;
    wmslink_testkit::eventually(crate::helpers::DEADLINE, "sentinel shipment", || async {
        let applied: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM order_integration WHERE shop_id = $1 AND order_no = $2)",
        )
        .bind(shop)
        .bind(&sentinel_no)
        .fetch_one(pool)
        .await
        .expect("projection");
        applied.then_some(())
    })
    .await;
}

fn shipped(sequence: i64) -> ShipmentUpdated {
    let mut update = shipment(
        "shop-a",
        "A-1",
        sequence,
        ShippingStatus::Shipped,
        40,
        "出荷済み",
    );
    if let Some(s) = update.shipment.as_mut() {
        s.tracking_code = "1234-5678-9012".into();
        s.shipped_date = "2026-05-02".into();
        s.edited_after_sending = true;
        s.edited_revision = 3;
    }
    update
}

#[tokio::test]
async fn the_projection_keeps_the_latest_update_under_duplicates_and_reordering() {
    let app = spawn_app().await;
    app.make_shop_known("shop-a").await;
    app.upsert(&order("shop-a", "A-1", 1, "new"))
        .await
        .expect("order");

    let queued = shipment("shop-a", "A-1", 1, ShippingStatus::Queued, 0, "");
    let sent = shipment("shop-a", "A-1", 2, ShippingStatus::Sent, 10, "出荷指示済み");
    let processing = shipment("shop-a", "A-1", 3, ShippingStatus::Sent, 20, "処理中");
    // Out of order and repeated: 2, 1, 2, 4, 3, 4, 1.
    for update in [
        &sent,
        &queued,
        &sent,
        &shipped(4),
        &processing,
        &shipped(4),
        &queued,
    ] {
        app.publish_shipment(update).await;
    }
    flush_shipments(&app, "shop-a").await;

    let view = app.get("shop-a", "A-1").await.expect("order");
    let integration = view.integration.expect("integration");
    assert_eq!(integration.shipping_status(), ShippingStatus::Shipped);
    assert_eq!(integration.wms_status_id, 40);
    assert_eq!(integration.wms_status_name, "出荷済み");
    assert_eq!(integration.tracking_code, "1234-5678-9012");
    assert_eq!(integration.shipped_date, "2026-05-02");
    assert!(integration.edited_after_sending);
    assert_eq!(integration.edited_revision, 3);
    assert!(integration.updated_at.is_some());

    // The list shows both levels.
    let rows = app
        .cart
        .clone()
        .list_orders(ListOrdersRequest {
            shop_id: "shop-a".into(),
            filter: Some(ListOrdersFilter {
                shipping_statuses: vec![ShippingStatus::Shipped as i32],
                ..ListOrdersFilter::default()
            }),
            ..ListOrdersRequest::default()
        })
        .await
        .expect("list")
        .into_inner()
        .rows;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].order_no, "A-1");
    assert_eq!(rows[0].wms_status_name, "出荷済み");
    assert_eq!(rows[0].tracking_code, "1234-5678-9012");
    assert!(rows[0].edited_after_sending);
    assert!(app.dead_letters().await.is_empty());
}

#[tokio::test]
async fn a_shipment_update_may_arrive_before_its_order() {
    let app = spawn_app().await;
    app.make_shop_synced("shop-a").await;
    app.publish_shipment(&shipment(
        "shop-a",
        "EARLY-1",
        5,
        ShippingStatus::Sent,
        20,
        "処理中",
    ))
    .await;
    flush_shipments(&app, "shop-a").await;

    app.upsert(&recent_order("shop-a", "EARLY-1", 1, "new"))
        .await
        .expect("order");
    let integration = app
        .get("shop-a", "EARLY-1")
        .await
        .and_then(|view| view.integration)
        .expect("integration");
    assert_eq!(integration.shipping_status(), ShippingStatus::Sent);
    assert_eq!(integration.wms_status_id, 20);

    // The list filter sees it, and R4 applies.
    let rows = app
        .cart
        .clone()
        .list_orders(ListOrdersRequest {
            shop_id: "shop-a".into(),
            filter: Some(ListOrdersFilter {
                wms_status_ids: vec![20],
                ..ListOrdersFilter::default()
            }),
            ..ListOrdersRequest::default()
        })
        .await
        .expect("list")
        .into_inner()
        .rows;
    assert_eq!(
        rows.iter().map(|r| r.order_no.as_str()).collect::<Vec<_>>(),
        vec!["EARLY-1"]
    );
    let status = app
        .upsert(&recent_order("shop-a", "EARLY-1", 2, "cancelled"))
        .await
        .expect_err("R4");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
}

#[tokio::test]
async fn the_flags_of_the_integration_are_shown() {
    let app = spawn_app().await;
    app.make_shop_known("shop-a").await;
    app.upsert(&order("shop-a", "F-1", 1, "cancelled"))
        .await
        .expect("order");
    app.upsert(&order("shop-a", "F-2", 1, "new"))
        .await
        .expect("order");
    let mut rejected = shipment(
        "shop-a",
        "F-1",
        7,
        ShippingStatus::CancelRejected,
        30,
        "梱包済み",
    );
    if let Some(s) = rejected.shipment.as_mut() {
        s.last_error = "already packed".into();
    }
    let mut unrequested = shipment(
        "shop-a",
        "F-2",
        3,
        ShippingStatus::Cancelled,
        90,
        "キャンセル",
    );
    if let Some(s) = unrequested.shipment.as_mut() {
        s.cancelled_in_wms_unrequested = true;
    }
    app.publish_shipment(&rejected).await;
    app.publish_shipment(&unrequested).await;
    let f1 = app
        .wait_for_integration("shop-a", "F-1", "cancel rejected", |i| i.cancel_rejected)
        .await
        .integration
        .expect("integration");
    assert_eq!(f1.last_error, "already packed");
    assert_eq!(f1.shipping_status(), ShippingStatus::CancelRejected);
    let f2 = app
        .wait_for_integration("shop-a", "F-2", "cancelled unrequested", |i| {
            i.cancelled_in_wms_unrequested
        })
        .await
        .integration
        .expect("integration");
    assert_eq!(f2.shipping_status(), ShippingStatus::Cancelled);
    assert!(!f2.cancel_rejected);
}

/// R2: the WMS refused the cancellation, then shipped the order. The dispatcher's flag is
/// sticky; the order list shows it with `SHIPPED`.
#[tokio::test]
async fn a_refused_cancellation_stays_flagged_after_the_order_ships() {
    let app = spawn_app().await;
    app.make_shop_known("shop-a").await;
    app.upsert(&order("shop-a", "R-1", 1, "cancelled"))
        .await
        .expect("order");
    let mut rejected = shipment(
        "shop-a",
        "R-1",
        1,
        ShippingStatus::CancelRejected,
        30,
        "梱包済み",
    );
    let mut shipped = shipment("shop-a", "R-1", 2, ShippingStatus::Shipped, 100, "出荷済み");
    for update in [&mut rejected, &mut shipped] {
        if let Some(s) = update.shipment.as_mut() {
            s.cancel_rejected = true;
            s.last_error = "already packed".into();
        }
    }
    app.publish_shipment(&rejected).await;
    app.publish_shipment(&shipped).await;
    let integration = app
        .wait_for_integration("shop-a", "R-1", "shipped", |i| {
            i.shipping_status == ShippingStatus::Shipped as i32
        })
        .await
        .integration
        .expect("integration");
    assert!(integration.cancel_rejected, "{integration:?}");
    // A search for shipped orders finds it, flagged.
    let rows = app
        .cart
        .clone()
        .list_orders(ListOrdersRequest {
            shop_id: "shop-a".into(),
            filter: Some(ListOrdersFilter {
                shipping_statuses: vec![ShippingStatus::Shipped as i32],
                ..ListOrdersFilter::default()
            }),
            ..ListOrdersRequest::default()
        })
        .await
        .expect("list")
        .into_inner()
        .rows;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].order_no, "R-1");
    assert!(rows[0].cancel_rejected);
}
