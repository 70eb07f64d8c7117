//! The WMS port, with the COMMERCE ROBO adapter chosen by `wms_kind`, against the simulator
//! (and wiremock for exact faults): instructions built from cart orders with the shop's
//! mappings, registration outcomes, cancellations, look-ups and changes paged by the port's
//! limits, statuses as meanings; the limiter, metrics and error classification on the way.

use std::sync::Arc;

use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};
use wmslink_platform::telemetry::testing::MetricsCapture;
use wmslink_proto::orders::v1::{Address, Amounts, LineItem, Order};
use wmslink_proto::settings::v1::{DetailSettings, FreeFieldMapping, PaymentMapping, WmsKind};
use wmslink_wms_client::port::{
    CancelOutcome, Exchange, Page, PageCursor, RegistrationOutcome, Wms,
};
use wmslink_wms_client::{SecretString, Unlimited, WmsError, WmsMetrics};
use wmslink_wms_simulator::{Endpoint, Faults, OrderPatch};

use crate::helpers::*;

fn port(base_url: &str, key: &str) -> Arc<dyn Wms> {
    wmslink_wms_client::connect(
        WmsKind::CommerceRobo,
        base_url,
        SecretString::from(key.to_owned()),
        &config(),
        Arc::new(Unlimited),
    )
    .expect("the COMMERCE ROBO adapter")
}

fn address(name: &str) -> Address {
    Address {
        name: name.into(),
        zip: "150-0001".into(),
        prefecture: "東京都".into(),
        address1: "渋谷区神宮前1-1-1".into(),
        phone: "03-0000-0000".into(),
        ..Address::default()
    }
}

fn order(order_no: &str) -> Order {
    Order {
        shop_id: "s1".into(),
        order_no: order_no.into(),
        revision: 1,
        order_date: Some(prost_types::Timestamp {
            seconds: 1_795_827_480,
            nanos: 0,
        }),
        status_code: "paid".into(),
        payment_method_code: "cod".into(),
        orderer: Some(address("注文者")),
        amounts: Some(Amounts {
            products: 5400,
            total: 6000,
            ..Amounts::default()
        }),
        lines: vec![LineItem {
            sku: "SKU-1".into(),
            name: "Green tea".into(),
            quantity: 2,
            unit_price: 2700,
            options: [("lot".to_owned(), "9".to_owned())].into(),
        }],
        extra: [("campaign".to_owned(), "BF".to_owned())].into(),
        ..Order::default()
    }
}

fn mappings() -> DetailSettings {
    DetailSettings {
        robot_id: 12,
        shipper_id: 3,
        delivery_method_id: 2,
        payment_mappings: vec![PaymentMapping {
            payment_method_code: "cod".into(),
            wms_payment_method_id: 7,
            delivery_company_id: 5,
        }],
        header_free_fields: vec![FreeFieldMapping {
            slot: 1,
            cart_field: "extra.campaign".into(),
        }],
        line_free_fields: vec![FreeFieldMapping {
            slot: 2,
            cart_field: "options.lot".into(),
        }],
        ..DetailSettings::default()
    }
}

#[tokio::test]
async fn an_order_is_registered_found_and_cancelled_through_the_port() {
    let sim = sim().await;
    let key = add_key(&sim, None);
    let wms = port(&sim.base_url(), &key);

    let instruction = wms
        .build_instruction(&order("P-1"), &mappings())
        .expect("builds");
    assert_eq!(instruction.order_no(), "P-1");
    assert!(
        instruction.summary().contains("robot_id 12")
            && instruction.summary().contains("payment_method_id 7"),
        "{}",
        instruction.summary()
    );
    let unbuildable = wms
        .build_instruction(&order("P-2"), &DetailSettings::default())
        .expect_err("no mappings");
    assert!(
        unbuildable.to_string().contains("shipper ID"),
        "{unbuildable}"
    );

    let answers = wms
        .register(std::slice::from_ref(&instruction))
        .await
        .unwrap();
    let RegistrationOutcome::Registered { order_id } = answers[0].outcome else {
        panic!("registered: {answers:?}");
    };
    assert_eq!(answers[0].order_no, "P-1");
    // The mappings reached the WMS's row.
    let stored = sim.state().order_row(&key, order_id).unwrap();
    assert_eq!(stored["robot_id"], 12);
    assert_eq!(stored["delivery_company_id"], 5);
    assert_eq!(stored["free_fields"]["free1"], "BF");
    assert_eq!(stored["details"][0]["free_fields"]["free2"], "9");

    // Its order number again, and a row the WMS refuses, in one call.
    let mut refused = order("P-3");
    refused.lines[0].quantity = 0;
    let refused = wms.build_instruction(&refused, &mappings()).unwrap();
    let answers = wms.register(&[instruction, refused]).await.unwrap();
    assert!(
        matches!(&answers[0].outcome, RegistrationOutcome::AlreadyRegistered { code, .. } if code == "E_DUPLICATE"),
        "{answers:?}"
    );
    assert!(
        matches!(&answers[1].outcome, RegistrationOutcome::Refused { code, .. } if code == "E_INVALID"),
        "{answers:?}"
    );

    let found = wms.find_by_order_nos(&["P-1".to_owned()]).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].order_id, order_id);
    assert_eq!(
        (found[0].status_id, found[0].status_name.as_str()),
        (50, "出荷待ち"),
        "the WMS's own status stays visible as data"
    );
    assert!(!found[0].cancelled && !found[0].shipped && !found[0].processing);

    sim.state()
        .patch_order(
            &key,
            order_id,
            OrderPatch {
                status_id: Some(20),
                ..Default::default()
            },
        )
        .unwrap();
    let processing = wms.get(order_id).await.unwrap();
    assert!(processing.processing, "処理中 is a meaning: {processing:?}");
    assert_eq!(processing.status_name, "処理中");

    assert_eq!(
        wms.cancel(order_id).await.unwrap(),
        CancelOutcome::Cancelled
    );
    let cancelled = wms.get(order_id).await.unwrap();
    assert!(cancelled.cancelled);
    assert_eq!(
        wms.describe(Exchange::CancelState(&cancelled)),
        "cancel_flag 1"
    );
    assert_eq!(
        wms.describe(Exchange::Cancel { order_id }),
        format!("GET /order_cancel/{order_id}")
    );
}

#[tokio::test]
async fn shipped_orders_carry_tracking_and_a_final_carrier_status_and_refuse_cancels() {
    let sim = sim().await;
    let key = add_key(&sim, None);
    let wms = port(&sim.base_url(), &key);
    let instruction = wms.build_instruction(&order("SH-1"), &mappings()).unwrap();
    let RegistrationOutcome::Registered { order_id } =
        wms.register(&[instruction]).await.unwrap()[0].outcome
    else {
        panic!("registered");
    };
    sim.state()
        .patch_order(
            &key,
            order_id,
            OrderPatch {
                status_id: Some(100),
                shipped_flag: Some(1),
                shipping_status_id: Some(3),
                ..Default::default()
            },
        )
        .unwrap();
    let shipped = wms.get(order_id).await.unwrap();
    assert!(shipped.shipped);
    assert!(shipped.tracking_code.is_some() && shipped.shipping_date.is_some());
    let carrier = shipped.carrier.expect("carrier status");
    assert_eq!((carrier.id, carrier.name.as_str()), (3, "配達中"));
    assert!(!carrier.is_final);

    sim.state()
        .patch_order(
            &key,
            order_id,
            OrderPatch {
                shipping_status_id: Some(1),
                ..Default::default()
            },
        )
        .unwrap();
    let delivered = wms.get(order_id).await.unwrap().carrier.unwrap();
    assert!(delivered.is_final && delivered.name == "配達完了");

    let shipped = wms.get(order_id).await.unwrap();
    assert!(wms.past_cancel(&shipped), "shipped: past cancelling");
    match wms.cancel(order_id).await.unwrap() {
        CancelOutcome::NotCancellable { code, message } => {
            assert_eq!(code, "E_NOT_CANCELLABLE");
            assert!(!message.is_empty());
        }
        other => panic!("refused for good: {other:?}"),
    }
}

#[tokio::test]
async fn cancels_refused_for_now_are_not_refused_for_good_and_packing_is_past_cancelling() {
    let sim = sim().await;
    let key = add_key(&sim, None);
    let wms = port(&sim.base_url(), &key);
    let instruction = wms.build_instruction(&order("PC-1"), &mappings()).unwrap();
    let RegistrationOutcome::Registered { order_id } =
        wms.register(&[instruction]).await.unwrap()[0].outcome
    else {
        panic!("registered");
    };
    let waiting = wms.get(order_id).await.unwrap();
    assert!(!wms.past_cancel(&waiting));
    for (status_id, past) in [(20, false), (90, true), (95, true), (100, true)] {
        sim.state()
            .patch_order(
                &key,
                order_id,
                OrderPatch {
                    status_id: Some(status_id),
                    ..Default::default()
                },
            )
            .unwrap();
        let order = wms.get(order_id).await.unwrap();
        assert_eq!(wms.past_cancel(&order), past, "{status_id}");
    }
    // A whole-call NG (maintenance, busy) is a refusal for now.
    sim.state()
        .set_faults(
            &key,
            Faults {
                ng_ratio: 1.0,
                ng_code: "E_MAINTENANCE".into(),
                endpoints: vec![Endpoint::Cancel],
                ..Faults::default()
            },
        )
        .unwrap();
    match wms.cancel(order_id).await.unwrap() {
        CancelOutcome::Refused { code, .. } => assert_eq!(code, "E_MAINTENANCE"),
        other => panic!("refused for now: {other:?}"),
    }
}

async fn all_pages(
    mut next: impl AsyncFnMut(PageCursor) -> Result<Page, WmsError>,
) -> (usize, usize) {
    let (mut orders, mut pages) = (0, 0);
    let mut cursor = PageCursor::FIRST;
    loop {
        let page = next(cursor).await.unwrap();
        orders += page.orders.len();
        pages += 1;
        match page.next {
            Some(more) => cursor = more,
            None => return (orders, pages),
        }
    }
}

#[tokio::test]
async fn look_ups_and_changes_are_batched_and_paged_by_the_ports_limits() {
    let sim = sim().await;
    let key = add_key(&sim, None);
    let wms = port(&sim.base_url(), &key);
    let limits = wms.limits();
    assert_eq!(
        (limits.register_batch, limits.lookup_batch, limits.page_size),
        (200, 100, 200)
    );
    let since = chrono::Utc::now() - chrono::Duration::minutes(5);
    let instructions: Vec<_> = (0..250)
        .map(|i| {
            wms.build_instruction(&order(&format!("PG-{i:04}")), &mappings())
                .unwrap()
        })
        .collect();
    for batch in instructions.chunks(limits.register_batch) {
        wms.register(batch).await.unwrap();
    }
    let searches = || requests(&sim, &key, "search");

    let order_nos: Vec<String> = instructions
        .iter()
        .map(|i| i.order_no().to_owned())
        .collect();
    let found = wms.find_by_order_nos(&order_nos).await.unwrap();
    assert_eq!(found.len(), 250);
    assert_eq!(searches(), 3, "100 order numbers per call");
    assert_eq!(
        wms.describe(Exchange::Lookup { order_nos: 250 }),
        "GET /order/search order_no-in (250 order numbers, 3 call(s))"
    );

    let too_many = wms.lookup(&order_nos, PageCursor::FIRST).await;
    assert!(
        matches!(too_many, Err(WmsError::InvalidRequest(_))),
        "{too_many:?}"
    );

    let (changed, pages) = all_pages(async |cursor| wms.changed_since(since, cursor).await).await;
    assert_eq!((changed, pages), (250, 2), "pages of 200");
    assert_eq!(searches(), 5);
}

/// A search answer without `total` is "unknown": the port pages on until a short page,
/// never stopping after the first (full) one.
#[tokio::test]
async fn changes_without_a_total_are_paged_until_a_short_page() {
    use wiremock::matchers::query_param;
    let server = MockServer::start().await;
    let page = |from: i64, n: i64| {
        let data: Vec<serde_json::Value> = (from..from + n)
            .map(|id| {
                json!({"order_id": id, "order_no": format!("NT-{id}"), "status_id": 50,
                       "status_name": "出荷待ち", "cancel_flag": 0, "shipped_flag": 0,
                       "update_date": "2026-11-28T10:15:00+09:00"})
            })
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({"result": "OK", "data": data, "error": []}))
    };
    for (offset, from, n) in [("0", 1, 200), ("200", 201, 200), ("400", 401, 30)] {
        Mock::given(method("GET"))
            .and(path("/v1/order/search"))
            .and(query_param("offset", offset))
            .respond_with(page(from, n))
            .expect(1)
            .mount(&server)
            .await;
    }
    let wms = port(&format!("{}/v1", server.uri()), "k");
    let since = chrono::Utc::now() - chrono::Duration::minutes(5);
    let (changed, pages) = all_pages(async |cursor| wms.changed_since(since, cursor).await).await;
    assert_eq!((changed, pages), (430, 3));
}

#[tokio::test]
async fn errors_metrics_and_the_kind_work_through_the_port() {
    let refused = wmslink_wms_client::connect(
        WmsKind::Unspecified,
        "https://api.crobo.jp/v1",
        SecretString::from("k".to_owned()),
        &config(),
        Arc::new(Unlimited),
    )
    .expect_err("no adapter for an unset kind");
    assert!(matches!(refused, WmsError::Config(_)), "{refused}");

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/order/"))
        .respond_with(ResponseTemplate::new(504))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/order_cancel/8"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "7"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/order/9"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "result": "OK",
            "data": {"order_id": 9, "order_no": "A", "status_id": 50, "status_name": "出荷待ち",
                     "cancel_flag": 0, "shipped_flag": 0, "update_date": "2026-11-28T10:15:00+09:00"},
            "error": []
        })))
        .mount(&server)
        .await;
    let capture = MetricsCapture::new();
    let wms: Arc<dyn Wms> = Arc::new(
        client(&format!("{}/v1", server.uri()), "port-key")
            .with_metrics(WmsMetrics::new(&capture.meter())),
    );

    let instruction = wms.build_instruction(&order("E-1"), &mappings()).unwrap();
    let lost = wms
        .register(&[instruction])
        .await
        .expect_err("gateway timeout");
    assert!(lost.may_have_been_applied(), "{lost}");
    let limited = wms.cancel(8).await.expect_err("429");
    assert!(limited.is_retryable());
    assert_eq!(
        limited.retry_after(),
        Some(std::time::Duration::from_secs(7))
    );
    assert_eq!(wms.get(9).await.unwrap().order_id, 9);

    let calls = |m: &str, endpoint: &str, outcome: &str| {
        capture
            .point(
                "wmslink.wms.calls",
                &[("endpoint", endpoint), ("method", m), ("outcome", outcome)],
            )
            .map(|p| p.value)
    };
    assert_eq!(calls("POST", "/order/", "unknown_outcome"), Some(1.0));
    assert_eq!(
        calls("GET", "/order_cancel/{order_id}", "rate_limited"),
        Some(1.0)
    );
    assert_eq!(calls("GET", "/order/{order_id}", "ok"), Some(1.0));
    let waits = capture.points("wmslink.wms.limiter.wait");
    assert_eq!(waits.iter().map(|p| p.count).sum::<u64>(), 3, "{waits:?}");
}
