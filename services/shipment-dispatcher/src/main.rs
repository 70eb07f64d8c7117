//! The shipment dispatcher binary: configuration, telemetry, then the application until SIGTERM.

use anyhow::Context;
use wmslink_platform::{shutdown, telemetry};
use wmslink_shipment_dispatcher::{Application, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::load().context("loading configuration")?;
    let _telemetry = telemetry::init("wmslink-shipment-dispatcher", &config.telemetry)
        .context("initialising telemetry")?;
    wmslink_platform::install_crypto_provider();
    let shutdown = shutdown::on_signal();
    let app = Application::build(config, shutdown)
        .await
        .context("starting the shipment dispatcher")?;
    tracing::info!(grpc_addr = %app.grpc_addr(), "shipment dispatcher listening");
    app.run_until_stopped().await?;
    tracing::info!("shipment dispatcher stopped");
    Ok(())
}
