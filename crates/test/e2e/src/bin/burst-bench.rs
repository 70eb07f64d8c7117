//! Sale-day burst: N orders arrive at once for one shop; how long until every one is registered
//! in the WMS, within the WMS's rate limit (1 request/s, burst 60)? Runs the whole system
//! in-process against the local PostgreSQL and NATS and prints a table.
//!
//! `cargo run --release -p wmslink-e2e --bin burst-bench -- --orders 5000`

use std::time::{Duration, Instant};

use clap::Parser;
use wmslink_e2e::{STATUS_READY, System, SystemOptions, order};
use wmslink_proto::orders::v1 as orders;

#[derive(Parser)]
struct Args {
    /// Orders in the burst.
    #[arg(long, default_value_t = 5_000)]
    orders: usize,
    /// Concurrent gRPC upserts from the "cart".
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let system = System::start(SystemOptions::default()).await?;
    let shop = wmslink_testkit::unique("bench-");
    let key = system.enable_shop(&shop).await?;
    let state = system.simulator.state();
    let before = state.counters(&key)?;

    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..args.concurrency {
        let mut client = system.orders();
        let shop = shop.clone();
        let (count, step) = (args.orders, args.concurrency);
        workers.push(tokio::spawn(async move {
            let mut n = worker;
            while n < count {
                let order = order(&shop, &format!("BURST-{n:07}"), 1, STATUS_READY);
                client
                    .upsert_order(orders::UpsertOrderRequest { order: Some(order) })
                    .await?;
                n += step;
            }
            Ok::<_, tonic::Status>(())
        }));
    }
    for worker in workers {
        worker.await??;
    }
    let ingested = started.elapsed();

    let deadline = Duration::from_secs(args.timeout_secs);
    let target = before.registrations_accepted + args.orders as u64;
    loop {
        let counters = state.counters(&key)?;
        if counters.registrations_accepted >= target {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < deadline,
            "only {} of {} registered after {deadline:?}",
            counters.registrations_accepted - before.registrations_accepted,
            args.orders
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained = started.elapsed();
    let after = state.counters(&key)?;
    let register_calls = after.requests.get("register").copied().unwrap_or(0)
        - before.requests.get("register").copied().unwrap_or(0);

    println!(
        "| orders | ingest via gRPC | all registered in WMS | orders/s end to end | register calls | 429s | duplicates refused |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| {} | {:.2} s | {:.2} s | {:.0} | {} | {} | {} |",
        args.orders,
        ingested.as_secs_f64(),
        drained.as_secs_f64(),
        args.orders as f64 / drained.as_secs_f64(),
        register_calls,
        after.rate_limited - before.rate_limited,
        after.duplicates_refused - before.duplicates_refused,
    );
    anyhow::ensure!(
        after.registrations_accepted - before.registrations_accepted == args.orders as u64,
        "I1: registrations != orders"
    );
    system.stop().await;
    Ok(())
}
