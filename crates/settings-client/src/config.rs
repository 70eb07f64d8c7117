//! The `[settings]` section of every service that reads shop settings.

use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// How to reach the settings service and how long its answers are cached. Every field has a
/// default; times are in milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SettingsClientConfig {
    /// e.g. `http://127.0.0.1:50051` (the default).
    pub url: String,
    /// Bearer token with the scopes `settings.read` and `settings.credentials`. Required (the
    /// settings service refuses calls without it); serialized as an empty string.
    #[serde(serialize_with = "serialize_redacted")]
    pub token: SecretString,
    /// How long a shop's settings are used before they are asked for again. A
    /// `settings.{shop}.changed` event drops them at once. Default 60,000 (one minute).
    pub cache_ttl_ms: u64,
    /// Connect timeout and deadline of one call to the settings service (at least 100).
    /// Default 5,000.
    pub timeout_ms: u64,
    /// TLS to the settings service (`tls.ca_file` set: the URL must be `https://`).
    pub tls: wmslink_platform::grpc::ClientTls,
}

impl Default for SettingsClientConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:50051".into(),
            token: SecretString::from(""),
            cache_ttl_ms: 60_000,
            timeout_ms: 5_000,
            tls: wmslink_platform::grpc::ClientTls::default(),
        }
    }
}

impl wmslink_platform::config::Validate for SettingsClientConfig {
    fn check(&self, section: &str, problems: &mut wmslink_platform::config::InvalidConfig) {
        use wmslink_platform::config::key;
        if let Err(err) = tonic::transport::Endpoint::from_shared(self.url.clone()) {
            problems.add(key(section, "url"), format!("not a URL: {err}"));
        }
        self.tls.check_with_url(&self.url, section, problems);
        problems.check(
            self.timeout_ms >= 100,
            key(section, "timeout_ms"),
            "must be at least 100",
        );
    }
}

impl SettingsClientConfig {
    /// [`cache_ttl_ms`](Self::cache_ttl_ms) as a [`Duration`].
    pub fn cache_ttl(&self) -> Duration {
        Duration::from_millis(self.cache_ttl_ms)
    }

    /// [`timeout_ms`](Self::timeout_ms) as a [`Duration`].
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

fn serialize_redacted<S: serde::Serializer>(_: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_in_milliseconds_and_the_token_is_never_serialized() {
        let config = SettingsClientConfig {
            token: SecretString::from("s3cret-token"),
            ..SettingsClientConfig::default()
        };
        assert_eq!(config.cache_ttl(), Duration::from_secs(60));
        assert_eq!(config.timeout(), Duration::from_secs(5));
        let json = serde_json::to_string(&config).expect("serializes");
        assert!(!json.contains("s3cret"), "{json}");
        assert!(json.contains("\"token\":\"\""), "{json}");
        assert!(!format!("{config:?}").contains("s3cret"));

        use wmslink_platform::config::Validate;
        assert_eq!(config.validate(), Ok(()));
        let tiny = SettingsClientConfig {
            timeout_ms: 99,
            url: "not a url".into(),
            ..SettingsClientConfig::default()
        };
        let problems = tiny.validate().expect_err("refused, not clamped");
        assert_eq!(problems.problems().len(), 2, "{problems}");
        assert!(
            problems
                .to_string()
                .contains("timeout_ms: must be at least 100")
        );
    }

    #[test]
    fn missing_keys_take_the_defaults() {
        let config: SettingsClientConfig =
            serde_json::from_str(r#"{"url":"http://settings:50051","token":"t"}"#)
                .expect("deserializes");
        assert_eq!(config.url, "http://settings:50051");
        assert_eq!(config.cache_ttl_ms, 60_000);
        assert_eq!(config.timeout_ms, 5_000);
    }
}
