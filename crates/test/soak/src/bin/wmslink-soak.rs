//! `wmslink-soak`: the soak (issue 14). Short by default (about 1,000 orders, 2 dispatcher
//! kills, one NATS restart); `--long` for the long variant. Exits 1 when an invariant broke.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use wmslink_soak::run::{FaultProfile, Outcome, Params, run};

#[derive(Parser, Debug)]
#[command(about = "Soak wmslink: real processes, killed and restarted, invariants checked")]
struct Args {
    /// The long variant: 10,000 orders over 50 shops, every service killed, PostgreSQL stopped
    /// 30 s, two replicas of the dispatcher and status-sync for the middle third, all faults.
    #[arg(long)]
    long: bool,
    #[arg(long)]
    orders: Option<usize>,
    #[arg(long)]
    shops: Option<usize>,
    /// Seconds over which the orders are placed.
    #[arg(long)]
    place_secs: Option<u64>,
    /// Seconds the system may take to settle afterwards.
    #[arg(long)]
    settle_secs: Option<u64>,
    #[arg(long)]
    dispatcher_kills: Option<u32>,
    #[arg(long)]
    nats_restarts: Option<u32>,
    /// Fault profiles, given to the shops in turn (default: the ones today's dispatcher
    /// survives; `--long` adds the in-doubt ones).
    #[arg(long, value_enum, value_delimiter = ',')]
    faults: Option<Vec<FaultProfile>>,
    #[arg(long, default_value_t = 14)]
    seed: u64,
    /// Where the service binaries are (default: beside this one).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Keep the run's directory (data and logs) even when it passes.
    #[arg(long)]
    keep: bool,
}

fn params(args: Args) -> anyhow::Result<Params> {
    let bin_dir = match args.bin_dir {
        Some(dir) => dir,
        None => std::env::current_exe()?
            .parent()
            .context("the binary's directory")?
            .to_path_buf(),
    };
    let long = args.long;
    let faults = args.faults.unwrap_or_else(|| {
        let mut faults = FaultProfile::SURVIVABLE.to_vec();
        if long {
            faults.extend(FaultProfile::IN_DOUBT);
        }
        faults
    });
    Ok(Params {
        orders: args.orders.unwrap_or(if long { 10_000 } else { 1_000 }),
        shops: args.shops.unwrap_or(if long { 50 } else { 20 }),
        place_secs: args.place_secs.unwrap_or(if long { 300 } else { 60 }),
        settle_secs: args.settle_secs.unwrap_or(if long { 300 } else { 120 }),
        dispatcher_kills: args.dispatcher_kills.unwrap_or(if long { 6 } else { 2 }),
        nats_restarts: args.nats_restarts.unwrap_or(1),
        kill_every_service: long,
        postgres_stop_secs: if long { 30 } else { 0 },
        replicas: long,
        faults,
        json_ratio: 0.4,
        bad_every: 40,
        seed: args.seed,
        bin_dir,
        keep: args.keep,
    })
}

fn print(params: &Params, outcome: &Outcome) {
    println!("== wmslink soak ==");
    println!(
        "parameters: {} orders over {} shops placed over {} s (settle within {} s), seed {}, \
         {} dispatcher kills, {} NATS restarts, every service killed: {}, PostgreSQL stopped: {} s, \
         replicas: {}, JSON share {}, one bad message per {} orders",
        params.orders,
        params.shops,
        params.place_secs,
        params.settle_secs,
        params.seed,
        params.dispatcher_kills,
        params.nats_restarts,
        params.kill_every_service,
        params.postgres_stop_secs,
        params.replicas,
        params.json_ratio,
        params.bad_every
    );
    println!(
        "fault profiles (shops take them in turn): {:?}",
        params.faults
    );
    println!("scenarios: {:?}", outcome.scenarios);
    println!(
        "messages: {} published ({} JSON, {} with Nats-Msg-Id, {} bad)",
        outcome.messages, outcome.json_messages, outcome.with_msg_id, outcome.bad_messages
    );
    for event in &outcome.chaos {
        println!("chaos: {event}");
    }
    let f = &outcome.findings;
    println!(
        "WMS: {} registrations accepted, {} duplicates refused, {} cancels ({} repeated, {} refused), \
         429s {}, injected: {} 500s, {} NGs, {} applied-then-500, {} applied-then-late-answer, \
         {} applied-late; requests {:?}",
        f.totals.registrations_accepted,
        f.totals.duplicates_refused,
        f.totals.cancels,
        f.totals.cancels_repeated,
        f.totals.cancels_refused,
        f.rate_limited,
        f.totals.faults_500,
        f.totals.faults_ng,
        f.totals.faults_applied_500,
        f.totals.faults_delayed,
        f.totals.faults_applied_late,
        f.totals.requests
    );
    println!("shipping statuses: {:?}", f.shipping_statuses);
    println!(
        "operator retries (in doubt, not found after the searches, left to a person): {} {:?}",
        outcome.operator_retries.len(),
        outcome.operator_retries
    );
    println!(
        "dead letters: {} ({} distinct messages); R4 refusals published: {}",
        f.dead_letters, f.dead_lettered_messages, f.r4_refusals
    );
    println!(
        "timing: placed in {:.1} s, settled {}, total {:.1} s",
        outcome.placed_in.as_secs_f64(),
        outcome.settled_in.map_or_else(
            || "NEVER".to_owned(),
            |d| format!("in {:.1} s", d.as_secs_f64())
        ),
        outcome.total.as_secs_f64()
    );
    for check in [
        "I1 exactly one registration",
        "I2 no lost cancellation",
        "I3 cancelled is final",
        "I5 nothing lost",
        "zero 429s",
        "list agrees with the WMS",
    ] {
        let found = f.by_check.get(check).map_or(&[][..], Vec::as_slice);
        println!(
            "{check}: {}",
            if found.is_empty() {
                "ok".to_owned()
            } else {
                format!("{} VIOLATIONS", found.len())
            }
        );
        for example in found.iter().take(8) {
            println!("    {example}");
        }
    }
    if !outcome.violations_by_profile.is_empty() {
        println!(
            "violations by fault profile: {:?}",
            outcome.violations_by_profile
        );
    }
    for crash in &outcome.crashes {
        println!("CRASH: {crash}");
    }
    println!(
        "result: {} (run directory {:?})",
        if outcome.passed() { "PASS" } else { "FAIL" },
        outcome.dir
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let params = params(Args::parse())?;
    let outcome = run(params.clone()).await?;
    print(&params, &outcome);
    if !outcome.passed() {
        std::process::exit(1);
    }
    Ok(())
}
