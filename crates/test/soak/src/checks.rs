//! The checks at the end of a soak, from the simulator's records and the services' gRPC only
//! (and the rejections order-events published): I1, I2, I3, I5, zero 429s, and the order list
//! agreeing with the WMS for every order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use futures::StreamExt;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use wmslink_platform::auth::BearerToken;
use wmslink_platform::nats::{StreamKind, Subjects};
use wmslink_platform::shop::ShopId;
use wmslink_proto::ops::v1 as ops;
use wmslink_proto::ops::v1::dead_letter_service_client::DeadLetterServiceClient;
use wmslink_proto::orders::v1 as pb;
use wmslink_proto::orders::v1::ShippingStatus;
use wmslink_proto::orders::v1::order_service_client::OrderServiceClient;
use wmslink_tools::demo::{STATUS_CANCELLED, STATUS_READY};
use wmslink_wms_simulator::{Counters, OrderNoCounters, SimOrder};

use crate::cart::{CartOrder, Sent};
use crate::sim::SimControl;

pub type OrdersClient = OrderServiceClient<InterceptedService<Channel, BearerToken>>;
pub type LettersClient = DeadLetterServiceClient<InterceptedService<Channel, BearerToken>>;

type Key = (String, String);

/// Where the checks read from.
#[derive(Clone)]
pub struct Sources {
    pub orders: OrdersClient,
    pub letters: LettersClient,
    pub sim: SimControl,
    /// Shop → its WMS access key.
    pub keys: BTreeMap<String, String>,
    pub js: async_nats::jetstream::Context,
    pub subjects: Subjects,
}

/// What the list and the WMS show now.
#[derive(Default)]
pub struct Snapshot {
    pub rows: HashMap<Key, pb::OrderListRow>,
    /// The newest WMS order of each order number.
    pub wms: HashMap<Key, SimOrder>,
    pub received: HashMap<Key, OrderNoCounters>,
    pub counters: BTreeMap<String, Counters>,
}

impl Sources {
    async fn list_all(&self, shop: &str) -> anyhow::Result<Vec<pb::OrderListRow>> {
        let mut client = self.orders.clone();
        let mut rows = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = client
                .list_orders(pb::ListOrdersRequest {
                    shop_id: shop.into(),
                    filter: None,
                    page_size: 200,
                    page_token: page_token.clone(),
                })
                .await?
                .into_inner();
            rows.extend(page.rows);
            if page.next_page_token.is_empty() {
                return Ok(rows);
            }
            page_token = page.next_page_token;
        }
    }

    pub async fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let mut snapshot = Snapshot::default();
        for (shop, key) in &self.keys {
            for row in self.list_all(shop).await? {
                snapshot
                    .rows
                    .insert((shop.clone(), row.order_no.clone()), row);
            }
            for order in self.sim.orders(key).await? {
                let entry = (shop.clone(), order.order_no.clone());
                let newer = snapshot
                    .wms
                    .get(&entry)
                    .is_none_or(|seen| seen.order_id < order.order_id);
                if newer {
                    snapshot.wms.insert(entry, order);
                }
            }
            for (order_no, counter) in self.sim.order_nos(key).await? {
                snapshot.received.insert((shop.clone(), order_no), counter);
            }
            snapshot
                .counters
                .insert(shop.clone(), self.sim.counters(key).await?);
        }
        Ok(snapshot)
    }

    async fn views(&self, orders: &[CartOrder]) -> HashMap<Key, pb::OrderView> {
        let lookups = futures::stream::iter(orders.iter().map(|order| {
            let mut client = self.orders.clone();
            let key = (order.shop.clone(), order.order_no.clone());
            async move {
                let view = client
                    .get_order(pb::GetOrderRequest {
                        shop_id: key.0.clone(),
                        order_no: key.1.clone(),
                    })
                    .await
                    .ok()
                    .and_then(|r| r.into_inner().order);
                (key, view)
            }
        }))
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
        lookups
            .into_iter()
            .filter_map(|(key, view)| view.map(|v| (key, v)))
            .collect()
    }

    async fn dead_letters(&self) -> anyhow::Result<Vec<ops::DeadLetter>> {
        let mut client = self.letters.clone();
        let mut letters = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = client
                .list(ops::ListDeadLettersRequest {
                    subject: "cart.orders.>".into(),
                    page_size: 500,
                    page_token: page_token.clone(),
                })
                .await?
                .into_inner();
            letters.extend(page.dead_letters);
            if page.next_page_token.is_empty() {
                return Ok(letters);
            }
            page_token = page.next_page_token;
        }
    }

    /// (shop, order_no, revision) of every status change R4 refused on the NATS path.
    async fn r4_refusals(&self) -> anyhow::Result<HashSet<(String, String, i64)>> {
        let stream = self
            .js
            .get_stream(self.subjects.stream_name(StreamKind::Orders))
            .await?;
        let mut refused = HashSet::new();
        for shop in self.keys.keys() {
            let consumer = stream
                .create_consumer(pull::Config {
                    filter_subject: self
                        .subjects
                        .order_status_change_rejected(&ShopId::parse(shop)?),
                    deliver_policy: DeliverPolicy::All,
                    ack_policy: AckPolicy::None,
                    inactive_threshold: Duration::from_secs(30),
                    ..Default::default()
                })
                .await?;
            let pending = consumer.cached_info().num_pending;
            if pending == 0 {
                continue;
            }
            let mut batch = consumer
                .fetch()
                .max_messages(usize::try_from(pending).unwrap_or(10_000))
                .expires(Duration::from_secs(5))
                .messages()
                .await?;
            while let Some(message) = batch.next().await {
                let message = message.map_err(|e| anyhow::anyhow!("{e}"))?;
                let event: pb::OrderStatusChangeRejected =
                    prost::Message::decode(message.payload.as_ref())?;
                refused.insert((event.shop_id, event.order_no, event.revision));
            }
        }
        Ok(refused)
    }
}

/// Why one order's row does not agree with the WMS (yet); `None` when it does and it is at
/// rest.
pub fn disagreement(
    order: &CartOrder,
    row: Option<&pb::OrderListRow>,
    wms: Option<&SimOrder>,
) -> Option<String> {
    use ShippingStatus as S;
    let Some(row) = row else {
        return Some("not in the order list".into());
    };
    let status = row.shipping_status();
    let what = match wms {
        None => match status {
            S::NotSent | S::Cancelled if row.status_code != STATUS_READY => return None,
            _ => "not in the WMS",
        },
        Some(wms) if wms.cancel_flag == 1 => match status {
            S::Cancelled => return None,
            _ => "cancelled in the WMS",
        },
        Some(wms) => {
            let shipped = wms.shipped_flag == 1;
            let tracking_ok =
                !shipped || wms.tracking_code.as_deref().unwrap_or_default() == row.tracking_code;
            let status_ok = match status {
                S::Shipped => shipped,
                S::Sent => !shipped,
                // The WMS's refusal stands whatever the warehouse did next.
                S::CancelRejected => true,
                _ => false,
            };
            if status_ok && tracking_ok && row.wms_status_id == wms.status_id {
                return None;
            }
            if shipped {
                "shipped in the WMS"
            } else {
                "live in the WMS"
            }
        }
    };
    Some(format!(
        "{}/{} ({:?}): {what} (WMS {:?}) but listed {:?}, WMS status {}, tracking {:?}",
        order.shop,
        order.order_no,
        order.scenario,
        wms.map(|w| (w.status_id, w.cancel_flag, w.shipped_flag)),
        status,
        row.wms_status_id,
        row.tracking_code
    ))
}

/// Every order whose row disagrees with the WMS or is not at rest.
pub fn disagreements(orders: &[CartOrder], snapshot: &Snapshot) -> Vec<String> {
    orders
        .iter()
        .filter_map(|order| {
            let key = (order.shop.clone(), order.order_no.clone());
            disagreement(order, snapshot.rows.get(&key), snapshot.wms.get(&key))
        })
        .collect()
}

/// Violations found, by invariant.
#[derive(Default, Debug)]
pub struct Findings {
    pub by_check: BTreeMap<&'static str, Vec<String>>,
    pub shipping_statuses: BTreeMap<String, usize>,
    pub dead_letters: usize,
    /// Distinct messages among the dead letters (one may be dead-lettered twice).
    pub dead_lettered_messages: usize,
    pub r4_refusals: usize,
    pub rate_limited: u64,
    pub totals: Counters,
}

impl Findings {
    fn add(&mut self, check: &'static str, what: String) {
        self.by_check.entry(check).or_default().push(what);
    }

    pub fn violations(&self) -> usize {
        self.by_check.values().map(Vec::len).sum()
    }
}

fn add_counters(total: &mut Counters, c: &Counters) {
    total.registrations_accepted += c.registrations_accepted;
    total.duplicates_refused += c.duplicates_refused;
    total.rows_invalid += c.rows_invalid;
    total.cancels += c.cancels;
    total.cancels_repeated += c.cancels_repeated;
    total.cancels_refused += c.cancels_refused;
    total.rate_limited += c.rate_limited;
    total.faults_500 += c.faults_500;
    total.faults_ng += c.faults_ng;
    total.faults_delayed += c.faults_delayed;
    total.faults_applied_500 += c.faults_applied_500;
    total.faults_applied_late += c.faults_applied_late;
    for (endpoint, n) in &c.requests {
        *total.requests.entry(endpoint.clone()).or_default() += n;
    }
}

/// Runs every check.
pub async fn check_all(
    sources: &Sources,
    orders: &[CartOrder],
    sent: &[Sent],
) -> anyhow::Result<Findings> {
    let snapshot = sources.snapshot().await?;
    let views = sources.views(orders).await;
    let letters = sources.dead_letters().await?;
    let refused = sources.r4_refusals().await?;
    let mut findings = Findings {
        dead_letters: letters.len(),
        dead_lettered_messages: letters
            .iter()
            .map(|l| l.original_msg_id.as_str())
            .collect::<HashSet<_>>()
            .len(),
        r4_refusals: refused.len(),
        ..Findings::default()
    };
    for counters in snapshot.counters.values() {
        add_counters(&mut findings.totals, counters);
    }
    findings.rate_limited = findings.totals.rate_limited;
    if findings.rate_limited > 0 {
        findings.add(
            "zero 429s",
            format!("{} answers 429 from the WMS", findings.rate_limited),
        );
    }

    for order in orders {
        let key = (order.shop.clone(), order.order_no.clone());
        let name = format!("{}/{} ({:?})", order.shop, order.order_no, order.scenario);
        let view = views.get(&key);
        let stored = view.and_then(|v| v.order.as_ref());
        let integration = view.and_then(|v| v.integration.clone()).unwrap_or_default();
        *findings
            .shipping_statuses
            .entry(format!("{:?}", integration.shipping_status()))
            .or_default() += 1;
        let received = snapshot.received.get(&key).cloned().unwrap_or_default();
        let wms = snapshot.wms.get(&key);

        // I1: an order at rest in the target status was sent once and accepted once; no
        // order was ever sent twice.
        let target = stored.is_some_and(|o| o.status_code == STATUS_READY);
        if target && (received.received != 1 || received.accepted != 1) {
            findings.add(
                "I1 exactly one registration",
                format!("{name}: in the target status, WMS received {received:?}"),
            );
        } else if received.received > 1 || received.accepted > 1 {
            findings.add(
                "I1 exactly one registration",
                format!("{name}: sent more than once: {received:?}"),
            );
        }
        // I3: never registered again after a WMS cancellation.
        if received.accepted > 1 {
            findings.add(
                "I3 cancelled is final",
                format!("{name}: registered {} times", received.accepted),
            );
        }
        // I2: a stored cancellation ends CANCELLED (and not live in the WMS) or refused by
        // the WMS: CANCEL_REJECTED with its reason, or SHIPPED with the refusal flagged.
        if stored.is_some_and(|o| o.status_code == STATUS_CANCELLED) {
            match integration.shipping_status() {
                ShippingStatus::Cancelled => {
                    if wms.is_some_and(|w| w.cancel_flag == 0) {
                        findings.add(
                            "I2 no lost cancellation",
                            format!("{name}: CANCELLED here, live in the WMS"),
                        );
                    }
                }
                ShippingStatus::CancelRejected if !integration.last_error.is_empty() => {}
                // Refused, then shipped: SHIPPED with the refusal flagged (R2).
                ShippingStatus::Shipped if integration.cancel_rejected => {}
                other => findings.add(
                    "I2 no lost cancellation",
                    format!(
                        "{name}: cancelled by the cart, {other:?} ({:?})",
                        integration.last_error
                    ),
                ),
            }
        }
        // The list agrees with the WMS.
        if let Some(why) = disagreement(order, snapshot.rows.get(&key), wms) {
            findings.add("list agrees with the WMS", why);
        }
    }

    // I5: every message is stored (its revision or a newer one), refused by R4 (published as
    // such), or dead-lettered with a reason; a bad one is dead-lettered.
    let letters_by_id: HashMap<&str, &ops::DeadLetter> = letters
        .iter()
        .map(|l| (l.original_msg_id.as_str(), l))
        .collect();
    for message in sent {
        let name = format!(
            "{}/{} r{} ({})",
            message.shop,
            message.order_no,
            message.revision,
            if message.json { "JSON" } else { "protobuf" }
        );
        if !message.stored {
            findings.add("I5 nothing lost", format!("{name}: NATS never took it"));
            continue;
        }
        if message.bad {
            let letter = message
                .msg_id
                .as_deref()
                .and_then(|id| letters_by_id.get(id));
            match letter {
                Some(letter) if !letter.reason.is_empty() => {}
                _ => findings.add("I5 nothing lost", format!("{name}: bad, not dead-lettered")),
            }
            continue;
        }
        let key = (message.shop.clone(), message.order_no.clone());
        let stored_revision = views
            .get(&key)
            .and_then(|v| v.order.as_ref())
            .map_or(0, |o| o.revision);
        let refused_by_r4 = refused.contains(&(
            message.shop.clone(),
            message.order_no.clone(),
            message.revision,
        ));
        if stored_revision < message.revision && !refused_by_r4 {
            findings.add(
                "I5 nothing lost",
                format!("{name}: stored revision is {stored_revision}"),
            );
        }
    }
    let bad_sent = sent.iter().filter(|m| m.bad && m.stored).count();
    if letters.len() > bad_sent {
        for letter in letters
            .iter()
            .filter(|l| !l.original_msg_id.starts_with("bad-"))
        {
            findings.add(
                "I5 nothing lost",
                format!(
                    "a good message dead-lettered: {} {:?}: {}",
                    letter.subject, letter.original_msg_id, letter.reason
                ),
            );
        }
    }
    Ok(findings)
}
