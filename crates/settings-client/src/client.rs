use std::sync::Arc;
use std::time::Instant;

use secrecy::ExposeSecret;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use wmslink_platform::auth::BearerToken;
use wmslink_platform::secrets::{KeyRing, Sealed};
use wmslink_proto::settings::v1::WmsKind;
use wmslink_proto::settings::v1::settings_service_client::SettingsServiceClient;
use wmslink_proto::settings::v1::{
    GetSettingsRequest, GetWmsCredentialsRequest, GetWmsCredentialsResponse,
    ListOrderStatusesRequest, ListShopsRequest, ShopSummary,
};
use wmslink_wms_client::port::Wms;
use wmslink_wms_client::{RateLimiter, WmsClientConfig};

use crate::cache::{Cached, ShopCache};
use crate::{SettingsClientConfig, SettingsClientError, ShopSnapshot};

type Client = SettingsServiceClient<InterceptedService<Channel, BearerToken>>;

/// Page size asked of `ListShops` by [`SettingsClient::list_enabled_shops`] (the service's
/// largest).
const SHOP_PAGE_SIZE: u32 = 500;

/// The settings service for the services that read it (`settings.read`,
/// `settings.credentials`), with a cache per shop.
///
/// - [`get`](Self::get) answers from the cache while the entry is younger than
///   [`cache_ttl_ms`](SettingsClientConfig::cache_ttl_ms), otherwise fetches. A shop the
///   settings service does not know is cached too (as `None`).
/// - When the settings service cannot be reached, an **expired** entry is still used (with a
///   warning) rather than stalling every piece of work of the shop; an invalidated entry never
///   is, and without an entry the error is returned.
/// - [`invalidate`](Self::invalidate) (on `settings.{shop}.changed`, see
///   [`watch_changes`](crate::watch_changes)) drops the entry, and an answer to a fetch started
///   before the invalidation is not cached (it is still returned to its caller).
/// - [`wms`](Self::wms) is never cached here: callers keep the shop's WMS as long as
///   suits them.
pub struct SettingsClient {
    client: Client,
    /// The same connection, for the health check (which needs no token).
    channel: Channel,
    cache: ShopCache<Option<Arc<ShopSnapshot>>>,
    order_statuses: bool,
}

impl std::fmt::Debug for SettingsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SettingsClient")
            .field("ttl", &self.cache.ttl())
            .field("order_statuses", &self.order_statuses)
            .finish_non_exhaustive()
    }
}

impl SettingsClient {
    /// A client for `config.url`; nothing is connected until the first call. Fails only on a
    /// URL or a token that cannot be used.
    pub fn new(config: &SettingsClientConfig) -> Result<Self, SettingsClientError> {
        let timeout = config.timeout();
        let channel = wmslink_platform::grpc::client_endpoint(&config.url, &config.tls)
            .map_err(|err| SettingsClientError::Config(err.to_string()))?
            .connect_timeout(timeout)
            .timeout(timeout)
            .connect_lazy();
        if config.token.expose_secret().is_empty() {
            tracing::warn!("settings.token is empty: the settings service will refuse the calls");
        }
        let token = BearerToken::new(&config.token)
            .map_err(|status| SettingsClientError::Config(status.message().to_owned()))?;
        Ok(Self {
            client: SettingsServiceClient::with_interceptor(channel.clone(), token),
            channel,
            cache: ShopCache::new(config.cache_ttl()),
            order_statuses: false,
        })
    }

    /// Whether the settings service is up and ready (its gRPC health for
    /// `wmslink.settings.v1.SettingsService` is `SERVING`): what a service that cannot work
    /// without it waits for at start.
    pub async fn check_serving(&self) -> Result<(), SettingsClientError> {
        use tonic_health::pb::HealthCheckRequest;
        use tonic_health::pb::health_check_response::ServingStatus;
        use tonic_health::pb::health_client::HealthClient;
        use wmslink_proto::settings::v1::settings_service_server::SERVICE_NAME;

        let status = HealthClient::new(self.channel.clone())
            .check(HealthCheckRequest {
                service: SERVICE_NAME.to_owned(),
            })
            .await
            .map_err(|status| SettingsClientError::unavailable("health check", &status))?
            .into_inner()
            .status();
        match status {
            ServingStatus::Serving => Ok(()),
            other => Err(SettingsClientError::Unavailable(format!(
                "health check: {other:?}"
            ))),
        }
    }

    /// Also fetch each shop's order-status catalog (`ListOrderStatuses`, one more call per
    /// fetch) into [`ShopSnapshot::order_statuses`].
    pub fn with_order_statuses(mut self) -> Self {
        self.order_statuses = true;
        self
    }

    /// The shop's settings (`None`: the settings service does not know the shop), from the
    /// cache when fresh, or expired when the settings service cannot be reached.
    pub async fn get(
        &self,
        shop_id: &str,
    ) -> Result<Option<Arc<ShopSnapshot>>, SettingsClientError> {
        let stale = match self.cache.lookup(shop_id, Instant::now()) {
            Cached::Fresh(snapshot) => return Ok(snapshot),
            Cached::Expired(snapshot) => Some(snapshot),
            Cached::Missing => None,
        };
        match (self.refresh(shop_id).await, stale) {
            (Ok(snapshot), _) => Ok(snapshot),
            (Err(err), Some(stale)) if err.is_unavailable() => {
                tracing::warn!(shop = shop_id, error = %err, "settings unavailable; using the expired cache entry");
                Ok(stale)
            }
            (Err(err), _) => Err(err),
        }
    }

    /// The shop's settings fetched now (e.g. for an operator's explicit run), cached unless the
    /// shop was invalidated meanwhile.
    pub async fn refresh(
        &self,
        shop_id: &str,
    ) -> Result<Option<Arc<ShopSnapshot>>, SettingsClientError> {
        let ticket = self.cache.ticket(shop_id);
        let snapshot = self.fetch(shop_id).await?;
        self.cache
            .store(shop_id, ticket, snapshot.clone(), Instant::now());
        Ok(snapshot)
    }

    /// The ids of every enabled shop (`ListShops` with `enabled_only`, every page, in shop id
    /// order). Not cached: one call per 500 shops each time. A shop enabled or disabled while
    /// the pages are read may or may not be in the answer.
    pub async fn list_enabled_shops(&self) -> Result<Vec<String>, SettingsClientError> {
        Ok(self
            .list_shops(true)
            .await?
            .into_iter()
            .filter(|shop| shop.enabled)
            .map(|shop| shop.shop_id)
            .collect())
    }

    /// Every shop with registered settings, or only the enabled ones (`ListShops`, every page,
    /// in shop id order), with its version. Not cached: one call per 500 shops.
    pub async fn list_shops(
        &self,
        enabled_only: bool,
    ) -> Result<Vec<ShopSummary>, SettingsClientError> {
        let mut client = self.client.clone();
        let mut shops = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = client
                .list_shops(ListShopsRequest {
                    enabled_only,
                    page_size: SHOP_PAGE_SIZE,
                    page_token: page_token.clone(),
                })
                .await
                .map_err(|status| SettingsClientError::unavailable("ListShops", &status))?
                .into_inner();
            shops.extend(page.shops);
            if page.next_page_token.is_empty() {
                return Ok(shops);
            }
            if page.next_page_token == page_token {
                return Err(SettingsClientError::Unavailable(
                    "ListShops: the same page token was answered twice".to_owned(),
                ));
            }
            page_token = page.next_page_token;
        }
    }

    /// Drops what is cached of the shop (its settings changed).
    pub fn invalidate(&self, shop_id: &str) {
        self.cache.invalidate(shop_id);
    }

    async fn fetch(&self, shop_id: &str) -> Result<Option<Arc<ShopSnapshot>>, SettingsClientError> {
        let mut client = self.client.clone();
        let settings = match client
            .get_settings(GetSettingsRequest {
                shop_id: shop_id.to_owned(),
            })
            .await
        {
            Ok(response) => response.into_inner().settings.unwrap_or_default(),
            Err(status) if status.code() == Code::NotFound => return Ok(None),
            Err(status) => return Err(SettingsClientError::unavailable("GetSettings", &status)),
        };
        let order_statuses = if self.order_statuses {
            match client
                .list_order_statuses(ListOrderStatusesRequest {
                    shop_id: shop_id.to_owned(),
                })
                .await
            {
                Ok(response) => Some(response.into_inner().statuses),
                Err(status) if status.code() == Code::NotFound => Some(Vec::new()),
                Err(status) => {
                    return Err(SettingsClientError::unavailable(
                        "ListOrderStatuses",
                        &status,
                    ));
                }
            }
        } else {
            None
        };
        Ok(Some(Arc::new(ShopSnapshot {
            shop_id: shop_id.to_owned(),
            version: settings.version,
            enabled: settings.enabled,
            detail: settings.detail.unwrap_or_default(),
            order_statuses,
        })))
    }

    /// The shop's WMS, behind the [`Wms`] port: the adapter of the shop's `wms_kind` (from
    /// `shop`, its settings), its endpoint and sealed access key from `GetWmsCredentials`, the
    /// key opened with `keys` (the shop id as associated data), the request rules of `config`,
    /// and the shared `limiter`. Fetched anew at every call.
    pub async fn wms(
        &self,
        shop: &ShopSnapshot,
        keys: &KeyRing,
        config: &WmsClientConfig,
        limiter: Arc<dyn RateLimiter>,
    ) -> Result<Arc<dyn Wms>, SettingsClientError> {
        let credentials = self.credentials(&shop.shop_id).await?;
        open_wms(
            &shop.shop_id,
            shop.detail.wms_kind(),
            credentials,
            keys,
            config,
            limiter,
        )
    }

    async fn credentials(
        &self,
        shop_id: &str,
    ) -> Result<GetWmsCredentialsResponse, SettingsClientError> {
        let mut client = self.client.clone();
        match client
            .get_wms_credentials(GetWmsCredentialsRequest {
                shop_id: shop_id.to_owned(),
            })
            .await
        {
            Ok(response) => Ok(response.into_inner()),
            Err(status) if matches!(status.code(), Code::NotFound | Code::FailedPrecondition) => {
                Err(SettingsClientError::NoCredentials {
                    shop: shop_id.to_owned(),
                    reason: status.message().to_owned(),
                })
            }
            Err(status) => Err(SettingsClientError::unavailable(
                "GetWmsCredentials",
                &status,
            )),
        }
    }
}

/// Opens the sealed key and builds the shop's WMS adapter. No error carries the key: the
/// secrets and WMS client errors never contain it.
fn open_wms(
    shop_id: &str,
    kind: WmsKind,
    credentials: GetWmsCredentialsResponse,
    keys: &KeyRing,
    config: &WmsClientConfig,
    limiter: Arc<dyn RateLimiter>,
) -> Result<Arc<dyn Wms>, SettingsClientError> {
    if credentials.sealed_access_key.is_empty() {
        return Err(SettingsClientError::NoCredentials {
            shop: shop_id.to_owned(),
            reason: "no access key is stored".to_owned(),
        });
    }
    let sealed = Sealed {
        key_id: credentials.key_id,
        blob: credentials.sealed_access_key,
    };
    let access_key =
        keys.open(&sealed, shop_id.as_bytes())
            .map_err(|err| SettingsClientError::OpenKey {
                shop: shop_id.to_owned(),
                reason: err.to_string(),
            })?;
    wmslink_wms_client::connect(kind, &credentials.endpoint_url, access_key, config, limiter)
        .map_err(|err| SettingsClientError::WmsClient {
            shop: shop_id.to_owned(),
            reason: err.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;
    use wmslink_wms_client::Unlimited;

    use super::*;

    const KEY: &str = "the-very-secret-access-key";

    fn sealed_for(keys: &KeyRing, shop: &str, endpoint: &str) -> GetWmsCredentialsResponse {
        let sealed = keys
            .seal(&SecretString::from(KEY), shop.as_bytes())
            .expect("seal");
        GetWmsCredentialsResponse {
            endpoint_url: endpoint.to_owned(),
            key_id: sealed.key_id,
            sealed_access_key: sealed.blob,
            version: 1,
            enabled: true,
        }
    }

    fn open(
        shop: &str,
        credentials: GetWmsCredentialsResponse,
        keys: &KeyRing,
    ) -> Result<Arc<dyn Wms>, SettingsClientError> {
        open_kind(shop, WmsKind::CommerceRobo, credentials, keys)
    }

    fn open_kind(
        shop: &str,
        kind: WmsKind,
        credentials: GetWmsCredentialsResponse,
        keys: &KeyRing,
    ) -> Result<Arc<dyn Wms>, SettingsClientError> {
        let config = WmsClientConfig {
            allow_http_hosts: vec!["127.0.0.1".into()],
            // The simulator listens on loopback.
            refuse_private_addresses: false,
            ..WmsClientConfig::default()
        };
        open_wms(shop, kind, credentials, keys, &config, Arc::new(Unlimited))
    }

    #[test]
    fn the_key_sealed_for_the_shop_opens_into_a_client() {
        let (keys, _) = KeyRing::generate("k1");
        let credentials = sealed_for(&keys, "s1", "http://127.0.0.1:8090/v1");
        let client = open("s1", credentials, &keys).expect("client");
        assert!(!format!("{client:?}").contains(KEY));
    }

    #[test]
    fn failures_name_the_shop_and_never_the_key() {
        let (keys, _) = KeyRing::generate("k1");
        let (other_keys, _) = KeyRing::generate("k2");

        let no_key = GetWmsCredentialsResponse {
            endpoint_url: "http://127.0.0.1:8090/v1".into(),
            ..GetWmsCredentialsResponse::default()
        };
        let cases = [
            (open("s1", no_key, &keys), "no WMS credentials"),
            (
                // Sealed for another shop: the associated data does not match.
                open("s2", sealed_for(&keys, "s1", "http://127.0.0.1/v1"), &keys),
                "cannot be opened",
            ),
            (
                open(
                    "s1",
                    sealed_for(&other_keys, "s1", "http://127.0.0.1/v1"),
                    &keys,
                ),
                "cannot be opened",
            ),
            (
                // Plain http to a host the rules do not allow.
                open(
                    "s1",
                    sealed_for(&keys, "s1", "http://wms.example/v1"),
                    &keys,
                ),
                "are refused",
            ),
            (
                // No adapter for a shop whose WMS kind is not set.
                open_kind(
                    "s1",
                    WmsKind::Unspecified,
                    sealed_for(&keys, "s1", "http://127.0.0.1/v1"),
                    &keys,
                ),
                "WMS kind is not set",
            ),
        ];
        for (result, expected) in cases {
            let err = result.expect_err("refused");
            let text = err.to_string();
            assert!(text.contains(expected), "{text}");
            assert!(text.contains("shop s"), "{text}");
            assert!(!text.contains(KEY), "{text}");
            assert!(!format!("{err:?}").contains(KEY), "{err:?}");
            assert!(!err.is_unavailable());
        }
    }
}
