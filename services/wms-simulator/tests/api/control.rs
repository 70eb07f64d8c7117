//! The `/_sim` control endpoints.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn keys_can_be_added_listed_and_removed_at_runtime() {
    let sim = start_default().await;
    assert_eq!(
        sim.ctl(Method::GET, "/_sim/health", None).await.body["status"],
        "ok"
    );
    let a = sim
        .ctl(
            Method::POST,
            "/_sim/keys",
            Some(json!({"key": "abcd-secret-1"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let a = sim
        .ctl(
            Method::POST,
            "/_sim/keys",
            Some(json!({"key": "abcd-secret-1", "rate_limit": {"per_second": 5, "burst": 2}})),
        )
        .await;
    assert_eq!(
        (a.status, a.body["created"].as_bool()),
        (StatusCode::OK, Some(false))
    );
    let list = sim.ctl(Method::GET, "/_sim/keys", None).await;
    let keys = list.body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["key_hint"], "abcd…");
    assert_eq!(keys[0]["rate_limit"]["burst"], 2);
    assert!(
        !list.body.to_string().contains("abcd-secret-1"),
        "keys are masked"
    );
    assert_eq!(
        sim.ctl(Method::POST, "/_sim/keys", Some(json!({"key": ""})))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        sim.ctl(Method::POST, "/_sim/keys", Some(json!({"nokey": 1})))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        sim.ctl(Method::DELETE, "/_sim/keys/abcd-secret-1", None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        sim.get("abcd-secret-1", "/order/search").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        sim.ctl(Method::DELETE, "/_sim/keys/abcd-secret-1", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn counters_count_requests_by_endpoint() {
    let sim = start_default().await;
    let key = sim.key(None).await;
    let ids = sim.register_ok(&key, &["K-1"]).await;
    sim.register(&key, vec![row("K-1")]).await;
    sim.get(&key, "/order/search").await;
    sim.get(&key, &format!("/order/{}", ids[0])).await;
    sim.get(&key, &format!("/order_cancel/{}", ids[0])).await;
    sim.send(
        Some(&key),
        Method::PUT,
        "/order/",
        Some(json!({"data": [{"order_id": ids[0]}]})),
    )
    .await;
    let c = sim.counters(&key).await;
    assert_eq!(
        c["requests"],
        json!({"register": 2, "search": 1, "get": 1, "cancel": 1, "update": 1})
    );
    assert_eq!(c["registrations_accepted"], 1);
    assert_eq!(c["duplicates_refused"], 1);
    assert_eq!(c["cancels"], 1);
    assert_eq!(
        sim.ctl(Method::GET, "/_sim/keys/unknown/counters", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn order_nos_say_when_each_order_was_first_registered() {
    let sim = start_default().await;
    let key = sim.key(None).await;
    let before = chrono::Utc::now().timestamp_millis();
    sim.register_ok(&key, &["T-1"]).await;
    let after = chrono::Utc::now().timestamp_millis();
    // A duplicate later keeps the first registration's time.
    sim.register(&key, vec![row("T-1")]).await;
    let mut invalid = row("T-2");
    invalid["order_date"] = json!("not a date");
    sim.register(&key, vec![invalid]).await;
    let nos = sim
        .ctl(Method::GET, &format!("/_sim/keys/{key}/order_nos"), None)
        .await;
    let first = nos.body["order_nos"]["T-1"]["first_accepted_unix_ms"]
        .as_i64()
        .expect("a registration time");
    assert!(
        (before..=after).contains(&first),
        "{before} <= {first} <= {after}"
    );
    assert_eq!(nos.body["order_nos"]["T-1"]["received"], 2);
    // Received but never accepted: no time.
    assert_eq!(nos.body["order_nos"]["T-2"]["accepted"], 0);
    assert!(
        nos.body["order_nos"]["T-2"]
            .get("first_accepted_unix_ms")
            .is_none()
    );
}

#[tokio::test]
async fn patch_sets_status_and_flags() {
    let sim = start_default().await;
    let key = sim.key(None).await;
    let ids = sim.register_ok(&key, &["P-1"]).await;
    let path = format!("/_sim/keys/{key}/orders/{}", ids[0]);
    let before =
        sim.get(&key, &format!("/order/{}", ids[0])).await.body["data"]["update_date"].clone();
    let a = sim
        .ctl(Method::PATCH, &path, Some(json!({"status_id": 100, "shipped_flag": 1, "tracking_code": "TRK-1", "shipping_date": "2026-12-01", "shipping_status_id": 1})))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let o = sim.get(&key, &format!("/order/{}", ids[0])).await.body["data"].clone();
    assert_eq!(o["status_id"], 100);
    assert_eq!(o["shipped_flag"], 1);
    assert_eq!(o["tracking_code"], "TRK-1");
    assert_eq!(o["shipping_date"], "2026-12-01");
    assert_eq!(o["shipping_status_id"], 1);
    assert!(o["update_date"].as_str() >= before.as_str());
    assert_eq!(
        sim.ctl(Method::PATCH, &path, Some(json!({"status_id": 7})))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        sim.ctl(Method::PATCH, &path, Some(json!({"cancel_flag": 2})))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    let missing = format!("/_sim/keys/{key}/orders/1");
    assert_eq!(
        sim.ctl(Method::PATCH, &missing, Some(json!({})))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let full = sim.ctl(Method::GET, &path, None).await;
    assert_eq!(full.body["row"]["order_no"], "P-1");
}

#[tokio::test]
async fn reset_clears_orders_faults_and_counters() {
    let sim = start_default().await;
    let a = sim.key(None).await;
    let b = sim.key(None).await;
    sim.register_ok(&a, &["X-1"]).await;
    sim.register_ok(&b, &["X-1"]).await;
    sim.ctl(
        Method::PUT,
        &format!("/_sim/keys/{a}/faults"),
        Some(json!({"latency_ms": 1})),
    )
    .await;
    sim.ctl(Method::POST, &format!("/_sim/keys/{a}/reset"), None)
        .await;
    assert_eq!(sim.get(&a, "/order/search").await.body["total"], 0);
    assert_eq!(
        sim.ctl(Method::GET, &format!("/_sim/keys/{a}/faults"), None)
            .await
            .body["latency_ms"],
        0
    );
    assert_eq!(sim.counters(&a).await["requests"]["search"], 1);
    assert_eq!(
        sim.get(&b, "/order/search").await.body["total"],
        1,
        "other keys untouched"
    );
    sim.ctl(Method::POST, "/_sim/reset", None).await;
    assert_eq!(sim.get(&b, "/order/search").await.body["total"], 0);
    assert_eq!(
        sim.get(&b, "/order/search").await.status,
        StatusCode::OK,
        "keys stay"
    );
}
