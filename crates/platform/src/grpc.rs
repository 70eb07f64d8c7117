//! gRPC serving: health checking, server reflection (so `grpcurl` and `buf curl` work), and
//! graceful shutdown. Services add their own (intercepted) services to the routes.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic_health::server::HealthReporter;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct GrpcConfig {
    /// e.g. `0.0.0.0:50051`; port 0 picks a free port (tests).
    pub listen_addr: String,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            listen_addr: "127.0.0.1:50051".into(),
        }
    }
}

impl crate::config::Validate for GrpcConfig {
    fn check(&self, section: &str, problems: &mut crate::config::InvalidConfig) {
        problems.check(
            self.listen_addr.contains(':'),
            crate::config::key(section, "listen_addr"),
            "must be host:port",
        );
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("reflection service: {0}")]
    Reflection(String),
    #[error("gRPC server: {0}")]
    Serve(#[from] tonic::transport::Error),
}

pub async fn bind(config: &GrpcConfig) -> Result<(TcpListener, SocketAddr), GrpcError> {
    let bind_err = |source| GrpcError::Bind {
        addr: config.listen_addr.clone(),
        source,
    };
    let listener = TcpListener::bind(&config.listen_addr)
        .await
        .map_err(bind_err)?;
    let addr = listener.local_addr().map_err(bind_err)?;
    Ok((listener, addr))
}

/// Routes with health and reflection already in; the reporter marks services serving.
pub fn base_routes() -> Result<(Routes, HealthReporter), GrpcError> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(wmslink_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|err| GrpcError::Reflection(err.to_string()))?;
    Ok((Routes::new(health).add_service(reflection), reporter))
}

/// Serves `routes` on `listener` until `shutdown` is cancelled, then drains in-flight calls.
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    shutdown: CancellationToken,
) -> Result<(), GrpcError> {
    tonic::transport::Server::builder()
        .trace_fn(crate::telemetry::grpc_request_span)
        .add_routes(routes)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown.cancelled_owned())
        .await?;
    Ok(())
}

/// Maps a database error to a gRPC status without leaking internals to the caller.
pub fn internal(context: &str, err: impl std::fmt::Display) -> tonic::Status {
    tracing::error!(error = %err, "{context}");
    tonic::Status::internal(format!("{context}: internal error"))
}
