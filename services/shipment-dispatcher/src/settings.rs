//! Shop settings, read from the settings service over gRPC and cached per shop. A cache entry
//! is dropped when `settings.{shop}.changed` arrives and after a TTL.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use wmslink_platform::auth::BearerToken;
use wmslink_platform::nats::Subjects;
use wmslink_proto::settings::v1::settings_service_client::SettingsServiceClient;
use wmslink_proto::settings::v1::{
    DetailSettings, GetSettingsRequest, GetWmsCredentialsRequest, GetWmsCredentialsResponse,
    ListOrderStatusesRequest, OrderStatusKind,
};

use crate::config::SettingsClientConfig;
use crate::state_machine::ShopPolicy;

/// What the dispatcher needs of a shop's settings.
#[derive(Debug, Clone)]
pub struct ShopView {
    pub version: i64,
    pub policy: ShopPolicy,
    pub detail: DetailSettings,
    pub sync_period_days: u32,
}

impl ShopView {
    /// The policy of a shop the settings service does not know: never sent (R6).
    pub fn unknown() -> Self {
        Self {
            version: 0,
            policy: ShopPolicy::default(),
            detail: DetailSettings::default(),
            sync_period_days: 30,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Lookup {
    Known(Arc<ShopView>),
    /// The settings service has no settings for the shop.
    Unknown,
}

impl Lookup {
    pub fn view(&self) -> Arc<ShopView> {
        match self {
            Lookup::Known(view) => view.clone(),
            Lookup::Unknown => Arc::new(ShopView::unknown()),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum SettingsError {
    #[error("settings service: {0}")]
    Unavailable(String),
    #[error("settings client: {0}")]
    Config(String),
}

type Client = SettingsServiceClient<InterceptedService<Channel, BearerToken>>;

struct Entry {
    fetched: Instant,
    lookup: Lookup,
}

#[derive(Default)]
struct Cache {
    entries: HashMap<String, Entry>,
    /// Bumped by every invalidation, so a fetch that started before one is not cached.
    generation: HashMap<String, u64>,
}

pub struct SettingsCache {
    client: Client,
    ttl: Duration,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for SettingsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SettingsCache")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl SettingsCache {
    pub fn new(config: &SettingsClientConfig) -> Result<Self, SettingsError> {
        let timeout = Duration::from_millis(config.timeout_ms.max(100));
        let channel = Endpoint::from_shared(config.url.clone())
            .map_err(|err| SettingsError::Config(format!("url '{}': {err}", config.url)))?
            .connect_timeout(timeout)
            .timeout(timeout)
            .connect_lazy();
        if config.token.expose_secret().is_empty() {
            tracing::warn!("settings.token is empty: the settings service will refuse the calls");
        }
        let token = BearerToken::new(&config.token)
            .map_err(|status| SettingsError::Config(status.message().to_owned()))?;
        Ok(Self {
            client: SettingsServiceClient::with_interceptor(channel, token),
            ttl: Duration::from_millis(config.cache_ttl_ms),
            cache: Mutex::new(Cache::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The shop's settings, from the cache when fresh. When the settings service cannot be
    /// reached, an expired entry is still used (with a warning) rather than stalling every
    /// event of the shop; an invalidated entry never is.
    pub async fn get(&self, shop_id: &str) -> Result<Lookup, SettingsError> {
        let stale = {
            let cache = self.lock();
            match cache.entries.get(shop_id) {
                Some(entry) if entry.fetched.elapsed() < self.ttl => {
                    return Ok(entry.lookup.clone());
                }
                Some(entry) => Some(entry.lookup.clone()),
                None => None,
            }
        };
        match (self.refresh(shop_id).await, stale) {
            (Ok(lookup), _) => Ok(lookup),
            (Err(err), Some(stale)) => {
                tracing::warn!(shop = shop_id, error = %err, "settings unavailable; using the expired cache entry");
                Ok(stale)
            }
            (Err(err), None) => Err(err),
        }
    }

    /// The shop's settings, fetched now (an operator's explicit run).
    pub async fn refresh(&self, shop_id: &str) -> Result<Lookup, SettingsError> {
        let generation = self.lock().generation.get(shop_id).copied().unwrap_or(0);
        let lookup = self.fetch(shop_id).await?;
        let mut cache = self.lock();
        if cache.generation.get(shop_id).copied().unwrap_or(0) == generation {
            cache.entries.insert(
                shop_id.to_owned(),
                Entry {
                    fetched: Instant::now(),
                    lookup: lookup.clone(),
                },
            );
        }
        Ok(lookup)
    }

    pub fn invalidate(&self, shop_id: &str) {
        let mut cache = self.lock();
        cache.entries.remove(shop_id);
        *cache.generation.entry(shop_id.to_owned()).or_insert(0) += 1;
    }

    async fn fetch(&self, shop_id: &str) -> Result<Lookup, SettingsError> {
        let mut client = self.client.clone();
        let settings = match client
            .get_settings(GetSettingsRequest {
                shop_id: shop_id.to_owned(),
            })
            .await
        {
            Ok(response) => response.into_inner().settings.unwrap_or_default(),
            Err(status) if status.code() == Code::NotFound => return Ok(Lookup::Unknown),
            Err(status) => return Err(unavailable("GetSettings", &status)),
        };
        let statuses = match client
            .list_order_statuses(ListOrderStatusesRequest {
                shop_id: shop_id.to_owned(),
            })
            .await
        {
            Ok(response) => response.into_inner().statuses,
            Err(status) if status.code() == Code::NotFound => Vec::new(),
            Err(status) => return Err(unavailable("ListOrderStatuses", &status)),
        };
        let detail = settings.detail.unwrap_or_default();
        let targets = detail.data_targets.unwrap_or_default();
        let cancel_status_codes: HashSet<String> = statuses
            .iter()
            .filter(|s| s.kind == OrderStatusKind::Cancelled as i32)
            .map(|s| s.code.clone())
            .collect();
        let policy = ShopPolicy {
            enabled: settings.enabled,
            shipment_instructions: targets.shipment_instructions,
            cancellations: targets.cancellations,
            target_status_codes: detail.target_status_codes.iter().cloned().collect(),
            cancel_status_codes,
        };
        Ok(Lookup::Known(Arc::new(ShopView {
            version: settings.version,
            policy,
            sync_period_days: if detail.sync_period_days == 0 {
                30
            } else {
                detail.sync_period_days
            },
            detail,
        })))
    }

    /// The shop's endpoint and sealed access key (`settings.credentials` scope).
    pub async fn credentials(
        &self,
        shop_id: &str,
    ) -> Result<Option<GetWmsCredentialsResponse>, SettingsError> {
        let mut client = self.client.clone();
        match client
            .get_wms_credentials(GetWmsCredentialsRequest {
                shop_id: shop_id.to_owned(),
            })
            .await
        {
            Ok(response) => Ok(Some(response.into_inner())),
            Err(status) if matches!(status.code(), Code::NotFound | Code::FailedPrecondition) => {
                Ok(None)
            }
            Err(status) => Err(unavailable("GetWmsCredentials", &status)),
        }
    }
}

fn unavailable(call: &str, status: &tonic::Status) -> SettingsError {
    SettingsError::Unavailable(format!("{call}: {:?}: {}", status.code(), status.message()))
}

/// Drops cache entries when `settings.{shop}.changed` arrives, and tells `on_change` which
/// shop changed. A plain core-NATS subscription: a missed message only costs the TTL.
pub async fn watch_changes(
    client: async_nats::Client,
    subjects: Subjects,
    on_change: impl Fn(&str) + Send + 'static,
    shutdown: CancellationToken,
) {
    loop {
        let mut subscription = match client.subscribe(subjects.settings_changed_all()).await {
            Ok(subscription) => subscription,
            Err(err) => {
                tracing::warn!(error = %err, "cannot subscribe to settings changes; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => return,
                message = subscription.next() => message,
            };
            let Some(message) = message else { break };
            if let Some(shop) = subjects.shop_of(message.subject.as_str()) {
                tracing::debug!(shop, "settings changed; cache dropped");
                on_change(shop);
            }
        }
    }
}
