//! Flow 4 on the dispatcher side: `wms.{shop}.observed` updates the WMS status, moves SENT to
//! SHIPPED with the tracking code, flags cancellations nobody requested (R5), and ignores
//! observations older than the one applied.

use wmslink_proto::orders::v1::ShippingStatus;
use wmslink_proto::sync::v1::WmsObserved;

use crate::helpers::*;

fn observed(shop: &Shop, no: &str, wms_order_id: i64, status_id: i32, at: i64) -> WmsObserved {
    WmsObserved {
        event_id: uuid::Uuid::now_v7().to_string(),
        shop_id: shop.id.clone(),
        order_no: no.to_owned(),
        wms_order_id,
        status_id,
        status_name: wmslink_wms_simulator::status_name(status_id).to_owned(),
        cancelled: false,
        shipped: false,
        shipping_status_id: 0,
        tracking_code: String::new(),
        shipping_date: String::new(),
        wms_updated_at: Some(prost_types::Timestamp {
            seconds: at,
            nanos: 0,
        }),
        observed_at: None,
        ..WmsObserved::default()
    }
}

#[tokio::test]
async fn shipped_observations_move_sent_to_shipped_and_stale_ones_are_ignored() {
    let app = spawn_app().await;
    let shop = app.shop().await;
    let no = unique_order_no();
    app.status_changed(&order(&shop, &no, "paid", 1)).await;
    let (sent, _) = app.wait_for(&shop, &no, ShippingStatus::Sent).await;
    let id = sent.wms_order_id;
    let t0 = chrono::Utc::now().timestamp() + 10;

    app.observed(&observed(&shop, &no, id, 20, t0)).await;
    let (processing, _) = app
        .wait_until(&shop, &no, "WMS status 処理中", |s| {
            s.wms_status_id == 20
        })
        .await;
    assert_eq!(processing.wms_status_name, "処理中");
    assert_eq!(processing.shipping_status(), ShippingStatus::Sent);

    let mut shipped = observed(&shop, &no, id, 100, t0 + 60);
    shipped.shipped = true;
    shipped.tracking_code = "1234-5678-9012".into();
    shipped.shipping_date = "2026-11-29".into();
    app.observed(&shipped).await;
    let (shipment, history) = app.wait_for(&shop, &no, ShippingStatus::Shipped).await;
    assert_eq!(shipment.tracking_code, "1234-5678-9012");
    assert_eq!(shipment.shipped_date, "2026-11-29");
    assert_eq!(shipment.wms_status_id, 100);
    assert!(transitions(&history).contains(&pair("SENT", "SHIPPED")));

    // An older observation arriving late changes nothing.
    app.observed(&observed(&shop, &no, id, 50, t0 + 30)).await;
    let (shipment, history) = app
        .wait_until_history(&shop, &no, "older than the one applied")
        .await;
    assert_eq!(shipment.shipping_status(), ShippingStatus::Shipped);
    assert_eq!(shipment.wms_status_id, 100);
    assert!(history_has(&history, "older than the one applied"));
}

#[tokio::test]
async fn a_cancellation_in_the_wms_that_nobody_requested_is_flagged() {
    let app = spawn_app().await;
    let shop = app.shop().await;
    let no = unique_order_no();
    app.status_changed(&order(&shop, &no, "paid", 1)).await;
    let (sent, _) = app.wait_for(&shop, &no, ShippingStatus::Sent).await;

    let mut cancelled = observed(
        &shop,
        &no,
        sent.wms_order_id,
        50,
        chrono::Utc::now().timestamp(),
    );
    cancelled.cancelled = true;
    app.observed(&cancelled).await;
    let (shipment, history) = app.wait_for(&shop, &no, ShippingStatus::Cancelled).await;
    assert!(shipment.cancelled_in_wms_unrequested);
    assert!(
        history_has(&history, "not requested by wmslink"),
        "{history:?}"
    );

    // An observation of another WMS order with the same number is not applied to this one.
    let other = observed(
        &shop,
        &no,
        sent.wms_order_id + 1000,
        20,
        chrono::Utc::now().timestamp() + 5,
    );
    app.observed(&other).await;
    let (shipment, _) = app
        .wait_until_history(&shop, &no, "ignored: this shipment is WMS order")
        .await;
    assert_eq!(shipment.wms_order_id, sent.wms_order_id);
    assert_eq!(shipment.shipping_status(), ShippingStatus::Cancelled);
}
