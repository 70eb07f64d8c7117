//! Every error of the service: start-up, running, and the order rules, with the one place they
//! become gRPC statuses (`From<OrderError> for Status`) and consumer outcomes
//! ([`OrderError::to_handle_error`]).

use tonic::Status;
use wmslink_platform::config::InvalidConfig;
use wmslink_platform::consumer::{ConsumerError, HandleError};
use wmslink_platform::grpc::GrpcError;
use wmslink_platform::nats::NatsError;
use wmslink_platform::runtime::{RuntimeError, Stopped};
use wmslink_platform::validation::FieldViolations;

use crate::domain::status_lock::StatusLocked;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] InvalidConfig),
    #[error(transparent)]
    Nats(#[from] NatsError),
    #[error(transparent)]
    Grpc(#[from] GrpcError),
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
    #[error(transparent)]
    Stopped(#[from] Stopped),
    #[error(transparent)]
    Settings(#[from] wmslink_settings_client::SettingsClientError),
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// Why an order operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    /// Every bad field of the request.
    #[error("invalid request: {}", .0.summary())]
    Invalid(FieldViolations),
    #[error(
        "shop '{0}' has no WMS integration settings (unknown shop); its orders are refused until \
         the shop's integration settings are registered"
    )]
    UnknownShop(String),
    #[error(
        "revision conflict: order {order_no} of shop '{shop}' already has revision {revision} \
         with different content; send the change as a new revision"
    )]
    RevisionConflict {
        shop: String,
        order_no: String,
        revision: i64,
    },
    /// R4; the text says why.
    #[error(transparent)]
    StatusLocked(#[from] StatusLocked),
    #[error("order {order_no} of shop '{shop}' not found")]
    NotFound { shop: String, order_no: String },
    #[error(
        "order {order_no}: expected revision {expected} but revision {stored} is stored; reload \
         the order and retry"
    )]
    StaleExpectedRevision {
        order_no: String,
        expected: i64,
        stored: i64,
    },
    #[error("stored snapshot of order {order_no} of shop '{shop}' is unreadable: {source}")]
    Corrupt {
        shop: String,
        order_no: String,
        source: prost::DecodeError,
    },
    /// The settings service could not say whether the shop is registered: wait and retry.
    #[error("the settings service is unreachable, so shop settings cannot be checked: {0}")]
    SettingsUnavailable(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

impl OrderError {
    /// INVALID_ARGUMENT for one field.
    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        let mut violations = FieldViolations::new();
        violations.add(field, reason);
        Self::Invalid(violations)
    }

    /// `Ok(())` when nothing was found wrong, else every bad field.
    pub fn check(violations: FieldViolations) -> Result<(), Self> {
        if violations.is_empty() {
            Ok(())
        } else {
            Err(Self::Invalid(violations))
        }
    }

    /// The database down or out of reach is waited out without spending the delivery budget
    /// (`Unavailable`); another database error is worth a few retries; everything else is the
    /// message's fault.
    pub fn to_handle_error(&self) -> HandleError {
        match self {
            Self::Database(err) if wmslink_platform::db::is_unavailable(err) => {
                HandleError::Unavailable(format!("database: {err}"))
            }
            Self::Database(err) => HandleError::Transient(format!("database: {err}")),
            Self::SettingsUnavailable(_) => HandleError::Unavailable(self.to_string()),
            other => HandleError::Permanent(other.to_string()),
        }
    }
}

impl From<OrderError> for Status {
    fn from(err: OrderError) -> Self {
        match err {
            OrderError::Invalid(violations) => violations.into_status(),
            OrderError::UnknownShop(_) | OrderError::StatusLocked(_) => {
                Status::failed_precondition(err.to_string())
            }
            OrderError::RevisionConflict { .. } => Status::already_exists(err.to_string()),
            OrderError::NotFound { .. } => Status::not_found(err.to_string()),
            OrderError::StaleExpectedRevision { .. } => Status::aborted(err.to_string()),
            OrderError::Corrupt { .. } => {
                wmslink_platform::grpc::internal("reading the order", &err)
            }
            OrderError::SettingsUnavailable(_) => Status::unavailable(err.to_string()),
            OrderError::Database(err) => wmslink_platform::grpc::internal("database", err),
        }
    }
}
