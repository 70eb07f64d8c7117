//! The rate limiter against the simulator's limit, and the PostgreSQL-shared bucket.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use wmslink_wms_client::{
    BucketId, InProcessRateLimiter, PgRateLimiter, RateLimitConfig, RateLimiter, SearchQuery,
    WmsClient, WmsError, ensure_schema,
};
use wmslink_wms_simulator::SimRateLimit;

use crate::helpers::*;

/// What the simulator and the clients agree on in these tests: 10/s, burst 5.
fn budget() -> (SimRateLimit, RateLimitConfig) {
    (SimRateLimit::new(10.0, 5), RateLimitConfig::new(10.0, 5))
}

/// Fire `n` searches from each client at once; return (ok, rate-limited) counts.
async fn burst(clients: &[WmsClient], n: usize) -> (usize, usize) {
    let calls = clients.iter().flat_map(|c| {
        (0..n).map(move |_| {
            let c = c.clone();
            async move { c.search(&SearchQuery::new().limit(1)).await }
        })
    });
    let results = join_all(calls).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let limited = results
        .iter()
        .filter(|r| matches!(r, Err(WmsError::RateLimited { .. })))
        .count();
    for r in &results {
        if let Err(e) = r {
            assert!(
                matches!(e, WmsError::RateLimited { .. }),
                "unexpected error {e:?}"
            );
        }
    }
    (ok, limited)
}

#[tokio::test]
async fn an_agreeing_in_process_limiter_provokes_no_429() {
    let (sim_rl, client_rl) = budget();
    let sim = sim().await;
    let key = add_key(&sim, Some(sim_rl));
    let limiter = Arc::new(InProcessRateLimiter::new(client_rl).unwrap());
    let c = client_with(&sim.base_url(), &key, &config(), limiter);
    let start = Instant::now();
    let (ok, limited) = burst(std::slice::from_ref(&c), 20).await;
    assert_eq!((ok, limited), (20, 0));
    assert_eq!(sim.state().counters(&key).unwrap().rate_limited, 0);
    // 4 at once (burst 5 less 1 in reserve), then 10/s: at least 1.6 s for 20.
    assert!(
        start.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn without_a_limiter_the_simulator_answers_429() {
    let sim = sim().await;
    // Burst 5 like the budget, but so slow a refill that timing cannot change the count.
    let key = add_key(&sim, Some(SimRateLimit::new(0.2, 5)));
    let c = client(&sim.base_url(), &key);
    let (ok, limited) = burst(std::slice::from_ref(&c), 12).await;
    assert_eq!(ok, 5, "the burst passes");
    assert_eq!(limited, 7);
    assert_eq!(sim.state().counters(&key).unwrap().rate_limited, 7);
}

async fn second_pool(url: &str) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(5)
        .connect(url)
        .await
        .unwrap()
}

#[tokio::test]
async fn two_clients_sharing_the_postgres_bucket_stay_within_the_budget() {
    let db = wmslink_testkit::TestDb::create().await.unwrap();
    let (sim_rl, client_rl) = budget();
    let sim = sim().await;
    let key = add_key(&sim, Some(sim_rl));
    // Two "services", each with its own pool and limiter, same database and key.
    let a = PgRateLimiter::connect(db.pool.clone(), client_rl)
        .await
        .unwrap();
    let b = PgRateLimiter::connect(second_pool(&db.url).await, client_rl)
        .await
        .unwrap();
    let ca = client_with(&sim.base_url(), &key, &config(), Arc::new(a));
    let cb = client_with(&sim.base_url(), &key, &config(), Arc::new(b));
    let start = Instant::now();
    let (ok, limited) = burst(&[ca, cb], 12).await;
    assert_eq!((ok, limited), (24, 0));
    assert_eq!(sim.state().counters(&key).unwrap().rate_limited, 0);
    assert!(
        start.elapsed() >= Duration::from_millis(1800),
        "{:?}",
        start.elapsed()
    );
    // The bucket row is named by the key's fingerprint, never the key.
    let buckets: Vec<String> = sqlx::query_scalar("SELECT bucket FROM wms_rate_limit_buckets")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(buckets.len(), 1);
    assert!(!buckets[0].contains(&key));
}

#[tokio::test]
async fn two_clients_with_separate_buckets_overrun_the_budget() {
    // The control for the test above: without sharing, the same load provokes 429s.
    let (sim_rl, client_rl) = budget();
    let sim = sim().await;
    let key = add_key(&sim, Some(sim_rl));
    let ca = client_with(
        &sim.base_url(),
        &key,
        &config(),
        Arc::new(InProcessRateLimiter::new(client_rl).unwrap()),
    );
    let cb = client_with(
        &sim.base_url(),
        &key,
        &config(),
        Arc::new(InProcessRateLimiter::new(client_rl).unwrap()),
    );
    let (_, limited) = burst(&[ca, cb], 12).await;
    assert!(limited > 0);
}

#[tokio::test]
async fn postgres_bucket_grants_the_burst_then_the_rate() {
    let db = wmslink_testkit::TestDb::create().await.unwrap();
    // Concurrent schema creation is safe.
    let (r1, r2) = tokio::join!(ensure_schema(&db.pool), ensure_schema(&db.pool));
    r1.unwrap();
    r2.unwrap();
    let cfg = RateLimitConfig {
        requests_per_second: 20.0,
        burst: 5,
        reserve: 0,
    };
    let limiter = PgRateLimiter::new(db.pool.clone(), cfg).unwrap();
    let bucket = BucketId::from_name("t");
    // (midpoint of the call, half its round trip, wait granted)
    let mut calls = Vec::new();
    let t0 = Instant::now();
    for _ in 0..8 {
        let before = t0.elapsed().as_secs_f64() * 1000.0;
        let wait = limiter.reserve(&bucket).await.unwrap();
        let after = t0.elapsed().as_secs_f64() * 1000.0;
        calls.push(((before + after) / 2.0, (after - before) / 2.0, wait));
    }
    let (mid0, half0, _) = calls[0];
    for (k, &(mid, half, wait)) in calls.iter().enumerate() {
        // GCRA: the k-th token (0-based) is due at t0 + (k - 4) x 50 ms, or at once.
        let due = mid0 + 50.0 * (k as f64 - 4.0);
        let expected = (due - mid).max(0.0);
        let got = wait.as_secs_f64() * 1000.0;
        let tolerance = 10.0 + half + half0;
        assert!(
            (got - expected).abs() <= tolerance,
            "token {k}: waited {got:.1} ms, expected {expected:.1} ± {tolerance:.1}"
        );
        if k < 5 {
            assert!(wait.is_zero(), "the burst of 5 passes at once: {calls:?}");
        }
    }
    // Later tokens are due later: the time a token was granted (its call's midpoint plus its
    // wait) grows, whatever one round trip to PostgreSQL took. Comparing the bare waits failed
    // when the 8th call's round trip took 93 ms and so its wait was shorter.
    let granted = |k: usize| calls[k].0 + calls[k].2.as_secs_f64() * 1000.0;
    assert!(
        granted(7) > granted(6),
        "later tokens are due later: {calls:?}"
    );
    // Another bucket is independent.
    assert!(
        limiter
            .reserve(&BucketId::from_name("u"))
            .await
            .unwrap()
            .is_zero()
    );
    // A 429 pushes the bucket back by the Retry-After.
    limiter
        .defer(&BucketId::from_name("u"), Duration::from_secs(2))
        .await
        .unwrap();
    let w = limiter.reserve(&BucketId::from_name("u")).await.unwrap();
    assert!(w >= Duration::from_millis(1900), "{w:?}");
}

#[tokio::test]
async fn a_limiter_failure_sends_nothing() {
    let db = wmslink_testkit::TestDb::create().await.unwrap();
    let sim = sim().await;
    let key = add_key(&sim, None);
    // No ensure_schema: the table is missing, so the limiter fails.
    let limiter = PgRateLimiter::new(db.pool.clone(), RateLimitConfig::default()).unwrap();
    let c = client_with(&sim.base_url(), &key, &config(), Arc::new(limiter));
    let err = c.search(&SearchQuery::new()).await.unwrap_err();
    assert!(matches!(err, WmsError::Limiter(_)), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(requests(&sim, &key, "search"), 0);
    // The connection check goes on without the limiter.
    let report = c.check_connection().await;
    assert_eq!(report.status, wmslink_wms_client::ConnectionStatus::Ok);
    let _: &dyn RateLimiter =
        &PgRateLimiter::new(db.pool.clone(), RateLimitConfig::default()).unwrap();
}
