//! What the dispatcher publishes: `ShipmentUpdated` on `shipments.{shop}.updated`.

use chrono::Utc;
use wmslink_platform::nats::Subjects;
use wmslink_platform::outbox::{self, OutboxMessage};
use wmslink_platform::shop::ShopId;
use wmslink_proto::dispatch::v1::{HistoryEntry, Shipment, ShipmentUpdated};
use wmslink_proto::to_timestamp as timestamp;

use crate::store::{HistoryRow, ShipmentRow};

pub fn shipment(row: &ShipmentRow) -> Shipment {
    Shipment {
        shop_id: row.shop_id.clone(),
        order_no: row.order_no.clone(),
        shipping_status: row.status.to_proto() as i32,
        wms_order_id: row.wms_order_id.unwrap_or_default(),
        wms_status_id: row.wms_status_id.unwrap_or_default(),
        wms_status_name: row.wms_status_name.clone().unwrap_or_default(),
        tracking_code: row.tracking_code.clone().unwrap_or_default(),
        shipped_date: row.shipped_date.clone().unwrap_or_default(),
        sent_revision: row.sent_revision.unwrap_or_default(),
        edited_after_sending: row.edited_after_sending,
        edited_revision: row.edited_revision.unwrap_or_default(),
        cancelled_in_wms_unrequested: row.cancelled_in_wms_unrequested,
        last_error: row.last_error.clone().unwrap_or_default(),
        order_date: row.order_date.map(timestamp),
        updated_at: Some(timestamp(row.updated_at)),
        cancel_rejected: row.cancel_rejected,
        wms_updated_at: row.wms_updated_at.map(timestamp),
        order_status_code: row.order_status_code.clone(),
        order_revision: row.order_revision,
        cancel_pending: row.cancel_pending,
        possibly_in_wms: row.possibly_in_wms,
        cancel_not_sent: row.cancel_not_sent,
        registered_outside_wmslink: row.registered_outside_wmslink,
    }
}

pub fn history_entry(row: &HistoryRow) -> HistoryEntry {
    HistoryEntry {
        at: Some(timestamp(row.at)),
        kind: row.kind.clone(),
        from_status: row.from_status.clone(),
        to_status: row.to_status.clone(),
        reason: row.reason.clone(),
        request_summary: row.request_summary.clone(),
        response_summary: row.response_summary.clone(),
        error: row.error.clone(),
    }
}

/// The outbox message announcing the row's current state (its `sequence` already bumped).
pub fn shipment_updated(
    subjects: &Subjects,
    row: &ShipmentRow,
) -> Result<OutboxMessage, wmslink_platform::shop::ShopIdError> {
    let shop = ShopId::parse(&row.shop_id)?;
    let event_id = outbox::new_event_id();
    let event = ShipmentUpdated {
        event_id: event_id.clone(),
        shipment: Some(shipment(row)),
        sequence: row.sequence,
        occurred_at: Some(timestamp(Utc::now())),
    };
    Ok(OutboxMessage::protobuf(
        subjects.shipments_updated(&shop),
        event_id,
        &event,
    ))
}
