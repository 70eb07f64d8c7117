//! The service's configuration: defaults, then the TOML file named by `WMSLINK_CONFIG`, then
//! `WMSLINK_<SECTION>__<KEY>` environment variables (see the README); validated when loaded.

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

use crate::order_events::OrderEventsConfig;
use crate::settle::DoubtRules;

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
    /// order-events, asked by the rebuild sweep for the orders whose events were lost (off
    /// when its `url` is empty).
    pub order_events: OrderEventsConfig,
    /// The durable consumers of order events and WMS observations.
    pub consumers: ConsumersConfig,
    pub outbox: OutboxConfig,
    pub runtime: RuntimeConfig,
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
            grpc: GrpcConfig::listening_on("127.0.0.1:50053"),
            auth: AuthConfig::default(),
            secrets: MasterKeyConfig::default(),
            settings: SettingsClientConfig::default(),
            wms: WmsClientConfig::default(),
            rate_limit: SharedRateLimitConfig::default(),
            sender: SenderConfig::default(),
            order_events: OrderEventsConfig::default(),
            consumers: ConsumersConfig::default(),
            outbox: OutboxConfig::default(),
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
        self.sender.check(&key(section, "sender"), problems);
        self.order_events
            .check(&key(section, "order_events"), problems);
        // Each rebuild reads every order of the sync period: never more often than the sweep.
        if self.order_events.enabled() {
            problems.check(
                self.order_events.rebuild_interval_ms >= self.sender.sweep_interval_ms,
                key(&key(section, "order_events"), "rebuild_interval_ms"),
                "must be at least sender.sweep_interval_ms",
            );
        }
        self.order_events.check_production(
            self.runtime.profile,
            &key(section, "order_events"),
            problems,
        );
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
        // A pass in flight at shutdown finishes its WMS call and records the answer.
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
pub struct SenderConfig {
    /// Rows per registration call, at most the WMS's batch size (200 for COMMERCE ROBO).
    pub batch_size: u32,
    /// After a wake-up, wait this long so that orders arriving together go in one call; never
    /// longer than the key budget takes to earn a call back (`1 / rate_limit.requests_per_second`).
    pub linger_ms: u64,
    /// Shops whose passes run at once in this process. Each shop's calls are paced by its own
    /// key's limiter; a pass holds a pooled connection only for its short transactions (its
    /// shop lock is on one session of its own), so this can be far above
    /// `database.max_connections`.
    pub max_parallel_shops: u32,
    /// E1: how often every enabled shop is swept for target-status orders not yet sent (and
    /// for work left over by a crash).
    pub sweep_interval_ms: u64,
    /// First back-off after the WMS was down; doubles per failure up to `max_backoff_ms`.
    pub base_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// How long `RunDispatch` waits for the orders it queued to be sent before answering.
    pub run_dispatch_wait_ms: u64,
    /// Sweep a shop at once when its settings change (so enabling a shop sends what is due
    /// without waiting for the next sweep).
    pub sweep_on_settings_change: bool,
    /// A shipment sent with an unknown outcome is first searched this long after the call
    /// (and never before its claim is older than `wms.request_timeout_ms` plus this): the
    /// WMS may still apply a request after the client gave up.
    pub in_doubt_margin_ms: u64,
    /// Between searches of a shipment in doubt that found nothing.
    pub in_doubt_search_interval_ms: u64,
    /// Searches that find nothing before a shipment in doubt goes to `ERROR` (with the reason).
    pub in_doubt_max_searches: u32,
}

impl Default for SenderConfig {
    fn default() -> Self {
        Self {
            batch_size: 200,
            linger_ms: 100,
            max_parallel_shops: 256,
            sweep_interval_ms: 60_000,
            base_backoff_ms: 1_000,
            max_backoff_ms: 60_000,
            run_dispatch_wait_ms: 30_000,
            sweep_on_settings_change: true,
            in_doubt_margin_ms: 30_000,
            in_doubt_search_interval_ms: 60_000,
            in_doubt_max_searches: 5,
        }
    }
}

impl Validate for SenderConfig {
    fn check(&self, section: &str, problems: &mut InvalidConfig) {
        problems.check(
            self.batch_size >= 1,
            key(section, "batch_size"),
            "must be at least 1",
        );
        problems.check(
            self.max_parallel_shops >= 1,
            key(section, "max_parallel_shops"),
            "must be at least 1",
        );
        problems.check(
            self.sweep_interval_ms >= 100,
            key(section, "sweep_interval_ms"),
            "must be at least 100",
        );
        problems.check(
            self.base_backoff_ms >= 10,
            key(section, "base_backoff_ms"),
            "must be at least 10",
        );
        problems.check(
            self.max_backoff_ms >= self.base_backoff_ms,
            key(section, "max_backoff_ms"),
            "must be at least base_backoff_ms",
        );
        problems.check(
            self.in_doubt_max_searches >= 1,
            key(section, "in_doubt_max_searches"),
            "must be at least 1",
        );
        problems.check(
            self.in_doubt_search_interval_ms >= 10,
            key(section, "in_doubt_search_interval_ms"),
            "must be at least 10",
        );
    }
}

impl SenderConfig {
    /// A pass also keeps it within the WMS's own batch size (`Wms::limits`).
    pub fn batch_size(&self) -> usize {
        usize::try_from(self.batch_size).unwrap_or(usize::MAX)
    }
    pub fn max_parallel_shops(&self) -> usize {
        usize::try_from(self.max_parallel_shops).unwrap_or(usize::MAX)
    }
    pub fn linger(&self) -> Duration {
        Duration::from_millis(self.linger_ms)
    }
    /// The linger in force under a key budget of `requests_per_second`: `linger_ms`, but never
    /// longer than the budget takes to earn a call back. Lingering fills calls to save budget;
    /// where a call's token comes back sooner than the linger (a generous WMS limit), waiting
    /// saves nothing and only adds latency. Under the WMS's 1 request/s the full linger stays,
    /// so a burst is still spent on full calls.
    pub fn effective_linger(&self, requests_per_second: f64) -> Duration {
        let per_call = if requests_per_second.is_finite() && requests_per_second > 0.0 {
            Duration::from_secs_f64((1.0 / requests_per_second).min(3_600.0))
        } else {
            Duration::MAX
        };
        self.linger().min(per_call)
    }
    pub fn sweep_interval(&self) -> Duration {
        Duration::from_millis(self.sweep_interval_ms)
    }
    pub fn base_backoff(&self) -> Duration {
        Duration::from_millis(self.base_backoff_ms)
    }
    pub fn max_backoff(&self) -> Duration {
        Duration::from_millis(self.max_backoff_ms)
    }
    pub fn run_dispatch_wait(&self) -> Duration {
        Duration::from_millis(self.run_dispatch_wait_ms)
    }
    /// When shipments in doubt are searched, given the WMS request timeout.
    pub fn doubt_rules(&self, request_timeout_ms: u64) -> DoubtRules {
        let ms = |ms: u64| chrono::Duration::milliseconds(i64::try_from(ms).unwrap_or(i64::MAX));
        DoubtRules {
            claim_expiry: ms(request_timeout_ms.saturating_add(self.in_doubt_margin_ms)),
            margin: ms(self.in_doubt_margin_ms),
            search_interval: ms(self.in_doubt_search_interval_ms),
            max_searches: i32::try_from(self.in_doubt_max_searches).unwrap_or(i32::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_linger_never_outlasts_the_time_the_budget_takes_to_earn_a_call_back() {
        let sender = SenderConfig::default();
        assert_eq!(sender.effective_linger(1.0), Duration::from_millis(100));
        let near = |d: Duration, ms: f64| (d.as_secs_f64() * 1_000.0 - ms).abs() < 0.01;
        assert!(near(sender.effective_linger(20.0), 50.0), "a faster budget");
        assert!(
            near(sender.effective_linger(1_000_000.0), 0.0),
            "no limit to speak of: no linger"
        );
        assert_eq!(sender.effective_linger(0.0), Duration::from_millis(100));
    }

    #[test]
    fn the_defaults_are_valid_and_bad_values_are_refused_by_name() {
        assert_eq!(Config::default().validate(), Ok(()));
        let mut config = Config::default();
        config.sender.batch_size = 0;
        config.sender.max_backoff_ms = 5;
        config.runtime.drain_timeout_ms = 15_000;
        let problems = config.validate().expect_err("refused");
        let text = problems.to_string();
        assert!(
            text.contains("sender.batch_size: must be at least 1"),
            "{text}"
        );
        assert!(text.contains("sender.max_backoff_ms"), "{text}");
        assert!(
            text.contains(
                "runtime.drain_timeout_ms: must be longer than wms.request_timeout_ms (20000)"
            ),
            "{text}"
        );
        assert_eq!(problems.problems().len(), 3, "{text}");
    }
}
