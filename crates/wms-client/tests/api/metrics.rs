//! The client's metrics, captured with an in-memory exporter: calls by endpoint and outcome,
//! call durations, limiter waits; never the key nor its bucket.

use std::sync::Arc;

use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};
use wmslink_platform::telemetry::testing::MetricsCapture;
use wmslink_wms_client::{
    InProcessRateLimiter, RateLimitConfig, SearchQuery, Unlimited, WmsError, WmsMetrics,
};

use crate::helpers::*;

const KEY: &str = "metrics-SECRET-key";

#[tokio::test]
async fn calls_are_counted_by_endpoint_and_outcome_with_durations() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/order/search"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"result": "OK", "data": [], "total": 0, "error": []})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/order/7"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"result": "NG", "data": null, "error": [{"code": "E_NOT_FOUND", "message": "no such order"}]}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/order_cancel/8"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&server)
        .await;

    let capture = MetricsCapture::new();
    let client = client_with(
        &format!("{}/v1", server.uri()),
        KEY,
        &config(),
        Arc::new(Unlimited),
    )
    .with_metrics(WmsMetrics::new(&capture.meter()));
    client.search(&SearchQuery::new()).await.unwrap();
    client.search(&SearchQuery::new()).await.unwrap();
    assert!(matches!(
        client.get_order(7).await,
        Err(WmsError::Rejected { .. })
    ));
    assert!(matches!(
        client.cancel_order(8).await,
        Err(WmsError::Unauthorized)
    ));
    // Refused by validation before any call: not counted.
    assert!(matches!(
        client.search(&SearchQuery::new().limit(1000)).await,
        Err(WmsError::InvalidRequest(_))
    ));

    let calls = |m: &str, endpoint: &str, outcome: &str| {
        capture
            .point(
                "wmslink.wms.calls",
                &[("endpoint", endpoint), ("method", m), ("outcome", outcome)],
            )
            .map(|p| p.value)
    };
    assert_eq!(calls("GET", "/order/search", "ok"), Some(2.0));
    assert_eq!(calls("GET", "/order/{order_id}", "ng"), Some(1.0));
    assert_eq!(
        calls("GET", "/order_cancel/{order_id}", "unauthorized"),
        Some(1.0)
    );
    assert_eq!(capture.points("wmslink.wms.calls").len(), 3);

    let durations = capture.points("wmslink.wms.call.duration");
    assert_eq!(durations.len(), 3, "{durations:?}");
    let search = capture
        .point(
            "wmslink.wms.call.duration",
            &[
                ("endpoint", "/order/search"),
                ("method", "GET"),
                ("outcome", "ok"),
            ],
        )
        .unwrap();
    assert_eq!(search.count, 2);
    assert!(search.value > 0.0 && search.value < 10.0, "{search:?}");

    let waits = capture.points("wmslink.wms.limiter.wait");
    assert_eq!(
        waits.iter().map(|p| p.count).sum::<u64>(),
        4,
        "one wait per call sent: {waits:?}"
    );

    let bucket = client.bucket().as_str().to_owned();
    for name in [
        "wmslink.wms.calls",
        "wmslink.wms.call.duration",
        "wmslink.wms.limiter.wait",
    ] {
        for point in capture.points(name) {
            for value in point.attributes.values() {
                assert!(!value.contains(KEY), "{name}: {point:?}");
                assert!(!value.contains(&bucket[..12]), "{name}: {point:?}");
            }
        }
    }
}

#[tokio::test]
async fn limiter_waits_are_measured() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"result": "OK", "data": [], "total": 0, "error": []})),
        )
        .mount(&server)
        .await;
    let limiter = InProcessRateLimiter::new(RateLimitConfig {
        requests_per_second: 10.0,
        burst: 1,
        reserve: 0,
    })
    .unwrap();
    let capture = MetricsCapture::new();
    let client = client_with(&server.uri(), KEY, &config(), Arc::new(limiter))
        .with_metrics(WmsMetrics::new(&capture.meter()));
    for _ in 0..3 {
        client.search(&SearchQuery::new()).await.unwrap();
    }
    let wait = capture
        .point(
            "wmslink.wms.limiter.wait",
            &[("endpoint", "/order/search"), ("method", "GET")],
        )
        .unwrap();
    assert_eq!(wait.count, 3);
    // The 2nd and 3rd calls wait about 100 ms each for a token.
    assert!(wait.value >= 0.15, "{wait:?}");
}
