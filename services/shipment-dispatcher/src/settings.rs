//! Shop settings as the dispatcher sees them ([`ShopView`]), over the shared settings client
//! (`wmslink_settings_client`: cached per shop with `settings.cache_ttl_ms`, dropped on
//! `settings.{shop}.changed`, an expired entry used while the settings service is down).

use std::sync::Arc;

use wmslink_proto::settings::v1::{DetailSettings, OrderStatusKind};
use wmslink_settings_client::{SettingsClient, ShopSnapshot, SnapshotMemo};
pub use wmslink_settings_client::{SettingsClientError as SettingsError, watch_changes};

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
            sync_period_days: wmslink_settings_client::DEFAULT_SYNC_PERIOD_DAYS,
        }
    }

    fn of(snapshot: &ShopSnapshot) -> Self {
        let targets = snapshot.data_targets();
        let detail = &snapshot.detail;
        Self {
            version: snapshot.version,
            policy: ShopPolicy {
                enabled: snapshot.enabled,
                shipment_instructions: targets.shipment_instructions,
                cancellations: targets.cancellations,
                target_status_codes: detail.target_status_codes.iter().cloned().collect(),
                cancel_status_codes: snapshot
                    .status_codes(OrderStatusKind::Cancelled)
                    .map(str::to_owned)
                    .collect(),
                known_status_codes: snapshot
                    .order_statuses
                    .iter()
                    .flatten()
                    .map(|status| status.code.clone())
                    .collect(),
            },
            sync_period_days: snapshot.sync_period_days(),
            detail: detail.clone(),
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

/// The settings client (with the order-status catalog, for the cancellation statuses) and the
/// views derived from its snapshots.
#[derive(Debug)]
pub struct SettingsCache {
    client: SettingsClient,
    views: SnapshotMemo<ShopView>,
}

impl SettingsCache {
    pub fn new(config: &SettingsClientConfig) -> Result<Self, SettingsError> {
        Ok(Self {
            client: SettingsClient::new(config)?.with_order_statuses(),
            views: SnapshotMemo::new(),
        })
    }

    /// The shared client (for the WMS credentials).
    pub fn client(&self) -> &SettingsClient {
        &self.client
    }

    /// The shop's settings, from the cache when fresh (see `SettingsClient::get`).
    pub async fn get(&self, shop_id: &str) -> Result<Lookup, SettingsError> {
        let snapshot = self.client.get(shop_id).await?;
        Ok(self.lookup(shop_id, snapshot))
    }

    /// The shop's settings, fetched now (an operator's explicit run).
    pub async fn refresh(&self, shop_id: &str) -> Result<Lookup, SettingsError> {
        let snapshot = self.client.refresh(shop_id).await?;
        Ok(self.lookup(shop_id, snapshot))
    }

    pub fn invalidate(&self, shop_id: &str) {
        self.client.invalidate(shop_id);
        self.views.invalidate(shop_id);
    }

    fn lookup(&self, shop_id: &str, snapshot: Option<Arc<ShopSnapshot>>) -> Lookup {
        match snapshot {
            Some(snapshot) => Lookup::Known(self.views.get_or_insert_with(
                shop_id,
                &snapshot,
                ShopView::of,
            )),
            None => Lookup::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use wmslink_proto::settings::v1::{DataTargets, OrderStatus};

    use super::*;

    fn set(codes: &[&str]) -> HashSet<String> {
        codes.iter().map(|code| (*code).to_owned()).collect()
    }

    #[test]
    fn a_view_takes_the_flows_the_target_and_the_cancellation_statuses() {
        let status = |code: &str, kind: OrderStatusKind| OrderStatus {
            code: code.into(),
            display_name: code.into(),
            kind: kind as i32,
        };
        let snapshot = ShopSnapshot {
            shop_id: "s1".into(),
            version: 7,
            enabled: true,
            detail: DetailSettings {
                data_targets: Some(DataTargets {
                    shipment_instructions: true,
                    cancellations: false,
                    shipment_results: true,
                }),
                target_status_codes: vec!["paid".into(), "packed".into()],
                sync_period_days: 0,
                ..DetailSettings::default()
            },
            order_statuses: Some(vec![
                status("paid", OrderStatusKind::Open),
                status("cancel", OrderStatusKind::Cancelled),
                status("void", OrderStatusKind::Cancelled),
            ]),
        };
        let view = ShopView::of(&snapshot);
        assert_eq!(view.version, 7);
        assert_eq!(view.sync_period_days, 30, "0 means the default");
        assert_eq!(view.detail, snapshot.detail);
        assert_eq!(
            view.policy,
            ShopPolicy {
                enabled: true,
                shipment_instructions: true,
                cancellations: false,
                target_status_codes: set(&["paid", "packed"]),
                cancel_status_codes: set(&["cancel", "void"]),
                known_status_codes: set(&["paid", "cancel", "void"]),
            }
        );
        assert!(view.policy.is_unknown_status("hold"));
        assert!(!view.policy.is_unknown_status("paid"));

        let bare = ShopView::of(&ShopSnapshot {
            detail: DetailSettings {
                sync_period_days: 90,
                ..DetailSettings::default()
            },
            order_statuses: None,
            enabled: false,
            ..snapshot
        });
        assert_eq!(bare.sync_period_days, 90);
        assert_eq!(
            bare.policy,
            ShopPolicy::default(),
            "no data targets: every flow off"
        );
        assert_eq!(ShopView::unknown().policy, ShopPolicy::default());
        assert!(
            !bare.policy.is_unknown_status("hold"),
            "no catalog read: nothing is unknown"
        );
    }
}
