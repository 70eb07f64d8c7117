//! The service's configuration: defaults, then the TOML file named by `WMSLINK_CONFIG`, then
//! `WMSLINK_<SECTION>__<KEY>` environment variables (see the README).

use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use wmslink_platform::auth::AuthConfig;
use wmslink_platform::db::DatabaseConfig;
use wmslink_platform::grpc::GrpcConfig;
use wmslink_platform::nats::NatsConfig;
use wmslink_platform::secrets::MasterKeyConfig;
use wmslink_platform::telemetry::TelemetryConfig;
use wmslink_wms_client::{RateLimitConfig, WmsClientConfig};

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
    /// How to reach the settings service.
    pub settings: SettingsClientConfig,
    /// Request rules of every WMS call: `allow_http_hosts`, timeouts, `refuse_private_addresses`.
    pub wms: WmsClientConfig,
    /// The per-access-key budget, shared through PostgreSQL with status-sync.
    pub rate_limit: RateLimitSection,
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
            rate_limit: RateLimitSection::default(),
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
pub struct SettingsClientConfig {
    /// e.g. `http://127.0.0.1:50051`.
    pub url: String,
    /// Bearer token with the scopes `settings.read` and `settings.credentials`.
    #[serde(serialize_with = "serialize_redacted")]
    pub token: SecretString,
    /// Settings are cached per shop this long (and dropped at once on `settings.{shop}.changed`).
    pub cache_ttl_ms: u64,
    pub timeout_ms: u64,
}

fn serialize_redacted<S: serde::Serializer>(_: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("")
}

impl Default for SettingsClientConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:50051".into(),
            token: SecretString::from(""),
            cache_ttl_ms: 60_000,
            timeout_ms: 5_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimitSection {
    /// The database holding the shared token buckets (`wms_rate_limit_buckets`), the same for
    /// every service and replica that calls the WMS. Empty: the dispatcher's own database
    /// (only right when nothing else calls the WMS).
    pub database_url: String,
    pub requests_per_second: f64,
    pub burst: u32,
    /// Tokens of the burst kept unused against clock jitter.
    pub reserve: u32,
    pub max_connections: u32,
}

impl Default for RateLimitSection {
    fn default() -> Self {
        let defaults = RateLimitConfig::default();
        Self {
            database_url: "postgres://postgres@127.0.0.1:5432/wmslink_rate_limit".into(),
            requests_per_second: defaults.requests_per_second,
            burst: defaults.burst,
            reserve: defaults.reserve,
            max_connections: 5,
        }
    }
}

impl RateLimitSection {
    pub fn limits(&self) -> RateLimitConfig {
        RateLimitConfig {
            requests_per_second: self.requests_per_second,
            burst: self.burst,
            reserve: self.reserve,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SenderConfig {
    /// Rows per registration call (the WMS takes at most 200).
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
    pub fn batch_size(&self) -> usize {
        usize::try_from(self.batch_size)
            .unwrap_or(wmslink_wms_client::MAX_ROWS_PER_REGISTRATION)
            .clamp(1, wmslink_wms_client::MAX_ROWS_PER_REGISTRATION)
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
