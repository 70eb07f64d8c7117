//! `SettingsChanged`, written to the outbox in the same transaction as the change it reports.

use sqlx::PgConnection;
use wmslink_platform::nats::Subjects;
use wmslink_platform::outbox::{self, OutboxMessage};
use wmslink_platform::shop::ShopId;
use wmslink_proto::settings::v1::SettingsChanged;

/// What changed (the event's `change` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Registered,
    ConnectionChecked,
    Enabled,
    Disabled,
    StatusCatalog,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::ConnectionChecked => "connection_checked",
            Self::Enabled => "enabled",
            Self::Disabled => "disabled",
            Self::StatusCatalog => "status_catalog",
        }
    }
}

/// Enqueues `SettingsChanged` for `shop` at `version` inside the caller's transaction. The
/// enabled flag, the shipment-results flag and the sync period are read back from the row as
/// this transaction leaves it, so the event carries what is committed with the change (a
/// connection check that ran while the shop was switched does not report the old switch);
/// `enabled` is used only for a shop without registered settings.
pub async fn enqueue_changed(
    conn: &mut PgConnection,
    subjects: &Subjects,
    shop: &ShopId,
    version: i64,
    enabled: bool,
    change: Change,
) -> Result<(), sqlx::Error> {
    let committed: Option<(bool, bool, i32)> = sqlx::query_as(
        "SELECT enabled, ship_results, sync_period_days FROM shop_settings WHERE shop_id = $1",
    )
    .bind(shop.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    let (enabled, shipment_results, sync_period_days) = committed.unwrap_or((enabled, false, 0));
    let event_id = outbox::new_event_id();
    let event = SettingsChanged {
        shop_id: shop.to_string(),
        version,
        enabled,
        change: change.as_str().to_owned(),
        changed_at: Some(wmslink_proto::to_timestamp(chrono::Utc::now())),
        event_id: event_id.clone(),
        shipment_results,
        sync_period_days: u32::try_from(sync_period_days).unwrap_or_default(),
    };
    let message = OutboxMessage::protobuf(subjects.settings_changed(shop), event_id, &event);
    outbox::enqueue(conn, &message).await
}
