//! The outbox: a crash between commit and publish (or between publish and marking) loses and
//! duplicates nothing; the events of one order keep their order.

use std::collections::HashMap;

use wmslink_platform::nats::StreamKind;
use wmslink_proto::orders::v1::ChangeOrderStatusRequest;

use crate::helpers::{DEADLINE, OrderEvent, TestApp, order, spawn_app, spawn_app_with};

/// The relay marks rows published after JetStream acked them (so shortly after the events can
/// be seen in the stream).
async fn all_marked_published(app: &TestApp) {
    wmslink_testkit::eventually(DEADLINE, "every outbox row marked published", || async {
        let rows = app.outbox().await;
        rows.iter().all(|(_, published)| *published).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_event_committed_before_a_crash_is_published_exactly_once_after_restart() {
    // The relay is off: the service "dies" after the commit and before any publish.
    let mut app = spawn_app_with(|config| config.outbox.relay_enabled = false).await;
    app.make_shop_known("shop-a").await;
    app.upsert(&order("shop-a", "A-1", 1, "new"))
        .await
        .expect("stored");
    let subjects = app.nats.subjects.clone();
    let expected_subject = subjects.order_status_changed(&crate::helpers::shop_id("shop-a"));
    assert_eq!(app.outbox().await, vec![(expected_subject.clone(), false)]);
    assert!(
        app.stream_messages(StreamKind::Orders).await.is_empty(),
        "nothing published yet"
    );
    app.stop().await;

    app.restart_with(|config| config.outbox.relay_enabled = true)
        .await;
    let events = app.wait_for_events("shop-a", "A-1", 1).await;
    assert_eq!(events[0].describe(), "status_changed 1 ->new");

    // A later event arriving proves the relay is past the first one; it went out once.
    app.upsert(&order("shop-a", "SENTINEL", 1, "new"))
        .await
        .expect("sentinel");
    app.wait_for_events("shop-a", "SENTINEL", 1).await;
    assert_eq!(app.events_of("shop-a", "A-1").await.len(), 1);
    all_marked_published(&app).await;
}

#[tokio::test]
async fn a_crash_between_publish_and_marking_published_duplicates_nothing() {
    let mut app = spawn_app().await;
    app.make_shop_known("shop-a").await;
    app.upsert(&order("shop-a", "A-1", 1, "new"))
        .await
        .expect("stored");
    app.wait_for_events("shop-a", "A-1", 1).await;
    app.stop().await;
    // As if the relay had published but died before recording it.
    sqlx::query("UPDATE outbox SET published_at = NULL")
        .execute(&app.db.pool)
        .await
        .expect("unmark");

    app.restart_with(|_| {}).await;
    app.upsert(&order("shop-a", "SENTINEL", 1, "new"))
        .await
        .expect("sentinel");
    app.wait_for_events("shop-a", "SENTINEL", 1).await;
    all_marked_published(&app).await;
    // Re-sent with the same Nats-Msg-Id, deduplicated by JetStream.
    assert_eq!(app.events_of("shop-a", "A-1").await.len(), 1);
}

#[tokio::test]
async fn the_events_of_each_order_keep_their_order() {
    let app = spawn_app().await;
    app.make_shop_known("shop-a").await;
    let orders = ["A-1", "A-2", "A-3"];
    // Each order gets ten revisions, alternating status and content changes, from concurrent
    // writers (one per order) and the status RPC in between.
    let mut writers = Vec::new();
    for order_no in orders {
        let client = app.cart.clone();
        writers.push(tokio::spawn(async move {
            let mut client = client;
            for revision in 1..=10_i64 {
                let status = format!("s{}", revision / 2);
                let mut snapshot = order("shop-a", order_no, revision, &status);
                snapshot.note = format!("note {revision}");
                client
                    .upsert_order(wmslink_proto::orders::v1::UpsertOrderRequest {
                        order: Some(snapshot),
                    })
                    .await
                    .expect("upsert");
            }
            client
                .change_order_status(ChangeOrderStatusRequest {
                    shop_id: "shop-a".into(),
                    order_no: order_no.into(),
                    status_code: "done".into(),
                    expected_revision: 10,
                })
                .await
                .expect("change status");
        }));
    }
    for writer in writers {
        writer.await.expect("writer");
    }

    let mut expected = Vec::new();
    for revision in 1..=10_i64 {
        let status = format!("s{}", revision / 2);
        let previous = if revision == 1 {
            String::new()
        } else {
            format!("s{}", (revision - 1) / 2)
        };
        expected.push(if status == previous {
            format!("updated {revision}")
        } else {
            format!("status_changed {revision} {previous}->{status}")
        });
    }
    expected.push("status_changed 10 s5->done".to_owned());

    let mut per_order: HashMap<String, Vec<String>> = HashMap::new();
    for order_no in orders {
        let events = app
            .wait_for_events("shop-a", order_no, expected.len())
            .await;
        per_order.insert(
            order_no.to_owned(),
            events.iter().map(OrderEvent::describe).collect(),
        );
    }
    for order_no in orders {
        assert_eq!(per_order[order_no], expected, "events of {order_no}");
    }
}

/// An order of `bytes` bytes encoded (or 1 byte less, where a length prefix grows), made of
/// lines whose names are long Japanese texts (3 bytes a character), within every text bound.
fn order_of_size(shop: &str, order_no: &str, bytes: usize) -> wmslink_proto::orders::v1::Order {
    use prost::Message;
    let mut order = order(shop, order_no, 1, "new");
    let template = order.lines[0].clone();
    order.lines.clear();
    // Whole lines of 1,000 characters while they fit.
    loop {
        let mut next = template.clone();
        next.sku = format!("SKU-{}", order.lines.len());
        next.name = "商".repeat(1_000);
        order.lines.push(next);
        if order.encoded_len() > bytes {
            order.lines.pop();
            break;
        }
    }
    // Then a last line: its name three bytes at a time, its SKU one byte at a time.
    let mut last = template;
    last.sku = "S".into();
    last.name = String::new();
    order.lines.push(last);
    let index = order.lines.len() - 1;
    while order.encoded_len() + 3 <= bytes && order.lines[index].name.chars().count() < 1_000 {
        order.lines[index].name.push('商');
    }
    while order.encoded_len() < bytes {
        order.lines[index].sku.push('S');
    }
    if order.encoded_len() > bytes {
        order.lines[index].sku.pop();
    }
    assert!(order.encoded_len() <= bytes && order.encoded_len() + 1 >= bytes);
    assert!((1..=1_000).contains(&order.lines[index].sku.len()));
    order
}

/// I5: the largest order the service accepts produces events NATS takes. The test asks at the
/// configured limit; a service that bounds orders lower says its limit, and the test takes an
/// order of that size. Every event of it is published, none is moved aside.
#[tokio::test]
async fn the_largest_accepted_order_produces_publishable_events() {
    let app = spawn_app().await;
    app.make_shop_known("shop-a").await;
    let max_payload = app.nats.client.server_info().max_payload;
    let configured = app.config.orders.max_message_bytes;
    assert!(
        configured >= max_payload - 100,
        "the default limit is the NATS payload size or near it"
    );

    let mut largest = order_of_size("shop-a", "BIG-1", configured);
    if let Err(status) = app.upsert(&largest).await {
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        let violations = wmslink_platform::validation::violations_of(&status);
        let (_, reason) = violations
            .iter()
            .find(|(field, _)| field == "order")
            .unwrap_or_else(|| panic!("the size violation: {status:?}"));
        let limit: usize = reason
            .split("at most ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .expect("the limit in the reason");
        assert!(limit < configured);
        largest = order_of_size("shop-a", "BIG-1", limit);
        app.upsert(&largest)
            .await
            .expect("the largest order is accepted");
    }
    // A status change adds a second event of the same size.
    let mut changed = largest.clone();
    changed.revision = 2;
    changed.status_code = "paid".into();
    while prost::Message::encoded_len(&changed) > prost::Message::encoded_len(&largest) {
        changed.lines.last_mut().expect("a line").sku.pop();
    }
    app.upsert(&changed).await.expect("a newer revision");

    let events = app.wait_for_events("shop-a", "BIG-1", 2).await;
    assert_eq!(events.len(), 2);
    all_marked_published(&app).await;
    let aside: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox_unpublishable")
        .fetch_one(&app.db.pool)
        .await
        .expect("count");
    assert_eq!(aside, 0, "no event was moved aside");
}
