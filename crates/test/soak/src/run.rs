//! One soak run: the servers and the services started as OS processes, the shops set up, the
//! cart and the faults let loose, the system left to settle, then every check.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tonic::transport::Channel;
use wmslink_platform::auth::BearerToken;
use wmslink_platform::nats::Subjects;
use wmslink_platform::secrets::KeyRing;
use wmslink_proto::dispatch::v1 as dispatch;
use wmslink_proto::dispatch::v1::dispatch_service_client::DispatchServiceClient;
use wmslink_proto::ops::v1::dead_letter_service_client::DeadLetterServiceClient;
use wmslink_proto::orders::v1 as pb;
use wmslink_proto::orders::v1::order_service_client::OrderServiceClient;
use wmslink_wms_simulator::{Endpoint, Faults};

use crate::cart::{Cart, CartOrder, Scenario};
use crate::checks::{self, Findings, Sources};
use crate::cluster::{Nats, Postgres, ServiceProcess, wait_for_port};
use crate::sim::SimControl;
use crate::system::{
    self, NATS_PREFIX, Ports, bearer, client_channel, set_up_shop, wait_shop_known,
};

/// The faults a shop's WMS account injects; shops take them in turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum FaultProfile {
    /// No fault.
    None,
    /// 150 ms on every call.
    Latency,
    /// 500 on 10% of searches and gets (safe to repeat).
    Reads500,
    /// `NG` `E_MAINTENANCE` on 25% of cancels (transient).
    CancelNg,
    /// 10% of registrations and cancels applied 6.5 s after the request, after the client gave
    /// up (in doubt).
    ApplyLate,
    /// 10% of registrations and cancels applied, then answered 500 (in doubt).
    ApplyThen500,
    /// 10% of registrations and cancels applied at once, answered after 6.5 s (the client timed
    /// out; in doubt).
    ApplyThenTimeout,
}

impl FaultProfile {
    pub const SURVIVABLE: [FaultProfile; 4] =
        [Self::None, Self::Latency, Self::Reads500, Self::CancelNg];
    pub const IN_DOUBT: [FaultProfile; 3] =
        [Self::ApplyLate, Self::ApplyThen500, Self::ApplyThenTimeout];

    fn faults(self) -> Option<Faults> {
        let writes = vec![Endpoint::Register, Endpoint::Cancel];
        let faults = match self {
            Self::None => return None,
            Self::Latency => Faults {
                latency_ms: 150,
                ..Faults::default()
            },
            Self::Reads500 => Faults {
                error_500_ratio: 0.1,
                endpoints: vec![Endpoint::Search, Endpoint::Get],
                ..Faults::default()
            },
            Self::CancelNg => Faults {
                ng_ratio: 0.25,
                ng_code: "E_MAINTENANCE".into(),
                endpoints: vec![Endpoint::Cancel],
                ..Faults::default()
            },
            Self::ApplyLate => Faults {
                apply_late_ms: 6_500,
                apply_late_ratio: 0.1,
                endpoints: writes,
                ..Faults::default()
            },
            Self::ApplyThen500 => Faults {
                apply_then_500_ratio: 0.1,
                endpoints: writes,
                ..Faults::default()
            },
            Self::ApplyThenTimeout => Faults {
                apply_then_delay_ms: 6_500,
                apply_then_delay_ratio: 0.1,
                endpoints: writes,
                ..Faults::default()
            },
        };
        Some(faults)
    }
}

/// The run's parameters.
#[derive(Debug, Clone)]
pub struct Params {
    pub orders: usize,
    pub shops: usize,
    /// Orders are placed over this long; their follow-ups come up to 30 s later.
    pub place_secs: u64,
    /// How long the system may take to settle after the cart stopped.
    pub settle_secs: u64,
    pub dispatcher_kills: u32,
    pub nats_restarts: u32,
    /// Kill status-sync, order-events and settings once each.
    pub kill_every_service: bool,
    /// Stop PostgreSQL this long (0: never).
    pub postgres_stop_secs: u64,
    /// Run a second dispatcher and status-sync for the middle third of the run.
    pub replicas: bool,
    pub faults: Vec<FaultProfile>,
    /// Share of cart messages in proto3 JSON.
    pub json_ratio: f64,
    /// One bad message per this many orders (0: none).
    pub bad_every: usize,
    pub seed: u64,
    /// Where the service binaries are (`target/debug`).
    pub bin_dir: PathBuf,
    /// Keep the run's directory (logs, data) after a passing run.
    pub keep: bool,
}

/// What happened, for the report.
#[derive(Default, Debug)]
pub struct Outcome {
    pub findings: Findings,
    pub chaos: Vec<String>,
    pub crashes: Vec<String>,
    pub scenarios: BTreeMap<Scenario, usize>,
    pub messages: usize,
    pub json_messages: usize,
    pub bad_messages: usize,
    pub with_msg_id: usize,
    pub placed_in: Duration,
    pub settled_in: Option<Duration>,
    pub unsettled: Vec<String>,
    pub total: Duration,
    pub dir: PathBuf,
    pub violations_by_profile: BTreeMap<String, usize>,
    /// Shipments an operator sent again (RetryShipment) after the dispatcher gave up on them:
    /// sent with an unknown outcome (a kill mid-call) and not found in the WMS by its bounded
    /// searches, it waits in ERROR for a person, as issue 10 asks.
    pub operator_retries: Vec<String>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.findings.violations() == 0 && self.crashes.is_empty()
    }
}

/// The processes of the run, shared by the chaos task and the end of the run.
struct Fleet {
    postgres: Postgres,
    nats: Nats,
    services: BTreeMap<&'static str, ServiceProcess>,
}

/// The soak's tunings on top of the wiring ([`system::service_env`]): short retries, ack waits,
/// sweeps and in-doubt searches, so that a run settles within minutes.
fn service_env(
    service: &str,
    port: u16,
    postgres: &Postgres,
    nats: &Nats,
    ports: &Ports,
    master_keys: &str,
) -> Vec<(String, String)> {
    let mut env = system::service_env(service, port, postgres, nats, ports, master_keys);
    let mut set = |key: &str, value: &str| env.push((key.to_owned(), value.to_owned()));
    set("WMSLINK_RUNTIME__RETRY_MAX_DELAY_MS", "2000");
    set("WMSLINK_RUNTIME__RETRY_BASE_DELAY_MS", "200");
    if service != "settings" {
        set("WMSLINK_CONSUMERS__ACK_WAIT_MS", "5000");
        set("WMSLINK_CONSUMERS__RETRY_MAX_DELAY_MS", "5000");
    }
    match service {
        "shipment-dispatcher" => {
            set("WMSLINK_SETTINGS__CACHE_TTL_MS", "5000");
            set("WMSLINK_SENDER__SWEEP_INTERVAL_MS", "2000");
            set("WMSLINK_SENDER__MAX_BACKOFF_MS", "5000");
            set("WMSLINK_WMS__REQUEST_TIMEOUT_MS", "5000");
            set("WMSLINK_RUNTIME__DRAIN_TIMEOUT_MS", "10000");
            // In doubt: searched once the request timeout plus 3 s passed (the faults apply
            // at most 6.5 s late), every 3 s, 4 misses then ERROR (CANCELLED when cancelled).
            set("WMSLINK_SENDER__IN_DOUBT_MARGIN_MS", "3000");
            set("WMSLINK_SENDER__IN_DOUBT_SEARCH_INTERVAL_MS", "3000");
            set("WMSLINK_SENDER__IN_DOUBT_MAX_SEARCHES", "4");
        }
        "status-sync" => {
            set("WMSLINK_SETTINGS__CACHE_TTL_MS", "5000");
            set("WMSLINK_SYNC__INTERVAL_MS", "3000");
            set("WMSLINK_SYNC__TICK_MS", "500");
            set("WMSLINK_SYNC__FULL_PASS_EVERY", "1");
            set("WMSLINK_SYNC__DISCOVER_MS", "5000");
            set("WMSLINK_SYNC__RETRY_BASE_MS", "2000");
            set("WMSLINK_WMS__REQUEST_TIMEOUT_MS", "5000");
            set("WMSLINK_RUNTIME__DRAIN_TIMEOUT_MS", "10000");
        }
        _ => {}
    }
    env
}

fn binary(params: &Params, name: &str) -> anyhow::Result<PathBuf> {
    system::binary(&params.bin_dir, name)
}

/// One thing the chaos task does.
#[derive(Debug, Clone, Copy)]
enum Chaos {
    Kill(&'static str),
    RestartNats,
    StopPostgres,
    ReplicasUp,
    ReplicasDown,
}

fn chaos_plan(params: &Params, rng: &mut StdRng) -> Vec<(Duration, Chaos)> {
    let window = params.place_secs.max(10) * 1_000;
    let at = |rng: &mut StdRng| Duration::from_millis(rng.random_range(3_000..window + 10_000));
    let mut plan = Vec::new();
    for _ in 0..params.dispatcher_kills {
        plan.push((at(rng), Chaos::Kill("shipment-dispatcher")));
    }
    for _ in 0..params.nats_restarts {
        plan.push((at(rng), Chaos::RestartNats));
    }
    if params.kill_every_service {
        for service in ["status-sync", "order-events", "settings"] {
            plan.push((at(rng), Chaos::Kill(service)));
        }
    }
    if params.postgres_stop_secs > 0 {
        plan.push((Duration::from_millis(window / 2), Chaos::StopPostgres));
    }
    if params.replicas {
        plan.push((Duration::from_millis(window / 3), Chaos::ReplicasUp));
        plan.push((Duration::from_millis(window * 2 / 3), Chaos::ReplicasDown));
    }
    plan.sort_by_key(|(at, _)| *at);
    plan
}

async fn run_chaos(
    fleet: Arc<Mutex<Fleet>>,
    plan: Vec<(Duration, Chaos)>,
    start: Instant,
    seed: u64,
    postgres_stop: Duration,
) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut log = Vec::new();
    for (at, chaos) in plan {
        tokio::time::sleep_until(start + at).await;
        let mut fleet = fleet.lock().await;
        let when = start.elapsed().as_secs_f64();
        match chaos {
            Chaos::Kill(name) => {
                let down = Duration::from_millis(rng.random_range(100..3_000));
                if let Some(service) = fleet.services.get_mut(name) {
                    service.kill();
                    tokio::time::sleep(down).await;
                    let restarted = service.start();
                    log.push(format!(
                        "{when:6.1}s SIGKILL {name}, restarted after {down:?}{}",
                        restarted
                            .err()
                            .map(|e| format!(" FAILED: {e}"))
                            .unwrap_or_default()
                    ));
                }
            }
            Chaos::RestartNats => {
                let down = Duration::from_millis(rng.random_range(1_000..4_000));
                fleet.nats.kill();
                tokio::time::sleep(down).await;
                let restarted = fleet.nats.restart();
                log.push(format!(
                    "{when:6.1}s SIGKILL nats-server, restarted after {down:?}{}",
                    restarted
                        .err()
                        .map(|e| format!(" FAILED: {e}"))
                        .unwrap_or_default()
                ));
            }
            Chaos::StopPostgres => {
                let stopped = fleet.postgres.stop();
                tokio::time::sleep(postgres_stop).await;
                let started = fleet.postgres.start();
                log.push(format!(
                    "{when:6.1}s PostgreSQL stopped (immediate) for {postgres_stop:?}{}{}",
                    stopped
                        .err()
                        .map(|e| format!(" stop FAILED: {e}"))
                        .unwrap_or_default(),
                    started
                        .err()
                        .map(|e| format!(" start FAILED: {e}"))
                        .unwrap_or_default()
                ));
            }
            Chaos::ReplicasUp => {
                for name in ["shipment-dispatcher-2", "status-sync-2"] {
                    if let Some(service) = fleet.services.get_mut(name) {
                        let started = service.start();
                        log.push(format!(
                            "{when:6.1}s {name} started{}",
                            started
                                .err()
                                .map(|e| format!(" FAILED: {e}"))
                                .unwrap_or_default()
                        ));
                    }
                }
            }
            Chaos::ReplicasDown => {
                for name in ["shipment-dispatcher-2", "status-sync-2"] {
                    if let Some(service) = fleet.services.get_mut(name) {
                        service.kill();
                        log.push(format!("{when:6.1}s SIGKILL {name} (replica gone)"));
                    }
                }
            }
        }
    }
    log
}

/// Runs the soak.
pub async fn run(params: Params) -> anyhow::Result<Outcome> {
    wmslink_platform::install_crypto_provider();
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!(
        "wmslink-soak-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    std::fs::create_dir_all(&dir)?;
    let mut outcome = Outcome {
        dir: dir.clone(),
        ..Outcome::default()
    };
    let mut rng = StdRng::seed_from_u64(params.seed);

    let postgres = Postgres::create(&dir).context("PostgreSQL")?;
    let nats = Nats::start(&dir).context("NATS")?;
    let ports = Ports::spare()?;
    let (_, master_keys) = KeyRing::generate("soak");

    let mut services = BTreeMap::new();
    let sim_env = system::simulator_env(ports.sim, Some((1.0, 60)), Some(3_000));
    services.insert(
        "wms-simulator",
        ServiceProcess::new(
            "wms-simulator",
            binary(&params, "wmslink-wms-simulator")?,
            sim_env,
            &dir,
        ),
    );
    for (name, binary_name, port) in [
        ("settings", "wmslink-settings", ports.settings),
        ("order-events", "wmslink-order-events", ports.orders),
        (
            "shipment-dispatcher",
            "wmslink-shipment-dispatcher",
            ports.dispatch,
        ),
        ("status-sync", "wmslink-status-sync", ports.sync),
        (
            "shipment-dispatcher-2",
            "wmslink-shipment-dispatcher",
            ports.dispatch_replica,
        ),
        ("status-sync-2", "wmslink-status-sync", ports.sync_replica),
    ] {
        let kind = name.trim_end_matches("-2");
        let env = service_env(kind, port, &postgres, &nats, &ports, &master_keys);
        services.insert(
            name,
            ServiceProcess::new(name, binary(&params, binary_name)?, env, &dir),
        );
    }
    for name in [
        "wms-simulator",
        "settings",
        "order-events",
        "shipment-dispatcher",
        "status-sync",
    ] {
        if let Some(service) = services.get_mut(name) {
            service.start()?;
        }
    }
    let fleet = Arc::new(Mutex::new(Fleet {
        postgres,
        nats,
        services,
    }));
    let result = drive(&params, &ports, fleet.clone(), &mut rng, &mut outcome).await;

    // End every process the run started, by pid; the cluster and NATS last.
    let mut fleet = fleet.lock().await;
    for (name, service) in fleet.services.iter_mut() {
        if let Some(status) = service.exited() {
            outcome
                .crashes
                .push(format!("{name} exited by itself: {status}"));
        }
        service.stop(Duration::from_secs(10));
    }
    fleet.nats.kill();
    let _ = fleet.postgres.stop();
    outcome.total = started.elapsed();
    result?;
    if outcome.passed() && !params.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(outcome)
}

async fn drive(
    params: &Params,
    ports: &Ports,
    fleet: Arc<Mutex<Fleet>>,
    rng: &mut StdRng,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let sim_url = format!("http://127.0.0.1:{}", ports.sim);
    let sim = SimControl::new(&sim_url)?;
    wait_for_port(ports.sim, Duration::from_secs(30), "wms-simulator")?;
    let nats_url = fleet.lock().await.nats.url();

    // Shops: a WMS account each, with its fault profile, set up and enabled.
    let shops: Vec<String> = (0..params.shops)
        .map(|i| format!("soak-shop-{i:02}"))
        .collect();
    let mut keys = BTreeMap::new();
    let mut profiles = BTreeMap::new();
    for (index, shop) in shops.iter().enumerate() {
        let key = format!(
            "soak-key-{index:02}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        sim.add_key(&key).await?;
        set_up_shop(ports.settings, shop, &key, &format!("{sim_url}/v1")).await?;
        let profile = params.faults[index % params.faults.len().max(1)];
        profiles.insert(shop.clone(), profile);
        keys.insert(shop.clone(), key);
    }
    let mut orders_client =
        OrderServiceClient::with_interceptor(client_channel(ports.orders)?, bearer()?);
    for shop in &shops {
        wait_shop_known(&mut orders_client, shop).await?;
    }
    // Faults on only now: the set-up's connection checks go through clean.
    for (shop, profile) in &profiles {
        if let Some(faults) = profile.faults() {
            sim.set_faults(&keys[shop], &faults).await?;
        }
    }

    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(&nats_url)
        .await?;
    let js = async_nats::jetstream::new(client);
    let subjects = Subjects::new(NATS_PREFIX)?;
    let cart = Cart::new(js.clone(), subjects.clone(), params.json_ratio);
    let plan = crate::cart::plan(&shops, params.orders, params.seed);
    for order in &plan {
        *outcome.scenarios.entry(order.scenario).or_default() += 1;
    }

    // The cart and the chaos, from now.
    let start = Instant::now();
    let chaos = tokio::spawn(run_chaos(
        fleet.clone(),
        chaos_plan(params, rng),
        start,
        params.seed ^ 0x5eed,
        Duration::from_secs(params.postgres_stop_secs),
    ));
    let spacing = Duration::from_millis(params.place_secs * 1_000 / params.orders.max(1) as u64);
    let mut tasks = Vec::with_capacity(plan.len());
    for (index, order) in plan.iter().enumerate() {
        let order_cart = cart.clone();
        let order: CartOrder = order.clone();
        let at = start + spacing * index as u32;
        let seed = params.seed.wrapping_add(index as u64);
        tasks.push(tokio::spawn(async move {
            order_cart.run_order(order, at, seed).await;
        }));
        if params.bad_every > 0 && index % params.bad_every == params.bad_every / 2 {
            let cart = cart.clone();
            let shop = shops[index % shops.len()].clone();
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep_until(at).await;
                cart.send_bad(&shop, index).await;
            }));
        }
    }
    for task in tasks {
        task.await?;
    }
    outcome.placed_in = start.elapsed();
    outcome.chaos = chaos.await?;

    // Let it settle: every order at rest and agreeing with the WMS.
    let sources = Sources {
        orders: orders_client,
        letters: DeadLetterServiceClient::with_interceptor(
            client_channel(ports.orders)?,
            bearer()?,
        ),
        sim,
        keys,
        js,
        subjects,
    };
    let mut operator =
        DispatchServiceClient::with_interceptor(client_channel(ports.dispatch)?, bearer()?);
    let settle_start = Instant::now();
    let mut last_report = Instant::now();
    loop {
        let open = match sources.snapshot().await {
            Ok(snapshot) => {
                retry_given_up(&mut operator, &snapshot, outcome).await;
                checks::disagreements(&plan, &snapshot)
            }
            Err(err) => vec![format!("snapshot failed: {err}")],
        };
        if open.is_empty() {
            outcome.settled_in = Some(settle_start.elapsed());
            break;
        }
        if settle_start.elapsed() > Duration::from_secs(params.settle_secs) {
            outcome.unsettled = open;
            break;
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "soak: settling, {} orders not at rest yet ({:.0}s), e.g. {}",
                open.len(),
                settle_start.elapsed().as_secs_f64(),
                open[0]
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    let sent = cart.sent.lock().map(|s| s.clone()).unwrap_or_default();
    outcome.messages = sent.len();
    outcome.json_messages = sent.iter().filter(|m| m.json).count();
    outcome.bad_messages = sent.iter().filter(|m| m.bad).count();
    outcome.with_msg_id = sent.iter().filter(|m| m.msg_id.is_some()).count();
    outcome.findings = checks::check_all(&sources, &plan, &sent).await?;
    for violations in outcome.findings.by_check.values() {
        for violation in violations {
            let shop = violation.split('/').next().unwrap_or_default();
            let profile = profiles
                .get(shop)
                .map_or_else(|| "-".to_owned(), |p| format!("{p:?}"));
            *outcome.violations_by_profile.entry(profile).or_default() += 1;
        }
    }
    Ok(())
}

type OperatorClient =
    DispatchServiceClient<tonic::service::interceptor::InterceptedService<Channel, BearerToken>>;

/// Plays the operator for shipments the dispatcher gave up on after its bounded in-doubt
/// searches (ERROR, "not sent again without a person"): a kill between committing SENDING and
/// the request leaving the process looks, from outside, exactly like a request the WMS may
/// still apply, so the dispatcher leaves the resend to a person. I1 is then checked on what the
/// retry sent: still exactly one registration received per order.
async fn retry_given_up(
    operator: &mut OperatorClient,
    snapshot: &checks::Snapshot,
    outcome: &mut Outcome,
) {
    for ((shop, order_no), row) in &snapshot.rows {
        let in_wms = snapshot.wms.contains_key(&(shop.clone(), order_no.clone()));
        if row.shipping_status() != pb::ShippingStatus::Error || in_wms {
            continue;
        }
        let key = format!("{shop}/{order_no}");
        if outcome.operator_retries.contains(&key) {
            continue;
        }
        let shipment = operator
            .get_shipment(dispatch::GetShipmentRequest {
                shop_id: shop.clone(),
                order_no: order_no.clone(),
            })
            .await
            .ok()
            .and_then(|answer| answer.into_inner().shipment);
        let given_up =
            shipment.is_some_and(|s| s.last_error.contains("not sent again without a person"));
        if !given_up {
            continue;
        }
        let retried = operator
            .retry_shipment(dispatch::RetryShipmentRequest {
                shop_id: shop.clone(),
                order_no: order_no.clone(),
            })
            .await;
        match retried {
            Ok(_) => {
                eprintln!("soak: operator retried {key} (in doubt, not found, given up)");
                outcome.operator_retries.push(key);
            }
            Err(status) => eprintln!("soak: operator retry of {key} refused: {status}"),
        }
    }
}
