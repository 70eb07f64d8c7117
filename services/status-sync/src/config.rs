//! Configuration: compiled-in defaults, then the TOML file named by `WMSLINK_CONFIG`, then
//! `WMSLINK_<SECTION>__<KEY>` environment variables (see `wmslink_platform::config`).

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
    /// The master keys the settings service seals access keys with (the same ones).
    pub secrets: MasterKeyConfig,
    /// How to reach the settings service, and how long its answers are cached.
    pub settings: SettingsClientConfig,
    /// Request rules of every WMS call (http hosts, timeouts, private addresses).
    pub wms: WmsClientConfig,
    /// The per-access-key budget shared with the dispatcher through PostgreSQL.
    pub rate_limit: SharedRateLimitConfig,
    pub sync: SyncConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            telemetry: TelemetryConfig::default(),
            database: DatabaseConfig {
                url: "postgres://postgres@127.0.0.1:5432/wmslink_sync".into(),
                ..DatabaseConfig::default()
            },
            nats: NatsConfig::default(),
            grpc: GrpcConfig {
                listen_addr: "127.0.0.1:50054".into(),
            },
            auth: AuthConfig::default(),
            secrets: MasterKeyConfig::default(),
            settings: SettingsClientConfig::default(),
            wms: WmsClientConfig::default(),
            rate_limit: SharedRateLimitConfig::default(),
            sync: SyncConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncConfig {
    /// Run passes by themselves (E1). Off: only `RunSync` runs them.
    pub scheduled: bool,
    /// Time between two passes of one shop. Default 300 s.
    pub interval_secs: u64,
    /// How often the scheduler looks for due shops.
    pub tick_ms: u64,
    /// How often the scheduler asks the settings service for every enabled shop
    /// (`ListShops`, first at start) and adds the ones it does not know yet, so that a shop
    /// enabled while status-sync was down, or whose settings event was lost, is synced too.
    /// Default 60 s.
    pub discover_secs: u64,
    /// The `update_date` search starts this much before the start of the last successful
    /// pass, against clock skew and orders updated while it ran. Default 120 s.
    pub overlap_secs: u64,
    /// Every Nth scheduled pass is full: after the `update_date` search, every watched order
    /// in the sync period that it did not return is asked for with `order_no-in`. 1: every
    /// pass is full. Default 12 (once an hour at the default interval).
    pub full_pass_every: u32,
    /// A suspected anomaly is reported only when it still holds this long after it was seen
    /// (so an event of the dispatcher still on its way does not raise a false one). Default 120 s.
    pub anomaly_grace_secs: u64,
    /// A shipped order stays watched until its carrier status is final (delivered, returned,
    /// cancelled) or this many days after shipping. Default 14.
    pub shipped_watch_days: u32,
    /// Attempts of one WMS call in a pass (a rate-limited call waits its `Retry-After`).
    pub call_attempts: u32,
    /// First wait between two attempts of a failed call; doubles per attempt.
    pub call_retry_base_ms: u64,
    /// A pass that failed is tried again after this (doubling per failure, at most
    /// `interval_secs`, at least what the WMS asked for in `Retry-After`). Default 10 s.
    pub retry_base_secs: u64,
    /// How long one replica holds a shop's lease without renewing it. Default 60 s.
    pub lease_ttl_secs: u64,
    /// How long `RunSync` waits for a pass of the shop that is already running.
    pub manual_wait_secs: u64,
    /// Passes of different shops running at once in this replica.
    pub max_concurrent_shops: usize,
    /// Sync runs are kept this many days.
    pub keep_runs_days: u32,
    /// The durable consumer of `shipments.*.updated`.
    pub consumer_ack_wait_secs: u64,
    pub consumer_max_deliver: i64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            scheduled: true,
            interval_secs: 300,
            tick_ms: 1_000,
            discover_secs: 60,
            overlap_secs: 120,
            full_pass_every: 12,
            anomaly_grace_secs: 120,
            shipped_watch_days: 14,
            call_attempts: 3,
            call_retry_base_ms: 1_000,
            retry_base_secs: 10,
            lease_ttl_secs: 60,
            manual_wait_secs: 30,
            max_concurrent_shops: 32,
            keep_runs_days: 30,
            consumer_ack_wait_secs: 30,
            consumer_max_deliver: 10,
        }
    }
}

impl SyncConfig {
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_secs.max(1))
    }
    pub fn discover(&self) -> Duration {
        Duration::from_secs(self.discover_secs.max(1))
    }
    pub fn tick(&self) -> Duration {
        Duration::from_millis(self.tick_ms.max(10))
    }
    pub fn overlap(&self) -> Duration {
        Duration::from_secs(self.overlap_secs)
    }
    pub fn anomaly_grace(&self) -> Duration {
        Duration::from_secs(self.anomaly_grace_secs)
    }
    pub fn shipped_watch(&self) -> Duration {
        Duration::from_secs(u64::from(self.shipped_watch_days) * 24 * 3600)
    }
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_secs(self.lease_ttl_secs.max(3))
    }
    pub fn manual_wait(&self) -> Duration {
        Duration::from_secs(self.manual_wait_secs)
    }
    pub fn call_retry_base(&self) -> Duration {
        Duration::from_millis(self.call_retry_base_ms)
    }

    /// Wait before the next pass after `failures` failed passes in a row.
    pub fn retry_delay(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        let exponent = failures.saturating_sub(1).min(16);
        let backoff = Duration::from_secs(self.retry_base_secs.max(1))
            .saturating_mul(2u32.saturating_pow(exponent))
            .min(self.interval());
        retry_after.map_or(backoff, |asked| backoff.max(asked))
    }
}

#[cfg(test)]
mod tests {
    use wmslink_wms_client::RateLimitConfig;

    use super::*;

    #[test]
    fn retry_delay_doubles_is_capped_and_honours_retry_after() {
        let sync = SyncConfig {
            retry_base_secs: 10,
            interval_secs: 60,
            ..SyncConfig::default()
        };
        assert_eq!(sync.retry_delay(1, None), Duration::from_secs(10));
        assert_eq!(sync.retry_delay(2, None), Duration::from_secs(20));
        assert_eq!(sync.retry_delay(9, None), Duration::from_secs(60));
        assert_eq!(
            sync.retry_delay(1, Some(Duration::from_secs(42))),
            Duration::from_secs(42)
        );
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let config = Config::default();
        assert_eq!(config.grpc.listen_addr, "127.0.0.1:50054");
        assert!(config.database.url.ends_with("/wmslink_sync"));
        assert_eq!(config.sync.interval(), Duration::from_secs(300));
        assert_eq!(config.rate_limit.limits(), RateLimitConfig::default());
    }
}
