//! Flow 2 and 5: queueing, batched registration, E1/E2, WMS outages, ERROR and retry.

use std::time::Duration;

use tonic::Code;
use wmslink_proto::orders::v1::ShippingStatus;
use wmslink_testkit::eventually;
use wmslink_wms_simulator::{Endpoint, Faults};

use crate::helpers::*;

#[tokio::test]
async fn an_order_entering_a_target_status_is_registered_once_and_every_step_is_published() {
    let app = spawn_app().await;
    let shop = app.shop().await;
    let no = unique_order_no();
    app.status_changed(&order(&shop, &no, "paid", 1)).await;

    let (shipment, history) = app.wait_for(&shop, &no, ShippingStatus::Sent).await;
    let (wms, _) = app.wms_row(&shop, &no);
    assert_eq!(shipment.wms_order_id, wms.order_id);
    assert_eq!(shipment.sent_revision, 1);
    assert_eq!(shipment.order_status_code, "paid");
    assert!(shipment.last_error.is_empty());
    assert_eq!(transitions(&history), sent_at_first_attempt());
    let call = history
        .iter()
        .find(|h| h.kind == "wms_call")
        .expect("the registration is in the history");
    assert!(
        call.request_summary
            .starts_with("POST /order/ (batch of 1 rows)"),
        "{call:?}"
    );
    assert_eq!(
        call.response_summary,
        format!("OK order_id {}", wms.order_id)
    );
    assert_eq!(app.counters(&shop).registrations_accepted, 1);

    // Every state change went out on shipments.{shop}.updated, in order.
    let events = eventually(WAIT, "ShipmentUpdated up to SENT", || async {
        let events = app.shipment_events(&shop).await;
        events
            .iter()
            .any(|e| {
                e.shipment
                    .as_ref()
                    .is_some_and(|s| s.shipping_status() == ShippingStatus::Sent)
            })
            .then_some(events)
    })
    .await;
    let statuses: Vec<ShippingStatus> = events
        .iter()
        .map(|e| e.shipment.as_ref().expect("shipment").shipping_status())
        .collect();
    assert_eq!(
        statuses,
        vec![
            ShippingStatus::Queued,
            ShippingStatus::Sending,
            ShippingStatus::Sent
        ]
    );
    let sequences: Vec<i64> = events.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, vec![1, 2, 3]);
    assert!(events.iter().all(|e| !e.event_id.is_empty()));
}

#[tokio::test]
async fn four_hundred_fifty_queued_orders_go_in_three_calls() {
    let app = spawn_app().await;
    let shop = app.shop_with(full_detail(), false).await;
    let numbers: Vec<String> = (0..450)
        .map(|i| format!("B-{i:04}-{}", &shop.id[5..]))
        .collect();
    for no in &numbers {
        app.status_changed(&order(&shop, no, "paid", 1)).await;
    }
    // Recorded while the shop is disabled; nothing sent.
    let last = numbers.last().expect("numbers");
    app.wait_for(&shop, last, ShippingStatus::NotSent).await;
    eventually(WAIT, "all 450 recorded", || async {
        let mut all = true;
        for no in numbers.iter().step_by(50) {
            all &= app.get(&shop, no).await.is_some();
        }
        all.then_some(())
    })
    .await;
    assert_eq!(app.register_calls(&shop), 0);

    // Enabling sweeps the shop (E1): all 450 are queued at once and sent 200 + 200 + 50.
    app.set_enabled(&shop, true).await;
    eventually(Duration::from_secs(60), "450 registered", || async {
        (app.counters(&shop).registrations_accepted == 450).then_some(())
    })
    .await;
    for no in numbers.iter().step_by(37) {
        app.wait_for(&shop, no, ShippingStatus::Sent).await;
    }
    let counters = app.counters(&shop);
    assert_eq!(
        counters.requests.get("register").copied(),
        Some(3),
        "{counters:?}"
    );
    assert_eq!(counters.duplicates_refused, 0);
}

#[tokio::test]
async fn run_dispatch_sends_every_target_order_of_the_sync_period_and_answers_counts() {
    let app = spawn_app_with(without_sweeps).await;
    let shop = app.shop_with(full_detail(), false).await;
    let due = app.publish_orders(&shop, 5, "ready").await;
    let not_target = unique_order_no();
    app.status_changed(&order(&shop, &not_target, "new", 1))
        .await;
    let too_old = unique_order_no();
    let mut old = order(&shop, &too_old, "paid", 1);
    let long_ago = chrono::Utc::now() - chrono::Duration::days(100);
    old.order_date = Some(prost_types::Timestamp {
        seconds: long_ago.timestamp(),
        nanos: 0,
    });
    app.status_changed(&old).await;
    app.wait_for(&shop, &too_old, ShippingStatus::NotSent).await;
    app.wait_for(&shop, &not_target, ShippingStatus::NotSent)
        .await;

    // Disabled: refused.
    refused(
        run_dispatch(&app.operator, &shop.id).await,
        Code::FailedPrecondition,
        "disabled shop",
    );

    app.set_enabled(&shop, true).await;
    let answer = run_dispatch(&app.operator, &shop.id).await.expect("run");
    assert_eq!(
        (answer.queued, answer.sent, answer.errors, answer.pending),
        (5, 5, 0, 0),
        "{answer:?}"
    );
    for no in &due {
        let (shipment, history) = app.get(&shop, no).await.expect("shipment");
        assert_eq!(shipment.shipping_status(), ShippingStatus::Sent);
        assert!(history_has(&history, "E2 run by operator"), "{history:?}");
    }
    assert_eq!(app.register_calls(&shop), 1, "one call for the five");
    // Older than the sync period (45 days) and not in a target status: untouched.
    for no in [&too_old, &not_target] {
        let (shipment, _) = app.get(&shop, no).await.expect("shipment");
        assert_eq!(shipment.shipping_status(), ShippingStatus::NotSent);
        assert!(app.wms_orders(&shop, no).is_empty());
    }
    // Nothing left: a second run queues nothing.
    let again = run_dispatch(&app.operator, &shop.id).await.expect("run");
    assert_eq!((again.queued, again.sent, again.pending), (0, 0, 0));
    assert_eq!(app.counters(&shop).registrations_accepted, 5);
}

#[tokio::test]
async fn the_periodic_sweep_sends_what_became_due_without_anyone_asking() {
    let app = spawn_app_with(|config| {
        config.sender.sweep_on_settings_change = false;
        config.sender.sweep_interval_ms = 500;
    })
    .await;
    let shop = app.shop_with(full_detail(), false).await;
    let no = unique_order_no();
    app.status_changed(&order(&shop, &no, "paid", 1)).await;
    app.wait_for(&shop, &no, ShippingStatus::NotSent).await;
    app.set_enabled(&shop, true).await;
    let (_, history) = app.wait_for(&shop, &no, ShippingStatus::Sent).await;
    assert!(history_has(&history, "E1 sweep"), "{history:?}");
}

/// A 500 to a registration may have been applied (wms-api.md): the shipments stay in doubt
/// and are searched, never sent again blindly; not found after the bounded searches they go
/// to ERROR with the reason, and RunDispatch with `retry_errors` sends them once the WMS is
/// back.
#[tokio::test]
async fn orders_answered_500_are_searched_never_resent_blindly_then_error_and_retried() {
    let app = spawn_app().await;
    let shop = app.shop().await;
    app.fault(
        &shop,
        Endpoint::Register,
        Faults {
            error_500_ratio: 1.0,
            ..Faults::default()
        },
    );
    let numbers = app.publish_orders(&shop, 3, "paid").await;
    for no in &numbers {
        let (shipment, history) = app.wait_for(&shop, no, ShippingStatus::Error).await;
        assert!(
            shipment
                .last_error
                .contains("not found in the WMS after 3 searches"),
            "{shipment:?}"
        );
        assert!(
            history.iter().any(|h| h.error.contains("500")),
            "{history:?}"
        );
        assert_eq!(app.rows_received(&shop, no), 1, "{no} sent once");
    }

    // An operator sends the shop's ERROR rows again with one RunDispatch.
    app.clear_faults(&shop);
    let answer = run_dispatch_retrying_errors(&app.operator, &shop.id)
        .await
        .expect("run");
    assert_eq!(answer.retried, 3, "{answer:?}");
    for no in &numbers {
        let (shipment, _) = app.wait_for(&shop, no, ShippingStatus::Sent).await;
        assert!(shipment.last_error.is_empty());
        assert_eq!(app.wms_orders(&shop, no).len(), 1);
    }
    assert_eq!(app.counters(&shop).registrations_accepted, 3);
}

#[tokio::test]
async fn a_row_the_wms_refuses_goes_to_error_with_its_reason_and_can_be_retried() {
    let app = spawn_app().await;
    let shop = app.shop().await;
    let no = unique_order_no();
    let mut bad = order(&shop, &no, "paid", 1);
    if let Some(shipping) = bad.shipping.as_mut() {
        shipping.zip.clear();
    }
    app.status_changed(&bad).await;
    let (shipment, history) = app.wait_for(&shop, &no, ShippingStatus::Error).await;
    assert!(shipment.last_error.contains("E_REQUIRED"), "{shipment:?}");
    assert!(shipment.last_error.contains("shipping.zip"), "{shipment:?}");
    assert!(
        history
            .iter()
            .any(|h| h.kind == "wms_call" && h.response_summary.starts_with("NG E_REQUIRED"))
    );
    assert!(app.wms_orders(&shop, &no).is_empty());

    // The cart fixes the address; nothing is sent until a person retries.
    let mut fixed = order(&shop, &no, "paid", 2);
    fixed.note = "fixed".into();
    app.updated(&fixed).await;
    app.wait_until(&shop, &no, "fixed snapshot stored", |s| {
        s.order_revision == 2
    })
    .await;
    assert_eq!(
        app.get(&shop, &no)
            .await
            .expect("shipment")
            .0
            .shipping_status(),
        ShippingStatus::Error
    );

    let retried = retry_shipment(&app.operator, &shop.id, &no)
        .await
        .expect("retried")
        .shipment
        .expect("shipment");
    assert_eq!(retried.shipping_status(), ShippingStatus::Queued);
    let (shipment, history) = app.wait_for(&shop, &no, ShippingStatus::Sent).await;
    assert_eq!(shipment.sent_revision, 2);
    assert!(history_has(&history, "retried by operator"));
    let (_, row) = app.wms_row(&shop, &no);
    assert_eq!(row["note"], "fixed");
    assert_eq!(row["shipping"]["zip"], "100-0001");

    // Only ERROR can be retried.
    refused(
        retry_shipment(&app.operator, &shop.id, &no).await,
        Code::FailedPrecondition,
        "SENT cannot be retried",
    );
}

#[tokio::test]
async fn proto3_json_events_are_accepted_too() {
    let app = spawn_app().await;
    let shop = app.shop().await;
    let no = unique_order_no();
    app.status_changed_json(&order(&shop, &no, "paid", 1)).await;
    app.wait_for(&shop, &no, ShippingStatus::Sent).await;
    let (_, row) = app.wms_row(&shop, &no);
    assert_eq!(row["payment_method_id"], 7);
}

/// The JSON size of the registration row of `order` (what a proxy's body limit counts).
fn row_bytes(order: &wmslink_proto::orders::v1::Order) -> u64 {
    let mut detail = full_detail();
    detail.endpoint_url = "http://127.0.0.1".into();
    let row = wmslink_wms_client::commerce_robo::build_row(order, &detail).expect("row");
    serde_json::to_vec(&row).expect("json").len() as u64
}

#[tokio::test]
async fn a_batch_refused_whole_by_a_proxy_is_split_until_the_refused_row_is_alone() {
    let app = spawn_app().await;
    let shop = app.shop_with(full_detail(), false).await;
    let numbers: Vec<String> = (0..4).map(|_| unique_order_no()).collect();
    let poison = unique_order_no();
    let mut big = order(&shop, &poison, "paid", 1);
    big.note = "大".repeat(5_000);
    // A proxy in front of the WMS takes one normal row per request, never the big one.
    let limit = row_bytes(&order(&shop, &numbers[0], "paid", 1)) + 300;
    assert!(row_bytes(&big) > limit);
    app.fault(
        &shop,
        Endpoint::Register,
        Faults {
            body_limit_bytes: limit,
            ..Faults::default()
        },
    );
    for no in &numbers {
        app.status_changed(&order(&shop, no, "paid", 1)).await;
    }
    app.status_changed(&big).await;
    app.wait_for_all(&shop, &numbers, ShippingStatus::NotSent)
        .await;
    app.wait_for(&shop, &poison, ShippingStatus::NotSent).await;
    // Enabling queues all five at once: one batch.
    app.set_enabled(&shop, true).await;

    for no in &numbers {
        let (_, history) = app.wait_for(&shop, no, ShippingStatus::Sent).await;
        assert!(history_has(&history, "sent again in halves"), "{history:?}");
        assert_eq!(app.rows_received(&shop, no), 1, "{no} sent exactly once");
    }
    let (shipment, _) = app.wait_for(&shop, &poison, ShippingStatus::Error).await;
    assert!(shipment.last_error.contains("413"), "{shipment:?}");
    assert_eq!(
        app.rows_received(&shop, &poison),
        0,
        "never reached the WMS"
    );
    assert!(app.counters(&shop).faults_413 >= 3);
}

#[tokio::test]
async fn a_whole_call_ng_puts_the_batch_back_to_the_queue_not_to_error() {
    let app = spawn_app().await;
    let shop = app.shop().await;
    app.fault(
        &shop,
        Endpoint::Register,
        Faults {
            ng_ratio: 1.0,
            ng_code: "E_MAINTENANCE".into(),
            ..Faults::default()
        },
    );
    let numbers = app.publish_orders(&shop, 3, "paid").await;
    eventually(WAIT, "refused whole twice", || async {
        (app.counters(&shop).faults_ng >= 2).then_some(())
    })
    .await;
    for no in &numbers {
        let (shipment, history) = app.get(&shop, no).await.expect("shipment");
        assert_ne!(
            shipment.shipping_status(),
            ShippingStatus::Error,
            "a whole-call NG is not the rows' fault: {history:?}"
        );
    }
    app.clear_faults(&shop);
    for no in &numbers {
        let (shipment, history) = app.wait_for(&shop, no, ShippingStatus::Sent).await;
        assert!(shipment.last_error.is_empty());
        assert!(history_has(&history, "E_MAINTENANCE"), "{history:?}");
        assert_eq!(app.wms_orders(&shop, no).len(), 1);
    }
}
