//! The dispatcher's JetStream consumers: order events (`orders.*.status_changed`,
//! `orders.*.updated`) and WMS observations (`wms.*.observed`).
//!
//! Per message, one transaction: record the message id as processed (a repeat does nothing),
//! store the snapshot if its revision is newer, apply the state machine, write the history and
//! the `ShipmentUpdated` outbox event; the platform consumer acks after the commit. Invalid
//! messages are permanent failures (dead-lettered with the reason); database and settings
//! trouble are transient (redelivered with a growing delay).

use std::sync::Arc;

use chrono::DateTime;
use prost::Message;
use wmslink_platform::consumer::{Delivery, HandleError, Handler};
use wmslink_platform::db;
use wmslink_platform::shop::ShopId;
use wmslink_proto::orders::v1::{Order, OrderStatusChanged, OrderUpdated};
use wmslink_proto::sync::v1::WmsObserved;

use crate::core::Core;
use crate::settings::ShopView;
use crate::snapshot;
use crate::state_machine::{
    Observation, ObservationPlan, OrderFacts, ShipmentFacts, Status, WmsFacts, plan_observation,
    plan_order_event,
};
use crate::store::{self, History, ShipmentRow};

/// Longest order number (the WMS's limit).
pub const MAX_ORDER_NO_LEN: usize = 64;
/// Longest status code accepted.
pub const MAX_STATUS_CODE_LEN: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderEventKind {
    StatusChanged,
    Updated,
}

pub struct OrderEvents {
    core: Arc<Core>,
    consumer: String,
    kind: OrderEventKind,
}

impl OrderEvents {
    pub fn new(core: Arc<Core>, consumer: String, kind: OrderEventKind) -> Self {
        Self {
            core,
            consumer,
            kind,
        }
    }
}

fn is_json(delivery: &Delivery<'_>) -> bool {
    delivery
        .header(wmslink_platform::outbox::CONTENT_TYPE)
        .or_else(|| delivery.header("content-type"))
        .is_some_and(|value| value.contains("json"))
}

fn decode<T: Message + Default>(
    delivery: &Delivery<'_>,
    full_name: &str,
) -> Result<T, HandleError> {
    if is_json(delivery) {
        wmslink_proto::json::decode(full_name, delivery.payload).map_err(|err| {
            HandleError::Permanent(format!("cannot decode {full_name} (JSON): {err}"))
        })
    } else {
        T::decode(delivery.payload)
            .map_err(|err| HandleError::Permanent(format!("cannot decode {full_name}: {err}")))
    }
}

/// The shop of the subject, which the payload must agree with.
fn subject_shop(
    core: &Core,
    delivery: &Delivery<'_>,
    payload_shop: &str,
) -> Result<ShopId, HandleError> {
    let token = core.subjects.shop_of(delivery.subject).ok_or_else(|| {
        HandleError::Permanent(format!("no shop in subject '{}'", delivery.subject))
    })?;
    let shop = ShopId::parse(token).map_err(|err| {
        HandleError::Permanent(format!("shop id '{token}' in the subject: {err}"))
    })?;
    if payload_shop != shop.as_str() {
        return Err(HandleError::Permanent(format!(
            "shop_id '{payload_shop}' of the payload differs from shop '{shop}' of the subject"
        )));
    }
    Ok(shop)
}

fn check_order_no(order_no: &str) -> Result<(), HandleError> {
    if order_no.is_empty() {
        return Err(HandleError::Permanent("order_no is empty".to_owned()));
    }
    if order_no.chars().count() > MAX_ORDER_NO_LEN {
        return Err(HandleError::Permanent(format!(
            "order_no is longer than {MAX_ORDER_NO_LEN} characters"
        )));
    }
    if order_no.chars().any(char::is_control) {
        return Err(HandleError::Permanent(
            "order_no contains control characters".to_owned(),
        ));
    }
    if order_no.contains(',') {
        // The WMS search lists order numbers comma-separated: such an order could never be
        // found again after a lost answer.
        return Err(HandleError::Permanent("order_no contains ','".to_owned()));
    }
    Ok(())
}

/// A validated order event.
#[derive(Debug)]
pub struct OrderEvent {
    pub shop: ShopId,
    pub order: Order,
    pub revision: i64,
}

pub fn parse_order_event(
    core: &Core,
    kind: OrderEventKind,
    delivery: &Delivery<'_>,
) -> Result<OrderEvent, HandleError> {
    let (order, event_revision) = match kind {
        OrderEventKind::StatusChanged => {
            let event: OrderStatusChanged =
                decode(delivery, "wmslink.orders.v1.OrderStatusChanged")?;
            (event.order, event.revision)
        }
        OrderEventKind::Updated => {
            let event: OrderUpdated = decode(delivery, "wmslink.orders.v1.OrderUpdated")?;
            (event.order, event.revision)
        }
    };
    let order = order.ok_or_else(|| HandleError::Permanent("the event has no order".to_owned()))?;
    let shop = subject_shop(core, delivery, &order.shop_id)?;
    check_order_no(&order.order_no)?;
    if order.status_code.is_empty() {
        return Err(HandleError::Permanent(
            "order.status_code is empty".to_owned(),
        ));
    }
    if order.status_code.chars().count() > MAX_STATUS_CODE_LEN {
        return Err(HandleError::Permanent(format!(
            "order.status_code is longer than {MAX_STATUS_CODE_LEN} characters"
        )));
    }
    let revision = match (order.revision, event_revision) {
        (0, event) => event,
        (order_revision, 0) => order_revision,
        (order_revision, event) if order_revision == event => order_revision,
        (order_revision, event) => {
            return Err(HandleError::Permanent(format!(
                "revision {event} of the event differs from revision {order_revision} of its order"
            )));
        }
    };
    if revision < 0 {
        return Err(HandleError::Permanent(format!(
            "revision {revision} is negative"
        )));
    }
    Ok(OrderEvent {
        shop,
        order,
        revision,
    })
}

impl Handler for OrderEvents {
    async fn handle(&self, delivery: &Delivery<'_>) -> Result<(), HandleError> {
        let event = parse_order_event(&self.core, self.kind, delivery)?;
        let view = self
            .core
            .settings
            .get(event.shop.as_str())
            .await
            .map_err(HandleError::transient)?
            .view();
        let wake =
            apply_order_event(&self.core, &self.consumer, &delivery.msg_id, &event, &view).await?;
        if wake {
            self.core.sender.wake(event.shop.as_str());
        }
        Ok(())
    }
}

fn facts_of(row: &ShipmentRow) -> ShipmentFacts {
    ShipmentFacts {
        status: row.status,
        revision: row.order_revision,
        cancel_pending: row.cancel_pending,
        sent_fingerprint: row.sent_fingerprint.clone(),
        edited_revision: row.edited_revision,
    }
}

/// Applies one order event in one transaction. Returns whether the sender has work.
pub async fn apply_order_event(
    core: &Core,
    consumer: &str,
    msg_id: &str,
    event: &OrderEvent,
    view: &ShopView,
) -> Result<bool, HandleError> {
    let shop = event.shop.as_str();
    let order = &event.order;
    let mut tx = core.pool.begin().await?;
    if !db::mark_processed(&mut tx, consumer, msg_id).await? {
        tx.commit().await?;
        return Ok(false);
    }
    let current = store::lock(&mut tx, shop, &order.order_no).await?;
    let facts = OrderFacts {
        revision: event.revision,
        status_code: order.status_code.clone(),
        fingerprint: snapshot::content_fingerprint(order),
    };
    let plan = plan_order_event(
        current.as_ref().map(facts_of).as_ref(),
        &facts,
        &view.policy,
    );
    let is_new = current.is_none();
    let mut row = current.unwrap_or_else(|| ShipmentRow::new(shop, &order.order_no));
    let mut history = Vec::new();
    let mut publish = is_new;

    if plan.store_snapshot {
        let mut stored = order.clone();
        stored.revision = event.revision;
        row.order_revision = event.revision;
        row.order_snapshot = snapshot::encode(&stored);
        row.order_status_code = order.status_code.clone();
        row.order_date = snapshot::order_date(order);
        row.content_fingerprint = facts.fingerprint.clone();
    }
    if let Some(note) = plan.note {
        history.push(History::note(note));
    }
    if let Some((input, _, reason)) = plan.change {
        let line = row.apply(input, reason).map_err(|refused| {
            HandleError::Permanent(format!("internal: state machine refused {refused}"))
        })?;
        history.push(line);
        publish = true;
    }
    if plan.set_cancel_pending {
        row.cancel_pending = true;
        publish = true;
    }
    if let Some(revision) = plan.flag_edited {
        row.edited_after_sending = true;
        row.edited_revision = Some(revision);
        history.push(History::note(format!(
            "edited in the cart after registration (revision {revision}); not sent to the WMS (R1)"
        )));
        publish = true;
    }
    if plan.store_snapshot || !history.is_empty() || publish {
        store::persist(&mut tx, &core.subjects, &mut row, &history, publish).await?;
    }
    tx.commit().await?;
    if publish {
        core.relay.wake();
    }
    Ok(matches!(
        row.status,
        Status::Queued | Status::CancelRequested
    ))
}

pub struct Observations {
    core: Arc<Core>,
    consumer: String,
}

impl Observations {
    pub fn new(core: Arc<Core>, consumer: String) -> Self {
        Self { core, consumer }
    }
}

impl Handler for Observations {
    async fn handle(&self, delivery: &Delivery<'_>) -> Result<(), HandleError> {
        let observed: WmsObserved = decode(delivery, "wmslink.sync.v1.WmsObserved")?;
        let shop = subject_shop(&self.core, delivery, &observed.shop_id)?;
        check_order_no(&observed.order_no)?;
        if observed.wms_order_id <= 0 {
            return Err(HandleError::Permanent(format!(
                "wms_order_id {} is not a WMS order id",
                observed.wms_order_id
            )));
        }
        let observation = Observation {
            wms_order_id: observed.wms_order_id,
            status_id: observed.status_id,
            status_name: observed.status_name.clone(),
            cancelled: observed.cancelled,
            shipped: observed.shipped,
            tracking_code: observed.tracking_code.clone(),
            shipping_date: observed.shipping_date.clone(),
            wms_updated_at: observed.wms_updated_at.as_ref().and_then(|ts| {
                DateTime::from_timestamp(ts.seconds, u32::try_from(ts.nanos).unwrap_or(0))
            }),
        };
        let wake = apply_observation(
            &self.core,
            &self.consumer,
            &delivery.msg_id,
            shop.as_str(),
            &observed.order_no,
            &observation,
        )
        .await?;
        if wake {
            self.core.sender.wake(shop.as_str());
        }
        Ok(())
    }
}

pub async fn apply_observation(
    core: &Core,
    consumer: &str,
    msg_id: &str,
    shop: &str,
    order_no: &str,
    obs: &Observation,
) -> Result<bool, HandleError> {
    let mut tx = core.pool.begin().await?;
    if !db::mark_processed(&mut tx, consumer, msg_id).await? {
        tx.commit().await?;
        return Ok(false);
    }
    let Some(mut row) = store::lock(&mut tx, shop, order_no).await? else {
        tracing::debug!(
            shop,
            order_no,
            "observation of an order the dispatcher does not know"
        );
        tx.commit().await?;
        return Ok(false);
    };
    let facts = WmsFacts {
        status: row.status,
        wms_order_id: row.wms_order_id,
        wms_updated_at: row.wms_updated_at,
    };
    let mut history = Vec::new();
    let mut publish = false;
    match plan_observation(&facts, obs) {
        ObservationPlan::Ignore(why) => history.push(History::note(why)),
        ObservationPlan::Apply {
            change,
            unrequested_cancel,
        } => {
            let before = (
                row.wms_status_id,
                row.wms_status_name.clone(),
                row.tracking_code.clone(),
                row.shipped_date.clone(),
            );
            row.wms_status_id = Some(obs.status_id);
            row.wms_status_name = Some(obs.status_name.clone());
            if obs.wms_updated_at.is_some() {
                row.wms_updated_at = obs.wms_updated_at;
            }
            if !obs.tracking_code.is_empty() {
                row.tracking_code = Some(obs.tracking_code.clone());
            }
            if !obs.shipping_date.is_empty() {
                row.shipped_date = Some(obs.shipping_date.clone());
            }
            let after = (
                row.wms_status_id,
                row.wms_status_name.clone(),
                row.tracking_code.clone(),
                row.shipped_date.clone(),
            );
            if before != after {
                publish = true;
                history.push(History::note(format!(
                    "WMS status {} {}{}",
                    obs.status_id,
                    obs.status_name,
                    if obs.tracking_code.is_empty() {
                        String::new()
                    } else {
                        format!(", tracking code {}", obs.tracking_code)
                    }
                )));
            }
            if let Some((input, _, reason)) = change {
                let line = row.apply(input, reason).map_err(|refused| {
                    HandleError::Permanent(format!("internal: state machine refused {refused}"))
                })?;
                history.push(line);
                publish = true;
            }
            if unrequested_cancel {
                row.cancelled_in_wms_unrequested = true;
                publish = true;
            }
        }
    }
    store::persist(&mut tx, &core.subjects, &mut row, &history, publish).await?;
    tx.commit().await?;
    if publish {
        core.relay.wake();
    }
    Ok(false)
}
