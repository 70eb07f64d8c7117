//! Configuration of the client's request rules and of the rate limiter.

use std::time::Duration;

use serde::{Deserialize, Serialize};

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
    /// unspecified and similar addresses, both for IP literals and for every address a host
    /// name resolves to (checked at connect time, so DNS rebinding cannot slip past).
    /// Default `false`, because the simulator runs on loopback.
    pub refuse_private_addresses: bool,
    /// `User-Agent` header. Default `wmslink-wms-client/<version>`.
    pub user_agent: String,
}

impl Default for WmsClientConfig {
    fn default() -> Self {
        Self {
            allow_http_hosts: Vec::new(),
            connect_timeout_ms: 3_000,
            request_timeout_ms: 20_000,
            refuse_private_addresses: false,
            user_agent: concat!("wmslink-wms-client/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

impl WmsClientConfig {
    /// The connect timeout as a [`Duration`].
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms.max(1))
    }

    /// The request timeout as a [`Duration`].
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms.max(1))
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
