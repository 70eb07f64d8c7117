//! Migrations that change stored data.

use wmslink_testkit::TestDb;

/// Observations stored before status-sync kept the carrier status as a meaning: the migration
/// marks the final ones (COMMERCE ROBO's delivered, returned, cancelled), so a delivered order
/// does not start being watched again after the upgrade.
#[tokio::test]
async fn observations_stored_before_keep_their_final_carrier_status() {
    let db = TestDb::create().await.expect("database");
    sqlx::raw_sql(include_str!("../../migrations/0001_status_sync.sql"))
        .execute(&db.pool)
        .await
        .expect("first migration");
    for (order_no, carrier) in [("D", Some(1)), ("R", Some(12)), ("T", Some(3)), ("U", None)] {
        sqlx::query(
            "INSERT INTO watch_list (shop_id, order_no, wms_order_id, order_date, shipping_status,
                                     sequence, obs_status_id, obs_shipping_status_id)
             VALUES ('s1', $1, 7, now(), 'SHIPPED', 1, 100, $2)",
        )
        .bind(order_no)
        .bind(carrier)
        .execute(&db.pool)
        .await
        .expect("row");
    }
    sqlx::raw_sql(include_str!("../../migrations/0002_carrier_meanings.sql"))
        .execute(&db.pool)
        .await
        .expect("the carrier meanings migration");
    let rows: Vec<(String, Option<bool>)> =
        sqlx::query_as("SELECT order_no, obs_carrier_final FROM watch_list ORDER BY order_no")
            .fetch_all(&db.pool)
            .await
            .expect("rows");
    assert_eq!(
        rows,
        [
            ("D".to_owned(), Some(true)),
            ("R".to_owned(), Some(true)),
            ("T".to_owned(), Some(false)),
            ("U".to_owned(), None),
        ]
    );
}
