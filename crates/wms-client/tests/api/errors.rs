//! Exact faults with wiremock and raw sockets: every error kind.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::AsyncReadExt;
use wiremock::matchers::{body_partial_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};
use wmslink_wms_client::{
    InProcessRateLimiter, MAX_RETRY_AFTER, MAX_WMS_MESSAGE_CHARS, MAX_WMS_NAME_CHARS,
    RateLimitConfig, RowOutcome, SearchQuery, Unlimited, WmsClientConfig, WmsError,
};

use crate::helpers::*;

const KEY: &str = "wiremock-SECRET-key";

fn order_json(id: i64, no: &str) -> serde_json::Value {
    json!({"order_id": id, "order_no": no, "status_id": 50, "status_name": "出荷待ち",
           "cancel_flag": 0, "shipped_flag": 0, "shipping_status_id": null, "tracking_code": null,
           "shipping_date": null, "update_date": "2026-11-28T10:15:00+09:00"})
}

async fn mock(status: u16, body: serde_json::Value) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(status).set_body_json(body.clone()))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(status).set_body_json(body))
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn requests_carry_the_key_json_and_the_exact_query() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/order/search"))
        .and(header("x-api-key", KEY))
        .and(query_param("order_no-in", "S1-1,S1-2"))
        .and(query_param("update_date-gte", "2026-11-28T10:15:00+09:00"))
        .and(query_param("limit", "200"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"result": "OK", "data": [order_json(1, "S1-1")], "total": 1, "error": []}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/order/"))
        .and(header("x-api-key", KEY))
        .and(header("content-type", "application/json; charset=utf-8"))
        .and(body_partial_json(json!({"data": [{"order_no": "S1-1", "robot_id": 12,
            "orderer": {"name": "山田 太郎"}, "details": [{"sku": "SKU-1", "quantity": 2}]}]})))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"result": "OK", "data": [{"order_no": "S1-1", "result": "OK", "order_id": 77}], "error": []}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&format!("{}/v1/", server.uri()), KEY);
    let since = chrono::DateTime::parse_from_rfc3339("2026-11-28T01:15:00Z").unwrap();
    let page = c
        .search(
            &SearchQuery::new()
                .order_no_in(["S1-1", "S1-2"])
                .update_date_gte(since)
                .limit(200),
        )
        .await
        .unwrap();
    assert_eq!(page.orders[0].order_id, 1);
    let rows = c.register_batch(&[row("S1-1")]).await.unwrap();
    assert_eq!(rows[0].order_id(), Some(77));
}

#[tokio::test]
async fn http_200_with_ng_is_a_rejection() {
    let server = mock(
        200,
        json!({"result": "NG", "data": null,
        "error": [{"code": "E_PARAM", "message": "検索条件が不正です"}]}),
    )
    .await;
    let c = client(&server.uri(), KEY);
    let err = c.search(&SearchQuery::new()).await.unwrap_err();
    match err {
        WmsError::Rejected { code, message, .. } => {
            assert_eq!(code, "E_PARAM");
            assert_eq!(message, "検索条件が不正です");
        }
        other => panic!("{other:?}"),
    }
    // A registration NG without per-row data: the whole call is rejected.
    let err = c.register_batch(&[row("A")]).await.unwrap_err();
    assert_eq!(err.rejection_code(), Some("E_PARAM"));
}

#[tokio::test]
async fn registration_ng_with_rows_gives_per_row_results() {
    let server = mock(
        200,
        json!({"result": "NG", "data": [
        {"order_no": "A", "result": "OK", "order_id": 5},
        {"order_no": "B", "result": "NG", "error": [{"code": "E_DUPLICATE", "message": "重複"}]},
        {"order_no": "C", "result": "NG"}
    ], "error": [{"code": "E_X", "message": "from envelope", "order_no": "C"}]}),
    )
    .await;
    let c = client(&server.uri(), KEY);
    let rows = c
        .register_batch(&[row("A"), row("B"), row("C")])
        .await
        .unwrap();
    assert_eq!(rows[0].outcome, RowOutcome::Registered { order_id: 5 });
    assert_eq!(rows[1].error_code(), Some("E_DUPLICATE"));
    assert_eq!(
        rows[2].error_code(),
        Some("E_X"),
        "falls back to the envelope's error for the row"
    );
}

#[tokio::test]
async fn registration_answers_that_do_not_match_are_unknown_outcomes() {
    for body in [
        json!({"result": "OK", "data": [{"order_no": "A", "result": "OK", "order_id": 1}]}),
        json!({"result": "OK", "data": [{"order_no": "B", "result": "OK", "order_id": 1},
                                         {"order_no": "A", "result": "OK", "order_id": 2}]}),
        json!({"result": "OK", "data": [{"order_no": "A", "result": "OK"},
                                         {"order_no": "B", "result": "OK", "order_id": 2}]}),
        json!("not an envelope"),
    ] {
        let server = mock(200, body.clone()).await;
        let c = client(&server.uri(), KEY);
        let err = c.register_batch(&[row("A"), row("B")]).await.unwrap_err();
        assert!(
            matches!(err, WmsError::UnknownOutcome { .. }),
            "{body}: {err:?}"
        );
    }
}

#[tokio::test]
async fn a_2xx_that_is_not_the_envelope_is_malformed() {
    for body in [
        ResponseTemplate::new(200).set_body_string("<html>hello</html>"),
        ResponseTemplate::new(200).set_body_json(json!({"result": "MAYBE"})),
        ResponseTemplate::new(200)
            .set_body_json(json!({"result": "OK", "data": {"not": "a list"}})),
        ResponseTemplate::new(200)
            .set_body_json(json!({"result": "OK", "data": [{"order_id": "x"}]})),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(body)
            .mount(&server)
            .await;
        let err = client(&server.uri(), KEY)
            .search(&SearchQuery::new())
            .await
            .unwrap_err();
        assert!(matches!(err, WmsError::Malformed(_)), "{err:?}");
    }
}

type Check = fn(&WmsError) -> bool;

#[tokio::test]
async fn status_codes_map_to_kinds() {
    let envelope = json!({"result": "NG", "data": null, "error": [{"code": "E", "message": "m"}]});
    let cases: Vec<(u16, Check)> = vec![
        (401, |e| matches!(e, WmsError::Unauthorized)),
        (500, |e| {
            matches!(
                e,
                WmsError::Transient {
                    status: Some(500),
                    ..
                }
            )
        }),
        (503, |e| {
            matches!(
                e,
                WmsError::Transient {
                    status: Some(503),
                    ..
                }
            )
        }),
        (502, |e| {
            matches!(
                e,
                WmsError::Transient {
                    status: Some(502),
                    ..
                }
            )
        }),
        (404, |e| e.rejection_code() == Some("E")),
        (400, |e| e.rejection_code() == Some("E")),
    ];
    for (status, check) in cases {
        let server = mock(status, envelope.clone()).await;
        let err = client(&server.uri(), KEY)
            .search(&SearchQuery::new())
            .await
            .unwrap_err();
        assert!(check(&err), "{status}: {err:?}");
    }
    // 4xx without an envelope.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(418).set_body_string("teapot"))
        .mount(&server)
        .await;
    let err = client(&server.uri(), KEY)
        .search(&SearchQuery::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, WmsError::UnexpectedStatus { status: 418 }),
        "{err:?}"
    );
}

#[tokio::test]
async fn server_errors_after_a_registration_or_cancel_are_unknown_outcomes() {
    // A server that failed may have applied the request first: every 5xx.
    for (status, unknown) in [(502, true), (504, true), (500, true), (503, true)] {
        let server = mock(status, json!({})).await;
        let err = client(&server.uri(), KEY)
            .register_batch(&[row("A")])
            .await
            .unwrap_err();
        assert_eq!(err.may_have_been_applied(), unknown, "{status}: {err:?}");
        let err = client(&server.uri(), KEY)
            .cancel_order(1)
            .await
            .unwrap_err();
        assert_eq!(err.may_have_been_applied(), unknown, "{status}: {err:?}");
    }
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/order/search"))
        .respond_with(
            ResponseTemplate::new(302)
                .insert_header("location", format!("{}/elsewhere", server.uri())),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/elsewhere"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let err = client(&server.uri(), KEY)
        .search(&SearchQuery::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, WmsError::UnexpectedStatus { status: 302 }),
        "{err:?}"
    );
}

#[tokio::test]
async fn too_many_requests_honours_retry_after_and_pushes_the_bucket_back() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/order/search"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/order/search"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"result": "OK", "data": [], "total": 0})),
        )
        .mount(&server)
        .await;
    let limiter = Arc::new(InProcessRateLimiter::new(RateLimitConfig::new(1000.0, 100)).unwrap());
    let c = client_with(&server.uri(), KEY, &config(), limiter);
    let err = c.search(&SearchQuery::new()).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    assert!(err.is_retryable());
    // The limiter holds the next call back for the Retry-After.
    let start = std::time::Instant::now();
    c.search(&SearchQuery::new()).await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );

    // HTTP-date form and a missing header.
    let server = MockServer::start().await;
    let date = (chrono::Utc::now() + chrono::Duration::seconds(30))
        .to_rfc2822()
        .replace("+0000", "GMT");
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", date.as_str()))
        .mount(&server)
        .await;
    let err = client(&server.uri(), KEY)
        .search(&SearchQuery::new())
        .await
        .unwrap_err();
    let wait = err.retry_after().unwrap();
    assert!(
        wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
        "{wait:?}"
    );
    let server = mock(429, json!({})).await;
    let err = client(&server.uri(), KEY)
        .search(&SearchQuery::new())
        .await
        .unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
}

#[tokio::test]
async fn a_hostile_retry_after_is_capped() {
    for header in [
        "3600".to_owned(),
        (chrono::Utc::now() + chrono::Duration::hours(2))
            .to_rfc2822()
            .replace("+0000", "GMT"),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(429).insert_header("retry-after", header.as_str()))
            .mount(&server)
            .await;
        let err = client(&server.uri(), KEY)
            .search(&SearchQuery::new())
            .await
            .unwrap_err();
        assert_eq!(err.retry_after(), Some(MAX_RETRY_AFTER), "{header}");
        assert_eq!(MAX_RETRY_AFTER, Duration::from_secs(60));
    }
}

#[tokio::test]
async fn timeouts_depend_on_idempotency() {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .mount(&server)
        .await;
    let cfg = WmsClientConfig {
        request_timeout_ms: 300,
        ..config()
    };
    let c = client_with(&server.uri(), KEY, &cfg, Arc::new(Unlimited));
    assert!(matches!(
        c.search(&SearchQuery::new()).await,
        Err(WmsError::Timeout)
    ));
    assert!(matches!(c.get_order(1).await, Err(WmsError::Timeout)));
    assert!(matches!(
        c.register_batch(&[row("A")]).await,
        Err(WmsError::UnknownOutcome { .. })
    ));
    assert!(matches!(
        c.cancel_order(1).await,
        Err(WmsError::UnknownOutcome { .. })
    ));
}

/// A server that reads the request and closes the connection without answering.
async fn hang_up_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = vec![0u8; 64 * 1024];
            let _ = tokio::time::timeout(Duration::from_millis(200), sock.read(&mut buf)).await;
            drop(sock);
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_reset_after_sending_is_unknown_for_writes_and_transient_for_reads() {
    let base = hang_up_server().await;
    let c = client(&base, KEY);
    let err = c.register_batch(&[row("A")]).await.unwrap_err();
    assert!(matches!(err, WmsError::UnknownOutcome { .. }), "{err:?}");
    let err = c.cancel_order(1).await.unwrap_err();
    assert!(matches!(err, WmsError::UnknownOutcome { .. }), "{err:?}");
    let err = c.search(&SearchQuery::new()).await.unwrap_err();
    assert!(
        matches!(err, WmsError::Transient { status: None, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn connection_refused_is_unreachable_even_for_writes() {
    let base = format!("http://127.0.0.1:{}", closed_port().await);
    let c = client(&base, KEY);
    let err = c.register_batch(&[row("A")]).await.unwrap_err();
    assert!(matches!(err, WmsError::Unreachable(_)), "{err:?}");
    assert!(!err.may_have_been_applied());
    assert!(err.is_retryable());
    let err = c.search(&SearchQuery::new()).await.unwrap_err();
    assert!(matches!(err, WmsError::Unreachable(_)), "{err:?}");
}

#[tokio::test]
async fn tls_failure_is_tls() {
    // https to a plain-http server: the handshake fails.
    let sim = sim().await;
    let key = add_key(&sim, None);
    let url = format!("https://{}", sim.local_addr());
    let err = client(&url, &key)
        .search(&SearchQuery::new())
        .await
        .unwrap_err();
    assert!(matches!(err, WmsError::Tls(_)), "{err:?}");
}

#[tokio::test]
async fn request_rules_refuse_before_sending() {
    use wmslink_wms_client::{SecretString, WmsClient};
    let strict = WmsClientConfig::default();
    let err = WmsClient::new(
        "http://api.crobo.jp/v1",
        SecretString::from("k"),
        &strict,
        Arc::new(Unlimited),
    )
    .unwrap_err();
    assert!(matches!(err, WmsError::PolicyRefused(_)), "{err:?}");
    let err = WmsClient::new(
        "https://api.crobo.jp/v1",
        SecretString::from("  "),
        &strict,
        Arc::new(Unlimited),
    )
    .unwrap_err();
    assert!(matches!(err, WmsError::Config(_)), "{err:?}");

    // Private addresses refused: a literal at construction, a name at connect time.
    let sim = sim().await;
    let key = add_key(&sim, None);
    let refuse = WmsClientConfig {
        refuse_private_addresses: true,
        ..config()
    };
    let err = WmsClient::new(
        &sim.base_url(),
        SecretString::from(key.clone()),
        &refuse,
        Arc::new(Unlimited),
    )
    .unwrap_err();
    assert!(matches!(err, WmsError::PolicyRefused(_)), "{err:?}");
    let by_name = format!("http://localhost:{}", sim.local_addr().port());
    let c = client_with(&by_name, &key, &refuse, Arc::new(Unlimited));
    let err = c.search(&SearchQuery::new()).await.unwrap_err();
    assert!(matches!(err, WmsError::PolicyRefused(_)), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(
        !text.contains("127.0.0.1") && !text.contains("::1"),
        "the resolved address is not revealed: {text}"
    );
    assert_eq!(
        requests(&sim, &key, "search"),
        0,
        "nothing reached the server"
    );
    // Without the rule, the same name works.
    let c = client_with(&by_name, &key, &config(), Arc::new(Unlimited));
    c.search(&SearchQuery::new()).await.unwrap();
}

/// What the tenant's endpoint says is cleaned and bounded when parsed: an odd status name or
/// error message never reaches rows, events and logs as is.
#[tokio::test]
async fn wms_text_is_cleaned_and_bounded_when_parsed() {
    let mut odd = order_json(1, "A-1");
    odd["status_name"] = json!(format!("出荷\u{0007}待ち\u{202E}{}", "x".repeat(10_000)));
    odd["tracking_code"] = json!("TRK\r\n123");
    let server = mock(200, json!({"result": "OK", "data": [odd], "total": 1})).await;
    let page = client(&server.uri(), KEY)
        .search(&SearchQuery::new())
        .await
        .unwrap();
    let order = &page.orders[0];
    assert!(
        order.status_name.starts_with("出荷 待ち "),
        "{}",
        &order.status_name[..20]
    );
    assert_eq!(order.status_name.chars().count(), MAX_WMS_NAME_CHARS);
    assert!(!order.status_name.chars().any(char::is_control));
    assert_eq!(order.tracking_code.as_deref(), Some("TRK  123"));

    let server = mock(
        200,
        json!({"result": "NG", "error": [{"code": "E_\u{0000}X", "message": format!("bad\u{001b}[31m{}", "m".repeat(5_000))}]}),
    )
    .await;
    let err = client(&server.uri(), KEY)
        .search(&SearchQuery::new())
        .await
        .unwrap_err();
    match err {
        WmsError::Rejected { code, message, .. } => {
            assert_eq!(code, "E_ X");
            assert!(message.starts_with("bad [31m"), "{}", &message[..20]);
            assert_eq!(message.chars().count(), MAX_WMS_MESSAGE_CHARS);
        }
        other => panic!("{other:?}"),
    }
}
