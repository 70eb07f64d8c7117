//! `wmslink-bench all|quick`: builds the service binaries of its own profile when run through
//! cargo, runs the benchmark, prints the table, writes it into `docs/benchmarks.md` (`all`, or
//! `--write`), and exits 1 when I1 broke or a service crashed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use clap::Parser;
use wmslink_bench::{Mode, Options, Outcome, report};

#[derive(Parser, Debug)]
#[command(about = "The system as in production, measured against the machine's own limits")]
struct Args {
    /// `all` (every figure, 3 repetitions, sustained loads) or `quick` (1 repetition, short).
    #[arg(value_enum)]
    mode: Mode,
    /// Repetitions of every figure (default: 3 for all, 1 for quick).
    #[arg(long)]
    repetitions: Option<usize>,
    /// Shops the end-to-end loads spread over.
    #[arg(long)]
    shops: Option<usize>,
    /// Seconds the saturating NATS load lasts (default: 60 for all, 10 for quick).
    #[arg(long)]
    sustain_secs: Option<f64>,
    /// Most orders sent and not yet registered during a saturating load (default: 5,000 for
    /// all, 1,000 for quick).
    #[arg(long)]
    backlog: Option<u64>,
    /// Orders of the one-shop burst under the real limit (default: 20,000 for all, 2,000 for
    /// quick).
    #[arg(long)]
    burst_orders: Option<usize>,
    /// Orders cancelled at once under the real limit, one cancel call each (default: 600 for
    /// all, 50 for quick; 10,000 take at least 9,940 s at 1/s).
    #[arg(long)]
    cancel_orders: Option<usize>,
    /// Open shipments of the status-sync pass (default: 10,000 for all, 1,000 for quick).
    #[arg(long)]
    sync_shipments: Option<usize>,
    /// Where the service binaries are (default: beside this one, built first when run
    /// through cargo).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Write the table into docs/benchmarks.md (the default for `all`).
    #[arg(long)]
    write: bool,
    /// Do not write docs/benchmarks.md.
    #[arg(long, conflicts_with = "write")]
    no_write: bool,
    /// The file the table is written into.
    #[arg(long, default_value = "docs/benchmarks.md")]
    doc: PathBuf,
    /// Keep the run's directories (data and logs).
    #[arg(long)]
    keep: bool,
}

const PACKAGES: [&str; 5] = [
    "wmslink-settings",
    "wmslink-order-events",
    "wmslink-shipment-dispatcher",
    "wmslink-status-sync",
    "wmslink-wms-simulator",
];

/// Builds the services' binaries into `bin_dir` with the profile this binary was built with,
/// when run through cargo (which says where it is in `$CARGO`).
fn build_services(bin_dir: &Path) -> anyhow::Result<()> {
    let Ok(cargo) = std::env::var("CARGO") else {
        return Ok(());
    };
    let mut command = Command::new(cargo);
    command.args(["build", "--quiet", "--bins"]);
    if bin_dir.file_name().is_some_and(|name| name == "release") {
        command.arg("--release");
    }
    for package in PACKAGES {
        command.args(["-p", package]);
    }
    let started = std::time::Instant::now();
    let status = command.status().context("running cargo build")?;
    if !status.success() {
        bail!("building the services failed: {status}");
    }
    eprintln!(
        "bench: service binaries built in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or_else(
            || "?".to_owned(),
            |kib| format!("{:.1} GiB", kib / 1024.0 / 1024.0),
        );
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default();
    format!("nproc {cpus}, memory {memory}, load average at the end {load}")
}

fn git_commit() -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}

fn section(options: &Options, outcome: &Outcome, table: &str) -> String {
    let profile = if options.bin_dir.ends_with("release") {
        "release"
    } else {
        "debug (figures are only meaningful for the release build)"
    };
    // The arguments as given, so the command can be run again as it was.
    let mode = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    let mut out = format!(
        "## The benchmark command (`wmslink-bench`)\n\n\
         Command: `cargo run --release -p wmslink-bench -- {mode}` ({} repetition(s); build: {profile}).\n\
         Measured {} on {}; git commit {}.\n\
         The system runs as in production: the service binaries as OS processes, a PostgreSQL \
         (initdb, fsync on) and a NATS JetStream of its own, the WMS simulator; driven through \
         NATS, gRPC and the simulator's HTTP only. Each figure is the median of the repetitions, \
         with min and max. What each figure is and how it is taken: `crates/bench/README.md`.\n\n",
        options.repetitions,
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        machine(),
        git_commit(),
    );
    out.push_str(table);
    out.push('\n');
    out.push_str(&format!(
        "I1 (no order missing, none registered twice, from the registration rows the simulator \
         received per order number): **{}** — {}.\n",
        if outcome.i1.holds() {
            "holds"
        } else {
            "BROKEN"
        },
        outcome.i1.describe()
    ));
    if !outcome.crashes.is_empty() {
        out.push_str(&format!(
            "\nCrashed services: {}.\n",
            outcome.crashes.join("; ")
        ));
    }
    out.push_str("\nRuns:\n\n");
    for note in &outcome.notes {
        out.push_str(&format!("- {note}\n"));
    }
    out
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => {
            let dir = std::env::current_exe()?
                .parent()
                .context("the binary's directory")?
                .to_path_buf();
            build_services(&dir)?;
            dir
        }
    };
    let mut options = Options::new(args.mode, bin_dir);
    if let Some(repetitions) = args.repetitions {
        options.repetitions = repetitions.max(1);
    }
    if let Some(shops) = args.shops {
        options.shops = shops.max(1);
    }
    if let Some(secs) = args.sustain_secs {
        options.sustain_secs = secs.max(1.0);
    }
    if let Some(backlog) = args.backlog {
        options.backlog = backlog.max(1);
    }
    if let Some(n) = args.burst_orders {
        options.burst_orders = n.max(1);
    }
    if let Some(n) = args.cancel_orders {
        options.cancel_orders = n.max(1);
    }
    if let Some(n) = args.sync_shipments {
        options.sync_shipments = n.max(1);
    }
    options.keep = args.keep;

    let started = std::time::Instant::now();
    // On Ctrl-C or SIGTERM the run is dropped, and with it every process it started (by pid)
    // and its PostgreSQL cluster.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let outcome = tokio::select! {
        outcome = wmslink_bench::run(&options) => outcome?,
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
        _ = terminate.recv() => bail!("terminated"),
    };
    let table = report::table(&outcome.figures, options.repetitions);
    let text = section(&options, &outcome, &table);
    println!("{text}");
    eprintln!("bench: ran in {:.0} s", started.elapsed().as_secs_f64());
    let write = !args.no_write && (args.write || args.mode == Mode::All);
    if write {
        report::write_section(&args.doc, &text)?;
        eprintln!("bench: table written into {}", args.doc.display());
    }
    if !outcome.passed() {
        eprintln!("bench: FAILED: I1: {}", outcome.i1.describe());
        for crash in &outcome.crashes {
            eprintln!("bench: FAILED: {crash}");
        }
        std::process::exit(1);
    }
    Ok(())
}
