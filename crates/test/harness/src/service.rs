//! A service started in-process: its `Application` built (listener bound), then
//! `run_until_stopped()` on a task of its own until the test stops it.

use std::fmt::Display;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a graceful stop may take before the test fails.
const STOP_WITHIN: Duration = Duration::from_secs(30);

/// A running service; dropping it stops it (without waiting).
pub struct RunningService {
    pub addr: SocketAddr,
    name: &'static str,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl RunningService {
    /// Runs a built service: `addr` is its gRPC address, `shutdown` the token it was built with
    /// and `run` its `run_until_stopped()`. A run that ends in an error fails the test at
    /// [`stop`](Self::stop).
    pub fn spawn<E: Display>(
        name: &'static str,
        addr: SocketAddr,
        shutdown: CancellationToken,
        run: impl Future<Output = Result<(), E>> + Send + 'static,
    ) -> Self {
        let task = tokio::spawn(async move {
            if let Err(err) = run.await {
                panic!("{name} stopped with an error: {err}");
            }
        });
        Self {
            addr,
            name,
            shutdown,
            task: Some(task),
        }
    }

    /// Stops the service gracefully (as SIGTERM does) and waits until it has stopped.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(STOP_WITHIN, task)
                .await
                .unwrap_or_else(|_| panic!("{} stops within {STOP_WITHIN:?}", self.name))
                .unwrap_or_else(|err| panic!("{}: {err}", self.name));
        }
    }

    /// Kills the service at once, whatever it is doing (like `kill -9`: no graceful path).
    pub async fn crash(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for RunningService {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
