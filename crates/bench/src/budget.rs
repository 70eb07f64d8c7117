//! The WMS budget under the real limit (1 request/s, burst 60 per access key, on the simulator's
//! accounts and in the services' own limiter): a sale-day burst of one shop, a mass
//! cancellation, and a status-sync pass over many open shipments while the dispatcher sends for
//! the same key. Each on a shop (an access key, a full bucket) of its own.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use tokio::time::Instant;
use wmslink_platform::shop::ShopId;
use wmslink_proto::sync::v1 as sync;
use wmslink_proto::sync::v1::sync_service_client::SyncServiceClient;
use wmslink_soak::system::bearer;
use wmslink_tools::demo::{self, STATUS_CANCELLED};

use crate::fleet::{Fleet, WmsLimit};
use crate::pipeline::{self, Driver, I1, Offer};

/// Rows the dispatcher may put in one registration, and orders one status search may ask for.
pub const ROWS_PER_REGISTRATION: usize = 200;
pub const ORDERS_PER_SEARCH: usize = 100;

/// Calls beyond the bucket, at the sustained rate: seconds.
fn beyond_burst(calls: usize) -> f64 {
    calls.saturating_sub(WmsLimit::REAL_BURST as usize) as f64 / WmsLimit::REAL_PER_SECOND
}

pub struct Burst {
    pub orders: usize,
    pub ingest_seconds: f64,
    pub drain_seconds: f64,
    /// Ingest time plus the calls of full batches beyond the burst at 1/s (issue 15).
    pub bound_seconds: f64,
    pub register_calls: u64,
    pub rate_limited: u64,
    pub i1: I1,
}

/// `orders` orders of one shop at once over gRPC (32 callers), drained within the limit.
pub async fn burst(fleet: &Fleet, orders: usize, tag: &str) -> anyhow::Result<Burst> {
    let shops = fleet.shops(&format!("burst{tag}"), 1).await?;
    let calls = orders.div_ceil(ROWS_PER_REGISTRATION);
    let settle = Duration::from_secs_f64(beyond_burst(calls) * 3.0 + 300.0);
    let run = pipeline::run(
        fleet,
        &shops,
        Driver::Grpc,
        Offer::Burst {
            orders,
            in_flight: 32,
        },
        &format!("B{tag}"),
        settle,
    )
    .await?;
    Ok(Burst {
        orders,
        ingest_seconds: run.ingest_seconds,
        drain_seconds: run.seconds,
        bound_seconds: run.ingest_seconds + beyond_burst(calls),
        register_calls: run.register_calls,
        rate_limited: run.rate_limited,
        i1: run.i1,
    })
}

/// Waits until the key's bucket is full again after `calls` calls (at the sustained rate).
async fn refill(calls: u64) {
    let seconds = (calls as f64 / WmsLimit::REAL_PER_SECOND).min(f64::from(WmsLimit::REAL_BURST));
    tokio::time::sleep(Duration::from_secs_f64(seconds + 1.0)).await;
}

pub struct Cancellation {
    pub orders: usize,
    pub seconds: f64,
    /// The cancels beyond the burst at 1/s (one order per cancel call).
    pub bound_seconds: f64,
    pub cancel_calls: u64,
    pub rate_limited: u64,
    /// Orders not cancelled in the WMS by the end, or cancelled more than once.
    pub wrong: Vec<String>,
}

/// Registers `orders` orders of a shop of its own, lets the bucket fill, then the cart cancels
/// every one (a newer revision in a cancelled status, over NATS); timed until the WMS has
/// cancelled them all.
pub async fn mass_cancel(fleet: &Fleet, orders: usize, tag: &str) -> anyhow::Result<Cancellation> {
    let shops = fleet.shops(&format!("cancel{tag}"), 1).await?;
    let (shop, key) = shops.iter().next().context("a shop")?;
    let order_tag = format!("C{tag}");
    let registered = pipeline::run(
        fleet,
        &shops,
        Driver::Grpc,
        Offer::Burst {
            orders,
            in_flight: 32,
        },
        &order_tag,
        Duration::from_secs(600),
    )
    .await?;
    if !registered.i1.holds() {
        bail!(
            "registering before the cancellation: {}",
            registered.i1.describe()
        );
    }
    refill(registered.register_calls).await;

    let before = fleet.sim.counters(key).await?;
    let js = fleet.jetstream().await?;
    let subject = fleet
        .subjects
        .cart_order_upserted(&ShopId::parse(shop).context("shop id")?);
    let start = Instant::now();
    let published = futures::stream::iter(0..orders)
        .map(|i| {
            let order = demo::order(
                shop,
                &format!("{order_tag}-{i:07}"),
                2,
                STATUS_CANCELLED,
                "card",
            );
            let (js, subject) = (js.clone(), subject.clone());
            async move {
                js.publish(subject, prost::Message::encode_to_vec(&order).into())
                    .await?
                    .await?;
                Ok::<_, anyhow::Error>(())
            }
        })
        .buffer_unordered(256)
        .collect::<Vec<_>>()
        .await;
    for result in published {
        result?;
    }
    let bound_seconds = beyond_burst(orders);
    let deadline = Instant::now() + Duration::from_secs_f64(bound_seconds * 3.0 + 300.0);
    loop {
        let now = fleet.sim.counters(key).await?;
        if now.cancels - before.cancels >= orders as u64 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seconds = start.elapsed().as_secs_f64();
    let after = fleet.sim.counters(key).await?;
    let wms = fleet.sim.orders(key).await?;
    let mut cancelled: BTreeMap<String, usize> = BTreeMap::new();
    for order in wms.iter().filter(|o| o.cancel_flag == 1) {
        *cancelled.entry(order.order_no.clone()).or_default() += 1;
    }
    let mut wrong = Vec::new();
    for i in 0..orders {
        let order_no = format!("{order_tag}-{i:07}");
        match cancelled.get(&order_no) {
            Some(1) => {}
            Some(n) => wrong.push(format!("{shop}/{order_no} cancelled {n} times")),
            None => wrong.push(format!("{shop}/{order_no} not cancelled")),
        }
    }
    Ok(Cancellation {
        orders,
        seconds,
        bound_seconds,
        cancel_calls: after.requests.get("cancel").copied().unwrap_or(0)
            - before.requests.get("cancel").copied().unwrap_or(0),
        rate_limited: after.rate_limited - before.rate_limited,
        wrong,
    })
}

pub struct StatusSync {
    pub shipments: usize,
    pub seconds: f64,
    /// The pass's searches plus the dispatcher's calls beyond the burst, at 1/s.
    pub bound_seconds: f64,
    pub search_calls: u64,
    pub dispatcher_calls: u64,
    pub rate_limited: u64,
    pub outcome: String,
    pub i1: I1,
}

/// Registers `shipments` open orders of a shop of its own, lets the bucket fill, then runs a
/// status-sync pass (`RunSync`) while the cart sends `alongside` more orders of the same shop,
/// so the dispatcher spends the same key's budget.
pub async fn status_sync(
    fleet: &Fleet,
    shipments: usize,
    alongside: usize,
    tag: &str,
) -> anyhow::Result<StatusSync> {
    let shops = fleet.shops(&format!("sync{tag}"), 1).await?;
    let (shop, key) = shops.iter().next().context("a shop")?;
    let registered = pipeline::run(
        fleet,
        &shops,
        Driver::Grpc,
        Offer::Burst {
            orders: shipments,
            in_flight: 32,
        },
        &format!("S{tag}"),
        Duration::from_secs(600),
    )
    .await?;
    if !registered.i1.holds() {
        bail!("registering before the sync: {}", registered.i1.describe());
    }
    refill(registered.register_calls).await;

    let before = fleet.sim.counters(key).await?;
    // A pass over many shipments at 1/s outlasts the usual 30 s client timeout.
    let channel =
        tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{}", fleet.ports.sync))?
            .timeout(Duration::from_secs(3_600))
            .connect_lazy();
    let mut client = SyncServiceClient::with_interceptor(channel, bearer()?);
    let alongside_tag = format!("SA{tag}");
    let start = Instant::now();
    let dispatcher = pipeline::run(
        fleet,
        &shops,
        Driver::Grpc,
        Offer::Burst {
            orders: alongside,
            in_flight: 32,
        },
        &alongside_tag,
        Duration::from_secs(600),
    );
    let pass = async {
        client
            .run_sync(sync::RunSyncRequest {
                shop_id: shop.clone(),
                from: None,
                to: None,
            })
            .await
            .context("RunSync")
    };
    let (dispatcher, pass) = tokio::join!(dispatcher, pass);
    let seconds = start.elapsed().as_secs_f64();
    let dispatcher = dispatcher?;
    let run = pass?.into_inner().run.unwrap_or_default();
    let pass_seconds = match (&run.started_at, &run.finished_at) {
        (Some(from), Some(to)) => {
            (to.seconds - from.seconds) as f64 + f64::from(to.nanos - from.nanos) / 1e9
        }
        _ => seconds,
    };
    let after = fleet.sim.counters(key).await?;
    let search_calls = after.requests.get("search").copied().unwrap_or(0)
        - before.requests.get("search").copied().unwrap_or(0);
    Ok(StatusSync {
        shipments,
        seconds: pass_seconds,
        bound_seconds: beyond_burst(
            shipments.div_ceil(ORDERS_PER_SEARCH) + dispatcher.register_calls as usize,
        ),
        search_calls,
        dispatcher_calls: dispatcher.register_calls,
        rate_limited: after.rate_limited - before.rate_limited,
        outcome: format!(
            "{} ({} pass, asked {}, {} WMS calls by its count)",
            run.outcome, run.pass, run.asked, run.wms_calls
        ),
        i1: dispatcher.i1,
    })
}
