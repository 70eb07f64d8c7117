//! A cart for the demo shop that never stops: at a steady pace it publishes realistic orders
//! on `cart.orders.{shop}.upserted` (protobuf, some as proto3 JSON), moves some into the target
//! status later, edits some after they were sent (R1), cancels some before and after sending
//! (R2) and some too late (the WMS refuses: CANCEL_REJECTED), changes the status of orders the
//! WMS is processing (refused, R4; it then sends the order back with its status reverted, as
//! a cart must), pays some with a method the shop never mapped (ERROR), and now and then plays
//! a warehouse clerk who registers or cancels an order in the WMS directly (R5 anomalies).
//!
//! Actions come in shuffled cycles holding each kind a fixed number of times, so after one
//! cycle the order list shows every shipping status; an action with nothing to act on (no
//! order the WMS is processing yet, say) places a new order instead.

pub mod catalog;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use secrecy::SecretString;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tracing::Instrument;
use wmslink_platform::auth::BearerToken;
use wmslink_platform::nats::{NatsConfig, Subjects};
use wmslink_platform::shop::ShopId;
use wmslink_proto::orders::v1 as pb;
use wmslink_proto::orders::v1::ShippingStatus;
use wmslink_proto::orders::v1::order_service_client::OrderServiceClient;
use wmslink_wms_client::{WmsClient, WmsClientConfig};

use crate::catalog::Payment;

/// WMS statuses (wms-api.md): 20 処理中 locks the cart status (R4); from 90 on an order can no
/// longer be cancelled.
const WMS_PROCESSING: i32 = 20;
const WMS_LATE: [i32; 3] = [90, 95, 100];

/// The cart's status codes the simulator uses (the demo shop's catalog).
#[derive(Debug, Clone)]
pub struct StatusCodes {
    /// Open, not a target status: orders wait here (NOT_SENT).
    pub new: String,
    /// The target status: an order entering it is sent to the WMS.
    pub ready: String,
    /// Of kind cancelled.
    pub cancelled: String,
}

impl Default for StatusCodes {
    fn default() -> Self {
        Self {
            new: "new".into(),
            ready: "ready_to_ship".into(),
            cancelled: "cancelled".into(),
        }
    }
}

/// Where the WMS is, for the clerk's direct registrations and cancellations (R5).
#[derive(Debug, Clone)]
pub struct WmsAccess {
    pub endpoint_url: String,
    pub access_key: SecretString,
    /// Hosts reachable over plain http (the simulator).
    pub allow_http_hosts: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct CartSimConfig {
    pub shop_id: String,
    pub nats: NatsConfig,
    /// order-events' gRPC address: the cart reads its order list (both status levels) there.
    pub orders_url: String,
    /// TLS to order-events (`ca_file` set: `orders_url` must be `https://`).
    pub orders_tls: wmslink_platform::grpc::ClientTls,
    /// A token with `orders.read`.
    pub token: SecretString,
    /// `None`: no WMS-side anomalies.
    pub wms: Option<WmsAccess>,
    /// Time between two actions.
    pub interval: Duration,
    /// Share of messages sent as proto3 JSON instead of protobuf.
    pub json_ratio: f64,
    /// Same seed, same choices.
    pub seed: u64,
    pub statuses: StatusCodes,
    /// Order numbers start with this (unique per start, so a restart never reuses one).
    pub order_no_prefix: String,
}

/// One kind of action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// A new order in the target status (sent at once).
    NewOrder,
    /// A new order that waits in a non-target status.
    NewOrderOnHold,
    /// A new order paid with a method the shop did not map: the dispatcher refuses it (ERROR).
    NewOrderUnmapped,
    /// A waiting order moves into the target status.
    Release,
    /// A customer edit (flagged when the order was already sent, R1).
    Edit,
    /// Cancelled while still waiting (never reaches the WMS).
    CancelBeforeSending,
    /// Cancelled after registration, before the warehouse got far: cancelled in the WMS (R2).
    CancelAfterSending,
    /// Cancelled once packed or shipped: the WMS refuses (CANCEL_REJECTED).
    CancelTooLate,
    /// A status change while the WMS is processing the order: refused (R4), then reverted.
    ChangeWhileProcessing,
    /// A clerk registers an order in the WMS by hand (R5: not sent by wmslink).
    WmsDirectOrder,
    /// A clerk cancels a sent order in the WMS (R5: cancelled without a cart request).
    WmsDirectCancel,
}

/// One cycle: every kind, as often as a real shop would see it.
pub const CYCLE: &[(Action, usize)] = &[
    (Action::NewOrder, 9),
    (Action::NewOrderOnHold, 2),
    (Action::NewOrderUnmapped, 1),
    (Action::Release, 1),
    (Action::Edit, 3),
    (Action::CancelBeforeSending, 1),
    (Action::CancelAfterSending, 2),
    (Action::CancelTooLate, 1),
    (Action::ChangeWhileProcessing, 2),
    (Action::WmsDirectOrder, 1),
    (Action::WmsDirectCancel, 1),
];

/// What the simulator did so far.
#[derive(Debug, Default)]
pub struct Stats {
    pub orders_published: AtomicU64,
    pub json_messages: AtomicU64,
    pub new_orders: AtomicU64,
    pub unmapped_orders: AtomicU64,
    pub released: AtomicU64,
    pub edits: AtomicU64,
    pub edits_after_sending: AtomicU64,
    pub cancels_before_sending: AtomicU64,
    pub cancels_after_sending: AtomicU64,
    pub cancels_too_late: AtomicU64,
    pub changes_while_processing: AtomicU64,
    /// `orders.{shop}.status_change_rejected` seen (R4 refusals).
    pub r4_refusals: AtomicU64,
    /// Orders sent again with their status reverted after a refusal.
    pub reverted: AtomicU64,
    pub wms_direct_orders: AtomicU64,
    pub wms_direct_cancels: AtomicU64,
    /// Actions that found nothing to act on (a new order was placed instead).
    pub fallbacks: AtomicU64,
    pub errors: AtomicU64,
}

/// A copy of [`Stats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub orders_published: u64,
    pub json_messages: u64,
    pub new_orders: u64,
    pub unmapped_orders: u64,
    pub released: u64,
    pub edits: u64,
    pub edits_after_sending: u64,
    pub cancels_before_sending: u64,
    pub cancels_after_sending: u64,
    pub cancels_too_late: u64,
    pub changes_while_processing: u64,
    pub r4_refusals: u64,
    pub reverted: u64,
    pub wms_direct_orders: u64,
    pub wms_direct_cancels: u64,
    pub fallbacks: u64,
    pub errors: u64,
}

impl Stats {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        StatsSnapshot {
            orders_published: get(&self.orders_published),
            json_messages: get(&self.json_messages),
            new_orders: get(&self.new_orders),
            unmapped_orders: get(&self.unmapped_orders),
            released: get(&self.released),
            edits: get(&self.edits),
            edits_after_sending: get(&self.edits_after_sending),
            cancels_before_sending: get(&self.cancels_before_sending),
            cancels_after_sending: get(&self.cancels_after_sending),
            cancels_too_late: get(&self.cancels_too_late),
            changes_while_processing: get(&self.changes_while_processing),
            r4_refusals: get(&self.r4_refusals),
            reverted: get(&self.reverted),
            wms_direct_orders: get(&self.wms_direct_orders),
            wms_direct_cancels: get(&self.wms_direct_cancels),
            fallbacks: get(&self.fallbacks),
            errors: get(&self.errors),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CartSimError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("NATS: {0}")]
    Nats(String),
    #[error("order-events at {url}: {reason}")]
    Orders { url: String, reason: String },
    #[error("WMS: {0}")]
    Wms(String),
}

type OrdersClient = OrderServiceClient<InterceptedService<Channel, BearerToken>>;

/// The simulator, connected.
pub struct CartSim {
    config: CartSimConfig,
    shop: ShopId,
    subjects: Subjects,
    nats: async_nats::Client,
    js: async_nats::jetstream::Context,
    orders: OrdersClient,
    wms: Option<WmsClient>,
    /// The newest snapshot this cart published per order (revisions only grow).
    published: Mutex<HashMap<String, pb::Order>>,
    rng: Mutex<StdRng>,
    next_order: AtomicU64,
    stats: Arc<Stats>,
}

impl CartSim {
    pub async fn connect(config: CartSimConfig) -> Result<Self, CartSimError> {
        wmslink_platform::install_crypto_provider();
        let shop = ShopId::parse(&config.shop_id)
            .map_err(|err| CartSimError::Config(format!("shop id: {err}")))?;
        let subjects = Subjects::new(&config.nats.prefix)
            .map_err(|err| CartSimError::Config(err.to_string()))?;
        let nats = wmslink_platform::nats::connect(&config.nats)
            .await
            .map_err(|err| CartSimError::Nats(err.to_string()))?;
        let js = async_nats::jetstream::new(nats.clone());
        let token =
            BearerToken::new(&config.token).map_err(|err| CartSimError::Config(err.to_string()))?;
        let channel =
            wmslink_platform::grpc::client_endpoint(&config.orders_url, &config.orders_tls)
                .map_err(|err| CartSimError::Orders {
                    url: config.orders_url.clone(),
                    reason: err.to_string(),
                })?
                .timeout(Duration::from_secs(10))
                .connect_lazy();
        let orders = OrderServiceClient::with_interceptor(channel, token);
        let wms = match &config.wms {
            None => None,
            Some(access) => Some(
                WmsClient::new(
                    &access.endpoint_url,
                    access.access_key.clone(),
                    &WmsClientConfig {
                        allow_http_hosts: access.allow_http_hosts.clone(),
                        // A development tool playing the warehouse clerk against the simulator,
                        // which runs on loopback or a private container network.
                        refuse_private_addresses: false,
                        ..WmsClientConfig::default()
                    },
                    Arc::new(wmslink_wms_client::Unlimited),
                )
                .map_err(|err| CartSimError::Wms(err.to_string()))?,
            ),
        };
        Ok(Self {
            rng: Mutex::new(StdRng::seed_from_u64(config.seed)),
            config,
            shop,
            subjects,
            nats,
            js,
            orders,
            wms,
            published: Mutex::new(HashMap::new()),
            next_order: AtomicU64::new(1),
            stats: Arc::new(Stats::default()),
        })
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Acts every `interval` until `shutdown` (or `max_actions`, when given), then returns what
    /// it did. One failed action is logged and counted, never fatal.
    pub async fn run(
        &self,
        shutdown: CancellationToken,
        max_actions: Option<u64>,
    ) -> Result<StatsSnapshot, CartSimError> {
        let rejected = self
            .nats
            .subscribe(self.rejections_subject())
            .await
            .map_err(|err| CartSimError::Nats(err.to_string()))?;
        let listener = self.answer_refusals(rejected, shutdown.clone());
        let actor = self.act(shutdown.clone(), max_actions);
        tokio::pin!(listener);
        tokio::select! {
            () = actor => {}
            () = &mut listener => {}
        }
        Ok(self.stats.snapshot())
    }

    fn rejections_subject(&self) -> String {
        self.subjects.order_status_change_rejected(&self.shop)
    }

    async fn act(&self, shutdown: CancellationToken, max_actions: Option<u64>) {
        let mut done = 0u64;
        let mut cycle = Vec::new();
        let mut ticker = tokio::time::interval(self.config.interval.max(Duration::from_millis(1)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while max_actions.is_none_or(|max| done < max) {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            if cycle.is_empty() {
                cycle = self.shuffled_cycle().await;
            }
            let Some(action) = cycle.pop() else { continue };
            let span = tracing::info_span!("cart.action", shop = %self.shop, ?action);
            if let Err(err) = self.perform(action).instrument(span).await {
                Stats::add(&self.stats.errors);
                tracing::warn!(?action, error = %err, "cart action failed");
            }
            done += 1;
        }
    }

    async fn shuffled_cycle(&self) -> Vec<Action> {
        let mut cycle: Vec<Action> = CYCLE
            .iter()
            .flat_map(|(action, times)| std::iter::repeat_n(*action, *times))
            .collect();
        cycle.shuffle(&mut *self.rng.lock().await);
        cycle
    }

    async fn perform(&self, action: Action) -> Result<(), CartSimError> {
        let done = match action {
            Action::NewOrder => return self.new_order(Payment::Card, true).await,
            Action::NewOrderOnHold => return self.new_order(Payment::Card, false).await,
            Action::NewOrderUnmapped => {
                Stats::add(&self.stats.unmapped_orders);
                return self.new_order(Payment::Unmapped, true).await;
            }
            Action::Release => self.release().await?,
            Action::Edit => self.edit().await?,
            Action::CancelBeforeSending => self.cancel_before_sending().await?,
            Action::CancelAfterSending => self.cancel_after_sending().await?,
            Action::CancelTooLate => self.cancel_too_late().await?,
            Action::ChangeWhileProcessing => self.change_while_processing().await?,
            Action::WmsDirectOrder => self.wms_direct_order().await?,
            Action::WmsDirectCancel => self.wms_direct_cancel().await?,
        };
        if !done {
            Stats::add(&self.stats.fallbacks);
            self.new_order(Payment::Card, true).await?;
        }
        Ok(())
    }

    fn next_order_no(&self) -> String {
        let n = self.next_order.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n:06}", self.config.order_no_prefix)
    }

    async fn new_order(&self, payment: Payment, target: bool) -> Result<(), CartSimError> {
        let payment = if payment == Payment::Card && self.rng.lock().await.random_bool(0.2) {
            Payment::CashOnDelivery
        } else {
            payment
        };
        let status = if target {
            &self.config.statuses.ready
        } else {
            &self.config.statuses.new
        };
        let order = {
            let mut rng = self.rng.lock().await;
            catalog::new_order(
                &mut *rng,
                self.shop.as_str(),
                &self.next_order_no(),
                status,
                payment,
                chrono::Utc::now(),
            )
        };
        Stats::add(&self.stats.new_orders);
        self.publish(order).await
    }

    /// Publishes a snapshot and remembers it.
    async fn publish(&self, order: pb::Order) -> Result<(), CartSimError> {
        let json = self
            .rng
            .lock()
            .await
            .random_bool(self.config.json_ratio.clamp(0.0, 1.0));
        let mut headers = async_nats::HeaderMap::new();
        // The same snapshot published twice is one message (JetStream's duplicate window).
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            format!(
                "cart-{}-{}-{}",
                order.shop_id, order.order_no, order.revision
            )
            .as_str(),
        );
        let payload = if json {
            headers.insert("content-type", "application/json");
            wmslink_proto::json::encode("wmslink.orders.v1.Order", &order)
                .map_err(|err| CartSimError::Config(err.to_string()))?
        } else {
            prost::Message::encode_to_vec(&order)
        };
        let span = tracing::info_span!(
            "cart.publish",
            shop = %order.shop_id,
            order_no = %order.order_no,
            revision = order.revision
        );
        let _enter = span.enter();
        wmslink_platform::telemetry::inject_trace_context(&mut headers);
        drop(_enter);
        self.js
            .publish_with_headers(
                self.subjects.cart_order_upserted(&self.shop),
                headers,
                payload.into(),
            )
            .await
            .map_err(|err| CartSimError::Nats(err.to_string()))?
            .await
            .map_err(|err| CartSimError::Nats(err.to_string()))?;
        Stats::add(&self.stats.orders_published);
        if json {
            Stats::add(&self.stats.json_messages);
        }
        tracing::info!(order_no = %order.order_no, revision = order.revision, status = %order.status_code, "published");
        self.published
            .lock()
            .await
            .insert(order.order_no.clone(), order);
        Ok(())
    }

    /// The newest snapshot of an order: this cart's own, or order-events' stored one.
    async fn snapshot(&self, order_no: &str) -> Result<Option<pb::Order>, CartSimError> {
        if let Some(order) = self.published.lock().await.get(order_no) {
            return Ok(Some(order.clone()));
        }
        match self
            .orders
            .clone()
            .get_order(pb::GetOrderRequest {
                shop_id: self.shop.to_string(),
                order_no: order_no.to_owned(),
            })
            .await
        {
            Ok(answer) => Ok(answer.into_inner().order.and_then(|view| view.order)),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => Err(self.orders_error(status)),
        }
    }

    fn orders_error(&self, status: tonic::Status) -> CartSimError {
        CartSimError::Orders {
            url: self.config.orders_url.clone(),
            reason: status.to_string(),
        }
    }

    /// Rows of the shop's order list matching `filter` (one page, newest first).
    async fn rows(
        &self,
        filter: pb::ListOrdersFilter,
    ) -> Result<Vec<pb::OrderListRow>, CartSimError> {
        let answer = self
            .orders
            .clone()
            .list_orders(pb::ListOrdersRequest {
                shop_id: self.shop.to_string(),
                filter: Some(filter),
                page_size: 100,
                page_token: String::new(),
            })
            .await
            .map_err(|status| self.orders_error(status))?;
        Ok(answer.into_inner().rows)
    }

    async fn pick(
        &self,
        filter: pb::ListOrdersFilter,
        keep: impl Fn(&pb::OrderListRow) -> bool,
    ) -> Result<Option<pb::OrderListRow>, CartSimError> {
        let rows: Vec<_> = self.rows(filter).await?.into_iter().filter(keep).collect();
        Ok(rows.choose(&mut *self.rng.lock().await).cloned())
    }

    /// Publishes the order again as the next revision, changed by `change`.
    async fn revise(
        &self,
        order_no: &str,
        change: impl FnOnce(&mut pb::Order),
    ) -> Result<bool, CartSimError> {
        let Some(mut order) = self.snapshot(order_no).await? else {
            return Ok(false);
        };
        order.revision += 1;
        change(&mut order);
        self.publish(order).await?;
        Ok(true)
    }

    fn by_shipping(statuses: &[ShippingStatus]) -> pb::ListOrdersFilter {
        pb::ListOrdersFilter {
            shipping_statuses: statuses.iter().map(|s| *s as i32).collect(),
            ..Default::default()
        }
    }

    async fn release(&self) -> Result<bool, CartSimError> {
        let mut filter = Self::by_shipping(&[ShippingStatus::NotSent]);
        filter.status_codes = vec![self.config.statuses.new.clone()];
        let Some(row) = self.pick(filter, |_| true).await? else {
            return Ok(false);
        };
        let ready = self.config.statuses.ready.clone();
        let done = self
            .revise(&row.order_no, |o| o.status_code = ready)
            .await?;
        if done {
            Stats::add(&self.stats.released);
        }
        Ok(done)
    }

    async fn edit(&self) -> Result<bool, CartSimError> {
        let filter = Self::by_shipping(&[
            ShippingStatus::NotSent,
            ShippingStatus::Sent,
            ShippingStatus::Shipped,
        ]);
        let cancelled = self.config.statuses.cancelled.clone();
        let Some(row) = self
            .pick(filter, |row| {
                row.status_code != cancelled && row.wms_status_id != WMS_PROCESSING
            })
            .await?
        else {
            return Ok(false);
        };
        let mut rng = StdRng::seed_from_u64(self.rng.lock().await.random());
        let done = self
            .revise(&row.order_no, |o| catalog::edit(&mut rng, o))
            .await?;
        if done {
            Stats::add(&self.stats.edits);
            if row.shipping_status() != ShippingStatus::NotSent {
                Stats::add(&self.stats.edits_after_sending);
            }
        }
        Ok(done)
    }

    async fn cancel(&self, order_no: &str) -> Result<bool, CartSimError> {
        let cancelled = self.config.statuses.cancelled.clone();
        self.revise(order_no, |o| o.status_code = cancelled).await
    }

    async fn cancel_before_sending(&self) -> Result<bool, CartSimError> {
        let mut filter = Self::by_shipping(&[ShippingStatus::NotSent]);
        filter.status_codes = vec![self.config.statuses.new.clone()];
        let Some(row) = self.pick(filter, |_| true).await? else {
            return Ok(false);
        };
        let done = self.cancel(&row.order_no).await?;
        if done {
            Stats::add(&self.stats.cancels_before_sending);
        }
        Ok(done)
    }

    async fn cancel_after_sending(&self) -> Result<bool, CartSimError> {
        let filter = Self::by_shipping(&[ShippingStatus::Sent]);
        let Some(row) = self
            .pick(filter, |row| {
                row.wms_status_id != WMS_PROCESSING && !WMS_LATE.contains(&row.wms_status_id)
            })
            .await?
        else {
            return Ok(false);
        };
        let done = self.cancel(&row.order_no).await?;
        if done {
            Stats::add(&self.stats.cancels_after_sending);
        }
        Ok(done)
    }

    async fn cancel_too_late(&self) -> Result<bool, CartSimError> {
        let filter = Self::by_shipping(&[ShippingStatus::Sent, ShippingStatus::Shipped]);
        let Some(row) = self
            .pick(filter, |row| {
                row.shipping_status() == ShippingStatus::Shipped
                    || WMS_LATE.contains(&row.wms_status_id)
            })
            .await?
        else {
            return Ok(false);
        };
        let done = self.cancel(&row.order_no).await?;
        if done {
            Stats::add(&self.stats.cancels_too_late);
        }
        Ok(done)
    }

    async fn change_while_processing(&self) -> Result<bool, CartSimError> {
        let filter = pb::ListOrdersFilter {
            wms_status_ids: vec![WMS_PROCESSING],
            ..Default::default()
        };
        let new = self.config.statuses.new.clone();
        let Some(row) = self.pick(filter, |row| row.status_code != new).await? else {
            return Ok(false);
        };
        let done = self.revise(&row.order_no, |o| o.status_code = new).await?;
        if done {
            Stats::add(&self.stats.changes_while_processing);
        }
        Ok(done)
    }

    /// Answers each R4 refusal as a cart must: the order again, status reverted, newer revision.
    async fn answer_refusals(
        &self,
        mut rejected: async_nats::Subscriber,
        shutdown: CancellationToken,
    ) {
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => return,
                message = rejected.next() => message,
            };
            let Some(message) = message else { return };
            let Ok(refusal) =
                <pb::OrderStatusChangeRejected as prost::Message>::decode(message.payload.as_ref())
            else {
                continue;
            };
            Stats::add(&self.stats.r4_refusals);
            tracing::info!(order_no = %refusal.order_no, reason = %refusal.reason, "status change refused (R4); reverting");
            let current = refusal.current_status_code.clone();
            match self
                .revise(&refusal.order_no, |o| o.status_code = current)
                .await
            {
                Ok(true) => Stats::add(&self.stats.reverted),
                Ok(false) => {}
                Err(err) => {
                    Stats::add(&self.stats.errors);
                    tracing::warn!(error = %err, "revert after R4 refusal failed");
                }
            }
        }
    }

    async fn wms_direct_order(&self) -> Result<bool, CartSimError> {
        let Some(wms) = &self.wms else {
            return Ok(false);
        };
        let order = {
            let mut rng = self.rng.lock().await;
            catalog::new_order(
                &mut *rng,
                self.shop.as_str(),
                &format!("CSV-{}", self.next_order_no()),
                &self.config.statuses.ready,
                Payment::Card,
                chrono::Utc::now(),
            )
        };
        let row = wms_row(&order);
        let report = wms.register(std::slice::from_ref(&row)).await;
        if let Some(failed) = report.failed {
            return Err(CartSimError::Wms(failed.error.to_string()));
        }
        Stats::add(&self.stats.wms_direct_orders);
        tracing::info!(order_no = %row.order_no, "registered in the WMS by hand (R5)");
        Ok(true)
    }

    async fn wms_direct_cancel(&self) -> Result<bool, CartSimError> {
        let Some(wms) = &self.wms else {
            return Ok(false);
        };
        let filter = Self::by_shipping(&[ShippingStatus::Sent]);
        let Some(row) = self
            .pick(filter, |row| {
                row.wms_status_id != WMS_PROCESSING && !WMS_LATE.contains(&row.wms_status_id)
            })
            .await?
        else {
            return Ok(false);
        };
        let found = wms
            .find_by_order_nos(&[row.order_no.as_str()])
            .await
            .map_err(|err| CartSimError::Wms(err.to_string()))?;
        let Some(in_wms) = found.into_iter().find(|o| o.order_no == row.order_no) else {
            return Ok(false);
        };
        wms.cancel_order(in_wms.order_id)
            .await
            .map_err(|err| CartSimError::Wms(err.to_string()))?;
        Stats::add(&self.stats.wms_direct_cancels);
        tracing::info!(order_no = %row.order_no, "cancelled in the WMS by hand (R5)");
        Ok(true)
    }
}

/// The WMS row a clerk would upload for `order`.
fn wms_row(order: &pb::Order) -> wmslink_wms_client::ShipmentInstruction {
    let address = order.shipping.clone().unwrap_or_default();
    let amounts = order.amounts.unwrap_or_default();
    let jst = wmslink_wms_client::jst();
    wmslink_wms_client::ShipmentInstruction {
        order_no: order.order_no.clone(),
        robot_id: 1,
        shipper_id: 1,
        delivery_method_id: 1,
        delivery_company_id: None,
        payment_method_id: 1,
        order_date: chrono::Utc::now().with_timezone(&jst),
        orderer: wmslink_wms_client::Orderer {
            name: address.name.clone(),
            kana: Some(address.kana.clone()),
            zip: address.zip.clone(),
            pref: address.prefecture.clone(),
            address1: address.address1.clone(),
            address2: Some(address.address2.clone()),
            tel: address.phone.clone(),
            email: Some(address.email.clone()),
        },
        shipping: wmslink_wms_client::Shipping {
            name: address.name.clone(),
            kana: Some(address.kana),
            zip: address.zip,
            pref: address.prefecture,
            address1: address.address1,
            address2: Some(address.address2),
            tel: address.phone,
            delivery_date: None,
            delivery_time: None,
        },
        product_total: amounts.products,
        shipping_fee: amounts.shipping_fee,
        cod_fee: amounts.cod_fee,
        discount: amounts.discount,
        tax_total: amounts.tax,
        pay_total: amounts.total,
        note: Some("CSV取込".into()),
        free_fields: Default::default(),
        details: order
            .lines
            .iter()
            .map(|line| wmslink_wms_client::Detail {
                sku: line.sku.clone(),
                name: line.name.clone(),
                quantity: line.quantity,
                unit_price: line.unit_price,
                free_fields: Default::default(),
            })
            .collect(),
    }
}
