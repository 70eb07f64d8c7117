//! Back-off follows the failing thing, not the whole shop: with a WMS that fails a fifth of the
//! cancel calls (HTTP 500), the shop's cancellations keep flowing near the access key's rate
//! limit. A failing order backs off on its own; any progress resets the shop's back-off.

use std::time::Duration;

use tokio::time::Instant;
use wmslink_e2e::{STATUS_CANCELLED, STATUS_READY, System, SystemOptions, order};
use wmslink_proto::orders::v1 as orders;
use wmslink_testkit::{eventually_every, unique};
use wmslink_wms_simulator::{Endpoint, Faults, SimRateLimit};

/// The key's budget, in requests per second, for every service that calls the WMS with it.
const RATE: f64 = 4.0;
const ORDERS: usize = 40;

fn requests(system: &System, key: &str) -> u64 {
    system
        .simulator
        .state()
        .counters(key)
        .unwrap()
        .requests
        .values()
        .sum()
}

#[tokio::test]
async fn with_a_fifth_of_cancel_calls_failing_cancels_keep_flowing_near_the_rate_limit() {
    let system = System::start(SystemOptions {
        wms_rate_limit: SimRateLimit::new(RATE, 4),
        ..SystemOptions::default()
    })
    .await
    .unwrap();
    let shop = unique("shop-");
    let key = system.enable_shop(&shop).await.unwrap();
    let numbers: Vec<String> = (0..ORDERS).map(|i| format!("F-{i}")).collect();
    let mut client = system.orders();
    for no in &numbers {
        client
            .upsert_order(orders::UpsertOrderRequest {
                order: Some(order(&shop, no, 1, STATUS_READY)),
            })
            .await
            .unwrap();
    }
    eventually_every(
        Duration::from_millis(200),
        Duration::from_secs(60),
        "every order registered",
        || async {
            let orders = system.simulator.state().orders(&key).unwrap();
            (orders.len() == ORDERS).then_some(())
        },
    )
    .await;

    system
        .simulator
        .state()
        .set_faults(
            &key,
            Faults {
                error_500_ratio: 0.2,
                endpoints: vec![Endpoint::Cancel],
                ..Faults::default()
            },
        )
        .unwrap();
    let calls_before = requests(&system, &key);
    let started = Instant::now();
    for no in &numbers {
        client
            .upsert_order(orders::UpsertOrderRequest {
                order: Some(order(&shop, no, 2, STATUS_CANCELLED)),
            })
            .await
            .unwrap();
    }
    eventually_every(
        Duration::from_millis(200),
        Duration::from_secs(180),
        "every order cancelled in the WMS",
        || async {
            let orders = system.simulator.state().orders(&key).unwrap();
            (orders.iter().filter(|o| o.cancel_flag == 1).count() == ORDERS).then_some(())
        },
    )
    .await;
    let took = started.elapsed();
    let counters = system.simulator.state().counters(&key).unwrap();
    let calls = requests(&system, &key) - calls_before;
    system.stop().await;

    assert!(
        counters.faults_500 >= 4,
        "the WMS failed cancel calls: {counters:?}"
    );
    assert_eq!(counters.rate_limited, 0, "the budget was kept");
    // Every call the cancellations took (failed ones, read-backs and retries included) went
    // out at no less than half the key's rate: a shop back-off that climbed with each failed
    // call (up to a minute) would hold them for minutes.
    let bound = Duration::from_secs_f64(calls as f64 / RATE * 2.0 + 5.0);
    println!(
        "{ORDERS} cancellations in {took:?}: {calls} WMS calls at {RATE}/s, {} failed with 500",
        counters.faults_500
    );
    assert!(
        took <= bound,
        "{ORDERS} cancellations took {took:?} for {calls} WMS calls at {RATE}/s (bound {bound:?}); {} failed",
        counters.faults_500
    );
}
