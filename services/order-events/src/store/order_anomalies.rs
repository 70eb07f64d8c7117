//! `order_anomalies`: the R5 anomalies of each order number (status-sync's `wms.{shop}.anomaly`,
//! the dispatcher's "registered outside wmslink"), with their kinds copied to `orders.anomalies`
//! as bits for the list.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use wmslink_proto::sync::v1::AnomalyKind;

use crate::domain::list::kind_bit;

/// One anomaly of one order number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderAnomaly<'a> {
    pub shop_id: &'a str,
    pub order_no: &'a str,
    pub kind: AnomalyKind,
    pub wms_order_id: i64,
    pub detail: &'a str,
    pub detected_at: DateTime<Utc>,
}

/// Records an anomaly (once per order, kind and WMS order) and sets its bit on the order, if
/// the order exists yet. Returns whether it was new.
pub async fn record_anomaly(
    conn: &mut PgConnection,
    anomaly: &OrderAnomaly<'_>,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO order_anomalies (shop_id, order_no, kind, wms_order_id, detail, detected_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (shop_id, order_no, kind, wms_order_id) DO NOTHING",
    )
    .bind(anomaly.shop_id)
    .bind(anomaly.order_no)
    .bind(anomaly.kind as i16)
    .bind(anomaly.wms_order_id)
    .bind(anomaly.detail)
    .bind(anomaly.detected_at)
    .execute(&mut *conn)
    .await?;
    let bit = kind_bit(anomaly.kind);
    sqlx::query(
        "UPDATE orders SET anomalies = anomalies | $3
         WHERE shop_id = $1 AND order_no = $2 AND anomalies & $3 = 0",
    )
    .bind(anomaly.shop_id)
    .bind(anomaly.order_no)
    .bind(bit)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
