//! What the integration suites of the services and the end-to-end suite share, so that each
//! starts the real parts the same way: a service in-process on port 0 ([`RunningService`]), the
//! real settings service on a database of its own ([`SettingsService`]) with shops set up and
//! enabled through its API ([`shop`]), the WMS simulator ([`wms`]), tokens and gRPC clients
//! ([`grpc`]). Per-test databases and NATS names come from `wmslink-testkit`.
//!
//! A dev-dependency only: nothing in a service's binary uses it.

pub mod grpc;
pub mod service;
pub mod settings;
pub mod shop;
pub mod wms;

pub use service::RunningService;
pub use settings::SettingsService;
