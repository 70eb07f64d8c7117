//! The service's configuration: defaults, then the TOML file named by `WMSLINK_CONFIG`, then
//! `WMSLINK_<SECTION>__<KEY>` environment variables (see the README); validated when loaded.

use serde::{Deserialize, Serialize};
use wmslink_platform::auth::AuthConfig;
use wmslink_platform::config::{InvalidConfig, Validate, key};
use wmslink_platform::db::DatabaseConfig;
use wmslink_platform::grpc::GrpcConfig;
use wmslink_platform::nats::NatsConfig;
use wmslink_platform::outbox::OutboxConfig;
use wmslink_platform::runtime::RuntimeConfig;
use wmslink_platform::secrets::MasterKeyConfig;
use wmslink_platform::telemetry::TelemetryConfig;
use wmslink_wms_client::{SharedRateLimitConfig, WmsClientConfig};

use crate::in_flight::DispatcherConfig;

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
    pub outbox: OutboxConfig,
    pub runtime: RuntimeConfig,
    /// The shipment dispatcher, asked before a shop's endpoint URL changes
    /// (`crate::in_flight`).
    pub dispatcher: DispatcherConfig,
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
            outbox: OutboxConfig::default(),
            runtime: RuntimeConfig::default(),
            dispatcher: DispatcherConfig::default(),
        }
    }
}

impl Config {
    /// Loads the layered configuration and validates it.
    pub fn load() -> Result<Self, wmslink_platform::config::ConfigError> {
        wmslink_platform::config::load()
    }
}

impl Validate for Config {
    fn check(&self, section: &str, problems: &mut InvalidConfig) {
        self.telemetry.check(&key(section, "telemetry"), problems);
        self.database.check(&key(section, "database"), problems);
        self.nats.check(&key(section, "nats"), problems);
        self.grpc.check(&key(section, "grpc"), problems);
        self.wms.check(&key(section, "wms"), problems);
        self.rate_limit.check(&key(section, "rate_limit"), problems);
        self.outbox.check(&key(section, "outbox"), problems);
        self.runtime.check(&key(section, "runtime"), problems);
        self.nats
            .check_production(self.runtime.profile, &key(section, "nats"), problems);
        self.wms
            .check_production(self.runtime.profile, &key(section, "wms"), problems);
        self.dispatcher.check(&key(section, "dispatcher"), problems);
        self.dispatcher.check_production(
            self.runtime.profile,
            &key(section, "dispatcher"),
            problems,
        );
        wmslink_platform::secrets::check_production(
            self.runtime.profile,
            &self.secrets,
            &self.auth,
            problems,
        );
        self.runtime.check_drain_outlasts(
            &key(section, "runtime"),
            "wms.request_timeout_ms",
            self.wms.request_timeout_ms,
            problems,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_bad_values_are_refused_by_name() {
        assert_eq!(Config::default().validate(), Ok(()));
        let mut config = Config::default();
        config.runtime.drain_timeout_ms = config.wms.request_timeout_ms;
        config.nats.stream_replicas = 0;
        let problems = config.validate().expect_err("refused");
        let text = problems.to_string();
        assert!(
            text.contains("runtime.drain_timeout_ms: must be longer than wms.request_timeout_ms"),
            "{text}"
        );
        assert!(text.contains("nats.stream_replicas"), "{text}");
    }
}
