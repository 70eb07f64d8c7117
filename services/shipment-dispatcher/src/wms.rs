//! Each shop's WMS, behind the port (`wmslink_wms_client::port::Wms`): the adapter of the
//! shop's `wms_kind`, built by the shared settings client from the shop's endpoint and sealed
//! access key (opened with the master key ring, the shop id as associated data), all sharing
//! the per-key rate limiter. A built WMS carries the settings version it was built from and is
//! used only while the settings client (cached for `settings.cache_ttl_ms`, dropped on
//! `settings.{shop}.changed`) still hands out that version: a rotated key or a moved endpoint is
//! picked up within the cache TTL even when the change event was missed, and a `401` drops it at
//! once (see `sender::pass`). The access key lives only inside the adapter; it is never logged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use wmslink_platform::secrets::KeyRing;
use wmslink_wms_client::port::Wms;
use wmslink_wms_client::{RateLimiter, WmsClientConfig};

use crate::settings::{SettingsCache, SettingsError};

pub struct WmsClients {
    settings: Arc<SettingsCache>,
    keys: KeyRing,
    config: WmsClientConfig,
    limiter: Arc<dyn RateLimiter>,
    shops: Mutex<HashMap<String, Built>>,
}

/// A shop's WMS and the settings version it was built from.
struct Built {
    version: i64,
    wms: Arc<dyn Wms>,
}

impl WmsClients {
    pub fn new(
        settings: Arc<SettingsCache>,
        keys: KeyRing,
        config: WmsClientConfig,
        limiter: Arc<dyn RateLimiter>,
    ) -> Self {
        Self {
            settings,
            keys,
            config,
            limiter,
            shops: Mutex::new(HashMap::new()),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Built>> {
        self.shops
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The shop's WMS: the settings service unavailable, or the shop's settings or credentials
    /// unusable, are errors (never the key in the text).
    /// The WMS of the shop's current settings: the one built before while the settings version
    /// is the same, else built again (with the credentials fetched again).
    pub async fn get(&self, shop_id: &str) -> Result<Arc<dyn Wms>, SettingsError> {
        let client = self.settings.client();
        let Some(shop) = client.get(shop_id).await? else {
            self.invalidate(shop_id);
            return Err(SettingsError::NoCredentials {
                shop: shop_id.to_owned(),
                reason: "the shop has no settings".to_owned(),
            });
        };
        if let Some(built) = self.cache().get(shop_id)
            && built.version == shop.version
        {
            return Ok(built.wms.clone());
        }
        let wms = client
            .wms(&shop, &self.keys, &self.config, self.limiter.clone())
            .await?;
        self.cache().insert(
            shop_id.to_owned(),
            Built {
                version: shop.version,
                wms: wms.clone(),
            },
        );
        Ok(wms)
    }

    pub fn invalidate(&self, shop_id: &str) {
        self.cache().remove(shop_id);
    }
}
