//! Configuration: compiled-in defaults, then the TOML file named by `WMSLINK_CONFIG`, then
//! `WMSLINK_<SECTION>__<KEY>` environment variables (see the README for every key).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wmslink_platform::auth::AuthConfig;
use wmslink_platform::db::DatabaseConfig;
use wmslink_platform::grpc::GrpcConfig;
use wmslink_platform::nats::NatsConfig;
use wmslink_platform::telemetry::TelemetryConfig;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub telemetry: TelemetryConfig,
    pub database: DatabaseConfig,
    pub nats: NatsConfig,
    pub grpc: GrpcConfig,
    pub auth: AuthConfig,
    pub orders: OrdersConfig,
    pub consumers: ConsumersConfig,
    pub outbox: OutboxConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            telemetry: TelemetryConfig::default(),
            database: DatabaseConfig {
                url: "postgres://postgres@127.0.0.1:5432/wmslink_orders".into(),
                ..DatabaseConfig::default()
            },
            nats: NatsConfig::default(),
            grpc: GrpcConfig {
                listen_addr: "127.0.0.1:50052".into(),
            },
            auth: AuthConfig::default(),
            orders: OrdersConfig::default(),
            consumers: ConsumersConfig::default(),
            outbox: OutboxConfig::default(),
        }
    }
}

impl Config {
    /// Loads the layered configuration.
    pub fn load() -> Result<Self, wmslink_platform::config::ConfigError> {
        wmslink_platform::config::load()
    }
}

/// The service's own rules.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct OrdersConfig {
    /// WMS status ids during which the cart may not change an order's status (R4; 20 = 処理中).
    pub processing_wms_status_ids: Vec<i32>,
    /// Largest accepted order message (NATS payload or encoded gRPC order), in bytes.
    pub max_message_bytes: usize,
}

impl Default for OrdersConfig {
    fn default() -> Self {
        Self {
            processing_wms_status_ids: vec![20],
            max_message_bytes: 1024 * 1024,
        }
    }
}

/// The durable JetStream consumers (cart orders, settings, shipments).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsumersConfig {
    /// How long a delivered message may stay unacknowledged before it is redelivered.
    pub ack_wait_ms: u64,
    /// Deliveries of a transiently failing message before it is dead-lettered.
    pub max_deliver: i64,
    /// First redelivery delay after a transient failure; doubles up to `retry_max_delay_ms`.
    pub retry_base_delay_ms: u64,
    pub retry_max_delay_ms: u64,
}

impl Default for ConsumersConfig {
    fn default() -> Self {
        Self {
            ack_wait_ms: 30_000,
            max_deliver: 10,
            retry_base_delay_ms: 500,
            retry_max_delay_ms: 60_000,
        }
    }
}

impl ConsumersConfig {
    pub fn ack_wait(&self) -> Duration {
        Duration::from_millis(self.ack_wait_ms.max(1))
    }
    pub fn retry_base_delay(&self) -> Duration {
        Duration::from_millis(self.retry_base_delay_ms)
    }
    pub fn retry_max_delay(&self) -> Duration {
        Duration::from_millis(self.retry_max_delay_ms)
    }
}

/// The transactional outbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct OutboxConfig {
    /// Run the relay that publishes committed outbox rows. Off only to simulate a crash between
    /// commit and publish in tests; rows wait in the table until a relay runs.
    pub relay_enabled: bool,
    /// Published rows older than this are deleted (hourly).
    pub keep_published_hours: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            relay_enabled: true,
            keep_published_hours: 72,
        }
    }
}
