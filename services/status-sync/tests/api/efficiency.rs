//! Polling done well: bulk calls only, nothing outside the sync period, the per-key budget
//! shared with every other client of the key, and a 429 honoured.

use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use wmslink_wms_client::{
    PgRateLimiter, RateLimitConfig, RateLimiter, SearchQuery, WmsClient, WmsError,
};
use wmslink_wms_simulator::{SimConfig, SimRateLimit};

use crate::helpers::*;

#[tokio::test]
async fn wms_calls_for_n_open_shipments_stay_within_n_over_100_plus_a_constant() {
    const N: usize = 250;
    let bound = N.div_ceil(100) as u64 + 2;
    let app = spawn_app().await;
    let shop = app.add_shop().await;
    app.sent_orders(&shop, &orders("BULK", N, days_ago(3)))
        .await;

    let before = app.searches(&shop);
    let first = app.run_sync(&shop).await;
    let used = app.searches(&shop) - before;
    assert_eq!(first.outcome, "succeeded", "{first:?}");
    assert_eq!(
        (first.asked as usize, first.changed as usize),
        (N, N),
        "{first:?}"
    );
    assert_eq!(
        u64::from(first.wms_calls),
        used,
        "the run counts what the WMS received"
    );
    assert!(
        used <= bound,
        "{used} calls for {N} shipments (bound {bound})"
    );
    assert_eq!(app.observed(&shop).await.len(), N);

    // A full pass when nothing changed: still bulk, and nothing published.
    let before = app.searches(&shop);
    let second = app.run_sync(&shop).await;
    let used = app.searches(&shop) - before;
    assert_eq!(
        (second.asked as usize, second.changed),
        (N, 0),
        "{second:?}"
    );
    assert!(
        used <= bound,
        "{used} calls for {N} shipments (bound {bound})"
    );
    assert_eq!(app.observed(&shop).await.len(), N);

    // An explicit period asks by order_no only: exactly ceil(N/100) calls.
    let before = app.searches(&shop);
    let period = app
        .run_sync_request(wmslink_proto::sync::v1::RunSyncRequest {
            shop_id: shop.id.clone(),
            from: timestamp(days_ago(5)),
            to: timestamp(chrono::Utc::now()),
        })
        .await
        .expect("RunSync");
    assert_eq!(period.pass, "period");
    assert_eq!(period.asked as usize, N);
    assert_eq!(app.searches(&shop) - before, N.div_ceil(100) as u64);
}

#[tokio::test]
async fn orders_outside_the_sync_period_are_never_asked_about() {
    let app = spawn_app().await;
    let shop = app.add_shop().await;
    let mut sent = orders("OLD", 150, days_ago(40));
    sent.push(("NEW-1".into(), days_ago(2)));
    let ids = app.sent_orders(&shop, &sent).await;

    let first = app.run_sync(&shop).await;
    assert_eq!((first.asked, first.changed), (1, 1), "{first:?}");
    for order_no in ["OLD-0001", "NEW-1"] {
        app.patch_order(&shop, ids[order_no], serde_json::json!({ "status_id": 20 }))
            .await;
    }
    let before = app.searches(&shop);
    let second = app.run_sync(&shop).await;
    // One update_date search and at most one order_no-in (for NEW-1, unless the search
    // returned it): asking for the 150 old ones would take two more.
    assert!(app.searches(&shop) - before <= 2, "{second:?}");
    assert_eq!((second.asked, second.changed), (1, 1), "{second:?}");
    let events = app.observed_by_order(&shop).await;
    assert_eq!(
        events.keys().collect::<Vec<_>>(),
        vec!["NEW-1"],
        "{events:?}"
    );
}

#[tokio::test]
async fn the_shared_rate_limit_holds_while_another_client_draws_from_the_same_bucket() {
    // The simulator enforces 5 requests/s with a burst of 5 on this key; status-sync and the
    // "other service" both take their calls from one PostgreSQL bucket with that budget.
    let budget = RateLimitConfig::new(5.0, 5);
    let app = spawn_app_with(SimConfig::for_tests(), |config| {
        config.rate_limit.requests_per_second = budget.requests_per_second;
        config.rate_limit.burst = budget.burst;
        config.rate_limit.reserve = budget.reserve;
    })
    .await;
    let shop = app.add_shop_with(Some(SimRateLimit::new(5.0, 5))).await;
    let shared: Arc<dyn RateLimiter> = Arc::new(
        PgRateLimiter::connect(app.rate_limit_db.pool.clone(), budget)
            .await
            .expect("shared limiter"),
    );
    let other = WmsClient::new(
        &app.sim.base_url(),
        SecretString::from(shop.key.clone()),
        &wms_test_config(),
        shared,
    )
    .expect("client");
    let sent = orders("RL", 150, days_ago(1));
    let ids = register_in_wms(&other, &sent).await;
    for (order_no, date) in &sent {
        app.shipment(
            &shop,
            order_no,
            ids[order_no],
            wmslink_proto::orders::v1::ShippingStatus::Sent,
            1,
            *date,
        )
        .await;
    }
    app.wait_for_watch_list(&shop, sent.len()).await;

    let started = Instant::now();
    let searches = (0..12).map(|_| {
        let other = other.clone();
        tokio::spawn(async move { other.search(&SearchQuery::new().limit(1)).await })
    });
    let searches: Vec<_> = searches.collect();
    let run = app.run_sync(&shop).await;
    let mut refused = Vec::new();
    for search in searches {
        if let Err(err) = search.await.expect("task") {
            refused.push(err);
        }
    }
    let elapsed = started.elapsed();

    assert!(
        refused.is_empty(),
        "the other client was refused: {refused:?}"
    );
    assert_eq!(
        (run.outcome.as_str(), run.errors),
        ("succeeded", 0),
        "{run:?}"
    );
    assert_eq!(app.counters(&shop).rate_limited, 0, "no 429 from the WMS");
    // 12 + the run's calls through a bucket of 4 (burst minus reserve) refilled at 5/s.
    let calls = 12 + u64::from(run.wms_calls);
    let least = Duration::from_millis((calls.saturating_sub(5)) * 200);
    assert!(
        elapsed >= least,
        "{calls} calls in {elapsed:?}: the budget was not shared"
    );
}

#[tokio::test]
async fn a_rate_limited_wms_delays_the_pass_by_its_retry_after() {
    let app = spawn_app_with(SimConfig::for_tests(), |config| {
        config.sync.call_attempts = 4;
    })
    .await;
    let shop = app.add_shop_with(Some(SimRateLimit::new(2.0, 8))).await;
    app.sent_orders(&shop, &orders("RA", 250, days_ago(1)))
        .await;

    // Someone else empties the key's budget at the WMS.
    loop {
        match shop.wms.search(&SearchQuery::new().limit(1)).await {
            Err(WmsError::RateLimited { .. }) => break,
            Ok(_) => {}
            Err(err) => panic!("unexpected {err}"),
        }
    }
    let started = Instant::now();
    let run = app.run_sync(&shop).await;
    assert_eq!(run.outcome, "succeeded", "{run:?}");
    assert!(run.errors >= 1, "the 429 is counted: {run:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "Retry-After honoured"
    );
    assert_eq!(app.observed(&shop).await.len(), 250);
}
