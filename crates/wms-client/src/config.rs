//! Configuration of the client's request rules and of the rate limiter.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use wmslink_platform::config::{InvalidConfig, Validate, key};
use wmslink_platform::db::{self, DatabaseConfig};

use crate::limiter::{LimiterError, PgRateLimiter, RateLimiter};

/// Request rules shared by every [`WmsClient`](crate::WmsClient) a service builds.
///
/// Deserialisable (e.g. as a section of a service's figment config); every field has a default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WmsClientConfig {
    /// Hosts that may be reached over plain `http://` (compared case-insensitively, without
    /// port), e.g. `["127.0.0.1", "localhost", "wms-simulator"]`. Every other host must use
    /// `https://`. Default: empty.
    pub allow_http_hosts: Vec<String>,
    /// TCP + TLS connect timeout in milliseconds. Default 3,000.
    pub connect_timeout_ms: u64,
    /// Whole-request timeout (connect, send, answer) in milliseconds. Default 20,000.
    pub request_timeout_ms: u64,
    /// Refuse to connect to loopback, private (RFC 1918, unique-local), link-local, CGNAT,
    /// cloud metadata, unspecified and similar addresses (IPv4, IPv6, and v4 inside v6: mapped,
    /// compatible, NAT64, 6to4, Teredo), both for IP literals and for every address a host
    /// name resolves to (checked at connect time, so DNS rebinding cannot slip past).
    /// Default `true`; development configs allow the simulator through
    /// [`allow_private_endpoints`](Self::allow_private_endpoints).
    pub refuse_private_addresses: bool,
    /// `host:port` endpoints exempt from [`refuse_private_addresses`](Self::refuse_private_addresses)
    /// (host compared case-insensitively, IPv6 in brackets), e.g.
    /// `["wms-simulator:8090", "127.0.0.1:8090"]` for the simulator in development. Both host
    /// and port must match. Default: empty.
    pub allow_private_endpoints: Vec<String>,
    /// When not empty, the only hosts an endpoint URL may name: an entry `crobo.jp` allows
    /// exactly that host, `*.crobo.jp` any host below it (production: the WMS's own domains).
    /// Empty (the default, and in development): any host.
    pub allowed_hosts: Vec<String>,
    /// `User-Agent` header. Default `wmslink-wms-client/<version>`.
    pub user_agent: String,
    /// A secret mixed into the rate-limit bucket ids (their HMAC key), so a bucket id in the
    /// shared database cannot confirm a guessed access key. Every service calling the WMS must
    /// use the same one (their budgets are shared by bucket id). Empty (the default, for
    /// development): unsalted ids. Serialized as an empty string.
    pub bucket_salt: BucketSalt,
}

/// The secret of [`WmsClientConfig::bucket_salt`].
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct BucketSalt(pub secrecy::SecretString);

impl BucketSalt {
    pub fn expose(&self) -> &str {
        secrecy::ExposeSecret::expose_secret(&self.0)
    }
}

impl Default for BucketSalt {
    fn default() -> Self {
        Self(secrecy::SecretString::from(""))
    }
}

impl PartialEq for BucketSalt {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for BucketSalt {}

impl std::fmt::Debug for BucketSalt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BucketSalt([redacted])")
    }
}

impl Serialize for BucketSalt {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("")
    }
}

impl Default for WmsClientConfig {
    fn default() -> Self {
        Self {
            allow_http_hosts: Vec::new(),
            connect_timeout_ms: 3_000,
            request_timeout_ms: 20_000,
            refuse_private_addresses: true,
            allow_private_endpoints: Vec::new(),
            allowed_hosts: Vec::new(),
            user_agent: concat!("wmslink-wms-client/", env!("CARGO_PKG_VERSION")).to_owned(),
            bucket_salt: BucketSalt::default(),
        }
    }
}

impl Validate for WmsClientConfig {
    fn check(&self, section: &str, problems: &mut InvalidConfig) {
        problems.check(
            self.connect_timeout_ms >= 1,
            key(section, "connect_timeout_ms"),
            "must be at least 1",
        );
        problems.check(
            self.request_timeout_ms >= 1,
            key(section, "request_timeout_ms"),
            "must be at least 1",
        );
        for entry in &self.allow_private_endpoints {
            problems.check(
                split_host_port(entry).is_some(),
                key(section, "allow_private_endpoints"),
                format!("{entry:?} is not host:port"),
            );
        }
        for entry in &self.allowed_hosts {
            let domain = entry.strip_prefix("*.").unwrap_or(entry);
            problems.check(
                !domain.is_empty() && !domain.contains(['*', ':', '/']),
                key(section, "allowed_hosts"),
                format!("{entry:?} is not a host name or *.domain"),
            );
        }
    }
}

/// `host:port` (IPv6 hosts in brackets) as (host without brackets, port).
fn split_host_port(entry: &str) -> Option<(&str, u16)> {
    let (host, port) = entry.trim().rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = port.parse().ok()?;
    (!host.is_empty()).then_some((host, port))
}

impl WmsClientConfig {
    /// The production rule: rate-limit bucket ids are salted (`bucket_salt` set), so the
    /// shared database does not hold an unkeyed hash of every access key.
    pub fn check_production(
        &self,
        profile: wmslink_platform::runtime::Profile,
        section: &str,
        problems: &mut InvalidConfig,
    ) {
        if profile != wmslink_platform::runtime::Profile::Production {
            return;
        }
        problems.check(
            !self.bucket_salt.expose().is_empty(),
            key(section, "bucket_salt"),
            "must be set in production (the same secret in every service calling the WMS)",
        );
    }

    /// Whether `host:port` is in [`allow_private_endpoints`](Self::allow_private_endpoints).
    pub fn private_allowed_for(&self, host: &str, port: u16) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.allow_private_endpoints.iter().any(|entry| {
            split_host_port(entry).is_some_and(|(h, p)| p == port && h.eq_ignore_ascii_case(host))
        })
    }

    /// Whether [`allowed_hosts`](Self::allowed_hosts) lets an endpoint name `host`.
    pub fn host_allowed(&self, host: &str) -> bool {
        if self.allowed_hosts.is_empty() {
            return true;
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.allowed_hosts.iter().any(|entry| {
            let entry = entry.to_ascii_lowercase();
            match entry.strip_prefix("*.") {
                Some(domain) => host
                    .strip_suffix(domain)
                    .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
                None => host == entry,
            }
        })
    }

    /// The connect timeout as a [`Duration`].
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// The request timeout as a [`Duration`].
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// Whether `host` is in [`allow_http_hosts`](Self::allow_http_hosts).
    pub fn http_allowed_for(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.allow_http_hosts.iter().any(|h| {
            h.trim_start_matches('[')
                .trim_end_matches(']')
                .eq_ignore_ascii_case(host)
        })
    }
}

/// The per-access-key budget: a token bucket (GCRA) of `burst` tokens refilled at
/// `requests_per_second`.
///
/// Defaults are the WMS's documented limit: 1 request/s, burst 60. The limiter keeps
/// `reserve` tokens of the burst unused (default 1) so that network jitter between our clock
/// and the WMS's never turns into a 429: the effective burst is `max(1, burst - reserve)`.
/// Every limiter that shares a bucket (all replicas using [`PgRateLimiter`](crate::PgRateLimiter))
/// must use the same values.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimitConfig {
    /// Sustained rate, requests per second (> 0). Default 1.0.
    pub requests_per_second: f64,
    /// Bucket size (≥ 1). Default 60.
    pub burst: u32,
    /// Tokens of the burst left unused as a safety margin. Default 1.
    pub reserve: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            requests_per_second: 1.0,
            burst: 60,
            reserve: 1,
        }
    }
}

impl RateLimitConfig {
    /// A config with the given rate and burst and the default reserve.
    pub fn new(requests_per_second: f64, burst: u32) -> Self {
        Self {
            requests_per_second,
            burst,
            ..Self::default()
        }
    }

    /// Time between two tokens.
    pub fn interval(&self) -> Result<Duration, String> {
        if !(self.requests_per_second.is_finite() && self.requests_per_second > 0.0) {
            return Err(format!(
                "requests_per_second must be a positive number, got {}",
                self.requests_per_second
            ));
        }
        Duration::try_from_secs_f64(1.0 / self.requests_per_second)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                format!(
                    "requests_per_second {} is out of range",
                    self.requests_per_second
                )
            })
    }

    /// The burst actually granted: `max(1, burst - reserve)`.
    pub fn effective_burst(&self) -> u32 {
        self.burst.saturating_sub(self.reserve).max(1)
    }
}

/// The `[rate_limit]` section of every service that calls the WMS: the per-access-key budget
/// ([`RateLimitConfig`]) and the PostgreSQL database holding the shared buckets
/// ([`PgRateLimiter`]). Build the limiter with
/// [`connect`](Self::connect).
///
/// Every service and replica that calls the WMS with a key must use the same database and the
/// same values: the budget belongs to the access key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SharedRateLimitConfig {
    /// The database holding the buckets (table `wms_rate_limit_buckets`), created when
    /// missing. Default `postgres://postgres@127.0.0.1:5432/wmslink_rate_limit`. Empty: the
    /// service's own database, so the budget is not shared with the other services
    /// (development only).
    pub database_url: String,
    /// Sustained rate. Default 1.0 (the WMS's limit).
    pub requests_per_second: f64,
    /// Bucket size. Default 60 (the WMS's burst).
    pub burst: u32,
    /// Tokens of the burst kept unused against clock jitter. Default 1.
    pub reserve: u32,
    /// Connections of the pool on `database_url`. Default 5.
    pub max_connections: u32,
}

/// The shared buckets' database when none is configured.
pub const DEFAULT_RATE_LIMIT_DATABASE_URL: &str =
    "postgres://postgres@127.0.0.1:5432/wmslink_rate_limit";

impl Default for SharedRateLimitConfig {
    fn default() -> Self {
        let limits = RateLimitConfig::default();
        Self {
            database_url: DEFAULT_RATE_LIMIT_DATABASE_URL.to_owned(),
            requests_per_second: limits.requests_per_second,
            burst: limits.burst,
            reserve: limits.reserve,
            max_connections: 5,
        }
    }
}

impl Validate for SharedRateLimitConfig {
    fn check(&self, section: &str, problems: &mut InvalidConfig) {
        if let Err(reason) = self.limits().interval() {
            problems.add(key(section, "requests_per_second"), reason);
        }
        problems.check(self.burst >= 1, key(section, "burst"), "must be at least 1");
        problems.check(
            self.max_connections >= 1,
            key(section, "max_connections"),
            "must be at least 1",
        );
        if !self.database_url.is_empty()
            && let Err(err) = <sqlx::postgres::PgConnectOptions as std::str::FromStr>::from_str(
                &self.database_url,
            )
        {
            problems.add(
                key(section, "database_url"),
                format!("not a PostgreSQL URL: {err}"),
            );
        }
    }
}

impl SharedRateLimitConfig {
    /// The budget per access key.
    pub fn limits(&self) -> RateLimitConfig {
        RateLimitConfig {
            requests_per_second: self.requests_per_second,
            burst: self.burst,
            reserve: self.reserve,
        }
    }

    /// Connects to [`database_url`](Self::database_url) (creating the database when missing;
    /// `own_database` when the URL is empty), creates the bucket table and returns the
    /// [`PgRateLimiter`].
    pub async fn connect(
        &self,
        own_database: &PgPool,
    ) -> Result<Arc<dyn RateLimiter>, LimiterError> {
        let pool = if self.database_url.is_empty() {
            tracing::warn!(
                "rate_limit.database_url is empty: the WMS budget is not shared with the other services"
            );
            own_database.clone()
        } else {
            db::connect(&DatabaseConfig {
                url: self.database_url.clone(),
                max_connections: self.max_connections,
                create_if_missing: true,
                ..DatabaseConfig::default()
            })
            .await
            .map_err(|err| LimiterError(format!("rate-limit database: {err}")))?
        };
        Ok(Arc::new(PgRateLimiter::connect(pool, self.limits()).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_rate_limit_defaults_are_the_wms_budget_in_the_shared_database() {
        let config = SharedRateLimitConfig::default();
        assert_eq!(config.limits(), RateLimitConfig::default());
        assert_eq!(config.database_url, DEFAULT_RATE_LIMIT_DATABASE_URL);
        assert!(config.database_url.ends_with("/wmslink_rate_limit"));
        assert_eq!(config.max_connections, 5);
    }
}
