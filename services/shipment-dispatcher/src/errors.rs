//! The service's boundary errors. Per-message and per-pass errors live with their modules
//! (`consumer::HandleError`, `sender::PassError`, `rows::BuildError`).

use wmslink_platform::consumer::ConsumerError;
use wmslink_platform::db::DbError;
use wmslink_platform::grpc::GrpcError;
use wmslink_platform::nats::NatsError;
use wmslink_platform::secrets::SecretsError;

use crate::settings::SettingsError;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("master keys: {0}")]
    Secrets(#[from] SecretsError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Nats(#[from] NatsError),
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
    #[error(transparent)]
    Grpc(#[from] GrpcError),
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("WMS rate limiter: {0}")]
    Limiter(String),
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Grpc(#[from] GrpcError),
}
