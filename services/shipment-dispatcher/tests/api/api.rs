//! `DispatchService`: scopes, validation, tenancy, GetShipment with its history.

use tonic::Code;
use wmslink_platform::validation::violations_of;
use wmslink_proto::dispatch::v1 as dpb;
use wmslink_proto::dispatch::v1::dispatch_service_client::DispatchServiceClient;
use wmslink_proto::orders::v1::ShippingStatus;

use crate::helpers::*;

#[tokio::test]
async fn get_shipment_shows_every_state_change_and_wms_exchange() {
    let app = spawn_app().await;
    let shop = app.shop().await;
    let no = unique_order_no();
    app.status_changed(&order(&shop, &no, "paid", 1)).await;
    app.wait_for(&shop, &no, ShippingStatus::Sent).await;
    app.status_changed(&order(&shop, &no, "cancel", 2)).await;
    let (shipment, history) = app.wait_for(&shop, &no, ShippingStatus::Cancelled).await;
    assert_eq!(shipment.shop_id, shop.id);
    assert_eq!(shipment.order_no, no);
    assert!(shipment.order_date.is_some());
    assert!(shipment.updated_at.is_some());

    assert_eq!(
        transitions(&history),
        vec![
            pair("NOT_SENT", "QUEUED"),
            pair("QUEUED", "SENDING"),
            pair("SENDING", "SENT"),
            pair("SENT", "CANCEL_REQUESTED"),
            pair("CANCEL_REQUESTED", "CANCELLED"),
        ]
    );
    for entry in &history {
        assert!(entry.at.is_some());
        match entry.kind.as_str() {
            "state_change" => assert!(!entry.reason.is_empty(), "why: {entry:?}"),
            "wms_call" => assert!(!entry.request_summary.is_empty(), "{entry:?}"),
            "note" => {}
            other => panic!("unexpected kind {other}"),
        }
    }
    let calls: Vec<&str> = history
        .iter()
        .filter(|h| h.kind == "wms_call")
        .map(|h| h.request_summary.as_str())
        .collect();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(
        calls[0].contains("robot_id 12") && calls[0].contains("payment_method_id 7"),
        "{calls:?}"
    );
    assert!(calls[1].starts_with("GET /order_cancel/"), "{calls:?}");
    // The history is in time order.
    let times: Vec<_> = history
        .iter()
        .map(|h| h.at.map(|t| (t.seconds, t.nanos)))
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted);
}

#[tokio::test]
async fn calls_need_a_token_with_the_right_scope() {
    let app = spawn_app().await;
    let shop = app.shop().await;
    let no = unique_order_no();
    app.status_changed(&order(&shop, &no, "paid", 1)).await;
    app.wait_for(&shop, &no, ShippingStatus::Sent).await;

    // orders.read may read, not operate.
    refused(
        run_dispatch(&app.reader, &shop.id).await,
        Code::PermissionDenied,
        "reader cannot run",
    );
    refused(
        retry_shipment(&app.reader, &shop.id, &no).await,
        Code::PermissionDenied,
        "reader cannot retry",
    );

    // No or a wrong token.
    let addr = app.dispatcher_addr().expect("running");
    let channel = channel(addr).await;
    let mut anonymous = DispatchServiceClient::new(channel.clone());
    let status = anonymous
        .get_shipment(dpb::GetShipmentRequest {
            shop_id: shop.id.clone(),
            order_no: no.clone(),
        })
        .await
        .expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated);
    let wrong = dispatch_client(channel, "not-a-token-at-all");
    refused(
        get_shipment(&wrong, &shop.id, &no).await,
        Code::Unauthenticated,
        "wrong token",
    );
}

#[tokio::test]
async fn bad_requests_are_invalid_argument_and_shops_see_only_their_own() {
    let app = spawn_app().await;
    let shop = app.shop().await;
    let other = app.shop().await;
    let no = unique_order_no();
    app.status_changed(&order(&shop, &no, "paid", 1)).await;
    app.wait_for(&shop, &no, ShippingStatus::Sent).await;

    let status = refused(
        get_shipment(&app.reader, "bad shop!", "").await,
        Code::InvalidArgument,
        "invalid",
    );
    let fields: Vec<String> = violations_of(&status).into_iter().map(|(f, _)| f).collect();
    assert_eq!(fields, vec!["shop_id".to_owned(), "order_no".to_owned()]);

    // Another shop cannot see or retry this shop's shipment.
    refused(
        get_shipment(&app.reader, &other.id, &no).await,
        Code::NotFound,
        "not this shop's",
    );
    refused(
        retry_shipment(&app.operator, &other.id, &no).await,
        Code::NotFound,
        "not this shop's",
    );
    refused(
        run_dispatch(&app.operator, &wmslink_testkit::unique("shop-")).await,
        Code::NotFound,
        "unknown shop",
    );
}

#[tokio::test]
async fn a_stopped_dispatcher_stops_cleanly_and_a_new_one_goes_on() {
    let mut app = spawn_app().await;
    let shop = app.shop().await;
    let first = unique_order_no();
    app.status_changed(&order(&shop, &first, "paid", 1)).await;
    app.wait_for(&shop, &first, ShippingStatus::Sent).await;
    app.stop().await;

    // Published while no dispatcher runs: picked up by the next one.
    let second = unique_order_no();
    app.status_changed(&order(&shop, &second, "paid", 1)).await;
    app.start().await;
    app.wait_for(&shop, &second, ShippingStatus::Sent).await;
    assert_eq!(app.counters(&shop).registrations_accepted, 2);
}

const BOUND_TOKEN: &str = "test-merchant-console-token-0123456789";

/// I6: a token bound to one shop (a merchant's console with `operate` and `orders.read`)
/// cannot read or change another shop's shipments on any RPC; on its own shop it passes. The
/// check is the authorization layer's, from the service's one table, and the test calls
/// every RPC the service has.
#[tokio::test]
async fn a_shop_bound_token_cannot_read_or_change_another_shop_on_any_rpc() {
    use wmslink_platform::auth::scopes;
    let own = wmslink_test_harness::shop::unique_shop_id();
    let bound_shop = own.clone();
    let app = spawn_app_with(move |config| {
        let mut token = wmslink_test_harness::grpc::token(
            "merchant-console",
            BOUND_TOKEN,
            &[scopes::OPERATE, scopes::ORDERS_READ],
        );
        token.shops = vec![bound_shop];
        config.auth.tokens.push(token);
    })
    .await;
    let key = wmslink_test_harness::wms::new_account(&app.sim, Default::default());
    let own = app
        .shop_with_id(own, full_detail(), &app.sim.base_url(), &key, true)
        .await;
    let other = app.shop().await;
    let (own_no, other_no) = (unique_order_no(), unique_order_no());
    app.status_changed(&order(&own, &own_no, "paid", 1)).await;
    app.status_changed(&order(&other, &other_no, "paid", 1))
        .await;
    app.wait_for(&own, &own_no, ShippingStatus::Sent).await;
    let (before, _) = app.wait_for(&other, &other_no, ShippingStatus::Sent).await;
    let bound = dispatch_client(
        channel(app.dispatcher_addr().expect("running")).await,
        BOUND_TOKEN,
    );

    async fn every_rpc(client: &Dispatch, shop: &str, order_no: &str) -> Vec<(&'static str, Code)> {
        fn code<T>(result: Result<T, tonic::Status>) -> Code {
            result.map_or_else(|status| status.code(), |_| Code::Ok)
        }
        vec![
            (
                "/wmslink.dispatch.v1.DispatchService/RunDispatch",
                code(run_dispatch(client, shop).await),
            ),
            (
                "/wmslink.dispatch.v1.DispatchService/RetryShipment",
                code(retry_shipment(client, shop, order_no).await),
            ),
            (
                "/wmslink.dispatch.v1.DispatchService/RetryCancel",
                code(retry_cancel(client, shop, order_no).await),
            ),
            (
                "/wmslink.dispatch.v1.DispatchService/GetShipment",
                code(get_shipment(client, shop, order_no).await),
            ),
            (
                "/wmslink.dispatch.v1.DispatchService/GetInFlight",
                code(
                    client
                        .clone()
                        .get_in_flight(dpb::GetInFlightRequest {
                            shop_id: shop.to_owned(),
                        })
                        .await,
                ),
            ),
        ]
    }

    let refused = every_rpc(&bound, &other.id, &other_no).await;
    assert_eq!(
        refused
            .iter()
            .map(|(rpc, _)| (*rpc).to_owned())
            .collect::<Vec<_>>(),
        wmslink_platform::authz::methods_of("wmslink.dispatch.v1.DispatchService"),
        "the test calls every RPC"
    );
    for (rpc, code) in &refused {
        assert_eq!(*code, Code::PermissionDenied, "{rpc} on another shop");
    }
    let (after, _) = app.wait_for(&other, &other_no, ShippingStatus::Sent).await;
    assert_eq!(after.updated_at, before.updated_at, "nothing changed");

    // On its own shop the token passes the layer (a retry of a SENT shipment may still be
    // refused by the shipment rules); the dispatch run and the read succeed.
    for (rpc, code) in every_rpc(&bound, &own.id, &own_no).await {
        assert_ne!(code, Code::PermissionDenied, "{rpc} on its own shop");
        assert_ne!(code, Code::Unauthenticated, "{rpc} on its own shop");
        if rpc.ends_with("RunDispatch")
            || rpc.ends_with("GetShipment")
            || rpc.ends_with("GetInFlight")
        {
            assert_eq!(code, Code::Ok, "{rpc} on its own shop");
        }
    }
}
