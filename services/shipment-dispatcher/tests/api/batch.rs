//! Order events and WMS observations delivered together are applied in one transaction with
//! one commit, each order's messages in stream order, and a bad one is dead-lettered alone.

use wmslink_platform::shop::ShopId;
use wmslink_proto::orders::v1::ShippingStatus;
use wmslink_proto::sync::v1::WmsObserved;
use wmslink_shipment_dispatcher::consumers::{OBSERVED_CONSUMER, STATUS_CHANGED_CONSUMER};
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

fn observed(shop: &Shop, no: &str, wms_order_id: i64, status_id: i32, at: i64) -> WmsObserved {
    WmsObserved {
        event_id: uuid::Uuid::now_v7().to_string(),
        shop_id: shop.id.clone(),
        order_no: no.to_owned(),
        wms_order_id,
        status_id,
        status_name: wmslink_wms_simulator::status_name(status_id).to_owned(),
        shipped: status_id == 100,
        tracking_code: if status_id == 100 {
            format!("T-{no}")
        } else {
            String::new()
        },
        wms_updated_at: Some(prost_types::Timestamp {
            seconds: at,
            nanos: 0,
        }),
        ..WmsObserved::default()
    }
}

#[tokio::test]
async fn observations_delivered_together_share_a_transaction_and_the_latest_wins() {
    let mut app = spawn_app().await;
    let shop = app.shop().await;
    let shop_id = ShopId::parse(&shop.id).expect("shop id");
    let numbers = app.publish_orders(&shop, 20, "paid").await;
    app.wait_for_all(&shop, &numbers, ShippingStatus::Sent)
        .await;
    let mut ids = Vec::new();
    for no in &numbers {
        let (shipment, _) = app.get(&shop, no).await.expect("shipment");
        ids.push(shipment.wms_order_id);
    }

    // While the dispatcher is down status-sync goes on: per order "processing", then
    // "shipped", the shipped one of some arriving before the older one, and a bad message
    // among them.
    app.stop().await;
    let t0 = chrono::Utc::now().timestamp() + 10;
    for (n, (no, &id)) in numbers.iter().zip(&ids).enumerate() {
        let processing = observed(&shop, no, id, 20, t0);
        let shipped = observed(&shop, no, id, 100, t0 + 60);
        let in_order = if n % 4 == 0 {
            [shipped, processing]
        } else {
            [processing, shipped]
        };
        for observation in &in_order {
            app.observed(observation).await;
        }
        if n == 7 {
            app.raw(
                app.nats.subjects.wms_observed(&shop_id),
                b"\xff\xff not an observation".to_vec(),
            )
            .await;
        }
    }
    app.start().await;

    for no in &numbers {
        let (shipment, _) = app.wait_for(&shop, no, ShippingStatus::Shipped).await;
        assert_eq!(
            shipment.wms_status_id, 100,
            "{no}: the newest observation wins over the older one that came after it"
        );
        assert_eq!(shipment.tracking_code, format!("T-{no}"));
    }
    let letters = eventually(WAIT, "one dead letter", || async {
        let letters = app.dead_letters().await;
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(
        letters[0]
            .1
            .contains("undecodable protobuf wmslink.sync.v1.WmsObserved"),
        "{letters:?}"
    );

    // Processed together: fewer transactions (each stamps its processed ids with its own start
    // time) than observations.
    let (observations, transactions): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT processed_at) FROM processed_messages
         WHERE consumer = $1",
    )
    .bind(OBSERVED_CONSUMER)
    .fetch_one(&app.db.pool)
    .await
    .expect("processed messages");
    assert_eq!(
        observations, 40,
        "every good observation is recorded as processed"
    );
    assert!(
        transactions < observations,
        "{observations} observations in {transactions} transactions"
    );
}
