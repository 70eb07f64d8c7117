//! One WMS client per shop, built from the shop's endpoint and sealed access key (opened with
//! the master key ring, the shop id as associated data), all sharing the per-key rate limiter.
//! The access key lives only inside the client; it is never logged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use wmslink_platform::secrets::{KeyRing, Sealed};
use wmslink_wms_client::{RateLimiter, WmsClient, WmsClientConfig};

use crate::settings::{SettingsCache, SettingsError};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("the shop has no WMS credentials")]
    NoCredentials,
    #[error("the shop's access key cannot be opened: {0}")]
    Open(String),
    #[error("the shop's WMS settings are refused: {0}")]
    Build(String),
}

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
        let credentials = self
            .settings
            .credentials(shop_id)
            .await?
            .ok_or(ClientError::NoCredentials)?;
        if credentials.sealed_access_key.is_empty() {
            return Err(ClientError::NoCredentials);
        }
        let sealed = Sealed {
            key_id: credentials.key_id,
            blob: credentials.sealed_access_key,
        };
        let access_key = self
            .keys
            .open(&sealed, shop_id.as_bytes())
            .map_err(|err| ClientError::Open(err.to_string()))?;
        let client = WmsClient::new(
            &credentials.endpoint_url,
            access_key,
            &self.config,
            self.limiter.clone(),
        )
        .map_err(|err| ClientError::Build(err.to_string()))?;
        self.cache().insert(shop_id.to_owned(), client.clone());
        Ok(client)
    }

    pub fn invalidate(&self, shop_id: &str) {
        self.cache().remove(shop_id);
    }
}
