//! The dispatcher's JetStream consumers: order events (`orders.*.status_changed`,
//! `orders.*.updated`) and WMS observations (`wms.*.observed`).
//!
//! Per message, one transaction: record the message id as processed (a repeat does nothing),
//! store the snapshot if its revision is newer, apply the state machine, write the history and
//! the `ShipmentUpdated` outbox event; the platform consumer acks after the commit. Invalid
//! messages are permanent failures (dead-lettered with the reason); the database or the
//! settings service out of reach is an outage (`HandleError::Unavailable`: redelivered with a
//! capped back-off for as long as it takes, never dead-lettered). A status code the cached
//! order-status catalog does not know makes the settings be fetched again; still unknown, the
//! event waits like an outage (the catalog is behind the cart), never guessed.

use std::sync::Arc;

use wmslink_platform::consumer::{Delivery, HandleError, Handler};
use wmslink_platform::shop::{OrderNo, ShopId};
use wmslink_platform::{db, telemetry};
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

/// Durable consumer names (also the `processed_messages.consumer` of each).
pub const STATUS_CHANGED_CONSUMER: &str = "shipment-dispatcher-status-changed";
pub const UPDATED_CONSUMER: &str = "shipment-dispatcher-updated";
pub const OBSERVED_CONSUMER: &str = "shipment-dispatcher-observed";

/// Longest status code accepted.
pub const MAX_STATUS_CODE_LEN: usize = 64;

/// The two order events: the snapshot, and the revision the event names.
pub trait OrderEventPayload:
    prost::Message + prost::Name + Default + Send + Sync + 'static
{
    fn into_parts(self) -> (Option<Order>, i64);
}

impl OrderEventPayload for OrderStatusChanged {
    fn into_parts(self) -> (Option<Order>, i64) {
        (self.order, self.revision)
    }
}

impl OrderEventPayload for OrderUpdated {
    fn into_parts(self) -> (Option<Order>, i64) {
        (self.order, self.revision)
    }
}

/// `orders.*.status_changed` (`E` = [`OrderStatusChanged`]) or `orders.*.updated`
/// (`E` = [`OrderUpdated`]): the consumer is chosen by its payload type.
pub struct OrderEvents<E> {
    core: Arc<Core>,
    consumer: &'static str,
    payload: std::marker::PhantomData<fn() -> E>,
}

impl OrderEvents<OrderStatusChanged> {
    pub fn status_changed(core: Arc<Core>) -> Self {
        Self {
            core,
            consumer: STATUS_CHANGED_CONSUMER,
            payload: std::marker::PhantomData,
        }
    }
}

impl OrderEvents<OrderUpdated> {
    pub fn updated(core: Arc<Core>) -> Self {
        Self {
            core,
            consumer: UPDATED_CONSUMER,
            payload: std::marker::PhantomData,
        }
    }
}

/// A validated order event.
#[derive(Debug)]
pub struct OrderEvent {
    pub shop: ShopId,
    pub order: Order,
    pub revision: i64,
}

/// Decodes and checks an order event; every refusal is permanent, with the reason.
pub fn parse_order_event<E: OrderEventPayload>(
    delivery: &Delivery<'_>,
) -> Result<OrderEvent, HandleError> {
    let (order, event_revision) = delivery.decode::<E>()?.into_parts();
    let order = order.ok_or_else(|| HandleError::Permanent("the event has no order".to_owned()))?;
    let shop = delivery.shop(&order.shop_id, "order.shop_id")?;
    OrderNo::check(&order.order_no).map_err(|err| HandleError::invalid("order.order_no", err))?;
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

impl<E: OrderEventPayload> Handler for OrderEvents<E> {
    async fn handle(&self, delivery: &Delivery<'_>) -> Result<(), HandleError> {
        let event = parse_order_event::<E>(delivery)?;
        let shop = event.shop.as_str();
        let settings = &self.core.settings;
        let mut view = settings
            .get(shop)
            .await
            .map_err(HandleError::unavailable)?
            .view();
        let code = event.order.status_code.as_str();
        if view.policy.is_unknown_status(code) {
            // The cached catalog may be older than the cart's: fetch it again.
            view = settings
                .refresh(shop)
                .await
                .map_err(HandleError::unavailable)?
                .view();
            if view.policy.is_unknown_status(code) {
                return Err(HandleError::Unavailable(format!(
                    "order status '{code}' is not in the shop's order-status catalog: waiting for the catalog to know it"
                )));
            }
        }
        let wake =
            apply_order_event(&self.core, self.consumer, &delivery.dedup_id, &event, &view).await?;
        if wake {
            self.core.sender.wake(event.shop.as_str());
        }
        Ok(())
    }
}

pub(crate) fn facts_of(row: &ShipmentRow) -> ShipmentFacts {
    ShipmentFacts {
        status: row.status,
        revision: row.order_revision,
        cancel_pending: row.cancel_pending,
        sent_fingerprint: row.sent_fingerprint.clone(),
        edited_revision: row.edited_revision,
        possibly_in_wms: row.possibly_in_wms,
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
        row.trace_context = telemetry::current_traceparent();
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
    if plan.cancel_not_sent && !row.cancel_not_sent {
        row.cancel_not_sent = true;
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

/// `wms.*.observed`: what status-sync saw in the WMS.
pub struct Observations {
    core: Arc<Core>,
}

impl Observations {
    pub fn new(core: Arc<Core>) -> Self {
        Self { core }
    }
}

impl Handler for Observations {
    async fn handle(&self, delivery: &Delivery<'_>) -> Result<(), HandleError> {
        let observed: WmsObserved = delivery.decode()?;
        let shop = delivery.shop(&observed.shop_id, "shop_id")?;
        OrderNo::check(&observed.order_no).map_err(|err| HandleError::invalid("order_no", err))?;
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
            wms_updated_at: observed
                .wms_updated_at
                .as_ref()
                .and_then(wmslink_proto::from_timestamp),
        };
        let wake = apply_observation(
            &self.core,
            OBSERVED_CONSUMER,
            &delivery.dedup_id,
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
