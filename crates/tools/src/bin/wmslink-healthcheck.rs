//! Container health probe: `wmslink-healthcheck grpc http://127.0.0.1:50051` asks the gRPC
//! health service; `wmslink-healthcheck tcp 127.0.0.1:8080` checks that a port accepts.
//! Over TLS: `wmslink-healthcheck grpc https://settings:50051 --tls-ca-file ca.pem`.
//! Exits 0 when healthy, 1 otherwise.

use std::time::Duration;

use clap::{Parser, Subcommand};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    probe: Probe,
}

#[derive(Subcommand)]
enum Probe {
    /// gRPC health check of the whole server.
    Grpc {
        url: String,
        /// PEM file of the authority of the server's certificate (then the URL is
        /// `https://`).
        #[arg(long, env = "WMSLINK_HEALTHCHECK_TLS_CA_FILE", default_value = "")]
        tls_ca_file: String,
        /// The name the certificate must carry (default: the URL's host).
        #[arg(long, env = "WMSLINK_HEALTHCHECK_TLS_DOMAIN", default_value = "")]
        tls_domain: String,
        /// A client certificate and its key, for a server that requires one.
        #[arg(long, env = "WMSLINK_HEALTHCHECK_TLS_CERT_FILE", default_value = "")]
        tls_cert_file: String,
        #[arg(long, env = "WMSLINK_HEALTHCHECK_TLS_KEY_FILE", default_value = "")]
        tls_key_file: String,
    },
    /// A TCP connect.
    Tcp { addr: String },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let outcome = tokio::time::timeout(Duration::from_secs(3), probe(Cli::parse().probe)).await;
    match outcome {
        Ok(Ok(())) => std::process::ExitCode::SUCCESS,
        Ok(Err(err)) => {
            eprintln!("unhealthy: {err:#}");
            std::process::ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("unhealthy: timed out");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn probe(probe: Probe) -> anyhow::Result<()> {
    match probe {
        Probe::Grpc {
            url,
            tls_ca_file,
            tls_domain,
            tls_cert_file,
            tls_key_file,
        } => {
            wmslink_platform::install_crypto_provider();
            let tls = wmslink_platform::grpc::ClientTls {
                ca_file: tls_ca_file,
                domain: tls_domain,
                cert_file: tls_cert_file,
                key_file: tls_key_file,
            };
            let channel = wmslink_platform::grpc::client_endpoint(&url, &tls)?
                .connect()
                .await?;
            let mut client = HealthClient::new(channel);
            let status = client
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await?
                .into_inner()
                .status();
            anyhow::ensure!(status == ServingStatus::Serving, "status {status:?}");
            Ok(())
        }
        Probe::Tcp { addr } => {
            tokio::net::TcpStream::connect(addr).await?;
            Ok(())
        }
    }
}
