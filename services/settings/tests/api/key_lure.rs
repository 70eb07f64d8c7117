//! I7: the stored access key is only ever sent to the endpoint URL it was registered with, and
//! a check of any other URL cannot touch the shop's real rate-limit budget.

use std::time::{Duration, Instant};

use tonic::Code;
use wiremock::{Mock, MockServer, ResponseTemplate};
use wmslink_proto::settings::v1 as pb;
use wmslink_proto::settings::v1::ConnectionCheckOutcome as Outcome;

use crate::helpers::*;

/// A listener of the caller's own that records every request (headers included).
async fn listener(response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(response)
        .mount(&server)
        .await;
    server
}

async fn assert_never_saw_key(server: &MockServer, key: &str) {
    let requests = server.received_requests().await.unwrap_or_default();
    for request in &requests {
        for (name, value) in &request.headers {
            assert!(
                !value
                    .as_bytes()
                    .windows(key.len())
                    .any(|w| w == key.as_bytes()),
                "the stored key reached the listener in header {name}"
            );
        }
    }
}

fn field_reasons(status: &tonic::Status) -> Vec<(String, String)> {
    wmslink_platform::validation::violations_of(status)
}

#[tokio::test]
async fn the_stored_key_never_goes_to_a_url_it_was_not_registered_with() {
    let app = spawn_app().await;
    let sim = start_simulator().await;
    let shop = unique_shop();
    let (key, version) = app.registered_and_checked(&sim, &shop).await;
    let lure = listener(
        ResponseTemplate::new(200).set_body_string(r#"{"result":"OK","data":[],"total":0}"#),
    )
    .await;
    let lure_url = format!("{}/v1", lure.uri());

    // CheckConnection with only a new URL: refused, nothing sent.
    let status = assert_code(
        app.admin
            .clone()
            .check_connection(pb::CheckConnectionRequest {
                shop_id: shop.clone(),
                access_key: None,
                endpoint_url: Some(lure_url.clone()),
            })
            .await,
        Code::InvalidArgument,
    );
    let reasons = field_reasons(&status);
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert_eq!(reasons[0].0, "access_key");
    assert!(reasons[0].1.contains("registered"), "{reasons:?}");

    // RegisterSettings with only a new URL: refused, nothing saved.
    let status = assert_code(
        app.register(&shop, version, full_detail(&lure_url), None)
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(
        field_reasons(&status)
            .into_iter()
            .map(|(field, _)| field)
            .collect::<Vec<_>>(),
        ["access_key"]
    );
    let stored = app.get(&shop).await.expect("get");
    assert_eq!(stored.version, version);
    assert_eq!(
        stored.detail.expect("detail").endpoint_url,
        sim.base_url(),
        "the URL is unchanged"
    );
    // And the check of the stored pair still only goes to the registered endpoint.
    assert_eq!(
        app.check(&shop).await.check.expect("check").outcome(),
        Outcome::Ok
    );
    assert!(
        lure.received_requests()
            .await
            .unwrap_or_default()
            .is_empty(),
        "the listener was never called"
    );
    assert_never_saw_key(&lure, &key).await;

    // With the key given again, a new URL is fine (the caller knows the key already).
    let other_key = "ak-given-again-123";
    let check = app.try_check(&shop, other_key, &lure_url).await;
    assert_eq!(check.outcome(), Outcome::Ok);
    let moved = app
        .register(&shop, version + 1, full_detail(&lure_url), Some(other_key))
        .await
        .expect("a new URL with its key");
    assert_eq!(moved.detail.expect("detail").endpoint_url, lure_url);
    assert_never_saw_key(&lure, &key).await;
}

#[tokio::test]
async fn a_hostile_endpoint_cannot_freeze_the_shops_budget() {
    let app = spawn_app().await;
    let sim = start_simulator().await;
    let shop = unique_shop();
    let (key, _) = app.registered_and_checked(&sim, &shop).await;
    let hostile = listener(
        ResponseTemplate::new(429)
            .insert_header("Retry-After", "3600")
            .set_body_string(r#"{"result":"NG","error":[{"code":"E_RATE","message":"later"}]}"#),
    )
    .await;

    // Even with the right key, a check of another URL uses a budget of its own.
    let check = app
        .try_check(&shop, &key, &format!("{}/v1", hostile.uri()))
        .await;
    assert_eq!(check.outcome(), Outcome::RateLimited);

    // The shop's real calls are not held back: the registered pair checks at once.
    let start = Instant::now();
    let answer = app.check(&shop).await;
    assert_eq!(
        answer.check.expect("check").outcome(),
        Outcome::Ok,
        "the registered endpoint's budget was pushed back by another URL's 429"
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}
