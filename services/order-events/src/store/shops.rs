//! `shops`: the shops whose integration settings are registered (R6), from
//! `settings.{shop}.changed`.

use sqlx::PgConnection;
use wmslink_proto::settings::v1::SettingsChanged;

use crate::domain::validation::to_datetime;

/// Whether the shop's integration settings are registered (R6).
pub async fn shop_known(conn: &mut PgConnection, shop: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM shops WHERE shop_id = $1 AND registered)")
        .bind(shop)
        .fetch_one(conn)
        .await
}

/// Settings changes that imply registered settings: registering them, and switching the
/// integration (which needs registered settings). A catalog or a connection check alone does not.
pub fn change_implies_registered(change: &str) -> bool {
    matches!(change, "registered" | "enabled" | "disabled")
}

/// Records a `SettingsChanged`: the newest version's state wins; "registered" never reverts.
/// Returns whether anything changed.
pub async fn upsert_shop(conn: &mut PgConnection, event: &SettingsChanged) -> sqlx::Result<bool> {
    let changed_at = event.changed_at.as_ref().and_then(to_datetime);
    let done = sqlx::query(
        "INSERT INTO shops (shop_id, settings_version, registered, enabled, last_change, changed_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (shop_id) DO UPDATE SET
             registered = shops.registered OR EXCLUDED.registered,
             settings_version = GREATEST(shops.settings_version, EXCLUDED.settings_version),
             enabled = CASE WHEN EXCLUDED.settings_version >= shops.settings_version
                            THEN EXCLUDED.enabled ELSE shops.enabled END,
             last_change = CASE WHEN EXCLUDED.settings_version >= shops.settings_version
                                THEN EXCLUDED.last_change ELSE shops.last_change END,
             changed_at = CASE WHEN EXCLUDED.settings_version >= shops.settings_version
                               THEN EXCLUDED.changed_at ELSE shops.changed_at END,
             updated_at = now()",
    )
    .bind(&event.shop_id)
    .bind(event.version)
    .bind(change_implies_registered(&event.change))
    .bind(event.enabled)
    .bind(&event.change)
    .bind(changed_at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
