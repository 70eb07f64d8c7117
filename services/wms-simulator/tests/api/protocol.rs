//! The WMS endpoints: auth, envelope, registration, search, get, update, cancel.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wmslink_wms_simulator::SimConfig;

use crate::helpers::*;

#[tokio::test]
async fn wrong_or_missing_key_is_401_with_an_ng_envelope() {
    let sim = start_default().await;
    let _key = sim.key(None).await;
    for key in [None, Some("nope")] {
        let a = sim.send(key, Method::GET, "/order/search", None).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert_eq!(a.result(), "NG");
        assert_eq!(a.first_error_code(), "E_UNAUTHORIZED");
    }
    let a = sim
        .send(
            Some("nope"),
            Method::POST,
            "/order/",
            Some(json!({"data": [row("A")]})),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = sim.ctl(Method::GET, "/_sim/counters", None).await;
    assert_eq!(a.body["unauthorized"], 3);
}

#[tokio::test]
async fn configured_keys_and_the_v1_prefix() {
    let sim = start(SimConfig {
        access_keys: vec!["cfg-key-1".into(), "cfg-key-2".into()],
        ..SimConfig::for_tests()
    })
    .await;
    let ids = sim.register_ok("cfg-key-1", &["A"]).await;
    let a = sim.get("cfg-key-1", &format!("/v1/order/{}", ids[0])).await;
    assert_eq!(a.result(), "OK");
    assert_eq!(a.body["data"]["order_no"], "A");
    // Accounts are separate: key 2 sees nothing and can register the same order_no.
    assert_eq!(sim.get("cfg-key-2", "/order/search").await.body["total"], 0);
    assert_eq!(
        sim.get("cfg-key-2", &format!("/order/{}", ids[0]))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    sim.register_ok("cfg-key-2", &["A"]).await;
}

#[tokio::test]
async fn registration_assigns_ids_and_answers_per_row() {
    let sim = start_default().await;
    let key = sim.key(None).await;
    let ids = sim.register_ok(&key, &["R-1", "R-2", "R-3"]).await;
    assert!(ids.windows(2).all(|w| w[1] > w[0]));

    let mut bad = row("R-5");
    bad["details"][0]["quantity"] = json!(0);
    bad["shipper_id"] = json!("three");
    let a = sim
        .register(&key, vec![row("R-4"), row("R-1"), bad, row("R-4")])
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.result(), "NG", "NG when any row is refused");
    let data = a.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 4);
    assert_eq!(data[0]["result"], "OK");
    assert!(data[0]["order_id"].as_i64().unwrap() > ids[2]);
    assert_eq!(data[1]["result"], "NG");
    assert_eq!(data[1]["error"][0]["code"], "E_DUPLICATE");
    assert_eq!(data[2]["order_no"], "R-5");
    let messages: Vec<&str> = data[2]["error"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(
        messages.contains(&"shipper_id must be a positive integer id"),
        "{messages:?}"
    );
    assert!(
        messages.contains(&"details[0].quantity must be a positive integer"),
        "{messages:?}"
    );
    assert_eq!(
        data[3]["error"][0]["code"], "E_DUPLICATE",
        "a duplicate inside one batch too"
    );
    // The envelope's error list names the rows.
    assert!(
        a.body["error"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["order_no"] == "R-1")
    );

    let c = sim.counters(&key).await;
    assert_eq!(c["registrations_accepted"], 4);
    assert_eq!(c["duplicates_refused"], 2);
    assert_eq!(c["rows_invalid"], 1);
}

type Mutation = fn(&mut Value);

#[tokio::test]
async fn validation_covers_required_fields_ids_quantities_and_lone_cr() {
    let sim = start_default().await;
    let key = sim.key(None).await;
    let cases: Vec<(Mutation, &str)> = vec![
        (
            |r| {
                r.as_object_mut().unwrap().remove("order_no");
            },
            "order_no is required",
        ),
        (
            |r| r["robot_id"] = json!(0),
            "robot_id must be a positive integer id",
        ),
        (
            |r| r["delivery_company_id"] = json!(-1),
            "delivery_company_id must be a positive integer id",
        ),
        (
            |r| {
                r.as_object_mut().unwrap().remove("payment_method_id");
            },
            "payment_method_id is required",
        ),
        (
            |r| r["order_date"] = json!("yesterday"),
            "order_date must be an RFC 3339",
        ),
        (
            |r| r["orderer"]["tel"] = json!(""),
            "orderer.tel is required",
        ),
        (
            |r| r["shipping"]["delivery_date"] = json!("30/11/2026"),
            "shipping.delivery_date must be a date",
        ),
        (
            |r| r["pay_total"] = json!(-1),
            "pay_total must be an integer ≥ 0",
        ),
        (
            |r| r["details"] = json!([]),
            "details must have at least one line",
        ),
        (
            |r| r["details"][0]["quantity"] = json!(1.5),
            "details[0].quantity must be a positive integer",
        ),
        (
            |r| {
                r["details"][0].as_object_mut().unwrap().remove("sku");
            },
            "details[0].sku is required",
        ),
        (
            |r| r["free_fields"]["free0"] = json!("x"),
            "free_fields.free0 is not a free field",
        ),
        (
            |r| r["shipping"]["address1"] = json!("a\rb"),
            "shipping.address1 contains a lone CR",
        ),
    ];
    for (i, (mutate, expected)) in cases.into_iter().enumerate() {
        let mut r = row(&format!("V-{i}"));
        mutate(&mut r);
        let a = sim.register(&key, vec![r]).await;
        assert_eq!(a.result(), "NG", "{expected}");
        let all = a.body["data"][0]["error"].to_string();
        assert!(all.contains(expected), "{expected} not in {all}");
    }
    assert_eq!(sim.counters(&key).await["registrations_accepted"], 0);
    // CRLF and LF are fine.
    let mut r = row("V-ok");
    r["note"] = json!("a\r\nb\nc");
    assert_eq!(sim.register(&key, vec![r]).await.result(), "OK");
}

#[tokio::test]
async fn malformed_registration_bodies_are_400_ng() {
    let sim = start_default().await;
    let key = sim.key(None).await;
    let too_many: Vec<Value> = (0..201).map(|i| row(&format!("M-{i}"))).collect();
    for body in [
        json!({"data": []}),
        json!({"rows": []}),
        json!([row("x")]),
        json!({"data": too_many}),
    ] {
        let a = sim
            .send(Some(&key), Method::POST, "/order/", Some(body))
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        assert_eq!(a.first_error_code(), "E_INVALID_REQUEST");
    }
    let a = sim
        .http
        .post(sim.url("/order/"))
        .header("X-API-KEY", &key)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(a.status(), StatusCode::BAD_REQUEST);
    let rows: Vec<Value> = (0..200).map(|i| row(&format!("OK-{i}"))).collect();
    assert_eq!(sim.register(&key, rows).await.result(), "OK");
}

#[tokio::test]
async fn search_syntax_and_paging() {
    let sim = start_default().await;
    let key = sim.key(None).await;
    let nos: Vec<String> = (0..45).map(|i| format!("S1-{i:03}")).collect();
    let refs: Vec<&str> = nos.iter().map(String::as_str).collect();
    let ids = sim.register_ok(&key, &refs).await;
    sim.ctl(
        Method::PATCH,
        &format!("/_sim/keys/{key}/orders/{}", ids[0]),
        Some(json!({"status_id": 60})),
    )
    .await;

    let total = |a: &Answer| a.body["total"].as_i64().unwrap();
    let count = |a: &Answer| a.body["data"].as_array().unwrap().len();

    let a = sim.get(&key, "/order/search").await;
    assert_eq!((total(&a), count(&a)), (45, 20), "default limit 20");
    let a = sim.get(&key, "/order/search?limit=200&offset=40").await;
    assert_eq!((total(&a), count(&a)), (45, 5));
    assert_eq!(
        a.body["data"][0]["order_no"], "S1-040",
        "ordered by order_id"
    );
    let a = sim.get(&key, "/order/search?order_no-eq=S1-007").await;
    assert_eq!(a.body["data"][0]["order_id"], ids[7]);
    let a = sim
        .get(&key, "/order/search?order_no-in=S1-001,S1-002,nope")
        .await;
    assert_eq!(total(&a), 2);
    let a = sim.get(&key, "/order/search?order_no-like=S1-00%25").await;
    assert_eq!(total(&a), 10);
    let a = sim.get(&key, "/order/search?order_no-like=S1-0_5").await;
    assert_eq!(total(&a), 4, "005, 015, 025, 035");
    let a = sim
        .get(&key, &format!("/order/search?order_id-lt={}", ids[3]))
        .await;
    assert_eq!(total(&a), 3);
    let a = sim
        .get(&key, &format!("/order/search?order_id-lte={}", ids[3]))
        .await;
    assert_eq!(total(&a), 4);
    let a = sim
        .get(&key, &format!("/order/search?order_id-gt={}", ids[40]))
        .await;
    assert_eq!(total(&a), 4);
    let a = sim
        .get(
            &key,
            &format!(
                "/order/search?order_id-gte={}&order_id-lt={}",
                ids[10], ids[20]
            ),
        )
        .await;
    assert_eq!(total(&a), 10, "filters are ANDed");
    let a = sim.get(&key, "/order/search?status_id-eq=60").await;
    assert_eq!(total(&a), 1);
    let a = sim.get(&key, "/order/search?status_id-not=60").await;
    assert_eq!(total(&a), 44);
    let a = sim
        .get(
            &key,
            "/order/search?update_date-gte=2000-01-01T00:00:00%2B09:00",
        )
        .await;
    assert_eq!(total(&a), 45);
    let a = sim
        .get(
            &key,
            "/order/search?update_date-lt=2000-01-01T00:00:00%2B09:00",
        )
        .await;
    assert_eq!(total(&a), 0);

    // The order as returned.
    let o = &sim.get(&key, "/order/search?order_no-eq=S1-001").await.body["data"][0];
    for field in [
        "order_id",
        "order_no",
        "status_id",
        "status_name",
        "cancel_flag",
        "shipped_flag",
        "shipping_status_id",
        "tracking_code",
        "shipping_date",
        "update_date",
    ] {
        assert!(o.get(field).is_some(), "{field} missing in {o}");
    }
    assert_eq!(o["status_name"], "出荷待ち");
    assert!(o["update_date"].as_str().unwrap().ends_with("+09:00"));

    // Limits and bad syntax.
    let many: Vec<String> = (0..101).map(|i| i.to_string()).collect();
    for bad in [
        "/order/search?limit=201".to_owned(),
        "/order/search?limit=0".to_owned(),
        "/order/search?offset=-1".to_owned(),
        format!("/order/search?order_no-in={}", many.join(",")),
        "/order/search?colour-eq=red".to_owned(),
        "/order/search?status_id-between=1".to_owned(),
        "/order/search?status_id-eq=fifty".to_owned(),
        "/order/search?update_date-gte=yesterday".to_owned(),
    ] {
        let a = sim.get(&key, &bad).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(a.first_error_code(), "E_INVALID_PARAM", "{bad}");
    }
    let hundred: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    assert_eq!(
        sim.get(
            &key,
            &format!("/order/search?order_no-in={}", hundred.join(","))
        )
        .await
        .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn get_one_order() {
    let sim = start_default().await;
    let key = sim.key(None).await;
    let ids = sim.register_ok(&key, &["G-1"]).await;
    let a = sim.get(&key, &format!("/order/{}", ids[0])).await;
    assert_eq!((a.status, a.result()), (StatusCode::OK, "OK"));
    assert_eq!(a.body["data"]["order_no"], "G-1");
    assert_eq!(a.body["data"]["cancel_flag"], 0);
    let a = sim.get(&key, "/order/999999999").await;
    assert_eq!(
        (a.status, a.first_error_code()),
        (StatusCode::NOT_FOUND, "E_NOT_FOUND")
    );
    let a = sim.get(&key, "/order/abc").await;
    assert_eq!(
        (a.status, a.first_error_code()),
        (StatusCode::BAD_REQUEST, "E_INVALID_PARAM")
    );
    let a = sim.get(&key, "/no/such/endpoint").await;
    assert_eq!((a.status, a.result()), (StatusCode::NOT_FOUND, "NG"));
}

#[tokio::test]
async fn update_is_refused_in_late_statuses() {
    let sim = start_default().await;
    let key = sim.key(None).await;
    let ids = sim.register_ok(&key, &["U-1", "U-2", "U-3"]).await;
    sim.ctl(
        Method::PATCH,
        &format!("/_sim/keys/{key}/orders/{}", ids[1]),
        Some(json!({"status_id": 90})),
    )
    .await;
    sim.get(&key, &format!("/order_cancel/{}", ids[2])).await;
    let before =
        sim.get(&key, &format!("/order/{}", ids[0])).await.body["data"]["update_date"].clone();

    let body = json!({"data": [
        {"order_id": ids[0], "note": "changed", "shipping": {"name": "新", "zip": "1", "pref": "大阪府", "address1": "x", "tel": "06"}},
        {"order_id": ids[1], "note": "late"},
        {"order_id": ids[2], "note": "cancelled"},
        {"order_id": 424242424, "note": "unknown"},
        {"order_id": ids[0], "details": []},
    ]});
    let a = sim
        .send(Some(&key), Method::PUT, "/order/", Some(body))
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.result(), "NG");
    let d = a.body["data"].as_array().unwrap();
    assert_eq!(d[0]["result"], "OK");
    assert_eq!(d[1]["error"][0]["message"], "更新不可のステータスです");
    assert_eq!(d[2]["error"][0]["message"], "更新不可のステータスです");
    assert_eq!(d[3]["error"][0]["code"], "E_NOT_FOUND");
    assert_eq!(d[4]["result"], "NG", "an update must leave a valid row");
    let stored = sim
        .ctl(
            Method::GET,
            &format!("/_sim/keys/{key}/orders/{}", ids[0]),
            None,
        )
        .await;
    assert_eq!(stored.body["row"]["note"], "changed");
    assert_eq!(stored.body["row"]["shipping"]["pref"], "大阪府");
    assert!(stored.body["order"]["update_date"].as_str() >= before.as_str());
    let c = sim.counters(&key).await;
    assert_eq!(
        (
            c["updates_accepted"].as_i64(),
            c["updates_refused"].as_i64()
        ),
        (Some(1), Some(4))
    );
}

#[tokio::test]
async fn cancel_rules() {
    let sim = start_default().await;
    let key = sim.key(None).await;
    let ids = sim
        .register_ok(
            &key,
            &["C-50", "C-90", "C-95", "C-100", "C-shipped", "C-20"],
        )
        .await;
    for (i, patch) in [
        (1, json!({"status_id": 90})),
        (2, json!({"status_id": 95})),
        (3, json!({"status_id": 100})),
        (4, json!({"shipped_flag": 1})),
        (5, json!({"status_id": 20})),
    ] {
        let a = sim
            .ctl(
                Method::PATCH,
                &format!("/_sim/keys/{key}/orders/{}", ids[i]),
                Some(patch),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    }
    let a = sim.get(&key, &format!("/order_cancel/{}", ids[0])).await;
    assert_eq!(a.result(), "OK");
    assert_eq!(a.body["data"]["cancel_flag"], 1);
    let a = sim.get(&key, &format!("/order_cancel/{}", ids[0])).await;
    assert_eq!(a.result(), "OK", "already cancelled answers OK");
    for id in &ids[1..5] {
        let a = sim.get(&key, &format!("/order_cancel/{id}")).await;
        assert_eq!(
            (a.status, a.result(), a.first_error_code()),
            (StatusCode::OK, "NG", "E_NOT_CANCELLABLE"),
            "{id}"
        );
        assert_eq!(
            sim.get(&key, &format!("/order/{id}")).await.body["data"]["cancel_flag"],
            0
        );
    }
    // 20 処理中 is not refused by the cancel rules.
    assert_eq!(
        sim.get(&key, &format!("/order_cancel/{}", ids[5]))
            .await
            .result(),
        "OK"
    );
    let a = sim.get(&key, "/order_cancel/987654321").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let c = sim.counters(&key).await;
    assert_eq!(
        (
            c["cancels"].as_i64(),
            c["cancels_repeated"].as_i64(),
            c["cancels_refused"].as_i64()
        ),
        (Some(2), Some(1), Some(4))
    );
    // Cancelled stays cancelled: a control patch may not be needed, the warehouse never moves it.
    sim.ctl(
        Method::POST,
        &format!("/_sim/keys/{key}/warehouse/tick"),
        None,
    )
    .await;
    let o = sim.get(&key, &format!("/order/{}", ids[0])).await;
    assert_eq!(
        (
            o.body["data"]["status_id"].as_i64(),
            o.body["data"]["cancel_flag"].as_i64()
        ),
        (Some(50), Some(1))
    );
    // And its order_no may be registered again.
    sim.register_ok(&key, &["C-50"]).await;
}
