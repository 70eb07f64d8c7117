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
    let outcome = run(config).await;
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
