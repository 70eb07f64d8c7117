//! Per-key rate limits and injected faults.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
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
