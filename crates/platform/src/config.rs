//! Layered configuration: compiled-in defaults, then an optional TOML file named by
//! `WMSLINK_CONFIG`, then environment variables `WMSLINK_<SECTION>__<KEY>`; then checked as a
//! whole ([`Validate`]) so that a bad value stops the service at start with every problem
//! named, instead of being clamped silently where it is used. Durations are milliseconds
//! everywhere (`…_ms` keys).

use std::fmt;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Environment variable naming an optional TOML configuration file.
pub const CONFIG_FILE_ENV: &str = "WMSLINK_CONFIG";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error(transparent)]
    Invalid(#[from] InvalidConfig),
}

/// Every problem found in a configuration, as `section.key: reason`.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct InvalidConfig {
    problems: Vec<String>,
}

impl fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}", self.problems.join("; "))
    }
}

impl InvalidConfig {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `key` (e.g. `consumers.max_deliver`) is wrong, and why.
    pub fn add(&mut self, key: impl fmt::Display, reason: impl fmt::Display) {
        self.problems.push(format!("{key}: {reason}"));
    }

    /// Records a problem unless `ok`.
    pub fn check(&mut self, ok: bool, key: impl fmt::Display, reason: impl fmt::Display) {
        if !ok {
            self.add(key, reason);
        }
    }

    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// `Ok(())` when nothing was recorded.
    pub fn into_result(self) -> Result<(), Self> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }
}

/// A configuration (or one of its sections) that can check itself.
pub trait Validate {
    /// Records every problem under `section` (e.g. `consumers`; empty for a whole config).
    fn check(&self, section: &str, problems: &mut InvalidConfig);

    /// Every problem of the whole value.
    fn validate(&self) -> Result<(), InvalidConfig> {
        let mut problems = InvalidConfig::new();
        self.check("", &mut problems);
        problems.into_result()
    }
}

/// `section.key`, or `key` for the top level.
pub fn key(section: &str, key: &str) -> String {
    if section.is_empty() {
        key.to_owned()
    } else {
        format!("{section}.{key}")
    }
}

/// Loads `T` from its `Default`, the optional file and the `WMSLINK_` environment, then
/// validates it.
pub fn load<T>() -> Result<T, ConfigError>
where
    T: DeserializeOwned + Serialize + Default + Validate,
{
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    if let Ok(path) = std::env::var(CONFIG_FILE_ENV) {
        figment = figment.merge(Toml::file_exact(path));
    }
    let config: T = figment
        .merge(Env::prefixed("WMSLINK_").split("__"))
        .extract()
        .map_err(|err| ConfigError::Load(Box::new(err)))?;
    config.validate()?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pair {
        low: u64,
        high: u64,
    }

    impl Validate for Pair {
        fn check(&self, section: &str, problems: &mut InvalidConfig) {
            problems.check(self.low >= 1, key(section, "low"), "must be at least 1");
            problems.check(
                self.high >= self.low,
                key(section, "high"),
                "must be at least `low`",
            );
        }
    }

    #[test]
    fn every_problem_is_named_with_its_key() {
        assert_eq!(Pair { low: 1, high: 2 }.validate(), Ok(()));
        let err = Pair { low: 0, high: 0 }.validate().expect_err("invalid");
        assert_eq!(err.problems(), ["low: must be at least 1"]);
        let mut problems = InvalidConfig::new();
        Pair { low: 3, high: 2 }.check("pair", &mut problems);
        assert_eq!(
            problems.to_string(),
            "invalid configuration: pair.high: must be at least `low`"
        );
    }
}
