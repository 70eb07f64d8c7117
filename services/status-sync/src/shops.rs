//! What status-sync needs to know of a shop, from the settings service (S5): enabled or not,
//! shipment results on or off, the sync period, and the shop's WMS (the port's adapter of its
//! `wms_kind`, with its key). Read
//! through the shared settings client (`wmslink_settings_client`: cached per shop with
//! `settings.cache_ttl_ms`, dropped on `settings.{shop}.changed`, an expired entry used while
//! the settings service is down); a shop's WMS is built again only when its settings were
//! fetched again.

use std::sync::Arc;

use wmslink_platform::secrets::KeyRing;
use wmslink_platform::shop::ShopId;
use wmslink_settings_client::{SettingsClient, SettingsClientError, ShopSnapshot, SnapshotMemo};
use wmslink_wms_client::port::Wms;
use wmslink_wms_client::{RateLimiter, WmsClientConfig};

use crate::config::SettingsClientConfig;
use crate::errors::ShopError;

pub use wmslink_settings_client::DEFAULT_SYNC_PERIOD_DAYS;

/// The longest sync period honoured.
pub const MAX_SYNC_PERIOD_DAYS: u32 = 365;

/// A shop as far as syncing goes.
#[derive(Debug, Clone)]
pub struct Shop {
    pub shop_id: ShopId,
    pub enabled: bool,
    /// S3 ④: shipment results (status and tracking) flow back to the cart.
    pub shipment_results: bool,
    pub sync_period_days: u32,
    /// Multi-channel WMS accounts: the order-number prefix of this shop's WMS orders ("": all).
    pub wms_order_no_prefix: String,
    /// Present when the shop is enabled with shipment results on.
    pub wms: Option<Arc<dyn Wms>>,
}

impl Shop {
    /// The shop without its WMS.
    fn of(shop_id: &ShopId, snapshot: &ShopSnapshot) -> Self {
        Self {
            shop_id: shop_id.clone(),
            enabled: snapshot.enabled,
            shipment_results: snapshot.data_targets().shipment_results,
            sync_period_days: snapshot.sync_period_days().min(MAX_SYNC_PERIOD_DAYS),
            wms_order_no_prefix: snapshot.detail.wms_order_no_prefix.clone(),
            wms: None,
        }
    }

    /// The shop's WMS when the shop is to be synced (R6: a shop without the integration is
    /// never touched).
    pub fn syncable(&self) -> Option<&dyn Wms> {
        self.wms
            .as_deref()
            .filter(|_| self.enabled && self.shipment_results)
    }
}

pub struct ShopDirectory {
    settings: SettingsClient,
    keys: KeyRing,
    wms_config: WmsClientConfig,
    limiter: Arc<dyn RateLimiter>,
    shops: SnapshotMemo<Shop>,
}

impl ShopDirectory {
    pub fn new(
        config: &SettingsClientConfig,
        keys: KeyRing,
        wms_config: WmsClientConfig,
        limiter: Arc<dyn RateLimiter>,
    ) -> Result<Self, SettingsClientError> {
        Ok(Self {
            settings: SettingsClient::new(config)?,
            keys,
            wms_config,
            limiter,
            shops: SnapshotMemo::new(),
        })
    }

    /// The settings service client (e.g. to wait for the service at start).
    pub fn settings(&self) -> &SettingsClient {
        &self.settings
    }

    /// Forgets what is cached of `shop_id` (its settings changed).
    pub fn invalidate(&self, shop_id: &str) {
        self.settings.invalidate(shop_id);
        self.shops.invalidate(shop_id);
    }

    /// Every enabled shop the settings service knows (`ListShops`, every page; not cached).
    /// Ids that are not valid shop ids are left out.
    pub async fn enabled_shops(&self) -> Result<Vec<ShopId>, ShopError> {
        let shops = self.settings.list_enabled_shops().await?;
        Ok(shops
            .iter()
            .filter_map(|shop| ShopId::parse(shop).ok())
            .collect())
    }

    pub async fn get(&self, shop_id: &ShopId) -> Result<Arc<Shop>, ShopError> {
        let snapshot = self
            .settings
            .get(shop_id.as_str())
            .await?
            .ok_or_else(|| ShopError::Unknown(shop_id.to_string()))?;
        if let Some(shop) = self.shops.get(shop_id.as_str(), &snapshot) {
            return Ok(shop);
        }
        let mut shop = Shop::of(shop_id, &snapshot);
        if shop.enabled && shop.shipment_results {
            let wms = self
                .settings
                .wms(
                    &snapshot,
                    &self.keys,
                    &self.wms_config,
                    self.limiter.clone(),
                )
                .await?;
            shop.wms = Some(wms);
        }
        Ok(self.shops.insert(shop_id.as_str(), snapshot, shop))
    }
}

#[cfg(test)]
mod tests {
    use wmslink_proto::settings::v1::{DataTargets, DetailSettings};

    use super::*;

    fn snapshot(sync_period_days: u32, shipment_results: bool) -> ShopSnapshot {
        ShopSnapshot {
            shop_id: "s1".into(),
            version: 1,
            enabled: true,
            detail: DetailSettings {
                data_targets: Some(DataTargets {
                    shipment_results,
                    ..DataTargets::default()
                }),
                sync_period_days,
                ..DetailSettings::default()
            },
            order_statuses: None,
        }
    }

    #[test]
    fn a_shop_takes_the_flag_and_a_bounded_sync_period() {
        let id = ShopId::parse("s1").expect("shop id");
        let shop = Shop::of(&id, &snapshot(0, true));
        assert!(shop.enabled && shop.shipment_results);
        assert_eq!(shop.sync_period_days, DEFAULT_SYNC_PERIOD_DAYS);
        assert!(shop.syncable().is_none(), "no client yet");
        assert_eq!(Shop::of(&id, &snapshot(7, true)).sync_period_days, 7);
        assert_eq!(Shop::of(&id, &snapshot(1_000, true)).sync_period_days, 365);
        assert!(!Shop::of(&id, &snapshot(7, false)).shipment_results);
    }
}
