//! `wmslink-cart-sim`: keeps the demo shop's order list moving (see the crate documentation).

use std::time::Duration;

use clap::Parser;
use secrecy::SecretString;
use wmslink_cart_sim::{CartSim, CartSimConfig, StatusCodes, WmsAccess};
use wmslink_platform::nats::NatsConfig;
use wmslink_platform::telemetry::TelemetryConfig;

#[derive(Parser)]
#[command(
    version,
    about = "A cart that keeps publishing orders for the demo shop"
)]
struct Cli {
    #[arg(long, env = "CART_SIM_SHOP_ID", default_value = "demo-shop")]
    shop_id: String,
    #[arg(
        long,
        env = "WMSLINK_NATS__URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    nats_url: String,
    /// The environment's subject prefix (`nats.prefix` of the services).
    #[arg(long, env = "WMSLINK_NATS__PREFIX", default_value = "")]
    nats_prefix: String,
    /// order-events, where the cart reads its order list.
    #[arg(
        long,
        env = "CART_SIM_ORDERS_URL",
        default_value = "http://127.0.0.1:50052"
    )]
    orders_url: String,
    /// PEM file of the authority of order-events' certificate (then `--orders-url` is
    /// `https://`). Default: plaintext.
    #[arg(long, env = "CART_SIM_ORDERS_TLS_CA_FILE", default_value = "")]
    orders_tls_ca_file: String,
    /// A token with `orders.read` on order-events.
    #[arg(long, env = "CART_SIM_TOKEN", hide_env_values = true)]
    token: SecretString,
    /// Milliseconds between two actions.
    #[arg(long, env = "CART_SIM_INTERVAL_MS", default_value_t = 2000)]
    interval_ms: u64,
    /// Share of messages sent as proto3 JSON (the rest as protobuf).
    #[arg(long, env = "CART_SIM_JSON_RATIO", default_value_t = 0.3)]
    json_ratio: f64,
    /// Seed of the random choices (default: the clock).
    #[arg(long, env = "CART_SIM_SEED")]
    seed: Option<u64>,
    /// Stop after this many actions (default: never).
    #[arg(long, env = "CART_SIM_MAX_ACTIONS")]
    max_actions: Option<u64>,
    /// The WMS, for the clerk's direct registrations and cancellations (R5). Without it,
    /// no WMS-side anomalies.
    #[arg(long, env = "CART_SIM_WMS_ENDPOINT_URL")]
    wms_endpoint_url: Option<String>,
    #[arg(long, env = "CART_SIM_WMS_ACCESS_KEY", hide_env_values = true)]
    wms_access_key: Option<SecretString>,
    /// Hosts the WMS may be reached on over plain http (the simulator).
    #[arg(
        long,
        env = "CART_SIM_WMS_ALLOW_HTTP_HOSTS",
        value_delimiter = ',',
        default_value = "127.0.0.1,localhost,wms-simulator"
    )]
    wms_allow_http_hosts: Vec<String>,
    #[arg(long, env = "WMSLINK_TELEMETRY__LOG_FORMAT", default_value = "json")]
    log_format: String,
    #[arg(long, env = "WMSLINK_TELEMETRY__OTLP_ENDPOINT", default_value = "")]
    otlp_endpoint: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _telemetry = wmslink_platform::telemetry::init(
        "cart-sim",
        &TelemetryConfig {
            log_format: cli.log_format.clone(),
            otlp_endpoint: cli.otlp_endpoint.clone(),
            ..TelemetryConfig::default()
        },
    )?;
    let started = chrono::Utc::now();
    let wms = match (cli.wms_endpoint_url, cli.wms_access_key) {
        (Some(endpoint_url), Some(access_key)) => Some(WmsAccess {
            endpoint_url,
            access_key,
            allow_http_hosts: cli.wms_allow_http_hosts,
        }),
        _ => None,
    };
    let sim = CartSim::connect(CartSimConfig {
        shop_id: cli.shop_id,
        nats: NatsConfig {
            url: cli.nats_url,
            prefix: cli.nats_prefix,
            ..NatsConfig::default()
        },
        orders_url: cli.orders_url,
        orders_tls: wmslink_platform::grpc::ClientTls {
            ca_file: cli.orders_tls_ca_file,
            ..Default::default()
        },
        token: cli.token,
        wms,
        interval: Duration::from_millis(cli.interval_ms),
        json_ratio: cli.json_ratio,
        seed: cli
            .seed
            .unwrap_or_else(|| u64::try_from(started.timestamp_micros()).unwrap_or(0)),
        statuses: StatusCodes::default(),
        order_no_prefix: format!("C{}", started.format("%y%m%d%H%M%S")),
    })
    .await?;
    let shutdown = wmslink_platform::shutdown::on_signal();
    let stats = sim.run(shutdown, cli.max_actions).await?;
    tracing::info!(?stats, "cart simulator stopped");
    Ok(())
}
