//! The events order-events publishes (through the outbox), built from a stored change.

use chrono::Utc;
use wmslink_platform::nats::Subjects;
use wmslink_platform::outbox::{OutboxMessage, new_event_id};
use wmslink_platform::shop::ShopId;
use wmslink_proto::orders::v1::{
    Order, OrderStatusChangeRejected, OrderStatusChanged, OrderUpdated,
};

/// Header naming the order an event is about (lets tools filter without decoding).
pub const ORDER_NO_HEADER: &str = "Wmslink-Order-No";
/// Header naming the event type (`wmslink.orders.v1.OrderStatusChanged`, ...).
pub const EVENT_TYPE_HEADER: &str = "Wmslink-Event-Type";

fn now() -> prost_types::Timestamp {
    wmslink_proto::to_timestamp(Utc::now())
}

fn message(
    subject: String,
    event_id: String,
    event_type: &str,
    order_no: &str,
    payload: &impl prost::Message,
) -> OutboxMessage {
    let mut message = OutboxMessage::protobuf(subject, event_id, payload);
    message
        .headers
        .insert(EVENT_TYPE_HEADER.to_owned(), event_type.to_owned());
    message
        .headers
        .insert(ORDER_NO_HEADER.to_owned(), order_no.to_owned());
    message
}

/// `orders.{shop}.status_changed`; `previous` is "" for the first snapshot of an order.
pub fn status_changed(
    subjects: &Subjects,
    shop: &ShopId,
    order: &Order,
    previous: &str,
    wmslink_change: i32,
) -> OutboxMessage {
    let event_id = new_event_id();
    let event = OrderStatusChanged {
        event_id: event_id.clone(),
        order: Some(order.clone()),
        previous_status_code: previous.to_owned(),
        new_status_code: order.status_code.clone(),
        revision: order.revision,
        occurred_at: Some(now()),
        wmslink_change,
    };
    message(
        subjects.order_status_changed(shop),
        event_id,
        "wmslink.orders.v1.OrderStatusChanged",
        &order.order_no,
        &event,
    )
}

/// `orders.{shop}.updated`: the content changed, the status did not.
pub fn updated(subjects: &Subjects, shop: &ShopId, order: &Order) -> OutboxMessage {
    let event_id = new_event_id();
    let event = OrderUpdated {
        event_id: event_id.clone(),
        order: Some(order.clone()),
        revision: order.revision,
        occurred_at: Some(now()),
    };
    message(
        subjects.order_updated(shop),
        event_id,
        "wmslink.orders.v1.OrderUpdated",
        &order.order_no,
        &event,
    )
}

/// `orders.{shop}.status_change_rejected` (R4 on the NATS path).
pub fn status_change_rejected(
    subjects: &Subjects,
    shop: &ShopId,
    event_id: String,
    requested: &Order,
    current_status: &str,
    wms_status_id: i32,
    reason: &str,
) -> OutboxMessage {
    let event = OrderStatusChangeRejected {
        event_id: event_id.clone(),
        shop_id: requested.shop_id.clone(),
        order_no: requested.order_no.clone(),
        revision: requested.revision,
        requested_status_code: requested.status_code.clone(),
        current_status_code: current_status.to_owned(),
        reason: reason.to_owned(),
        wms_status_id,
        occurred_at: Some(now()),
    };
    message(
        subjects.order_status_change_rejected(shop),
        event_id,
        "wmslink.orders.v1.OrderStatusChangeRejected",
        &requested.order_no,
        &event,
    )
}
