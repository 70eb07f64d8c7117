//! The service's errors: start-up and run ([`StartupError`], [`RunError`]), a sender pass
//! ([`PassError`], which becomes the shop's back-off), and the gRPC API ([`DispatchError`],
//! with the one mapping to a gRPC [`Status`]). Per-message errors are the platform's
//! `consumer::HandleError`; an order that cannot become a WMS instruction is the port's
//! `BuildError`.

use std::time::Duration;

use tonic::Status;
use wmslink_platform::config::InvalidConfig;
use wmslink_platform::consumer::ConsumerError;
use wmslink_platform::grpc::{GrpcError, internal};
use wmslink_platform::nats::NatsError;
use wmslink_platform::runtime::{RuntimeError, Stopped};
use wmslink_platform::secrets::SecretsError;
use wmslink_platform::validation::FieldViolations;
use wmslink_wms_client::WmsError;

use crate::settings::SettingsError;
use crate::state_machine::Status as Shipping;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] InvalidConfig),
    #[error("master keys: {0}")]
    Secrets(#[from] SecretsError),
    #[error(transparent)]
    Nats(#[from] NatsError),
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
    #[error(transparent)]
    Grpc(#[from] GrpcError),
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    OrderEvents(#[from] crate::order_events::OrderEventsError),
    #[error(transparent)]
    Stopped(#[from] Stopped),
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// Why a sender pass stopped early. Never an order's fault: the shop backs off and the pass is
/// tried again.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("another sender holds the shop")]
    Busy,
    /// The shop's settings or its WMS credentials cannot be had.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// The WMS is down, rate limited or refuses the shop's key.
    #[error("WMS: {0}")]
    Wms(#[from] WmsError),
}

impl PassError {
    /// The wait the WMS asked for (the `Retry-After` of a 429).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Wms(err) => err.retry_after(),
            _ => None,
        }
    }
}

/// What a `DispatchService` call can fail with; [`From<DispatchError> for Status`] is the one
/// place that chooses the gRPC code.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// `INVALID_ARGUMENT`, with every bad field.
    #[error("invalid request: {}", .0.summary())]
    InvalidArgument(FieldViolations),
    /// `NOT_FOUND`.
    #[error("shop '{0}' has no settings")]
    UnknownShop(String),
    /// `FAILED_PRECONDITION` (R6).
    #[error("the integration of shop '{0}' is not enabled")]
    NotEnabled(String),
    /// `FAILED_PRECONDITION` (S3 ④).
    #[error("shipment instructions are not a data target of shop '{0}'")]
    NotADataTarget(String),
    /// `NOT_FOUND`: also for another shop's order (I6).
    #[error("no shipment for order '{order_no}' of shop '{shop}'")]
    NoShipment { shop: String, order_no: String },
    /// `FAILED_PRECONDITION`.
    #[error("the shipment is {0}; only a shipment in ERROR can be retried")]
    NotRetryable(Shipping),
    /// `FAILED_PRECONDITION`.
    #[error("the shipment is {0}; only a rejected cancellation (CANCEL_REJECTED) can be retried")]
    CancelNotRetryable(Shipping),
    /// `UNAVAILABLE`: the settings service cannot answer.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// `INTERNAL`, logged; the caller sees no detail.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl From<DispatchError> for Status {
    fn from(err: DispatchError) -> Self {
        match err {
            DispatchError::InvalidArgument(violations) => violations.into_status(),
            DispatchError::UnknownShop(_) | DispatchError::NoShipment { .. } => {
                Status::not_found(err.to_string())
            }
            DispatchError::NotEnabled(_)
            | DispatchError::NotADataTarget(_)
            | DispatchError::NotRetryable(_)
            | DispatchError::CancelNotRetryable(_) => Status::failed_precondition(err.to_string()),
            DispatchError::Settings(_) => Status::unavailable(err.to_string()),
            DispatchError::Db(err) => internal("database", err),
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;
    use wmslink_platform::validation::violations_of;

    use super::*;

    #[test]
    fn each_error_has_its_code_and_says_what_failed() {
        let mut violations = FieldViolations::new();
        violations.add("order_no", "must not be empty");
        let cases = [
            (
                DispatchError::InvalidArgument(violations),
                Code::InvalidArgument,
                "order_no: must not be empty",
            ),
            (
                DispatchError::UnknownShop("s1".into()),
                Code::NotFound,
                "shop 's1' has no settings",
            ),
            (
                DispatchError::NoShipment {
                    shop: "s1".into(),
                    order_no: "A-1".into(),
                },
                Code::NotFound,
                "no shipment for order 'A-1' of shop 's1'",
            ),
            (
                DispatchError::NotEnabled("s1".into()),
                Code::FailedPrecondition,
                "the integration of shop 's1' is not enabled",
            ),
            (
                DispatchError::NotADataTarget("s1".into()),
                Code::FailedPrecondition,
                "shipment instructions are not a data target of shop 's1'",
            ),
            (
                DispatchError::NotRetryable(Shipping::Sent),
                Code::FailedPrecondition,
                "the shipment is SENT; only a shipment in ERROR can be retried",
            ),
            (
                DispatchError::CancelNotRetryable(Shipping::Sent),
                Code::FailedPrecondition,
                "the shipment is SENT; only a rejected cancellation (CANCEL_REJECTED) can be retried",
            ),
            (
                DispatchError::Settings(SettingsError::Unavailable("GetSettings: down".into())),
                Code::Unavailable,
                "settings service: GetSettings: down",
            ),
            (
                DispatchError::Db(sqlx::Error::PoolTimedOut),
                Code::Internal,
                "database: internal error",
            ),
        ];
        for (err, code, message) in cases {
            let status = Status::from(err);
            assert_eq!(status.code(), code, "{status:?}");
            assert!(status.message().contains(message), "{status:?}");
        }
    }

    #[test]
    fn invalid_arguments_keep_their_field_details() {
        let mut violations = FieldViolations::new();
        violations.add("shop_id", "must not be empty");
        violations.add("order_no", "must not be empty");
        let status = Status::from(DispatchError::InvalidArgument(violations));
        assert_eq!(
            violations_of(&status),
            [
                ("shop_id".to_owned(), "must not be empty".to_owned()),
                ("order_no".to_owned(), "must not be empty".to_owned())
            ]
        );
    }

    #[test]
    fn a_pass_error_carries_the_wms_wait() {
        let limited = PassError::from(WmsError::RateLimited {
            retry_after: Duration::from_secs(3),
        });
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(PassError::Busy.retry_after(), None);
        assert!(limited.to_string().starts_with("WMS: "), "{limited}");
    }
}
