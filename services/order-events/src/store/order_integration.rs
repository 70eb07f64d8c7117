//! `order_integration`: the projection of each order's shipping and WMS status from the
//! dispatcher's `shipments.{shop}.updated` (O1), copied to the order's filter columns.

use chrono::Utc;
use sqlx::PgConnection;
use wmslink_proto::dispatch::v1::ShipmentUpdated;
use wmslink_proto::orders::v1::ShippingStatus;
use wmslink_proto::sync::v1::AnomalyKind;

use crate::domain::validation::to_datetime;

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
    // R2: the dispatcher's flag is sticky (it stays after the order ships); the status says
    // only whether the refusal is the latest word.
    let cancel_rejected = shipment.cancel_rejected
        || shipment.shipping_status == ShippingStatus::CancelRejected as i32;
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
    if shipment.registered_outside_wmslink {
        let detail = format!(
            "the WMS refused the registration as a duplicate and holds order {} as WMS order #{}: registered outside wmslink (CSV or by hand), adopted without sending again",
            shipment.order_no, shipment.wms_order_id
        );
        super::record_anomaly(
            &mut *conn,
            &super::OrderAnomaly {
                shop_id: &shipment.shop_id,
                order_no: &shipment.order_no,
                kind: AnomalyKind::RegisteredOutsideWmslink,
                wms_order_id: shipment.wms_order_id,
                detail: &detail,
                detected_at: updated_at,
            },
        )
        .await?;
    }
    sqlx::query(
        "UPDATE orders SET shipping_status = $3, wms_status_id = $4
         WHERE shop_id = $1 AND order_no = $2
           AND (shipping_status, wms_status_id) IS DISTINCT FROM ($3, $4)",
    )
    .bind(&shipment.shop_id)
    .bind(&shipment.order_no)
    .bind(status)
    .bind(shipment.wms_status_id)
    .execute(conn)
    .await?;
    Ok(true)
}
