//! # wmslink WMS simulator
//!
//! An HTTP server (axum) that behaves like the COMMERCE ROBO WMS of `wms-api.md`, for many
//! shops (access keys) at once, with a warehouse that moves orders on by itself, per-key rate
//! limits and injectable faults. State is in memory only. See `README.md` for the config and
//! the `/_sim` control endpoints.
//!
//! In a test:
//!
//! ```no_run
//! use wmslink_wms_simulator::{KeyOptions, SimConfig, SimRateLimit, Simulator};
//! # async fn demo() -> anyhow::Result<()> {
//! let sim = Simulator::build(SimConfig::for_tests()).await?.spawn();   // 127.0.0.1:0
//! sim.state().add_key("shop-1-key", KeyOptions { rate_limit: Some(SimRateLimit::new(20.0, 5)) })?;
//! let base_url = sim.base_url();                                          // http://127.0.0.1:PORT
//! # let _ = base_url; Ok(()) }
//! ```

mod api;
mod config;
mod control;
mod search;
mod state;
mod validate;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{SimConfig, SimRateLimit, WarehouseConfig};
pub use state::{
    ControlError, Counters, DEFAULT_NG_CODE, Endpoint, Faults, KeyOptions, KeySummary,
    OrderNoCounters, OrderPatch, SimOrder, SimState, is_late_status, now_jst, status_name,
};

/// A simulator bound to its address, not yet serving.
pub struct Simulator {
    listener: TcpListener,
    addr: SocketAddr,
    state: Arc<SimState>,
}

impl Simulator {
    /// Check the config, create the state (configured keys included) and bind the listener.
    pub async fn build(config: SimConfig) -> anyhow::Result<Self> {
        if config.warehouse.flow.is_empty() {
            anyhow::bail!("warehouse.flow must list at least one status");
        }
        if let Some(bad) = config
            .warehouse
            .flow
            .iter()
            .find(|s| !state::is_known_status(**s))
        {
            anyhow::bail!("warehouse.flow: {bad} is not a documented status_id");
        }
        let listen = config.listen_addr;
        let state = Arc::new(SimState::new(config)?);
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        Ok(Self {
            listener,
            addr,
            state,
        })
    }

    /// The bound address (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`: the base URL a client uses (`/v1` is served too).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The shared state, to add keys, set faults and read counters in-process.
    pub fn state(&self) -> Arc<SimState> {
        self.state.clone()
    }

    /// Serve until SIGTERM or Ctrl-C.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let signal = wmslink_platform::shutdown::on_signal();
        self.run_with_shutdown(signal.cancelled_owned()).await
    }

    /// Serve until `signal` completes, then finish the requests in flight.
    pub async fn run_with_shutdown(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let token = CancellationToken::new();
        let warehouse = tokio::spawn(run_warehouse(self.state.clone(), token.clone()));
        let app = router(self.state.clone());
        let max_body = self.state.config.max_body_bytes;
        let app = app.layer(DefaultBodyLimit::max(max_body));
        tracing::info!(addr = %self.addr, "WMS simulator listening");
        let listener = self.listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(signal)
            .await
            .context("serving");
        token.cancel();
        let _ = warehouse.await;
        tracing::info!("WMS simulator stopped");
        served
    }

    /// Serve in a background task (for tests and the bench). Stops when the returned handle
    /// is stopped or dropped.
    pub fn spawn(self) -> RunningSimulator {
        let token = CancellationToken::new();
        let addr = self.addr;
        let state = self.state.clone();
        let stop = token.clone();
        let task = tokio::spawn(async move {
            self.run_with_shutdown(async move { stop.cancelled().await })
                .await
        });
        RunningSimulator {
            addr,
            state,
            token,
            task: Some(task),
        }
    }
}

/// A simulator serving in the background.
pub struct RunningSimulator {
    addr: SocketAddr,
    state: Arc<SimState>,
    token: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl RunningSimulator {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The shared state.
    pub fn state(&self) -> &Arc<SimState> {
        &self.state
    }

    /// Stop serving and wait for the requests in flight.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.token.cancel();
        match self.task.take() {
            Some(task) => task.await.context("simulator task")?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningSimulator {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// The whole router (WMS endpoints at `/` and `/v1`, control endpoints at `/_sim`).
pub fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .merge(api::routes())
        .nest("/v1", api::routes())
        .merge(control::routes())
        .fallback(|| async { api::ng(StatusCode::NOT_FOUND, "E_NOT_FOUND", "no such endpoint") })
        .with_state(state)
}

async fn run_warehouse(state: Arc<SimState>, token: CancellationToken) {
    if !state.config.warehouse.enabled {
        return;
    }
    let step = state.config.warehouse.step_interval_ms.max(1);
    let tick = Duration::from_millis((step / 4).clamp(5, 250));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = interval.tick() => {
                let moved = state.run_due_steps();
                if moved > 0 {
                    tracing::debug!(moved, "warehouse moved orders on");
                }
            }
        }
    }
}
