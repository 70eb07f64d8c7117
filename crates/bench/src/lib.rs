//! `wmslink-bench` (issue 15): one command that starts the system as in production and measures
//! the whole pipeline against the machine's own limits in the same run. See
//! `crates/bench/README.md` and `docs/benchmarks.md`.
//!
//! - [`fleet`]: the servers and the service processes (shared with the soak).
//! - [`limits`]: PostgreSQL commits, JetStream publishes, the simulator's request rate.
//! - [`pipeline`]: end-to-end throughput and latency, and I1.
//! - [`profile`]: where an order's time goes, stage by stage.
//! - [`footprint`]: resident memory of each service.
//! - [`report`]: median/min/max, targets, the table and the docs section.

pub mod budget;
pub mod cpu;
pub mod fleet;
pub mod footprint;
pub mod limits;
pub mod pipeline;
pub mod profile;
pub mod report;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use fleet::{Fleet, WmsLimit};
use pipeline::{Driver, I1, Offer};
use report::{Figure, Target};

pub use wmslink_soak::checks::OrdersClient;

/// `all` or `quick`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Every figure, repeated, sustained loads (tens of minutes).
    All,
    /// One repetition, short loads, fewer orders (under two minutes of running).
    Quick,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub mode: Mode,
    pub repetitions: usize,
    pub shops: usize,
    /// Seconds the saturating NATS load lasts.
    pub sustain_secs: f64,
    /// Most orders sent and not yet registered during a saturating load.
    pub backlog: u64,
    /// Orders of the one-shop burst under the real limit.
    pub burst_orders: usize,
    /// Orders cancelled at once under the real limit (one cancel call each).
    pub cancel_orders: usize,
    /// Orders of the shop the order list is measured on.
    pub list_orders: i64,
    /// Measured queries per filter combination of the order list.
    pub list_queries: usize,
    /// Open shipments one status-sync pass goes over.
    pub sync_shipments: usize,
    /// Orders the cart sends for the same shop during that pass.
    pub sync_alongside: usize,
    pub bin_dir: PathBuf,
    pub keep: bool,
}

impl Options {
    pub fn new(mode: Mode, bin_dir: PathBuf) -> Self {
        match mode {
            Mode::All => Self {
                mode,
                repetitions: 3,
                shops: 100,
                sustain_secs: 60.0,
                backlog: 5_000,
                burst_orders: 20_000,
                cancel_orders: 600,
                list_orders: 1_000_000,
                list_queries: 300,
                sync_shipments: 10_000,
                sync_alongside: 2_000,
                bin_dir,
                keep: false,
            },
            Mode::Quick => Self {
                mode,
                repetitions: 1,
                shops: 100,
                sustain_secs: 10.0,
                backlog: 1_000,
                burst_orders: 2_000,
                cancel_orders: 50,
                list_orders: 50_000,
                list_queries: 50,
                sync_shipments: 1_000,
                sync_alongside: 200,
                bin_dir,
                keep: false,
            },
        }
    }

    fn quick(&self) -> bool {
        self.mode == Mode::Quick
    }
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Outcome {
    pub figures: Vec<Figure>,
    pub i1: I1,
    pub crashes: Vec<String>,
    /// Lines to print under the table (what was run, per-run details).
    pub notes: Vec<String>,
}

impl Outcome {
    /// Records a line about a run, and says it at once.
    fn note(&mut self, line: String) {
        eprintln!("bench:   {line}");
        self.notes.push(line);
    }

    pub fn passed(&self) -> bool {
        self.i1.holds() && self.crashes.is_empty()
    }
}

/// The figures, by key, filled repetition by repetition.
struct Figures {
    order: Vec<String>,
    by_key: BTreeMap<String, Figure>,
}

impl Figures {
    fn new() -> Self {
        Self {
            order: Vec::new(),
            by_key: BTreeMap::new(),
        }
    }

    fn add(&mut self, key: &str, make: impl FnOnce() -> Figure, value: f64) {
        if !self.by_key.contains_key(key) {
            self.order.push(key.to_owned());
            self.by_key.insert(key.to_owned(), make());
        }
        if let Some(figure) = self.by_key.get_mut(key) {
            figure.values.push(value);
        }
    }

    fn median(&self, key: &str) -> f64 {
        self.by_key.get(key).map_or(f64::NAN, Figure::median)
    }

    fn set_ratio(&mut self, key: &str, ratio: String) {
        if let Some(figure) = self.by_key.get_mut(key) {
            figure.ratio = Some(ratio);
        }
    }

    fn into_vec(mut self) -> Vec<Figure> {
        self.order
            .iter()
            .filter_map(|key| self.by_key.remove(key))
            .collect()
    }
}

fn percent(part: f64, whole: f64) -> String {
    let share = 100.0 * part / whole;
    if share < 1.0 {
        format!("{share:.2}%")
    } else {
        format!("{share:.1}%")
    }
}

/// Runs the benchmark.
pub async fn run(options: &Options) -> anyhow::Result<Outcome> {
    wmslink_platform::install_crypto_provider();
    let mut outcome = Outcome::default();
    let mut figures = Figures::new();
    let quick = options.quick();

    // Part 1: the WMS limit off everywhere; the pipeline against the machine.
    eprintln!("bench: starting the system (limit off)");
    let mut fleet = Fleet::start(&options.bin_dir, WmsLimit::Off, &[], options.keep).await?;
    let result = limit_off(options, &fleet, &mut figures, &mut outcome).await;
    outcome.crashes.extend(fleet.crashed());
    let crashes = fleet.stop();
    outcome.crashes.extend(crashes);
    outcome.crashes.dedup();
    result?;

    // Part 2: the WMS's real limit; the budget.
    eprintln!("bench: starting the system (the WMS's limit, 1/s burst 60)");
    let mut fleet = Fleet::start(&options.bin_dir, WmsLimit::Real, &[], options.keep).await?;
    let result = real_limit(options, &fleet, &mut figures, &mut outcome).await;
    outcome.crashes.extend(fleet.crashed());
    let crashes = fleet.stop();
    outcome.crashes.extend(crashes);
    outcome.crashes.dedup();
    result?;
    let _ = quick;

    outcome.figures = figures.into_vec();
    Ok(outcome)
}

async fn limit_off(
    options: &Options,
    fleet: &Fleet,
    figures: &mut Figures,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let quick = options.quick();
    eprintln!("bench: setting up {} shops", options.shops);
    let shops = fleet.shops("bench", options.shops).await?;
    let idle = footprint::sample(&fleet.pids());
    // How long the orders of a run may take to be registered after the last was sent; those
    // not registered by then count as missing (I1).
    let settle = Duration::from_secs(if quick { 300 } else { 900 });
    for rep in 0..options.repetitions {
        eprintln!("bench: repetition {}: machine limits", rep + 1);
        let limits = limits::measure(fleet, if quick { 2.0 } else { 5.0 }).await?;
        let machine =
            |name: &'static str, unit: &'static str| move || Figure::new("machine", name, unit);
        figures.add(
            "pg1",
            machine("PostgreSQL single-row commits, 1 connection", "commits/s"),
            limits.pg_commits_1,
        );
        figures.add(
            "pg4",
            machine("PostgreSQL single-row commits, 4 connections", "commits/s"),
            limits.pg_commits_4,
        );
        figures.add(
            "js1",
            machine(
                "JetStream publish with ack, awaited one by one (1 KiB)",
                "msgs/s",
            ),
            limits.js_one_by_one,
        );
        figures.add(
            "js256",
            machine(
                "JetStream publish with ack, 256 in flight (1 KiB)",
                "msgs/s",
            ),
            limits.js_in_flight,
        );
        figures.add(
            "sim",
            machine(
                "simulator, limit off: one-row registrations, 32 connections",
                "requests/s",
            ),
            limits.sim_requests,
        );

        eprintln!(
            "bench: repetition {}: NATS, {} shops, saturating for {} s",
            rep + 1,
            options.shops,
            options.sustain_secs
        );
        let cpu_before = cpu::Sample::take(&fleet.cpu_parts());
        let nats = pipeline::run(
            fleet,
            &shops,
            Driver::Nats,
            Offer::Saturate {
                seconds: options.sustain_secs,
                in_flight: 256,
                backlog: options.backlog,
            },
            &format!("N{rep}"),
            settle,
        )
        .await?;
        outcome.note(format!(
            "NATS run {}: {} orders in {:.1} s, {} register calls, I1: {}",
            rep + 1,
            nats.orders,
            nats.seconds,
            nats.register_calls,
            nats.i1.describe()
        ));
        figures.add(
            "nats",
            || {
                Figure::new(
                    "end to end",
                    "cart NATS message → WMS registration, 100 shops, 256 in flight",
                    "orders/s",
                )
                .target(Target::AtLeast(2_000.0))
            },
            nats.orders_per_second,
        );
        figures.add(
            "nats_rows",
            || Figure::new("end to end", "rows per register call (NATS run)", "rows"),
            nats.rows_per_call(),
        );
        figures.add(
            "nats_p99",
            || Figure::new("end to end", "p99 message → registration (NATS run)", "ms"),
            nats.latency(0.99),
        );
        add_profile(
            fleet,
            figures,
            outcome,
            &format!("N{rep}"),
            &nats,
            "NATS run",
            rep,
        )
        .await?;
        let cpu_used = cpu::Sample::take(&fleet.cpu_parts()).since(&cpu_before);
        add_cpu(figures, outcome, "NATS run", &cpu_used, nats.orders);
        outcome.i1.absorb(nats.i1);

        eprintln!(
            "bench: repetition {}: gRPC UpsertOrder, 32 callers",
            rep + 1
        );
        let grpc = pipeline::run(
            fleet,
            &shops,
            Driver::Grpc,
            Offer::Saturate {
                seconds: if quick { 5.0 } else { 30.0 },
                in_flight: 32,
                backlog: options.backlog,
            },
            &format!("G{rep}"),
            settle,
        )
        .await?;
        outcome.note(format!(
            "gRPC run {}: {} orders in {:.1} s, {} register calls, I1: {}",
            rep + 1,
            grpc.orders,
            grpc.seconds,
            grpc.register_calls,
            grpc.i1.describe()
        ));
        figures.add(
            "grpc",
            || {
                Figure::new(
                    "end to end",
                    "gRPC UpsertOrder → WMS registration, 100 shops, 32 callers",
                    "orders/s",
                )
            },
            grpc.orders_per_second,
        );
        outcome.i1.absorb(grpc.i1);

        for (rate, key50, key95, key99) in [
            (50.0, "l50_50", "l50_95", "l50_99"),
            (200.0, "l200_50", "l200_95", "l200_99"),
            (500.0, "l500_50", "l500_95", "l500_99"),
        ] {
            eprintln!("bench: repetition {}: latency at {rate} orders/s", rep + 1);
            let seconds = if quick { 5.0 } else { 20.0 };
            let cpu_before = cpu::Sample::take(&fleet.cpu_parts());
            let run = pipeline::run(
                fleet,
                &shops,
                Driver::Nats,
                Offer::Rate {
                    per_second: rate,
                    seconds,
                },
                &format!("L{rate}-{rep}"),
                settle,
            )
            .await?;
            outcome.note(format!(
                "latency run at {rate}/s {}: {} orders, {} register calls, I1: {}",
                rep + 1,
                run.orders,
                run.register_calls,
                run.i1.describe()
            ));
            let name = |q: &str| format!("{q} cart message → WMS registration at {rate} orders/s");
            let (n50, n95, n99) = (name("p50"), name("p95"), name("p99"));
            figures.add(
                key50,
                || Figure::new("latency", &n50, "ms"),
                run.latency(0.50),
            );
            figures.add(
                key95,
                || Figure::new("latency", &n95, "ms"),
                run.latency(0.95),
            );
            figures.add(
                key99,
                || {
                    let figure = Figure::new("latency", &n99, "ms");
                    if rate == 500.0 {
                        figure.target(Target::AtMost(100.0))
                    } else {
                        figure
                    }
                },
                run.latency(0.99),
            );
            if rate == 500.0 {
                let cpu_used = cpu::Sample::take(&fleet.cpu_parts()).since(&cpu_before);
                add_cpu(figures, outcome, "500/s run", &cpu_used, run.orders);
                add_profile(
                    fleet,
                    figures,
                    outcome,
                    &format!("L{rate}-{rep}"),
                    &run,
                    "500/s run",
                    rep,
                )
                .await?;
            }
            outcome.i1.absorb(run.i1);
        }
    }

    order_list(options, fleet, figures, outcome).await?;

    // Footprint: idle before the load, peak (VmHWM) after it.
    let peak = footprint::sample(&fleet.pids());
    for (name, (idle_rss, _)) in &idle {
        figures.add(
            &format!("idle-{name}"),
            || Figure::new("footprint", &format!("{name}: idle RSS"), "MiB"),
            *idle_rss,
        );
    }
    for (name, (_, hwm)) in &peak {
        figures.add(
            &format!("peak-{name}"),
            || {
                let figure = Figure::new("footprint", &format!("{name}: peak RSS (VmHWM)"), "MiB");
                // The target is the services'; the simulator stands in for the WMS.
                if *name == "wms-simulator" {
                    figure
                } else {
                    figure.target(Target::AtMost(64.0))
                }
            },
            *hwm,
        );
    }

    // Ratios to the machine.
    let (pg4, js256, sim) = (
        figures.median("pg4"),
        figures.median("js256"),
        figures.median("sim"),
    );
    for key in ["nats", "grpc"] {
        let value = figures.median(key);
        figures.set_ratio(
            key,
            format!(
                "{} of PG commits (4 conns), {} of JetStream (256 in flight), {} of simulator req/s",
                percent(value, pg4),
                percent(value, js256),
                percent(value, sim)
            ),
        );
    }
    Ok(())
}

async fn real_limit(
    options: &Options,
    fleet: &Fleet,
    figures: &mut Figures,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    for rep in 0..options.repetitions {
        let tag = format!("{rep}");
        let n = options.burst_orders;
        eprintln!(
            "bench: repetition {}: burst of {n} orders of one shop",
            rep + 1
        );
        let burst = budget::burst(fleet, n, &tag).await?;
        outcome.note(format!(
            "burst run {}: {n} orders in over gRPC in {:.1} s, all registered {:.1} s after the \
             first, bound {:.1} s, {} register calls, {} 429s, I1: {}",
            rep + 1,
            burst.ingest_seconds,
            burst.drain_seconds,
            burst.bound_seconds,
            burst.register_calls,
            burst.rate_limited,
            burst.i1.describe()
        ));
        let group = "WMS budget (1/s, burst 60)";
        let calls_bound = n.div_ceil(budget::ROWS_PER_REGISTRATION) + 5;
        figures.add(
            "burst_drain",
            || {
                Figure::new(
                    group,
                    &format!("burst of {n} orders of one shop: all registered"),
                    "s",
                )
            },
            burst.drain_seconds,
        );
        figures.add(
            "burst_ratio",
            || {
                Figure::new(
                    group,
                    "burst: drain time ÷ bound (ingest + calls beyond the burst at 1/s)",
                    "×",
                )
                .target(Target::AtMost(1.1))
            },
            burst.drain_seconds / burst.bound_seconds,
        );
        figures.add(
            "burst_calls",
            || {
                Figure::new(group, "burst: register calls", "calls")
                    .target(Target::AtMost(calls_bound as f64))
            },
            burst.register_calls as f64,
        );
        figures.add(
            "burst_429",
            || Figure::new(group, "burst: 429 answers", "429s").target(Target::AtMost(0.0)),
            burst.rate_limited as f64,
        );
        outcome.i1.absorb(burst.i1);

        let n = options.cancel_orders;
        eprintln!(
            "bench: repetition {}: mass cancellation of {n} orders",
            rep + 1
        );
        let cancel = budget::mass_cancel(fleet, n, &tag).await?;
        outcome.note(format!(
            "cancellation run {}: {n} orders cancelled in the WMS in {:.1} s (bound {:.1} s), {} \
             cancel calls, {} 429s, wrong: {}",
            rep + 1,
            cancel.seconds,
            cancel.bound_seconds,
            cancel.cancel_calls,
            cancel.rate_limited,
            if cancel.wrong.is_empty() {
                "none".to_owned()
            } else {
                cancel
                    .wrong
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ));
        figures.add(
            "cancel_time",
            || {
                Figure::new(
                    group,
                    &format!("mass cancellation of {n} orders: all cancelled in the WMS"),
                    "s",
                )
            },
            cancel.seconds,
        );
        figures.add(
            "cancel_bound",
            || {
                Figure::new(
                    group,
                    "mass cancellation: bound (cancels beyond the burst at 1/s)",
                    "s",
                )
            },
            cancel.bound_seconds,
        );
        figures.add(
            "cancel_calls",
            || {
                Figure::new(group, "mass cancellation: cancel calls", "calls")
                    .target(Target::AtMost(n as f64))
            },
            cancel.cancel_calls as f64,
        );
        figures.add(
            "cancel_429",
            || {
                Figure::new(group, "mass cancellation: 429 answers", "429s")
                    .target(Target::AtMost(0.0))
            },
            cancel.rate_limited as f64,
        );
        outcome.i1.orders += n;
        outcome
            .i1
            .twice
            .extend(cancel.wrong.iter().filter(|w| w.contains("times")).cloned());
        outcome.i1.missing.extend(
            cancel
                .wrong
                .iter()
                .filter(|w| w.contains("not cancelled"))
                .cloned(),
        );

        let (n, alongside) = (options.sync_shipments, options.sync_alongside);
        eprintln!(
            "bench: repetition {}: status-sync of {n} open shipments, {alongside} orders alongside",
            rep + 1
        );
        let sync = budget::status_sync(fleet, n, alongside, &tag).await?;
        outcome.note(format!(
            "status-sync run {}: {n} open shipments in {:.1} s (bound {:.1} s), {} searches, {} \
             register calls alongside, {} 429s, pass: {}",
            rep + 1,
            sync.seconds,
            sync.bound_seconds,
            sync.search_calls,
            sync.dispatcher_calls,
            sync.rate_limited,
            sync.outcome
        ));
        let search_bound = n.div_ceil(budget::ORDERS_PER_SEARCH) + 2;
        figures.add(
            "sync_time",
            || {
                Figure::new(
                    group,
                    &format!(
                        "status-sync of {n} open shipments ({alongside} orders sent alongside)"
                    ),
                    "s",
                )
            },
            sync.seconds,
        );
        figures.add(
            "sync_bound",
            || {
                Figure::new(
                    group,
                    "status-sync: bound (searches + dispatcher calls beyond the burst at 1/s)",
                    "s",
                )
            },
            sync.bound_seconds,
        );
        figures.add(
            "sync_ratio",
            || {
                Figure::new(
                    group,
                    "status-sync: time ÷ bound (bound taken as at least 1 s)",
                    "×",
                )
                .target(Target::AtMost(1.1))
            },
            sync.seconds / sync.bound_seconds.max(1.0),
        );
        figures.add(
            "sync_calls",
            || {
                Figure::new(group, "status-sync: search calls", "calls")
                    .target(Target::AtMost(search_bound as f64))
            },
            sync.search_calls as f64,
        );
        figures.add(
            "sync_429",
            || Figure::new(group, "status-sync: 429 answers", "429s").target(Target::AtMost(0.0)),
            sync.rate_limited as f64,
        );
        outcome.i1.absorb(sync.i1);
    }
    Ok(())
}

/// The per-stage profile of a run ([`profile`]): each stage's p50 and p99 as figures, and the
/// stage where most of the time goes in the notes.
async fn add_profile(
    fleet: &Fleet,
    figures: &mut Figures,
    outcome: &mut Outcome,
    tag: &str,
    run: &pipeline::Run,
    label: &str,
    rep: usize,
) -> anyhow::Result<()> {
    let profile = profile::measure(fleet, tag, &run.sent).await?;
    let largest = profile
        .largest()
        .map(|(stage, share)| {
            format!(
                "most time in '{}' ({:.0}% of the mean)",
                profile::STAGES[stage],
                100.0 * share
            )
        })
        .unwrap_or_default();
    outcome.note(format!(
        "profile of the {label} {}: {largest}; {}",
        rep + 1,
        profile.describe()
    ));
    let slug: String = label.chars().filter(char::is_ascii_alphanumeric).collect();
    for (stage, name) in profile::STAGES.iter().enumerate() {
        for (q, label_q) in [(0.5, "p50"), (0.99, "p99")] {
            let group = format!("profile ({label})");
            let figure_name = format!("{label_q} {name}");
            figures.add(
                &format!("profile-{slug}-{stage}-{label_q}"),
                || Figure::new(&group, &figure_name, "ms"),
                profile.percentile(stage, q),
            );
        }
    }
    Ok(())
}

/// CPU milliseconds per order of each part of the fleet over a run ([`cpu`]), their sum, and
/// the throughput that sum allows on this machine's cores (what bounds a co-located fleet).
fn add_cpu(
    figures: &mut Figures,
    outcome: &mut Outcome,
    label: &str,
    cpu_seconds: &BTreeMap<String, f64>,
    orders: usize,
) {
    if orders == 0 {
        return;
    }
    let group = format!("CPU per order ({label})");
    let slug: String = label.chars().filter(char::is_ascii_alphanumeric).collect();
    let per_order = |seconds: f64| 1_000.0 * seconds / orders as f64;
    let mut parts: Vec<(&String, f64)> = cpu_seconds
        .iter()
        .map(|(name, seconds)| (name, per_order(*seconds)))
        .collect();
    parts.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (name, ms) in &parts {
        figures.add(
            &format!("cpu-{slug}-{name}"),
            || Figure::new(&group, name, "ms/order"),
            *ms,
        );
    }
    let total: f64 = parts.iter().map(|(_, ms)| ms).sum();
    figures.add(
        &format!("cpu-{slug}-total"),
        || Figure::new(&group, "all processes", "ms/order"),
        total,
    );
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    figures.add(
        &format!("cpu-{slug}-ceiling"),
        || {
            Figure::new(
                &group,
                &format!("orders/s this CPU cost allows on {cores} cores"),
                "orders/s",
            )
        },
        cores * 1_000.0 / total.max(f64::MIN_POSITIVE),
    );
    let split = parts
        .iter()
        .map(|(name, ms)| format!("{name} {ms:.2}"))
        .collect::<Vec<_>>()
        .join(", ");
    outcome.note(format!(
        "CPU of the {label}: {total:.2} ms per order over {orders} orders ({split})"
    ));
}

/// The order list (issue 4's benchmark, `wmslink_order_events::list_bench`): one page of 50 rows
/// under each filter combination, on a database of its own on the fleet's PostgreSQL, loaded
/// once and measured once per repetition.
async fn order_list(
    options: &Options,
    fleet: &Fleet,
    figures: &mut Figures,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let server = fleet.postgres.url("");
    let list_options = |reuse: bool| wmslink_order_events::list_bench::Options {
        server: server.trim_end_matches('/').to_owned(),
        database: "orders_list_bench".to_owned(),
        orders: options.list_orders,
        other_orders: (options.list_orders / 50).max(1_000),
        queries: options.list_queries,
        page_size: 50,
        reuse,
        explain: false,
    };
    for rep in 0..options.repetitions {
        eprintln!(
            "bench: repetition {}: order list on {} orders",
            rep + 1,
            options.list_orders
        );
        let report = wmslink_order_events::list_bench::run(&list_options(rep > 0)).await?;
        let worst = report
            .rows
            .iter()
            .max_by(|a, b| a.p99_ms.total_cmp(&b.p99_ms))
            .map(|row| format!("{} ({:.2} ms)", row.filter, row.p99_ms))
            .unwrap_or_default();
        outcome.note(format!(
            "order list run {}: {} filter combinations x {} queries on {} orders{}; worst p99: {worst}",
            rep + 1,
            report.rows.len(),
            options.list_queries,
            options.list_orders,
            report
                .load_seconds
                .map(|s| format!(" (loaded in {s:.0} s)"))
                .unwrap_or_default(),
        ));
        let name = format!(
            "ListOrders, one page of 50 rows at {} orders: worst p99 over {} filters",
            report::number(options.list_orders as f64),
            report.rows.len()
        );
        figures.add(
            "list_p99",
            || Figure::new("order list", &name, "ms").target(Target::AtMost(20.0)),
            report.worst_p99_ms(),
        );
    }
    Ok(())
}
