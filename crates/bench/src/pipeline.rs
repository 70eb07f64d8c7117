//! The pipeline end to end, limit off: orders sent as a cart sends them (JetStream publish with
//! ack on `cart.orders.{shop}.upserted`, or gRPC `UpsertOrder`), measured to the simulator's
//! accepted registration (its per-order registration time, `first_accepted_unix_ms`), and I1
//! checked from the registration rows the simulator received per order number.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use tokio::time::Instant;
use wmslink_platform::shop::ShopId;
use wmslink_proto::orders::v1 as pb;
use wmslink_tools::demo::{self, STATUS_READY};

use crate::fleet::Fleet;

/// How orders enter the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// JetStream publish with ack, as the cart does.
    Nats,
    /// gRPC `UpsertOrder`.
    Grpc,
}

/// How orders are offered.
#[derive(Debug, Clone, Copy)]
pub enum Offer {
    /// As fast as the system takes them for `seconds`: `in_flight` at a time, and never more
    /// than `backlog` orders sent but not yet registered.
    Saturate {
        seconds: f64,
        in_flight: usize,
        backlog: u64,
    },
    /// `per_second` orders a second for `seconds`, whatever happens (open loop).
    Rate { per_second: f64, seconds: f64 },
    /// `orders` orders at once, `in_flight` at a time (a sale-day burst).
    Burst { orders: usize, in_flight: usize },
}

/// What I1 found: every order registered exactly once.
#[derive(Debug, Default, Clone)]
pub struct I1 {
    pub orders: usize,
    /// Orders whose registration the simulator never received.
    pub missing: Vec<String>,
    /// Orders received in more than one registration row, or registered more than once.
    pub twice: Vec<String>,
}

impl I1 {
    pub fn holds(&self) -> bool {
        self.missing.is_empty() && self.twice.is_empty()
    }

    pub fn absorb(&mut self, other: I1) {
        self.orders += other.orders;
        self.missing.extend(other.missing);
        self.twice.extend(other.twice);
    }

    pub fn describe(&self) -> String {
        let sample = |v: &[String]| v.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
        format!(
            "{} orders: {} missing ({}), {} registered twice ({})",
            self.orders,
            self.missing.len(),
            sample(&self.missing),
            self.twice.len(),
            sample(&self.twice)
        )
    }
}

/// One end-to-end run.
#[derive(Debug, Clone)]
pub struct Run {
    pub orders: usize,
    /// From the first order sent to the last registration accepted.
    pub seconds: f64,
    pub orders_per_second: f64,
    pub register_calls: u64,
    /// 429 answers of the simulator during the run.
    pub rate_limited: u64,
    /// From the first order sent to the last one acknowledged (stored by JetStream or answered
    /// over gRPC): the orders are in.
    pub ingest_seconds: f64,
    /// Cart message (or gRPC call) → accepted registration, ms, sorted.
    pub latencies_ms: Vec<f64>,
    /// Each accepted order: when it was sent and accepted (for [`crate::profile`]).
    pub sent: Vec<crate::profile::Sent>,
    pub i1: I1,
}

impl Run {
    pub fn rows_per_call(&self) -> f64 {
        self.orders as f64 / self.register_calls.max(1) as f64
    }

    pub fn latency(&self, q: f64) -> f64 {
        crate::report::percentile(&self.latencies_ms, q)
    }
}

fn unix_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Registrations accepted, register calls and 429s over every key.
async fn totals(fleet: &Fleet, keys: &[String]) -> anyhow::Result<(u64, u64, u64)> {
    let counters =
        futures::future::try_join_all(keys.iter().map(|key| fleet.sim.counters(key))).await?;
    Ok(counters
        .iter()
        .fold((0, 0, 0), |(accepted, calls, limited), c| {
            (
                accepted + c.registrations_accepted,
                calls + c.requests.get("register").copied().unwrap_or(0),
                limited + c.rate_limited,
            )
        }))
}

/// Sends orders `{tag}-{i}` round robin over `shops` (shop → key) as `offer` says, waits until
/// every one is registered (or `settle` passes), and checks I1.
pub async fn run(
    fleet: &Fleet,
    shops: &BTreeMap<String, String>,
    driver: Driver,
    offer: Offer,
    tag: &str,
    settle: Duration,
) -> anyhow::Result<Run> {
    let shop_list: Vec<(String, String)> =
        shops.iter().map(|(s, k)| (s.clone(), k.clone())).collect();
    let keys: Vec<String> = shop_list.iter().map(|(_, k)| k.clone()).collect();
    let (accepted_before, calls_before, limited_before) = totals(fleet, &keys).await?;

    // The simulator's progress, for the backlog cap.
    let registered = Arc::new(AtomicU64::new(0));
    let stop_polling = Arc::new(tokio::sync::Notify::new());
    let poller = {
        let (registered, stop, keys) = (registered.clone(), stop_polling.clone(), keys.clone());
        let sim = fleet.sim.clone();
        tokio::spawn(async move {
            loop {
                let counters =
                    futures::future::join_all(keys.iter().map(|key| sim.counters(key))).await;
                let total: u64 = counters
                    .iter()
                    .flatten()
                    .map(|c| c.registrations_accepted)
                    .sum();
                registered.store(total.saturating_sub(accepted_before), Ordering::Relaxed);
                tokio::select! {
                    _ = stop.notified() => return,
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
            }
        })
    };

    let sender = Sender::new(fleet, driver).await?;
    let sent = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let order_at = |i: usize| {
        let (shop, _) = &shop_list[i % shop_list.len()];
        (shop.clone(), format!("{tag}-{i:07}"))
    };
    let published: Vec<(usize, i64)> = match offer {
        Offer::Saturate {
            seconds,
            in_flight,
            backlog,
        } => {
            let window = Duration::from_secs_f64(seconds);
            let items = futures::stream::iter(0usize..)
                .then(|i| {
                    let (registered, sent) = (registered.clone(), sent.clone());
                    async move {
                        while sent.load(Ordering::Relaxed)
                            > registered.load(Ordering::Relaxed) + backlog
                            && start.elapsed() < window
                        {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        sent.fetch_add(1, Ordering::Relaxed);
                        i
                    }
                })
                .take_while(|_| std::future::ready(start.elapsed() < window))
                .map(|i| {
                    let (shop, order_no) = order_at(i);
                    let sender = sender.clone();
                    async move {
                        let at = unix_ms();
                        sender.send(&shop, &order_no).await.map(|()| (i, at))
                    }
                })
                .buffer_unordered(in_flight);
            items
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<anyhow::Result<_>>()?
        }
        Offer::Burst { orders, in_flight } => futures::stream::iter(0..orders)
            .map(|i| {
                let (shop, order_no) = order_at(i);
                let sender = sender.clone();
                async move {
                    let at = unix_ms();
                    sender.send(&shop, &order_no).await.map(|()| (i, at))
                }
            })
            .buffer_unordered(in_flight)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<_>>()?,
        Offer::Rate {
            per_second,
            seconds,
        } => {
            let count = (per_second * seconds).round() as usize;
            let mut tasks = Vec::with_capacity(count);
            for i in 0..count {
                tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / per_second))
                    .await;
                let (shop, order_no) = order_at(i);
                let sender = sender.clone();
                tasks.push(tokio::spawn(async move {
                    let at = unix_ms();
                    sender.send(&shop, &order_no).await.map(|()| (i, at))
                }));
            }
            let mut published = Vec::with_capacity(count);
            for task in tasks {
                published.push(task.await??);
            }
            published
        }
    };
    let count = published.len();
    let ingest_seconds = start.elapsed().as_secs_f64();

    // Wait until all are registered.
    let deadline = Instant::now() + settle;
    loop {
        let (accepted, _, _) = totals(fleet, &keys).await?;
        if accepted - accepted_before >= count as u64 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_polling.notify_one();
    let _ = poller.await;
    let (_, calls_after, limited_after) = totals(fleet, &keys).await?;

    // I1 and the latencies from what the simulator received per order number.
    let mut sent_at: BTreeMap<(String, String), i64> = BTreeMap::new();
    for (i, at) in published {
        sent_at.insert(order_at(i), at);
    }
    let mut i1 = I1 {
        orders: count,
        ..I1::default()
    };
    let mut latencies = Vec::with_capacity(count);
    let mut accepted = Vec::with_capacity(count);
    let mut first_sent = i64::MAX;
    let mut last_accepted = i64::MIN;
    let prefix = format!("{tag}-");
    for (shop, key) in &shop_list {
        let received = fleet.sim.order_nos(key).await?;
        for order_no in received.keys() {
            if order_no.starts_with(&prefix)
                && !sent_at.contains_key(&(shop.clone(), order_no.clone()))
            {
                i1.twice.push(format!("{shop}/{order_no} (never sent)"));
            }
        }
        for ((order_shop, order_no), at) in sent_at.range((shop.clone(), String::new())..) {
            if order_shop != shop {
                break;
            }
            first_sent = first_sent.min(*at);
            match received.get(order_no) {
                None => i1.missing.push(format!("{shop}/{order_no}")),
                Some(c) if c.accepted == 0 => i1.missing.push(format!("{shop}/{order_no}")),
                Some(c) => {
                    if c.received > 1 || c.accepted > 1 {
                        i1.twice
                            .push(format!("{shop}/{order_no} ({} rows received)", c.received));
                    }
                    if let Some(accepted_at) = c.first_accepted_unix_ms {
                        latencies.push((accepted_at - at) as f64);
                        last_accepted = last_accepted.max(accepted_at);
                        accepted.push(crate::profile::Sent {
                            order_no: order_no.clone(),
                            sent_ms: *at,
                            accepted_ms: accepted_at,
                        });
                    }
                }
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    let seconds = if last_accepted >= first_sent {
        ((last_accepted - first_sent) as f64 / 1_000.0).max(0.001)
    } else {
        f64::NAN
    };
    Ok(Run {
        orders: count,
        seconds,
        orders_per_second: if i1.missing.is_empty() {
            count as f64 / seconds
        } else {
            f64::NAN
        },
        register_calls: calls_after.saturating_sub(calls_before),
        rate_limited: limited_after.saturating_sub(limited_before),
        ingest_seconds,
        latencies_ms: latencies,
        sent: accepted,
        i1,
    })
}

/// Sends one order: a cart message or a gRPC call.
#[derive(Clone)]
enum Sender {
    Nats {
        js: async_nats::jetstream::Context,
        subjects: Arc<wmslink_platform::nats::Subjects>,
    },
    Grpc(crate::OrdersClient),
}

impl Sender {
    async fn new(fleet: &Fleet, driver: Driver) -> anyhow::Result<Self> {
        Ok(match driver {
            Driver::Nats => Self::Nats {
                js: fleet.jetstream().await?,
                subjects: Arc::new(fleet.subjects.clone()),
            },
            Driver::Grpc => Self::Grpc(fleet.orders()?),
        })
    }

    async fn send(&self, shop: &str, order_no: &str) -> anyhow::Result<()> {
        let order: pb::Order = demo::order(shop, order_no, 1, STATUS_READY, "card");
        match self {
            Self::Nats { js, subjects } => {
                let shop_id = ShopId::parse(shop).context("shop id")?;
                let payload = prost::Message::encode_to_vec(&order);
                let subject = subjects.cart_order_upserted(&shop_id);
                let mut tries = 0;
                loop {
                    let ack = match js.publish(subject.clone(), payload.clone().into()).await {
                        Ok(ack) => ack.await.map(|_| ()).map_err(anyhow::Error::from),
                        Err(err) => Err(err.into()),
                    };
                    match ack {
                        Ok(()) => return Ok(()),
                        Err(err) if tries >= 10 => bail!("publishing {order_no}: {err}"),
                        Err(_) => tries += 1,
                    }
                }
            }
            Self::Grpc(client) => {
                client
                    .clone()
                    .upsert_order(pb::UpsertOrderRequest { order: Some(order) })
                    .await
                    .with_context(|| format!("UpsertOrder {order_no}"))?;
                Ok(())
            }
        }
    }
}
