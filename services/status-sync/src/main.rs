use anyhow::Context;
use wmslink_platform::{config, shutdown, telemetry};
use wmslink_status_sync::{Application, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: Config = config::load().context("loading configuration")?;
    let _telemetry =
        telemetry::init("wmslink-status-sync", &config.telemetry).context("starting telemetry")?;
    wmslink_platform::install_crypto_provider();
    Application::build(config, shutdown::on_signal())
        .await
        .context("starting status-sync")?
        .run_until_stopped()
        .await
        .context("running status-sync")?;
    Ok(())
}
