//! Plumbing every wmslink service shares: configuration (validated at load), telemetry,
//! PostgreSQL, NATS JetStream (streams, outbox relay, consumers with dead letters, the
//! dead-letter service), gRPC serving with auth, secrets, shop ids and order numbers, and the
//! service runtime (named tasks under one failure policy, health, dependency waits at start,
//! graceful shutdown). Services keep their business logic; this crate keeps the wiring identical.

pub mod auth;
pub mod authz;
pub mod backoff;
pub mod config;
pub mod consumer;
pub mod db;
pub mod dead_letters;
pub mod grpc;
pub mod nats;
pub mod outbox;
pub mod runtime;
pub mod secrets;
pub mod shop;
pub mod shutdown;
pub mod telemetry;
pub mod validation;

/// Installs rustls' ring crypto provider for the process. Several dependencies compile rustls;
/// without one chosen provider rustls panics on first TLS use. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
