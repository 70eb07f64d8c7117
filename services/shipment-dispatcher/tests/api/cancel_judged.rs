//! I2: cancellations judged correctly. Only a refusal for good (`E_NOT_CANCELLABLE`) or a
//! read-back showing the order shipped or being packed rejects a cancellation; any other
//! `NG` (maintenance, busy) keeps it requested and it is tried again until the WMS cancels.
//! With cancellations off as a data target the shipment shows the cancel was not sent.

use wmslink_proto::orders::v1::ShippingStatus;
use wmslink_proto::settings::v1 as spb;
use wmslink_testkit::eventually;
use wmslink_wms_simulator::{Endpoint, Faults, OrderPatch};

use crate::helpers::*;

#[tokio::test]
async fn a_cancellation_refused_for_now_stays_requested_and_is_retried_until_the_wms_cancels() {
    let app = spawn_app().await;
    let shop = app.shop().await;
    let no = unique_order_no();
    app.status_changed(&order(&shop, &no, "paid", 1)).await;
    app.wait_for(&shop, &no, ShippingStatus::Sent).await;
    app.fault(
        &shop,
        Endpoint::Cancel,
        Faults {
            ng_ratio: 1.0,
            ng_code: "E_MAINTENANCE".into(),
            ..Faults::default()
        },
    );

    app.status_changed(&order(&shop, &no, "cancel", 2)).await;
    eventually(WAIT, "the cancel refused twice", || async {
        (app.counters(&shop).faults_ng >= 2).then_some(())
    })
    .await;
    let (shipment, history) = app.get(&shop, &no).await.expect("shipment");
    assert_eq!(
        shipment.shipping_status(),
        ShippingStatus::CancelRequested,
        "a refusal for now is not a rejection: {history:?}"
    );
    assert!(!shipment.cancel_rejected);
    assert!(
        shipment.last_error.contains("E_MAINTENANCE"),
        "{shipment:?}"
    );
    assert!(history_has(&history, "tried again"), "{history:?}");

    app.clear_faults(&shop);
    let (shipment, _) = app.wait_for(&shop, &no, ShippingStatus::Cancelled).await;
    assert!(!shipment.cancel_rejected);
    let (wms, _) = app.wms_row(&shop, &no);
    assert_eq!(wms.cancel_flag, 1);
}

#[tokio::test]
async fn a_refusal_for_now_of_an_order_being_packed_is_rejected_by_the_read_back() {
    let app = spawn_app().await;
    let shop = app.shop().await;
    let no = unique_order_no();
    app.status_changed(&order(&shop, &no, "paid", 1)).await;
    let (sent, _) = app.wait_for(&shop, &no, ShippingStatus::Sent).await;
    app.sim
        .state()
        .patch_order(
            &shop.key,
            sent.wms_order_id,
            OrderPatch {
                status_id: Some(95),
                ..OrderPatch::default()
            },
        )
        .expect("patched");
    app.fault(
        &shop,
        Endpoint::Cancel,
        Faults {
            ng_ratio: 1.0,
            ng_code: "E_BUSY".into(),
            ..Faults::default()
        },
    );

    app.status_changed(&order(&shop, &no, "cancel", 2)).await;
    let (shipment, history) = app
        .wait_for(&shop, &no, ShippingStatus::CancelRejected)
        .await;
    assert!(shipment.cancel_rejected);
    assert!(
        shipment.last_error.contains("E_BUSY") && shipment.last_error.contains("status 95"),
        "{shipment:?}"
    );
    assert!(
        history
            .iter()
            .any(|h| h.kind == "wms_call" && h.request_summary.starts_with("GET /order/")),
        "read back: {history:?}"
    );
}

#[tokio::test]
async fn with_cancellations_off_the_shipment_shows_the_cancel_was_not_sent() {
    let app = spawn_app().await;
    let mut detail = full_detail();
    detail.data_targets = Some(spb::DataTargets {
        shipment_instructions: true,
        cancellations: false,
        shipment_results: true,
    });
    let shop = app.shop_with(detail, true).await;
    let no = unique_order_no();
    app.status_changed(&order(&shop, &no, "paid", 1)).await;
    app.wait_for(&shop, &no, ShippingStatus::Sent).await;

    app.status_changed(&order(&shop, &no, "cancel", 2)).await;
    let (shipment, history) = app
        .wait_until(&shop, &no, "cancel not sent shown", |s| s.cancel_not_sent)
        .await;
    assert_eq!(shipment.shipping_status(), ShippingStatus::Sent);
    assert!(history_has(&history, "not a data target"), "{history:?}");
    assert_eq!(app.counters(&shop).cancels, 0);
    eventually(
        WAIT,
        "ShipmentUpdated shows the cancel was not sent",
        || async {
            app.shipment_events(&shop)
                .await
                .iter()
                .any(|e| e.shipment.as_ref().is_some_and(|s| s.cancel_not_sent))
                .then_some(())
        },
    )
    .await;
}
