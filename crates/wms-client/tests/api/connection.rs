//! `check_connection` classifications.

use std::sync::Arc;

use serde_json::json;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};
use wmslink_wms_client::{
    ConnectionStatus, SecretString, Unlimited, WmsClientConfig, check_connection,
};
use wmslink_wms_simulator::{Faults, SimRateLimit};

use crate::helpers::*;

async fn check(
    url: &str,
    key: &str,
    cfg: &WmsClientConfig,
) -> wmslink_wms_client::ConnectionReport {
    check_connection(
        url,
        SecretString::from(key.to_owned()),
        cfg,
        Arc::new(Unlimited),
    )
    .await
}

#[tokio::test]
async fn every_classification() {
    let sim = sim().await;
    let key = add_key(&sim, None);
    let cfg = config();

    let ok = check(&sim.base_url(), &key, &cfg).await;
    assert_eq!(ok.status, ConnectionStatus::Ok, "{ok:?}");
    assert_eq!(requests(&sim, &key, "search"), 1);

    let r = check(&sim.base_url(), "wrong-key", &cfg).await;
    assert_eq!(r.status, ConnectionStatus::Unauthorized);
    assert_eq!(r.status.as_str(), "unauthorized");

    let limited_key = add_key(&sim, Some(SimRateLimit::new(0.1, 1)));
    assert_eq!(
        check(&sim.base_url(), &limited_key, &cfg).await.status,
        ConnectionStatus::Ok
    );
    let r = check(&sim.base_url(), &limited_key, &cfg).await;
    assert_eq!(r.status, ConnectionStatus::RateLimited, "{r:?}");

    let r = check(
        &format!("http://127.0.0.1:{}", closed_port().await),
        &key,
        &cfg,
    )
    .await;
    assert_eq!(r.status, ConnectionStatus::Unreachable, "{r:?}");

    let r = check(&format!("https://{}", sim.local_addr()), &key, &cfg).await;
    assert_eq!(r.status, ConnectionStatus::Tls, "{r:?}");

    let slow = add_key(&sim, None);
    sim.state()
        .set_faults(
            &slow,
            Faults {
                latency_ms: 2_000,
                ..Faults::default()
            },
        )
        .unwrap();
    let r = check(
        &sim.base_url(),
        &slow,
        &WmsClientConfig {
            request_timeout_ms: 300,
            ..config()
        },
    )
    .await;
    assert_eq!(r.status, ConnectionStatus::Timeout, "{r:?}");

    let ng = add_key(&sim, None);
    sim.state()
        .set_faults(
            &ng,
            Faults {
                ng_ratio: 1.0,
                ..Faults::default()
            },
        )
        .unwrap();
    let r = check(&sim.base_url(), &ng, &cfg).await;
    assert_eq!(r.status, ConnectionStatus::UnexpectedAnswer, "{r:?}");
    assert!(
        r.detail.contains("simulated NG answer"),
        "the WMS's text is shown: {r:?}"
    );

    let r = check(
        "http://wms.example.com/v1",
        &key,
        &WmsClientConfig::default(),
    )
    .await;
    assert_eq!(r.status, ConnectionStatus::RefusedByPolicy, "{r:?}");
    let r = check(
        &sim.base_url(),
        &key,
        &WmsClientConfig {
            refuse_private_addresses: true,
            ..config()
        },
    )
    .await;
    assert_eq!(r.status, ConnectionStatus::RefusedByPolicy, "{r:?}");
    let r = check("not a url", &key, &cfg).await;
    assert_eq!(r.status, ConnectionStatus::RefusedByPolicy, "{r:?}");
}

#[tokio::test]
async fn unexpected_answers() {
    for response in [
        ResponseTemplate::new(200).set_body_string("<html>login page</html>"),
        ResponseTemplate::new(500),
        ResponseTemplate::new(301).insert_header("location", "https://example.com/"),
        ResponseTemplate::new(404).set_body_string("not found"),
        ResponseTemplate::new(200).set_body_json(json!({"result": "OK", "data": {"x": 1}})),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/order/search"))
            .and(query_param("limit", "1"))
            .respond_with(response)
            .expect(1)
            .mount(&server)
            .await;
        let r = check(&server.uri(), "k", &config()).await;
        assert_eq!(r.status, ConnectionStatus::UnexpectedAnswer, "{r:?}");
        assert_eq!(r.status.as_str(), "unexpected_answer");
    }
}

#[test]
fn statuses_serialise_as_snake_case() {
    assert_eq!(
        serde_json::to_string(&ConnectionStatus::RefusedByPolicy).unwrap(),
        "\"refused_by_policy\""
    );
    assert_eq!(
        serde_json::to_string(&ConnectionStatus::RateLimited).unwrap(),
        "\"rate_limited\""
    );
}
