//! The watch-list consumer reads messages the way every consumer does (`Delivery::decode`,
//! `Delivery::shop`): proto3 JSON as well as protobuf, and the one order-number limit of every
//! entry (`wmslink_platform::shop::OrderNo`).

use wmslink_platform::consumer::DEAD_LETTER_REASON;
use wmslink_platform::nats::StreamKind;
use wmslink_platform::shop::{MAX_ORDER_NO_LEN, ShopId};
use wmslink_proto::dispatch::v1::{Shipment, ShipmentUpdated};
use wmslink_proto::orders::v1::ShippingStatus;
use wmslink_testkit::eventually;

use crate::helpers::*;

/// The reasons of every dead letter so far.
async fn dead_letter_reasons(app: &TestApp) -> Vec<String> {
    let Ok(mut stream) = app
        .nats
        .js
        .get_stream(app.nats.subjects.stream_name(StreamKind::DeadLetters))
        .await
    else {
        return Vec::new();
    };
    let Ok(info) = stream.info().await else {
        return Vec::new();
    };
    let state = info.state.clone();
    let mut reasons = Vec::new();
    if state.messages == 0 {
        return reasons;
    }
    for sequence in state.first_sequence..=state.last_sequence {
        if let Ok(message) = stream.get_raw_message(sequence).await
            && let Some(reason) = message.headers.get(DEAD_LETTER_REASON)
        {
            reasons.push(reason.as_str().to_owned());
        }
    }
    reasons
}

fn order_no(len: usize) -> String {
    format!("L-{}", "9".repeat(len - 2))
}

#[tokio::test]
async fn the_longest_order_number_is_watched_and_a_longer_one_is_refused_with_the_reason() {
    let app = spawn_app().await;
    let shop = app.add_shop().await;
    let longest = order_no(MAX_ORDER_NO_LEN);
    let too_long = order_no(MAX_ORDER_NO_LEN + 1);

    app.shipment(&shop, &too_long, 1, ShippingStatus::Sent, 1, days_ago(1))
        .await;
    app.shipment(&shop, &longest, 1, ShippingStatus::Sent, 1, days_ago(1))
        .await;
    app.wait_for_shipment(&shop, &longest, "SENT", 1).await;

    let reasons = eventually(WAIT, "a dead letter", || async {
        let reasons = dead_letter_reasons(&app).await;
        (!reasons.is_empty()).then_some(reasons)
    })
    .await;
    assert_eq!(
        reasons,
        [format!(
            "invalid shipment.order_no: must be at most {MAX_ORDER_NO_LEN} characters"
        )]
    );
}

#[tokio::test]
async fn a_shipment_update_in_proto3_json_is_applied() {
    let app = spawn_app().await;
    let shop = app.add_shop().await;
    let event = ShipmentUpdated {
        event_id: uuid::Uuid::now_v7().to_string(),
        shipment: Some(Shipment {
            shop_id: shop.id.clone(),
            order_no: "J-1".into(),
            shipping_status: ShippingStatus::Sent.into(),
            wms_order_id: 7,
            order_date: timestamp(days_ago(1)),
            ..Shipment::default()
        }),
        sequence: 3,
        occurred_at: None,
    };
    let json =
        wmslink_proto::json::encode("wmslink.dispatch.v1.ShipmentUpdated", &event).expect("JSON");
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, event.event_id.as_str());
    headers.insert("Content-Type", "application/json; charset=utf-8");
    let shop_id = ShopId::parse(&shop.id).expect("shop id");
    app.nats
        .js
        .publish_with_headers(
            app.nats.subjects.shipments_updated(&shop_id),
            headers,
            json.into(),
        )
        .await
        .expect("publish")
        .await
        .expect("stored");
    app.wait_for_shipment(&shop, "J-1", "SENT", 3).await;
    assert!(dead_letter_reasons(&app).await.is_empty());
}
