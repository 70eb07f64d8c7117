//! The simulator's configuration.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Configuration of the simulator (section `sim` of the binary's config; every field has a
/// default, so `SimConfig::default()` is a working simulator on `127.0.0.1:8090`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SimConfig {
    /// Address to listen on. Use port 0 in tests and read [`Simulator::local_addr`](crate::Simulator::local_addr).
    /// Default `127.0.0.1:8090`.
    pub listen_addr: SocketAddr,
    /// Access keys known at start; each is its own WMS account with its own orders.
    /// More can be added at runtime with `POST /_sim/keys`. Default: none.
    pub access_keys: Vec<String>,
    /// The per-key rate limit applied to keys that do not set their own.
    pub rate_limit: SimRateLimit,
    /// The warehouse that moves orders on by itself.
    pub warehouse: WarehouseConfig,
    /// The first `order_id` handed out (ids are unique across all accounts). Default 100001.
    pub first_order_id: i64,
    /// Largest request body accepted, bytes. Default 8 MiB.
    pub max_body_bytes: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 8090)),
            access_keys: Vec::new(),
            rate_limit: SimRateLimit::default(),
            warehouse: WarehouseConfig::default(),
            first_order_id: 100_001,
            max_body_bytes: 8 * 1024 * 1024,
        }
    }
}

impl SimConfig {
    /// A config for tests: `127.0.0.1:0`, no keys, rate limit off, warehouse off.
    pub fn for_tests() -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            rate_limit: SimRateLimit::off(),
            warehouse: WarehouseConfig {
                enabled: false,
                ..WarehouseConfig::default()
            },
            ..Self::default()
        }
    }
}

/// A per-key token bucket: `per_second` refill, `burst` size; over it the simulator answers
/// 429 with `Retry-After` (whole seconds, at least 1).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SimRateLimit {
    /// `false` switches the limit off. Default `true`.
    pub enabled: bool,
    /// Requests per second. Default 1.0.
    pub per_second: f64,
    /// Burst. Default 60.
    pub burst: u32,
}

impl Default for SimRateLimit {
    fn default() -> Self {
        Self {
            enabled: true,
            per_second: 1.0,
            burst: 60,
        }
    }
}

impl SimRateLimit {
    /// No limit.
    pub fn off() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }

    /// A limit of `per_second` with `burst`.
    pub fn new(per_second: f64, burst: u32) -> Self {
        Self {
            enabled: true,
            per_second,
            burst,
        }
    }
}

/// The warehouse flow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WarehouseConfig {
    /// Move orders on by themselves. `POST /_sim/warehouse/tick` works either way. Default `true`.
    pub enabled: bool,
    /// Time an order stays in each status of the flow, milliseconds. Default 5,000.
    pub step_interval_ms: u64,
    /// The statuses a new order goes through; it is registered in the first and shipped
    /// (`shipped_flag = 1`, tracking code, shipping date) on reaching the last.
    /// Default `[50, 60, 20, 90, 100]`.
    pub flow: Vec<i32>,
}

impl Default for WarehouseConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            step_interval_ms: 5_000,
            flow: vec![50, 60, 20, 90, 100],
        }
    }
}
