//! Flow 3, I2 and I3: cancellations, never lost, and CANCELLED is final.

use wmslink_proto::orders::v1::ShippingStatus;
use wmslink_testkit::eventually;
use wmslink_wms_simulator::{Endpoint, Faults, OrderPatch};

use crate::helpers::*;

#[tokio::test]
async fn a_cancellation_before_registration_needs_no_wms_call_and_is_final() {
    let app = spawn_app().await;
    let shop = app.shop().await;

    // NOT_SENT -> CANCELLED.
    let not_sent = unique_order_no();
    app.status_changed(&order(&shop, &not_sent, "new", 1)).await;
    app.wait_for(&shop, &not_sent, ShippingStatus::NotSent)
        .await;
    app.status_changed(&order(&shop, &not_sent, "cancel", 2))
        .await;
    let (_, history) = app
        .wait_for(&shop, &not_sent, ShippingStatus::Cancelled)
        .await;
    assert!(history_has(&history, "no WMS call"), "{history:?}");

    // QUEUED (the WMS refuses the call as a whole: surely not applied) -> CANCELLED.
    app.fault(
        &shop,
        Endpoint::Register,
        Faults {
            ng_ratio: 1.0,
            ng_code: "E_MAINTENANCE".into(),
            ..Faults::default()
        },
    );
    let queued = unique_order_no();
    app.status_changed(&order(&shop, &queued, "paid", 1)).await;
    app.wait_until(&shop, &queued, "queued after a failed attempt", |s| {
        s.shipping_status() == ShippingStatus::Queued && !s.last_error.is_empty()
    })
    .await;
    app.status_changed(&order(&shop, &queued, "cancel", 2))
        .await;
    let (_, history) = app
        .wait_for(&shop, &queued, ShippingStatus::Cancelled)
        .await;
    assert!(
        transitions(&history).contains(&pair("QUEUED", "CANCELLED")),
        "{history:?}"
    );
    app.clear_faults(&shop);

    // I3: nothing sends them afterwards: a later target status, an edit, a manual run.
    for no in [&not_sent, &queued] {
        app.status_changed(&order(&shop, no, "paid", 3)).await;
        let mut edited = order(&shop, no, "paid", 4);
        edited.note = "again".into();
        app.updated(&edited).await;
        app.wait_until(&shop, no, "revision 4 stored", |s| s.order_revision == 4)
            .await;
    }
    run_dispatch(&app.operator, &shop.id).await.expect("run");
    for no in [&not_sent, &queued] {
        let (shipment, _) = app.get(&shop, no).await.expect("shipment");
        assert_eq!(shipment.shipping_status(), ShippingStatus::Cancelled);
        assert!(
            app.wms_orders(&shop, no).is_empty(),
            "{no} never reached the WMS"
        );
    }
    assert_eq!(app.counters(&shop).registrations_accepted, 0);
}

#[tokio::test]
async fn a_registered_order_cancelled_in_the_cart_is_cancelled_in_the_wms() {
    let app = spawn_app().await;
    let shop = app.shop().await;
    let no = unique_order_no();
    app.status_changed(&order(&shop, &no, "paid", 1)).await;
    let (sent, _) = app.wait_for(&shop, &no, ShippingStatus::Sent).await;

    app.status_changed(&order(&shop, &no, "cancel", 2)).await;
    let (shipment, history) = app.wait_for(&shop, &no, ShippingStatus::Cancelled).await;
    assert_eq!(shipment.wms_order_id, sent.wms_order_id);
    assert!(!shipment.cancelled_in_wms_unrequested);
    assert!(!shipment.cancel_rejected);
    let changes = transitions(&history);
    assert!(
        changes.contains(&pair("SENT", "CANCEL_REQUESTED")),
        "{changes:?}"
    );
    assert!(
        changes.contains(&pair("CANCEL_REQUESTED", "CANCELLED")),
        "{changes:?}"
    );
    assert!(history.iter().any(|h| h.kind == "wms_call"
        && h.request_summary == format!("GET /order_cancel/{}", sent.wms_order_id)
        && h.response_summary == "OK"));
    let (wms, _) = app.wms_row(&shop, &no);
    assert_eq!(wms.cancel_flag, 1);
    assert_eq!(app.counters(&shop).cancels, 1);

    // I3: a later status or manual run never registers it again.
    app.status_changed(&order(&shop, &no, "paid", 3)).await;
    app.wait_until(&shop, &no, "revision 3 stored", |s| s.order_revision == 3)
        .await;
    run_dispatch(&app.operator, &shop.id).await.expect("run");
    let (shipment, _) = app.get(&shop, &no).await.expect("shipment");
    assert_eq!(shipment.shipping_status(), ShippingStatus::Cancelled);
    assert_eq!(app.counters(&shop).registrations_accepted, 1);
    assert_eq!(app.wms_orders(&shop, &no).len(), 1);
}

#[tokio::test]
async fn a_cancellation_the_wms_refuses_is_cancel_rejected_with_its_reason_and_can_be_retried() {
    let app = spawn_app().await;
    let shop = app.shop().await;
    let no = unique_order_no();
    app.status_changed(&order(&shop, &no, "paid", 1)).await;
    let (sent, _) = app.wait_for(&shop, &no, ShippingStatus::Sent).await;
    // The warehouse is packing it.
    app.sim
        .state()
        .patch_order(
            &shop.key,
            sent.wms_order_id,
            OrderPatch {
                status_id: Some(90),
                ..OrderPatch::default()
            },
        )
        .expect("patched");

    app.status_changed(&order(&shop, &no, "cancel", 2)).await;
    let (shipment, history) = app
        .wait_for(&shop, &no, ShippingStatus::CancelRejected)
        .await;
    assert!(shipment.cancel_rejected);
    assert!(
        shipment.last_error.contains("E_NOT_CANCELLABLE"),
        "{shipment:?}"
    );
    assert!(
        shipment.last_error.contains("キャンセルできません"),
        "{shipment:?}"
    );
    assert!(history.iter().any(|h| h.kind == "wms_call" && h.response_summary.starts_with("NG E_NOT_CANCELLABLE")));
    assert_eq!(app.counters(&shop).cancels_refused, 1);
    let (wms, _) = app.wms_row(&shop, &no);
    assert_eq!(wms.cancel_flag, 0);

    // Only a rejected cancellation can be retried, by an operator.
    let other = unique_order_no();
    app.status_changed(&order(&shop, &other, "paid", 1)).await;
    app.wait_for(&shop, &other, ShippingStatus::Sent).await;
    refused(
        retry_cancel(&app.operator, &shop.id, &other).await,
        tonic::Code::FailedPrecondition,
        "RetryCancel of a SENT shipment",
    );
    refused(
        retry_cancel(&app.reader, &shop.id, &no).await,
        tonic::Code::PermissionDenied,
        "RetryCancel needs the operate scope",
    );
    // The warehouse put it back; the operator sends the cancellation again.
    app.sim
        .state()
        .patch_order(
            &shop.key,
            sent.wms_order_id,
            OrderPatch {
                status_id: Some(50),
                ..OrderPatch::default()
            },
        )
        .expect("patched");
    let answer = retry_cancel(&app.operator, &shop.id, &no)
        .await
        .expect("retried");
    let retried = answer.shipment.expect("shipment");
    assert!(!retried.cancel_rejected);
    let (shipment, history) = app.wait_for(&shop, &no, ShippingStatus::Cancelled).await;
    assert!(shipment.last_error.is_empty(), "{shipment:?}");
    assert!(
        transitions(&history).contains(&pair("CANCEL_REJECTED", "CANCEL_REQUESTED")),
        "{history:?}"
    );
    let (wms, _) = app.wms_row(&shop, &no);
    assert_eq!(wms.cancel_flag, 1);
}

#[tokio::test]
async fn a_cancellation_arriving_while_sending_is_not_lost() {
    let app = spawn_app().await;
    let shop = app.shop().await;
    app.fault(
        &shop,
        Endpoint::Register,
        Faults {
            latency_ms: 1_500,
            ..Faults::default()
        },
    );
    let no = unique_order_no();
    app.status_changed(&order(&shop, &no, "paid", 1)).await;
    app.wait_for(&shop, &no, ShippingStatus::Sending).await;
    app.status_changed(&order(&shop, &no, "cancel", 2)).await;
    app.wait_until(&shop, &no, "cancellation recorded while sending", |s| {
        s.cancel_pending
    })
    .await;

    let (shipment, history) = app.wait_for(&shop, &no, ShippingStatus::Cancelled).await;
    assert!(!shipment.cancel_pending);
    let changes = transitions(&history);
    assert!(changes.contains(&pair("SENDING", "SENT")), "{changes:?}");
    assert!(
        changes.contains(&pair("SENT", "CANCEL_REQUESTED")),
        "{changes:?}"
    );
    assert!(
        changes.contains(&pair("CANCEL_REQUESTED", "CANCELLED")),
        "{changes:?}"
    );
    let (wms, _) = app.wms_row(&shop, &no);
    assert_eq!(wms.cancel_flag, 1);
}

#[tokio::test]
async fn a_cancel_whose_answer_is_lost_is_resolved_by_reading_the_wms_order() {
    let app = spawn_app_with(|config| config.wms.request_timeout_ms = 1_000).await;
    let shop = app.shop().await;
    let no = unique_order_no();
    app.status_changed(&order(&shop, &no, "paid", 1)).await;
    app.wait_for(&shop, &no, ShippingStatus::Sent).await;
    app.fault(
        &shop,
        Endpoint::Cancel,
        Faults {
            apply_then_delay_ms: 3_000,
            ..Faults::default()
        },
    );

    app.status_changed(&order(&shop, &no, "cancel", 2)).await;
    let (_, history) = app.wait_for(&shop, &no, ShippingStatus::Cancelled).await;
    assert!(
        history.iter().any(|h| h.kind == "wms_call"
            && h.request_summary.starts_with("GET /order_cancel/")
            && !h.error.is_empty()),
        "{history:?}"
    );
    assert!(
        history
            .iter()
            .any(|h| h.kind == "wms_call" && h.response_summary == "cancel_flag 1"),
        "{history:?}"
    );
    let counters = app.counters(&shop);
    assert_eq!(counters.cancels, 1);
    assert_eq!(counters.faults_delayed, 1);
}

#[tokio::test]
async fn a_cancellation_waits_for_a_disabled_shop_and_goes_out_once_it_is_enabled() {
    let app = spawn_app().await;
    let shop = app.shop().await;
    let no = unique_order_no();
    app.status_changed(&order(&shop, &no, "paid", 1)).await;
    app.wait_for(&shop, &no, ShippingStatus::Sent).await;
    app.set_enabled(&shop, false).await;
    app.status_changed(&order(&shop, &no, "cancel", 2)).await;
    app.wait_for(&shop, &no, ShippingStatus::CancelRequested)
        .await;
    // Disabled: the WMS is not touched, sweeps included.
    consistently(
        std::time::Duration::from_millis(1_500),
        "no cancel call while disabled",
        || !app.counters(&shop).requests.contains_key("cancel"),
    )
    .await;

    app.set_enabled(&shop, true).await;
    app.wait_for(&shop, &no, ShippingStatus::Cancelled).await;
    eventually(WAIT, "one cancel call", || async {
        (app.counters(&shop).cancels == 1).then_some(())
    })
    .await;
}
