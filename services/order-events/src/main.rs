use anyhow::Context;
use wmslink_order_events::{Application, Config, SERVICE_NAME};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::load().context("loading configuration")?;
    let _telemetry = wmslink_platform::telemetry::init(SERVICE_NAME, &config.telemetry)
        .context("starting telemetry")?;
    wmslink_platform::install_crypto_provider();
    Application::build(config, wmslink_platform::shutdown::on_signal())
        .await
        .context("starting order-events")?
        .run_until_stopped()
        .await
        .context("running order-events")?;
    Ok(())
}
