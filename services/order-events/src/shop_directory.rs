//! The settings service as order-events asks it, so that no order is refused for timing (R6):
//! a shop whose `settings.{shop}.changed` has not arrived is looked up on its first order, and
//! at start every registered shop is learned (a new database does not wait for events long
//! gone from the stream).

use wmslink_proto::settings::v1::{SettingsChanged, ShopSummary};
use wmslink_settings_client::{
    SettingsClient, SettingsClientConfig, SettingsClientError, ShopSnapshot,
};

/// The `change` recorded for a shop learned from the settings service rather than an event.
pub const LOOKED_UP: &str = "looked_up";

pub struct ShopDirectory {
    client: SettingsClient,
}

impl ShopDirectory {
    pub fn new(config: &SettingsClientConfig) -> Result<Self, SettingsClientError> {
        Ok(Self {
            client: SettingsClient::new(config)?,
        })
    }

    /// The shop's registered settings as the `shops` table records them; `None` when the
    /// settings service does not know the shop.
    pub async fn look_up(
        &self,
        shop: &str,
    ) -> Result<Option<SettingsChanged>, SettingsClientError> {
        Ok(self
            .client
            .refresh(shop)
            .await?
            .map(|snapshot| as_change(&snapshot)))
    }

    /// Every shop with registered settings, with its version.
    pub async fn registered_shops(&self) -> Result<Vec<ShopSummary>, SettingsClientError> {
        self.client.list_shops(false).await
    }
}

fn as_change(snapshot: &ShopSnapshot) -> SettingsChanged {
    SettingsChanged {
        shop_id: snapshot.shop_id.clone(),
        version: snapshot.version,
        enabled: snapshot.enabled,
        change: LOOKED_UP.to_owned(),
        changed_at: None,
        event_id: String::new(),
        shipment_results: snapshot.data_targets().shipment_results,
        sync_period_days: snapshot.sync_period_days(),
    }
}
