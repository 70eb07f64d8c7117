//! The rebuild sweep: what order events could not do (the event lost: deleted from the stream,
//! or published while the dispatcher's consumer was not there) is redone from order-events'
//! `ListOrders`. Here order-events publishes on a NATS of its own, so every order event it
//! publishes is lost to the dispatcher.

use std::time::Duration;

use wmslink_proto::orders::v1::{Order, ShippingStatus, UpsertOrderRequest};

use crate::helpers::*;

/// Stores the order in order-events, as the cart does (its order event is lost).
async fn upsert(app: &TestApp, order: &Order) {
    app.orders
        .clone()
        .expect("order-events runs")
        .upsert_order(UpsertOrderRequest {
            order: Some(order.clone()),
        })
        .await
        .expect("order stored in order-events");
}

#[tokio::test]
async fn an_order_whose_order_event_was_lost_is_registered_once_by_the_rebuild_sweep() {
    let app = spawn_app_losing_order_events(|_| {}).await;
    let shop = app.shop().await;
    let paid = unique_order_no();
    let new = unique_order_no();
    upsert(&app, &order(&shop, &paid, "paid", 1)).await;
    upsert(&app, &order(&shop, &new, "new", 1)).await;

    let (sent, history) = app.wait_for(&shop, &paid, ShippingStatus::Sent).await;
    assert!(history_has(&history, "rebuild sweep"), "{history:?}");
    assert_eq!(sent.order_revision, 1);
    let (wms, row) = app.wms_row(&shop, &paid);
    assert_eq!(wms.order_id, sent.wms_order_id);
    assert_eq!(row["order_no"], paid.as_str(), "{row}");
    // Once: later rebuild passes (every second) find it known and in its state.
    consistently(Duration::from_millis(3_000), "registered once", || {
        app.rows_received(&shop, &paid) == 1
    })
    .await;
    // An order in no target status is not sent.
    assert!(app.wms_orders(&shop, &new).is_empty());
    assert_eq!(app.counters(&shop).registrations_accepted, 1);
}

#[tokio::test]
async fn a_cancel_whose_order_event_was_lost_is_cancelled_in_the_wms_by_the_rebuild_sweep() {
    let app = spawn_app_losing_order_events(|_| {}).await;
    let shop = app.shop().await;
    let no = unique_order_no();
    let paid = order(&shop, &no, "paid", 1);
    upsert(&app, &paid).await;
    // This event arrived.
    app.status_changed(&paid).await;
    let (sent, _) = app.wait_for(&shop, &no, ShippingStatus::Sent).await;

    // The cancel's event is lost.
    upsert(&app, &order(&shop, &no, "cancel", 2)).await;
    let (cancelled, history) = app.wait_for(&shop, &no, ShippingStatus::Cancelled).await;
    assert!(history_has(&history, "rebuild sweep"), "{history:?}");
    assert_eq!(cancelled.wms_order_id, sent.wms_order_id);
    assert_eq!(cancelled.order_revision, 2);
    let changes = transitions(&history);
    assert!(
        changes.contains(&pair("SENT", "CANCEL_REQUESTED")),
        "{changes:?}"
    );
    let (wms, _) = app.wms_row(&shop, &no);
    assert_eq!(wms.cancel_flag, 1);
    assert_eq!(app.counters(&shop).cancels, 1);
    assert_eq!(app.rows_received(&shop, &no), 1);
}

/// A lost `updated` event (the content edited, the status not): the newer revision in
/// order-events' list is applied as the event would have been (R1: flagged, not sent again).
#[tokio::test]
async fn an_edit_whose_order_event_was_lost_is_flagged_by_the_rebuild_sweep_not_sent() {
    let app = spawn_app_losing_order_events(|_| {}).await;
    let shop = app.shop().await;
    let no = unique_order_no();
    let paid = order(&shop, &no, "paid", 1);
    upsert(&app, &paid).await;
    app.status_changed(&paid).await;
    app.wait_for(&shop, &no, ShippingStatus::Sent).await;

    let mut edited = order(&shop, &no, "paid", 2);
    edited.note = "edited after sending".into();
    upsert(&app, &edited).await;
    let (shipment, history) = app
        .wait_until(&shop, &no, "revision 2 applied", |s| s.order_revision == 2)
        .await;
    assert!(history_has(&history, "rebuild sweep"), "{history:?}");
    assert!(shipment.edited_after_sending, "{shipment:?}");
    assert_eq!(shipment.shipping_status(), ShippingStatus::Sent);
    assert_eq!(app.rows_received(&shop, &no), 1, "never sent again");
}
