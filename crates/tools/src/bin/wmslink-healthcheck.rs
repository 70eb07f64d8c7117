//! Container health probe: `wmslink-healthcheck grpc http://127.0.0.1:50051` asks the gRPC
//! health service; `wmslink-healthcheck tcp 127.0.0.1:8080` checks that a port accepts.
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
    Grpc { url: String },
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
        Probe::Grpc { url } => {
            let channel = tonic::transport::Channel::from_shared(url)?
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
