//! The order-list benchmark: one shop with 1,000,000 orders (plus a few other shops), one page of
//! 50 rows per query through the real list code (request checking, SQL, rows, page token), for
//! every filter combination, at random depths. Prints p50/p95/p99 per combination. The code is
//! `wmslink_order_events::list_bench`, which `wmslink-bench` runs too.
//!
//! `cargo run --release -p wmslink-order-events --bin orders-bench -- --help`

use clap::Parser;
use wmslink_order_events::list_bench::{self, Options};

#[derive(Parser, Debug)]
#[command(about = "Benchmarks ListOrders on a shop with a million orders")]
struct Args {
    /// PostgreSQL server (without database).
    #[arg(
        long,
        env = "WMSLINK_BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432"
    )]
    server: String,
    /// The benchmark's own database; dropped and recreated unless --reuse.
    #[arg(long, default_value = "wmslink_orders_bench")]
    database: String,
    /// Orders of the benchmarked shop.
    #[arg(long, default_value_t = 1_000_000)]
    orders: i64,
    /// Orders of each of the three other shops.
    #[arg(long, default_value_t = 20_000)]
    other_orders: i64,
    /// Measured queries per filter combination.
    #[arg(long, default_value_t = 300)]
    queries: usize,
    #[arg(long, default_value_t = 50)]
    page_size: u32,
    /// Keep the data of an earlier run when its order count matches.
    #[arg(long)]
    reuse: bool,
    /// Print EXPLAIN ANALYZE of one deep-page query per combination.
    #[arg(long)]
    explain: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    wmslink_platform::install_crypto_provider();
    let options = Options {
        server: args.server,
        database: args.database,
        orders: args.orders,
        other_orders: args.other_orders,
        queries: args.queries,
        page_size: args.page_size,
        reuse: args.reuse,
        explain: args.explain,
    };
    let report = list_bench::run(&options).await?;
    match report.load_seconds {
        Some(seconds) => println!(
            "loaded {} + 3 x {} orders in {seconds:.1} s",
            options.orders, options.other_orders
        ),
        None => println!("reusing {} orders in {}", options.orders, options.database),
    }
    println!(
        "ListOrders, one page of {} rows, shop with {} orders (+3 shops x {}), {} queries per row",
        options.page_size, options.orders, options.other_orders, options.queries
    );
    println!();
    println!("| filter | driver | rows/page | p50 ms | p95 ms | p99 ms | max ms |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for row in &report.rows {
        println!(
            "| {} | {} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} |",
            row.filter,
            row.driver,
            row.rows_per_page,
            row.p50_ms,
            row.p95_ms,
            row.p99_ms,
            row.max_ms
        );
    }
    println!();
    println!("worst p99: {:.2} ms", report.worst_p99_ms());
    Ok(())
}
