//! status-sync's migrations: what they do to stored data, and that databases migrated under
//! the files' first names still start today's service.
//!
//! The migrations were first named `0001_status_sync.sql` and `0002_carrier_meanings.sql`;
//! they are now `00000000000001_…` and `00000000000002_…` (the workspace's 14-digit scheme).
//! sqlx keys applied migrations by version and checks their checksum (the SQL text), not their
//! file name, so the same versions keep such databases valid.

use std::path::{Path, PathBuf};

use sqlx::migrate::{MigrateError, Migrator};
use wmslink_platform::db::DbError;
use wmslink_platform::secrets::KeyRing;
use wmslink_testkit::{TestDb, TestNats};

use crate::helpers::*;

const MIGRATIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");

/// (first file name, file name today) of every migration released under another name.
const RENAMED: [(&str, &str); 2] = [
    ("0001_status_sync.sql", "00000000000001_status_sync.sql"),
    (
        "0002_carrier_meanings.sql",
        "00000000000002_carrier_meanings.sql",
    ),
];

/// Observations stored before status-sync kept the carrier status as a meaning: the migration
/// marks the final ones (COMMERCE ROBO's delivered, returned, cancelled), so a delivered order
/// does not start being watched again after the upgrade.
#[tokio::test]
async fn observations_stored_before_keep_their_final_carrier_status() {
    let db = TestDb::create().await.expect("database");
    sqlx::raw_sql(include_str!(
        "../../migrations/00000000000001_status_sync.sql"
    ))
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
    sqlx::raw_sql(include_str!(
        "../../migrations/00000000000002_carrier_meanings.sql"
    ))
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

/// A directory of its own holding today's migrations under `names` (first name, today's name).
fn migrations_named(names: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(wmslink_testkit::unique("wmslink-migrations-"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for (name, today) in names {
        let sql =
            std::fs::read_to_string(Path::new(MIGRATIONS).join(today)).expect("today's migration");
        std::fs::write(dir.join(name), sql).expect("migration written");
    }
    dir
}

async fn migrate_with(db: &TestDb, names: &[(&str, &str)]) -> Result<(), DbError> {
    let dir = migrations_named(names);
    let migrator = Migrator::new(dir.as_path()).await.expect("migrations read");
    let migrated = wmslink_platform::db::migrate(&db.pool, &migrator).await;
    std::fs::remove_dir_all(&dir).expect("temp dir removed");
    migrated
}

async fn applied(db: &TestDb) -> Vec<(i64, String)> {
    sqlx::query_as("SELECT version, description FROM _sqlx_migrations ORDER BY version")
        .fetch_all(&db.pool)
        .await
        .expect("applied migrations")
}

#[tokio::test]
async fn a_database_migrated_under_the_first_file_names_starts_todays_status_sync() {
    wmslink_platform::install_crypto_provider();
    let nats = TestNats::create().await.expect("test NATS");
    let (_, master_keys) = KeyRing::generate("test-k1");
    let settings = start_settings(&nats, &master_keys).await;
    let rate_limit_db = TestDb::create().await.expect("rate-limit database");

    let db = TestDb::create().await.expect("status-sync database");
    migrate_with(&db, &RENAMED)
        .await
        .expect("migrated under the first names");
    let before = applied(&db).await;
    assert_eq!(
        before,
        vec![
            (1, "status sync".to_owned()),
            (2, "carrier meanings".to_owned())
        ]
    );

    let config = sync_config(
        &db,
        &nats,
        settings.addr(),
        &master_keys,
        &rate_limit_db.url,
    );
    let mut sync = start_sync(config, db.clone()).await;
    let answered = sync_client(sync.addr, READER_TOKEN)
        .get_sync_runs(wmslink_proto::sync::v1::GetSyncRunsRequest {
            shop_id: "shop-a".into(),
            limit: 0,
        })
        .await;
    assert!(answered.is_ok(), "{answered:?}");
    sync.stop().await;
    // The first two are not applied again; only the migrations added since are.
    let after = applied(&db).await;
    assert_eq!(after[..before.len()], before[..], "nothing applied again");
    assert!(
        after[before.len()..]
            .iter()
            .all(|(version, _)| *version > 2),
        "{after:?}"
    );
}

/// Why the versions were kept: a file renamed to another version leaves the applied version
/// unknown to the migrator, and sqlx refuses to migrate the database.
#[tokio::test]
async fn a_renumbered_migration_would_not_start_on_such_a_database() {
    let db = TestDb::create().await.expect("status-sync database");
    migrate_with(&db, &RENAMED[..1])
        .await
        .expect("first release migrates");
    let refused = migrate_with(
        &db,
        &[(
            "20260101000001_status_sync.sql",
            "00000000000001_status_sync.sql",
        )],
    )
    .await;
    assert!(
        matches!(
            refused,
            Err(DbError::Migrate(MigrateError::VersionMissing(1)))
        ),
        "{refused:?}"
    );
}
