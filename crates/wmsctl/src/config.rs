//! Where the services are and which token to present: defaults (the ports of
//! `deploy/config/*.toml` on localhost), then the TOML file (`--config`, `WMSCTL_CONFIG`, else
//! `~/.config/wmsctl/config.toml` when it exists), then `WMSCTL_<KEY>` variables; the token
//! from `WMSLINK_TOKEN`, else the file's `token` or `token_file`. Never from the command line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::error::CliError;

/// Environment variable holding the bearer token.
pub const TOKEN_ENV: &str = "WMSLINK_TOKEN";
/// Environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "WMSCTL_CONFIG";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub settings_url: String,
    pub orders_url: String,
    pub dispatch_url: String,
    pub sync_url: String,
    /// Any of order-events, shipment-dispatcher or status-sync (they share the dead letters).
    pub dead_letters_url: String,
    /// The bearer token (prefer `WMSLINK_TOKEN` or `token_file`).
    #[serde(skip_serializing)]
    pub token: Option<String>,
    /// A file whose first line is the token.
    pub token_file: Option<PathBuf>,
    /// Per call; `dispatch run` and `sync run` get ten times as long.
    pub timeout_secs: u64,
    /// PEM file of the authority that signed the services' certificates. Set: every URL must
    /// be `https://` and each service is verified against it (by the URL's host name).
    pub tls_ca_file: Option<PathBuf>,
    /// PEM files of a client certificate and its key, for services that require one.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            settings_url: "http://127.0.0.1:50051".into(),
            orders_url: "http://127.0.0.1:50052".into(),
            dispatch_url: "http://127.0.0.1:50053".into(),
            sync_url: "http://127.0.0.1:50054".into(),
            dead_letters_url: "http://127.0.0.1:50052".into(),
            token: None,
            token_file: None,
            timeout_secs: 30,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

fn default_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    let path = base.join("wmsctl").join("config.toml");
    path.exists().then_some(path)
}

impl Config {
    /// Loads the layers; `file` is `--config` (which, like `WMSCTL_CONFIG`, must exist).
    pub fn load(file: Option<&Path>) -> Result<Self, CliError> {
        let mut figment = Figment::from(Serialized::defaults(Self::default()));
        let explicit = file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os(CONFIG_ENV).map(PathBuf::from));
        if let Some(path) = &explicit
            && !path.exists()
        {
            return Err(CliError::invalid(format!(
                "configuration file {} does not exist",
                path.display()
            )));
        }
        if let Some(path) = explicit.or_else(default_file) {
            figment = figment.merge(Toml::file_exact(path));
        }
        figment
            .merge(Env::prefixed("WMSCTL_").ignore(&["CONFIG"]))
            .extract()
            .map_err(|err| CliError::invalid(format!("configuration: {err}")))
    }

    /// The TLS of every connection (off without `tls_ca_file`).
    pub fn tls(&self) -> wmslink_platform::grpc::ClientTls {
        let path = |file: &Option<PathBuf>| {
            file.as_deref()
                .map(|path| path.display().to_string())
                .unwrap_or_default()
        };
        wmslink_platform::grpc::ClientTls {
            ca_file: path(&self.tls_ca_file),
            domain: String::new(),
            cert_file: path(&self.tls_cert_file),
            key_file: path(&self.tls_key_file),
        }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs.max(1))
    }

    /// The token: `WMSLINK_TOKEN`, else `token`, else the first line of `token_file`.
    pub fn token(&self) -> Result<SecretString, CliError> {
        if let Ok(token) = std::env::var(TOKEN_ENV)
            && !token.trim().is_empty()
        {
            return Ok(SecretString::from(token.trim().to_owned()));
        }
        if let Some(token) = self.token.as_deref().filter(|t| !t.trim().is_empty()) {
            return Ok(SecretString::from(token.trim().to_owned()));
        }
        if let Some(path) = &self.token_file {
            let text = std::fs::read_to_string(path)
                .map_err(|err| CliError::Auth(format!("token file {}: {err}", path.display())))?;
            if let Some(line) = text.lines().next().filter(|line| !line.trim().is_empty()) {
                return Ok(SecretString::from(line.trim().to_owned()));
            }
            return Err(CliError::Auth(format!(
                "token file {} is empty",
                path.display()
            )));
        }
        Err(CliError::Auth(format!(
            "no token: set {TOKEN_ENV}, or `token_file` in the configuration file"
        )))
    }
}
