//! The durable JetStream consumers: cart orders in, shop settings (R6), and the shipment
//! projection. Each decodes with `Delivery::decode` and checks the subject's shop with
//! `Delivery::shop`; a message that can never be processed is dead-lettered with the reason by
//! the platform consumer and the messages behind it keep flowing.

use prost::Message;
use wmslink_platform::consumer::{BatchHandler, Delivery, HandleError, Handler};
use wmslink_platform::shop::ShopId;
use wmslink_platform::validation::FieldViolations;
use wmslink_proto::dispatch::v1::ShipmentUpdated;
use wmslink_proto::orders::v1::Order;
use wmslink_proto::settings::v1::SettingsChanged;
use wmslink_proto::sync::v1::WmsAnomaly;

use crate::domain::inbound::{check_anomaly, check_shipment_update};
use crate::domain::validation::check_order;
use crate::service::{Applied, CartMessage, Orders};
use crate::store::OrderAnomaly;

pub const CART_ORDERS_CONSUMER: &str = "order-events-cart-orders";
pub const SETTINGS_CONSUMER: &str = "order-events-settings";
pub const SHIPMENTS_CONSUMER: &str = "order-events-shipments";
pub const ANOMALIES_CONSUMER: &str = "order-events-anomalies";

fn invalid(what: &str, violations: &FieldViolations) -> HandleError {
    HandleError::Permanent(format!("invalid {what}: {}", violations.summary()))
}

/// `cart.orders.{shop}.upserted`: full order snapshots from the cart, taken in batches
/// (every message already delivered, up to `consumers.max_batch`) and stored in one
/// transaction per batch ([`Orders::upsert_batch`]); each message is still checked, refused,
/// acknowledged or dead-lettered on its own.
pub struct CartOrders {
    pub orders: Orders,
    pub max_message_bytes: usize,
}

impl CartOrders {
    /// Decodes and checks one message: the shop and the order, or why it can never be taken.
    fn check(&self, delivery: &Delivery<'_>) -> Result<(ShopId, Order), HandleError> {
        let order: Order = delivery.decode()?;
        let shop = delivery.shop(&order.shop_id, "order.shop_id")?;
        let mut violations = FieldViolations::new();
        // The larger of the message and the order as stored (JSON is usually the larger).
        check_order(
            "order",
            &order,
            delivery.payload.len().max(order.encoded_len()),
            self.max_message_bytes,
            &mut violations,
        );
        if !violations.is_empty() {
            return Err(invalid("order", &violations));
        }
        Ok((shop, order))
    }
}

impl BatchHandler for CartOrders {
    async fn handle_batch(&self, deliveries: &[Delivery<'_>]) -> Vec<Result<(), HandleError>> {
        let mut outcomes: Vec<Result<(), HandleError>> = Vec::with_capacity(deliveries.len());
        let mut checked = Vec::with_capacity(deliveries.len());
        let mut positions = Vec::with_capacity(deliveries.len());
        for (i, delivery) in deliveries.iter().enumerate() {
            match self.check(delivery) {
                Ok((shop, order)) => {
                    checked.push(CartMessage {
                        shop,
                        order,
                        msg_id: &delivery.dedup_id,
                        span: &delivery.span,
                    });
                    positions.push(i);
                    outcomes.push(Ok(()));
                }
                Err(refused) => outcomes.push(Err(refused)),
            }
        }
        let results = self
            .orders
            .upsert_batch(CART_ORDERS_CONSUMER, &checked)
            .await;
        for ((i, result), message) in positions.into_iter().zip(results).zip(&checked) {
            match result {
                Ok(Applied::AlreadyProcessed) => {}
                Ok(applied) => {
                    let order = &message.order;
                    tracing::info!(parent: message.span, shop = %message.shop, order_no = %order.order_no, revision = order.revision, ?applied, "cart order");
                }
                Err(err) => outcomes[i] = Err(err),
            }
        }
        outcomes
    }
}

/// `settings.{shop}.changed`: keeps the known shops (R6).
pub struct Settings {
    pub orders: Orders,
}

impl Handler for Settings {
    async fn handle(&self, delivery: &Delivery<'_>) -> Result<(), HandleError> {
        let event: SettingsChanged = delivery.decode()?;
        delivery.shop(&event.shop_id, "shop_id")?;
        self.orders
            .apply_settings(&event, SETTINGS_CONSUMER, &delivery.dedup_id)
            .await
            .map_err(|err| err.to_handle_error())?;
        Ok(())
    }
}

/// `shipments.{shop}.updated`: the projection of shipping and WMS status per order, taken in
/// batches (every message already delivered, up to `consumers.max_batch`) and applied in one
/// transaction per batch ([`Orders::apply_shipments`]); each message is still checked and
/// refused or dead-lettered on its own.
pub struct Shipments {
    pub orders: Orders,
}

impl Shipments {
    fn check(delivery: &Delivery<'_>) -> Result<ShipmentUpdated, HandleError> {
        let update: ShipmentUpdated = delivery.decode()?;
        let payload_shop = update
            .shipment
            .as_ref()
            .map(|shipment| shipment.shop_id.as_str())
            .unwrap_or_default();
        delivery.shop(payload_shop, "shipment.shop_id")?;
        check_shipment_update(&update)
            .map_err(|violations| invalid("shipment update", &violations))?;
        Ok(update)
    }
}

impl BatchHandler for Shipments {
    async fn handle_batch(&self, deliveries: &[Delivery<'_>]) -> Vec<Result<(), HandleError>> {
        let mut outcomes: Vec<Result<(), HandleError>> = Vec::with_capacity(deliveries.len());
        let mut checked = Vec::with_capacity(deliveries.len());
        let mut positions = Vec::with_capacity(deliveries.len());
        for (i, delivery) in deliveries.iter().enumerate() {
            match Self::check(delivery) {
                Ok(update) => {
                    checked.push((update, delivery.dedup_id.as_str()));
                    positions.push(i);
                    outcomes.push(Ok(()));
                }
                Err(refused) => outcomes.push(Err(refused)),
            }
        }
        let batch: Vec<(&ShipmentUpdated, &str)> =
            checked.iter().map(|(update, id)| (update, *id)).collect();
        let results = self
            .orders
            .apply_shipments(SHIPMENTS_CONSUMER, &batch)
            .await;
        for (i, result) in positions.into_iter().zip(results) {
            if let Err(err) = result {
                outcomes[i] = Err(err);
            }
        }
        outcomes
    }
}

/// `wms.{shop}.anomaly`: R5 anomalies status-sync recorded, shown on their orders.
pub struct Anomalies {
    pub orders: Orders,
}

impl Handler for Anomalies {
    async fn handle(&self, delivery: &Delivery<'_>) -> Result<(), HandleError> {
        let anomaly: WmsAnomaly = delivery.decode()?;
        delivery.shop(&anomaly.shop_id, "shop_id")?;
        let kind = check_anomaly(&anomaly).map_err(|violations| invalid("anomaly", &violations))?;
        let detected_at = anomaly
            .detected_at
            .as_ref()
            .and_then(crate::domain::validation::to_datetime)
            .unwrap_or_else(chrono::Utc::now);
        self.orders
            .apply_anomaly(
                &OrderAnomaly {
                    shop_id: &anomaly.shop_id,
                    order_no: &anomaly.order_no,
                    kind,
                    wms_order_id: anomaly.wms_order_id,
                    detail: &anomaly.detail,
                    detected_at,
                },
                ANOMALIES_CONSUMER,
                &delivery.dedup_id,
            )
            .await
            .map_err(|err| err.to_handle_error())?;
        Ok(())
    }
}
