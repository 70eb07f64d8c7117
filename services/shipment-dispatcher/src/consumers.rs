//! The dispatcher's JetStream consumers: order events (`orders.*.status_changed`,
//! `orders.*.updated`) and WMS observations (`wms.*.observed`).
//!
//! Per message: record the message id as processed (a repeat does nothing), store the snapshot
//! if its revision is newer, apply the state machine, write the history and the
//! `ShipmentUpdated` outbox event, all in the transaction; the platform consumer acks after the
//! commit. Order events already delivered together are applied in one transaction with one
//! commit ([`apply_prepared`]; each order's events in stream order), and one that fails is
//! refused alone; so are WMS observations. Invalid
//! messages are permanent failures (dead-lettered with the reason); the database or the
//! settings service out of reach is an outage (`HandleError::Unavailable`: redelivered with a
//! capped back-off for as long as it takes, never dead-lettered). A status code the cached
//! order-status catalog does not know makes the settings be fetched again; still unknown, the
//! event waits like an outage (the catalog is behind the cart), never guessed.

use std::sync::Arc;

use tracing::Instrument as _;
use wmslink_platform::consumer::{BatchHandler, Delivery, HandleError};
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
use crate::store::{Appends, History, Locked, ShipmentRow};

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

impl<E: OrderEventPayload> OrderEvents<E> {
    /// Decodes and checks one event and finds its shop's view (the order-status catalog
    /// fetched again when it does not know the event's status).
    async fn prepare(
        &self,
        delivery: &Delivery<'_>,
    ) -> Result<(OrderEvent, Arc<ShopView>), HandleError> {
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
        Ok((event, view))
    }
}

/// Order events are taken in batches (every message already delivered, up to
/// `consumers.max_batch`): one transaction and one commit per batch ([`apply_prepared`]),
/// each event still refused, acknowledged or dead-lettered on its own.
impl<E: OrderEventPayload> BatchHandler for OrderEvents<E> {
    async fn handle_batch(&self, deliveries: &[Delivery<'_>]) -> Vec<Result<(), HandleError>> {
        let mut outcomes: Vec<Result<(), HandleError>> = Vec::with_capacity(deliveries.len());
        let mut ready = Vec::with_capacity(deliveries.len());
        for (i, delivery) in deliveries.iter().enumerate() {
            match self
                .prepare(delivery)
                .instrument(delivery.span.clone())
                .await
            {
                Ok((event, view)) => {
                    ready.push(Prepared {
                        index: i,
                        event,
                        view,
                    });
                    outcomes.push(Ok(()));
                }
                Err(refused) => outcomes.push(Err(refused)),
            }
        }
        apply_prepared(&self.core, self.consumer, deliveries, &ready, &mut outcomes).await;
        outcomes
    }
}

/// A checked order event of a batch, with its shop's view.
pub struct Prepared {
    /// Its place in the batch's deliveries.
    pub index: usize,
    pub event: OrderEvent,
    pub view: Arc<ShopView>,
}

/// Why one event of a batch was not applied.
enum ApplyError {
    /// The transaction is lost.
    Db(sqlx::Error),
    /// This event only.
    Refused(HandleError),
}

impl From<sqlx::Error> for ApplyError {
    fn from(err: sqlx::Error) -> Self {
        Self::Db(err)
    }
}

/// One checked message of a batch: an order event ([`Prepared`]) or a WMS observation
/// ([`PreparedObservation`]). Both go through the same frame ([`apply_prepared`]); they differ
/// only in what one message does to its shipment.
trait BatchItem: Send + Sync {
    /// Its place in the batch's deliveries.
    fn index(&self) -> usize;
    /// Its shipment, `(shop, order_no)`: a batch locks shipments in this order.
    fn key(&self) -> (&str, &str);
    /// Applies it inside the caller's transaction, its message already marked processed, its
    /// shipment taken from `locked` (and put back once saved), its history and event left in
    /// `appends`: returns whether the sender has work and whether an event was enqueued.
    fn apply_in<'a, 's>(
        &'a self,
        tx: &'a mut sqlx::PgConnection,
        locked: &'a mut Locked,
        appends: &'a mut Appends<'s>,
    ) -> impl Future<Output = Result<(bool, bool), ApplyError>> + Send + 'a;
}

impl BatchItem for Prepared {
    fn index(&self) -> usize {
        self.index
    }

    fn key(&self) -> (&str, &str) {
        (self.event.shop.as_str(), self.event.order.order_no.as_str())
    }

    fn apply_in<'a, 's>(
        &'a self,
        tx: &'a mut sqlx::PgConnection,
        locked: &'a mut Locked,
        appends: &'a mut Appends<'s>,
    ) -> impl Future<Output = Result<(bool, bool), ApplyError>> + Send + 'a {
        apply_in(tx, locked, appends, &self.event, &self.view, None)
    }
}

/// Applies the checked messages of a batch and records each one's failure in `outcomes`: all
/// together in one transaction when there are several ([`apply_batch`]); one by one, each in
/// a transaction of its own, when that transaction failed for another reason than an outage
/// (an outage makes every message wait). Wakes the sender of every shop with work.
async fn apply_prepared<T: BatchItem>(
    core: &Core,
    consumer: &str,
    deliveries: &[Delivery<'_>],
    ready: &[T],
    outcomes: &mut [Result<(), HandleError>],
) {
    if ready.len() > 1 {
        match apply_batch(core, consumer, deliveries, ready).await {
            Ok(results) => {
                for (prepared, result) in ready.iter().zip(results) {
                    match result {
                        Ok(true) => core.sender.wake(prepared.key().0),
                        Ok(false) => {}
                        Err(err) => outcomes[prepared.index()] = Err(err),
                    }
                }
                return;
            }
            Err(HandleError::Unavailable(reason)) => {
                for prepared in ready {
                    outcomes[prepared.index()] = Err(HandleError::Unavailable(reason.clone()));
                }
                return;
            }
            Err(err) => {
                tracing::warn!(consumer, error = %err, messages = ready.len(), "batch failed; applying its messages one by one");
            }
        }
    }
    for prepared in ready {
        let delivery = &deliveries[prepared.index()];
        let applied = apply_alone(core, consumer, &delivery.dedup_id, prepared)
            .instrument(delivery.span.clone())
            .await;
        match applied {
            Ok(true) => core.sender.wake(prepared.key().0),
            Ok(false) => {}
            Err(err) => outcomes[prepared.index()] = Err(err),
        }
    }
}

/// Applies a batch in one transaction with one commit: the processed marks in one statement,
/// the shipments locked in one (in key order, so two batches never deadlock), then each
/// message as [`apply_alone`] does, each order's messages in stream order, and the history and
/// events of all of them inserted together. A message refused
/// by the state machine gets its own error and its processed mark back. A database error loses
/// the transaction: the caller then applies the messages one by one. Returns, per message,
/// whether the sender has work.
async fn apply_batch<T: BatchItem>(
    core: &Core,
    consumer: &str,
    deliveries: &[Delivery<'_>],
    batch: &[T],
) -> Result<Vec<Result<bool, HandleError>>, HandleError> {
    let mut results: Vec<Option<Result<bool, HandleError>>> = batch.iter().map(|_| None).collect();
    let mut tx = core.pool.begin().await?;
    let msg_id = |k: usize| deliveries[batch[k].index()].dedup_id.as_str();
    let ids: Vec<&str> = (0..batch.len()).map(msg_id).collect();
    let mut fresh = db::mark_processed_many(&mut tx, consumer, &ids).await?;
    let mut marked = Vec::with_capacity(batch.len());
    for (k, result) in results.iter_mut().enumerate() {
        if fresh.remove(msg_id(k)) {
            marked.push(k);
        } else {
            *result = Some(Ok(false));
        }
    }
    let mut in_key_order = marked.clone();
    // Stable: an order's messages keep their stream order.
    in_key_order.sort_by(|&a, &b| batch[a].key().cmp(&batch[b].key()));
    let mut keys: Vec<(&str, &str)> = in_key_order.iter().map(|&k| batch[k].key()).collect();
    keys.dedup();
    let mut locked = Locked::lock_all(&mut tx, &keys).await?;
    let mut appends = Appends::new(&core.subjects);
    let mut publish_any = false;
    for k in in_key_order {
        let applied = batch[k]
            .apply_in(&mut tx, &mut locked, &mut appends)
            .instrument(deliveries[batch[k].index()].span.clone())
            .await;
        match applied {
            Ok((wake, publish)) => {
                publish_any |= publish;
                results[k] = Some(Ok(wake));
            }
            Err(ApplyError::Db(err)) => return Err(err.into()),
            Err(ApplyError::Refused(err)) => results[k] = Some(Err(err)),
        }
    }
    // As if each refused message had had a transaction of its own that rolled back.
    let refused: Vec<&str> = marked
        .iter()
        .filter(|&&k| matches!(results[k], Some(Err(_))))
        .map(|&k| msg_id(k))
        .collect();
    db::unmark_processed(&mut tx, consumer, &refused).await?;
    appends.commit(tx).await?;
    if publish_any {
        core.relay.wake();
    }
    Ok(results
        .into_iter()
        .map(|result| result.unwrap_or(Ok(false)))
        .collect())
}

/// Applies one message in a transaction of its own. Returns whether the sender has work.
async fn apply_alone<T: BatchItem>(
    core: &Core,
    consumer: &str,
    msg_id: &str,
    item: &T,
) -> Result<bool, HandleError> {
    let mut tx = core.pool.begin().await?;
    if !db::mark_processed(&mut tx, consumer, msg_id).await? {
        tx.commit().await?;
        return Ok(false);
    }
    let mut appends = Appends::new(&core.subjects);
    let applied = item
        .apply_in(&mut tx, &mut Locked::default(), &mut appends)
        .await;
    commit_applied(tx, core, applied, appends).await
}

/// Commits what one message did in its own transaction (or drops the transaction when it was
/// refused) and wakes the outbox relay when an event was enqueued. Returns whether the sender
/// has work.
async fn commit_applied(
    tx: sqlx::Transaction<'_, sqlx::Postgres>,
    core: &Core,
    applied: Result<(bool, bool), ApplyError>,
    appends: Appends<'_>,
) -> Result<bool, HandleError> {
    let (wake, publish) = match applied {
        Ok(done) => done,
        Err(ApplyError::Db(err)) => return Err(err.into()),
        Err(ApplyError::Refused(err)) => return Err(err),
    };
    appends.commit(tx).await?;
    if publish {
        core.relay.wake();
    }
    Ok(wake)
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

/// The rebuild sweep ([`crate::sender::rebuild`]): an order as order-events holds it, applied
/// in a transaction of its own exactly as its lost order event would have been (there is no
/// message to mark processed), with `origin` as the first history line of what it changes.
/// Returns whether the sender has work.
pub async fn apply_rebuilt(
    core: &Core,
    event: &OrderEvent,
    view: &ShopView,
    origin: &str,
) -> Result<bool, HandleError> {
    let mut tx = core.pool.begin().await?;
    let mut appends = Appends::new(&core.subjects);
    let applied = apply_in(
        &mut tx,
        &mut Locked::default(),
        &mut appends,
        event,
        view,
        Some(origin),
    )
    .await;
    commit_applied(tx, core, applied, appends).await
}

/// One order event inside the caller's transaction (its message marked processed): returns
/// whether the sender has work and whether an event was enqueued. `origin`, when set, heads
/// the history of what the event changes (where it came from, if not from the stream).
async fn apply_in(
    tx: &mut sqlx::PgConnection,
    locked: &mut Locked,
    appends: &mut Appends<'_>,
    event: &OrderEvent,
    view: &ShopView,
    origin: Option<&str>,
) -> Result<(bool, bool), ApplyError> {
    let shop = event.shop.as_str();
    let order = &event.order;
    let current = locked.take(&mut *tx, shop, &order.order_no).await?;
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
            ApplyError::Refused(HandleError::Permanent(format!(
                "internal: state machine refused {refused}"
            )))
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
    if let Some(origin) = origin
        && (plan.store_snapshot || !history.is_empty() || publish)
    {
        history.insert(0, History::note(origin));
    }
    if plan.store_snapshot || !history.is_empty() || publish {
        appends.save(&mut *tx, &mut row, &history, publish).await?;
    }
    let wake = matches!(row.status, Status::Queued | Status::CancelRequested);
    if !row.unsaved {
        locked.put_back(row);
    }
    Ok((wake, publish))
}

/// `wms.*.observed`: what status-sync saw in the WMS, taken in batches like order events (one
/// transaction and one commit per batch, [`apply_prepared`]), each observation still
/// refused, acknowledged or dead-lettered on its own.
pub struct Observations {
    core: Arc<Core>,
}

impl Observations {
    pub fn new(core: Arc<Core>) -> Self {
        Self { core }
    }
}

/// A checked observation of a batch.
pub struct PreparedObservation {
    /// Its place in the batch's deliveries.
    pub index: usize,
    pub shop: ShopId,
    pub order_no: String,
    pub observation: Observation,
}

/// Decodes and checks an observation; every refusal is permanent, with the reason.
fn parse_observation(
    delivery: &Delivery<'_>,
    index: usize,
) -> Result<PreparedObservation, HandleError> {
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
        status_name: observed.status_name,
        cancelled: observed.cancelled,
        shipped: observed.shipped,
        tracking_code: observed.tracking_code,
        shipping_date: observed.shipping_date,
        wms_updated_at: observed
            .wms_updated_at
            .as_ref()
            .and_then(wmslink_proto::from_timestamp),
    };
    Ok(PreparedObservation {
        index,
        shop,
        order_no: observed.order_no,
        observation,
    })
}

impl BatchHandler for Observations {
    async fn handle_batch(&self, deliveries: &[Delivery<'_>]) -> Vec<Result<(), HandleError>> {
        let mut outcomes: Vec<Result<(), HandleError>> = Vec::with_capacity(deliveries.len());
        let mut ready = Vec::with_capacity(deliveries.len());
        for (i, delivery) in deliveries.iter().enumerate() {
            match parse_observation(delivery, i) {
                Ok(prepared) => {
                    ready.push(prepared);
                    outcomes.push(Ok(()));
                }
                Err(refused) => outcomes.push(Err(refused)),
            }
        }
        apply_prepared(
            &self.core,
            OBSERVED_CONSUMER,
            deliveries,
            &ready,
            &mut outcomes,
        )
        .await;
        outcomes
    }
}

impl BatchItem for PreparedObservation {
    fn index(&self) -> usize {
        self.index
    }

    fn key(&self) -> (&str, &str) {
        (self.shop.as_str(), self.order_no.as_str())
    }

    /// An observation never gives the sender work by itself.
    async fn apply_in(
        &self,
        tx: &mut sqlx::PgConnection,
        locked: &mut Locked,
        appends: &mut Appends<'_>,
    ) -> Result<(bool, bool), ApplyError> {
        let publish = observe_in(
            tx,
            locked,
            appends,
            self.shop.as_str(),
            &self.order_no,
            &self.observation,
        )
        .await?;
        Ok((false, publish))
    }
}

/// One observation inside the caller's transaction (its message marked processed): returns
/// whether an event was enqueued.
async fn observe_in(
    tx: &mut sqlx::PgConnection,
    locked: &mut Locked,
    appends: &mut Appends<'_>,
    shop: &str,
    order_no: &str,
    obs: &Observation,
) -> Result<bool, ApplyError> {
    let Some(mut row) = locked.take(&mut *tx, shop, order_no).await? else {
        tracing::debug!(
            shop,
            order_no,
            "observation of an order the dispatcher does not know"
        );
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
                    ApplyError::Refused(HandleError::Permanent(format!(
                        "internal: state machine refused {refused}"
                    )))
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
    appends.save(&mut *tx, &mut row, &history, publish).await?;
    locked.put_back(row);
    Ok(publish)
}
