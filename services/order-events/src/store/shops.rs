//! `shops`: the shops whose integration settings are registered (R6), from
//! `settings.{shop}.changed`, with what R4 needs to know of them.

use sqlx::PgConnection;
use wmslink_proto::settings::v1::SettingsChanged;

use crate::domain::status_lock::ShopSync;
use crate::domain::validation::to_datetime;

/// The settings service's default sync period, used when an event carries none.
const DEFAULT_SYNC_PERIOD_DAYS: i32 = 30;

#[derive(sqlx::FromRow)]
struct ShopRow {
    enabled: bool,
    shipment_results: bool,
    sync_period_days: i32,
}

/// The shop as far as R4 is concerned; `None` while its settings are not registered (R6).
pub async fn load_shop(conn: &mut PgConnection, shop: &str) -> sqlx::Result<Option<ShopSync>> {
    let row: Option<ShopRow> = sqlx::query_as(
        "SELECT enabled, shipment_results, sync_period_days FROM shops
         WHERE shop_id = $1 AND registered",
    )
    .bind(shop)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|row| ShopSync {
        enabled: row.enabled,
        shipment_results: row.shipment_results,
        sync_period_days: row.sync_period_days,
    }))
}

/// [`load_shop`] for several shops in one statement: the registered ones by shop id.
pub async fn load_shops(
    conn: &mut PgConnection,
    shops: &[&str],
) -> sqlx::Result<std::collections::HashMap<String, ShopSync>> {
    let rows: Vec<(String, bool, bool, i32)> = sqlx::query_as(
        "SELECT shop_id, enabled, shipment_results, sync_period_days FROM shops
         WHERE shop_id = ANY($1) AND registered",
    )
    .bind(shops)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(shop, enabled, shipment_results, sync_period_days)| {
            let sync = ShopSync {
                enabled,
                shipment_results,
                sync_period_days,
            };
            (shop, sync)
        })
        .collect())
}

/// Settings changes that imply registered settings: registering them, and switching the
/// integration (which needs registered settings). A catalog or a connection check alone does not.
pub fn change_implies_registered(change: &str) -> bool {
    matches!(
        change,
        "registered" | "enabled" | "disabled" | crate::shop_directory::LOOKED_UP
    )
}

/// The settings version recorded of every registered shop.
pub async fn shop_versions(
    conn: &mut PgConnection,
) -> sqlx::Result<std::collections::HashMap<String, i64>> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT shop_id, settings_version FROM shops WHERE registered")
            .fetch_all(conn)
            .await?;
    Ok(rows.into_iter().collect())
}

/// Records a `SettingsChanged`: the newest version's state wins; "registered" never reverts.
/// Returns whether anything changed.
pub async fn upsert_shop(conn: &mut PgConnection, event: &SettingsChanged) -> sqlx::Result<bool> {
    let changed_at = event.changed_at.as_ref().and_then(to_datetime);
    let sync_period_days = match i32::try_from(event.sync_period_days) {
        Ok(days) if days > 0 => days,
        _ => DEFAULT_SYNC_PERIOD_DAYS,
    };
    let done = sqlx::query(
        "INSERT INTO shops (shop_id, settings_version, registered, enabled, last_change, changed_at,
                            shipment_results, sync_period_days)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (shop_id) DO UPDATE SET
             registered = shops.registered OR EXCLUDED.registered,
             settings_version = GREATEST(shops.settings_version, EXCLUDED.settings_version),
             enabled = CASE WHEN EXCLUDED.settings_version >= shops.settings_version
                            THEN EXCLUDED.enabled ELSE shops.enabled END,
             shipment_results = CASE WHEN EXCLUDED.settings_version >= shops.settings_version
                                     THEN EXCLUDED.shipment_results ELSE shops.shipment_results END,
             sync_period_days = CASE WHEN EXCLUDED.settings_version >= shops.settings_version
                                     THEN EXCLUDED.sync_period_days ELSE shops.sync_period_days END,
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
    .bind(event.shipment_results)
    .bind(sync_period_days)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
