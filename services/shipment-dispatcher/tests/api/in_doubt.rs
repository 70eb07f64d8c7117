//! I1 and I2 under unknown outcomes: "not found" is not "never applied". A registration whose
//! answer was lost (timeout, 5xx) may be applied by the WMS later; the shipment stays in
//! doubt, is searched only once the WMS had time to apply it, is never sent again blindly,
//! and a cart cancel meanwhile is carried out in the WMS. Every test counts the rows the WMS
//! **received** per order number, not only what it accepted.

use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};
use wmslink_proto::orders::v1::ShippingStatus;
use wmslink_testkit::eventually;
use wmslink_wms_simulator::{Endpoint, Faults};

use crate::helpers::*;

/// A registration call times out after 1 s; searches of shipments in doubt run 1.5 s after
/// the claim, then every second, five times before ERROR.
fn one_second_timeout(config: &mut wmslink_shipment_dispatcher::Config) {
    config.wms.request_timeout_ms = 1_000;
    config.sender.in_doubt_search_interval_ms = 1_000;
    config.sender.in_doubt_max_searches = 5;
}

#[tokio::test]
async fn a_registration_applied_after_the_client_gave_up_is_found_and_sent_once() {
    let app = spawn_app_with(one_second_timeout).await;
    let shop = app.shop_with(full_detail(), false).await;
    // The WMS applies each registration 2.5 s after it arrived: after the client timed out
    // and after the first search found nothing.
    app.fault(
        &shop,
        Endpoint::Register,
        Faults {
            apply_late_ms: 2_500,
            ..Faults::default()
        },
    );
    let numbers = app.publish_orders(&shop, 3, "paid").await;
    app.wait_for_all(&shop, &numbers, ShippingStatus::NotSent)
        .await;
    app.set_enabled(&shop, true).await;

    for no in &numbers {
        let (shipment, history) = app.wait_for(&shop, no, ShippingStatus::Sent).await;
        let (wms, _) = app.wms_row(&shop, no);
        assert_eq!(shipment.wms_order_id, wms.order_id);
        assert!(
            history_has(&history, "the outcome is unknown"),
            "{history:?}"
        );
        assert!(
            history_has(&history, "adopted without sending again"),
            "{history:?}"
        );
        assert_eq!(app.rows_received(&shop, no), 1, "{no} sent exactly once");
        assert!(
            !shipment.registered_outside_wmslink,
            "wmslink's own late registration is not flagged: {shipment:?}"
        );
    }
    let counters = app.counters(&shop);
    assert_eq!(counters.registrations_accepted, 3);
    assert_eq!(counters.duplicates_refused, 0);
}

#[tokio::test]
async fn a_cart_cancel_while_a_late_registration_is_in_doubt_is_carried_out_in_the_wms() {
    let app = spawn_app_with(one_second_timeout).await;
    let shop = app.shop().await;
    app.fault(
        &shop,
        Endpoint::Register,
        Faults {
            apply_late_ms: 2_500,
            ..Faults::default()
        },
    );
    let numbers = app.publish_orders(&shop, 3, "paid").await;
    // The call timed out: the WMS has not applied them yet.
    for no in &numbers {
        app.wait_until_history(&shop, no, "outcome unknown, the WMS may have applied")
            .await;
    }
    assert_eq!(app.counters(&shop).registrations_accepted, 0);
    for no in &numbers {
        app.status_changed(&order(&shop, no, "cancel", 2)).await;
    }

    for no in &numbers {
        let (_, history) = app.wait_for(&shop, no, ShippingStatus::Cancelled).await;
        assert!(
            history.iter().any(
                |h| h.kind == "wms_call" && h.request_summary.starts_with("GET /order_cancel/")
            ),
            "cancelled in the WMS: {history:?}"
        );
        let orders = app.wms_orders(&shop, no);
        assert_eq!(orders.len(), 1, "{orders:?}");
        assert_eq!(orders[0].cancel_flag, 1, "no cancelled order stays live");
        assert_eq!(app.rows_received(&shop, no), 1, "{no} sent exactly once");
    }
}

#[tokio::test]
async fn a_registration_applied_then_answered_500_is_adopted_without_a_second_send() {
    let app = spawn_app().await;
    let shop = app.shop_with(full_detail(), false).await;
    app.fault(
        &shop,
        Endpoint::Register,
        Faults {
            apply_then_500_ratio: 1.0,
            ..Faults::default()
        },
    );
    let numbers = app.publish_orders(&shop, 3, "paid").await;
    app.wait_for_all(&shop, &numbers, ShippingStatus::NotSent)
        .await;
    app.set_enabled(&shop, true).await;

    for no in &numbers {
        let (shipment, history) = app.wait_for(&shop, no, ShippingStatus::Sent).await;
        assert!(
            history.iter().any(|h| h.error.contains("500")),
            "{history:?}"
        );
        let (wms, _) = app.wms_row(&shop, no);
        assert_eq!(shipment.wms_order_id, wms.order_id);
        assert_eq!(app.rows_received(&shop, no), 1, "{no} sent exactly once");
    }
    let counters = app.counters(&shop);
    assert_eq!(counters.registrations_accepted, 3);
    assert_eq!(counters.duplicates_refused, 0, "never sent blindly again");
}

/// A WMS (wiremock) that passes the connection check, answers registrations with `register`
/// and finds nothing in any search by order number.
async fn wms_that_finds_nothing(register: ResponseTemplate) -> MockServer {
    let wms = MockServer::start().await;
    // The connection check and every search by order number: nothing.
    Mock::given(method("GET"))
        .and(path("/order/search"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "result": "OK", "data": [], "total": 0, "error": []
        })))
        .mount(&wms)
        .await;
    Mock::given(method("POST"))
        .and(path("/order/"))
        .respond_with(register)
        .mount(&wms)
        .await;
    wms
}

/// Requests the WMS received for `method path` (with `query` when given).
async fn received(wms: &MockServer, verb: &str, at: &str, query: Option<&str>) -> usize {
    wms.received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| {
            r.method.as_str() == verb
                && r.url.path() == at
                && query.is_none_or(|q| r.url.query().is_some_and(|s| s.contains(q)))
        })
        .count()
}

#[tokio::test]
async fn an_unknown_outcome_never_found_goes_to_error_after_bounded_searches_and_is_not_resent() {
    let app = spawn_app().await;
    let wms = wms_that_finds_nothing(ResponseTemplate::new(504)).await;
    let shop = app
        .shop_at(full_detail(), &wms.uri(), "wiremock-key", true)
        .await;
    let no = unique_order_no();
    app.status_changed(&order(&shop, &no, "paid", 1)).await;

    let (shipment, history) = app.wait_for(&shop, &no, ShippingStatus::Error).await;
    assert!(
        shipment
            .last_error
            .contains("not found in the WMS after 3 searches"),
        "{shipment:?}"
    );
    assert!(history_has(&history, "search 1 of 3"), "{history:?}");
    assert!(history_has(&history, "search 2 of 3"), "{history:?}");
    assert_eq!(
        received(&wms, "POST", "/order/", None).await,
        1,
        "sent once"
    );
    assert_eq!(
        received(&wms, "GET", "/order/search", Some("order_no-in")).await,
        3
    );
}

#[tokio::test]
async fn e_duplicate_with_a_search_that_finds_nothing_is_an_error_not_an_endless_requeue() {
    let app = spawn_app().await;
    let no = unique_order_no();
    let wms = wms_that_finds_nothing(ResponseTemplate::new(200).set_body_json(serde_json::json!({
        "result": "NG",
        "data": [{
            "order_no": no, "result": "NG",
            "error": [{ "code": "E_DUPLICATE", "message": "order_no already registered" }]
        }],
        "error": []
    })))
    .await;
    let shop = app
        .shop_at(full_detail(), &wms.uri(), "wiremock-key", true)
        .await;
    app.status_changed(&order(&shop, &no, "paid", 1)).await;

    let (shipment, _) = app.wait_for(&shop, &no, ShippingStatus::Error).await;
    assert!(
        shipment.last_error.contains("live order we cannot find"),
        "{shipment:?}"
    );
    assert_eq!(
        received(&wms, "POST", "/order/", None).await,
        1,
        "sent once"
    );
}

#[tokio::test]
async fn a_cart_cancel_of_an_error_that_may_be_in_the_wms_searches_and_cancels_there() {
    // Two searches, 1.5 s and 2 s after the claim, then ERROR.
    let app = spawn_app_with(|config| {
        config.wms.request_timeout_ms = 1_000;
        config.sender.in_doubt_max_searches = 2;
    })
    .await;
    let shop = app.shop().await;
    // Applied 4 s late: after the in-doubt window the shipment is ERROR, and then the WMS
    // holds it.
    app.fault(
        &shop,
        Endpoint::Register,
        Faults {
            apply_late_ms: 4_000,
            ..Faults::default()
        },
    );
    let no = unique_order_no();
    app.status_changed(&order(&shop, &no, "paid", 1)).await;
    app.wait_for(&shop, &no, ShippingStatus::Error).await;
    eventually(WAIT, "the late registration applied", || async {
        (app.wms_orders(&shop, &no).len() == 1).then_some(())
    })
    .await;

    app.status_changed(&order(&shop, &no, "cancel", 2)).await;
    let (_, history) = app.wait_for(&shop, &no, ShippingStatus::Cancelled).await;
    assert!(
        transitions(&history).contains(&pair("ERROR", "CANCEL_REQUESTED")),
        "{history:?}"
    );
    let orders = app.wms_orders(&shop, &no);
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].cancel_flag, 1, "no cancelled order stays live");
    assert_eq!(app.rows_received(&shop, &no), 1);
}

/// One failing in-doubt search never blocks the shop: while every search of the WMS fails, the
/// shipment in doubt keeps waiting (searched again later, never re-sent), and the shop's other
/// registrations and cancellations go on.
#[tokio::test]
async fn a_failing_search_of_a_shipment_in_doubt_holds_no_other_registration_or_cancel() {
    let app = spawn_app_with(one_second_timeout).await;
    let shop = app.shop().await;
    let sent = unique_order_no();
    app.status_changed(&order(&shop, &sent, "paid", 1)).await;
    app.wait_for(&shop, &sent, ShippingStatus::Sent).await;

    // Answered 500, applied or not: in doubt.
    app.fault(
        &shop,
        Endpoint::Register,
        Faults {
            error_500_ratio: 1.0,
            ..Faults::default()
        },
    );
    let doubtful = unique_order_no();
    app.status_changed(&order(&shop, &doubtful, "paid", 1))
        .await;
    app.wait_until(&shop, &doubtful, "in doubt", |s| {
        s.shipping_status() == ShippingStatus::Sending && s.possibly_in_wms
    })
    .await;
    // From now on every search fails, and registrations and cancels work.
    app.fault(
        &shop,
        Endpoint::Search,
        Faults {
            error_500_ratio: 1.0,
            ..Faults::default()
        },
    );
    app.wait_until_history(&shop, &doubtful, "the search of the WMS failed")
        .await;

    let fresh = unique_order_no();
    app.status_changed(&order(&shop, &fresh, "paid", 1)).await;
    app.status_changed(&order(&shop, &sent, "cancel", 2)).await;
    app.wait_for(&shop, &fresh, ShippingStatus::Sent).await;
    app.wait_for(&shop, &sent, ShippingStatus::Cancelled).await;
    let (wms, _) = app.wms_row(&shop, &sent);
    assert_eq!(wms.cancel_flag, 1);

    let (still, _) = app.get(&shop, &doubtful).await.expect("shipment");
    assert_eq!(still.shipping_status(), ShippingStatus::Sending);
    assert!(still.possibly_in_wms);
    assert_eq!(app.rows_received(&shop, &doubtful), 1, "never re-sent");
    assert_eq!(app.rows_received(&shop, &fresh), 1);
}

/// A `RunDispatch` call dropped by its caller mid-request (the pass runs in the call) is an
/// unknown outcome like any other: the registration the WMS applied anyway is found by a later
/// search and adopted, never sent again, and the dropped pass leaves the shop unlocked.
#[tokio::test]
async fn a_run_dispatch_dropped_mid_request_is_an_unknown_outcome_found_later_not_resent() {
    let app = spawn_app_with(without_sweeps).await;
    let shop = app.shop_with(full_detail(), false).await;
    let no = unique_order_no();
    app.status_changed(&order(&shop, &no, "paid", 1)).await;
    app.wait_for(&shop, &no, ShippingStatus::NotSent).await;
    app.set_enabled(&shop, true).await;
    // The WMS answers after 2 s, and applies what it received even when the client hung up.
    app.fault(
        &shop,
        Endpoint::Register,
        Faults {
            latency_ms: 2_000,
            ..Faults::default()
        },
    );
    let dropped = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        run_dispatch(&app.operator, &shop.id),
    )
    .await;
    assert!(dropped.is_err(), "the caller hung up first: {dropped:?}");
    app.wait_until(&shop, &no, "claimed before the call", |s| {
        s.shipping_status() == ShippingStatus::Sending
    })
    .await;
    eventually(WAIT, "the WMS applied it after all", || async {
        (app.wms_orders(&shop, &no).len() == 1).then_some(())
    })
    .await;
    app.clear_faults(&shop);

    // Later runs search it once the call is surely over (and are not refused as busy).
    let (shipment, history) = eventually(WAIT, "found by a search and adopted", || async {
        run_dispatch(&app.operator, &shop.id)
            .await
            .expect("RunDispatch");
        app.get(&shop, &no)
            .await
            .filter(|(s, _)| s.shipping_status() == ShippingStatus::Sent)
    })
    .await;
    assert!(
        history_has(&history, "adopted without sending again"),
        "the answer was lost with the call: {history:?}"
    );
    let (wms, _) = app.wms_row(&shop, &no);
    assert_eq!(shipment.wms_order_id, wms.order_id);
    assert_eq!(app.rows_received(&shop, &no), 1, "sent exactly once");
}
