//! The service on the platform runtime: the outbox's final flush at shutdown, and the pruning
//! of published outbox rows and processed message ids.

use wmslink_platform::nats::StreamKind;

use crate::helpers::{DEADLINE, order, spawn_app, spawn_app_with};

/// An event the relay has not published when the service is asked to stop (here written while
/// the relay sleeps its poll interval, as an event committed during the drain would be) goes
/// out with the final flush, before `run_until_stopped` returns.
#[tokio::test]
async fn the_outbox_is_flushed_at_shutdown() {
    let mut app = spawn_app_with(|config| config.outbox.poll_interval_ms = 3_600_000).await;
    app.make_shop_known("shop-a").await;
    app.upsert(&order("shop-a", "A-1", 1, "new"))
        .await
        .expect("stored");
    app.wait_for_events("shop-a", "A-1", 1).await;
    wmslink_testkit::eventually(DEADLINE, "the first row marked published", || async {
        app.outbox()
            .await
            .iter()
            .all(|(_, published)| *published)
            .then_some(())
    })
    .await;
    sqlx::query(
        "INSERT INTO outbox (msg_id, subject, payload, headers)
         SELECT 'left-behind', subject, payload, headers FROM outbox",
    )
    .execute(&app.db.pool)
    .await
    .expect("an unpublished row");
    assert_eq!(
        app.outbox()
            .await
            .iter()
            .filter(|(_, published)| !published)
            .count(),
        1,
        "the relay sleeps"
    );

    app.stop().await;
    assert!(
        app.outbox().await.iter().all(|(_, published)| *published),
        "flushed at shutdown"
    );
    let ids: Vec<String> = app
        .stream_messages(StreamKind::Orders)
        .await
        .iter()
        .filter_map(|message| {
            message
                .headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .map(|id| id.as_str().to_owned())
        })
        .collect();
    assert!(ids.iter().any(|id| id == "left-behind"), "{ids:?}");
}

/// Published outbox rows older than `outbox.keep_published_ms` and processed message ids older
/// than `consumers.keep_processed_ms` are pruned (at start, then hourly); recent ones, and
/// unpublished rows, are kept.
#[tokio::test]
async fn old_published_rows_and_old_processed_ids_are_pruned() {
    let mut app = spawn_app().await;
    app.stop().await;
    sqlx::raw_sql(
        "INSERT INTO outbox (msg_id, subject, payload, published_at) VALUES
            ('old-published', 'x', '', now() - interval '4 days'),
            ('new-published', 'x', '', now() - interval '1 day');
         INSERT INTO processed_messages (consumer, msg_id, processed_at) VALUES
            ('order-events-cart-orders', 'old', now() - interval '9 days'),
            ('order-events-shipments', 'old', now() - interval '9 days'),
            ('order-events-cart-orders', 'new', now() - interval '1 day');",
    )
    .execute(&app.db.pool)
    .await
    .expect("old rows");

    app.restart_with(|_| {}).await;
    wmslink_testkit::eventually(DEADLINE, "old rows pruned", || async {
        let outbox: Vec<String> = sqlx::query_scalar("SELECT msg_id FROM outbox ORDER BY msg_id")
            .fetch_all(&app.db.pool)
            .await
            .expect("outbox");
        let processed: Vec<String> = sqlx::query_scalar(
            "SELECT consumer || ':' || msg_id FROM processed_messages ORDER BY 1",
        )
        .fetch_all(&app.db.pool)
        .await
        .expect("processed");
        (outbox == ["new-published"] && processed == ["order-events-cart-orders:new"]).then_some(())
    })
    .await;
}
