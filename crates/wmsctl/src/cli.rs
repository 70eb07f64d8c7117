//! The command line (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Operate wmslink: shop settings, orders, dispatch and sync runs, anomalies, dead letters.
///
/// The token comes from WMSLINK_TOKEN or the configuration file (`token_file`), never from the
/// command line. Exit codes: 0 ok, 1 other error, 2 usage, 3 not found, 4 refused (failed
/// precondition, stale version, failed connection check), 5 invalid argument (every bad field
/// listed), 6 unauthenticated or missing scope, 7 service unavailable.
#[derive(Debug, Parser)]
#[command(name = "wmsctl", version)]
pub struct Cli {
    /// Print JSON (one document per line) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Configuration file (TOML): service URLs, token_file, timeout_secs.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Per-shop integration settings (詳細設定).
    #[command(subcommand)]
    Settings(SettingsCommand),
    /// The shop's order-status catalog (受注ステータス).
    #[command(subcommand)]
    Statuses(StatusesCommand),
    /// Orders with their two-level WMS/OMS status.
    #[command(subcommand)]
    Orders(OrdersCommand),
    /// Shipment instructions (連携実行: 出荷指示).
    #[command(subcommand)]
    Dispatch(DispatchCommand),
    /// Status sync with the WMS (連携実行: 同期).
    #[command(subcommand)]
    Sync(SyncCommand),
    /// Anomalies found in the WMS (R5).
    #[command(subcommand)]
    Anomalies(AnomaliesCommand),
    /// Dead letters: messages no consumer could process, with the reason.
    #[command(subcommand)]
    Dlq(DlqCommand),
}

#[derive(Debug, Subcommand)]
pub enum SettingsCommand {
    /// Everything of the shop's settings (the access key masked).
    Show { shop: String },
    /// Registers the whole detail form from a file (TOML, YAML or JSON; see the README).
    Register {
        shop: String,
        /// The detail settings (`.toml`, `.yaml`/`.yml` or `.json`).
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// Read the WMS access key from stdin (required the first time; else the stored key stays).
        #[arg(long)]
        key_stdin: bool,
    },
    /// API connection check (API接続確認): the stored key and URL, or a given pair (not recorded).
    Check {
        shop: String,
        /// Check this access key, read from stdin, instead of the stored one.
        #[arg(long)]
        key_stdin: bool,
        /// Check this endpoint URL instead of the stored one.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
    /// Turns the integration on (refused with every reason unless check and settings are complete).
    Enable { shop: String },
    /// Turns the integration off.
    Disable { shop: String },
}

#[derive(Debug, Subcommand)]
pub enum StatusesCommand {
    /// Replaces the catalog from a file: `[[statuses]]` with code, display_name, kind (open, cancelled, completed).
    Put {
        shop: String,
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// The catalog.
    List { shop: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShippingStatusArg {
    NotSent,
    Queued,
    Sending,
    Sent,
    Shipped,
    CancelRequested,
    Cancelled,
    CancelRejected,
    Error,
}

#[derive(Debug, Args)]
pub struct ListOrdersArgs {
    pub shop: String,
    /// Shipping status (出荷ステータス); repeat or comma-separate for any of several.
    #[arg(long = "shipping-status", value_enum, value_delimiter = ',')]
    pub shipping_statuses: Vec<ShippingStatusArg>,
    /// WMS status id (e.g. 20 for 処理中); repeat or comma-separate.
    #[arg(long = "wms-status", value_delimiter = ',')]
    pub wms_statuses: Vec<i32>,
    /// Cart order status code; repeat or comma-separate.
    #[arg(long = "status", value_delimiter = ',')]
    pub statuses: Vec<String>,
    /// Order date from (inclusive): RFC 3339, or a date (midnight JST).
    #[arg(long)]
    pub from: Option<String>,
    /// Order date to (exclusive): RFC 3339, or a date (midnight JST).
    #[arg(long)]
    pub to: Option<String>,
    /// Order number prefix (case-sensitive).
    #[arg(long)]
    pub prefix: Option<String>,
    /// Orders with this R5 anomaly kind; repeat or comma-separate (any of them).
    #[arg(long = "anomaly", value_delimiter = ',', value_enum)]
    pub anomalies: Vec<AnomalyKindArg>,
    /// Rows per page, 1..=200.
    #[arg(long, default_value_t = 50)]
    pub page_size: u32,
    /// Start at this page (the `next_page_token` of an earlier page).
    #[arg(long)]
    pub page_token: Option<String>,
    /// Every page, printed as it arrives.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Subcommand)]
pub enum OrdersCommand {
    /// Search the order list (O1, O2), newest first.
    List(ListOrdersArgs),
    /// One order: snapshot, both status levels, flags and the full WMS exchange history.
    Show { shop: String, order_no: String },
}

#[derive(Debug, Subcommand)]
pub enum DispatchCommand {
    /// Send every target-status order not yet sent, now (E2); shows progress while it runs.
    Run {
        shop: String,
        /// After the answer, wait until nothing of the shop is queued or sending.
        #[arg(long)]
        wait: bool,
        /// Also send every order of the shop in ERROR again.
        #[arg(long)]
        retry_errors: bool,
    },
    /// Re-send an order in ERROR.
    Retry { shop: String, order_no: String },
    /// Send a rejected cancellation (CANCEL_REJECTED) to the WMS again.
    RetryCancel { shop: String, order_no: String },
}

#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Sync now (E3): the whole sync period, or order dates in [--from, --to).
    Run {
        shop: String,
        #[arg(long, requires = "to")]
        from: Option<String>,
        #[arg(long, requires = "from")]
        to: Option<String>,
    },
    /// Recent sync runs, newest first.
    Runs {
        shop: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AnomalyKindArg {
    CancelledUnrequested,
    NotSentByWmslink,
    MissingInWms,
    RegisteredOutsideWmslink,
}

#[derive(Debug, Subcommand)]
pub enum AnomaliesCommand {
    /// Anomalies found for a shop, newest first.
    List {
        shop: String,
        #[arg(long, value_enum)]
        kind: Option<AnomalyKindArg>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Dead letters, oldest first, with their reasons.
    List {
        /// Original subject, wildcards allowed (e.g. `cart.orders.demo-shop.>`).
        #[arg(long)]
        subject: Option<String>,
        #[arg(long, default_value_t = 50)]
        page_size: u32,
        #[arg(long)]
        page_token: Option<String>,
        /// Every page.
        #[arg(long)]
        all: bool,
    },
    /// Re-publish dead letters (by sequence, the ID column) to their original subjects.
    Replay {
        #[arg(required = true, value_name = "ID")]
        ids: Vec<u64>,
    },
}
