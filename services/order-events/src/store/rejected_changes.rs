//! `rejected_changes`: snapshots R4 refused on the NATS path, kept apart and never applied.

use prost::Message;
use sqlx::PgConnection;
use wmslink_proto::orders::v1::Order;

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
