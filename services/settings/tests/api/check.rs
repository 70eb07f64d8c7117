use std::time::Duration;

use tonic::Code;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};
use wmslink_proto::settings::v1 as pb;
use wmslink_proto::settings::v1::ConnectionCheckOutcome as Outcome;
use wmslink_wms_simulator::Faults;

use crate::helpers::*;

/// A WMS stand-in answering every search with `response`.
async fn wms_answering(response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/order/search"))
        .respond_with(response)
        .mount(&server)
        .await;
    server
}

/// Registers `shop` with `url` and checks it; returns the recorded check.
async fn recorded_check(app: &TestApp, shop: &str, url: &str) -> pb::ConnectionCheck {
    app.put_catalog(shop).await;
    let registered = app
        .register(shop, 0, full_detail(url), Some("ak-1234567890"))
        .await
        .expect("registered");
    let answer = app.check(shop).await;
    assert!(answer.recorded);
    assert_eq!(answer.version, registered.version + 1);
    let check = answer.check.expect("check");
    assert!(check.current);
    assert_eq!(
        app.get(shop).await.expect("get").last_connection_check,
        Some(check.clone()),
        "the outcome is stored"
    );
    check
}

#[tokio::test]
async fn a_working_key_and_url_pass_and_the_outcome_is_recorded() {
    let app = spawn_app().await;
    let sim = start_simulator().await;
    let shop = unique_shop();
    let key = sim_key(&sim);
    app.put_catalog(&shop).await;
    let registered = app
        .register(
            &shop,
            0,
            full_detail(&format!("{}/v1/", sim.base_url())),
            Some(&key),
        )
        .await
        .expect("registered");

    let answer = app.check(&shop).await;
    assert!(answer.recorded);
    assert_eq!(answer.version, registered.version + 1);
    let check = answer.check.expect("check");
    assert_eq!(check.outcome(), Outcome::Ok);
    assert!(check.current);
    assert!(check.checked_at.is_some());

    let settings = app.get(&shop).await.expect("get");
    assert_eq!(settings.version, answer.version);
    assert_eq!(settings.last_connection_check, Some(check));
}

#[tokio::test]
async fn a_wrong_key_is_unauthorized() {
    let app = spawn_app().await;
    let sim = start_simulator().await;
    let _other_account = sim_key(&sim);
    let check = recorded_check(&app, &unique_shop(), &sim.base_url()).await;
    assert_eq!(check.outcome(), Outcome::Unauthorized);
    assert!(check.detail.contains("401"), "{}", check.detail);
}

#[tokio::test]
async fn a_closed_port_is_unreachable() {
    let app = spawn_app().await;
    let url = format!("http://127.0.0.1:{}/v1", closed_port().await);
    let check = recorded_check(&app, &unique_shop(), &url).await;
    assert_eq!(check.outcome(), Outcome::Unreachable);
}

#[tokio::test]
async fn https_to_a_plain_http_server_is_a_tls_failure() {
    let app = spawn_app().await;
    let server = wms_answering(ResponseTemplate::new(200)).await;
    let url = format!("https://{}/v1", server.address());
    let check = recorded_check(&app, &unique_shop(), &url).await;
    assert_eq!(check.outcome(), Outcome::Tls, "{}", check.detail);
}

#[tokio::test]
async fn a_slow_wms_times_out() {
    let app = spawn_app_with(|config| config.wms.request_timeout_ms = 300).await;
    let server = wms_answering(
        ResponseTemplate::new(200)
            .set_body_string(r#"{"result":"OK","data":[],"total":0}"#)
            .set_delay(Duration::from_secs(3)),
    )
    .await;
    let check = recorded_check(&app, &unique_shop(), &format!("{}/v1", server.uri())).await;
    assert_eq!(check.outcome(), Outcome::Timeout);
}

/// A slow WMS stays a timeout when the check first waited for the key's budget: the check
/// waits about 7 s for a token (one request per 7 s, burst 1, the first check took it), so the
/// request goes out after the extra limiter time and the check's own deadline (request + connect
/// timeout + 5 s) ends while the WMS is still silent. It was reported as `RATE_LIMITED`.
#[tokio::test]
async fn a_slow_wms_after_a_wait_for_the_budget_is_a_timeout_not_rate_limited() {
    let app = spawn_app_with(|config| {
        config.wms.request_timeout_ms = 4_000;
        config.wms.connect_timeout_ms = 200;
        config.rate_limit.requests_per_second = 1.0 / 7.0;
        config.rate_limit.burst = 1;
        config.rate_limit.reserve = 0;
    })
    .await;
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/order/search"))
        .respond_with(
            ResponseTemplate::new(200).set_body_string(r#"{"result":"OK","data":[],"total":0}"#),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/order/search"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string(r#"{"result":"OK","data":[],"total":0}"#)
                .set_delay(Duration::from_secs(30)),
        )
        .mount(&server)
        .await;
    let shop = unique_shop();
    let first = recorded_check(&app, &shop, &format!("{}/v1", server.uri())).await;
    assert_eq!(first.outcome(), Outcome::Ok, "{}", first.detail);

    let answer = app.check(&shop).await;
    let check = answer.check.expect("check");
    assert_eq!(
        check.outcome(),
        Outcome::Timeout,
        "the WMS got the request and did not answer: {}",
        check.detail
    );
    assert_eq!(
        server.received_requests().await.map(|r| r.len()),
        Some(2),
        "the second check reached the WMS"
    );
}

#[tokio::test]
async fn the_simulator_with_latency_times_out_too() {
    let app = spawn_app_with(|config| config.wms.request_timeout_ms = 300).await;
    let sim = start_simulator().await;
    let key = sim_key(&sim);
    sim.state()
        .set_faults(
            &key,
            Faults {
                latency_ms: 2_000,
                ..Faults::default()
            },
        )
        .expect("faults");
    let check = app.try_check(&unique_shop(), &key, &sim.base_url()).await;
    assert_eq!(check.outcome(), Outcome::Timeout);
}

#[tokio::test]
async fn http_429_is_rate_limited() {
    let app = spawn_app().await;
    let server = wms_answering(
        ResponseTemplate::new(429)
            .insert_header("Retry-After", "1")
            .set_body_string(
                r#"{"result":"NG","error":[{"code":"E_RATE","message":"slow down"}]}"#,
            ),
    )
    .await;
    let check = recorded_check(&app, &unique_shop(), &format!("{}/v1", server.uri())).await;
    assert_eq!(check.outcome(), Outcome::RateLimited);
}

#[tokio::test]
async fn answers_that_are_not_the_wms_are_unexpected() {
    let app = spawn_app().await;
    let html =
        wms_answering(ResponseTemplate::new(200).set_body_string("<html>hello</html>")).await;
    let check = recorded_check(&app, &unique_shop(), &format!("{}/v1", html.uri())).await;
    assert_eq!(check.outcome(), Outcome::UnexpectedAnswer);

    let ng = wms_answering(ResponseTemplate::new(200).set_body_string(
        r#"{"result":"NG","error":[{"code":"E_MAINTENANCE","message":"メンテナンス中です"}]}"#,
    ))
    .await;
    let check = app
        .try_check(&unique_shop(), "ak-1234567890", &format!("{}/v1", ng.uri()))
        .await;
    assert_eq!(check.outcome(), Outcome::UnexpectedAnswer);
    assert!(
        check.detail.contains("メンテナンス中です"),
        "the WMS's own text is shown: {}",
        check.detail
    );

    let error = wms_answering(ResponseTemplate::new(503)).await;
    let check = app
        .try_check(
            &unique_shop(),
            "ak-1234567890",
            &format!("{}/v1", error.uri()),
        )
        .await;
    assert_eq!(check.outcome(), Outcome::UnexpectedAnswer);

    let redirect = wms_answering(
        ResponseTemplate::new(302)
            .insert_header("Location", "https://evil.example/v1/order/search"),
    )
    .await;
    let check = app
        .try_check(
            &unique_shop(),
            "ak-1234567890",
            &format!("{}/v1", redirect.uri()),
        )
        .await;
    assert_eq!(
        check.outcome(),
        Outcome::UnexpectedAnswer,
        "redirects are not followed"
    );

    let sim = start_simulator().await;
    let key = sim_key(&sim);
    sim.state()
        .set_faults(
            &key,
            Faults {
                ng_ratio: 1.0,
                ..Faults::default()
            },
        )
        .expect("faults");
    let check = app.try_check(&unique_shop(), &key, &sim.base_url()).await;
    assert_eq!(check.outcome(), Outcome::UnexpectedAnswer);
}

#[tokio::test]
async fn the_request_rules_refuse_plain_http_and_private_addresses() {
    let app = spawn_app().await;
    let check = app
        .try_check(&unique_shop(), "ak-1234567890", "http://wms.example.com/v1")
        .await;
    assert_eq!(check.outcome(), Outcome::RefusedByPolicy);
    assert!(check.detail.contains("http"), "{}", check.detail);

    let strict = spawn_app_with(|config| config.wms.refuse_private_addresses = true).await;
    let sim = start_simulator().await;
    let key = sim_key(&sim);
    let check = strict
        .try_check(&unique_shop(), &key, &sim.base_url())
        .await;
    assert_eq!(check.outcome(), Outcome::RefusedByPolicy);
    let check = recorded_check(&strict, &unique_shop(), &sim.base_url()).await;
    assert_eq!(check.outcome(), Outcome::RefusedByPolicy);
}

#[tokio::test]
async fn trying_a_pair_records_nothing() {
    let app = spawn_app().await;
    let sim = start_simulator().await;
    let shop = unique_shop();
    let key = sim_key(&sim);

    // Before any registration: both must be given.
    let check = app.try_check(&shop, &key, &sim.base_url()).await;
    assert_eq!(check.outcome(), Outcome::Ok);
    assert!(!check.current);
    let status = assert_code(
        app.admin
            .clone()
            .check_connection(pb::CheckConnectionRequest {
                shop_id: shop.clone(),
                access_key: Some(key.clone()),
                endpoint_url: None,
            })
            .await,
        Code::NotFound,
    );
    assert!(status.message().contains("give both"), "{status:?}");
    assert_code(app.get(&shop).await, Code::NotFound);

    // Registered with a wrong key: trying the right one (stored URL) passes but records nothing.
    app.put_catalog(&shop).await;
    let registered = app
        .register(
            &shop,
            0,
            full_detail(&sim.base_url()),
            Some("ak-wrong-000000"),
        )
        .await
        .expect("registered");
    let answer = app
        .admin
        .clone()
        .check_connection(pb::CheckConnectionRequest {
            shop_id: shop.clone(),
            access_key: Some(key.clone()),
            endpoint_url: None,
        })
        .await
        .expect("check")
        .into_inner();
    assert_eq!(answer.check.expect("check").outcome(), Outcome::Ok);
    assert!(!answer.recorded);
    assert_eq!(answer.version, registered.version);
    assert_eq!(app.get(&shop).await.expect("get"), registered);
}

#[tokio::test]
async fn checking_an_unknown_shop_is_not_found() {
    let app = spawn_app().await;
    let status = assert_code(
        app.admin
            .clone()
            .check_connection(pb::CheckConnectionRequest {
                shop_id: unique_shop(),
                access_key: None,
                endpoint_url: None,
            })
            .await,
        Code::NotFound,
    );
    assert!(status.message().contains("no settings"));
}

#[tokio::test]
async fn a_malformed_pair_to_try_is_invalid() {
    let app = spawn_app().await;
    let status = assert_code(
        app.admin
            .clone()
            .check_connection(pb::CheckConnectionRequest {
                shop_id: unique_shop(),
                access_key: Some(String::new()),
                endpoint_url: Some("nope".into()),
            })
            .await,
        Code::InvalidArgument,
    );
    let fields: Vec<String> = wmslink_platform::validation::violations_of(&status)
        .into_iter()
        .map(|(f, _)| f)
        .collect();
    assert_eq!(fields, ["access_key", "endpoint_url"]);
}

#[tokio::test]
async fn changing_the_key_or_the_url_voids_the_check() {
    let app = spawn_app().await;
    let sim = start_simulator().await;
    let shop = unique_shop();
    let (_key, version) = app.registered_and_checked(&sim, &shop).await;

    // A new key.
    let new_key = sim_key(&sim);
    let changed = app
        .register(&shop, version, full_detail(&sim.base_url()), Some(&new_key))
        .await
        .expect("registered");
    let check = changed
        .last_connection_check
        .expect("the last check is still shown");
    assert_eq!(check.outcome(), Outcome::Ok);
    assert!(!check.current, "a new key voids the check");
    let rechecked = app.check(&shop).await;
    assert!(rechecked.check.expect("check").current);

    // A new URL (same simulator, other spelling).
    let other_url = format!("{}/v1", sim.base_url().replace("127.0.0.1", "localhost"));
    let changed = app
        .register(
            &shop,
            rechecked.version,
            full_detail(&other_url),
            Some(&new_key),
        )
        .await
        .expect("registered");
    assert!(
        !changed.last_connection_check.expect("check").current,
        "a new URL voids the check"
    );
}

#[tokio::test]
async fn a_check_whose_credentials_changed_meanwhile_is_not_recorded() {
    let app = spawn_app().await;
    let server = wms_answering(
        ResponseTemplate::new(200)
            .set_body_string(r#"{"result":"OK","data":[],"total":0}"#)
            .set_delay(Duration::from_millis(1_500)),
    )
    .await;
    let shop = unique_shop();
    app.put_catalog(&shop).await;
    let url = format!("{}/v1", server.uri());
    let registered = app
        .register(&shop, 0, full_detail(&url), Some("ak-old-1234567"))
        .await
        .expect("registered");

    let checking = {
        let mut client = app.admin.clone();
        let shop = shop.clone();
        tokio::spawn(async move {
            client
                .check_connection(pb::CheckConnectionRequest {
                    shop_id: shop,
                    access_key: None,
                    endpoint_url: None,
                })
                .await
        })
    };
    wmslink_testkit::eventually(WAIT, "the WMS is being called", || async {
        server
            .received_requests()
            .await
            .is_some_and(|requests| !requests.is_empty())
            .then_some(())
    })
    .await;
    let changed = app
        .register(
            &shop,
            registered.version,
            full_detail(&url),
            Some("ak-new-7654321"),
        )
        .await
        .expect("registered while the check runs");

    let answer = checking
        .await
        .expect("task")
        .expect("answered")
        .into_inner();
    assert_eq!(
        answer.check.as_ref().map(|c| c.outcome()),
        Some(Outcome::Ok)
    );
    assert!(
        !answer.recorded,
        "the outcome is about a key no longer stored"
    );
    assert!(!answer.check.expect("check").current);
    assert_eq!(answer.version, changed.version);
    let settings = app.get(&shop).await.expect("get");
    assert_eq!(settings.last_connection_check, None);
    assert_eq!(settings.version, changed.version);
}
