//! The order-status catalog moving under the dispatcher: a status the cached catalog does not
//! know is never guessed (the settings are fetched again and the event waits until the
//! catalog knows it), and a status that becomes a cancel status cancels the shipments resting
//! in it (the sweep re-checks them, I2).

use wmslink_platform::nats::StreamKind;
use wmslink_proto::orders::v1::ShippingStatus;
use wmslink_proto::settings::v1 as spb;
use wmslink_testkit::eventually;

use crate::helpers::*;

/// The harness's catalog plus `hold` of `kind`.
async fn catalog_with_hold(app: &TestApp, shop: &Shop, kind: spb::OrderStatusKind) {
    let mut statuses = wmslink_test_harness::shop::catalog();
    statuses.push(spb::OrderStatus {
        code: "hold".into(),
        display_name: "保留".into(),
        kind: kind as i32,
    });
    app.settings
        .clone()
        .put_order_status_catalog(spb::PutOrderStatusCatalogRequest {
            shop_id: shop.id.clone(),
            statuses,
            expected_version: None,
        })
        .await
        .expect("catalog put");
}

#[tokio::test]
async fn an_event_with_a_status_the_catalog_does_not_know_waits_until_the_catalog_knows_it() {
    let app = spawn_app_with(|config| {
        config.consumers.retry_base_delay_ms = 50;
        config.consumers.retry_max_delay_ms = 200;
        config.consumers.max_deliver = 2;
    })
    .await;
    let shop = app.shop().await;
    let no = unique_order_no();
    app.status_changed(&order(&shop, &no, "paid", 1)).await;
    app.wait_for(&shop, &no, ShippingStatus::Sent).await;

    // The cart has a status the dispatcher's catalog lacks: not guessed, not dead-lettered.
    app.status_changed(&order(&shop, &no, "hold", 2)).await;
    eventually(WAIT, "the event delivered past max_deliver", || async {
        let info = app
            .consumer_info(StreamKind::Orders, "shipment-dispatcher-status-changed")
            .await;
        // 1 delivery of revision 1, then revision 2 again and again.
        (info.delivered.consumer_sequence >= 4).then_some(())
    })
    .await;
    let (shipment, _) = app.get(&shop, &no).await.expect("shipment");
    assert_eq!(shipment.order_revision, 1, "revision 2 not applied yet");
    assert!(app.dead_letters().await.is_empty(), "never dead-lettered");

    // The catalog learns that `hold` cancels: the waiting event cancels the order.
    catalog_with_hold(&app, &shop, spb::OrderStatusKind::Cancelled).await;
    let (shipment, history) = app.wait_for(&shop, &no, ShippingStatus::Cancelled).await;
    assert_eq!(shipment.order_revision, 2);
    assert!(
        transitions(&history).contains(&pair("SENT", "CANCEL_REQUESTED")),
        "{history:?}"
    );
    let (wms, _) = app.wms_row(&shop, &no);
    assert_eq!(wms.cancel_flag, 1);
}

#[tokio::test]
async fn a_status_that_becomes_a_cancel_status_cancels_the_shipments_resting_in_it() {
    let app = spawn_app().await;
    let shop = app.shop().await;
    catalog_with_hold(&app, &shop, spb::OrderStatusKind::Open).await;
    let no = unique_order_no();
    app.status_changed(&order(&shop, &no, "paid", 1)).await;
    app.wait_for(&shop, &no, ShippingStatus::Sent).await;
    app.status_changed(&order(&shop, &no, "hold", 2)).await;
    app.wait_until(&shop, &no, "revision 2 stored", |s| s.order_revision == 2)
        .await;
    assert_eq!(
        app.get(&shop, &no)
            .await
            .expect("shipment")
            .0
            .shipping_status(),
        ShippingStatus::Sent
    );

    // The shop decides `hold` means cancelled: the sweep cancels it in the WMS.
    catalog_with_hold(&app, &shop, spb::OrderStatusKind::Cancelled).await;
    let (_, history) = app.wait_for(&shop, &no, ShippingStatus::Cancelled).await;
    assert!(history_has(&history, "sweep:"), "{history:?}");
    eventually(WAIT, "cancelled in the WMS", || async {
        (app.wms_row(&shop, &no).0.cancel_flag == 1).then_some(())
    })
    .await;
}
