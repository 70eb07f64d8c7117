//! One limit for order numbers at every entry (`wmslink_platform::shop::OrderNo`): the longest
//! one is accepted over gRPC and NATS, one character more is refused by both with the reason.

use tonic::Code;
use wmslink_platform::shop::MAX_ORDER_NO_LEN;
use wmslink_platform::validation::violations_of;
use wmslink_proto::orders::v1::{GetOrderRequest, ShippingStatus};

use crate::helpers::{order, shipment, spawn_app};

fn order_no(len: usize) -> String {
    format!("L-{}", "9".repeat(len - 2))
}

#[tokio::test]
async fn the_longest_order_number_passes_grpc_and_nats_and_a_longer_one_is_refused_with_the_reason()
{
    let app = spawn_app().await;
    app.make_shop_known("shop-a").await;
    let longest = order_no(MAX_ORDER_NO_LEN);
    let too_long = order_no(MAX_ORDER_NO_LEN + 1);

    // gRPC.
    app.upsert(&order("shop-a", &longest, 1, "new"))
        .await
        .expect("the longest order number is accepted");
    let refused = app
        .upsert(&order("shop-a", &too_long, 1, "new"))
        .await
        .expect_err("one more character is refused");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        violations_of(&refused),
        vec![(
            "order.order_no".to_owned(),
            format!("must be at most {MAX_ORDER_NO_LEN} characters")
        )]
    );
    let get = app
        .cart
        .clone()
        .get_order(GetOrderRequest {
            shop_id: "shop-a".into(),
            order_no: too_long.clone(),
        })
        .await
        .expect_err("refused");
    assert_eq!(get.code(), Code::InvalidArgument);
    assert_eq!(violations_of(&get)[0].0, "order_no");

    // NATS: the order snapshots, then the projection's shipment updates.
    let nats_longest = format!("N{}", &longest[1..]);
    app.publish_order(&order("shop-a", &too_long, 1, "new"))
        .await;
    app.publish_order(&order("shop-a", &nats_longest, 1, "new"))
        .await;
    app.wait_for_revision("shop-a", &nats_longest, 1).await;
    app.publish_shipment(&shipment(
        "shop-a",
        &too_long,
        1,
        ShippingStatus::Sent,
        20,
        "処理中",
    ))
    .await;
    app.publish_shipment(&shipment(
        "shop-a",
        &longest,
        1,
        ShippingStatus::Sent,
        20,
        "処理中",
    ))
    .await;
    app.wait_for_integration(
        "shop-a",
        &longest,
        "the projection of the longest",
        |status| status.wms_status_id == 20,
    )
    .await;

    let letters = app.wait_for_dead_letters(2).await;
    let reasons: Vec<&str> = letters
        .iter()
        .map(|letter| letter.reason.as_str())
        .collect();
    let expected = format!("order_no: must be at most {MAX_ORDER_NO_LEN} characters");
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons[0].contains(&format!("order.{expected}")),
        "{reasons:?}"
    );
    assert!(
        reasons[1].contains(&format!("shipment.{expected}")),
        "{reasons:?}"
    );
}
