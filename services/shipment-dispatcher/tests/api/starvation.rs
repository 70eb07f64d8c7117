//! Poison and starvation: back-off follows the failing thing, not the whole shop; a shop
//! disabled mid-pass stops sending before its next WMS call.

use std::time::Duration;

use wmslink_proto::orders::v1::ShippingStatus;
use wmslink_testkit::eventually;
use wmslink_wms_simulator::{Endpoint, Faults};

use crate::helpers::*;

#[tokio::test]
async fn a_flaky_wms_slows_the_failing_cancels_only_never_the_whole_shop() {
    // A shop back-off that climbed with every failed pass would take minutes here.
    let app = spawn_app_with(|config| config.sender.max_backoff_ms = 30_000).await;
    let shop = app.shop().await;
    let numbers = app.publish_orders(&shop, 40, "paid").await;
    app.wait_for_all(&shop, &numbers, ShippingStatus::Sent)
        .await;
    // Every fifth cancel fails with a 500 (not applied).
    app.fault(
        &shop,
        Endpoint::Cancel,
        Faults {
            error_500_ratio: 0.2,
            ..Faults::default()
        },
    );
    for no in &numbers {
        app.status_changed(&order(&shop, no, "cancel", 2)).await;
    }
    eventually(WAIT, "every cancel done in the WMS", || async {
        let orders = app.sim.state().orders(&shop.key).expect("orders");
        (orders.iter().filter(|o| o.cancel_flag == 1).count() == numbers.len()).then_some(())
    })
    .await;
    for no in &numbers {
        app.wait_for(&shop, no, ShippingStatus::Cancelled).await;
    }
    assert!(app.counters(&shop).faults_500 >= 8);
}

#[tokio::test]
async fn a_shop_disabled_mid_pass_stops_sending_before_its_next_call() {
    let app = spawn_app_with(|config| config.sender.batch_size = 1).await;
    let shop = app.shop_with(full_detail(), false).await;
    app.fault(
        &shop,
        Endpoint::Register,
        Faults {
            latency_ms: 700,
            ..Faults::default()
        },
    );
    let numbers = app.publish_orders(&shop, 6, "paid").await;
    app.wait_for_all(&shop, &numbers, ShippingStatus::NotSent)
        .await;
    app.set_enabled(&shop, true).await;
    eventually(WAIT, "the first call in flight", || async {
        (app.register_calls(&shop) >= 1).then_some(())
    })
    .await;
    app.set_enabled(&shop, false).await;

    // The call in flight finishes; at most one more starts before the switch is seen.
    eventually(WAIT, "nothing SENDING", || async {
        let mut sending = 0;
        for no in &numbers {
            let (shipment, _) = app.get(&shop, no).await.expect("shipment");
            if shipment.shipping_status() == ShippingStatus::Sending {
                sending += 1;
            }
        }
        (sending == 0).then_some(())
    })
    .await;
    let calls = app.register_calls(&shop);
    assert!(calls <= 2, "{calls} registration calls after disabling");
    consistently(Duration::from_millis(1_500), "no more calls", || {
        app.register_calls(&shop) == calls
    })
    .await;
    let mut queued = 0;
    for no in &numbers {
        let (shipment, _) = app.get(&shop, no).await.expect("shipment");
        if shipment.shipping_status() == ShippingStatus::Queued {
            queued += 1;
        }
    }
    assert!(queued >= 4, "{queued} left queued");
}

/// Cancels do not hold the shop's pass: a pass takes registrations and cancellations in turns
/// (20 cancels a turn), so an order arriving behind a slow mass cancellation is registered
/// while most of the cancels still wait.
#[tokio::test]
async fn an_order_arriving_behind_a_slow_mass_cancellation_is_registered_between_its_cancels() {
    let app = spawn_app().await;
    let shop = app.shop().await;
    let numbers = app.publish_orders(&shop, 40, "paid").await;
    app.wait_for_all(&shop, &numbers, ShippingStatus::Sent)
        .await;
    // 40 cancels at 300 ms each: 12 s of cancelling.
    app.fault(
        &shop,
        Endpoint::Cancel,
        Faults {
            latency_ms: 300,
            ..Faults::default()
        },
    );
    for no in &numbers {
        app.status_changed(&order(&shop, no, "cancel", 2)).await;
    }
    let pending = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM shipments WHERE shop_id = $1 AND status = 'CANCEL_REQUESTED'",
        )
        .bind(&shop.id)
        .fetch_one(&app.db.pool)
        .await
        .expect("count")
    };
    eventually(WAIT, "the cancels requested", || async {
        (pending().await > 0).then_some(())
    })
    .await;
    let fresh = unique_order_no();
    app.status_changed(&order(&shop, &fresh, "paid", 1)).await;
    app.wait_for(&shop, &fresh, ShippingStatus::Sent).await;
    let waiting = pending().await;
    assert!(
        waiting >= 10,
        "registered between the cancels, not after them: {waiting} cancels still waiting"
    );
    for no in &numbers {
        app.wait_for(&shop, no, ShippingStatus::Cancelled).await;
    }
}
