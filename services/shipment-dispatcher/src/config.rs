//! The service's configuration: defaults, then the TOML file named by `WMSLINK_CONFIG`, then
//! `WMSLINK_<SECTION>__<KEY>` environment variables (see the README).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wmslink_platform::auth::AuthConfig;
use wmslink_platform::db::DatabaseConfig;
use wmslink_platform::grpc::GrpcConfig;
use wmslink_platform::nats::NatsConfig;
use wmslink_platform::secrets::MasterKeyConfig;
use wmslink_platform::telemetry::TelemetryConfig;
pub use wmslink_settings_client::SettingsClientConfig;
pub use wmslink_wms_client::SharedRateLimitConfig;
use wmslink_wms_client::WmsClientConfig;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub telemetry: TelemetryConfig,
    pub database: DatabaseConfig,
    pub nats: NatsConfig,
    pub grpc: GrpcConfig,
    pub auth: AuthConfig,
    /// The master keys that open the sealed WMS access keys (the same as the settings service's).
    pub secrets: MasterKeyConfig,
    /// How to reach the settings service, and how long its answers are cached.
    pub settings: SettingsClientConfig,
    /// Request rules of every WMS call: `allow_http_hosts`, timeouts, `refuse_private_addresses`.
    pub wms: WmsClientConfig,
    /// The per-access-key budget, shared through PostgreSQL with status-sync.
    pub rate_limit: SharedRateLimitConfig,
    pub sender: SenderConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            telemetry: TelemetryConfig::default(),
            database: DatabaseConfig {
                url: "postgres://postgres@127.0.0.1:5432/wmslink_dispatch".into(),
                ..DatabaseConfig::default()
            },
            nats: NatsConfig::default(),
            grpc: GrpcConfig {
                listen_addr: "127.0.0.1:50053".into(),
            },
            auth: AuthConfig::default(),
            secrets: MasterKeyConfig::default(),
            settings: SettingsClientConfig::default(),
            wms: WmsClientConfig::default(),
            rate_limit: SharedRateLimitConfig::default(),
            sender: SenderConfig::default(),
        }
    }
}

impl Config {
    pub fn load() -> Result<Self, wmslink_platform::config::ConfigError> {
        wmslink_platform::config::load()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SenderConfig {
    /// Rows per registration call, at most the WMS's batch size (200 for COMMERCE ROBO).
    pub batch_size: u32,
    /// After a wake-up, wait this long so that orders arriving together go in one call.
    pub linger_ms: u64,
    /// E1: how often every enabled shop is swept for target-status orders not yet sent (and
    /// for work left over by a crash).
    pub sweep_interval_ms: u64,
    /// First back-off after the WMS was down; doubles per failure up to `max_backoff_ms`.
    pub base_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// How long `RunDispatch` waits for the orders it queued to be sent before answering.
    pub run_dispatch_wait_ms: u64,
    /// JetStream ack wait of the dispatcher's consumers.
    pub consumer_ack_wait_ms: u64,
    /// Deliveries before a transiently failing event is dead-lettered.
    pub consumer_max_deliver: i64,
    /// First redelivery delay after a transient failure.
    pub consumer_retry_base_ms: u64,
    /// Durable consumer names start with this (e.g. `shipment-dispatcher-status-changed`).
    pub consumer_prefix: String,
    /// Sweep a shop at once when its settings change (so enabling a shop sends what is due
    /// without waiting for the next sweep).
    pub sweep_on_settings_change: bool,
}

impl Default for SenderConfig {
    fn default() -> Self {
        Self {
            batch_size: 200,
            linger_ms: 100,
            sweep_interval_ms: 60_000,
            base_backoff_ms: 1_000,
            max_backoff_ms: 60_000,
            run_dispatch_wait_ms: 30_000,
            consumer_ack_wait_ms: 30_000,
            consumer_max_deliver: 10,
            consumer_retry_base_ms: 500,
            consumer_prefix: "shipment-dispatcher".into(),
            sweep_on_settings_change: true,
        }
    }
}

impl SenderConfig {
    /// At least 1; a pass also keeps it within the WMS's own batch size (`Wms::limits`).
    pub fn batch_size(&self) -> usize {
        usize::try_from(self.batch_size)
            .unwrap_or(usize::MAX)
            .max(1)
    }
    pub fn linger(&self) -> Duration {
        Duration::from_millis(self.linger_ms)
    }
    pub fn sweep_interval(&self) -> Duration {
        Duration::from_millis(self.sweep_interval_ms.max(100))
    }
    pub fn base_backoff(&self) -> Duration {
        Duration::from_millis(self.base_backoff_ms.max(10))
    }
    pub fn max_backoff(&self) -> Duration {
        Duration::from_millis(self.max_backoff_ms.max(self.base_backoff_ms).max(10))
    }
    pub fn run_dispatch_wait(&self) -> Duration {
        Duration::from_millis(self.run_dispatch_wait_ms)
    }
}
