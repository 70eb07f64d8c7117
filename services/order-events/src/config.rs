//! Configuration: compiled-in defaults, then the TOML file named by `WMSLINK_CONFIG`, then
//! `WMSLINK_<SECTION>__<KEY>` environment variables (see the README for every key); validated
//! when loaded.

use serde::{Deserialize, Serialize};
use wmslink_platform::auth::AuthConfig;
use wmslink_platform::config::{InvalidConfig, Validate, key};
use wmslink_platform::consumer::ConsumersConfig;
use wmslink_platform::db::DatabaseConfig;
use wmslink_platform::grpc::GrpcConfig;
use wmslink_platform::nats::NatsConfig;
use wmslink_platform::outbox::OutboxConfig;
use wmslink_platform::runtime::RuntimeConfig;
use wmslink_platform::secrets;
use wmslink_platform::telemetry::TelemetryConfig;
use wmslink_settings_client::SettingsClientConfig;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub telemetry: TelemetryConfig,
    pub database: DatabaseConfig,
    pub nats: NatsConfig,
    pub grpc: GrpcConfig,
    pub auth: AuthConfig,
    pub orders: OrdersConfig,
    /// The settings service, asked about shops whose settings event has not arrived (when
    /// `orders.ask_settings`); needs a token with `settings.read`.
    pub settings: SettingsClientConfig,
    /// The durable JetStream consumers (cart orders, settings, shipments).
    pub consumers: ConsumersConfig,
    pub outbox: OutboxConfig,
    pub runtime: RuntimeConfig,
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
            grpc: GrpcConfig::listening_on("127.0.0.1:50052"),
            auth: AuthConfig::default(),
            orders: OrdersConfig::default(),
            settings: SettingsClientConfig::default(),
            consumers: ConsumersConfig::default(),
            outbox: OutboxConfig {
                keep_published_ms: 72 * 3600 * 1000,
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
        self.orders.check(&key(section, "orders"), problems);
        if self.orders.ask_settings {
            self.settings.check(&key(section, "settings"), problems);
            secrets::check_production_token(
                self.runtime.profile,
                key(&key(section, "settings"), "token"),
                "the token for the settings service",
                &self.settings.token,
                problems,
            );
        }
        secrets::check_production_tokens(self.runtime.profile, &self.auth, problems);
        self.consumers.check(&key(section, "consumers"), problems);
        self.outbox.check(&key(section, "outbox"), problems);
        self.runtime.check(&key(section, "runtime"), problems);
        self.nats
            .check_production(self.runtime.profile, &key(section, "nats"), problems);
    }
}

/// The service's own rules.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct OrdersConfig {
    /// WMS status ids during which the cart may not change an order's status (R4; 20 = 処理中).
    pub processing_wms_status_ids: Vec<i32>,
    /// Largest accepted order message (NATS payload or encoded gRPC order), in bytes. Lowered
    /// at start to the NATS server's `max_payload` less 8 KiB, so every event of an accepted
    /// order can be published.
    pub max_message_bytes: usize,
    /// Ask the settings service (`[settings]`) about a shop whose settings event has not
    /// arrived before refusing its orders, and learn every registered shop at start. Off: only
    /// `settings.{shop}.changed` makes a shop known.
    pub ask_settings: bool,
}

impl Default for OrdersConfig {
    fn default() -> Self {
        Self {
            processing_wms_status_ids: vec![20],
            max_message_bytes: 1024 * 1024,
            ask_settings: true,
        }
    }
}

impl Validate for OrdersConfig {
    fn check(&self, section: &str, problems: &mut InvalidConfig) {
        problems.check(
            self.max_message_bytes > 0,
            key(section, "max_message_bytes"),
            "must be positive",
        );
        problems.check(
            self.processing_wms_status_ids.iter().all(|id| *id > 0),
            key(section, "processing_wms_status_ids"),
            "must be positive WMS status ids",
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
        config.orders.max_message_bytes = 0;
        config.consumers.max_deliver = 0;
        config.orders.processing_wms_status_ids = vec![20, -1];
        let problems = config.validate().expect_err("refused");
        assert_eq!(
            problems.problems(),
            [
                "orders.max_message_bytes: must be positive",
                "orders.processing_wms_status_ids: must be positive WMS status ids",
                "consumers.max_deliver: must be at least 1",
            ]
        );
    }

    #[test]
    fn production_refuses_development_tokens_taken_and_presented() {
        use secrecy::SecretString;
        use wmslink_platform::auth::TokenConfig;
        use wmslink_platform::runtime::Profile;

        let mut config = Config::default();
        config.runtime.profile = Profile::Production;
        config.orders.ask_settings = true;
        config.auth.tokens = vec![TokenConfig {
            caller: "cart".into(),
            token: SecretString::from("dev-cart-token".to_owned()),
            scopes: vec![],
            shops: vec![],
        }];
        config.settings.token = SecretString::from("dev-order-events-token".to_owned());
        let problems = config.validate().expect_err("refused");
        assert_eq!(
            problems.problems(),
            [
                "settings.token: the token for the settings service is a development token or shorter than 32 characters",
                "auth.tokens: the token of caller 'cart' is a development token or shorter than 32 characters",
                "nats.user: production needs a NATS identity: nats.user (with nats.password), nats.credentials_file or nats.nkey_seed_file",
            ]
        );

        config.nats.user = "order-events".into();
        let strong =
            |name: &str| SecretString::from(format!("{name}-a-production-token-0123456789"));
        config.auth.tokens[0].token = strong("cart");
        config.settings.token = strong("order-events");
        assert_eq!(config.validate(), Ok(()));
        config.runtime.profile = Profile::Development;
        config.settings.token = SecretString::from("dev-order-events-token".to_owned());
        assert_eq!(config.validate(), Ok(()), "development accepts them");
    }
}
