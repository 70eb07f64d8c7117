//! Configuration: compiled-in defaults, then the TOML file named by `WMSLINK_CONFIG`, then
//! `WMSLINK_<SECTION>__<KEY>` environment variables (see `wmslink_platform::config`); validated
//! when loaded. Durations are milliseconds.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wmslink_platform::auth::AuthConfig;
use wmslink_platform::config::{InvalidConfig, Validate, key};
use wmslink_platform::consumer::ConsumersConfig;
use wmslink_platform::db::DatabaseConfig;
use wmslink_platform::grpc::GrpcConfig;
use wmslink_platform::nats::NatsConfig;
use wmslink_platform::outbox::OutboxConfig;
use wmslink_platform::runtime::RuntimeConfig;
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
    /// The durable consumer of `shipments.*.updated`.
    pub consumers: ConsumersConfig,
    pub outbox: OutboxConfig,
    pub runtime: RuntimeConfig,
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
            grpc: GrpcConfig::listening_on("127.0.0.1:50054"),
            auth: AuthConfig::default(),
            secrets: MasterKeyConfig::default(),
            settings: SettingsClientConfig::default(),
            wms: WmsClientConfig::default(),
            rate_limit: SharedRateLimitConfig::default(),
            sync: SyncConfig::default(),
            consumers: ConsumersConfig::default(),
            outbox: OutboxConfig {
                keep_published_ms: DAY_MS,
                ..OutboxConfig::default()
            },
            runtime: RuntimeConfig::default(),
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
        self.settings.check(&key(section, "settings"), problems);
        self.wms.check(&key(section, "wms"), problems);
        self.rate_limit.check(&key(section, "rate_limit"), problems);
        self.sync.check(&key(section, "sync"), problems);
        self.consumers.check(&key(section, "consumers"), problems);
        self.outbox.check(&key(section, "outbox"), problems);
        self.runtime.check(&key(section, "runtime"), problems);
        self.nats
            .check_production(self.runtime.profile, &key(section, "nats"), problems);
        self.wms
            .check_production(self.runtime.profile, &key(section, "wms"), problems);
        wmslink_platform::secrets::check_production(
            self.runtime.profile,
            &self.secrets,
            &self.auth,
            problems,
        );
        wmslink_platform::secrets::check_production_token(
            self.runtime.profile,
            key(&key(section, "settings"), "token"),
            "the token for the settings service",
            &self.settings.token,
            problems,
        );
        // A pass in flight at shutdown finishes its WMS call and records itself.
        self.runtime.check_drain_outlasts(
            &key(section, "runtime"),
            "wms.request_timeout_ms",
            self.wms.request_timeout_ms,
            problems,
        );
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncConfig {
    /// Run passes by themselves (E1). Off: only `RunSync` runs them.
    pub scheduled: bool,
    /// Time between two passes of one shop (at least 1,000). Default 300,000 (5 min).
    pub interval_ms: u64,
    /// How often the scheduler looks for due shops (at least 10).
    pub tick_ms: u64,
    /// How often the scheduler asks the settings service for every enabled shop
    /// (`ListShops`, first at start) and adds the ones it does not know yet, so that a shop
    /// enabled while status-sync was down, or whose settings event was lost, is synced too
    /// (at least 1,000). Default 60,000.
    pub discover_ms: u64,
    /// The `update_date` search starts this much before the start of the last successful
    /// pass, against clock skew and orders updated while it ran. Default 120,000.
    pub overlap_ms: u64,
    /// Every Nth scheduled pass is full: after the `update_date` search, every watched order
    /// in the sync period that it did not return is asked for with `order_no-in`. 1: every
    /// pass is full. Default 12 (once an hour at the default interval).
    pub full_pass_every: u32,
    /// A suspected anomaly is reported only when it still holds this long after it was seen
    /// (so an event of the dispatcher still on its way does not raise a false one). Default
    /// 120,000.
    pub anomaly_grace_ms: u64,
    /// On a full pass, an observation the dispatcher's last shipment update still does not
    /// reflect this long after it was published is published again (a lost
    /// `wms.{shop}.observed` must not leave R4 or the order list stale). Default 600,000.
    pub reconcile_after_ms: u64,
    /// A shipped order stays watched until its carrier status is final (delivered, returned,
    /// cancelled) or this long after shipping. Default 1,209,600,000 (14 days).
    pub shipped_watch_ms: u64,
    /// Attempts of one WMS call in a pass (a rate-limited call waits its `Retry-After`).
    pub call_attempts: u32,
    /// First wait between two attempts of a failed call; doubles per attempt.
    pub call_retry_base_ms: u64,
    /// A pass that failed is tried again after this (doubling per failure, at most
    /// `interval_ms`, at least what the WMS asked for in `Retry-After`; at least 1,000).
    /// Default 10,000.
    pub retry_base_ms: u64,
    /// How long one replica holds a shop's lease without renewing it (at least 3,000).
    /// Default 60,000.
    pub lease_ttl_ms: u64,
    /// How long `RunSync` waits for a pass of the shop that is already running. Default 30,000.
    pub manual_wait_ms: u64,
    /// Passes of different shops running at once in this replica.
    pub max_concurrent_shops: usize,
    /// Sync runs are kept this long (at least one day). Default 2,592,000,000 (30 days).
    pub keep_runs_ms: u64,
}

const DAY_MS: u64 = 24 * 3600 * 1000;

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            scheduled: true,
            interval_ms: 300_000,
            tick_ms: 1_000,
            discover_ms: 60_000,
            overlap_ms: 120_000,
            full_pass_every: 12,
            anomaly_grace_ms: 120_000,
            reconcile_after_ms: 600_000,
            shipped_watch_ms: 14 * DAY_MS,
            call_attempts: 3,
            call_retry_base_ms: 1_000,
            retry_base_ms: 10_000,
            lease_ttl_ms: 60_000,
            manual_wait_ms: 30_000,
            max_concurrent_shops: 32,
            keep_runs_ms: 30 * DAY_MS,
        }
    }
}

impl Validate for SyncConfig {
    fn check(&self, section: &str, problems: &mut InvalidConfig) {
        let at_least = |problems: &mut InvalidConfig, value: u64, min: u64, name: &str| {
            problems.check(
                value >= min,
                key(section, name),
                format!("must be at least {min}"),
            );
        };
        at_least(problems, self.interval_ms, 1_000, "interval_ms");
        at_least(problems, self.tick_ms, 10, "tick_ms");
        at_least(problems, self.discover_ms, 1_000, "discover_ms");
        at_least(problems, self.retry_base_ms, 1_000, "retry_base_ms");
        at_least(problems, self.lease_ttl_ms, 3_000, "lease_ttl_ms");
        at_least(problems, self.keep_runs_ms, DAY_MS, "keep_runs_ms");
        at_least(
            problems,
            u64::from(self.full_pass_every),
            1,
            "full_pass_every",
        );
        at_least(problems, u64::from(self.call_attempts), 1, "call_attempts");
        at_least(
            problems,
            u64::try_from(self.max_concurrent_shops).unwrap_or(u64::MAX),
            1,
            "max_concurrent_shops",
        );
    }
}

impl SyncConfig {
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }
    pub fn discover(&self) -> Duration {
        Duration::from_millis(self.discover_ms)
    }
    pub fn tick(&self) -> Duration {
        Duration::from_millis(self.tick_ms)
    }
    pub fn overlap(&self) -> Duration {
        Duration::from_millis(self.overlap_ms)
    }
    pub fn anomaly_grace(&self) -> Duration {
        Duration::from_millis(self.anomaly_grace_ms)
    }
    pub fn reconcile_after(&self) -> Duration {
        Duration::from_millis(self.reconcile_after_ms)
    }
    pub fn shipped_watch(&self) -> Duration {
        Duration::from_millis(self.shipped_watch_ms)
    }
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_millis(self.lease_ttl_ms)
    }
    pub fn manual_wait(&self) -> Duration {
        Duration::from_millis(self.manual_wait_ms)
    }
    pub fn call_retry_base(&self) -> Duration {
        Duration::from_millis(self.call_retry_base_ms)
    }
    pub fn keep_runs(&self) -> Duration {
        Duration::from_millis(self.keep_runs_ms)
    }

    /// Wait before the next pass after `failures` failed passes in a row.
    pub fn retry_delay(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        let backoff = wmslink_platform::backoff::delay(
            Duration::from_millis(self.retry_base_ms),
            self.interval(),
            failures,
        );
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
            retry_base_ms: 10_000,
            interval_ms: 60_000,
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
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn bad_values_are_refused_by_name_not_clamped() {
        let mut config = Config::default();
        config.sync.interval_ms = 999;
        config.sync.call_attempts = 0;
        config.consumers.ack_wait_ms = 10;
        config.runtime.drain_timeout_ms = config.wms.request_timeout_ms;
        let problems = config.validate().expect_err("refused");
        let text = problems.to_string();
        for expected in [
            "sync.interval_ms: must be at least 1000",
            "sync.call_attempts: must be at least 1",
            "consumers.ack_wait_ms: must be at least 100",
            "runtime.drain_timeout_ms: must be longer than wms.request_timeout_ms",
        ] {
            assert!(text.contains(expected), "{text}");
        }
        assert_eq!(problems.problems().len(), 4, "{text}");
    }

    #[test]
    fn production_refuses_anonymous_nats_and_an_unsalted_rate_limit() {
        use secrecy::SecretString;
        use wmslink_platform::runtime::Profile;
        use wmslink_wms_client::BucketSalt;

        let mut config = Config::default();
        config.runtime.profile = Profile::Production;
        config.settings.token = SecretString::from("status-sync-a-production-token-0123456789");
        let problems = config.validate().expect_err("refused");
        assert_eq!(
            problems.problems(),
            [
                "nats.user: production needs a NATS identity: nats.user (with nats.password), nats.credentials_file or nats.nkey_seed_file",
                "wms.bucket_salt: must be set in production (the same secret in every service calling the WMS)",
            ]
        );

        config.nats.nkey_seed_file = "/etc/wmslink/nats/status-sync.nk".into();
        config.wms.bucket_salt = BucketSalt(SecretString::from("a-salt-shared-by-the-wms-callers"));
        assert_eq!(config.validate(), Ok(()));
        // Two identities at once are refused in any profile.
        config.nats.user = "status-sync".into();
        config.runtime.profile = Profile::Development;
        let problems = config.validate().expect_err("refused");
        assert_eq!(
            problems.problems(),
            [
                "nats.user: nats.user, nats.credentials_file and nats.nkey_seed_file are alternatives: set one"
            ]
        );
    }
}
