//! PostgreSQL over TLS: a cluster of the test's own with `ssl=on` and a certificate made for
//! the test (rcgen). `database.ssl_mode = verify-full` with its authority connects, encrypted;
//! with another authority, or for a name the certificate does not carry, it does not.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sqlx::{ConnectOptions, PgConnection};
use wmslink_platform::db::{self, DatabaseConfig};
use wmslink_testkit::{PrivatePostgres, TestCerts, unique};

struct Dir(std::path::PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn verify_full_connects_with_the_servers_authority_and_only_with_it() {
    wmslink_platform::install_crypto_provider();
    let certs = TestCerts::generate().unwrap();
    let server = PrivatePostgres::start(
        &[
            "ssl=on",
            "ssl_cert_file=server.pem",
            "ssl_key_file=server-key.pem",
            // A second loopback address, to reach the server by a name its certificate lacks.
            "listen_addresses=127.0.0.1,127.0.0.2",
        ],
        &[
            ("server.pem", certs.server_cert_pem.as_bytes()),
            ("server-key.pem", certs.server_key_pem.as_bytes()),
        ],
    )
    .await
    .unwrap();
    let dir = Dir(std::env::temp_dir().join(unique("wmslink-pg-tls-")));
    let files = certs.write_to(&dir.0).unwrap();
    let other = TestCerts::generate()
        .unwrap()
        .write_to(&dir.0.join("other"))
        .unwrap();

    let config = DatabaseConfig {
        url: server.url("localhost", "wmslink_tls"),
        max_connections: 1,
        create_if_missing: true,
        ssl_mode: "verify-full".into(),
        ssl_root_cert: files.ca.clone(),
    };
    let pool = db::connect(&config).await.unwrap_or_else(|err| {
        panic!(
            "verify-full with the right authority: {err}\n{}",
            server.log()
        )
    });
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(encrypted, "the connection is not encrypted");
    pool.close().await;

    let connect = |config: DatabaseConfig| async move {
        let options = db::connect_options(&config).unwrap();
        options
            .connect()
            .await
            .map(|_: PgConnection| ())
            .map_err(|err| err.to_string())
    };
    let untrusted = connect(DatabaseConfig {
        ssl_root_cert: other.ca.clone(),
        ..config.clone()
    })
    .await;
    let reason = untrusted.expect_err("connected trusting another authority");
    assert!(
        reason.to_lowercase().contains("certificate") || reason.contains("UnknownIssuer"),
        "fails on the certificate: {reason}"
    );

    // The certificate names localhost and 127.0.0.1, not this name: verify-full refuses,
    // verify-ca (authority only) accepts.
    let other_name = DatabaseConfig {
        url: server.url("127.0.0.2", "wmslink_tls"),
        ..config.clone()
    };
    let by_other_name = connect(other_name.clone()).await;
    assert!(
        by_other_name.is_err(),
        "verify-full accepted a certificate for another name"
    );
    assert_eq!(
        connect(DatabaseConfig {
            ssl_mode: "verify-ca".into(),
            ..other_name
        })
        .await,
        Ok(()),
        "verify-ca checks the authority only"
    );
}
