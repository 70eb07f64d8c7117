//! The settings service binary: configuration, telemetry, then the service until SIGTERM.

use anyhow::Context;
use wmslink_platform::{shutdown, telemetry};
use wmslink_settings::{Application, Config, SERVICE_NAME, StartupError};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::load().context("loading configuration")?;
    let telemetry =
        telemetry::init(SERVICE_NAME, &config.telemetry).context("starting telemetry")?;
    wmslink_platform::install_crypto_provider();
    let outcome = match std::env::args().nth(1).as_deref() {
        Some("reseal") => reseal(&config).await,
        _ => run(config).await,
    };
    telemetry.shutdown();
    outcome
}

async fn run(config: Config) -> anyhow::Result<()> {
    let app = match Application::build(config, shutdown::on_signal()).await {
        Err(StartupError::Stopped(_)) => return Ok(()),
        built => built.context("starting")?,
    };
    app.run_until_stopped().await.context("running")
}

/// `wmslink-settings reseal`: every access key sealed again with the active master key.
async fn reseal(config: &Config) -> anyhow::Result<()> {
    let keys = wmslink_platform::secrets::KeyRing::from_config(&config.secrets)
        .context("reading the master keys")?;
    let pool = wmslink_platform::db::connect(&config.database)
        .await
        .context("connecting to PostgreSQL")?;
    let resealed = wmslink_settings::reseal::reseal_all(&pool, &keys)
        .await
        .context("re-sealing")?;
    tracing::info!(
        resealed,
        active_key_id = keys.active_key_id(),
        "access keys re-sealed"
    );
    Ok(())
}
