//! One limit for order numbers at every entry (`wmslink_platform::shop::OrderNo`, the same as
//! order-events'): the longest one is registered in the WMS, one character more is refused with
//! the reason, on both consumers and over gRPC.

use tonic::Code;
use wmslink_platform::shop::MAX_ORDER_NO_LEN;
use wmslink_platform::validation::violations_of;
use wmslink_proto::dispatch::v1::GetShipmentRequest;
use wmslink_proto::orders::v1::ShippingStatus;
use wmslink_proto::sync::v1::WmsObserved;
use wmslink_testkit::eventually;

use crate::helpers::*;

fn order_no(len: usize) -> String {
    let unique = unique_order_no();
    format!("{unique}{}", "9".repeat(len - unique.len()))
}

#[tokio::test]
async fn the_longest_order_number_is_sent_and_a_longer_one_is_refused_with_the_reason() {
    let app = spawn_app().await;
    let shop = app.shop().await;
    let longest = order_no(MAX_ORDER_NO_LEN);
    let too_long = order_no(MAX_ORDER_NO_LEN + 1);

    app.status_changed(&order(&shop, &too_long, "paid", 1))
        .await;
    app.observed(&WmsObserved {
        event_id: uuid::Uuid::now_v7().to_string(),
        shop_id: shop.id.clone(),
        order_no: too_long.clone(),
        wms_order_id: 1,
        status_id: 20,
        ..WmsObserved::default()
    })
    .await;
    app.status_changed(&order(&shop, &longest, "paid", 1)).await;
    let (sent, _) = app.wait_for(&shop, &longest, ShippingStatus::Sent).await;
    assert_eq!(app.wms_row(&shop, &longest).0.order_id, sent.wms_order_id);

    let letters = eventually(WAIT, "two dead letters", || async {
        let letters = app.dead_letters().await;
        (letters.len() >= 2).then_some(letters)
    })
    .await;
    let reasons: Vec<&str> = letters
        .iter()
        .map(|(_, reason, _)| reason.as_str())
        .collect();
    let limit = format!("must be at most {MAX_ORDER_NO_LEN} characters");
    assert!(
        reasons.contains(&format!("invalid order.order_no: {limit}").as_str()),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&format!("invalid order_no: {limit}").as_str()),
        "{reasons:?}"
    );
    assert_eq!(app.register_calls(&shop), 1, "only the longest was sent");

    let refused = app
        .reader
        .clone()
        .get_shipment(GetShipmentRequest {
            shop_id: shop.id.clone(),
            order_no: too_long,
        })
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        violations_of(&refused),
        vec![("order_no".to_owned(), limit)]
    );
}
