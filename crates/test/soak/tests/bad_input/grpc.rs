//! Bad gRPC requests to every service: INVALID_ARGUMENT naming the field, for the same classes
//! of bad values as on NATS plus page sizes and tokens; a good request right after each bad one
//! still answers, and nothing of a refused order reaches the WMS.

use prost::Message;
use tonic::Status;
use wmslink_e2e::{STATUS_READY, order};
use wmslink_proto::dispatch::v1 as dispatch;
use wmslink_proto::ops::v1 as ops;
use wmslink_proto::orders::v1 as orders;
use wmslink_proto::settings::v1 as settings;
use wmslink_proto::sync::v1 as sync;

use crate::common::{assert_invalid_field, dead_letters_client, system_with_shop};

fn ts(seconds: i64, nanos: i32) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos })
}

/// The orders an upsert must refuse, each with the field it must name.
fn bad_orders(shop: &str) -> Vec<(&'static str, orders::Order, &'static str)> {
    let base = |no: &str| order(shop, no, 1, STATUS_READY);
    let with = |no: &str, change: &dyn Fn(&mut orders::Order)| {
        let mut order = base(no);
        change(&mut order);
        order
    };
    vec![
        ("empty order", orders::Order::default(), "order.shop_id"),
        (
            "revision 0",
            with("G-REV0", &|o| o.revision = 0),
            "order.revision",
        ),
        (
            "revision i64::MIN",
            with("G-REVMIN", &|o| o.revision = i64::MIN),
            "order.revision",
        ),
        (
            "order number with subject characters",
            with("G-X", &|o| o.order_no = "A.*.>".into()),
            "order.order_no",
        ),
        (
            "order number too long",
            with("G-X", &|o| o.order_no = "N".repeat(65)),
            "order.order_no",
        ),
        (
            "shop id with a wildcard",
            with("G-SHOP", &|o| o.shop_id = "shop.*".into()),
            "order.shop_id",
        ),
        (
            "no order date",
            with("G-NODATE", &|o| o.order_date = None),
            "order.order_date",
        ),
        (
            "order date beyond year 9999",
            with("G-DATE", &|o| o.order_date = ts(i64::MAX, 0)),
            "order.order_date",
        ),
        (
            "negative nanos",
            with("G-NANOS", &|o| o.order_date = ts(1_700_000_000, -5)),
            "order.order_date",
        ),
        (
            "empty status",
            with("G-STATUS", &|o| o.status_code.clear()),
            "order.status_code",
        ),
        (
            "control characters",
            with("G-CTRL", &|o| o.note = "a\u{0}b".into()),
            "order.note",
        ),
        (
            "control characters in an address",
            with("G-CTRL2", &|o| {
                if let Some(a) = o.shipping.as_mut() {
                    a.name = "\u{1b}[31mred".into();
                }
            }),
            "order.shipping.name",
        ),
        (
            "text too long",
            with("G-LONG", &|o| {
                if let Some(a) = o.orderer.as_mut() {
                    a.address1 = "x".repeat(1_001);
                }
            }),
            "order.orderer.address1",
        ),
        (
            "negative amount",
            with("G-NEG", &|o| {
                if let Some(a) = o.amounts.as_mut() {
                    a.discount = -1;
                }
            }),
            "order.amounts.discount",
        ),
        (
            "zero quantity",
            with("G-QTY0", &|o| o.lines[0].quantity = 0),
            "order.lines[0].quantity",
        ),
        (
            "overflowing quantity",
            with("G-QTYMAX", &|o| o.lines[0].quantity = i64::MAX),
            "order.lines[0].quantity",
        ),
        (
            "negative unit price",
            with("G-PRICE", &|o| o.lines[0].unit_price = -100),
            "order.lines[0].unit_price",
        ),
        (
            "empty sku",
            with("G-SKU", &|o| o.lines[0].sku.clear()),
            "order.lines[0].sku",
        ),
        (
            "501 lines",
            with("G-LINES", &|o| o.lines = vec![o.lines[0].clone(); 501]),
            "order.lines",
        ),
        (
            "51 options",
            with("G-OPTS", &|o| {
                o.lines[0].options = (0..51).map(|i| (format!("k{i}"), "v".into())).collect();
            }),
            "order.lines[0].options",
        ),
        (
            "empty extra key",
            with("G-EXTRA", &|o| {
                o.extra.insert(String::new(), "v".into());
            }),
            "order.extra",
        ),
        (
            "impossible delivery date",
            with("G-DDATE", &|o| o.delivery_date = "2026-13-01".into()),
            "order.delivery_date",
        ),
    ]
}

fn check(case: &str, result: Result<(), Status>, field: &str) {
    match result {
        Ok(()) => panic!("{case}: accepted"),
        Err(status) => assert_invalid_field(case, &status, field),
    }
}

#[tokio::test]
async fn every_bad_request_to_every_service_is_invalid_argument_naming_the_field() {
    let (system, shop, key) = system_with_shop().await;
    let mut orders_client = system.orders();

    // OrderService.UpsertOrder: every bad order refused, a good one behind each still stored.
    for (index, (case, bad, field)) in bad_orders(&shop).into_iter().enumerate() {
        let result = orders_client
            .upsert_order(orders::UpsertOrderRequest { order: Some(bad) })
            .await
            .map(drop);
        check(case, result, field);
        let good = order(&shop, &format!("G-OK-{index}"), 1, STATUS_READY);
        orders_client
            .upsert_order(orders::UpsertOrderRequest { order: Some(good) })
            .await
            .unwrap_or_else(|status| panic!("the good order after {case}: {status:?}"));
    }
    check(
        "upsert without an order",
        orders_client
            .upsert_order(orders::UpsertOrderRequest { order: None })
            .await
            .map(drop),
        "order",
    );
    // An order over the 1 MiB bound: refused by gRPC's own decoding limit or by the check,
    // never stored.
    let mut huge = order(&shop, "G-HUGE", 1, STATUS_READY);
    huge.lines = vec![huge.lines[0].clone(); 500];
    for line in &mut huge.lines {
        line.name = "大".repeat(1_000);
    }
    assert!(huge.encoded_len() > 1024 * 1024);
    let status = orders_client
        .upsert_order(orders::UpsertOrderRequest { order: Some(huge) })
        .await
        .expect_err("an order over 1 MiB is refused");
    assert!(
        matches!(
            status.code(),
            tonic::Code::InvalidArgument | tonic::Code::ResourceExhausted | tonic::Code::OutOfRange
        ),
        "{status:?}"
    );

    // ChangeOrderStatus, GetOrder.
    let change = |shop_id: &str, order_no: &str, status_code: &str, expected_revision| {
        orders::ChangeOrderStatusRequest {
            shop_id: shop_id.into(),
            order_no: order_no.into(),
            status_code: status_code.into(),
            expected_revision,
        }
    };
    for (case, request, field) in [
        (
            "change: empty shop",
            change("", "G-OK-0", "new", 1),
            "shop_id",
        ),
        (
            "change: bad order number",
            change(&shop, "a b", "new", 1),
            "order_no",
        ),
        (
            "change: empty status",
            change(&shop, "G-OK-0", "", 1),
            "status_code",
        ),
        (
            "change: status with control characters",
            change(&shop, "G-OK-0", "new\u{7}", 1),
            "status_code",
        ),
        (
            "change: negative revision",
            change(&shop, "G-OK-0", "new", -1),
            "expected_revision",
        ),
    ] {
        check(
            case,
            orders_client.change_order_status(request).await.map(drop),
            field,
        );
    }
    for (case, shop_id, order_no, field) in [
        ("get: empty shop", "", "G-OK-0", "shop_id"),
        ("get: shop too long", &*"s".repeat(200), "G-OK-0", "shop_id"),
        ("get: bad order number", &*shop, "../x", "order_no"),
    ] {
        check(
            case,
            orders_client
                .get_order(orders::GetOrderRequest {
                    shop_id: shop_id.into(),
                    order_no: order_no.into(),
                })
                .await
                .map(drop),
            field,
        );
    }

    // ListOrders: page sizes, tokens and filters.
    let list = |page_size, page_token: &str, filter| orders::ListOrdersRequest {
        shop_id: shop.clone(),
        filter,
        page_size,
        page_token: page_token.into(),
    };
    let filter = |change: &dyn Fn(&mut orders::ListOrdersFilter)| {
        let mut filter = orders::ListOrdersFilter::default();
        change(&mut filter);
        Some(filter)
    };
    for (case, request, field) in [
        ("list: page size 201", list(201, "", None), "page_size"),
        (
            "list: page size u32::MAX",
            list(u32::MAX, "", None),
            "page_size",
        ),
        (
            "list: garbage token",
            list(10, "not a token!", None),
            "page_token",
        ),
        (
            "list: base64 of garbage",
            list(10, "djE6eHl6OkEtMQ", None),
            "page_token",
        ),
        (
            "list: token of another version",
            list(10, "djk6MTo6QS0x", None),
            "page_token",
        ),
        (
            "list: token with a bad order number",
            list(10, "djE6MTAwOmEgYg", None),
            "page_token",
        ),
        (
            "list: 51 status codes",
            list(10, "", filter(&|f| f.status_codes = vec!["new".into(); 51])),
            "filter.status_codes",
        ),
        (
            "list: unknown shipping status",
            list(10, "", filter(&|f| f.shipping_statuses = vec![99])),
            "filter.shipping_statuses[0]",
        ),
        (
            "list: negative WMS status",
            list(10, "", filter(&|f| f.wms_status_ids = vec![-1])),
            "filter.wms_status_ids[0]",
        ),
        (
            "list: dates reversed",
            list(
                10,
                "",
                filter(&|f| {
                    f.order_date_from = ts(1_800_000_000, 0);
                    f.order_date_to = ts(1_700_000_000, 0);
                }),
            ),
            "filter.order_date_to",
        ),
        (
            "list: date out of range",
            list(
                10,
                "",
                filter(&|f| f.order_date_from = ts(-100_000_000_000, 0)),
            ),
            "filter.order_date_from",
        ),
        (
            "list: prefix with control characters",
            list(10, "", filter(&|f| f.order_no_prefix = "\u{0}".into())),
            "filter.order_no_prefix",
        ),
    ] {
        check(
            case,
            orders_client.list_orders(request).await.map(drop),
            field,
        );
    }
    let mut empty_shop = list(10, "", None);
    empty_shop.shop_id.clear();
    check(
        "list: empty shop",
        orders_client.list_orders(empty_shop).await.map(drop),
        "shop_id",
    );

    // DispatchService.
    let mut dispatch_client = system.dispatch();
    check(
        "run dispatch: bad shop",
        dispatch_client
            .run_dispatch(dispatch::RunDispatchRequest {
                shop_id: "a shop".into(),
                retry_errors: false,
            })
            .await
            .map(drop),
        "shop_id",
    );
    for (case, shop_id, order_no, field) in [
        ("retry: bad order number", &*shop, "x y", "order_no"),
        ("retry: empty shop", "", "G-OK-0", "shop_id"),
    ] {
        check(
            case,
            dispatch_client
                .retry_shipment(dispatch::RetryShipmentRequest {
                    shop_id: shop_id.into(),
                    order_no: order_no.into(),
                })
                .await
                .map(drop),
            field,
        );
        check(
            case,
            dispatch_client
                .get_shipment(dispatch::GetShipmentRequest {
                    shop_id: shop_id.into(),
                    order_no: order_no.into(),
                })
                .await
                .map(drop),
            field,
        );
    }

    // SyncService.
    let mut sync_client = system.sync();
    let run = |shop_id: &str, from, to| sync::RunSyncRequest {
        shop_id: shop_id.into(),
        from,
        to,
    };
    for (case, request, field) in [
        ("sync: bad shop", run("s/1", None, None), "shop_id"),
        (
            "sync: from without to",
            run(&shop, ts(1_700_000_000, 0), None),
            "to",
        ),
        (
            "sync: to before from",
            run(&shop, ts(1_800_000_000, 0), ts(1_700_000_000, 0)),
            "to",
        ),
        (
            "sync: more than 366 days",
            run(&shop, ts(1_700_000_000, 0), ts(1_800_000_000, 0)),
            "to",
        ),
        (
            "sync: timestamps out of range",
            run(&shop, ts(i64::MIN, 0), ts(i64::MAX, 0)),
            "from",
        ),
    ] {
        check(case, sync_client.run_sync(request).await.map(drop), field);
    }
    check(
        "sync runs: bad shop",
        sync_client
            .get_sync_runs(sync::GetSyncRunsRequest {
                shop_id: "".into(),
                limit: 5,
            })
            .await
            .map(drop),
        "shop_id",
    );
    check(
        "anomalies: unknown kind",
        sync_client
            .list_anomalies(sync::ListAnomaliesRequest {
                shop_id: shop.clone(),
                limit: 5,
                kind: 77,
            })
            .await
            .map(drop),
        "kind",
    );

    // SettingsService.
    let mut settings_client = system.settings();
    check(
        "settings: bad shop",
        settings_client
            .get_settings(settings::GetSettingsRequest {
                shop_id: "shop\n1".into(),
            })
            .await
            .map(drop),
        "shop_id",
    );
    check(
        "settings: bad shops page token",
        settings_client
            .list_shops(settings::ListShopsRequest {
                enabled_only: false,
                page_size: 10,
                page_token: "\u{7f}garbage".into(),
            })
            .await
            .map(drop),
        "page_token",
    );
    check(
        "catalog: bad shop",
        settings_client
            .put_order_status_catalog(settings::PutOrderStatusCatalogRequest {
                shop_id: "".into(),
                statuses: vec![],
                expected_version: None,
            })
            .await
            .map(drop),
        "shop_id",
    );

    // DeadLetterService.
    let mut letters = dead_letters_client(&system);
    let list_letters = |subject: &str, page_size, page_token: &str| ops::ListDeadLettersRequest {
        subject: subject.into(),
        page_size,
        page_token: page_token.into(),
    };
    for (case, request, field) in [
        (
            "dead letters: page size 501",
            list_letters("", 501, ""),
            "page_size",
        ),
        (
            "dead letters: token",
            list_letters("", 10, "-1"),
            "page_token",
        ),
        (
            "dead letters: token 0",
            list_letters("", 10, "0"),
            "page_token",
        ),
        (
            "dead letters: subject",
            list_letters("a..b", 10, ""),
            "subject",
        ),
        (
            "dead letters: subject >",
            list_letters("a.>.b", 10, ""),
            "subject",
        ),
    ] {
        check(case, letters.list(request).await.map(drop), field);
    }
    for (case, sequences, field) in [
        ("replay: none", vec![], "sequences"),
        ("replay: zero", vec![0], "sequences[0]"),
        ("replay: twice", vec![5, 5], "sequences[1]"),
        ("replay: too many", (1..=101).collect(), "sequences"),
    ] {
        check(
            case,
            letters
                .replay(ops::ReplayDeadLettersRequest { sequences })
                .await
                .map(drop),
            field,
        );
    }

    // Only the good orders reached the WMS.
    wmslink_testkit::eventually(crate::common::WAIT, "the good orders sent", || async {
        let counters = system.simulator.state().order_no_counters(&key).ok()?;
        (counters.len() == bad_orders(&shop).len()).then_some(())
    })
    .await;
    let counters = system
        .simulator
        .state()
        .order_no_counters(&key)
        .expect("counters");
    for (order_no, counter) in &counters {
        assert!(order_no.starts_with("G-OK-"), "{order_no} reached the WMS");
        assert_eq!(counter.received, 1, "{order_no}: {counter:?}");
    }
    system.stop().await;
}
