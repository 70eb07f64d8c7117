//! One WMS client per shop, built by the shared settings client from the shop's endpoint and
//! sealed access key (opened with the master key ring, the shop id as associated data), all
//! sharing the per-key rate limiter. Kept until the shop's settings change. The access key
//! lives only inside the client; it is never logged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use wmslink_platform::secrets::KeyRing;
use wmslink_wms_client::{RateLimiter, WmsClient, WmsClientConfig};

use crate::settings::{SettingsCache, SettingsError};

/// No WMS client for the shop: the settings service is unavailable, or the shop's credentials
/// cannot be used (never the key in the text).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ClientError(#[from] pub SettingsError);

pub struct WmsClients {
    settings: Arc<SettingsCache>,
    keys: KeyRing,
    config: WmsClientConfig,
    limiter: Arc<dyn RateLimiter>,
    clients: Mutex<HashMap<String, WmsClient>>,
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
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, WmsClient>> {
        self.clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub async fn client(&self, shop_id: &str) -> Result<WmsClient, ClientError> {
        if let Some(client) = self.cache().get(shop_id) {
            return Ok(client.clone());
        }
        let client = self
            .settings
            .client()
            .wms_client(shop_id, &self.keys, &self.config, self.limiter.clone())
            .await?;
        self.cache().insert(shop_id.to_owned(), client.clone());
        Ok(client)
    }

    pub fn invalidate(&self, shop_id: &str) {
        self.cache().remove(shop_id);
    }
}
