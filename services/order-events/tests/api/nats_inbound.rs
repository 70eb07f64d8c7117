//! Orders arriving on NATS: protobuf and proto3 JSON (the README's example), the revision rules.

use async_nats::HeaderMap;
use prost::Message;

use crate::helpers::{OrderEvent, order, spawn_app};

/// The JSON body of the README's `nats pub` example, exactly as written there.
fn readme_json_example() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let command =
        "nats pub --header Content-Type:application/json cart.orders.demo-shop.upserted '";
    let start = readme
        .find(command)
        .expect("the nats pub example in the README")
        + command.len();
    let length = readme[start..].find('\'').expect("closing quote");
    readme[start..start + length].to_owned()
}

#[tokio::test]
async fn a_protobuf_order_on_nats_is_stored_and_published() {
    let app = spawn_app().await;
    app.make_shop_known("shop-a").await;
    let sent = order("shop-a", "N-1", 1, "new");
    app.publish_order(&sent).await;

    let view = app.wait_for_revision("shop-a", "N-1", 1).await;
    assert_eq!(view.order.as_ref(), Some(&sent));
    let events = app.wait_for_events("shop-a", "N-1", 1).await;
    assert_eq!(events[0].describe(), "status_changed 1 ->new");
    assert!(app.dead_letters().await.is_empty());
}

#[tokio::test]
async fn the_readme_json_example_is_accepted() {
    let app = spawn_app().await;
    app.make_shop_known("demo-shop").await;
    let body = readme_json_example();
    // Exactly what `nats pub --header Content-Type:application/json ...` sends: a core NATS
    // publish with that header.
    let mut headers = HeaderMap::new();
    headers.insert("Content-Type", "application/json");
    let subject = app
        .nats
        .subjects
        .cart_order_upserted(&crate::helpers::shop_id("demo-shop"));
    app.nats
        .client
        .publish_with_headers(subject, headers, body.clone().into_bytes().into())
        .await
        .expect("publish");
    app.nats.client.flush().await.expect("flush");

    let json: serde_json::Value = serde_json::from_str(&body).expect("the example is JSON");
    let order_no = json["orderNo"].as_str().expect("orderNo");
    let view = app.wait_for_revision("demo-shop", order_no, 1).await;
    let stored = view.order.expect("order");
    assert_eq!(
        stored.status_code,
        json["statusCode"].as_str().unwrap_or_default()
    );
    assert_eq!(
        stored.shipping.as_ref().map(|a| a.name.as_str()),
        json["shipping"]["name"].as_str()
    );
    assert_eq!(
        stored.lines.len(),
        json["lines"].as_array().map_or(0, Vec::len)
    );
    assert_eq!(stored.lines[0].quantity, 2);
    assert_eq!(
        stored.amounts.as_ref().map(|a| a.total),
        json["amounts"]["total"]
            .as_str()
            .and_then(|t| t.parse().ok())
    );
    assert!(!stored.extra.is_empty());
    let events = app.wait_for_events("demo-shop", order_no, 1).await;
    assert_eq!(
        events[0].describe(),
        format!("status_changed 1 ->{}", stored.status_code)
    );
}

#[tokio::test]
async fn json_and_protobuf_snapshots_of_one_order_are_the_same_order() {
    let app = spawn_app().await;
    app.make_shop_known("shop-a").await;
    let v1 = order("shop-a", "J-1", 1, "new");
    let json = wmslink_proto::json::encode("wmslink.orders.v1.Order", &v1).expect("to JSON");
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "application/json; charset=utf-8");
    let subject = app
        .nats
        .subjects
        .cart_order_upserted(&crate::helpers::shop_id("shop-a"));
    app.publish(subject.clone(), headers, json).await;
    app.wait_for_revision("shop-a", "J-1", 1).await;

    // The same revision again, in protobuf, is the same content: unchanged, no new event.
    let mut headers = HeaderMap::new();
    headers.insert("Content-Type", "application/protobuf");
    app.publish(subject, headers, v1.encode_to_vec()).await;
    let v2 = order("shop-a", "J-1", 2, "paid");
    app.publish_order(&v2).await;
    app.wait_for_revision("shop-a", "J-1", 2).await;
    let described: Vec<String> = app
        .wait_for_events("shop-a", "J-1", 2)
        .await
        .iter()
        .map(OrderEvent::describe)
        .collect();
    assert_eq!(
        described,
        vec!["status_changed 1 ->new", "status_changed 2 new->paid"]
    );
    assert!(app.dead_letters().await.is_empty());
}

#[tokio::test]
async fn revision_rules_on_nats() {
    let app = spawn_app().await;
    app.make_shop_known("shop-a").await;
    let v2 = order("shop-a", "R-1", 2, "paid");
    let v1 = order("shop-a", "R-1", 1, "new");
    let mut v3 = order("shop-a", "R-1", 3, "paid");
    v3.note = "gift".into();

    app.publish_order(&v2).await;
    app.publish_order(&v1).await; // older: ignored, counted
    app.publish_order(&v2).await; // same: unchanged
    app.publish_order(&v3).await; // newer content: updated
    let view = app.wait_for_revision("shop-a", "R-1", 3).await;
    assert_eq!(view.order.as_ref(), Some(&v3));

    let counted: i64 = sqlx::query_scalar(
        "SELECT stale_revisions_ignored FROM orders WHERE shop_id = 'shop-a' AND order_no = 'R-1'",
    )
    .fetch_one(&app.db.pool)
    .await
    .expect("counter");
    assert_eq!(counted, 1);
    let described: Vec<String> = app
        .wait_for_events("shop-a", "R-1", 2)
        .await
        .iter()
        .map(OrderEvent::describe)
        .collect();
    assert_eq!(described, vec!["status_changed 2 ->paid", "updated 3"]);
    assert!(app.dead_letters().await.is_empty(), "all acked");
}

/// Two shops' carts that number their messages alike (the same `Nats-Msg-Id`): the second
/// shop's order is stored too. The consumer records the subject (which names the shop) with
/// the id, so one shop's id never marks another shop's message as processed.
#[tokio::test]
async fn two_shops_publishing_the_same_msg_id_are_both_stored() {
    use std::time::Duration;
    use wmslink_platform::nats::StreamKind;
    use wmslink_platform::shop::ShopId;

    let app = spawn_app().await;
    app.make_shop_known("shop-a").await;
    app.make_shop_known("shop-b").await;
    // JetStream's own duplicate window is per stream and keyed by the id alone (see
    // docs/security.md): shortened here so the second publication reaches the stream.
    let name = app.nats.subjects.stream_name(StreamKind::CartOrders);
    let mut stream = app.nats.js.get_stream(&name).await.expect("stream");
    let mut config = stream.info().await.expect("info").config.clone();
    config.duplicate_window = Duration::from_millis(100);
    app.nats.js.update_stream(&config).await.expect("window");

    let publish = |order: wmslink_proto::orders::v1::Order| {
        let js = app.nats.js.clone();
        let subject = app
            .nats
            .subjects
            .cart_order_upserted(&ShopId::parse(&order.shop_id).expect("shop"));
        async move {
            let mut headers = HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, "cart-message-1");
            js.publish_with_headers(subject, headers, order.encode_to_vec().into())
                .await
                .expect("publish")
                .await
                .expect("publish ack")
        }
    };
    let a = order("shop-a", "SAME-1", 1, "new");
    publish(a.clone()).await;
    assert_eq!(
        app.wait_for_revision("shop-a", "SAME-1", 1).await.order,
        Some(a)
    );

    let b = order("shop-b", "SAME-1", 1, "paid");
    wmslink_testkit::eventually(
        Duration::from_secs(10),
        "JetStream stores shop-b's message past its window",
        || {
            let ack = publish(b.clone());
            async move { (!ack.await.duplicate).then_some(()) }
        },
    )
    .await;
    assert_eq!(
        app.wait_for_revision("shop-b", "SAME-1", 1).await.order,
        Some(b)
    );
    assert!(app.dead_letters().await.is_empty());
}
