//! I5 on NATS: each bad message is dead-lettered with its reason and terminated, and the good
//! message published right behind it is still processed.

use async_nats::HeaderMap;
use prost::Message;
use wmslink_platform::nats::StreamKind;
use wmslink_proto::orders::v1::ShippingStatus;

use crate::helpers::{DEADLINE, TestApp, order, shipment, shop_id, spawn_app, spawn_app_with};

/// Publishes `payload` on the cart subject of `subject_shop`, then a good order behind it, and
/// checks the bad one was dead-lettered with a reason containing every `expected` text.
async fn dead_lettered_and_the_next_one_flows(
    app: &TestApp,
    subject_shop: &str,
    headers: HeaderMap,
    payload: Vec<u8>,
    expected: &[&str],
) {
    app.make_shop_known("shop-a").await;
    let subject = app
        .nats
        .subjects
        .cart_order_upserted(&shop_id(subject_shop));
    app.publish(subject.clone(), headers, payload.clone()).await;
    let good = order("shop-a", "GOOD-1", 1, "new");
    app.publish_order(&good).await;

    let view = app.wait_for_revision("shop-a", "GOOD-1", 1).await;
    assert_eq!(view.order.as_ref(), Some(&good));
    let letters = app.wait_for_dead_letters(1).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(letter.original_subject, subject);
    assert_eq!(
        letter.subject,
        app.nats.subjects.dead_letter(&subject),
        "dead letter subject"
    );
    assert_eq!(letter.payload, payload, "the original payload is kept");
    for text in expected {
        assert!(
            letter.reason.contains(text),
            "reason {:?} lacks {text:?}",
            letter.reason
        );
    }
    // Terminated: nothing pending or redelivered on the cart stream's consumer.
    wmslink_testkit::eventually(
        DEADLINE,
        "every cart message acked or terminated",
        || async {
            let consumer: async_nats::jetstream::consumer::PullConsumer = app
                .nats
                .js
                .get_consumer_from_stream(
                    wmslink_order_events::consumers::CART_ORDERS_CONSUMER,
                    app.nats.subjects.stream_name(StreamKind::CartOrders),
                )
                .await
                .expect("consumer");
            let info = consumer.cached_info();
            (info.num_pending == 0 && info.num_ack_pending == 0 && info.num_redelivered == 0)
                .then_some(())
        },
    )
    .await;
}

fn json_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("Content-Type", "application/json");
    headers
}

#[tokio::test]
async fn undecodable_protobuf() {
    let app = spawn_app().await;
    dead_lettered_and_the_next_one_flows(
        &app,
        "shop-a",
        HeaderMap::new(),
        vec![0xff, 0xff, 0xff, 0x01, 0x02],
        &["undecodable protobuf wmslink.orders.v1.Order"],
    )
    .await;
}

#[tokio::test]
async fn undecodable_json() {
    let app = spawn_app().await;
    dead_lettered_and_the_next_one_flows(
        &app,
        "shop-a",
        json_headers(),
        br#"{"shopId":"shop-a","orderNo":"X-1","revision":"1","colour":"red"}"#.to_vec(),
        &["undecodable JSON", "colour"],
    )
    .await;
}

#[tokio::test]
async fn unsupported_content_type() {
    let app = spawn_app().await;
    let mut headers = HeaderMap::new();
    headers.insert("Content-Type", "text/csv");
    dead_lettered_and_the_next_one_flows(
        &app,
        "shop-a",
        headers,
        b"shop-a,X-1,1".to_vec(),
        &["unsupported content type 'text/csv'"],
    )
    .await;
}

#[tokio::test]
async fn unknown_shop() {
    let app = spawn_app().await;
    dead_lettered_and_the_next_one_flows(
        &app,
        "ghost-shop",
        HeaderMap::new(),
        order("ghost-shop", "X-1", 1, "new").encode_to_vec(),
        &["shop 'ghost-shop' has no WMS integration settings"],
    )
    .await;
    assert!(app.get("ghost-shop", "X-1").await.is_none());
}

#[tokio::test]
async fn bad_values_are_all_listed() {
    let app = spawn_app().await;
    let mut bad = order("shop-a", "X-1", 0, "");
    bad.lines[0].quantity = 0;
    bad.order_date = None;
    dead_lettered_and_the_next_one_flows(
        &app,
        "shop-a",
        HeaderMap::new(),
        bad.encode_to_vec(),
        &[
            "invalid order",
            "order.revision: must be at least 1",
            "order.order_date: must be set",
            "order.status_code: must not be empty",
            "order.lines[0].quantity",
        ],
    )
    .await;
    assert!(app.get("shop-a", "X-1").await.is_none());
}

#[tokio::test]
async fn too_big() {
    let app = spawn_app_with(|config| config.orders.max_message_bytes = 32 * 1024).await;
    dead_lettered_and_the_next_one_flows(
        &app,
        "shop-a",
        HeaderMap::new(),
        vec![b'x'; 40 * 1024],
        &["message too big: 40960 bytes; at most 32768"],
    )
    .await;
}

#[tokio::test]
async fn the_subject_names_another_shop() {
    let app = spawn_app().await;
    app.make_shop_known("shop-b").await;
    // An order of shop-b published on shop-a's subject.
    dead_lettered_and_the_next_one_flows(
        &app,
        "shop-a",
        HeaderMap::new(),
        order("shop-b", "X-1", 1, "new").encode_to_vec(),
        &["tenancy", "shop 'shop-a'", "'shop-b'"],
    )
    .await;
    assert!(app.get("shop-b", "X-1").await.is_none());
}

#[tokio::test]
async fn revision_conflict() {
    let app = spawn_app().await;
    app.make_shop_known("shop-a").await;
    let first = order("shop-a", "X-1", 1, "new");
    app.publish_order(&first).await;
    app.wait_for_revision("shop-a", "X-1", 1).await;
    let mut other = first.clone();
    other.note = "other content, same revision".into();
    dead_lettered_and_the_next_one_flows(
        &app,
        "shop-a",
        HeaderMap::new(),
        other.encode_to_vec(),
        &["revision conflict", "X-1", "revision 1"],
    )
    .await;
    let stored = app.get("shop-a", "X-1").await.and_then(|v| v.order);
    assert_eq!(stored, Some(first));
}

#[tokio::test]
async fn bad_shipment_updates_are_dead_lettered_and_the_next_one_applies() {
    let app = spawn_app().await;
    app.make_shop_known("shop-a").await;
    app.upsert(&order("shop-a", "A-1", 1, "new"))
        .await
        .expect("order");
    let subject = app.nats.subjects.shipments_updated(&shop_id("shop-a"));
    app.publish(subject.clone(), HeaderMap::new(), b"\xff\xff".to_vec())
        .await;
    // A shipment of shop-b on shop-a's subject.
    app.publish(
        subject.clone(),
        HeaderMap::new(),
        shipment("shop-b", "A-1", 1, ShippingStatus::Sent, 20, "処理中").encode_to_vec(),
    )
    .await;
    // Bad values.
    app.publish(
        subject.clone(),
        HeaderMap::new(),
        shipment("shop-a", "A 1", 0, ShippingStatus::Sent, 20, "処理中").encode_to_vec(),
    )
    .await;
    app.publish_shipment(&shipment(
        "shop-a",
        "A-1",
        1,
        ShippingStatus::Sent,
        10,
        "出荷指示済み",
    ))
    .await;

    app.wait_for_integration("shop-a", "A-1", "good update applied", |i| {
        i.wms_status_id == 10
    })
    .await;
    let letters = app.wait_for_dead_letters(3).await;
    let reasons: Vec<&str> = letters.iter().map(|l| l.reason.as_str()).collect();
    assert_eq!(letters.len(), 3, "{reasons:?}");
    assert!(reasons[0].contains("undecodable protobuf wmslink.dispatch.v1.ShipmentUpdated"));
    assert!(reasons[1].contains("tenancy"), "{reasons:?}");
    assert!(
        reasons[2].contains("sequence: must be at least 1"),
        "{reasons:?}"
    );
    assert!(reasons[2].contains("shipment.order_no"), "{reasons:?}");
    assert!(letters.iter().all(|l| l.original_subject == subject));
}

#[tokio::test]
async fn bad_settings_events_are_dead_lettered() {
    let app = spawn_app().await;
    let subject = app.nats.subjects.settings_changed(&shop_id("shop-a"));
    app.publish(subject.clone(), HeaderMap::new(), b"\xff\xff".to_vec())
        .await;
    // A good one behind it still makes the shop known.
    app.make_shop_known("shop-a").await;
    let letters = app.wait_for_dead_letters(1).await;
    assert!(
        letters[0]
            .reason
            .contains("undecodable protobuf wmslink.settings.v1.SettingsChanged"),
        "{letters:?}"
    );
}
