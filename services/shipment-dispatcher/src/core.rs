//! What every part of the dispatcher shares.

use std::sync::Arc;

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
    /// When shipments in doubt are searched (from `sender` and `wms.request_timeout_ms`).
    pub doubt: DoubtRules,
    pub sender: Sender,
    /// Cancelled when the service stops: passes finish their current call and stop.
    pub shutdown: CancellationToken,
}
