//! The migration conventions of every service: files named `<version>_<description>.sql` with a
//! 14-digit version (`YYYYMMDDhhmmss`, as `sqlx migrate add` writes it), and released
//! migrations never renumbered nor edited. sqlx records each applied migration by version with
//! a checksum of its SQL and refuses to migrate a database whose applied version is missing
//! (`VersionMissing`) or whose SQL changed (`VersionMismatch`), so either would stop a deployed
//! service from starting. A change to a schema is a new migration.

use std::path::Path;

use sqlx::migrate::Migrator;

const SERVICES: [&str; 4] = [
    "settings",
    "order-events",
    "shipment-dispatcher",
    "status-sync",
];

/// (service, version, SHA-384 of the SQL) of every released migration.
const RELEASED: [(&str, i64, &str); 5] = [
    (
        "settings",
        20260101000001,
        "d4d1ae2df44419387b7229043fb6e7f8c9bfe38669ac45b8b38b67b5ae6f673afc18ff743edb316d7748ebf8fdcf5748",
    ),
    (
        "order-events",
        20260501000001,
        "30758c5200b10489a446e5050e72dfe97d8765caa9c698b1169270e3946c6a29da6574870193b42fcf8744d142625913",
    ),
    (
        "shipment-dispatcher",
        20261128000001,
        "10318a31131a4a0178985a0ef276cdd6ff37e1e02b88acb84df379f1172222f77efdd016ab1f9610f27f76e0e086c58d",
    ),
    // Released as `0001_status_sync.sql` and `0002_carrier_meanings.sql`: the 14-digit names
    // keep versions 1 and 2.
    (
        "status-sync",
        1,
        "067e731233d0cf85185421b20e19488eba9d336d8be764d5b657c576b3d7c6f09bd0b0d6e153e16c9088330a980fceae",
    ),
    (
        "status-sync",
        2,
        "22e8e5aea7eb989823b95932093fb5a966e46db39e9f76398d6fcafa851c3e7f5dfcaf669d5008cf17d1e861dd5d4b95",
    ),
];

fn migrations_dir(service: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../services")
        .join(service)
        .join("migrations")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[test]
fn every_migration_is_named_with_a_14_digit_version_and_a_snake_case_description() {
    for service in SERVICES {
        let dir = migrations_dir(service);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|err| panic!("{dir:?}: {err}"));
        for entry in entries {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let well_named = name
                .strip_suffix(".sql")
                .and_then(|stem| stem.split_once('_'))
                .is_some_and(|(version, description)| {
                    version.len() == 14
                        && version.bytes().all(|b| b.is_ascii_digit())
                        && !description.is_empty()
                        && description
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                });
            assert!(
                well_named,
                "{service}/migrations/{name}: name it <YYYYMMDDhhmmss>_<snake_case>.sql"
            );
        }
    }
}

#[tokio::test]
async fn released_migrations_keep_their_versions_and_their_sql() {
    for (service, version, checksum) in RELEASED {
        let migrator = Migrator::new(migrations_dir(service).as_path())
            .await
            .unwrap_or_else(|err| panic!("{service}: {err}"));
        let released = migrator
            .iter()
            .find(|migration| migration.version == version)
            .unwrap_or_else(|| {
                panic!("{service}: released migration {version} is gone (renumbered?)")
            });
        assert_eq!(
            hex(&released.checksum),
            checksum,
            "{service}: released migration {version} was edited; add a new migration instead"
        );
    }
}
