//! What changed in the WMS reaches `wms.{shop}.observed`, once; the watch list follows the
//! dispatcher's events.

use futures::StreamExt;
use prost::Message;
use serde_json::json;
use wmslink_platform::consumer::DEAD_LETTER_REASON;
use wmslink_platform::nats::StreamKind;
use wmslink_proto::orders::v1::ShippingStatus;
use wmslink_testkit::eventually;

use crate::helpers::*;

#[tokio::test]
async fn status_progressions_are_published_once_each() {
    let app = spawn_app().await;
    let shop = app.add_shop().await;
    let ids = app
        .sent_orders(
            &shop,
            &[("A-1".into(), days_ago(2)), ("A-2".into(), days_ago(3))],
        )
        .await;

    let first = app.run_sync(&shop).await;
    assert_eq!(first.outcome, "succeeded", "{first:?}");
    assert_eq!(
        (first.asked, first.changed, first.errors),
        (2, 2, 0),
        "{first:?}"
    );
    let events = app.observed_by_order(&shop).await;
    let a1 = &events["A-1"];
    assert_eq!(a1.len(), 1);
    assert_eq!(a1[0].shop_id, shop.id);
    assert_eq!(a1[0].wms_order_id, ids["A-1"]);
    assert_eq!(
        (a1[0].status_id, a1[0].status_name.as_str()),
        (50, "出荷待ち")
    );
    assert!(!a1[0].cancelled && !a1[0].shipped);
    assert!(a1[0].wms_updated_at.is_some() && a1[0].observed_at.is_some());

    // Nothing changed: nothing enqueued, nothing published.
    let again = app.run_sync(&shop).await;
    assert_eq!((again.asked, again.changed), (2, 0), "{again:?}");
    assert_eq!(app.observed(&shop).await.len(), 2);

    app.patch_order(&shop, ids["A-1"], json!({ "status_id": 20 }))
        .await;
    let moved = app.run_sync(&shop).await;
    assert_eq!(moved.changed, 1, "{moved:?}");
    app.patch_order(&shop, ids["A-1"], json!({ "status_id": 90 }))
        .await;
    app.run_sync(&shop).await;

    let events = app.observed_by_order(&shop).await;
    let statuses: Vec<(i32, String)> = events["A-1"]
        .iter()
        .map(|e| (e.status_id, e.status_name.clone()))
        .collect();
    assert_eq!(
        statuses,
        vec![
            (50, "出荷待ち".to_owned()),
            (20, "処理中".to_owned()),
            (90, "出荷準備中/出荷作業中".to_owned())
        ]
    );
    assert_eq!(events["A-2"].len(), 1, "A-2 never changed");
}

#[tokio::test]
async fn tracking_codes_arrive_and_shipped_orders_are_watched_until_delivered() {
    let app = spawn_app().await;
    let shop = app.add_shop().await;
    let date = days_ago(1);
    let ids = app.sent_orders(&shop, &[("T-1".into(), date)]).await;
    app.run_sync(&shop).await;

    let shipping_date = chrono::Utc::now()
        .date_naive()
        .format("%Y-%m-%d")
        .to_string();
    app.patch_order(
        &shop,
        ids["T-1"],
        json!({
            "status_id": 100,
            "shipped_flag": 1,
            "tracking_code": "1234-5678-9012",
            "shipping_date": shipping_date,
            "shipping_status_id": 5
        }),
    )
    .await;
    let run = app.run_sync(&shop).await;
    assert_eq!(run.changed, 1, "{run:?}");
    let shipped = app.observed(&shop).await.pop().expect("an event");
    assert!(shipped.shipped);
    assert_eq!(shipped.tracking_code, "1234-5678-9012");
    assert_eq!(shipped.shipping_date, shipping_date);
    assert_eq!(
        (
            shipped.shipping_status_id,
            shipped.shipping_status_name.as_str()
        ),
        (5, "依頼受付")
    );

    // The dispatcher applies it; the shipped order stays watched for its carrier status.
    app.shipment(&shop, "T-1", ids["T-1"], ShippingStatus::Shipped, 2, date)
        .await;
    app.wait_for_shipment(&shop, "T-1", "SHIPPED", 2).await;
    let still = app.run_sync(&shop).await;
    assert_eq!((still.asked, still.changed), (1, 0), "{still:?}");

    app.patch_order(&shop, ids["T-1"], json!({ "shipping_status_id": 1 }))
        .await;
    app.run_sync(&shop).await;
    let delivered = app.observed(&shop).await.pop().expect("an event");
    assert_eq!(
        (
            delivered.shipping_status_id,
            delivered.shipping_status_name.as_str()
        ),
        (1, "配達完了")
    );
    // Delivered is final: no longer asked about.
    let after = app.run_sync(&shop).await;
    assert_eq!(after.asked, 0, "{after:?}");
}

#[tokio::test]
async fn only_newer_sequences_apply_and_settled_shipments_leave_the_watch_list() {
    let app = spawn_app().await;
    let shop = app.add_shop().await;
    let date = days_ago(1);
    let ids = app
        .sent_orders(&shop, &[("S-1".into(), date), ("S-2".into(), date)])
        .await;

    // Newer first, then an older (redelivered, reordered) one: the older is ignored.
    app.shipment(&shop, "S-1", ids["S-1"], ShippingStatus::Cancelled, 5, date)
        .await;
    app.wait_for_shipment(&shop, "S-1", "CANCELLED", 5).await;
    app.shipment(&shop, "S-1", ids["S-1"], ShippingStatus::Sent, 3, date)
        .await;
    // A later message of another order shows the older one was consumed by then.
    app.shipment(
        &shop,
        "S-2",
        ids["S-2"],
        ShippingStatus::CancelRequested,
        2,
        date,
    )
    .await;
    app.wait_for_shipment(&shop, "S-2", "CANCEL_REQUESTED", 2)
        .await;
    app.wait_for_shipment(&shop, "S-1", "CANCELLED", 5).await;

    let run = app.run_sync(&shop).await;
    assert_eq!(run.asked, 1, "only S-2 is still watched: {run:?}");
    let events = app.observed_by_order(&shop).await;
    assert!(!events.contains_key("S-1"), "{events:?}");
}

#[tokio::test]
async fn bad_shipment_messages_are_dead_lettered_and_do_not_block_the_next() {
    let app = spawn_app().await;
    let shop = app.add_shop().await;
    let other = app.add_shop().await;

    publish_raw(&app.nats, &shop.id, "garbage-1", vec![0xff, 0x01, 0x02]).await;
    // Another tenant's shipment on this shop's subject.
    let event = wmslink_proto::dispatch::v1::ShipmentUpdated {
        event_id: "wrong-tenant".into(),
        shipment: Some(wmslink_proto::dispatch::v1::Shipment {
            shop_id: other.id.clone(),
            order_no: "X-1".into(),
            shipping_status: ShippingStatus::Sent.into(),
            wms_order_id: 1,
            ..Default::default()
        }),
        sequence: 1,
        occurred_at: None,
    };
    publish_raw(
        &app.nats,
        &shop.id,
        "wrong-tenant",
        prost::Message::encode_to_vec(&event),
    )
    .await;
    app.sent_orders(&shop, &[("OK-1".into(), days_ago(1))])
        .await;

    let stream = app
        .nats
        .js
        .get_stream(app.nats.subjects.stream_name(StreamKind::DeadLetters))
        .await
        .expect("dead-letter stream");
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            filter_subject: app.nats.subjects.dead_letters_all(),
            ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let mut reasons = Vec::new();
    while reasons.len() < 2 {
        let message = tokio::time::timeout(WAIT, messages.next())
            .await
            .expect("dead letters in time")
            .expect("a message")
            .expect("no error");
        let reason = message
            .headers
            .as_ref()
            .and_then(|h| h.get(DEAD_LETTER_REASON))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        reasons.push(reason);
    }
    assert!(
        reasons[0].contains("undecodable protobuf wmslink.dispatch.v1.ShipmentUpdated"),
        "{reasons:?}"
    );
    assert!(reasons[1].contains("tenancy: the subject"), "{reasons:?}");

    let known: i64 = sqlx::query_scalar("SELECT count(*) FROM watch_list WHERE shop_id = $1")
        .bind(&other.id)
        .fetch_one(&app.sync.db.pool)
        .await
        .expect("count");
    assert_eq!(known, 0, "nothing stored for the other tenant");
}

/// A lost `wms.{shop}.observed` must not leave R4 or the order list stale: a full pass publishes
/// again what the dispatcher's shipment updates still do not reflect, and nothing else.
#[tokio::test]
async fn an_observation_the_dispatcher_never_applied_is_published_again_on_a_full_pass() {
    let app = spawn_app_with(wmslink_wms_simulator::SimConfig::for_tests(), |config| {
        config.sync.reconcile_after_ms = 1_000;
    })
    .await;
    let shop = app.add_shop().await;
    let date = days_ago(1);
    let ids = app
        .sent_orders(&shop, &[("LOST-1".into(), date), ("GOT-1".into(), date)])
        .await;
    let first = app.run_sync(&shop).await;
    assert_eq!(first.changed, 2, "{first:?}");

    // The dispatcher applied GOT-1's observation (its update carries the WMS status); it never
    // heard of LOST-1's.
    let mut applied = shipment_event(
        &shop.id,
        "GOT-1",
        ids["GOT-1"],
        ShippingStatus::Sent,
        2,
        date,
    );
    if let Some(shipment) = applied.shipment.as_mut() {
        shipment.wms_status_id = 50;
    }
    publish_raw(
        &app.nats,
        &shop.id,
        &applied.event_id,
        applied.encode_to_vec(),
    )
    .await;
    app.wait_for_shipment(&shop, "GOT-1", "SENT", 2).await;

    let events = eventually(WAIT, "LOST-1 published again", || async {
        app.run_sync(&shop).await;
        let events = app.observed_by_order(&shop).await;
        (events["LOST-1"].len() >= 2).then_some(events)
    })
    .await;
    let again = &events["LOST-1"];
    assert_eq!(
        (again[1].status_id, again[1].wms_order_id),
        (again[0].status_id, ids["LOST-1"])
    );
    assert_eq!(events["GOT-1"].len(), 1, "reflected: not published again");
}
