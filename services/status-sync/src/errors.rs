//! Every error of the service that crosses a module, and the one place they become gRPC
//! statuses (`From<SyncError> for Status`). Internals (database errors) are logged and answered
//! with a generic message; nothing here holds an access key.

use tonic::Status;
use wmslink_platform::config::InvalidConfig;
use wmslink_platform::consumer::ConsumerError;
use wmslink_platform::grpc::GrpcError;
use wmslink_platform::nats::NatsError;
use wmslink_platform::runtime::{RuntimeError, Stopped};
use wmslink_platform::secrets::SecretsError;
use wmslink_platform::validation::FieldViolations;
use wmslink_settings_client::SettingsClientError;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] InvalidConfig),
    #[error("NATS")]
    Nats(#[from] NatsError),
    #[error("consumer")]
    Consumer(#[from] ConsumerError),
    #[error("gRPC")]
    Grpc(#[from] GrpcError),
    #[error("master keys")]
    Secrets(#[from] SecretsError),
    #[error("settings client")]
    Settings(#[from] SettingsClientError),
    /// Asked to stop while waiting for a dependency.
    #[error(transparent)]
    Stopped(#[from] Stopped),
}

/// Why the running service stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// What status-sync cannot learn of a shop from the settings service.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ShopError {
    #[error("shop {0} has no settings")]
    Unknown(String),
    #[error("settings service unavailable: {0}")]
    Unavailable(String),
    /// The stored key or URL cannot be used (never the key itself in the text).
    #[error("WMS credentials of shop {shop} unusable: {reason}")]
    Credentials { shop: String, reason: String },
}

impl From<SettingsClientError> for ShopError {
    fn from(err: SettingsClientError) -> Self {
        match err {
            SettingsClientError::Unavailable(reason) | SettingsClientError::Config(reason) => {
                Self::Unavailable(reason)
            }
            SettingsClientError::NoCredentials { shop, reason }
            | SettingsClientError::OpenKey { shop, reason }
            | SettingsClientError::WmsClient { shop, reason } => Self::Credentials { shop, reason },
        }
    }
}

/// Why a `SyncService` request (a manual run, a listing) was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// INVALID_ARGUMENT, every bad field listed.
    #[error("invalid request: {}", .0.summary())]
    Invalid(FieldViolations),
    /// NOT_FOUND, UNAVAILABLE or FAILED_PRECONDITION, as the settings service answered.
    #[error(transparent)]
    Shop(#[from] ShopError),
    /// FAILED_PRECONDITION.
    #[error(
        "shop {0} is not synced: the integration is disabled or shipment results are not a data target"
    )]
    NotSyncable(String),
    /// ABORTED: another pass holds the shop.
    #[error("a sync of shop {0} is running; try again when it is over")]
    Busy(String),
    /// INTERNAL.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// INTERNAL: the task running the pass panicked or was cancelled.
    #[error("the sync run's task ended abnormally: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl SyncError {
    /// `Ok(())` when nothing was found wrong, else every bad field.
    pub fn check(violations: FieldViolations) -> Result<(), Self> {
        if violations.is_empty() {
            Ok(())
        } else {
            Err(Self::Invalid(violations))
        }
    }

    /// INVALID_ARGUMENT for one field.
    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        let mut violations = FieldViolations::new();
        violations.add(field, reason);
        Self::Invalid(violations)
    }
}

impl From<SyncError> for Status {
    fn from(err: SyncError) -> Self {
        match err {
            SyncError::Invalid(violations) => violations.into_status(),
            SyncError::Shop(ShopError::Unknown(_)) => Status::not_found(err.to_string()),
            SyncError::Shop(ShopError::Unavailable(_)) => Status::unavailable(err.to_string()),
            SyncError::Shop(ShopError::Credentials { .. }) | SyncError::NotSyncable(_) => {
                Status::failed_precondition(err.to_string())
            }
            SyncError::Busy(_) => Status::aborted(err.to_string()),
            SyncError::Db(_) | SyncError::Task(_) => {
                wmslink_platform::grpc::internal("status-sync", &err)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    #[test]
    fn credential_problems_and_outages_stay_apart() {
        let credentials = ShopError::from(SettingsClientError::OpenKey {
            shop: "s1".into(),
            reason: "damaged".into(),
        });
        assert!(
            matches!(&credentials, ShopError::Credentials { shop, reason } if shop == "s1" && reason == "damaged")
        );
        let down = ShopError::from(SettingsClientError::Unavailable("GetSettings: down".into()));
        assert!(matches!(down, ShopError::Unavailable(reason) if reason == "GetSettings: down"));
    }

    #[test]
    fn each_error_has_its_status() {
        let code = |err: SyncError| Status::from(err).code();
        assert_eq!(code(ShopError::Unknown("s1".into()).into()), Code::NotFound);
        assert_eq!(
            code(ShopError::Unavailable("down".into()).into()),
            Code::Unavailable
        );
        assert_eq!(
            code(SyncError::NotSyncable("s1".into())),
            Code::FailedPrecondition
        );
        assert_eq!(code(SyncError::Busy("s1".into())), Code::Aborted);
        assert_eq!(
            code(SyncError::invalid("shop_id", "must be set")),
            Code::InvalidArgument
        );
        assert_eq!(code(sqlx::Error::PoolTimedOut.into()), Code::Internal);
    }
}
