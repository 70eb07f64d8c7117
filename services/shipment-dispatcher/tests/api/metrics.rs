//! The queue sample behind the per-shop queue gauges: one grouped query over `shipments`.

use wmslink_shipment_dispatcher::metrics::{self, ShopQueue};
use wmslink_testkit::TestDb;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

async fn insert(db: &TestDb, shop: &str, order_no: &str, status: &str, queued_secs_ago: i64) {
    sqlx::query(
        "INSERT INTO shipments (shop_id, order_no, status, order_revision, order_snapshot,
                                order_status_code, content_fingerprint, queued_at)
         VALUES ($1, $2, $3, 1, '\\x', 'new', 'fp', now() - make_interval(secs => $4))",
    )
    .bind(shop)
    .bind(order_no)
    .bind(status)
    .bind(queued_secs_ago as f64)
    .execute(&db.pool)
    .await
    .expect("insert shipment");
}

#[tokio::test]
async fn the_sample_counts_queued_shipments_and_ages_the_oldest_per_shop() {
    let db = TestDb::create().await.expect("database");
    wmslink_platform::db::migrate(&db.pool, &MIGRATOR)
        .await
        .expect("migrations");
    insert(&db, "shop-a", "A-1", "QUEUED", 90).await;
    insert(&db, "shop-a", "A-2", "QUEUED", 5).await;
    insert(&db, "shop-a", "A-3", "SENT", 600).await;
    insert(&db, "shop-b", "B-1", "SENDING", 300).await;
    insert(&db, "shop-c", "C-1", "QUEUED", 1).await;

    let queues = metrics::sample(&db.pool, &["shop-a".to_owned(), "shop-b".to_owned()])
        .await
        .expect("sample");
    assert_eq!(
        queues
            .iter()
            .map(|q| (q.shop_id.as_str(), q.queued))
            .collect::<Vec<_>>(),
        vec![("shop-a", 2), ("shop-b", 0), ("shop-c", 1)],
        "{queues:?}"
    );
    let a: &ShopQueue = &queues[0];
    assert!(
        (89.0..120.0).contains(&a.oldest_age_secs),
        "the oldest QUEUED row of shop-a was queued 90 s ago: {a:?}"
    );
    assert_eq!(queues[1].oldest_age_secs, 0.0);
}
