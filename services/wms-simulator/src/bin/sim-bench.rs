//! `sim-bench`: start the simulator in-process (rate limit off) and drive it over loopback
//! with a bounded number of requests, printing throughput and latency per workload.
//!
//! ```text
//! cargo run --release -p wmslink-wms-simulator --bin sim-bench -- [--requests N] [--concurrency C] [--orders M]
//! ```
//! Defaults: 20,000 requests per workload, 32 concurrent connections, 2,000 preloaded orders.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use wmslink_wms_simulator::{KeyOptions, SimConfig, SimRateLimit, Simulator};

const KEY: &str = "bench-key";

#[derive(Clone, Copy, Debug)]
enum Workload {
    Get,
    Search,
    Register,
    Mixed,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Self::Get => "GET /order/{id}",
            Self::Search => "GET /order/search (in=10)",
            Self::Register => "POST /order/ (1 row)",
            Self::Mixed => "mixed 60/30/10",
        }
    }
}

struct Args {
    requests: usize,
    concurrency: usize,
    orders: usize,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        requests: 20_000,
        concurrency: 32,
        orders: 2_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        let n: usize = value.parse().with_context(|| format!("{flag}: {value}"))?;
        match flag.as_str() {
            "--requests" => args.requests = n.clamp(1, 1_000_000),
            "--concurrency" => args.concurrency = n.clamp(1, 1024),
            "--orders" => args.orders = n.clamp(10, 100_000),
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(args)
}

fn row(order_no: &str) -> Value {
    json!({
        "order_no": order_no, "robot_id": 12, "shipper_id": 3, "delivery_method_id": 2,
        "payment_method_id": 7, "order_date": "2026-11-28T09:58:00+09:00",
        "orderer": {"name": "山田太郎", "zip": "150-0001", "pref": "東京都", "address1": "渋谷区1-1", "tel": "03-0000-0000"},
        "shipping": {"name": "山田太郎", "zip": "150-0001", "pref": "東京都", "address1": "渋谷区1-1", "tel": "03-0000-0000"},
        "product_total": 5400, "shipping_fee": 600, "cod_fee": 0, "discount": 0, "tax_total": 545, "pay_total": 6000,
        "details": [{"sku": "SKU-1", "name": "Tea", "quantity": 2, "unit_price": 2700}]
    })
}

/// xorshift64*: enough randomness to spread requests over orders.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

struct Outcome {
    latencies_us: Vec<u32>,
    errors: usize,
}

struct Ctx {
    http: reqwest::Client,
    base: String,
    ids: Vec<i64>,
    nos: Vec<String>,
    next_no: AtomicUsize,
}

async fn one(ctx: &Ctx, kind: Workload, rng: &mut Rng) -> bool {
    let kind = match kind {
        Workload::Mixed => match rng.below(10) {
            0..=5 => Workload::Get,
            6..=8 => Workload::Search,
            _ => Workload::Register,
        },
        k => k,
    };
    let req = match kind {
        Workload::Get => {
            let id = ctx.ids[rng.below(ctx.ids.len())];
            ctx.http.get(format!("{}/order/{id}", ctx.base))
        }
        Workload::Search => {
            let start = rng.below(ctx.nos.len().saturating_sub(10));
            let values = ctx.nos[start..(start + 10).min(ctx.nos.len())].join(",");
            ctx.http.get(format!(
                "{}/order/search?order_no-in={values}&limit=200",
                ctx.base
            ))
        }
        Workload::Register | Workload::Mixed => {
            let n = ctx.next_no.fetch_add(1, Ordering::Relaxed);
            ctx.http
                .post(format!("{}/order/", ctx.base))
                .json(&json!({ "data": [row(&format!("BENCH-NEW-{n:08}"))] }))
        }
    };
    match req.header("X-API-KEY", KEY).send().await {
        Ok(resp) => {
            let ok = resp.status().is_success();
            match resp.bytes().await {
                Ok(body) => ok && body.windows(13).any(|w| w == br#""result":"OK""#),
                Err(_) => false,
            }
        }
        Err(_) => false,
    }
}

async fn run(
    ctx: Arc<Ctx>,
    kind: Workload,
    requests: usize,
    concurrency: usize,
) -> (Outcome, Duration) {
    let counter = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let ctx = ctx.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng =
                Rng(0x9e37_79b9_7f4a_7c15 ^ (w as u64 + 1).wrapping_mul(0x1234_5678_9abc_def1));
            let mut out = Outcome {
                latencies_us: Vec::new(),
                errors: 0,
            };
            while counter.fetch_add(1, Ordering::Relaxed) < requests {
                let t = Instant::now();
                let ok = one(&ctx, kind, &mut rng).await;
                out.latencies_us
                    .push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                if !ok {
                    out.errors += 1;
                }
            }
            out
        }));
    }
    let mut all = Outcome {
        latencies_us: Vec::with_capacity(requests),
        errors: 0,
    };
    for t in tasks {
        if let Ok(o) = t.await {
            all.latencies_us.extend(o.latencies_us);
            all.errors += o.errors;
        }
    }
    (all, start.elapsed())
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i.min(sorted.len() - 1)]) / 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = SimConfig {
        rate_limit: SimRateLimit::off(),
        ..SimConfig::for_tests()
    };
    let sim = Simulator::build(config).await?.spawn();
    sim.state()
        .add_key(KEY, KeyOptions::default())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let base = sim.base_url();

    // Preload orders in batches of 200.
    let nos: Vec<String> = (0..args.orders).map(|i| format!("BENCH-{i:08}")).collect();
    let mut ids = Vec::with_capacity(args.orders);
    for chunk in nos.chunks(200) {
        let body = json!({ "data": chunk.iter().map(|n| row(n)).collect::<Vec<_>>() });
        let resp: Value = http
            .post(format!("{base}/order/"))
            .header("X-API-KEY", KEY)
            .json(&body)
            .send()
            .await?
            .json()
            .await?;
        if resp["result"] != "OK" {
            bail!("preload failed: {resp}");
        }
        for r in resp["data"].as_array().into_iter().flatten() {
            ids.push(r["order_id"].as_i64().context("order_id")?);
        }
    }
    let ctx = Arc::new(Ctx {
        http,
        base,
        ids,
        nos,
        next_no: AtomicUsize::new(0),
    });

    // Warm-up (connections, allocator).
    let _ = run(
        ctx.clone(),
        Workload::Get,
        2_000.min(args.requests),
        args.concurrency,
    )
    .await;

    println!(
        "wms-simulator bench: {} requests per workload, {} connections, {} preloaded orders, rate limit off, {} CPUs",
        args.requests,
        args.concurrency,
        args.orders,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!(
        "| {:<28} | {:>9} | {:>8} | {:>9} | {:>9} | {:>9} | {:>6} |",
        "workload", "requests", "req/s", "p50 ms", "p99 ms", "max ms", "errors"
    );
    println!(
        "|{:-<30}|{:->11}|{:->10}|{:->11}|{:->11}|{:->11}|{:->8}|",
        "", "", "", "", "", "", ""
    );
    let mut total_errors = 0;
    for kind in [
        Workload::Get,
        Workload::Search,
        Workload::Register,
        Workload::Mixed,
    ] {
        let (mut out, elapsed) = run(ctx.clone(), kind, args.requests, args.concurrency).await;
        out.latencies_us.sort_unstable();
        let n = out.latencies_us.len();
        println!(
            "| {:<28} | {:>9} | {:>8.0} | {:>9.2} | {:>9.2} | {:>9.2} | {:>6} |",
            kind.name(),
            n,
            n as f64 / elapsed.as_secs_f64(),
            pct(&out.latencies_us, 0.50),
            pct(&out.latencies_us, 0.99),
            pct(&out.latencies_us, 1.0),
            out.errors
        );
        total_errors += out.errors;
    }
    sim.stop().await?;
    if total_errors > 0 {
        bail!("{total_errors} requests failed");
    }
    Ok(())
}
