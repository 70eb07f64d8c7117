//! Database plumbing against the local PostgreSQL.

use wmslink_platform::db::{DatabaseConfig, connect};

fn server_url() -> String {
    std::env::var("WMSLINK_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// Replicas (or two services sharing the rate-limit database) start together and both create
/// the database they need: neither may fail.
#[tokio::test]
async fn concurrent_starts_both_create_the_missing_database() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0);
    // The creation time in the name lets the test cleanup drop only old databases.
    let name = format!(
        "wmslink_test_{now}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let config = DatabaseConfig {
        url: format!("{}/{name}", server_url()),
        max_connections: 2,
        create_if_missing: true,
        ..DatabaseConfig::default()
    };
    let starts: Vec<_> = (0..6)
        .map(|_| {
            let config = config.clone();
            tokio::spawn(async move { connect(&config).await })
        })
        .collect();
    for start in starts {
        let pool = start.await.expect("task").expect("connected");
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&pool)
            .await
            .expect("query");
        assert_eq!(one, 1);
    }
}
