//! The durable JetStream consumer: keeps the watch list from the dispatcher's
//! `shipments.{shop}.updated` events, newer `sequence` only. Taken in batches (every message
//! already delivered, up to `consumers.max_batch`): one transaction and one commit per batch,
//! the processed marks in one statement, the updates in stream order; a bad message is refused
//! alone, and a database error falls back to one transaction per message.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use tracing::Instrument as _;
use wmslink_platform::consumer::{BatchHandler, Delivery, HandleError};
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

/// A checked update of a batch, with what it came with.
struct Batched {
    /// Its place in the batch's deliveries.
    index: usize,
    update: CheckedUpdate,
    /// The W3C trace context of its message (the order's trace), if any.
    traceparent: Option<String>,
}

impl Batched {
    fn change(&self) -> ShipmentChange<'_> {
        let update = &self.update;
        ShipmentChange {
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
            traceparent: self.traceparent.as_deref(),
        }
    }
}

fn log_applied(update: &CheckedUpdate, applied: bool) {
    tracing::debug!(
        shop = %update.shop_id,
        order_no = %update.order_no,
        status = update.shipping_status,
        sequence = update.sequence,
        applied,
        "shipment update"
    );
}

/// Applies one update inside the caller's transaction (its message already marked).
async fn apply_in(conn: &mut PgConnection, batched: &Batched) -> Result<bool, sqlx::Error> {
    Store::upsert_shop(&mut *conn, batched.update.shop_id.as_str()).await?;
    Store::apply_shipment(conn, &batched.change()).await
}

impl WatchListHandler {
    /// The whole batch in one transaction with one commit: the processed marks in one
    /// statement, then the updates ordered by (shop, order) — stream order within each order,
    /// and the same lock order in every batch, so two replicas' batches do not deadlock.
    async fn apply_together(
        &self,
        deliveries: &[Delivery<'_>],
        batch: &[Batched],
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let ids: Vec<&str> = batch
            .iter()
            .map(|b| deliveries[b.index].dedup_id.as_str())
            .collect();
        let mut fresh = db::mark_processed_many(&mut tx, CONSUMER, &ids).await?;
        // A message id twice in the batch (a redelivery) is applied once.
        let mut todo: Vec<&Batched> = batch
            .iter()
            .filter(|b| fresh.remove(deliveries[b.index].dedup_id.as_str()))
            .collect();
        // Stable: an order's updates keep their stream order.
        todo.sort_by(|a, b| {
            (a.update.shop_id.as_str(), a.update.order_no.as_str())
                .cmp(&(b.update.shop_id.as_str(), b.update.order_no.as_str()))
        });
        let mut applied = Vec::with_capacity(todo.len());
        let mut shop_known: Option<&str> = None;
        for batched in todo {
            // Sorted by shop: each shop is made known once per batch.
            let shop = batched.update.shop_id.as_str();
            if shop_known != Some(shop) {
                Store::upsert_shop(&mut tx, shop).await?;
                shop_known = Some(shop);
            }
            let change = batched.change();
            applied.push((batched, Store::apply_shipment(&mut tx, &change).await?));
        }
        tx.commit().await?;
        for (batched, applied) in applied {
            let _entered = deliveries[batched.index].span.enter();
            log_applied(&batched.update, applied);
        }
        Ok(())
    }

    /// One update in a transaction of its own.
    async fn apply_one(&self, msg_id: &str, batched: &Batched) -> Result<(), HandleError> {
        let mut tx = self.pool.begin().await?;
        if !db::mark_processed(&mut tx, CONSUMER, msg_id).await? {
            return Ok(());
        }
        let applied = apply_in(&mut tx, batched).await?;
        tx.commit().await?;
        log_applied(&batched.update, applied);
        Ok(())
    }
}

impl BatchHandler for WatchListHandler {
    async fn handle_batch(&self, deliveries: &[Delivery<'_>]) -> Vec<Result<(), HandleError>> {
        let received_at = Utc::now();
        let mut outcomes: Vec<Result<(), HandleError>> = Vec::with_capacity(deliveries.len());
        let mut batch = Vec::with_capacity(deliveries.len());
        for (index, delivery) in deliveries.iter().enumerate() {
            match check(delivery, received_at) {
                Ok(update) => {
                    batch.push(Batched {
                        index,
                        update,
                        traceparent: delivery.span.in_scope(telemetry::current_traceparent),
                    });
                    outcomes.push(Ok(()));
                }
                Err(refused) => outcomes.push(Err(refused)),
            }
        }
        if batch.len() > 1 {
            match self.apply_together(deliveries, &batch).await {
                Ok(()) => return outcomes,
                Err(err) => {
                    let failure = HandleError::from(err);
                    if let HandleError::Unavailable(_) = failure {
                        for batched in &batch {
                            outcomes[batched.index] = Err(failure.clone());
                        }
                        return outcomes;
                    }
                    tracing::warn!(error = %failure, messages = batch.len(), "shipment batch failed; applying its updates one by one");
                }
            }
        }
        for batched in &batch {
            let delivery = &deliveries[batched.index];
            if let Err(err) = self
                .apply_one(&delivery.dedup_id, batched)
                .instrument(delivery.span.clone())
                .await
            {
                outcomes[batched.index] = Err(err);
            }
        }
        outcomes
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
