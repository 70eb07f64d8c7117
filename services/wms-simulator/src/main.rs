//! `wmslink-wms-simulator`: the WMS simulator as a service. Configuration: `SimConfig` under `sim`,
//! logging under `telemetry` (see README.md), e.g. `WMSLINK_SIM__LISTEN_ADDR=0.0.0.0:8090`.

use serde::{Deserialize, Serialize};
use wmslink_platform::config::{InvalidConfig, Validate, key};
use wmslink_platform::telemetry::TelemetryConfig;
use wmslink_wms_simulator::{SimConfig, Simulator};

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct Settings {
    sim: SimConfig,
    telemetry: TelemetryConfig,
}

impl Validate for Settings {
    fn check(&self, section: &str, problems: &mut InvalidConfig) {
        self.telemetry.check(&key(section, "telemetry"), problems);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: Settings = wmslink_platform::config::load()?;
    let _telemetry = wmslink_platform::telemetry::init("wms-simulator", &settings.telemetry)?;
    Simulator::build(settings.sim)
        .await?
        .run_until_stopped()
        .await
}
