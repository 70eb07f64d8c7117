//! NATS over TLS with a user: a nats-server of the test's own with a certificate made for the
//! test (rcgen) and `deploy/nats/accounts.conf`; a service connects with `nats::connect` as
//! its user, trusting the test's authority.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use secrecy::SecretString;
use wmslink_platform::nats::{self, NatsConfig, StreamKind, Subjects, ensure_streams};
use wmslink_testkit::{PrivateNats, TestCerts};

const PASSWORD_ENV: &str = "WMSLINK_NATS_ORDER_EVENTS_PASSWORD";
const PASSWORD: &str = "order-events-tls-test-password";

async fn tls_server(certs: &TestCerts) -> PrivateNats {
    let accounts = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/nats/accounts.conf"
    ))
    .unwrap();
    PrivateNats::start(
        "tls {\n  cert_file: \"./server.pem\"\n  key_file: \"./server-key.pem\"\n}\ninclude ./accounts.conf",
        &[
            ("accounts.conf", &accounts),
            ("server.pem", certs.server_cert_pem.as_bytes()),
            ("server-key.pem", certs.server_key_pem.as_bytes()),
        ],
        &[
            (PASSWORD_ENV, PASSWORD),
            ("WMSLINK_NATS_CART_PASSWORD", "unused-cart"),
            ("WMSLINK_NATS_SETTINGS_PASSWORD", "unused-settings"),
            ("WMSLINK_NATS_DISPATCHER_PASSWORD", "unused-dispatcher"),
            ("WMSLINK_NATS_STATUS_SYNC_PASSWORD", "unused-status-sync"),
        ],
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_service_connects_over_tls_with_its_user_and_runs_its_streams() {
    wmslink_platform::install_crypto_provider();
    let certs = TestCerts::generate().unwrap();
    let server = tls_server(&certs).await;
    let ca_file = server.dir.join("ca.pem");
    std::fs::write(&ca_file, &certs.ca_pem).unwrap();

    let config = NatsConfig {
        url: server.url(),
        user: "order-events".into(),
        password: SecretString::from(PASSWORD),
        tls_ca_file: ca_file.display().to_string(),
        ..NatsConfig::default()
    };
    let client = nats::connect(&config).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let subjects = Subjects::new("").unwrap();
    ensure_streams(&js, &subjects, &[StreamKind::Orders], 1)
        .await
        .unwrap_or_else(|err| panic!("{err}\n{}", server.log()));
    js.publish("orders.shop-a.status_changed", "event".into())
        .await
        .unwrap()
        .await
        .expect("stored over TLS");

    // Without the authority the server's certificate is not trusted; with it, a wrong password
    // is refused.
    let untrusted =
        async_nats::ConnectOptions::with_user_and_password("order-events".into(), PASSWORD.into())
            .connect(server.url())
            .await;
    assert!(untrusted.is_err(), "connected without trusting the CA");
    let wrong_password =
        async_nats::ConnectOptions::with_user_and_password("order-events".into(), "nope".into())
            .add_root_certificates(ca_file.clone())
            .connect(server.url())
            .await;
    let refused = wrong_password.expect_err("a wrong password is refused");
    assert!(
        refused.to_string().to_lowercase().contains("authorization"),
        "{refused}"
    );
    let log = server.log();
    assert!(log.contains("TLS"), "the server logs its TLS: {log}");
}
