//! The service's configuration: defaults, then the TOML file named by `WMSLINK_CONFIG`, then
//! `WMSLINK_<SECTION>__<KEY>` environment variables (see the README).

use serde::{Deserialize, Serialize};
use wmslink_platform::auth::AuthConfig;
use wmslink_platform::db::DatabaseConfig;
use wmslink_platform::grpc::GrpcConfig;
use wmslink_platform::nats::NatsConfig;
use wmslink_platform::secrets::MasterKeyConfig;
use wmslink_platform::telemetry::TelemetryConfig;
use wmslink_wms_client::{SharedRateLimitConfig, WmsClientConfig};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub telemetry: TelemetryConfig,
    pub database: DatabaseConfig,
    pub nats: NatsConfig,
    pub grpc: GrpcConfig,
    pub auth: AuthConfig,
    pub secrets: MasterKeyConfig,
    /// Rules for the connection check (S2): `allow_http_hosts`, `connect_timeout_ms`,
    /// `request_timeout_ms`, `refuse_private_addresses`, `user_agent`.
    pub wms: WmsClientConfig,
    /// The per-access-key WMS budget, shared through PostgreSQL with the dispatcher and
    /// status-sync: a connection check draws from the same bucket as every other call.
    pub rate_limit: SharedRateLimitConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            telemetry: TelemetryConfig::default(),
            database: DatabaseConfig {
                url: "postgres://postgres@127.0.0.1:5432/wmslink_settings".into(),
                ..DatabaseConfig::default()
            },
            nats: NatsConfig::default(),
            grpc: GrpcConfig::default(),
            auth: AuthConfig::default(),
            secrets: MasterKeyConfig::default(),
            wms: WmsClientConfig {
                // A person waits for the check: keep it short.
                connect_timeout_ms: 3_000,
                request_timeout_ms: 10_000,
                ..WmsClientConfig::default()
            },
            rate_limit: SharedRateLimitConfig::default(),
        }
    }
}

impl Config {
    /// Loads the layered configuration.
    pub fn load() -> Result<Self, wmslink_platform::config::ConfigError> {
        wmslink_platform::config::load()
    }
}
