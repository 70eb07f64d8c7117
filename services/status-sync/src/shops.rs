//! What status-sync needs to know of a shop, from the settings service (S5): enabled or not,
//! shipment results on or off, the sync period, and a WMS client with the shop's key. Cached
//! for a TTL; a `settings.{shop}.changed` event drops the entry at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use wmslink_platform::auth::BearerToken;
use wmslink_platform::secrets::{KeyRing, Sealed};
use wmslink_platform::shop::ShopId;
use wmslink_proto::settings::v1::settings_service_client::SettingsServiceClient;
use wmslink_proto::settings::v1::{GetSettingsRequest, GetWmsCredentialsRequest};
use wmslink_wms_client::{RateLimiter, WmsClient, WmsClientConfig};

use crate::config::SettingsClientConfig;

/// Sync period when the settings leave it at 0.
pub const DEFAULT_SYNC_PERIOD_DAYS: u32 = 30;

/// A shop as far as syncing goes.
#[derive(Debug, Clone)]
pub struct Shop {
    pub shop_id: ShopId,
    pub enabled: bool,
    /// S3 ④: shipment results (status and tracking) flow back to the cart.
    pub shipment_results: bool,
    pub sync_period_days: u32,
    /// Present when the shop is enabled with shipment results on.
    pub wms: Option<WmsClient>,
}

impl Shop {
    /// The WMS client when the shop is to be synced (R6: a shop without the integration is
    /// never touched).
    pub fn syncable(&self) -> Option<&WmsClient> {
        self.wms
            .as_ref()
            .filter(|_| self.enabled && self.shipment_results)
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ShopError {
    #[error("shop {0} has no settings")]
    Unknown(String),
    #[error("settings service unavailable: {0}")]
    Unavailable(String),
    /// The stored key or URL cannot be used (never the key itself in the text).
    #[error("WMS credentials of shop {shop} unusable: {reason}")]
    Credentials { shop: String, reason: String },
}

type Client = SettingsServiceClient<InterceptedService<Channel, BearerToken>>;

struct Entry {
    shop: Arc<Shop>,
    fetched: Instant,
}

pub struct ShopDirectory {
    client: Client,
    keys: KeyRing,
    wms_config: WmsClientConfig,
    limiter: Arc<dyn RateLimiter>,
    ttl: Duration,
    cache: Mutex<HashMap<String, Entry>>,
}

impl ShopDirectory {
    pub fn new(
        config: &SettingsClientConfig,
        keys: KeyRing,
        wms_config: WmsClientConfig,
        limiter: Arc<dyn RateLimiter>,
    ) -> Result<Self, String> {
        let endpoint = Endpoint::from_shared(config.url.clone())
            .map_err(|err| format!("settings.url '{}': {err}", config.url))?
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_millis(config.timeout_ms.max(1)));
        let token =
            BearerToken::new(&config.token).map_err(|status| status.message().to_owned())?;
        let client = SettingsServiceClient::with_interceptor(endpoint.connect_lazy(), token);
        Ok(Self {
            client,
            keys,
            wms_config,
            limiter,
            ttl: Duration::from_secs(config.cache_ttl_secs),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Forgets what is cached of `shop_id` (its settings changed).
    pub fn invalidate(&self, shop_id: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(shop_id);
        }
    }

    pub async fn get(&self, shop_id: &ShopId) -> Result<Arc<Shop>, ShopError> {
        if let Ok(cache) = self.cache.lock()
            && let Some(entry) = cache.get(shop_id.as_str())
            && entry.fetched.elapsed() < self.ttl
        {
            return Ok(entry.shop.clone());
        }
        let fetched = Instant::now();
        let shop = Arc::new(self.fetch(shop_id).await?);
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(
                shop_id.to_string(),
                Entry {
                    shop: shop.clone(),
                    fetched,
                },
            );
        }
        Ok(shop)
    }

    async fn fetch(&self, shop_id: &ShopId) -> Result<Shop, ShopError> {
        let mut client = self.client.clone();
        let settings = match client
            .get_settings(GetSettingsRequest {
                shop_id: shop_id.to_string(),
            })
            .await
        {
            Ok(response) => response.into_inner().settings.unwrap_or_default(),
            Err(status) if status.code() == Code::NotFound => {
                return Err(ShopError::Unknown(shop_id.to_string()));
            }
            Err(status) => return Err(unavailable(&status)),
        };
        let detail = settings.detail.unwrap_or_default();
        let shipment_results = detail
            .data_targets
            .as_ref()
            .is_some_and(|targets| targets.shipment_results);
        let sync_period_days = match detail.sync_period_days {
            0 => DEFAULT_SYNC_PERIOD_DAYS,
            days => days.min(365),
        };
        let mut shop = Shop {
            shop_id: shop_id.clone(),
            enabled: settings.enabled,
            shipment_results,
            sync_period_days,
            wms: None,
        };
        if !(shop.enabled && shop.shipment_results) {
            return Ok(shop);
        }
        let credentials = client
            .get_wms_credentials(GetWmsCredentialsRequest {
                shop_id: shop_id.to_string(),
            })
            .await
            .map_err(|status| match status.code() {
                Code::NotFound | Code::FailedPrecondition => ShopError::Credentials {
                    shop: shop_id.to_string(),
                    reason: status.message().to_owned(),
                },
                _ => unavailable(&status),
            })?
            .into_inner();
        let sealed = Sealed {
            key_id: credentials.key_id,
            blob: credentials.sealed_access_key,
        };
        let key = self
            .keys
            .open(&sealed, shop_id.as_str().as_bytes())
            .map_err(|err| ShopError::Credentials {
                shop: shop_id.to_string(),
                reason: err.to_string(),
            })?;
        let endpoint = if credentials.endpoint_url.is_empty() {
            detail.endpoint_url
        } else {
            credentials.endpoint_url
        };
        let client = WmsClient::new(&endpoint, key, &self.wms_config, self.limiter.clone())
            .map_err(|err| ShopError::Credentials {
                shop: shop_id.to_string(),
                reason: err.to_string(),
            })?;
        shop.wms = Some(client);
        Ok(shop)
    }
}

fn unavailable(status: &tonic::Status) -> ShopError {
    ShopError::Unavailable(format!("{:?}: {}", status.code(), status.message()))
}
