//! Passes of many shops run at once: each shop's calls wait for its own WMS (and its own key's
//! limiter), not for a small global number of slots or pooled connections.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;
use wmslink_proto::orders::v1::ShippingStatus;
use wmslink_testkit::eventually;
use wmslink_wms_simulator::{Endpoint, Faults};

use crate::helpers::*;

/// How long the WMS takes to answer each registration in this test.
const SLOW_WMS: Duration = Duration::from_millis(4_000);

#[tokio::test]
async fn eight_shops_with_a_slow_wms_have_their_registrations_in_flight_at_once() {
    let app = spawn_app_with(|config| {
        config.wms.request_timeout_ms = 15_000;
        // Fewer pooled connections than shops: a pass must not pin one while its call waits.
        config.database.max_connections = 4;
    })
    .await;
    let mut shops = Vec::new();
    for _ in 0..8 {
        let shop = app.shop().await;
        app.fault(
            &shop,
            Endpoint::Register,
            Faults {
                latency_ms: u64::try_from(SLOW_WMS.as_millis()).expect("ms"),
                ..Faults::default()
            },
        );
        shops.push(shop);
    }
    let mut numbers = Vec::new();
    for shop in &shops {
        numbers.push(app.publish_orders(shop, 2, "paid").await);
    }

    // When each shop's first registration call reached the WMS.
    let mut arrived: HashMap<String, Instant> = HashMap::new();
    eventually(WAIT, "a registration call of every shop", || {
        for shop in &shops {
            if app.register_calls(shop) >= 1 {
                arrived.entry(shop.id.clone()).or_insert_with(Instant::now);
            }
        }
        let all = arrived.len() == shops.len();
        async move { all.then_some(()) }
    })
    .await;
    let first = arrived.values().min().copied().expect("arrivals");
    let last = arrived.values().max().copied().expect("arrivals");
    // With passes limited to a few at once, the later shops' calls start only after the WMS
    // answered the first ones (SLOW_WMS later).
    assert!(
        last - first < SLOW_WMS,
        "the shops' calls were not in flight at once: {:?} between the first and the last",
        last - first
    );
    for (shop, numbers) in shops.iter().zip(&numbers) {
        app.wait_for_all(shop, numbers, ShippingStatus::Sent).await;
    }
}
