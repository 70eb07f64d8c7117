use wmslink_proto::settings::v1::{DataTargets, DetailSettings, OrderStatus, OrderStatusKind};

/// The sync period of settings that leave it at 0 (the settings service's default).
pub const DEFAULT_SYNC_PERIOD_DAYS: u32 = 30;

/// A shop's settings as the settings service answered them, shared by every caller until they
/// are fetched again. Holds no access key (see [`SettingsClient::wms`]).
///
/// [`SettingsClient::wms`]: crate::SettingsClient::wms
#[derive(Debug, Clone, PartialEq)]
pub struct ShopSnapshot {
    pub shop_id: String,
    /// The shop's version (settings and catalog).
    pub version: i64,
    /// S4: the integration is on.
    pub enabled: bool,
    pub detail: DetailSettings,
    /// The shop's order-status catalog (`ListOrderStatuses`, empty when the shop has none).
    /// `None` unless the client was built
    /// [`with_order_statuses`](crate::SettingsClient::with_order_statuses).
    pub order_statuses: Option<Vec<OrderStatus>>,
}

impl ShopSnapshot {
    /// Which flows are on (all off when the settings leave them out).
    pub fn data_targets(&self) -> DataTargets {
        self.detail.data_targets.unwrap_or_default()
    }

    /// The sync period in days; [`DEFAULT_SYNC_PERIOD_DAYS`] when the settings leave it at 0.
    pub fn sync_period_days(&self) -> u32 {
        match self.detail.sync_period_days {
            0 => DEFAULT_SYNC_PERIOD_DAYS,
            days => days,
        }
    }

    /// The codes of the catalog's statuses of `kind` (none when the catalog was not fetched).
    pub fn status_codes(&self, kind: OrderStatusKind) -> impl Iterator<Item = &str> {
        self.order_statuses
            .iter()
            .flatten()
            .filter(move |status| status.kind == kind as i32)
            .map(|status| status.code.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: &str, kind: OrderStatusKind) -> OrderStatus {
        OrderStatus {
            code: code.into(),
            display_name: code.into(),
            kind: kind as i32,
        }
    }

    #[test]
    fn defaults_and_catalog_lookups() {
        let mut snapshot = ShopSnapshot {
            shop_id: "s1".into(),
            version: 3,
            enabled: true,
            detail: DetailSettings::default(),
            order_statuses: None,
        };
        assert_eq!(snapshot.sync_period_days(), DEFAULT_SYNC_PERIOD_DAYS);
        assert_eq!(snapshot.data_targets(), DataTargets::default());
        assert_eq!(snapshot.status_codes(OrderStatusKind::Cancelled).count(), 0);

        snapshot.detail.sync_period_days = 7;
        snapshot.order_statuses = Some(vec![
            status("new", OrderStatusKind::Open),
            status("cancel", OrderStatusKind::Cancelled),
            status("void", OrderStatusKind::Cancelled),
        ]);
        assert_eq!(snapshot.sync_period_days(), 7);
        assert_eq!(
            snapshot
                .status_codes(OrderStatusKind::Cancelled)
                .collect::<Vec<_>>(),
            ["cancel", "void"]
        );
    }
}
