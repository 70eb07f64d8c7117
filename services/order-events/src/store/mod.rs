//! PostgreSQL access: static SQL only (runtime `query`/`query_as` with `FromRow`). The functions
//! taking a connection run inside the caller's transaction.

mod list;

pub use list::{BROAD_PREFIX_BUDGET, Page, explain_list, list_orders, list_orders_with};

use chrono::{DateTime, Utc};
use prost::Message;
use sqlx::PgConnection;
use wmslink_proto::dispatch::v1::ShipmentUpdated;
use wmslink_proto::orders::v1::{IntegrationStatus, Order, OrderView, ShippingStatus};
use wmslink_proto::settings::v1::SettingsChanged;

use crate::domain::validation::to_datetime;
use crate::errors::OrderError;

/// The migrations of this service (after the platform's own tables).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub(crate) fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    wmslink_proto::timestamp(at.timestamp(), at.timestamp_subsec_nanos())
}

/// Serialises every change of one order (creation included) for the rest of the transaction.
pub async fn lock_order(conn: &mut PgConnection, shop: &str, order_no: &str) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))")
        .bind(shop)
        .bind(order_no)
        .execute(conn)
        .await?;
    Ok(())
}

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

#[derive(sqlx::FromRow)]
struct OrderRow {
    shop_id: String,
    order_no: String,
    snapshot: Vec<u8>,
    received_at: DateTime<Utc>,
    shipping_status: i16,
    wms_status_id: i32,
    wms_status_name: Option<String>,
    tracking_code: Option<String>,
    shipped_date: Option<String>,
    edited_after_sending: Option<bool>,
    edited_revision: Option<i64>,
    cancel_rejected: Option<bool>,
    cancelled_in_wms_unrequested: Option<bool>,
    last_error: Option<String>,
    integration_updated_at: Option<DateTime<Utc>>,
}

/// A stored order with its projection.
#[derive(Debug, Clone)]
pub struct StoredOrder {
    pub order: Order,
    pub integration: IntegrationStatus,
    pub received_at: DateTime<Utc>,
}

impl StoredOrder {
    pub fn view(&self) -> OrderView {
        OrderView {
            order: Some(self.order.clone()),
            integration: Some(self.integration.clone()),
            received_at: Some(timestamp(self.received_at)),
        }
    }
}

impl TryFrom<OrderRow> for StoredOrder {
    type Error = OrderError;

    fn try_from(row: OrderRow) -> Result<Self, OrderError> {
        let order = Order::decode(row.snapshot.as_slice()).map_err(|err| OrderError::Corrupt {
            shop: row.shop_id.clone(),
            order_no: row.order_no.clone(),
            reason: err.to_string(),
        })?;
        let integration = IntegrationStatus {
            shipping_status: i32::from(row.shipping_status),
            wms_status_id: row.wms_status_id,
            wms_status_name: row.wms_status_name.unwrap_or_default(),
            tracking_code: row.tracking_code.unwrap_or_default(),
            shipped_date: row.shipped_date.unwrap_or_default(),
            edited_after_sending: row.edited_after_sending.unwrap_or_default(),
            edited_revision: row.edited_revision.unwrap_or_default(),
            cancel_rejected: row.cancel_rejected.unwrap_or_default(),
            cancelled_in_wms_unrequested: row.cancelled_in_wms_unrequested.unwrap_or_default(),
            last_error: row.last_error.unwrap_or_default(),
            updated_at: row.integration_updated_at.map(timestamp),
        };
        Ok(Self {
            order,
            integration,
            received_at: row.received_at,
        })
    }
}

/// The order with its projection, or `None`.
pub async fn load_order(
    conn: &mut PgConnection,
    shop: &str,
    order_no: &str,
) -> Result<Option<StoredOrder>, OrderError> {
    let row: Option<OrderRow> = sqlx::query_as(
        "SELECT o.shop_id, o.order_no, o.snapshot, o.received_at, o.shipping_status,
                o.wms_status_id, p.wms_status_name, p.tracking_code, p.shipped_date,
                p.edited_after_sending, p.edited_revision, p.cancel_rejected,
                p.cancelled_in_wms_unrequested, p.last_error,
                p.updated_at AS integration_updated_at
         FROM orders o
         LEFT JOIN order_integration p ON p.shop_id = o.shop_id AND p.order_no = o.order_no
         WHERE o.shop_id = $1 AND o.order_no = $2",
    )
    .bind(shop)
    .bind(order_no)
    .fetch_optional(conn)
    .await?;
    row.map(StoredOrder::try_from).transpose()
}

/// The list and display columns derived from a snapshot.
struct Columns {
    order_date: DateTime<Utc>,
    total: i64,
    shipping_name: String,
}

fn columns(order: &Order) -> Columns {
    let shipping_name = order
        .shipping
        .as_ref()
        .map(|address| address.name.clone())
        .filter(|name| !name.is_empty())
        .or_else(|| order.orderer.as_ref().map(|address| address.name.clone()))
        .unwrap_or_default();
    Columns {
        order_date: order
            .order_date
            .as_ref()
            .and_then(to_datetime)
            .unwrap_or(DateTime::UNIX_EPOCH),
        total: order.amounts.as_ref().map(|a| a.total).unwrap_or_default(),
        shipping_name,
    }
}

/// Inserts a new order, taking its shipping and WMS status from a projection row that may have
/// arrived first.
pub async fn insert_order(conn: &mut PgConnection, order: &Order) -> sqlx::Result<()> {
    let columns = columns(order);
    sqlx::query(
        "INSERT INTO orders (shop_id, order_no, revision, status_code, order_date, total,
                             shipping_name, snapshot, shipping_status, wms_status_id)
         SELECT $1, $2, $3, $4, $5, $6, $7, $8,
                COALESCE(p.shipping_status, 1), COALESCE(p.wms_status_id, 0)
         FROM (SELECT 1) AS one
         LEFT JOIN order_integration p ON p.shop_id = $1 AND p.order_no = $2",
    )
    .bind(&order.shop_id)
    .bind(&order.order_no)
    .bind(order.revision)
    .bind(&order.status_code)
    .bind(columns.order_date)
    .bind(columns.total)
    .bind(&columns.shipping_name)
    .bind(order.encode_to_vec())
    .execute(conn)
    .await?;
    Ok(())
}

/// Replaces the stored snapshot.
pub async fn update_order(conn: &mut PgConnection, order: &Order) -> sqlx::Result<()> {
    let columns = columns(order);
    sqlx::query(
        "UPDATE orders SET revision = $3, status_code = $4, order_date = $5, total = $6,
                           shipping_name = $7, snapshot = $8, updated_at = now()
         WHERE shop_id = $1 AND order_no = $2",
    )
    .bind(&order.shop_id)
    .bind(&order.order_no)
    .bind(order.revision)
    .bind(&order.status_code)
    .bind(columns.order_date)
    .bind(columns.total)
    .bind(&columns.shipping_name)
    .bind(order.encode_to_vec())
    .execute(conn)
    .await?;
    Ok(())
}

/// Counts an ignored older revision on the order.
pub async fn count_stale(conn: &mut PgConnection, shop: &str, order_no: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE orders SET stale_revisions_ignored = stale_revisions_ignored + 1
         WHERE shop_id = $1 AND order_no = $2",
    )
    .bind(shop)
    .bind(order_no)
    .execute(conn)
    .await?;
    Ok(())
}

/// A refused status change (R4, NATS path), kept apart.
pub struct RejectedChange<'a> {
    pub order: &'a Order,
    pub current_status_code: &'a str,
    pub wms_status_id: i32,
    pub reason: &'a str,
    pub event_id: &'a str,
}

/// Keeps the snapshot apart; `false` when this revision was already refused before.
pub async fn insert_rejected_change(
    conn: &mut PgConnection,
    change: &RejectedChange<'_>,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO rejected_changes (shop_id, order_no, revision, requested_status_code,
                                       current_status_code, wms_status_id, reason, snapshot,
                                       event_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (shop_id, order_no, revision) DO NOTHING",
    )
    .bind(&change.order.shop_id)
    .bind(&change.order.order_no)
    .bind(change.order.revision)
    .bind(&change.order.status_code)
    .bind(change.current_status_code)
    .bind(change.wms_status_id)
    .bind(change.reason)
    .bind(change.order.encode_to_vec())
    .bind(change.event_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Applies a shipment update to the projection when its sequence is newer than the stored one,
/// and copies the filterable columns to the order (if it exists yet). Returns whether it applied.
pub async fn apply_shipment(
    conn: &mut PgConnection,
    update: &ShipmentUpdated,
) -> sqlx::Result<bool> {
    let Some(shipment) = &update.shipment else {
        return Ok(false);
    };
    let status = i16::try_from(shipment.shipping_status).unwrap_or_default();
    let cancel_rejected = shipment.shipping_status == ShippingStatus::CancelRejected as i32;
    let updated_at = shipment
        .updated_at
        .as_ref()
        .or(update.occurred_at.as_ref())
        .and_then(to_datetime)
        .unwrap_or_else(Utc::now);
    let done = sqlx::query(
        "INSERT INTO order_integration (shop_id, order_no, sequence, shipping_status,
                 wms_status_id, wms_status_name, tracking_code, shipped_date,
                 edited_after_sending, edited_revision, cancel_rejected,
                 cancelled_in_wms_unrequested, last_error, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
         ON CONFLICT (shop_id, order_no) DO UPDATE SET
             sequence = EXCLUDED.sequence,
             shipping_status = EXCLUDED.shipping_status,
             wms_status_id = EXCLUDED.wms_status_id,
             wms_status_name = EXCLUDED.wms_status_name,
             tracking_code = EXCLUDED.tracking_code,
             shipped_date = EXCLUDED.shipped_date,
             edited_after_sending = EXCLUDED.edited_after_sending,
             edited_revision = EXCLUDED.edited_revision,
             cancel_rejected = EXCLUDED.cancel_rejected,
             cancelled_in_wms_unrequested = EXCLUDED.cancelled_in_wms_unrequested,
             last_error = EXCLUDED.last_error,
             updated_at = EXCLUDED.updated_at,
             applied_at = now()
         WHERE order_integration.sequence < EXCLUDED.sequence",
    )
    .bind(&shipment.shop_id)
    .bind(&shipment.order_no)
    .bind(update.sequence)
    .bind(status)
    .bind(shipment.wms_status_id)
    .bind(&shipment.wms_status_name)
    .bind(&shipment.tracking_code)
    .bind(&shipment.shipped_date)
    .bind(shipment.edited_after_sending)
    .bind(shipment.edited_revision)
    .bind(cancel_rejected)
    .bind(shipment.cancelled_in_wms_unrequested)
    .bind(&shipment.last_error)
    .bind(updated_at)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    sqlx::query(
        "UPDATE orders SET shipping_status = $3, wms_status_id = $4
         WHERE shop_id = $1 AND order_no = $2",
    )
    .bind(&shipment.shop_id)
    .bind(&shipment.order_no)
    .bind(status)
    .bind(shipment.wms_status_id)
    .execute(conn)
    .await?;
    Ok(true)
}
