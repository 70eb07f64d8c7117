/// What can go wrong reading a shop's settings or building its WMS client. Never contains an
/// access key, sealed or open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsClientError {
    /// The client's configuration is unusable (URL, token); only from
    /// [`SettingsClient::new`](crate::SettingsClient::new).
    #[error("settings client: {0}")]
    Config(String),
    /// The settings service could not be reached or failed: worth trying again later.
    #[error("settings service: {0}")]
    Unavailable(String),
    /// The settings service has no access key for the shop (or no settings at all).
    #[error("shop {shop} has no WMS credentials: {reason}")]
    NoCredentials { shop: String, reason: String },
    /// The sealed access key cannot be opened with the master keys (unknown key id, damaged,
    /// sealed for another shop).
    #[error("the access key of shop {shop} cannot be opened: {reason}")]
    OpenKey { shop: String, reason: String },
    /// No WMS adapter takes the shop's kind, endpoint or key (see `wmslink_wms_client::connect`).
    #[error("the WMS settings of shop {shop} are refused: {reason}")]
    WmsClient { shop: String, reason: String },
}

impl SettingsClientError {
    /// The settings service could not answer; anything else needs a person to fix the settings
    /// or the configuration.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    pub(crate) fn unavailable(call: &str, status: &tonic::Status) -> Self {
        Self::Unavailable(format!("{call}: {:?}: {}", status.code(), status.message()))
    }
}
