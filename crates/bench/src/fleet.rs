//! The system under measurement, started as in production: a PostgreSQL cluster of its own
//! (durable, `fsync=on`), a NATS server with JetStream of its own, the WMS simulator and the
//! four services as OS processes from the built binaries, with their default configuration
//! except the wiring (ports, databases, tokens) and the services' own WMS rate limit. The
//! processes and servers come from `wmslink-soak` ([`wmslink_soak::cluster`],
//! [`wmslink_soak::system`]); only the processes started here are ended, by pid.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use wmslink_platform::nats::Subjects;
use wmslink_platform::secrets::KeyRing;
use wmslink_proto::orders::v1::order_service_client::OrderServiceClient;
use wmslink_soak::checks::OrdersClient;
use wmslink_soak::cluster::{Nats, Postgres, ServiceProcess, wait_for_port};
use wmslink_soak::sim::SimControl;
use wmslink_soak::system::{
    self, BINARIES, NATS_PREFIX, Ports, bearer, client_channel, set_up_shop, wait_shop_known,
};

/// The services, in start order (the simulator first).
pub const SERVICES: [&str; 5] = [
    "wms-simulator",
    "settings",
    "order-events",
    "shipment-dispatcher",
    "status-sync",
];

/// The WMS rate limit in force: on the simulator's accounts and in the services' own limiter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WmsLimit {
    /// No limit anywhere: what the pipeline itself can do.
    Off,
    /// The WMS's documented limit per access key (1 request/s, burst 60).
    Real,
}

impl WmsLimit {
    pub const REAL_PER_SECOND: f64 = 1.0;
    pub const REAL_BURST: u32 = 60;

    fn sim_key(self) -> Option<(f64, u32)> {
        match self {
            Self::Off => None,
            Self::Real => Some((Self::REAL_PER_SECOND, Self::REAL_BURST)),
        }
    }
}

pub struct Fleet {
    pub dir: PathBuf,
    pub postgres: Postgres,
    pub nats: Nats,
    pub ports: Ports,
    pub services: BTreeMap<&'static str, ServiceProcess>,
    pub sim: SimControl,
    pub sim_url: String,
    pub limit: WmsLimit,
    pub subjects: Subjects,
    keep: bool,
}

impl Fleet {
    /// Starts everything under a fresh directory in `$TMPDIR` and waits until the services
    /// answer. `extra_env` is added to every service (not the simulator).
    pub async fn start(
        bin_dir: &Path,
        limit: WmsLimit,
        extra_env: &[(&str, &str)],
        keep: bool,
    ) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "wmslink-bench-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        std::fs::create_dir_all(&dir)?;
        let postgres = Postgres::create_durable(&dir).context("PostgreSQL")?;
        let nats = Nats::start(&dir).context("NATS")?;
        let ports = Ports::spare()?;
        let (_, master_keys) = KeyRing::generate("bench");
        let binaries: BTreeMap<&str, &str> = BINARIES.into_iter().collect();
        let mut services = BTreeMap::new();
        for name in SERVICES {
            let binary = system::binary(bin_dir, binaries[name])?;
            let env = if name == "wms-simulator" {
                // Keys bring their own limit; the warehouse moves only when ticked.
                system::simulator_env(ports.sim, limit.sim_key(), None)
            } else {
                let port = match name {
                    "settings" => ports.settings,
                    "order-events" => ports.orders,
                    "shipment-dispatcher" => ports.dispatch,
                    _ => ports.sync,
                };
                let mut env =
                    system::service_env(name, port, &postgres, &nats, &ports, &master_keys);
                if limit == WmsLimit::Off {
                    env.push((
                        "WMSLINK_RATE_LIMIT__REQUESTS_PER_SECOND".into(),
                        "1000000".into(),
                    ));
                    env.push(("WMSLINK_RATE_LIMIT__BURST".into(), "1000000".into()));
                }
                env.push(("RUST_LOG".into(), "warn".into()));
                env.extend(
                    extra_env
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
                );
                env
            };
            services.insert(name, ServiceProcess::new(name, binary, env, &dir));
        }
        for name in SERVICES {
            if let Some(service) = services.get_mut(name) {
                service.start()?;
            }
        }
        let sim_url = format!("http://127.0.0.1:{}", ports.sim);
        wait_for_port(ports.sim, Duration::from_secs(30), "wms-simulator")?;
        let fleet = Self {
            sim: SimControl::new(&sim_url)?,
            sim_url,
            dir,
            postgres,
            nats,
            ports,
            services,
            limit,
            subjects: Subjects::new(NATS_PREFIX)?,
            keep,
        };
        for (name, port) in [
            ("settings", fleet.ports.settings),
            ("order-events", fleet.ports.orders),
            ("shipment-dispatcher", fleet.ports.dispatch),
            ("status-sync", fleet.ports.sync),
        ] {
            wait_for_port(port, Duration::from_secs(60), name)?;
        }
        Ok(fleet)
    }

    pub fn orders(&self) -> anyhow::Result<OrdersClient> {
        Ok(OrderServiceClient::with_interceptor(
            client_channel(self.ports.orders)?,
            bearer()?,
        ))
    }

    pub async fn jetstream(&self) -> anyhow::Result<async_nats::jetstream::Context> {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(self.nats.url())
            .await?;
        Ok(async_nats::jetstream::new(client))
    }

    /// Creates `count` shops named `{prefix}-{i}`, each with a WMS account of its own under the
    /// fleet's limit, set up and enabled through the settings service and known to
    /// order-events. Returns shop → access key.
    pub async fn shops(
        &self,
        prefix: &str,
        count: usize,
    ) -> anyhow::Result<BTreeMap<String, String>> {
        let endpoint = format!("{}/v1", self.sim_url);
        let mut keys = BTreeMap::new();
        for i in 0..count {
            let shop = format!("{prefix}-{i:03}");
            let key = format!(
                "bench-key-{shop}-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            );
            self.sim.add_key_limited(&key, self.limit.sim_key()).await?;
            keys.insert(shop, key);
        }
        let setups = keys.iter().map(|(shop, key)| {
            let endpoint = endpoint.clone();
            let port = self.ports.settings;
            async move { set_up_shop(port, shop, key, &endpoint).await }
        });
        futures::future::try_join_all(setups).await?;
        let mut orders = self.orders()?;
        for shop in keys.keys() {
            wait_shop_known(&mut orders, shop).await?;
        }
        Ok(keys)
    }

    /// The pid of each running service.
    pub fn pids(&self) -> BTreeMap<&'static str, u32> {
        self.services
            .iter()
            .filter_map(|(name, s)| s.pid().map(|pid| (*name, pid)))
            .collect()
    }

    /// Every process of the fleet for [`crate::cpu`]: the services, PostgreSQL with its
    /// backends, NATS, and this benchmark (the load generator).
    pub fn cpu_parts(&self) -> Vec<crate::cpu::Part> {
        let part = |name: &str, pid: u32, with_children: bool| crate::cpu::Part {
            name: name.to_owned(),
            pid,
            with_children,
        };
        let mut parts: Vec<_> = self
            .pids()
            .into_iter()
            .map(|(name, pid)| part(name, pid, false))
            .collect();
        parts.extend(self.postgres.pid().map(|pid| part("postgres", pid, true)));
        parts.extend(self.nats.pid().map(|pid| part("nats-server", pid, false)));
        parts.push(part("bench (load)", std::process::id(), false));
        parts
    }

    /// Services that exited by themselves.
    pub fn crashed(&mut self) -> Vec<String> {
        self.services
            .iter_mut()
            .filter_map(|(name, s)| s.exited().map(|status| format!("{name} exited: {status}")))
            .collect()
    }

    /// Ends every process started here, by pid; the cluster and NATS last. Keeps the
    /// directory (logs) when asked to or when something crashed.
    pub fn stop(mut self) -> Vec<String> {
        let crashed = self.crashed();
        for service in self.services.values_mut() {
            service.stop(Duration::from_secs(10));
        }
        self.nats.kill();
        let _ = self.postgres.stop();
        if !self.keep && crashed.is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("bench: logs and data kept in {}", self.dir.display());
        }
        crashed
    }
}
