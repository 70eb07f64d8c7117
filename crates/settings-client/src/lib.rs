//! # wmslink settings client
//!
//! The settings service as the services that call the WMS see it (shipment-dispatcher,
//! status-sync): a shop's settings read over gRPC and cached per shop, dropped when
//! `settings.{shop}.changed` arrives, and the shop's WMS (the `wmslink_wms_client::port::Wms`
//! adapter of its `wms_kind`) built from its sealed access key.
//!
//! | item | what |
//! | --- | --- |
//! | [`SettingsClientConfig`] | the `[settings]` section: `url`, `token`, `cache_ttl_ms`, `timeout_ms` |
//! | [`SettingsClient`] | [`get`](SettingsClient::get) (cached, TTL, stale when the service is down), [`refresh`](SettingsClient::refresh), [`invalidate`](SettingsClient::invalidate), [`wms`](SettingsClient::wms) (the shop's WMS port, by its `wms_kind`), [`list_enabled_shops`](SettingsClient::list_enabled_shops), [`list_shops`](SettingsClient::list_shops) (`ListShops`, every page) |
//! | [`ShopSnapshot`] | version, enabled, `DetailSettings`, and the order-status catalog when asked for |
//! | [`watch_changes`] | the `settings.*.changed` subscription |
//! | [`SnapshotMemo`] | what a caller derives from a snapshot, derived again only for a new one |
//! | [`SettingsClientError`] | unavailable (retry) or a settings problem; never the key |
//!
//! ```no_run
//! use std::sync::Arc;
//! use wmslink_platform::secrets::KeyRing;
//! use wmslink_settings_client::{SettingsClient, SettingsClientConfig};
//! use wmslink_wms_client::{RateLimiter, WmsClientConfig};
//!
//! # async fn demo(keys: KeyRing, limiter: Arc<dyn RateLimiter>) -> Result<(), Box<dyn std::error::Error>> {
//! let settings = SettingsClient::new(&SettingsClientConfig::default())?.with_order_statuses();
//! if let Some(shop) = settings.get("demo-shop").await? {
//!     if shop.enabled {
//!         let wms = settings
//!             .wms(&shop, &keys, &WmsClientConfig::default(), limiter)
//!             .await?;
//!         # let _ = wms;
//!     }
//! }
//! # Ok(()) }
//! ```

mod cache;
mod client;
mod config;
mod error;
mod snapshot;
mod watch;

pub use cache::SnapshotMemo;
pub use client::SettingsClient;
pub use config::SettingsClientConfig;
pub use error::SettingsClientError;
pub use snapshot::{DEFAULT_SYNC_PERIOD_DAYS, ShopSnapshot};
pub use watch::watch_changes;
