//! `orders`: the latest snapshot of every order (protobuf bytes) with its list and display
//! columns, and the per-order lock every change takes.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use prost::Message;
use sqlx::PgConnection;
use wmslink_proto::orders::v1::{IntegrationStatus, Order, OrderView};

use super::timestamp;
use crate::domain::validation::to_datetime;
use crate::errors::OrderError;

/// The columns of an [`OrderRow`] (`orders o` with `order_integration p`), for every read.
macro_rules! order_columns {
    () => {
        "o.shop_id, o.order_no, o.snapshot, o.received_at, o.shipping_status,
         o.wms_status_id, p.wms_status_name, p.tracking_code, p.shipped_date,
         p.edited_after_sending, p.edited_revision, p.cancel_rejected,
         p.cancelled_in_wms_unrequested, p.last_error,
         p.updated_at AS integration_updated_at, o.wmslink_changes, o.anomalies"
    };
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

/// [`lock_order`] for many orders at once, in one statement, in a fixed order (by lock key) so
/// that two batches never wait on each other crosswise.
pub async fn lock_orders(conn: &mut PgConnection, keys: &[(&str, &str)]) -> sqlx::Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let (shops, order_nos): (Vec<&str>, Vec<&str>) = keys.iter().copied().unzip();
    sqlx::query(
        "SELECT count(pg_advisory_xact_lock(k1, k2)) FROM (
             SELECT DISTINCT hashtext(s) AS k1, hashtext(o) AS k2
             FROM unnest($1::text[], $2::text[]) AS keys(s, o)
             ORDER BY k1, k2) AS sorted",
    )
    .bind(&shops)
    .bind(&order_nos)
    .execute(conn)
    .await?;
    Ok(())
}

/// [`load_order`] for many orders at once, in one statement: the stored ones by
/// `(shop_id, order_no)`, each decoded on its own (a corrupt snapshot fails only its order).
pub async fn load_orders(
    conn: &mut PgConnection,
    keys: &[(&str, &str)],
) -> sqlx::Result<HashMap<(String, String), Result<StoredOrder, OrderError>>> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let (shops, order_nos): (Vec<&str>, Vec<&str>) = keys.iter().copied().unzip();
    let rows: Vec<OrderRow> = sqlx::query_as(concat!(
        "SELECT ",
        order_columns!(),
        " FROM unnest($1::text[], $2::text[]) AS keys(shop_id, order_no)
              JOIN orders o ON o.shop_id = keys.shop_id AND o.order_no = keys.order_no
              LEFT JOIN order_integration p ON p.shop_id = o.shop_id AND p.order_no = o.order_no"
    ))
    .bind(&shops)
    .bind(&order_nos)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let key = (row.shop_id.clone(), row.order_no.clone());
            (key, StoredOrder::try_from(row))
        })
        .collect())
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
    wmslink_changes: i32,
    anomalies: i32,
}

/// A stored order with its projection.
#[derive(Debug, Clone)]
pub struct StoredOrder {
    pub order: Order,
    pub integration: IntegrationStatus,
    pub received_at: DateTime<Utc>,
    /// Status changes made through `ChangeOrderStatus` on top of the cart's revision.
    pub wmslink_changes: i32,
}

impl StoredOrder {
    /// The order date of the stored snapshot.
    pub fn order_date(&self) -> Option<DateTime<Utc>> {
        self.order.order_date.as_ref().and_then(to_datetime)
    }

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
        let order =
            Order::decode(row.snapshot.as_slice()).map_err(|source| OrderError::Corrupt {
                shop: row.shop_id.clone(),
                order_no: row.order_no.clone(),
                source,
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
            anomalies: crate::domain::list::kinds_of_bits(row.anomalies),
        };
        Ok(Self {
            order,
            integration,
            received_at: row.received_at,
            wmslink_changes: row.wmslink_changes,
        })
    }
}

/// The order with its projection, or `None`.
pub async fn load_order(
    conn: &mut PgConnection,
    shop: &str,
    order_no: &str,
) -> Result<Option<StoredOrder>, OrderError> {
    let row: Option<OrderRow> = sqlx::query_as(concat!(
        "SELECT ",
        order_columns!(),
        " FROM orders o
              LEFT JOIN order_integration p ON p.shop_id = o.shop_id AND p.order_no = o.order_no
              WHERE o.shop_id = $1 AND o.order_no = $2"
    ))
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
                             shipping_name, snapshot, shipping_status, wms_status_id, anomalies)
         SELECT $1, $2, $3, $4, $5, $6, $7, $8,
                COALESCE(p.shipping_status, 1), COALESCE(p.wms_status_id, 0),
                COALESCE((SELECT bit_or(1 << a.kind) FROM order_anomalies a
                          WHERE a.shop_id = $1 AND a.order_no = $2), 0)
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

/// Replaces the stored snapshot with the cart's.
pub async fn update_order(conn: &mut PgConnection, order: &Order) -> sqlx::Result<()> {
    write_snapshot(conn, order, false).await
}

/// Stores a status change made through `ChangeOrderStatus`: the cart's revision is kept and the
/// change counted on top of it.
pub async fn record_wmslink_change(conn: &mut PgConnection, order: &Order) -> sqlx::Result<()> {
    write_snapshot(conn, order, true).await
}

async fn write_snapshot(
    conn: &mut PgConnection,
    order: &Order,
    by_wmslink: bool,
) -> sqlx::Result<()> {
    let columns = columns(order);
    sqlx::query(
        "UPDATE orders SET revision = $3, status_code = $4, order_date = $5, total = $6,
                           shipping_name = $7, snapshot = $8, updated_at = now(),
                           wmslink_changes = CASE WHEN $9 THEN wmslink_changes + 1 ELSE 0 END
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
    .bind(by_wmslink)
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
