//! Order events delivered together are applied in one transaction with one commit, each
//! order's events in stream order, and a bad one is dead-lettered alone.

use wmslink_platform::shop::ShopId;
use wmslink_proto::orders::v1::ShippingStatus;
use wmslink_shipment_dispatcher::consumers::STATUS_CHANGED_CONSUMER;
use wmslink_testkit::eventually;

use crate::helpers::*;

#[tokio::test]
async fn events_delivered_together_share_a_transaction_and_a_bad_one_is_dead_lettered_alone() {
    let mut app = spawn_app().await;
    let shop = app.shop().await;
    let shop_id = ShopId::parse(&shop.id).expect("shop id");
    let subject = app.nats.subjects.order_status_changed(&shop_id);

    // While the dispatcher is down order-events goes on: good events with bad ones among
    // them, so that they are delivered together when it is back.
    app.stop().await;
    let mut numbers = Vec::new();
    for n in 0..30 {
        let no = unique_order_no();
        app.status_changed(&order(&shop, &no, "paid", 1)).await;
        numbers.push(no);
        if n == 10 {
            app.raw(subject.clone(), b"\xff\xff this is not an event".to_vec())
                .await;
        }
    }
    // The first order again, cancelled in the cart: applied after its first event.
    app.status_changed(&order(&shop, &numbers[0], "cancel", 2))
        .await;
    app.start().await;

    app.wait_for(&shop, &numbers[0], ShippingStatus::Cancelled)
        .await;
    app.wait_for_all(&shop, &numbers[1..], ShippingStatus::Sent)
        .await;
    let letters = eventually(WAIT, "one dead letter", || async {
        let letters = app.dead_letters().await;
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(
        letters[0]
            .1
            .contains("undecodable protobuf wmslink.orders.v1.OrderStatusChanged"),
        "{letters:?}"
    );

    // Processed together: fewer transactions (each stamps its processed ids with its own start
    // time) than events.
    let (events, transactions): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT processed_at) FROM processed_messages
         WHERE consumer = $1",
    )
    .bind(STATUS_CHANGED_CONSUMER)
    .fetch_one(&app.db.pool)
    .await
    .expect("processed messages");
    assert_eq!(events, 31, "every good event is recorded as processed");
    assert!(
        transactions < events,
        "{events} events in {transactions} transactions"
    );
}
