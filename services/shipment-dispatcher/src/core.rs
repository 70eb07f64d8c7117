//! What every part of the dispatcher shares.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use wmslink_platform::nats::Subjects;
use wmslink_platform::outbox::RelayWaker;

use crate::config::SenderConfig;
use crate::sender::Sender;
use crate::settings::SettingsCache;
use crate::settle::DoubtRules;
use crate::wms::WmsClients;

pub struct Core {
    pub pool: PgPool,
    pub subjects: Subjects,
    pub relay: RelayWaker,
    pub settings: Arc<SettingsCache>,
    pub wms: WmsClients,
    pub config: SenderConfig,
    /// The wait after a wake-up ([`SenderConfig::effective_linger`] under the key budget).
    pub linger: std::time::Duration,
    /// When shipments in doubt are searched (from `sender` and `wms.request_timeout_ms`).
    pub doubt: DoubtRules,
    /// This replica's name in the history of what it claimed (`HOSTNAME`, else the process
    /// id, and a number per application in the process).
    pub replica: String,
    pub sender: Sender,
    /// Cancelled when the service stops: passes finish their current call and stop.
    pub shutdown: CancellationToken,
}

/// A name for this replica: the pod's `HOSTNAME` (or the process id) and the number of the
/// application within the process (tests run several).
pub fn replica_name() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| format!("pid{}", std::process::id()));
    format!("{host}/{}", NEXT.fetch_add(1, Ordering::Relaxed))
}
