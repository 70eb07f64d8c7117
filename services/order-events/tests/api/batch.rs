//! Cart messages and shipment updates delivered together are taken as a batch: stored in one
//! transaction with one commit, in stream order per order, and each bad one refused or
//! dead-lettered on its own.

use async_nats::HeaderMap;
use prost::Message;

use wmslink_proto::orders::v1::ShippingStatus;
use wmslink_testkit::eventually;

use crate::helpers::{DEADLINE, OrderEvent, order, shipment, shop_id, spawn_app};

fn with_id(id: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, id);
    headers
}

#[tokio::test]
async fn messages_delivered_together_share_a_transaction_and_a_bad_one_is_dead_lettered_alone() {
    let mut app = spawn_app().await;
    app.make_shop_known("shop-a").await;
    let existing = order("shop-a", "C-1", 1, "new");
    app.publish_order(&existing).await;
    app.wait_for_revision("shop-a", "C-1", 1).await;

    // While the service is down the cart goes on: good orders with bad messages among them, so
    // that they are delivered together when it is back.
    app.stop().await;
    let subject = app.nats.subjects.cart_order_upserted(&shop_id("shop-a"));
    let mut good = Vec::new();
    for n in 0..40 {
        let sent = order("shop-a", &format!("B-{n:02}"), 1, "new");
        app.publish(
            subject.clone(),
            with_id(&format!("good-{n}")),
            sent.encode_to_vec(),
        )
        .await;
        good.push(sent);
        match n {
            5 => {
                let payload = vec![0xff, 0xff, 0xff, 0x01, 0x02];
                app.publish(subject.clone(), with_id("undecodable"), payload)
                    .await;
            }
            10 => {
                let invalid = order("shop-a", "X-1", 0, "");
                app.publish(subject.clone(), with_id("invalid"), invalid.encode_to_vec())
                    .await;
            }
            15 => {
                let ghost = order("ghost-shop", "G-1", 1, "new");
                let ghost_subject = app
                    .nats
                    .subjects
                    .cart_order_upserted(&shop_id("ghost-shop"));
                app.publish(
                    ghost_subject,
                    with_id("unknown-shop"),
                    ghost.encode_to_vec(),
                )
                .await;
            }
            20 => {
                let mut conflict = existing.clone();
                conflict.note = "other content, same revision".into();
                app.publish(
                    subject.clone(),
                    with_id("conflict"),
                    conflict.encode_to_vec(),
                )
                .await;
            }
            _ => {}
        }
    }
    // A second snapshot of an order in the same delivery sees the first one's effect.
    let b00_v2 = order("shop-a", "B-00", 2, "paid");
    app.publish(
        subject.clone(),
        with_id("good-b00-v2"),
        b00_v2.encode_to_vec(),
    )
    .await;
    app.restart_with(|_| {}).await;

    let view = app.wait_for_revision("shop-a", "B-00", 2).await;
    assert_eq!(view.order.as_ref(), Some(&b00_v2));
    for sent in &good[1..] {
        let view = app.wait_for_revision("shop-a", &sent.order_no, 1).await;
        assert_eq!(view.order.as_ref(), Some(sent));
    }
    let described: Vec<String> = app
        .wait_for_events("shop-a", "B-00", 2)
        .await
        .iter()
        .map(OrderEvent::describe)
        .collect();
    assert_eq!(
        described,
        ["status_changed 1 ->new", "status_changed 2 new->paid"]
    );

    let letters = app.wait_for_dead_letters(4).await;
    let mut reasons: Vec<&str> = letters.iter().map(|l| l.reason.as_str()).collect();
    reasons.sort_unstable();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    for (reason, expected) in reasons.iter().zip([
        "invalid order",
        "revision conflict",
        "shop 'ghost-shop' has no WMS integration settings",
        "undecodable protobuf",
    ]) {
        assert!(reason.contains(expected), "{reason:?} lacks {expected:?}");
    }
    let stored = app.get("shop-a", "C-1").await.and_then(|view| view.order);
    assert_eq!(
        stored.as_ref(),
        Some(&existing),
        "the conflict changed nothing"
    );
    assert!(app.get("ghost-shop", "G-1").await.is_none());

    // Every stored message is recorded as processed; the refused ones are not (as if each had
    // had a transaction of its own that rolled back).
    let processed: Vec<String> = sqlx::query_scalar(
        "SELECT split_part(msg_id, ' ', 2) FROM processed_messages
         WHERE consumer = $1 AND split_part(msg_id, ' ', 2) NOT LIKE '%:%'",
    )
    .bind(wmslink_order_events::consumers::CART_ORDERS_CONSUMER)
    .fetch_all(&app.db.pool)
    .await
    .expect("processed messages");
    let mut expected: Vec<String> = (0..40).map(|n| format!("good-{n}")).collect();
    expected.push("good-b00-v2".into());
    let mut processed_sorted = processed.clone();
    processed_sorted.sort_unstable();
    expected.sort_unstable();
    assert_eq!(processed_sorted, expected);

    // Orders delivered together were stored together: fewer transactions (each stamps its
    // orders' `received_at` with its own start time) than orders.
    let transactions: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT received_at) FROM orders WHERE order_no LIKE 'B-%'",
    )
    .fetch_one(&app.db.pool)
    .await
    .expect("transactions");
    assert!(
        transactions < good.len() as i64,
        "{} orders in {transactions} transactions",
        good.len()
    );
}

#[tokio::test]
async fn shipment_updates_delivered_together_share_a_transaction_and_the_latest_wins() {
    let mut app = spawn_app().await;
    app.make_shop_known("shop-a").await;

    // While the service is down the dispatcher goes on: three updates per order, the last one
    // of some arriving before an older one, and a bad message among them.
    app.stop().await;
    let subject = app.nats.subjects.shipments_updated(&shop_id("shop-a"));
    let orders: Vec<String> = (0..20).map(|n| format!("S-{n:02}")).collect();
    for (n, no) in orders.iter().enumerate() {
        let sequences: &[i64] = if n % 4 == 0 { &[1, 3, 2] } else { &[1, 2, 3] };
        for &sequence in sequences {
            let status = match sequence {
                1 => ShippingStatus::Queued,
                2 => ShippingStatus::Sending,
                _ => ShippingStatus::Sent,
            };
            let update = shipment("shop-a", no, sequence, status, sequence as i32, "");
            app.publish(
                subject.clone(),
                with_id(&format!("ship-{no}-{sequence}")),
                update.encode_to_vec(),
            )
            .await;
        }
        if n == 7 {
            app.publish(subject.clone(), with_id("ship-bad"), vec![0xff, 0xff, 0x01])
                .await;
        }
    }
    app.restart_with(|_| {}).await;

    let pool = app.db.pool.clone();
    let applied: Vec<(String, i64, i16)> =
        eventually(DEADLINE, "every order at sequence 3", || {
            let pool = pool.clone();
            async move {
                let rows: Vec<(String, i64, i16)> = sqlx::query_as(
                    "SELECT order_no, sequence, shipping_status FROM order_integration
                 WHERE order_no LIKE 'S-%' ORDER BY order_no",
                )
                .fetch_all(&pool)
                .await
                .expect("projection");
                (rows.len() == 20 && rows.iter().all(|(_, sequence, _)| *sequence == 3))
                    .then_some(rows)
            }
        })
        .await;
    for (no, _, status) in &applied {
        assert_eq!(
            i32::from(*status),
            ShippingStatus::Sent as i32,
            "{no}: the newest update wins over the older one that came after it"
        );
    }
    let letters = app.wait_for_dead_letters(1).await;
    assert!(
        letters[0].reason.contains("undecodable protobuf"),
        "{:?}",
        letters[0].reason
    );
    // Updates delivered together were applied together: fewer transactions (each stamps
    // `applied_at` with its own start time) than orders.
    let transactions: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT applied_at) FROM order_integration WHERE order_no LIKE 'S-%'",
    )
    .fetch_one(&pool)
    .await
    .expect("transactions");
    assert!(
        transactions < orders.len() as i64,
        "{} orders in {transactions} transactions",
        orders.len()
    );
}

#[tokio::test]
async fn of_one_orders_updates_delivered_together_only_the_newest_is_written_to_the_order() {
    let mut app = spawn_app().await;
    app.make_shop_known("shop-a").await;
    let orders: Vec<String> = (0..20).map(|n| format!("W-{n:02}")).collect();
    for no in &orders {
        app.publish_order(&order("shop-a", no, 1, "new")).await;
    }
    for no in &orders {
        app.wait_for_revision("shop-a", no, 1).await;
    }
    // Every write of an order's row (and its list indexes) is recorded.
    let pool = app.db.pool.clone();
    sqlx::raw_sql(
        "CREATE TABLE order_writes (order_no TEXT, shipping_status SMALLINT);
         CREATE FUNCTION record_order_write() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             INSERT INTO order_writes VALUES (NEW.order_no, NEW.shipping_status);
             RETURN NEW;
         END $$;
         CREATE TRIGGER order_writes AFTER UPDATE ON orders
             FOR EACH ROW EXECUTE FUNCTION record_order_write();",
    )
    .execute(&pool)
    .await
    .expect("trigger");

    // Three updates per order delivered together (published while the service is down).
    app.stop().await;
    let subject = app.nats.subjects.shipments_updated(&shop_id("shop-a"));
    for no in &orders {
        for (sequence, status) in [
            (1, ShippingStatus::Queued),
            (2, ShippingStatus::Sending),
            (3, ShippingStatus::Sent),
        ] {
            let update = shipment("shop-a", no, sequence, status, 0, "");
            app.publish(
                subject.clone(),
                with_id(&format!("write-{no}-{sequence}")),
                update.encode_to_vec(),
            )
            .await;
        }
    }
    app.restart_with(|_| {}).await;

    let statuses: Vec<i16> = eventually(DEADLINE, "every order shown SENT", || {
        let pool = pool.clone();
        async move {
            let rows: Vec<i16> = sqlx::query_scalar(
                "SELECT shipping_status FROM orders WHERE order_no LIKE 'W-%' ORDER BY order_no",
            )
            .fetch_all(&pool)
            .await
            .expect("orders");
            (rows.len() == 20
                && rows
                    .iter()
                    .all(|s| i32::from(*s) == ShippingStatus::Sent as i32))
            .then_some(rows)
        }
    })
    .await;
    assert_eq!(statuses.len(), 20);
    let writes: i64 = sqlx::query_scalar("SELECT count(*) FROM order_writes")
        .fetch_one(&pool)
        .await
        .expect("writes");
    assert!(
        writes < 60,
        "60 updates of 20 orders delivered together made {writes} writes of their rows; one per \
         order and batch is expected"
    );
}
