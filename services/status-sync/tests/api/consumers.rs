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

#[tokio::test]
async fn shipment_updates_delivered_together_share_a_transaction_and_the_latest_wins() {
    let mut app = spawn_app().await;
    let shop = app.add_shop().await;

    // While status-sync is down the dispatcher goes on: three updates per order, the last one
    // of some arriving before an older one, and a bad message among them.
    app.sync.stop().await;
    let orders: Vec<String> = (0..20).map(|n| format!("B-{n:02}")).collect();
    for (n, no) in orders.iter().enumerate() {
        let sequences: &[i64] = if n % 4 == 0 { &[1, 3, 2] } else { &[1, 2, 3] };
        for &sequence in sequences {
            let status = match sequence {
                1 => ShippingStatus::Queued,
                2 => ShippingStatus::Sending,
                _ => ShippingStatus::Sent,
            };
            app.shipment(&shop, no, 100 + n as i64, status, sequence, days_ago(1))
                .await;
        }
        if n == 7 {
            publish_raw(&app.nats, &shop.id, "ship-bad", vec![0xff, 0xff, 0x01]).await;
        }
    }
    app.restart_sync().await;

    let pool = app.sync.db.pool.clone();
    let rows: Vec<(String, String, i64)> = eventually(WAIT, "every order at sequence 3", || {
        let pool = pool.clone();
        let shop = shop.id.clone();
        async move {
            let rows: Vec<(String, String, i64)> = sqlx::query_as(
                "SELECT order_no, shipping_status, sequence FROM watch_list
                  WHERE shop_id = $1 ORDER BY order_no",
            )
            .bind(shop)
            .fetch_all(&pool)
            .await
            .ok()?;
            (rows.len() == 20 && rows.iter().all(|(_, _, sequence)| *sequence == 3)).then_some(rows)
        }
    })
    .await;
    for (no, status, _) in &rows {
        assert_eq!(
            status, "SENT",
            "{no}: the newest update wins over the older one that came after it"
        );
    }
    let reasons = eventually(WAIT, "a dead letter", || async {
        let reasons = dead_letter_reasons(&app).await;
        (!reasons.is_empty()).then_some(reasons)
    })
    .await;
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].contains("undecodable protobuf"), "{reasons:?}");
    let processed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM processed_messages WHERE consumer = 'status-sync-shipments'",
    )
    .fetch_one(&pool)
    .await
    .expect("processed");
    assert_eq!(processed, 60, "every good message marked processed");
    // Updates delivered together were applied together: fewer transactions (each stamps
    // `updated_at` with its own start time) than orders.
    let transactions: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT updated_at) FROM watch_list WHERE shop_id = $1")
            .bind(&shop.id)
            .fetch_one(&pool)
            .await
            .expect("transactions");
    assert!(
        transactions < orders.len() as i64,
        "{} orders in {transactions} transactions",
        orders.len()
    );
}
