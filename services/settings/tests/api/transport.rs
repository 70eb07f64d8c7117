//! The settings service with `grpc.tls` on (certificates made for the test): a client that
//! trusts the authority is answered; a plaintext client and one trusting another authority are
//! not.

use tonic::Code;
use wmslink_platform::auth::scopes;
use wmslink_platform::grpc::{self as platform_grpc, ClientTls, ServerTls};
use wmslink_platform::secrets::KeyRing;
use wmslink_proto::settings::v1 as pb;
use wmslink_test_harness::SettingsService;
use wmslink_test_harness::grpc::{self, token};
use wmslink_testkit::{TestCerts, TestNats, unique};

const TOKEN: &str = "test-tls-reader-token-0123456789";

async fn list_shops(channel: tonic::transport::Channel) -> Result<(), tonic::Status> {
    grpc::settings_client(channel, TOKEN)
        .list_shops(pb::ListShopsRequest::default())
        .await
        .map(|_| ())
}

#[tokio::test]
async fn with_grpc_tls_the_service_answers_only_clients_trusting_its_authority() {
    wmslink_platform::install_crypto_provider();
    let dir = std::env::temp_dir().join(unique("wmslink-settings-tls-"));
    let files = TestCerts::generate()
        .expect("certs")
        .write_to(&dir)
        .expect("written");
    let other = TestCerts::generate()
        .expect("certs")
        .write_to(&dir.join("other"))
        .expect("written");
    let nats = TestNats::create().await.expect("test NATS");
    let (_keys, key_line) = KeyRing::generate("test-k1");
    let service = SettingsService::start_with(
        &nats,
        &key_line,
        vec![token("reader", TOKEN, &[scopes::SETTINGS_READ])],
        |config| {
            config.grpc.tls = ServerTls {
                cert_file: files.server_cert.clone(),
                key_file: files.server_key.clone(),
                client_ca_file: String::new(),
            };
        },
    )
    .await;
    let port = service.addr().port();
    let endpoint = |url: String, ca_file: &str| {
        platform_grpc::client_endpoint(
            &url,
            &ClientTls {
                ca_file: ca_file.to_owned(),
                ..ClientTls::default()
            },
        )
        .expect("endpoint")
    };

    let trusted = endpoint(format!("https://localhost:{port}"), &files.ca)
        .connect()
        .await
        .expect("TLS connection with the service's authority");
    list_shops(trusted).await.expect("answered over TLS");

    let plaintext = endpoint(format!("http://127.0.0.1:{port}"), "").connect_lazy();
    let refused = list_shops(plaintext).await.expect_err("plaintext answered");
    // Refused at the transport (the TLS server closes the plaintext connection), never by
    // the service.
    assert!(
        matches!(refused.code(), Code::Unavailable | Code::Unknown)
            && refused.message().contains("transport error"),
        "{refused:?}"
    );

    let untrusted = endpoint(format!("https://localhost:{port}"), &other.ca)
        .connect()
        .await;
    assert!(
        untrusted.is_err(),
        "a client trusting another authority connected"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
