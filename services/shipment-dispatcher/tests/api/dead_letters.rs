//! I5: invalid messages are dead-lettered with the reason and never block the ones behind.

use wmslink_platform::shop::ShopId;
use wmslink_proto::orders::v1::{OrderStatusChanged, ShippingStatus};
use wmslink_testkit::eventually;

use crate::helpers::*;

#[tokio::test]
async fn bad_events_are_dead_lettered_with_the_reason_and_do_not_block_the_next() {
    let app = spawn_app().await;
    let shop = app.shop().await;
    let shop_id = ShopId::parse(&shop.id).expect("shop id");
    let subject = app.nats.subjects.order_status_changed(&shop_id);

    // Not protobuf at all.
    app.raw(subject.clone(), b"\xff\xff this is not an event".to_vec())
        .await;
    // A payload for another shop than its subject.
    let other = Shop {
        id: "some-other-shop".into(),
        key: String::new(),
    };
    let foreign = OrderStatusChanged {
        event_id: "x".into(),
        order: Some(order(&other, &unique_order_no(), "paid", 1)),
        revision: 1,
        ..OrderStatusChanged::default()
    };
    app.raw(subject.clone(), prost::Message::encode_to_vec(&foreign))
        .await;
    // No order number.
    let nameless = OrderStatusChanged {
        event_id: "y".into(),
        order: Some(order(&shop, "", "paid", 1)),
        revision: 1,
        ..OrderStatusChanged::default()
    };
    app.raw(subject.clone(), prost::Message::encode_to_vec(&nameless))
        .await;
    // A bad observation.
    app.raw(
        app.nats.subjects.wms_observed(&shop_id),
        b"garbage".to_vec(),
    )
    .await;

    // The good event behind them goes through.
    let no = unique_order_no();
    app.status_changed(&order(&shop, &no, "paid", 1)).await;
    app.wait_for(&shop, &no, ShippingStatus::Sent).await;

    let letters = eventually(WAIT, "four dead letters", || async {
        let letters = app.dead_letters().await;
        (letters.len() >= 4).then_some(letters)
    })
    .await;
    assert_eq!(letters.len(), 4, "{letters:?}");
    let reasons: Vec<&str> = letters
        .iter()
        .map(|(_, reason, _)| reason.as_str())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("undecodable protobuf wmslink.orders.v1.OrderStatusChanged")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("tenancy: the subject")
            && r.contains("order.shop_id is 'some-other-shop'")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("invalid order.order_no: must not be empty")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("undecodable protobuf wmslink.sync.v1.WmsObserved")),
        "{reasons:?}"
    );
    assert!(
        letters
            .iter()
            .any(|(original, _, payload)| original == &subject
                && payload.starts_with(b"\xff\xff this is not"))
    );
}
