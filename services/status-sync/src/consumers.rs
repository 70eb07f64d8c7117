//! The durable JetStream consumer: keeps the watch list from the dispatcher's
//! `shipments.{shop}.updated` events, one transaction per message with its processed-message
//! id, newer `sequence` only.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use wmslink_platform::consumer::{Delivery, HandleError, Handler};
use wmslink_platform::db;
use wmslink_platform::shop::{OrderNo, ShopId};
use wmslink_platform::telemetry;
use wmslink_proto::dispatch::v1::ShipmentUpdated;
use wmslink_proto::from_timestamp;
use wmslink_proto::orders::v1::ShippingStatus;

use crate::model::status_key;
use crate::store::{ShipmentChange, Store};

/// The durable consumer's name (also the `processed_messages.consumer`).
pub const CONSUMER: &str = "status-sync-shipments";

pub struct WatchListHandler {
    pool: PgPool,
}

impl WatchListHandler {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// A decoded, checked update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedUpdate {
    pub shop_id: ShopId,
    pub order_no: OrderNo,
    pub wms_order_id: i64,
    pub order_date: DateTime<Utc>,
    pub shipping_status: &'static str,
    /// The dispatcher's R5 flag: the WMS cancelled it without being asked.
    pub cancelled_unrequested: bool,
    /// The dispatcher's R5 flag: adopted after the WMS refused it as a duplicate.
    pub registered_outside: bool,
    /// The dispatcher's flag: sent with an unknown outcome and not found since.
    pub possibly_in_wms: bool,
    /// The WMS status of the last observation the dispatcher applied (0: none).
    pub wms_status_id: i32,
    pub sequence: i64,
    pub occurred_at: DateTime<Utc>,
}

/// Decodes (protobuf or proto3 JSON) and checks one message; every refusal is permanent
/// (dead-lettered with the reason).
pub fn check(
    delivery: &Delivery<'_>,
    received_at: DateTime<Utc>,
) -> Result<CheckedUpdate, HandleError> {
    let event: ShipmentUpdated = delivery.decode()?;
    let shipment = event
        .shipment
        .ok_or_else(|| HandleError::invalid("shipment", "missing"))?;
    let shop_id = delivery.shop(&shipment.shop_id, "shipment.shop_id")?;
    let order_no = OrderNo::parse(&shipment.order_no)
        .map_err(|err| HandleError::invalid("shipment.order_no", err))?;
    let status = ShippingStatus::try_from(shipment.shipping_status).map_err(|_| {
        HandleError::invalid(
            "shipment.shipping_status",
            format!("unknown value {}", shipment.shipping_status),
        )
    })?;
    if status == ShippingStatus::Unspecified {
        return Err(HandleError::invalid(
            "shipment.shipping_status",
            "must be set",
        ));
    }
    if event.sequence <= 0 {
        return Err(HandleError::invalid("sequence", "must be positive"));
    }
    let occurred_at = event
        .occurred_at
        .as_ref()
        .and_then(from_timestamp)
        .unwrap_or(received_at);
    // The order date bounds what is asked (⑧); without one, the time of the event is the best
    // (latest) guess, so the order stays in the period at least as long as it should.
    let order_date = shipment
        .order_date
        .as_ref()
        .and_then(from_timestamp)
        .unwrap_or(occurred_at);
    Ok(CheckedUpdate {
        shop_id,
        order_no,
        wms_order_id: shipment.wms_order_id.max(0),
        order_date,
        shipping_status: status_key(status),
        cancelled_unrequested: shipment.cancelled_in_wms_unrequested,
        registered_outside: shipment.registered_outside_wmslink,
        possibly_in_wms: shipment.possibly_in_wms,
        wms_status_id: shipment.wms_status_id,
        sequence: event.sequence,
        occurred_at,
    })
}

impl Handler for WatchListHandler {
    async fn handle(&self, delivery: &Delivery<'_>) -> Result<(), HandleError> {
        let update = check(delivery, Utc::now())?;
        let mut tx = self.pool.begin().await?;
        if !db::mark_processed(&mut tx, CONSUMER, &delivery.dedup_id).await? {
            return Ok(());
        }
        Store::upsert_shop(&mut tx, update.shop_id.as_str()).await?;
        let applied = Store::apply_shipment(
            &mut tx,
            &ShipmentChange {
                shop_id: update.shop_id.as_str(),
                order_no: update.order_no.as_str(),
                wms_order_id: update.wms_order_id,
                order_date: update.order_date,
                shipping_status: update.shipping_status,
                cancelled_unrequested: update.cancelled_unrequested,
                registered_outside: update.registered_outside,
                possibly_in_wms: update.possibly_in_wms,
                wms_status_id: update.wms_status_id,
                sequence: update.sequence,
                occurred_at: update.occurred_at,
                traceparent: telemetry::current_traceparent().as_deref(),
            },
        )
        .await?;
        tx.commit().await?;
        tracing::debug!(
            shop = %update.shop_id,
            order_no = %update.order_no,
            status = update.shipping_status,
            sequence = update.sequence,
            applied,
            "shipment update"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use prost::Message;
    use wmslink_platform::nats::Subjects;
    use wmslink_proto::dispatch::v1::Shipment;

    fn event(shop: &str, order_no: &str, status: ShippingStatus, sequence: i64) -> Vec<u8> {
        ShipmentUpdated {
            event_id: "e1".into(),
            shipment: Some(Shipment {
                shop_id: shop.into(),
                order_no: order_no.into(),
                shipping_status: status.into(),
                wms_order_id: 42,
                order_date: Some(wmslink_proto::timestamp(1_700_000_000, 0)),
                ..Shipment::default()
            }),
            sequence,
            occurred_at: Some(wmslink_proto::timestamp(1_700_000_100, 0)),
        }
        .encode_to_vec()
    }

    fn checked(subject: &str, payload: &[u8]) -> Result<CheckedUpdate, String> {
        let subjects = Subjects::new("p").unwrap();
        let delivery = Delivery::new(&subjects, subject, payload, None, "m1".into());
        check(&delivery, Utc::now()).map_err(|err| err.to_string())
    }

    #[test]
    fn accepts_a_well_formed_update() {
        let update = checked(
            "p.shipments.s1.updated",
            &event("s1", "A-1", ShippingStatus::Sent, 3),
        )
        .unwrap();
        assert_eq!(update.shipping_status, "SENT");
        assert_eq!(update.wms_order_id, 42);
        assert_eq!(update.order_date.timestamp(), 1_700_000_000);
        assert_eq!(update.occurred_at.timestamp(), 1_700_000_100);
    }

    #[test]
    fn refuses_other_tenants_garbage_and_bad_fields() {
        let refused = |subject: &str, payload: Vec<u8>| checked(subject, &payload).unwrap_err();
        assert!(
            refused(
                "p.shipments.s2.updated",
                event("s1", "A", ShippingStatus::Sent, 1)
            )
            .contains("tenancy")
        );
        assert!(
            refused("p.shipments.s1.updated", vec![0xff, 0xff])
                .contains("undecodable protobuf wmslink.dispatch.v1.ShipmentUpdated")
        );
        assert!(
            refused(
                "p.shipments.s1.updated",
                event("s1", "", ShippingStatus::Sent, 1)
            )
            .contains("shipment.order_no")
        );
        assert!(
            refused(
                "p.shipments.s1.updated",
                event("s1", "A,B", ShippingStatus::Sent, 1)
            )
            .contains("shipment.order_no")
        );
        assert!(
            refused(
                "p.shipments.s1.updated",
                event("s1", "A", ShippingStatus::Unspecified, 1)
            )
            .contains("shipping_status")
        );
        assert!(
            refused(
                "p.shipments.s1.updated",
                event("s1", "A", ShippingStatus::Sent, 0)
            )
            .contains("sequence")
        );
    }
}
