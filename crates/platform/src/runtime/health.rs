//! The service's gRPC health: `SERVING` while nothing is down, else `NOT_SERVING` (for the
//! whole server, `""`, and for the service's own API), with the reasons kept for the logs.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::Mutex;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// What is down, by key (`starting`, `dependency:PostgreSQL`, `task:outbox relay`, …). Cheap to
/// clone; every clone reports to the same health service.
#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

struct Inner {
    reporter: HealthReporter,
    /// The names health is reported for: `""` (the whole server) and the service's API.
    services: Vec<String>,
    /// Held while the reporter is updated, so that the last state computed is the last one
    /// published.
    down: Mutex<BTreeMap<String, String>>,
}

impl Health {
    /// Health for `services` (plus the whole server), `NOT_SERVING` until [`Self::up`] clears
    /// the `initial` reason.
    pub(crate) async fn new(
        reporter: HealthReporter,
        services: &[&str],
        initial: (&str, &str),
    ) -> Self {
        let mut names = vec![String::new()];
        names.extend(services.iter().map(|name| (*name).to_owned()));
        let health = Self {
            inner: Arc::new(Inner {
                reporter,
                services: names,
                down: Mutex::new(BTreeMap::new()),
            }),
        };
        health.down(initial.0, initial.1).await;
        health
    }

    /// Marks `key` down for `reason`: `NOT_SERVING` until every key is up again.
    pub async fn down(&self, key: &str, reason: impl Into<String>) {
        let mut down = self.inner.down.lock().await;
        let was_serving = down.is_empty();
        down.insert(key.to_owned(), reason.into());
        if was_serving {
            tracing::warn!(reasons = ?*down, "health: NOT_SERVING");
        }
        self.publish(down.is_empty()).await;
    }

    /// Marks `key` up; `SERVING` once nothing is down.
    pub async fn up(&self, key: &str) {
        let mut down = self.inner.down.lock().await;
        if down.remove(key).is_some() && down.is_empty() {
            tracing::info!("health: SERVING");
        }
        self.publish(down.is_empty()).await;
    }

    /// Whether nothing is down.
    pub async fn is_serving(&self) -> bool {
        self.inner.down.lock().await.is_empty()
    }

    /// What is down and why.
    pub async fn reasons(&self) -> BTreeMap<String, String> {
        self.inner.down.lock().await.clone()
    }

    async fn publish(&self, serving: bool) {
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        for name in &self.inner.services {
            self.inner.reporter.set_service_status(name, status).await;
        }
    }
}
