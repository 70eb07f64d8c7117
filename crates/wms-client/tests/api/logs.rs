//! The access key appears in no log line, span, error or Debug output.

use std::sync::Arc;
use wmslink_testkit::LogCapture;
use wmslink_wms_client::{
    InProcessRateLimiter, RateLimitConfig, SearchQuery, SecretString, WmsClient, WmsClientConfig,
    check_connection,
};
use wmslink_wms_simulator::{Faults, SimRateLimit};

use crate::helpers::*;

#[tokio::test]
async fn no_access_key_in_any_log_line() {
    let (capture, _guard) = LogCapture::install();
    let sim = sim().await;
    let key = add_key(&sim, Some(SimRateLimit::new(1.0, 7)));
    let wrong_key = unique("WRONG-SECRET-");
    let limiter = Arc::new(InProcessRateLimiter::new(RateLimitConfig::new(1000.0, 100)).unwrap());
    let c = client_with(&sim.base_url(), &key, &config(), limiter.clone());
    let mut outputs = vec![format!("{c:?}")];

    let ids: Vec<i64> = c
        .register_batch(&rows("LOG", 3))
        .await
        .unwrap()
        .iter()
        .map(|r| r.order_id().unwrap())
        .collect();
    outputs.push(format!("{:?}", c.register_batch(&rows("LOG", 1)).await));
    outputs.push(format!("{:?}", c.find_by_order_nos(&["LOG-00000"]).await));
    outputs.push(format!("{:?}", c.get_order(ids[0]).await));
    outputs.push(format!("{:?}", c.cancel_order(ids[0]).await));
    // Errors of several kinds.
    // Until the simulator's 1/s burst 7 answers 429 (the client's limiter is more generous).
    for _ in 0..30 {
        let r = c.search(&SearchQuery::new()).await;
        let limited = matches!(r, Err(wmslink_wms_client::WmsError::RateLimited { .. }));
        outputs.push(format!("{r:?}"));
        if limited {
            break;
        }
    }
    sim.state()
        .set_faults(
            &key,
            Faults {
                apply_then_delay_ms: 2_000,
                ..Faults::default()
            },
        )
        .unwrap();
    let impatient = client_with(
        &sim.base_url(),
        &key,
        &WmsClientConfig {
            request_timeout_ms: 200,
            ..config()
        },
        limiter.clone(),
    );
    // (The shared limiter waits out the 429's Retry-After by itself.)
    outputs.push(format!(
        "{:?}",
        impatient.register_batch(&rows("LOG-T", 1)).await
    ));
    let wrong = client_with(&sim.base_url(), &wrong_key, &config(), limiter.clone());
    outputs.push(format!("{:?}", wrong.search(&SearchQuery::new()).await));
    outputs.push(format!(
        "{:?}",
        check_connection(
            &sim.base_url(),
            SecretString::from(wrong_key.clone()),
            &config(),
            limiter.clone()
        )
        .await
    ));
    let refused = WmsClient::new(
        &sim.base_url().replace("http://", "https://"),
        SecretString::from(key.clone()),
        &config(),
        limiter,
    )
    .unwrap();
    outputs.push(format!("{:?}", refused.search(&SearchQuery::new()).await));
    drop(_guard);

    let logs = capture.contents();
    assert!(
        logs.contains("wms_call"),
        "the client's spans were captured"
    );
    assert!(
        logs.contains("\"outcome\":\"rate_limited\""),
        "a 429 was logged"
    );
    assert!(
        logs.contains("\"outcome\":\"unknown_outcome\""),
        "the timeout was logged"
    );
    assert!(logs.contains("\"outcome\":\"unauthorized\""));
    assert!(logs.lines().count() > 10);
    for secret in [&key, &wrong_key] {
        assert!(
            !logs.contains(secret.as_str()),
            "an access key leaked into the logs"
        );
        for out in &outputs {
            assert!(
                !out.contains(secret.as_str()),
                "an access key leaked into {out}"
            );
        }
    }
}
