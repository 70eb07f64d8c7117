//! Errors at each boundary: start-up, running, and the order rules (mapped to gRPC statuses and
//! to consumer outcomes).

use tonic::Status;
use wmslink_platform::consumer::{ConsumerError, HandleError};
use wmslink_platform::db::DbError;
use wmslink_platform::grpc::GrpcError;
use wmslink_platform::nats::NatsError;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Database(#[from] DbError),
    #[error(transparent)]
    Nats(#[from] NatsError),
    #[error(transparent)]
    Grpc(#[from] GrpcError),
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
    #[error("configuration: {0}")]
    Config(String),
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Grpc(#[from] GrpcError),
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
    #[error("task {0} stopped unexpectedly")]
    TaskStopped(&'static str),
    #[error("task panicked: {0}")]
    TaskPanicked(String),
}

/// Why an order operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
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
    #[error("{0}")]
    StatusLocked(String),
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
    #[error("stored snapshot of order {order_no} of shop '{shop}' is unreadable: {reason}")]
    Corrupt {
        shop: String,
        order_no: String,
        reason: String,
    },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

impl OrderError {
    pub fn to_status(&self) -> Status {
        match self {
            Self::UnknownShop(_) | Self::StatusLocked(_) => {
                Status::failed_precondition(self.to_string())
            }
            Self::RevisionConflict { .. } => Status::already_exists(self.to_string()),
            Self::NotFound { .. } => Status::not_found(self.to_string()),
            Self::StaleExpectedRevision { .. } => Status::aborted(self.to_string()),
            Self::Corrupt { .. } => wmslink_platform::grpc::internal("reading the order", self),
            Self::Database(err) => wmslink_platform::grpc::internal("database", err),
        }
    }

    /// Database trouble is worth a retry; everything else is the message's fault.
    pub fn to_handle_error(&self) -> HandleError {
        match self {
            Self::Database(err) => HandleError::Transient(format!("database: {err}")),
            other => HandleError::Permanent(other.to_string()),
        }
    }
}

impl From<OrderError> for Status {
    fn from(err: OrderError) -> Self {
        err.to_status()
    }
}
