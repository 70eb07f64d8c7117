//! How the services are wired together as OS processes: their ports, the environment each one is
//! started with (database, NATS, tokens, the settings service, the WMS), the simulator's
//! environment, and setting a shop up through the settings service. Shared by the soak
//! ([`crate::run`]) and the benchmark (`wmslink-bench`), which start the same system; each adds
//! its own tunings on top.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use secrecy::SecretString;
use tokio::time::Instant;
use tonic::transport::Channel;
use wmslink_platform::auth::BearerToken;
use wmslink_proto::orders::v1 as pb;
use wmslink_proto::settings::v1::settings_service_client::SettingsServiceClient;
use wmslink_tools::demo::{self, STATUS_NEW};

use crate::checks::OrdersClient;
use crate::cluster::{Nats, Postgres, spare_port};

/// The operator's token (every scope) on every service.
pub const TOKEN: &str = "soak-operator-token-0123456789abcdef";
pub const DISPATCHER_TOKEN: &str = "soak-dispatcher-token-0123456789abc";
pub const SYNC_TOKEN: &str = "soak-status-sync-token-0123456789ab";
/// order-events' token for settings (it asks about shops whose settings event it has not seen).
pub const ORDERS_TOKEN: &str = "soak-order-events-token-0123456789a";
pub const NATS_PREFIX: &str = "soak";

/// The services' binaries, by service name.
pub const BINARIES: [(&str, &str); 5] = [
    ("wms-simulator", "wmslink-wms-simulator"),
    ("settings", "wmslink-settings"),
    ("order-events", "wmslink-order-events"),
    ("shipment-dispatcher", "wmslink-shipment-dispatcher"),
    ("status-sync", "wmslink-status-sync"),
];

/// The gRPC (and the simulator's HTTP) port of each process.
pub struct Ports {
    pub sim: u16,
    pub settings: u16,
    pub orders: u16,
    pub dispatch: u16,
    pub sync: u16,
    pub dispatch_replica: u16,
    pub sync_replica: u16,
}

impl Ports {
    pub fn spare() -> anyhow::Result<Self> {
        Ok(Self {
            sim: spare_port()?,
            settings: spare_port()?,
            orders: spare_port()?,
            dispatch: spare_port()?,
            sync: spare_port()?,
            dispatch_replica: spare_port()?,
            sync_replica: spare_port()?,
        })
    }
}

fn toml_tokens(tokens: &[(&str, &str, &[&str])]) -> String {
    let entries: Vec<String> = tokens
        .iter()
        .map(|(caller, token, scopes)| {
            let scopes: Vec<String> = scopes.iter().map(|s| format!("\"{s}\"")).collect();
            format!(
                "{{caller=\"{caller}\", token=\"{token}\", scopes=[{}]}}",
                scopes.join(", ")
            )
        })
        .collect();
    format!("[{}]", entries.join(", "))
}

/// The environment that connects `service` (`settings`, `order-events`, `shipment-dispatcher`
/// or `status-sync`) listening on `port` to the others: its database on `postgres`, NATS, the
/// shared rate-limit database, the master keys, the tokens it accepts and presents, and the WMS
/// on loopback. Everything else is the service's default unless the caller adds to it.
pub fn service_env(
    service: &str,
    port: u16,
    postgres: &Postgres,
    nats: &Nats,
    ports: &Ports,
    master_keys: &str,
) -> Vec<(String, String)> {
    let operator: &[&str] = &[
        "orders.read",
        "orders.write",
        "operate",
        "settings.read",
        "settings.write",
    ];
    let mut env: Vec<(String, String)> = vec![
        (
            "WMSLINK_GRPC__LISTEN_ADDR".into(),
            format!("127.0.0.1:{port}"),
        ),
        ("WMSLINK_NATS__URL".into(), nats.url()),
        ("WMSLINK_NATS__PREFIX".into(), NATS_PREFIX.into()),
        ("WMSLINK_TELEMETRY__LOG_FORMAT".into(), "json".into()),
    ];
    let mut set = |key: &str, value: String| env.push((key.to_owned(), value));
    let database = match service {
        "settings" => "settings",
        "order-events" => "orders",
        "shipment-dispatcher" => "dispatch",
        _ => "sync",
    };
    set("WMSLINK_DATABASE__URL", postgres.url(database));
    if service != "order-events" {
        set("WMSLINK_SECRETS__MASTER_KEYS", master_keys.to_owned());
        set(
            "WMSLINK_RATE_LIMIT__DATABASE_URL",
            postgres.url("rate_limit"),
        );
        set("WMSLINK_WMS__ALLOW_HTTP_HOSTS", "[\"127.0.0.1\"]".into());
        // The simulator listens on loopback.
        set("WMSLINK_WMS__REFUSE_PRIVATE_ADDRESSES", "false".into());
    }
    match service {
        "settings" => set(
            "WMSLINK_AUTH__TOKENS",
            toml_tokens(&[
                ("soak", TOKEN, operator),
                (
                    "shipment-dispatcher",
                    DISPATCHER_TOKEN,
                    &["settings.read", "settings.credentials"],
                ),
                (
                    "status-sync",
                    SYNC_TOKEN,
                    &["settings.read", "settings.credentials"],
                ),
                ("order-events", ORDERS_TOKEN, &["settings.read"]),
            ]),
        ),
        "order-events" => {
            set(
                "WMSLINK_AUTH__TOKENS",
                toml_tokens(&[("soak", TOKEN, operator)]),
            );
            set(
                "WMSLINK_SETTINGS__URL",
                format!("http://127.0.0.1:{}", ports.settings),
            );
            set("WMSLINK_SETTINGS__TOKEN", ORDERS_TOKEN.into());
        }
        "shipment-dispatcher" => {
            set(
                "WMSLINK_AUTH__TOKENS",
                toml_tokens(&[("soak", TOKEN, operator)]),
            );
            set(
                "WMSLINK_SETTINGS__URL",
                format!("http://127.0.0.1:{}", ports.settings),
            );
            set("WMSLINK_SETTINGS__TOKEN", DISPATCHER_TOKEN.into());
        }
        _ => {
            set(
                "WMSLINK_AUTH__TOKENS",
                toml_tokens(&[("soak", TOKEN, operator)]),
            );
            set(
                "WMSLINK_SETTINGS__URL",
                format!("http://127.0.0.1:{}", ports.settings),
            );
            set("WMSLINK_SETTINGS__TOKEN", SYNC_TOKEN.into());
        }
    }
    env
}

/// The simulator's environment: listening on `port`, no key at start, the given per-key rate
/// limit (`None`: off) for keys that do not bring their own, and its warehouse moving orders on
/// every `warehouse_step_ms` (`None`: only when ticked).
pub fn simulator_env(
    port: u16,
    rate_limit: Option<(f64, u32)>,
    warehouse_step_ms: Option<u64>,
) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "WMSLINK_SIM__LISTEN_ADDR".to_owned(),
            format!("127.0.0.1:{port}"),
        ),
        ("WMSLINK_SIM__ACCESS_KEYS".to_owned(), "[]".to_owned()),
        (
            "WMSLINK_SIM__RATE_LIMIT__ENABLED".to_owned(),
            rate_limit.is_some().to_string(),
        ),
        (
            "WMSLINK_SIM__WAREHOUSE__ENABLED".to_owned(),
            warehouse_step_ms.is_some().to_string(),
        ),
    ];
    if let Some((per_second, burst)) = rate_limit {
        env.push((
            "WMSLINK_SIM__RATE_LIMIT__PER_SECOND".to_owned(),
            format!("{per_second:.1}"),
        ));
        env.push((
            "WMSLINK_SIM__RATE_LIMIT__BURST".to_owned(),
            burst.to_string(),
        ));
    }
    if let Some(step) = warehouse_step_ms {
        env.push((
            "WMSLINK_SIM__WAREHOUSE__STEP_INTERVAL_MS".to_owned(),
            step.to_string(),
        ));
    }
    env
}

/// The path of a built binary in `bin_dir`, or an error saying how to build it.
pub fn binary(bin_dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = bin_dir.join(name);
    if !path.exists() {
        bail!(
            "{path:?} is missing: build the services first (cargo build --bins -p wmslink-settings \
             -p wmslink-order-events -p wmslink-shipment-dispatcher -p wmslink-status-sync \
             -p wmslink-wms-simulator)"
        );
    }
    Ok(path)
}

/// A lazily connected gRPC channel to a service on loopback.
pub fn client_channel(port: u16) -> anyhow::Result<Channel> {
    Ok(Channel::from_shared(format!("http://127.0.0.1:{port}"))?
        .timeout(Duration::from_secs(30))
        .connect_lazy())
}

/// The operator's bearer token.
pub fn bearer() -> anyhow::Result<BearerToken> {
    BearerToken::new(&SecretString::from(TOKEN.to_owned())).context("token")
}

async fn retry_pause() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// Sets `shop` up through the settings service (catalog, settings, check, enable), retrying
/// while the service is still starting.
pub async fn set_up_shop(
    settings_port: u16,
    shop: &str,
    key: &str,
    endpoint: &str,
) -> anyhow::Result<()> {
    let mut client =
        SettingsServiceClient::with_interceptor(client_channel(settings_port)?, bearer()?);
    let setup = demo::shop(shop, SecretString::from(key.to_owned()), endpoint);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match setup.enable(&mut client).await {
            Ok(_) => return Ok(()),
            Err(_) if Instant::now() < deadline => {
                retry_pause().await;
            }
            Err(err) => bail!("setting up {shop}: {err}"),
        }
    }
}

/// Waits until order-events knows `shop` (its settings event arrived): a probe order on hold
/// is accepted.
pub async fn wait_shop_known(orders: &mut OrdersClient, shop: &str) -> anyhow::Result<()> {
    let probe = demo::order(shop, "PROBE-0", 1, STATUS_NEW, "card");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match orders
            .upsert_order(pb::UpsertOrderRequest {
                order: Some(probe.clone()),
            })
            .await
        {
            Ok(_) => return Ok(()),
            Err(_) if Instant::now() < deadline => {
                retry_pause().await;
            }
            Err(status) => bail!("order-events never knew {shop}: {status}"),
        }
    }
}
