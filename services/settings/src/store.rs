//! PostgreSQL access: runtime queries with `FromRow`, every one scoped to one shop id except
//! [`list_shops`] (ids, versions and switches only).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use sqlx::types::Json;
use wmslink_platform::secrets::Sealed;
use wmslink_platform::shop::ShopId;

use crate::domain::{
    CheckOutcome, CheckRecord, DataTargets, Detail, FreeFieldMapping, OrderStatus, PaymentMapping,
    StatusKind, WmsKind,
};
use crate::errors::{CorruptRow, StoreError};

/// The stored settings of one shop.
#[derive(Debug, Clone)]
pub struct StoredSettings {
    pub version: i64,
    pub detail: Detail,
    pub access_key: Sealed,
    pub credentials_rev: i64,
    pub enabled: bool,
    pub check: Option<CheckRecord>,
    pub updated_at: DateTime<Utc>,
}

impl StoredSettings {
    /// Whether the last check was made with the key and URL stored now.
    pub fn check_is_current(&self) -> bool {
        self.check
            .as_ref()
            .is_some_and(|check| check.credentials_rev == self.credentials_rev)
    }
}

#[derive(sqlx::FromRow)]
struct SettingsRow {
    shop_id: String,
    version: i64,
    wms_kind: String,
    endpoint_url: String,
    access_key_id: String,
    access_key_sealed: Vec<u8>,
    credentials_rev: i64,
    ship_instructions: bool,
    ship_cancellations: bool,
    ship_results: bool,
    target_status_codes: Vec<String>,
    shipper_id: i64,
    delivery_method_id: i64,
    sync_period_days: i32,
    robot_id: i64,
    payment_mappings: Json<Vec<PaymentMapping>>,
    header_free_fields: Json<Vec<FreeFieldMapping>>,
    line_free_fields: Json<Vec<FreeFieldMapping>>,
    wms_order_no_prefix: String,
    enabled: bool,
    check_outcome: Option<String>,
    check_detail: Option<String>,
    check_at: Option<DateTime<Utc>>,
    check_credentials_rev: Option<i64>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<SettingsRow> for StoredSettings {
    type Error = CorruptRow;

    fn try_from(row: SettingsRow) -> Result<Self, CorruptRow> {
        let corrupt = |what: &str| CorruptRow {
            shop: row.shop_id.clone(),
            what: what.to_owned(),
        };
        let wms_kind = WmsKind::parse(&row.wms_kind).ok_or_else(|| corrupt("unknown wms_kind"))?;
        let sync_period_days =
            u32::try_from(row.sync_period_days).map_err(|_| corrupt("negative sync period"))?;
        let check = match (
            row.check_outcome.as_deref(),
            row.check_at,
            row.check_credentials_rev,
        ) {
            (Some(outcome), Some(checked_at), Some(credentials_rev)) => Some(CheckRecord {
                outcome: CheckOutcome::parse(outcome)
                    .ok_or_else(|| corrupt("unknown check outcome"))?,
                detail: row.check_detail.clone().unwrap_or_default(),
                checked_at,
                credentials_rev,
            }),
            _ => None,
        };
        Ok(Self {
            version: row.version,
            detail: Detail {
                wms_kind,
                endpoint_url: row.endpoint_url,
                data_targets: DataTargets {
                    shipment_instructions: row.ship_instructions,
                    cancellations: row.ship_cancellations,
                    shipment_results: row.ship_results,
                },
                target_status_codes: row.target_status_codes,
                shipper_id: row.shipper_id,
                delivery_method_id: row.delivery_method_id,
                sync_period_days,
                robot_id: row.robot_id,
                payment_mappings: row.payment_mappings.0,
                header_free_fields: row.header_free_fields.0,
                line_free_fields: row.line_free_fields.0,
                wms_order_no_prefix: row.wms_order_no_prefix,
            },
            access_key: Sealed {
                key_id: row.access_key_id,
                blob: row.access_key_sealed,
            },
            credentials_rev: row.credentials_rev,
            enabled: row.enabled,
            check,
            updated_at: row.updated_at,
        })
    }
}

/// Makes sure the shop has a row, then locks it for the rest of the transaction; returns its
/// version. Every write takes this lock first, so writes of one shop are serialised.
pub async fn lock_or_create_shop(
    conn: &mut PgConnection,
    shop: &ShopId,
) -> Result<i64, StoreError> {
    sqlx::query("INSERT INTO shops (shop_id) VALUES ($1) ON CONFLICT (shop_id) DO NOTHING")
        .bind(shop.as_str())
        .execute(&mut *conn)
        .await?;
    let version: i64 =
        sqlx::query_scalar("SELECT version FROM shops WHERE shop_id = $1 FOR UPDATE")
            .bind(shop.as_str())
            .fetch_one(&mut *conn)
            .await?;
    Ok(version)
}

/// Locks an existing shop row; `None` when the shop is unknown.
pub async fn lock_shop(conn: &mut PgConnection, shop: &ShopId) -> Result<Option<i64>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT version FROM shops WHERE shop_id = $1 FOR UPDATE")
            .bind(shop.as_str())
            .fetch_optional(&mut *conn)
            .await?,
    )
}

/// The shop's version, 0 when unknown.
pub async fn shop_version(conn: &mut PgConnection, shop: &ShopId) -> Result<i64, StoreError> {
    let version: Option<i64> = sqlx::query_scalar("SELECT version FROM shops WHERE shop_id = $1")
        .bind(shop.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(version.unwrap_or(0))
}

/// Bumps the shop's version; returns the new one.
pub async fn bump_version(conn: &mut PgConnection, shop: &ShopId) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "UPDATE shops SET version = version + 1, updated_at = now() WHERE shop_id = $1 RETURNING version",
    )
    .bind(shop.as_str())
    .fetch_one(&mut *conn)
    .await?)
}

pub async fn load_settings(
    conn: &mut PgConnection,
    shop: &ShopId,
) -> Result<Option<StoredSettings>, StoreError> {
    let row: Option<SettingsRow> = sqlx::query_as(
        "SELECT s.shop_id, h.version, s.wms_kind, s.endpoint_url, s.access_key_id,
                s.access_key_sealed, s.credentials_rev, s.ship_instructions, s.ship_cancellations,
                s.ship_results, s.target_status_codes, s.shipper_id, s.delivery_method_id,
                s.sync_period_days, s.robot_id, s.payment_mappings, s.header_free_fields,
                s.line_free_fields, s.wms_order_no_prefix, s.enabled, s.check_outcome, s.check_detail, s.check_at,
                s.check_credentials_rev, s.updated_at
           FROM shop_settings s JOIN shops h ON h.shop_id = s.shop_id
          WHERE s.shop_id = $1",
    )
    .bind(shop.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(StoredSettings::try_from).transpose()?)
}

/// Inserts or replaces the detail settings and the key. Keeps `enabled` and the last check
/// (whose `credentials_rev` says whether it still applies).
pub async fn save_settings(
    conn: &mut PgConnection,
    shop: &ShopId,
    detail: &Detail,
    access_key: &Sealed,
    credentials_rev: i64,
) -> Result<(), StoreError> {
    let sync_period_days = i32::try_from(detail.sync_period_days).unwrap_or(i32::MAX);
    sqlx::query(
        "INSERT INTO shop_settings (
             shop_id, wms_kind, endpoint_url, access_key_id, access_key_sealed, credentials_rev,
             ship_instructions, ship_cancellations, ship_results, target_status_codes,
             shipper_id, delivery_method_id, sync_period_days, robot_id,
             payment_mappings, header_free_fields, line_free_fields, wms_order_no_prefix)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
         ON CONFLICT (shop_id) DO UPDATE SET
             wms_kind = EXCLUDED.wms_kind,
             endpoint_url = EXCLUDED.endpoint_url,
             access_key_id = EXCLUDED.access_key_id,
             access_key_sealed = EXCLUDED.access_key_sealed,
             credentials_rev = EXCLUDED.credentials_rev,
             ship_instructions = EXCLUDED.ship_instructions,
             ship_cancellations = EXCLUDED.ship_cancellations,
             ship_results = EXCLUDED.ship_results,
             target_status_codes = EXCLUDED.target_status_codes,
             shipper_id = EXCLUDED.shipper_id,
             delivery_method_id = EXCLUDED.delivery_method_id,
             sync_period_days = EXCLUDED.sync_period_days,
             robot_id = EXCLUDED.robot_id,
             payment_mappings = EXCLUDED.payment_mappings,
             header_free_fields = EXCLUDED.header_free_fields,
             line_free_fields = EXCLUDED.line_free_fields,
             wms_order_no_prefix = EXCLUDED.wms_order_no_prefix,
             updated_at = now()",
    )
    .bind(shop.as_str())
    .bind(detail.wms_kind.as_str())
    .bind(&detail.endpoint_url)
    .bind(&access_key.key_id)
    .bind(&access_key.blob)
    .bind(credentials_rev)
    .bind(detail.data_targets.shipment_instructions)
    .bind(detail.data_targets.cancellations)
    .bind(detail.data_targets.shipment_results)
    .bind(&detail.target_status_codes)
    .bind(detail.shipper_id)
    .bind(detail.delivery_method_id)
    .bind(sync_period_days)
    .bind(detail.robot_id)
    .bind(Json(&detail.payment_mappings))
    .bind(Json(&detail.header_free_fields))
    .bind(Json(&detail.line_free_fields))
    .bind(&detail.wms_order_no_prefix)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Records a check made with credentials revision `credentials_rev`. Returns `false` (nothing
/// recorded) when the key or URL changed in the meantime.
pub async fn record_check(
    conn: &mut PgConnection,
    shop: &ShopId,
    credentials_rev: i64,
    outcome: CheckOutcome,
    detail: &str,
    checked_at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE shop_settings
            SET check_outcome = $3, check_detail = $4, check_at = $5,
                check_credentials_rev = $2, updated_at = now()
          WHERE shop_id = $1 AND credentials_rev = $2",
    )
    .bind(shop.as_str())
    .bind(credentials_rev)
    .bind(outcome.as_str())
    .bind(detail)
    .bind(checked_at)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn set_enabled(
    conn: &mut PgConnection,
    shop: &ShopId,
    enabled: bool,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE shop_settings SET enabled = $2, updated_at = now() WHERE shop_id = $1")
        .bind(shop.as_str())
        .bind(enabled)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Stores the keyed fingerprint of the shop's endpoint URL and access key (`None`: to be made
/// again when needed).
pub async fn set_credentials_fingerprint(
    conn: &mut PgConnection,
    shop: &ShopId,
    fingerprint: Option<&[u8]>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE shop_settings SET credentials_fingerprint = $2 WHERE shop_id = $1")
        .bind(shop.as_str())
        .bind(fingerprint)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Enabled shops other than `shop` whose fingerprint is not computed yet, with their endpoint
/// URL and sealed key (rows from before fingerprints, or re-sealed since).
pub async fn enabled_without_fingerprint(
    conn: &mut PgConnection,
    shop: &ShopId,
) -> Result<Vec<(String, String, Sealed)>, StoreError> {
    let rows: Vec<(String, String, String, Vec<u8>)> = sqlx::query_as(
        "SELECT shop_id, endpoint_url, access_key_id, access_key_sealed FROM shop_settings
          WHERE enabled AND credentials_fingerprint IS NULL AND shop_id <> $1
          ORDER BY shop_id",
    )
    .bind(shop.as_str())
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(shop_id, endpoint_url, key_id, blob)| {
            (shop_id, endpoint_url, Sealed { key_id, blob })
        })
        .collect())
}

/// Whether an enabled shop other than `shop` has one of `fingerprints`.
pub async fn enabled_shop_with_fingerprint(
    conn: &mut PgConnection,
    shop: &ShopId,
    fingerprints: &[Vec<u8>],
) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM shop_settings
                         WHERE enabled AND shop_id <> $1 AND credentials_fingerprint = ANY($2))",
    )
    .bind(shop.as_str())
    .bind(fingerprints)
    .fetch_one(&mut *conn)
    .await?)
}

/// Serialises, until the transaction ends, the writes that look for a shop on the same
/// credentials as `fingerprint` (two shops enabled at once on one account both see the other).
pub async fn lock_fingerprint(
    conn: &mut PgConnection,
    fingerprint: &[u8],
) -> Result<(), StoreError> {
    let mut head = [0u8; 8];
    for (slot, byte) in head.iter_mut().zip(fingerprint) {
        *slot = *byte;
    }
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(i64::from_be_bytes(head))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct StatusRow {
    code: String,
    display_name: String,
    kind: String,
}

pub async fn load_catalog(
    conn: &mut PgConnection,
    shop: &ShopId,
) -> Result<Vec<OrderStatus>, StoreError> {
    let rows: Vec<StatusRow> = sqlx::query_as(
        "SELECT code, display_name, kind FROM order_statuses WHERE shop_id = $1 ORDER BY position",
    )
    .bind(shop.as_str())
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|row| {
            let kind = StatusKind::parse(&row.kind).ok_or_else(|| CorruptRow {
                shop: shop.to_string(),
                what: format!("unknown status kind '{}'", row.kind),
            })?;
            Ok(OrderStatus {
                code: row.code,
                display_name: row.display_name,
                kind,
            })
        })
        .collect()
}

pub async fn replace_catalog(
    conn: &mut PgConnection,
    shop: &ShopId,
    statuses: &[OrderStatus],
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM order_statuses WHERE shop_id = $1")
        .bind(shop.as_str())
        .execute(&mut *conn)
        .await?;
    let codes: Vec<&str> = statuses.iter().map(|s| s.code.as_str()).collect();
    let names: Vec<&str> = statuses.iter().map(|s| s.display_name.as_str()).collect();
    let kinds: Vec<&str> = statuses.iter().map(|s| s.kind.as_str()).collect();
    sqlx::query(
        "INSERT INTO order_statuses (shop_id, code, display_name, kind, position)
         SELECT $1, code, display_name, kind, (position - 1)::int
           FROM unnest($2::text[], $3::text[], $4::text[]) WITH ORDINALITY
                AS t(code, display_name, kind, position)",
    )
    .bind(shop.as_str())
    .bind(&codes)
    .bind(&names)
    .bind(&kinds)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// One shop of [`list_shops`].
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ShopRow {
    pub shop_id: String,
    pub version: i64,
    pub enabled: bool,
}

/// The shops with registered settings whose id sorts after `after`, in shop id order, at most
/// `limit` of them (keyset pagination on the primary key). Across shops by design: the one
/// query that is not scoped to a shop, and it returns ids, versions and switches only.
pub async fn list_shops(
    conn: &mut PgConnection,
    enabled_only: bool,
    after: Option<&ShopId>,
    limit: i64,
) -> Result<Vec<ShopRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT s.shop_id, h.version, s.enabled
           FROM shop_settings s JOIN shops h ON h.shop_id = s.shop_id
          WHERE ($1::text IS NULL OR s.shop_id > $1)
            AND (NOT $2 OR s.enabled)
          ORDER BY s.shop_id
          LIMIT $3",
    )
    .bind(after.map(ShopId::as_str))
    .bind(enabled_only)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?)
}
