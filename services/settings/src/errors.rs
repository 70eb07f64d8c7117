//! Every error of the service, and the one place they become gRPC statuses
//! (`From<SettingsError> for Status`). Internals (database errors) are logged and answered with a
//! generic message; nothing here ever holds the access key.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use wmslink_platform::config::InvalidConfig;
use wmslink_platform::grpc::GrpcError;
use wmslink_platform::nats::NatsError;
use wmslink_platform::runtime::{RuntimeError, Stopped};
use wmslink_platform::secrets::SecretsError;
use wmslink_platform::validation::FieldViolations;

use crate::domain::Blocker;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] InvalidConfig),
    #[error("master keys: {0}")]
    Secrets(#[from] SecretsError),
    #[error(transparent)]
    Nats(#[from] NatsError),
    #[error(transparent)]
    Grpc(#[from] GrpcError),
    #[error("rate limiter: {0}")]
    Limiter(#[from] wmslink_wms_client::LimiterError),
    #[error(transparent)]
    Dispatcher(#[from] crate::in_flight::InFlightError),
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

/// A row that cannot be turned back into settings (only if someone edited the table by hand).
#[derive(Debug, thiserror::Error)]
#[error("stored settings of shop {shop} are damaged: {what}")]
pub struct CorruptRow {
    pub shop: String,
    pub what: String,
}

/// What the store's queries fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Corrupt(#[from] CorruptRow),
}

/// Why a request was not carried out; the gRPC layer answers with [`Status::from`].
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// INVALID_ARGUMENT, every bad field listed.
    #[error("invalid request: {}", .0.summary())]
    Invalid(FieldViolations),
    /// NOT_FOUND.
    #[error("{0}")]
    NotFound(String),
    /// ABORTED: optimistic concurrency.
    #[error(
        "shop {shop} is at version {current}, not the expected {expected}; reload the settings and retry"
    )]
    StaleVersion {
        shop: String,
        expected: i64,
        current: i64,
    },
    /// FAILED_PRECONDITION, every reason listed.
    #[error("{context}: {}", summary(.blockers))]
    Precondition {
        context: String,
        blockers: Vec<Blocker>,
    },
    /// FAILED_PRECONDITION: the stored key cannot be opened with the configured master keys.
    #[error(
        "the stored access key of shop {shop} cannot be decrypted (master key missing or data damaged); register the access key again"
    )]
    KeyUnreadable { shop: String },
    /// UNAVAILABLE: an endpoint change cannot be shown safe (the dispatcher did not answer).
    #[error(
        "cannot change the endpoint URL of shop {shop} now: {source}; nothing proves that no shipment in doubt or cancellation pending is left at the current endpoint, try again"
    )]
    InFlightUnknown {
        shop: String,
        source: crate::in_flight::InFlightError,
    },
    /// INTERNAL.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// INTERNAL.
    #[error("sealing the access key failed: {0}")]
    Seal(SecretsError),
}

impl SettingsError {
    /// INVALID_ARGUMENT for one field.
    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        let mut violations = FieldViolations::new();
        violations.add(field, reason);
        Self::Invalid(violations)
    }

    /// A short name of the kind of refusal, for the audit trail.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid",
            Self::NotFound(_) => "not_found",
            Self::StaleVersion { .. } => "stale_version",
            Self::Precondition { .. } => "precondition",
            Self::KeyUnreadable { .. } => "key_unreadable",
            Self::InFlightUnknown { .. } => "unavailable",
            Self::Store(_) | Self::Seal(_) => "internal",
        }
    }
}

impl From<sqlx::Error> for SettingsError {
    fn from(err: sqlx::Error) -> Self {
        Self::Store(StoreError::Db(err))
    }
}

fn summary(blockers: &[Blocker]) -> String {
    blockers
        .iter()
        .map(|b| format!("{}: {}", b.subject, b.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<SettingsError> for Status {
    fn from(err: SettingsError) -> Self {
        match err {
            SettingsError::Invalid(violations) => violations.into_status(),
            SettingsError::NotFound(_) => Status::not_found(err.to_string()),
            SettingsError::StaleVersion { .. } => Status::aborted(err.to_string()),
            SettingsError::Precondition { ref blockers, .. } => {
                let mut details = ErrorDetails::new();
                for blocker in blockers {
                    details.add_precondition_failure_violation(
                        blocker.kind,
                        blocker.subject.clone(),
                        blocker.description.clone(),
                    );
                }
                Status::with_error_details(Code::FailedPrecondition, err.to_string(), details)
            }
            SettingsError::KeyUnreadable { .. } => {
                tracing::error!(error = %err, "stored access key unreadable");
                Status::failed_precondition(err.to_string())
            }
            SettingsError::InFlightUnknown { .. } => {
                tracing::warn!(error = %err, "endpoint change not checked");
                Status::unavailable(err.to_string())
            }
            SettingsError::Store(_) | SettingsError::Seal(_) => {
                wmslink_platform::grpc::internal("settings", &err)
            }
        }
    }
}
