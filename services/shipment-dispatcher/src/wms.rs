//! Each shop's WMS, behind the port (`wmslink_wms_client::port::Wms`): the adapter of the
//! shop's `wms_kind`, built by the shared settings client from the shop's endpoint and sealed
//! access key (opened with the master key ring, the shop id as associated data), all sharing
//! the per-key rate limiter. Kept until the shop's settings change. The access key lives only
//! inside the adapter; it is never logged.

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
    shops: Mutex<HashMap<String, Arc<dyn Wms>>>,
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

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<dyn Wms>>> {
        self.shops
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The shop's WMS: the settings service unavailable, or the shop's settings or credentials
    /// unusable, are errors (never the key in the text).
    pub async fn get(&self, shop_id: &str) -> Result<Arc<dyn Wms>, SettingsError> {
        if let Some(wms) = self.cache().get(shop_id) {
            return Ok(wms.clone());
        }
        let client = self.settings.client();
        let Some(shop) = client.get(shop_id).await? else {
            return Err(SettingsError::NoCredentials {
                shop: shop_id.to_owned(),
                reason: "the shop has no settings".to_owned(),
            });
        };
        let wms = client
            .wms(&shop, &self.keys, &self.config, self.limiter.clone())
            .await?;
        self.cache().insert(shop_id.to_owned(), wms.clone());
        Ok(wms)
    }

    pub fn invalidate(&self, shop_id: &str) {
        self.cache().remove(shop_id);
    }
}
