//! The WMS of a test: the simulator (a real HTTP server speaking the COMMERCE ROBO API as
//! modelled), its accounts, and the WMS client rules that let services reach it on loopback.

use wmslink_wms_client::WmsClientConfig;
use wmslink_wms_simulator::{KeyOptions, RunningSimulator, SimConfig, Simulator};

/// A simulator on a free loopback port (rate limit and warehouse off).
pub async fn start_simulator() -> RunningSimulator {
    start_simulator_with(SimConfig::for_tests()).await
}

pub async fn start_simulator_with(config: SimConfig) -> RunningSimulator {
    Simulator::build(config)
        .await
        .expect("simulator builds")
        .spawn()
}

/// A fresh account in the simulator; returns its access key.
pub fn new_account(sim: &RunningSimulator, options: KeyOptions) -> String {
    let key = format!("ak-{}", uuid::Uuid::new_v4().simple());
    sim.state().add_key(&key, options).expect("account added");
    key
}

/// WMS client rules for tests: plain HTTP to loopback (where the simulator and wiremock
/// listen), short timeouts.
pub fn wms_test_config() -> WmsClientConfig {
    WmsClientConfig {
        allow_http_hosts: vec!["127.0.0.1".into(), "localhost".into()],
        // The simulator and wiremock listen on loopback, on ports picked at random.
        refuse_private_addresses: false,
        connect_timeout_ms: 2_000,
        request_timeout_ms: 5_000,
        ..WmsClientConfig::default()
    }
}
