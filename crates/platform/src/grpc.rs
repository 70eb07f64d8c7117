//! gRPC serving: health checking, server reflection (so `grpcurl` and `buf curl` work), and
//! graceful shutdown. Services add their own (intercepted) services to the routes.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};
use tonic_health::server::HealthReporter;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct GrpcConfig {
    /// e.g. `0.0.0.0:50051`; port 0 picks a free port (tests).
    pub listen_addr: String,
    /// Serve gRPC server reflection (for `grpcurl`, `buf curl`). Default `true`; turn off in
    /// production so the API is not described to whoever connects.
    pub reflection: bool,
    /// Calls served at once on one connection; more wait. Default 256.
    pub concurrency_limit_per_connection: usize,
    /// A call not answered in this long ends with `CANCELLED` (0: no limit). Default 120,000 ms;
    /// a client's shorter `grpc-timeout` still applies.
    pub request_timeout_ms: u64,
    /// TLS of the server (off when `tls.cert_file` is empty).
    pub tls: ServerTls,
}

/// The server's TLS (rustls). Files are read when the server starts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerTls {
    /// PEM file of the server's certificate chain. Set: only TLS is served. Empty: plaintext
    /// (development).
    pub cert_file: String,
    /// PEM file of its private key.
    pub key_file: String,
    /// PEM file of the authority whose client certificates are required (mutual TLS). Empty:
    /// clients are not asked for a certificate (the bearer token authenticates them).
    pub client_ca_file: String,
}

impl ServerTls {
    pub fn is_on(&self) -> bool {
        !self.cert_file.is_empty()
    }

    /// tonic's TLS config from the files; `None` when TLS is off.
    pub fn load(&self) -> Result<Option<ServerTlsConfig>, GrpcError> {
        if !self.is_on() {
            return Ok(None);
        }
        let identity = Identity::from_pem(read_pem(&self.cert_file)?, read_pem(&self.key_file)?);
        let mut tls = ServerTlsConfig::new().identity(identity);
        if !self.client_ca_file.is_empty() {
            tls = tls.client_ca_root(Certificate::from_pem(read_pem(&self.client_ca_file)?));
        }
        Ok(Some(tls))
    }
}

/// How a gRPC client reaches a server over TLS (rustls). Off when `ca_file` is empty; on, the
/// URL must be `https://`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientTls {
    /// PEM file of the authority that signed the server's certificate; the server is verified
    /// against it only (no system roots). Empty: plaintext (development).
    pub ca_file: String,
    /// The name the server's certificate must carry. Empty: the URL's host.
    pub domain: String,
    /// PEM files of a client certificate and its key, for servers that require one (both or
    /// neither).
    pub cert_file: String,
    pub key_file: String,
}

impl ClientTls {
    pub fn is_on(&self) -> bool {
        !self.ca_file.is_empty()
    }

    /// Adds the problems of these settings for a client of `url` to `problems` under `section`.
    pub fn check_with_url(
        &self,
        url: &str,
        section: &str,
        problems: &mut crate::config::InvalidConfig,
    ) {
        use crate::config::key;
        let https = url
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("https://");
        if self.is_on() {
            problems.check(
                https,
                key(section, "tls.ca_file"),
                "is set, so the URL must start with https://",
            );
        } else {
            problems.check(
                !https,
                key(section, "tls.ca_file"),
                "must be set for an https:// URL (the server is verified against it)",
            );
        }
        problems.check(
            self.cert_file.is_empty() == self.key_file.is_empty(),
            key(section, "tls.cert_file"),
            "and tls.key_file go together",
        );
        problems.check(
            self.cert_file.is_empty() || self.is_on(),
            key(section, "tls.cert_file"),
            "needs tls.ca_file",
        );
    }
}

/// An endpoint for `url` with `tls` applied (read from its files). Fails on a URL that is not
/// one, on unreadable files, and on TLS asked for a plain `http://` URL (tonic would then
/// connect in plaintext).
pub fn client_endpoint(url: &str, tls: &ClientTls) -> Result<Endpoint, GrpcError> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|err| GrpcError::Client(format!("url '{url}': {err}")))?;
    let https = endpoint.uri().scheme_str() == Some("https");
    if !tls.is_on() {
        if https {
            return Err(GrpcError::Client(format!(
                "url '{url}' is https but no tls.ca_file is set to verify the server against"
            )));
        }
        return Ok(endpoint);
    }
    if !https {
        return Err(GrpcError::Client(format!(
            "tls.ca_file is set but url '{url}' is not https://: the calls would go in plaintext"
        )));
    }
    let mut config =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read_pem(&tls.ca_file)?));
    if !tls.domain.is_empty() {
        config = config.domain_name(tls.domain.clone());
    }
    if !tls.cert_file.is_empty() {
        config = config.identity(Identity::from_pem(
            read_pem(&tls.cert_file)?,
            read_pem(&tls.key_file)?,
        ));
    }
    endpoint
        .tls_config(config)
        .map_err(|err| GrpcError::Client(format!("TLS for '{url}': {err}")))
}

fn read_pem(path: &str) -> Result<Vec<u8>, GrpcError> {
    std::fs::read(path).map_err(|source| GrpcError::TlsFile {
        path: path.to_owned(),
        source,
    })
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            listen_addr: "127.0.0.1:50051".into(),
            reflection: true,
            concurrency_limit_per_connection: 256,
            request_timeout_ms: 120_000,
            tls: ServerTls::default(),
        }
    }
}

impl GrpcConfig {
    /// A config listening on `listen_addr`, everything else default.
    pub fn listening_on(listen_addr: impl Into<String>) -> Self {
        Self {
            listen_addr: listen_addr.into(),
            ..Self::default()
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
        problems.check(
            self.concurrency_limit_per_connection >= 1,
            crate::config::key(section, "concurrency_limit_per_connection"),
            "must be at least 1",
        );
        problems.check(
            self.tls.cert_file.is_empty() == self.tls.key_file.is_empty(),
            crate::config::key(section, "tls.cert_file"),
            "and tls.key_file go together",
        );
        problems.check(
            self.tls.client_ca_file.is_empty() || self.tls.is_on(),
            crate::config::key(section, "tls.client_ca_file"),
            "needs tls.cert_file and tls.key_file",
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
    #[error("cannot read TLS file {path}: {source}")]
    TlsFile {
        path: String,
        source: std::io::Error,
    },
    #[error("gRPC client: {0}")]
    Client(String),
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

/// Routes with health (and reflection, when `config.reflection`) already in; the reporter
/// marks services serving.
pub fn base_routes(config: &GrpcConfig) -> Result<(Routes, HealthReporter), GrpcError> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let routes = Routes::new(health);
    if !config.reflection {
        return Ok((routes, reporter));
    }
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(wmslink_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|err| GrpcError::Reflection(err.to_string()))?;
    Ok((routes.add_service(reflection), reporter))
}

/// Serves `routes` on `listener` with `config`'s limits until `shutdown` is cancelled, then
/// drains in-flight calls. Requests that cannot be decoded answer `INVALID_ARGUMENT` (tonic
/// says `INTERNAL`, which would blame us for the caller's bytes).
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    config: &GrpcConfig,
    shutdown: CancellationToken,
) -> Result<(), GrpcError> {
    let mut builder = tonic::transport::Server::builder()
        .concurrency_limit_per_connection(config.concurrency_limit_per_connection);
    if let Some(tls) = config.tls.load()? {
        builder = builder.tls_config(tls)?;
    }
    if config.request_timeout_ms > 0 {
        builder = builder.timeout(std::time::Duration::from_millis(config.request_timeout_ms));
    }
    builder
        .trace_fn(crate::telemetry::grpc_request_span)
        .layer(tower::layer::layer_fn(DecodeErrorsAreInvalid))
        .add_routes(routes)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown.cancelled_owned())
        .await?;
    Ok(())
}

/// Rewrites tonic's `INTERNAL: failed to decode Protobuf message` into `INVALID_ARGUMENT`.
#[derive(Clone)]
pub struct DecodeErrorsAreInvalid<S>(S);

impl<S, Req, ResBody> tower::Service<Req> for DecodeErrorsAreInvalid<S>
where
    S: tower::Service<Req, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    ResBody: 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let answer = self.0.call(request);
        Box::pin(async move {
            let mut response = answer.await?;
            let headers = response.headers_mut();
            let internal = headers
                .get("grpc-status")
                .is_some_and(|status| status.as_bytes() == b"13");
            let undecodable = headers.get("grpc-message").is_some_and(|message| {
                message
                    .as_bytes()
                    .starts_with(b"failed%20to%20decode%20Protobuf")
                    || message.as_bytes().starts_with(b"failed to decode Protobuf")
            });
            if internal && undecodable {
                headers.insert("grpc-status", http::HeaderValue::from_static("3"));
            }
            Ok(response)
        })
    }
}

/// Maps a database error to a gRPC status without leaking internals to the caller.
pub fn internal(context: &str, err: impl std::fmt::Display) -> tonic::Status {
    tracing::error!(error = %err, "{context}");
    tonic::Status::internal(format!("{context}: internal error"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{InvalidConfig, Validate};

    #[test]
    fn tls_settings_that_would_not_protect_the_calls_are_refused() {
        let server = GrpcConfig {
            tls: ServerTls {
                cert_file: "server.pem".into(),
                key_file: String::new(),
                client_ca_file: String::new(),
            },
            ..GrpcConfig::default()
        };
        let problems = server
            .validate()
            .expect_err("a certificate without its key");
        assert_eq!(
            problems.problems(),
            ["tls.cert_file: and tls.key_file go together"]
        );
        let client_ca_only = GrpcConfig {
            tls: ServerTls {
                client_ca_file: "clients.pem".into(),
                ..ServerTls::default()
            },
            ..GrpcConfig::default()
        };
        assert!(client_ca_only.validate().is_err(), "client CA without TLS");

        let check = |url: &str, tls: &ClientTls| {
            let mut problems = InvalidConfig::default();
            tls.check_with_url(url, "settings", &mut problems);
            problems.problems().to_vec()
        };
        let with_ca = ClientTls {
            ca_file: "ca.pem".into(),
            ..ClientTls::default()
        };
        assert!(check("https://settings:50051", &with_ca).is_empty());
        assert!(check("http://settings:50051", &ClientTls::default()).is_empty());
        assert_eq!(
            check("http://settings:50051", &with_ca),
            ["settings.tls.ca_file: is set, so the URL must start with https://"]
        );
        assert_eq!(
            check("https://settings:50051", &ClientTls::default()),
            [
                "settings.tls.ca_file: must be set for an https:// URL (the server is verified against it)"
            ]
        );
        // The same rules when the endpoint is built: plaintext is never chosen silently.
        assert!(client_endpoint("http://settings:50051", &with_ca).is_err());
        assert!(client_endpoint("https://settings:50051", &ClientTls::default()).is_err());
        assert!(client_endpoint("http://settings:50051", &ClientTls::default()).is_ok());
    }
}
