//! gRPC over TLS on a real socket: a server started with `grpc.tls` (certificates made for the
//! test with rcgen) answers a client that trusts its authority (`grpc::client_endpoint`), and
//! no one else: not a plaintext client, not a client trusting another authority; with
//! `tls.client_ca_file`, not a client without a certificate either.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use wmslink_platform::grpc::{self, ClientTls, GrpcConfig, ServerTls};
use wmslink_testkit::{CertFiles, TestCerts, unique};

struct Dir(std::path::PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn certs() -> (Dir, CertFiles) {
    let dir = Dir(std::env::temp_dir().join(unique("wmslink-grpc-tls-")));
    let files = TestCerts::generate().unwrap().write_to(&dir.0).unwrap();
    (dir, files)
}

async fn tls_server(tls: ServerTls) -> (u16, CancellationToken) {
    let config = GrpcConfig {
        tls,
        ..GrpcConfig::listening_on("127.0.0.1:0")
    };
    let (listener, addr) = grpc::bind(&config).await.expect("bind");
    let (routes, _) = grpc::base_routes(&config).expect("routes");
    let stop = CancellationToken::new();
    let serving = stop.clone();
    tokio::spawn(async move {
        if let Err(err) = grpc::serve(listener, routes, &config, serving).await {
            panic!("server: {err}");
        }
    });
    (addr.port(), stop)
}

/// The server's overall health as seen through `channel`.
async fn health(channel: Channel) -> Result<ServingStatus, String> {
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map_err(|status| status.to_string())?;
    Ok(answer.into_inner().status())
}

async fn health_with(url: &str, tls: &ClientTls) -> Result<ServingStatus, String> {
    let endpoint = grpc::client_endpoint(url, tls).map_err(|err| err.to_string())?;
    let channel = endpoint.connect().await.map_err(|err| format!("{err:?}"))?;
    health(channel).await
}

#[tokio::test]
async fn a_tls_server_answers_only_clients_that_trust_its_authority() {
    wmslink_platform::install_crypto_provider();
    let (_dir, files) = certs();
    let (_other_dir, other) = certs();
    let (port, stop) = tls_server(ServerTls {
        cert_file: files.server_cert.clone(),
        key_file: files.server_key.clone(),
        client_ca_file: String::new(),
    })
    .await;

    let trusting = ClientTls {
        ca_file: files.ca.clone(),
        ..ClientTls::default()
    };
    assert_eq!(
        health_with(&format!("https://localhost:{port}"), &trusting).await,
        Ok(ServingStatus::Serving),
        "a client trusting the server's authority is answered"
    );
    // By IP address, with the name the certificate carries given as the domain.
    let named = ClientTls {
        domain: "localhost".into(),
        ..trusting.clone()
    };
    assert_eq!(
        health_with(&format!("https://127.0.0.1:{port}"), &named).await,
        Ok(ServingStatus::Serving)
    );

    let plaintext = health_with(&format!("http://127.0.0.1:{port}"), &ClientTls::default()).await;
    assert!(plaintext.is_err(), "a plaintext client was answered");

    let other_authority = ClientTls {
        ca_file: other.ca.clone(),
        ..ClientTls::default()
    };
    let untrusted = health_with(&format!("https://localhost:{port}"), &other_authority).await;
    let reason = untrusted.expect_err("a client trusting another authority was answered");
    assert!(
        reason.to_lowercase().contains("certificate"),
        "fails on the certificate: {reason}"
    );

    let wrong_name = ClientTls {
        domain: "settings.example".into(),
        ..trusting.clone()
    };
    assert!(
        health_with(&format!("https://localhost:{port}"), &wrong_name)
            .await
            .is_err(),
        "a certificate for another name was accepted"
    );

    // TLS settings on a plain URL would go in plaintext: refused before connecting.
    let plain_url = grpc::client_endpoint(&format!("http://localhost:{port}"), &trusting);
    assert!(plain_url.is_err(), "tls.ca_file with an http:// URL");
    stop.cancel();
}

#[tokio::test]
async fn with_a_client_authority_the_server_requires_a_client_certificate() {
    wmslink_platform::install_crypto_provider();
    let (_dir, files) = certs();
    let (_other_dir, other) = certs();
    let (port, stop) = tls_server(ServerTls {
        cert_file: files.server_cert.clone(),
        key_file: files.server_key.clone(),
        client_ca_file: files.ca.clone(),
    })
    .await;
    let url = format!("https://localhost:{port}");

    let with_certificate = ClientTls {
        ca_file: files.ca.clone(),
        cert_file: files.client_cert.clone(),
        key_file: files.client_key.clone(),
        ..ClientTls::default()
    };
    assert_eq!(
        health_with(&url, &with_certificate).await,
        Ok(ServingStatus::Serving)
    );

    let without_certificate = ClientTls {
        ca_file: files.ca.clone(),
        ..ClientTls::default()
    };
    assert!(
        health_with(&url, &without_certificate).await.is_err(),
        "a client without a certificate was answered"
    );

    let foreign_certificate = ClientTls {
        cert_file: other.client_cert.clone(),
        key_file: other.client_key.clone(),
        ..without_certificate.clone()
    };
    assert!(
        health_with(&url, &foreign_certificate).await.is_err(),
        "a client certificate of another authority was accepted"
    );
    stop.cancel();
}
