//! Layered configuration: compiled-in defaults, then an optional TOML file named by
//! `WMSLINK_CONFIG`, then environment variables `WMSLINK_<SECTION>__<KEY>`.

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Environment variable naming an optional TOML configuration file.
pub const CONFIG_FILE_ENV: &str = "WMSLINK_CONFIG";

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(#[from] Box<figment::Error>);

/// Loads `T` from its `Default`, the optional file and the `WMSLINK_` environment.
pub fn load<T>() -> Result<T, ConfigError>
where
    T: DeserializeOwned + Serialize + Default,
{
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    if let Ok(path) = std::env::var(CONFIG_FILE_ENV) {
        figment = figment.merge(Toml::file_exact(path));
    }
    figment
        .merge(Env::prefixed("WMSLINK_").split("__"))
        .extract()
        .map_err(|err| ConfigError(Box::new(err)))
}
