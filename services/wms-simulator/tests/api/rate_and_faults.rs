//! Per-key rate limits and injected faults.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use wmslink_testkit::eventually;
use wmslink_wms_simulator::{SimConfig, SimRateLimit};

use crate::helpers::*;

#[tokio::test]
async fn over_the_key_limit_is_429_with_retry_after() {
    let sim = start_default().await;
    let key = sim.key(Some(json!({"per_second": 0.5, "burst": 3}))).await;
    let other = sim.key(Some(json!({"per_second": 0.5, "burst": 3}))).await;
    for _ in 0..3 {
        assert_eq!(sim.get(&key, "/order/search").await.status, StatusCode::OK);
    }
    let a = sim.get(&key, "/order/search").await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(a.result(), "NG");
    assert_eq!(a.first_error_code(), "E_RATE_LIMIT");
    let retry: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    // Per key: another key still has its burst.
    assert_eq!(
        sim.get(&other, "/order/search").await.status,
        StatusCode::OK
    );
    let c = sim.counters(&key).await;
    assert_eq!(c["rate_limited"], 1);
    assert_eq!(c["requests"]["search"], 4);
}

#[tokio::test]
async fn the_default_limit_is_1_per_second_burst_60() {
    let sim = start(SimConfig {
        rate_limit: SimRateLimit::default(),
        ..SimConfig::for_tests()
    })
    .await;
    let key = wmslink_testkit::unique("k");
    let a = sim
        .ctl(Method::POST, "/_sim/keys", Some(json!({"key": key})))
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let start = Instant::now();
    let mut ok = 0;
    loop {
        let a = sim.get(&key, "/order/search?limit=1").await;
        if a.status == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
        assert_eq!(a.status, StatusCode::OK);
        ok += 1;
        assert!(ok < 200, "no 429 ever came");
    }
    let refilled = start.elapsed().as_secs() + 1;
    assert!(ok >= 60 && ok <= 60 + refilled, "{ok} requests passed");
}

#[tokio::test]
async fn with_the_limit_off_nothing_is_refused() {
    let sim = start_default().await;
    let key = sim.key(None).await;
    for _ in 0..150 {
        assert_eq!(
            sim.get(&key, "/order/search?limit=1").await.status,
            StatusCode::OK
        );
    }
    assert_eq!(sim.counters(&key).await["rate_limited"], 0);
}

#[tokio::test]
async fn a_share_of_500s_is_exact_and_applies_nothing() {
    let sim = start_default().await;
    let key = sim.key(None).await;
    let a = sim
        .ctl(
            Method::PUT,
            &format!("/_sim/keys/{key}/faults"),
            Some(json!({"error_500_ratio": 0.5})),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let mut statuses = Vec::new();
    for i in 0..6 {
        let a = sim.register(&key, vec![row(&format!("F5-{i}"))]).await;
        if a.status == StatusCode::INTERNAL_SERVER_ERROR {
            assert_eq!(a.result(), "NG");
            assert_eq!(a.first_error_code(), "E_SIM_INTERNAL");
        }
        statuses.push(a.status.as_u16());
    }
    assert_eq!(statuses, [200, 500, 200, 500, 200, 500]);
    let orders = sim
        .ctl(Method::GET, &format!("/_sim/keys/{key}/orders"), None)
        .await;
    assert_eq!(orders.body["orders"].as_array().unwrap().len(), 3);
    assert_eq!(sim.counters(&key).await["faults_500"], 3);
}

#[tokio::test]
async fn ng_answers_are_200_with_ng_and_apply_nothing() {
    let sim = start_default().await;
    let key = sim.key(None).await;
    sim.ctl(
        Method::PUT,
        &format!("/_sim/keys/{key}/faults"),
        Some(json!({"ng_ratio": 1.0})),
    )
    .await;
    let a = sim.register(&key, vec![row("NG-1")]).await;
    assert_eq!(
        (a.status, a.result(), a.first_error_code()),
        (StatusCode::OK, "NG", "E_SIM_FAULT")
    );
    let a = sim.get(&key, "/order/search").await;
    assert_eq!((a.status, a.result()), (StatusCode::OK, "NG"));
    let a = sim
        .ctl(Method::DELETE, &format!("/_sim/keys/{key}/faults"), None)
        .await;
    assert_eq!(a.body["ng_ratio"], 0.0);
    assert_eq!(
        sim.get(&key, "/order/search").await.body["total"],
        0,
        "nothing was registered"
    );
    assert_eq!(sim.counters(&key).await["faults_ng"], 2);
}

#[tokio::test]
async fn added_latency_delays_answers() {
    let sim = start_default().await;
    let key = sim.key(None).await;
    sim.ctl(
        Method::PUT,
        &format!("/_sim/keys/{key}/faults"),
        Some(json!({"latency_ms": 300})),
    )
    .await;
    let start = Instant::now();
    assert_eq!(sim.get(&key, "/order/search").await.status, StatusCode::OK);
    assert!(start.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn apply_then_timeout_applies_and_answers_too_late() {
    let sim = start_default().await;
    let key = sim.key(None).await;
    let a = sim
        .ctl(
            Method::PUT,
            &format!("/_sim/keys/{key}/faults"),
            Some(json!({"apply_then_delay_ms": 5000, "endpoints": ["register", "cancel"]})),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .no_proxy()
        .build()
        .unwrap();
    let sent = impatient
        .post(sim.url("/order/"))
        .header("X-API-KEY", &key)
        .json(&json!({"data": [row("AT-1")]}))
        .send()
        .await;
    assert!(sent.unwrap_err().is_timeout());
    // Applied all the same; searches are not faulted.
    let a = sim.get(&key, "/order/search?order_no-eq=AT-1").await;
    assert_eq!(a.body["total"], 1);
    let id = a.body["data"][0]["order_id"].as_i64().unwrap();
    let sent = impatient
        .get(sim.url(&format!("/order_cancel/{id}")))
        .header("X-API-KEY", &key)
        .send()
        .await;
    assert!(sent.unwrap_err().is_timeout());
    assert_eq!(
        sim.get(&key, &format!("/order/{id}")).await.body["data"]["cancel_flag"],
        1
    );
    assert_eq!(sim.counters(&key).await["faults_delayed"], 2);
}

#[tokio::test]
async fn faults_can_target_endpoints_and_are_validated() {
    let sim = start_default().await;
    let key = sim.key(None).await;
    sim.ctl(
        Method::PUT,
        &format!("/_sim/keys/{key}/faults"),
        Some(json!({"error_500_ratio": 1.0, "endpoints": ["get"]})),
    )
    .await;
    let ids = sim.register_ok(&key, &["T-1"]).await;
    assert_eq!(sim.get(&key, "/order/search").await.status, StatusCode::OK);
    assert_eq!(
        sim.get(&key, &format!("/order/{}", ids[0])).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    for bad in [
        json!({"error_500_ratio": 1.5}),
        json!({"ng_ratio": -0.1}),
        json!({"endpoints": ["nope"]}),
    ] {
        let a = sim
            .ctl(
                Method::PUT,
                &format!("/_sim/keys/{key}/faults"),
                Some(bad.clone()),
            )
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let a = sim
        .ctl(Method::PUT, "/_sim/keys/unknown/faults", Some(json!({})))
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

fn impatient_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .no_proxy()
        .build()
        .unwrap()
}

#[tokio::test]
async fn apply_late_applies_the_request_after_the_client_gave_up() {
    let sim = start_default().await;
    let key = sim.key(None).await;
    let a = sim
        .ctl(
            Method::PUT,
            &format!("/_sim/keys/{key}/faults"),
            Some(json!({"apply_late_ms": 1500, "endpoints": ["register", "cancel"]})),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let impatient = impatient_client();
    let sent = impatient
        .post(sim.url("/order/"))
        .header("X-API-KEY", &key)
        .json(&json!({"data": [row("AL-1")]}))
        .send()
        .await;
    assert!(sent.unwrap_err().is_timeout());
    // The client gave up and a search right after finds nothing ...
    let a = sim.get(&key, "/order/search?order_no-eq=AL-1").await;
    assert_eq!(a.body["total"], 0, "not applied yet: {:?}", a.body);
    // ... but the WMS goes on and registers it.
    let id = wait_for_order(&sim, &key, "AL-1").await;
    let c = sim.counters(&key).await;
    assert_eq!(c["faults_applied_late"], 1);
    assert_eq!(c["registrations_accepted"], 1);

    // The same for a cancel.
    let sent = impatient
        .get(sim.url(&format!("/order_cancel/{id}")))
        .header("X-API-KEY", &key)
        .send()
        .await;
    assert!(sent.unwrap_err().is_timeout());
    assert_eq!(
        sim.get(&key, &format!("/order/{id}")).await.body["data"]["cancel_flag"],
        0,
        "not cancelled yet"
    );
    wait_for_cancel(&sim, &key, id, "the late cancel applied").await;
    assert_eq!(sim.counters(&key).await["faults_applied_late"], 2);

    // A patient client gets the answer once the request is applied.
    let start = Instant::now();
    let a = sim.register(&key, vec![row("AL-2")]).await;
    assert_eq!((a.status, a.result()), (StatusCode::OK, "OK"));
    assert!(start.elapsed() >= Duration::from_millis(1_500));
}

/// Waits until the WMS holds `order_no` and returns its `order_id`.
async fn wait_for_order(sim: &Sim, key: &str, order_no: &str) -> i64 {
    eventually(
        Duration::from_secs(10),
        &format!("{order_no} registered"),
        || async {
            let a = sim
                .get(key, &format!("/order/search?order_no-eq={order_no}"))
                .await;
            (a.body["total"] == 1)
                .then(|| a.body["data"][0]["order_id"].as_i64())
                .flatten()
        },
    )
    .await
}

/// Waits until the WMS shows order `id` cancelled.
async fn wait_for_cancel(sim: &Sim, key: &str, id: i64, what: &str) {
    eventually(Duration::from_secs(10), what, || async {
        let order = sim.get(key, &format!("/order/{id}")).await;
        (order.body["data"]["cancel_flag"] == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn apply_then_500_applies_and_answers_500() {
    let sim = start_default().await;
    let key = sim.key(None).await;
    sim.ctl(
        Method::PUT,
        &format!("/_sim/keys/{key}/faults"),
        Some(json!({"apply_then_500_ratio": 1.0, "endpoints": ["register", "cancel"]})),
    )
    .await;
    let a = sim.register(&key, vec![row("A5-1")]).await;
    assert_eq!(
        (a.status, a.result(), a.first_error_code()),
        (StatusCode::INTERNAL_SERVER_ERROR, "NG", "E_SIM_INTERNAL")
    );
    let found = sim.get(&key, "/order/search?order_no-eq=A5-1").await;
    assert_eq!(found.body["total"], 1, "applied all the same");
    let id = found.body["data"][0]["order_id"].as_i64().unwrap();
    let a = sim.get(&key, &format!("/order_cancel/{id}")).await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        sim.get(&key, &format!("/order/{id}")).await.body["data"]["cancel_flag"],
        1
    );
    let c = sim.counters(&key).await;
    assert_eq!(c["faults_applied_500"], 2);
    assert_eq!(c["faults_500"], 0);
}

#[tokio::test]
async fn a_transient_whole_call_ng_on_cancels_has_the_chosen_code_and_cancels_nothing() {
    let sim = start_default().await;
    let key = sim.key(None).await;
    let ids = sim.register_ok(&key, &["NC-1", "NC-2"]).await;
    let a = sim
        .ctl(
            Method::PUT,
            &format!("/_sim/keys/{key}/faults"),
            Some(json!({"ng_ratio": 0.5, "ng_code": "E_MAINTENANCE", "endpoints": ["cancel"]})),
        )
        .await;
    assert_eq!(a.body["ng_code"], "E_MAINTENANCE");
    let first = sim.get(&key, &format!("/order_cancel/{}", ids[0])).await;
    assert_eq!((first.status, first.result()), (StatusCode::OK, "OK"));
    let second = sim.get(&key, &format!("/order_cancel/{}", ids[1])).await;
    assert_eq!(
        (second.status, second.result(), second.first_error_code()),
        (StatusCode::OK, "NG", "E_MAINTENANCE")
    );
    assert!(second.body["data"].is_null(), "NG for the whole call");
    assert_eq!(
        sim.get(&key, &format!("/order/{}", ids[1])).await.body["data"]["cancel_flag"],
        0,
        "nothing cancelled"
    );
    // Transient: the next attempt goes through.
    let third = sim.get(&key, &format!("/order_cancel/{}", ids[1])).await;
    assert_eq!(third.result(), "OK");
    assert_eq!(sim.counters(&key).await["faults_ng"], 1);
    // Registrations are not touched by a cancel-only fault.
    sim.register_ok(&key, &["NC-3"]).await;
    let empty = sim
        .ctl(
            Method::PUT,
            &format!("/_sim/keys/{key}/faults"),
            Some(json!({"ng_ratio": 1.0, "ng_code": " "})),
        )
        .await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_body_over_the_proxy_limit_is_413_without_an_envelope() {
    let sim = start_default().await;
    let key = sim.key(None).await;
    let one = serde_json::to_vec(&json!({"data": [row("PX-1")]}))
        .unwrap()
        .len();
    sim.ctl(
        Method::PUT,
        &format!("/_sim/keys/{key}/faults"),
        Some(json!({"body_limit_bytes": one * 2, "endpoints": ["search"]})),
    )
    .await;
    // Small enough: the WMS handles it.
    sim.register_ok(&key, &["PX-1"]).await;
    // Too large: the proxy refuses it with an HTML page.
    let resp = sim
        .http
        .post(sim.url("/order/"))
        .header("X-API-KEY", &key)
        .json(&json!({"data": [row("PX-2"), row("PX-3"), row("PX-4")]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let text = resp.text().await.unwrap();
    assert!(text.contains("413 Request Entity Too Large"), "{text}");
    assert!(serde_json::from_str::<serde_json::Value>(&text).is_err());
    let c = sim.counters(&key).await;
    assert_eq!(c["faults_413"], 1);
    assert_eq!(c["requests"]["register"], 1, "the WMS never saw it");
    assert_eq!(c["registrations_accepted"], 1);
    let nos = sim
        .ctl(Method::GET, &format!("/_sim/keys/{key}/order_nos"), None)
        .await;
    assert!(
        nos.body["order_nos"].get("PX-2").is_none(),
        "{:?}",
        nos.body
    );
}

#[tokio::test]
async fn order_no_counters_count_what_was_received_accepted_and_refused() {
    let sim = start_default().await;
    let key = sim.key(None).await;
    sim.register_ok(&key, &["ON-1"]).await;
    let dup = sim.register(&key, vec![row("ON-1"), row("ON-2")]).await;
    assert_eq!(dup.result(), "NG");
    sim.ctl(
        Method::PUT,
        &format!("/_sim/keys/{key}/faults"),
        Some(json!({"error_500_ratio": 1.0})),
    )
    .await;
    let lost = sim.register(&key, vec![row("ON-3")]).await;
    assert_eq!(lost.status, StatusCode::INTERNAL_SERVER_ERROR);

    let all = sim
        .ctl(Method::GET, &format!("/_sim/keys/{key}/order_nos"), None)
        .await;
    assert_eq!(all.status, StatusCode::OK);
    let counts = |no: &str| {
        let c = &all.body["order_nos"][no];
        (
            c["received"].as_u64().unwrap(),
            c["accepted"].as_u64().unwrap(),
            c["duplicates_refused"].as_u64().unwrap(),
        )
    };
    assert_eq!(counts("ON-1"), (2, 1, 1), "sent twice, refused once");
    assert_eq!(counts("ON-2"), (1, 1, 0));
    assert_eq!(counts("ON-3"), (1, 0, 0), "received although not applied");
    let one = sim
        .ctl(
            Method::GET,
            &format!("/_sim/keys/{key}/order_nos/ON-1"),
            None,
        )
        .await;
    assert_eq!(one.body["received"], 2);
    let never = sim
        .ctl(
            Method::GET,
            &format!("/_sim/keys/{key}/order_nos/NOPE"),
            None,
        )
        .await;
    assert_eq!(
        (never.status, never.body["received"].as_u64()),
        (StatusCode::OK, Some(0))
    );
    assert_eq!(
        sim.running
            .state()
            .order_no_counter(&key, "ON-1")
            .unwrap()
            .received,
        2
    );
    sim.ctl(Method::POST, &format!("/_sim/keys/{key}/reset"), None)
        .await;
    assert!(
        sim.running
            .state()
            .order_no_counters(&key)
            .unwrap()
            .is_empty(),
        "reset clears them"
    );
    assert_eq!(
        sim.ctl(Method::GET, "/_sim/keys/unknown/order_nos", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

/// Found by the soak: a registration received while its latency fault ran was counted as
/// received but never applied once the client hung up (the handler was dropped with the
/// connection). A WMS that received a request applies it whether the client waits or not.
#[tokio::test]
async fn a_request_received_is_applied_even_when_the_client_hangs_up_during_latency() {
    let sim = start_default().await;
    let key = sim.key(None).await;
    let a = sim
        .ctl(
            Method::PUT,
            &format!("/_sim/keys/{key}/faults"),
            Some(json!({"latency_ms": 1000, "endpoints": ["register", "cancel"]})),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let impatient = impatient_client();
    let sent = impatient
        .post(sim.url("/order/"))
        .header("X-API-KEY", &key)
        .json(&json!({"data": [row("LH-1")]}))
        .send()
        .await;
    assert!(sent.unwrap_err().is_timeout());
    let id = wait_for_order(&sim, &key, "LH-1").await;
    let counted = sim
        .ctl(
            Method::GET,
            &format!("/_sim/keys/{key}/order_nos/LH-1"),
            None,
        )
        .await;
    assert_eq!(counted.body["received"], 1, "{:?}", counted.body);
    assert_eq!(counted.body["accepted"], 1, "{:?}", counted.body);

    // The same for a cancel.
    let sent = impatient
        .get(sim.url(&format!("/order_cancel/{id}")))
        .header("X-API-KEY", &key)
        .send()
        .await;
    assert!(sent.unwrap_err().is_timeout());
    wait_for_cancel(&sim, &key, id, "the cancel received applied").await;
}
