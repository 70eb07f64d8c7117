//! The order rules over the store, shared by the gRPC handlers and the NATS consumers: one
//! transaction per change, holding the order's lock, the business rows and the outbox rows.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::Utc;
use sqlx::{PgConnection, PgPool};
use tracing::Instrument as _;
use wmslink_platform::consumer::HandleError;
use wmslink_platform::db::{mark_processed, mark_processed_many, unmark_processed};
use wmslink_platform::nats::Subjects;
use wmslink_platform::outbox::{self, OutboxMessage, RelayWaker, new_event_id};
use wmslink_platform::shop::ShopId;
use wmslink_proto::dispatch::v1::ShipmentUpdated;
use wmslink_proto::orders::v1::{Order, OrderView, UpsertOutcome};
use wmslink_proto::settings::v1::SettingsChanged;

use crate::domain::revision::{Decision, decide};
use crate::domain::status_lock::{ShopSync, StatusLock};
use crate::errors::OrderError;
use crate::events;
use crate::metrics::{Metrics, Path};
use crate::shop_directory::ShopDirectory;
use crate::store::{self, RejectedChange, StoredOrder};

/// Where a change comes from: a gRPC caller gets refusals as errors; a NATS message is recorded
/// as processed in the same transaction, and an R4 refusal is kept apart and published.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    Grpc,
    Nats { consumer: &'a str, msg_id: &'a str },
}

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Created,
    StatusChanged,
    Updated,
    StaleIgnored,
    Unchanged,
    /// R4 on the NATS path: kept apart, `status_change_rejected` published.
    StatusChangeRejected,
    /// The NATS message was processed before.
    AlreadyProcessed,
}

impl Applied {
    /// Whether the change enqueued an event (the relay is woken after the commit).
    fn enqueues(self) -> bool {
        matches!(
            self,
            Self::Created | Self::StatusChanged | Self::Updated | Self::StatusChangeRejected
        )
    }

    pub fn outcome(self) -> UpsertOutcome {
        match self {
            Self::Created => UpsertOutcome::Created,
            Self::StatusChanged => UpsertOutcome::StatusChanged,
            Self::Updated => UpsertOutcome::Updated,
            Self::StaleIgnored => UpsertOutcome::StaleIgnored,
            Self::Unchanged | Self::AlreadyProcessed | Self::StatusChangeRejected => {
                UpsertOutcome::Unchanged
            }
        }
    }
}

/// One checked cart message of a batch ([`Orders::upsert_batch`]).
pub struct CartMessage<'a> {
    pub shop: ShopId,
    pub order: Order,
    pub msg_id: &'a str,
    /// The message's `consume` span: its logs and events belong to its trace.
    pub span: &'a tracing::Span,
}

/// Whether the messages of `shop` already failed (its settings lookup was tried).
fn results_for_shop_failed(
    batch: &[CartMessage<'_>],
    results: &[Option<Result<Applied, OrderError>>],
    shop: &ShopId,
) -> bool {
    batch
        .iter()
        .zip(results)
        .any(|(message, result)| message.shop == *shop && result.is_some())
}

#[derive(Clone)]
pub struct Orders {
    pool: PgPool,
    subjects: Subjects,
    status_lock: StatusLock,
    waker: Option<RelayWaker>,
    metrics: Arc<Metrics>,
    /// Asked about shops whose settings event has not arrived (`orders.ask_settings`).
    directory: Option<Arc<ShopDirectory>>,
}

impl Orders {
    pub fn new(
        pool: PgPool,
        subjects: Subjects,
        locking_wms_status_ids: &[i32],
        waker: Option<RelayWaker>,
        metrics: Arc<Metrics>,
        directory: Option<Arc<ShopDirectory>>,
    ) -> Self {
        Self {
            pool,
            subjects,
            status_lock: StatusLock::new(locking_wms_status_ids),
            waker,
            metrics,
            directory,
        }
    }

    /// A shop not known yet is asked of the settings service (its settings event may not have
    /// arrived): recorded when registered there. A shop the settings service does not know is
    /// refused afterwards as before; the settings service out of reach is an outage to wait out.
    async fn learn_if_unknown(&self, shop: &ShopId) -> Result<(), OrderError> {
        let Some(directory) = &self.directory else {
            return Ok(());
        };
        let mut conn = self.pool.acquire().await?;
        if store::load_shop(&mut conn, shop.as_str()).await?.is_some() {
            return Ok(());
        }
        let learned = directory
            .look_up(shop.as_str())
            .await
            .map_err(|err| OrderError::SettingsUnavailable(err.to_string()))?;
        if let Some(change) = learned {
            store::upsert_shop(&mut conn, &change).await?;
            tracing::info!(shop = %shop, version = change.version, enabled = change.enabled, "shop learned from the settings service");
        }
        Ok(())
    }

    /// Records every shop registered in the settings service that is missing here or recorded
    /// at an older version (at start: a new database learns the shops registered long ago).
    /// Returns how many were learned.
    pub async fn learn_shops(&self) -> Result<usize, OrderError> {
        let Some(directory) = &self.directory else {
            return Ok(0);
        };
        let unavailable = |err: wmslink_settings_client::SettingsClientError| {
            OrderError::SettingsUnavailable(err.to_string())
        };
        let registered = directory.registered_shops().await.map_err(unavailable)?;
        let mut conn = self.pool.acquire().await?;
        let known = store::shop_versions(&mut conn).await?;
        let mut learned = 0;
        for summary in registered {
            if known
                .get(&summary.shop_id)
                .is_some_and(|v| *v >= summary.version)
            {
                continue;
            }
            if let Some(change) = directory
                .look_up(&summary.shop_id)
                .await
                .map_err(unavailable)?
            {
                store::upsert_shop(&mut conn, &change).await?;
                learned += 1;
            }
        }
        tracing::info!(learned, "shops learned from the settings service");
        Ok(learned)
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn wake_relay(&self) {
        if let Some(waker) = &self.waker {
            waker.wake();
        }
    }

    async fn enqueue(conn: &mut PgConnection, message: &OutboxMessage) -> Result<(), OrderError> {
        outbox::enqueue(conn, message).await?;
        Ok(())
    }

    /// The shop's synchronisation settings; refused while its settings are not registered (R6).
    async fn known_shop(conn: &mut PgConnection, shop: &ShopId) -> Result<ShopSync, OrderError> {
        store::load_shop(conn, shop.as_str())
            .await?
            .ok_or_else(|| OrderError::UnknownShop(shop.to_string()))
    }

    /// Applies a snapshot from the cart. The order must have been validated.
    pub async fn upsert(
        &self,
        shop: &ShopId,
        order: &Order,
        source: Source<'_>,
    ) -> Result<(Applied, i64), OrderError> {
        self.learn_if_unknown(shop).await?;
        let mut tx = self.pool.begin().await?;
        if let Source::Nats { consumer, msg_id } = source
            && !mark_processed(&mut tx, consumer, msg_id).await?
        {
            return Ok((Applied::AlreadyProcessed, order.revision));
        }
        store::lock_order(&mut tx, shop.as_str(), &order.order_no).await?;
        let shop_sync = Self::known_shop(&mut tx, shop).await?;
        let stored = store::load_order(&mut tx, shop.as_str(), &order.order_no).await?;
        let (applied, stored_revision) = self
            .apply(&mut tx, shop, order, source, &shop_sync, stored)
            .await?;
        tx.commit().await?;
        if applied.enqueues() {
            self.wake_relay();
        }
        Ok((applied, stored_revision))
    }

    /// The revision rules and R4 for one snapshot, with the order locked and `stored` read in
    /// the caller's transaction: writes the order and its event. A refusal leaves the
    /// transaction unwritten by this order (the caller rolls it back, or takes back the
    /// message's processed mark); a database error means the transaction is lost.
    async fn apply(
        &self,
        tx: &mut PgConnection,
        shop: &ShopId,
        order: &Order,
        source: Source<'_>,
        shop_sync: &ShopSync,
        stored: Option<StoredOrder>,
    ) -> Result<(Applied, i64), OrderError> {
        let decision = decide(
            stored.as_ref().map(|s| &s.order),
            stored.as_ref().is_some_and(|s| s.wmslink_changes > 0),
            order,
        );
        let (applied, stored_revision) = match (decision, stored) {
            (Decision::Create, _) => {
                store::insert_order(&mut *tx, order).await?;
                let event = events::status_changed(&self.subjects, shop, order, "", 0);
                Self::enqueue(&mut *tx, &event).await?;
                (Applied::Created, order.revision)
            }
            (Decision::StatusChange { previous_status }, Some(stored)) => {
                let wms = &stored.integration;
                if let Err(locked) = self.status_lock.check(
                    &order.order_no,
                    stored.order_date(),
                    wms,
                    shop_sync,
                    &previous_status,
                    &order.status_code,
                    Utc::now(),
                ) {
                    let reason = locked.to_string();
                    let path = match source {
                        Source::Grpc => Path::Grpc,
                        Source::Nats { .. } => Path::Nats,
                    };
                    self.metrics.status_change_refused(shop.as_str(), path);
                    tracing::warn!(shop = %shop, order_no = %order.order_no, revision = order.revision, %reason, "status change refused");
                    let Source::Nats { .. } = source else {
                        return Err(OrderError::StatusLocked(locked));
                    };
                    let event_id = new_event_id();
                    let change = RejectedChange {
                        order,
                        current_status_code: &previous_status,
                        wms_status_id: wms.wms_status_id,
                        reason: &reason,
                        event_id: &event_id,
                    };
                    if store::insert_rejected_change(&mut *tx, &change).await? {
                        let event = events::status_change_rejected(
                            &self.subjects,
                            shop,
                            event_id,
                            order,
                            &previous_status,
                            wms.wms_status_id,
                            &reason,
                        );
                        Self::enqueue(&mut *tx, &event).await?;
                    }
                    // The stored order does not move.
                    (Applied::StatusChangeRejected, stored.order.revision)
                } else {
                    store::update_order(&mut *tx, order).await?;
                    let event =
                        events::status_changed(&self.subjects, shop, order, &previous_status, 0);
                    Self::enqueue(&mut *tx, &event).await?;
                    (Applied::StatusChanged, order.revision)
                }
            }
            (Decision::ContentUpdate, Some(_)) => {
                store::update_order(&mut *tx, order).await?;
                Self::enqueue(&mut *tx, &events::updated(&self.subjects, shop, order)).await?;
                (Applied::Updated, order.revision)
            }
            (Decision::Stale { stored_revision }, Some(_)) => {
                store::count_stale(&mut *tx, shop.as_str(), &order.order_no).await?;
                self.metrics.stale_revision(shop.as_str());
                tracing::info!(shop = %shop, order_no = %order.order_no, revision = order.revision, stored_revision, "older revision ignored");
                (Applied::StaleIgnored, stored_revision)
            }
            (Decision::Unchanged, Some(_)) => (Applied::Unchanged, order.revision),
            (Decision::Conflict { stored_revision }, _) => {
                self.metrics.revision_conflict(shop.as_str());
                tracing::warn!(shop = %shop, order_no = %order.order_no, revision = stored_revision, "revision conflict");
                return Err(OrderError::RevisionConflict {
                    shop: shop.to_string(),
                    order_no: order.order_no.clone(),
                    revision: stored_revision,
                });
            }
            // `decide` returns these only when an order is stored.
            (_, None) => (Applied::Unchanged, order.revision),
        };
        Ok((applied, stored_revision))
    }

    /// Applies a batch of checked cart messages (in stream order) in one transaction with one
    /// commit, with the same rules and outcome per message as [`upsert`](Self::upsert) from
    /// NATS one by one: the messages' processed marks in one statement, every order locked in
    /// one statement, the stored orders read in one statement per round (a round holds each
    /// order once, so a later message of the same order sees the earlier one's effect). A
    /// message refused by the rules (unknown shop, revision conflict, corrupt stored order)
    /// gets its own error and its processed mark back; a database error loses the batch's
    /// transaction, and then each message is tried again on its own, so one message's trouble
    /// never becomes the others'. The database or the settings service out of reach is an
    /// outage for the messages it touches.
    pub async fn upsert_batch(
        &self,
        consumer: &str,
        batch: &[CartMessage<'_>],
    ) -> Vec<Result<Applied, HandleError>> {
        if batch.len() > 1 {
            match self.try_upsert_batch(consumer, batch).await {
                Ok(results) => {
                    return results
                        .into_iter()
                        .map(|result| result.map_err(|err| err.to_handle_error()))
                        .collect();
                }
                Err(err) => {
                    let failure = err.to_handle_error();
                    if let HandleError::Unavailable(_) = failure {
                        return batch.iter().map(|_| Err(failure.clone())).collect();
                    }
                    tracing::warn!(error = %err, messages = batch.len(), "batch failed; trying its messages one by one");
                }
            }
        }
        let mut results = Vec::with_capacity(batch.len());
        for message in batch {
            let source = Source::Nats {
                consumer,
                msg_id: message.msg_id,
            };
            let result = self
                .upsert(&message.shop, &message.order, source)
                .instrument(message.span.clone())
                .await;
            results.push(
                result
                    .map(|(applied, _)| applied)
                    .map_err(|err| err.to_handle_error()),
            );
        }
        results
    }

    async fn try_upsert_batch(
        &self,
        consumer: &str,
        batch: &[CartMessage<'_>],
    ) -> Result<Vec<Result<Applied, OrderError>>, OrderError> {
        let mut results: Vec<Option<Result<Applied, OrderError>>> =
            batch.iter().map(|_| None).collect();
        let key = |i: usize| (batch[i].shop.as_str(), batch[i].order.order_no.as_str());
        let mut shops: Vec<&str> = batch.iter().map(|m| m.shop.as_str()).collect();
        shops.sort_unstable();
        shops.dedup();

        // Shops whose settings event has not arrived are asked of the settings service first
        // (outside the transaction); one out of reach holds up only its own messages.
        if self.directory.is_some() {
            let known = store::load_shops(&mut *self.pool.acquire().await?, &shops).await?;
            for message in batch {
                let shop = &message.shop;
                if known.contains_key(shop.as_str())
                    || results_for_shop_failed(batch, &results, shop)
                {
                    continue;
                }
                match self.learn_if_unknown(shop).await {
                    Ok(()) => {}
                    Err(OrderError::SettingsUnavailable(reason)) => {
                        for (i, other) in batch.iter().enumerate() {
                            if other.shop == *shop {
                                results[i] =
                                    Some(Err(OrderError::SettingsUnavailable(reason.clone())));
                            }
                        }
                    }
                    Err(err) => return Err(err),
                }
            }
        }

        let mut tx = self.pool.begin().await?;
        let sync = store::load_shops(&mut tx, &shops).await?;
        let candidates: Vec<usize> = (0..batch.len()).filter(|&i| results[i].is_none()).collect();
        let ids: Vec<&str> = candidates.iter().map(|&i| batch[i].msg_id).collect();
        let mut fresh = mark_processed_many(&mut tx, consumer, &ids).await?;
        let mut marked = Vec::with_capacity(candidates.len());
        for i in candidates {
            if fresh.remove(batch[i].msg_id) {
                marked.push(i);
            } else {
                results[i] = Some(Ok(Applied::AlreadyProcessed));
            }
        }
        let mut pending = Vec::with_capacity(marked.len());
        for &i in &marked {
            if sync.contains_key(batch[i].shop.as_str()) {
                pending.push(i);
            } else {
                results[i] = Some(Err(OrderError::UnknownShop(batch[i].shop.to_string())));
            }
        }
        let keys: Vec<(&str, &str)> = pending.iter().map(|&i| key(i)).collect();
        store::lock_orders(&mut tx, &keys).await?;

        let mut wake = false;
        while !pending.is_empty() {
            let mut seen = HashSet::new();
            let (round, rest): (Vec<usize>, Vec<usize>) =
                pending.iter().partition(|&&i| seen.insert(key(i)));
            let round_keys: Vec<(&str, &str)> = round.iter().map(|&i| key(i)).collect();
            let mut stored = store::load_orders(&mut tx, &round_keys).await?;
            for i in round {
                let message = &batch[i];
                let (shop, order_no) = key(i);
                let stored = match stored.remove(&(shop.to_owned(), order_no.to_owned())) {
                    None => None,
                    Some(Ok(stored)) => Some(stored),
                    Some(Err(err)) => {
                        results[i] = Some(Err(err));
                        continue;
                    }
                };
                let Some(shop_sync) = sync.get(shop) else {
                    continue;
                };
                let source = Source::Nats {
                    consumer,
                    msg_id: message.msg_id,
                };
                let applied = self
                    .apply(
                        &mut tx,
                        &message.shop,
                        &message.order,
                        source,
                        shop_sync,
                        stored,
                    )
                    .instrument(message.span.clone())
                    .await;
                match applied {
                    Ok((applied, _)) => {
                        wake |= applied.enqueues();
                        results[i] = Some(Ok(applied));
                    }
                    Err(OrderError::Database(err)) => return Err(OrderError::Database(err)),
                    Err(err) => results[i] = Some(Err(err)),
                }
            }
            pending = rest;
        }
        // As if each refused message had had a transaction of its own that rolled back.
        let refused: Vec<&str> = marked
            .iter()
            .filter(|&&i| matches!(results[i], Some(Err(_))))
            .map(|&i| batch[i].msg_id)
            .collect();
        unmark_processed(&mut tx, consumer, &refused).await?;
        tx.commit().await?;
        if wake {
            self.wake_relay();
        }
        Ok(results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| {
                    Err(OrderError::Database(sqlx::Error::Protocol(
                        "internal: a batch message was left without an outcome".to_owned(),
                    )))
                })
            })
            .collect())
    }

    /// The cart changes an order's status (optimistic: `expected_revision` must be the stored
    /// one; the change keeps that revision, see `domain::revision`).
    pub async fn change_status(
        &self,
        shop: &ShopId,
        order_no: &str,
        status_code: &str,
        expected_revision: i64,
    ) -> Result<OrderView, OrderError> {
        self.learn_if_unknown(shop).await?;
        let mut tx = self.pool.begin().await?;
        store::lock_order(&mut tx, shop.as_str(), order_no).await?;
        let shop_sync = Self::known_shop(&mut tx, shop).await?;
        let Some(mut stored) = store::load_order(&mut tx, shop.as_str(), order_no).await? else {
            return Err(OrderError::NotFound {
                shop: shop.to_string(),
                order_no: order_no.to_owned(),
            });
        };
        if stored.order.revision != expected_revision {
            return Err(OrderError::StaleExpectedRevision {
                order_no: order_no.to_owned(),
                expected: expected_revision,
                stored: stored.order.revision,
            });
        }
        if stored.order.status_code == status_code {
            return Ok(stored.view());
        }
        if let Err(locked) = self.status_lock.check(
            order_no,
            stored.order_date(),
            &stored.integration,
            &shop_sync,
            &stored.order.status_code,
            status_code,
            Utc::now(),
        ) {
            self.metrics
                .status_change_refused(shop.as_str(), Path::Grpc);
            return Err(OrderError::StatusLocked(locked));
        }
        // The cart's revision is kept (revisions belong to the cart); the change is counted on
        // top of it, so the cart's next revision replaces it.
        let previous = std::mem::replace(&mut stored.order.status_code, status_code.to_owned());
        store::record_wmslink_change(&mut tx, &stored.order).await?;
        stored.wmslink_changes += 1;
        let event = events::status_changed(
            &self.subjects,
            shop,
            &stored.order,
            &previous,
            stored.wmslink_changes,
        );
        Self::enqueue(&mut tx, &event).await?;
        tx.commit().await?;
        self.wake_relay();
        Ok(stored.view())
    }

    pub async fn get(&self, shop: &ShopId, order_no: &str) -> Result<StoredOrder, OrderError> {
        let mut conn = self.pool.acquire().await?;
        store::load_order(&mut conn, shop.as_str(), order_no)
            .await?
            .ok_or_else(|| OrderError::NotFound {
                shop: shop.to_string(),
                order_no: order_no.to_owned(),
            })
    }

    /// Records a shop's settings change (R6: a shop is known once its settings exist).
    pub async fn apply_settings(
        &self,
        event: &SettingsChanged,
        consumer: &str,
        msg_id: &str,
    ) -> Result<bool, OrderError> {
        let mut tx = self.pool.begin().await?;
        if !mark_processed(&mut tx, consumer, msg_id).await? {
            return Ok(false);
        }
        let applied = store::upsert_shop(&mut tx, event).await?;
        tx.commit().await?;
        tracing::info!(shop = %event.shop_id, version = event.version, applied, "shop settings recorded");
        Ok(applied)
    }

    /// Applies a shipment update to the projection (ignored when not newer).
    pub async fn apply_shipment(
        &self,
        update: &ShipmentUpdated,
        consumer: &str,
        msg_id: &str,
    ) -> Result<bool, OrderError> {
        let Some(shipment) = &update.shipment else {
            return Ok(false);
        };
        let mut tx = self.pool.begin().await?;
        if !mark_processed(&mut tx, consumer, msg_id).await? {
            return Ok(false);
        }
        store::lock_order(&mut tx, &shipment.shop_id, &shipment.order_no).await?;
        let applied = store::apply_shipment(&mut tx, update).await?;
        tx.commit().await?;
        if !applied {
            self.metrics.shipment_update_ignored(&shipment.shop_id);
            tracing::debug!(shop = %shipment.shop_id, order_no = %shipment.order_no, sequence = update.sequence, "shipment update not newer; ignored");
        }
        Ok(applied)
    }

    /// [`apply_shipment`](Self::apply_shipment) for the updates delivered together (`batch`:
    /// each update with its message id, in stream order): one transaction with one commit, the
    /// processed marks and the order locks (in key order) each taken in one statement, the
    /// updates applied in stream order. A database error falls back to one update at a time.
    /// One result per update: whether it was applied (not newer, or processed before: false).
    pub async fn apply_shipments(
        &self,
        consumer: &str,
        batch: &[(&ShipmentUpdated, &str)],
    ) -> Vec<Result<bool, HandleError>> {
        if batch.len() > 1 {
            match self.try_apply_shipments(consumer, batch).await {
                Ok(applied) => return applied.into_iter().map(Ok).collect(),
                Err(err) => {
                    let failure = err.to_handle_error();
                    if let HandleError::Unavailable(_) = failure {
                        return batch.iter().map(|_| Err(failure.clone())).collect();
                    }
                    tracing::warn!(error = %err, messages = batch.len(), "shipment batch failed; applying its updates one by one");
                }
            }
        }
        let mut results = Vec::with_capacity(batch.len());
        for (update, msg_id) in batch {
            results.push(
                self.apply_shipment(update, consumer, msg_id)
                    .await
                    .map_err(|err| err.to_handle_error()),
            );
        }
        results
    }

    async fn try_apply_shipments(
        &self,
        consumer: &str,
        batch: &[(&ShipmentUpdated, &str)],
    ) -> Result<Vec<bool>, OrderError> {
        let mut applied = vec![false; batch.len()];
        let mut tx = self.pool.begin().await?;
        let ids: Vec<&str> = batch.iter().map(|(_, id)| *id).collect();
        let mut fresh = mark_processed_many(&mut tx, consumer, &ids).await?;
        // A message id twice in the batch (a redelivery) is applied once.
        let todo: Vec<usize> = (0..batch.len())
            .filter(|&i| fresh.remove(batch[i].1) && batch[i].0.shipment.is_some())
            .collect();
        let keys: Vec<(&str, &str)> = todo
            .iter()
            .filter_map(|&i| batch[i].0.shipment.as_ref())
            .map(|s| (s.shop_id.as_str(), s.order_no.as_str()))
            .collect();
        store::lock_orders(&mut tx, &keys).await?;
        // Of one order's updates in the batch only the newest is written (an older one would be
        // overwritten at once): each order's indexed columns change once per batch. The older
        // ones share its outcome.
        let mut newest: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for &i in &todo {
            if let Some(shipment) = &batch[i].0.shipment {
                let key = (shipment.shop_id.as_str(), shipment.order_no.as_str());
                let kept = newest.entry(key).or_insert(i);
                if batch[i].0.sequence > batch[*kept].0.sequence {
                    *kept = i;
                }
            }
        }
        for &i in newest.values() {
            applied[i] = store::apply_shipment(&mut tx, batch[i].0).await?;
        }
        for &i in &todo {
            if let Some(shipment) = &batch[i].0.shipment {
                let key = (shipment.shop_id.as_str(), shipment.order_no.as_str());
                applied[i] = applied[newest[&key]];
            }
        }
        tx.commit().await?;
        for &i in &todo {
            if let (false, Some(shipment)) = (applied[i], &batch[i].0.shipment) {
                self.metrics.shipment_update_ignored(&shipment.shop_id);
                tracing::debug!(shop = %shipment.shop_id, order_no = %shipment.order_no, sequence = batch[i].0.sequence, "shipment update not newer; ignored");
            }
        }
        Ok(applied)
    }

    /// Records an anomaly status-sync found (R5) on its order, for the list and `GetOrder`.
    pub async fn apply_anomaly(
        &self,
        anomaly: &store::OrderAnomaly<'_>,
        consumer: &str,
        msg_id: &str,
    ) -> Result<bool, OrderError> {
        let mut tx = self.pool.begin().await?;
        if !mark_processed(&mut tx, consumer, msg_id).await? {
            return Ok(false);
        }
        store::lock_order(&mut tx, anomaly.shop_id, anomaly.order_no).await?;
        let new = store::record_anomaly(&mut tx, anomaly).await?;
        tx.commit().await?;
        tracing::info!(shop = %anomaly.shop_id, order_no = %anomaly.order_no, kind = anomaly.kind.as_str_name(), new, "anomaly recorded on the order");
        Ok(new)
    }
}
