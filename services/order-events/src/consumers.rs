//! The durable JetStream consumers: cart orders in, shop settings (R6), and the shipment
//! projection. A message that can never be processed is dead-lettered with the reason by the
//! platform consumer and the messages behind it keep flowing.

use wmslink_platform::consumer::{Delivery, HandleError, Handler};
use wmslink_platform::nats::Subjects;
use wmslink_platform::shop::ShopId;
use wmslink_platform::validation::FieldViolations;
use wmslink_proto::dispatch::v1::ShipmentUpdated;
use wmslink_proto::orders::v1::Order;
use wmslink_proto::settings::v1::SettingsChanged;

use crate::domain::inbound::{check_shipment_update, decode, encoding_of};
use crate::domain::validation::check_order;
use crate::service::{Applied, Orders, Source};

pub const CART_ORDERS_CONSUMER: &str = "order-events-cart-orders";
pub const SETTINGS_CONSUMER: &str = "order-events-settings";
pub const SHIPMENTS_CONSUMER: &str = "order-events-shipments";

const ORDER_TYPE: &str = "wmslink.orders.v1.Order";
const SETTINGS_TYPE: &str = "wmslink.settings.v1.SettingsChanged";
const SHIPMENT_TYPE: &str = "wmslink.dispatch.v1.ShipmentUpdated";

/// The `Content-Type` header, whatever the case of its name.
fn content_type<'a>(delivery: &'a Delivery<'_>) -> Option<&'a str> {
    let headers = delivery.headers?;
    headers.iter().find_map(|(name, values)| {
        let name: &str = name.as_ref();
        if name.eq_ignore_ascii_case("content-type") {
            values.first().map(|value| value.as_str())
        } else {
            None
        }
    })
}

/// Size check, then decoding by content type.
fn decode_payload<T: prost::Message + Default>(
    delivery: &Delivery<'_>,
    full_name: &str,
    max_bytes: usize,
) -> Result<T, HandleError> {
    if delivery.payload.len() > max_bytes {
        return Err(HandleError::Permanent(format!(
            "message too big: {} bytes; at most {max_bytes} are accepted",
            delivery.payload.len()
        )));
    }
    let encoding = encoding_of(content_type(delivery)).map_err(HandleError::Permanent)?;
    decode(full_name, delivery.payload, encoding).map_err(HandleError::Permanent)
}

/// The shop named by the subject must be the shop named in the payload (tenancy).
fn subject_shop(
    subjects: &Subjects,
    delivery: &Delivery<'_>,
    payload_shop: &str,
    field: &str,
) -> Result<ShopId, HandleError> {
    let token = subjects.shop_of(delivery.subject).unwrap_or_default();
    if token != payload_shop {
        return Err(HandleError::Permanent(format!(
            "tenancy: the subject {} is for shop '{token}' but {field} is '{payload_shop}'",
            delivery.subject
        )));
    }
    ShopId::parse(token).map_err(|err| {
        HandleError::Permanent(format!("invalid shop id '{token}' in the subject: {err}"))
    })
}

fn invalid(what: &str, violations: &FieldViolations) -> HandleError {
    HandleError::Permanent(format!("invalid {what}: {}", violations.summary()))
}

/// `cart.orders.{shop}.upserted`: full order snapshots from the cart.
pub struct CartOrders {
    pub orders: Orders,
    pub subjects: Subjects,
    pub max_message_bytes: usize,
}

impl Handler for CartOrders {
    async fn handle(&self, delivery: &Delivery<'_>) -> Result<(), HandleError> {
        let order: Order = decode_payload(delivery, ORDER_TYPE, self.max_message_bytes)?;
        let shop = subject_shop(&self.subjects, delivery, &order.shop_id, "order.shop_id")?;
        let mut violations = FieldViolations::new();
        check_order(
            "order",
            &order,
            delivery.payload.len(),
            self.max_message_bytes,
            &mut violations,
        );
        if !violations.is_empty() {
            return Err(invalid("order", &violations));
        }
        let source = Source::Nats {
            consumer: CART_ORDERS_CONSUMER,
            msg_id: &delivery.msg_id,
        };
        let (applied, _) = self
            .orders
            .upsert(&shop, &order, source)
            .await
            .map_err(|err| err.to_handle_error())?;
        if applied != Applied::AlreadyProcessed {
            tracing::info!(shop = %shop, order_no = %order.order_no, revision = order.revision, ?applied, "cart order");
        }
        Ok(())
    }
}

/// `settings.{shop}.changed`: keeps the known shops (R6).
pub struct Settings {
    pub orders: Orders,
    pub subjects: Subjects,
    pub max_message_bytes: usize,
}

impl Handler for Settings {
    async fn handle(&self, delivery: &Delivery<'_>) -> Result<(), HandleError> {
        let event: SettingsChanged =
            decode_payload(delivery, SETTINGS_TYPE, self.max_message_bytes)?;
        subject_shop(&self.subjects, delivery, &event.shop_id, "shop_id")?;
        self.orders
            .apply_settings(&event, SETTINGS_CONSUMER, &delivery.msg_id)
            .await
            .map_err(|err| err.to_handle_error())?;
        Ok(())
    }
}

/// `shipments.{shop}.updated`: the projection of shipping and WMS status per order.
pub struct Shipments {
    pub orders: Orders,
    pub subjects: Subjects,
    pub max_message_bytes: usize,
}

impl Handler for Shipments {
    async fn handle(&self, delivery: &Delivery<'_>) -> Result<(), HandleError> {
        let update: ShipmentUpdated =
            decode_payload(delivery, SHIPMENT_TYPE, self.max_message_bytes)?;
        let payload_shop = update
            .shipment
            .as_ref()
            .map(|shipment| shipment.shop_id.as_str())
            .unwrap_or_default();
        subject_shop(&self.subjects, delivery, payload_shop, "shipment.shop_id")?;
        check_shipment_update(&update)
            .map_err(|violations| invalid("shipment update", &violations))?;
        self.orders
            .apply_shipment(&update, SHIPMENTS_CONSUMER, &delivery.msg_id)
            .await
            .map_err(|err| err.to_handle_error())?;
        Ok(())
    }
}
