//! The service's errors and how they become gRPC statuses. Internals (database errors) are
//! logged and answered with a generic message; nothing here ever holds the access key.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use wmslink_platform::secrets::SecretsError;
use wmslink_platform::validation::FieldViolations;

use crate::domain::Blocker;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
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
    /// INTERNAL.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// INTERNAL.
    #[error("sealing the access key failed: {0}")]
    Seal(SecretsError),
}

impl From<sqlx::Error> for ServiceError {
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

impl From<ServiceError> for Status {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::Invalid(violations) => violations.into_status(),
            ServiceError::NotFound(_) => Status::not_found(err.to_string()),
            ServiceError::StaleVersion { .. } => Status::aborted(err.to_string()),
            ServiceError::Precondition { ref blockers, .. } => {
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
            ServiceError::KeyUnreadable { .. } => {
                tracing::error!(error = %err, "stored access key unreadable");
                Status::failed_precondition(err.to_string())
            }
            ServiceError::Store(_) | ServiceError::Seal(_) => {
                wmslink_platform::grpc::internal("settings", &err)
            }
        }
    }
}
