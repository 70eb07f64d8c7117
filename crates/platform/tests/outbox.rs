//! The outbox relay against the local PostgreSQL and NATS: one row NATS can never take does not
//! stop the rows behind it.

use std::time::Duration;

use wmslink_platform::nats::{self, StreamKind};
use wmslink_platform::outbox::{self, OutboxMessage, OutboxRelay};
use wmslink_testkit::{TestDb, TestNats};

/// A database with the platform tables, a NATS with the orders stream, and a relay between them
/// that runs only when asked.
async fn relay_on_fresh_servers() -> (TestDb, TestNats, OutboxRelay) {
    let db = TestDb::create().await.expect("database");
    wmslink_platform::db::migrate(&db.pool, &sqlx::migrate::Migrator::DEFAULT)
        .await
        .expect("platform tables");
    let nats = TestNats::create().await.expect("nats");
    nats::ensure_streams(&nats.js, &nats.subjects, &[StreamKind::Orders], 1)
        .await
        .expect("stream");
    let relay = OutboxRelay::new(db.pool.clone(), nats.js.clone())
        .with_poll_interval(Duration::from_secs(3600));
    (db, nats, relay)
}

#[tokio::test]
async fn a_row_over_the_nats_limit_is_moved_aside_and_the_rest_flows() {
    let (db, nats, relay) = relay_on_fresh_servers().await;

    let shop = wmslink_platform::shop::ShopId::parse("s1").expect("shop");
    let subject = nats.subjects.order_updated(&shop);
    let max_payload = nats.js.client().server_info().max_payload;
    for (id, size) in [("before", 10), ("huge", max_payload + 1), ("after", 10)] {
        let message = OutboxMessage {
            msg_id: id.to_owned(),
            subject: subject.clone(),
            payload: vec![b'x'; size],
            headers: Default::default(),
        };
        let mut conn = db.pool.acquire().await.expect("connection");
        outbox::enqueue(&mut conn, &message)
            .await
            .expect("enqueued");
    }

    let handled = relay.publish_batch().await.expect("the batch goes through");
    assert_eq!(handled, 3);
    let stored: Vec<String> = nats
        .stored(StreamKind::Orders, subject.clone())
        .await
        .iter()
        .map(|m| {
            m.headers
                .as_ref()
                .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(stored, ["before", "after"]);

    let aside: Vec<(String, String, i32)> = sqlx::query_as(
        "SELECT msg_id, reason, length(payload) FROM outbox_unpublishable ORDER BY id",
    )
    .fetch_all(&db.pool)
    .await
    .expect("set aside");
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(aside[0].0, "huge");
    assert!(aside[0].1.contains("max payload"), "{aside:?}");
    assert_eq!(
        aside[0].2 as usize,
        max_payload + 1,
        "the row is kept whole"
    );
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        .fetch_one(&db.pool)
        .await
        .expect("count");
    assert_eq!(left, 0, "nothing blocks the outbox");
    assert_eq!(relay.publish_batch().await.expect("empty"), 0);
}

#[tokio::test]
async fn messages_enqueued_together_are_published_in_their_order_with_their_headers() {
    let (db, nats, relay) = relay_on_fresh_servers().await;
    let shop = wmslink_platform::shop::ShopId::parse("s1").expect("shop");
    let subject = nats.subjects.order_updated(&shop);
    let messages: Vec<OutboxMessage> = ["c", "a", "b"]
        .into_iter()
        .map(|id| OutboxMessage {
            msg_id: id.to_owned(),
            subject: subject.clone(),
            payload: format!("payload {id}").into_bytes(),
            headers: [("X-Which".to_owned(), format!("header {id}"))].into(),
        })
        .collect();
    let mut tx = db.pool.begin().await.expect("transaction");
    outbox::enqueue_many(&mut tx, &messages)
        .await
        .expect("enqueued");
    tx.commit().await.expect("commit");

    assert_eq!(relay.publish_batch().await.expect("published"), 3);
    let stored: Vec<(String, String, String)> = nats
        .stored(StreamKind::Orders, subject)
        .await
        .iter()
        .map(|m| {
            let header = |name: &str| {
                m.headers
                    .as_ref()
                    .and_then(|h| h.get(name))
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default()
            };
            (
                header("Nats-Msg-Id"),
                header("X-Which"),
                String::from_utf8_lossy(&m.payload).into_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String)> = ["c", "a", "b"]
        .into_iter()
        .map(|id| {
            (
                id.to_owned(),
                format!("header {id}"),
                format!("payload {id}"),
            )
        })
        .collect();
    assert_eq!(stored, expected);
}
