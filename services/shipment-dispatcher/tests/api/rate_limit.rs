//! The WMS rate limit belongs to the access key: the dispatcher and every other caller of the
//! key draw from one PostgreSQL-shared budget, so the WMS never has to refuse; and when it
//! does (429), orders wait in the queue and `Retry-After` is honoured.

use std::sync::Arc;
use std::time::Instant;

use secrecy::SecretString;
use wmslink_proto::orders::v1::ShippingStatus;
use wmslink_testkit::eventually;
use wmslink_wms_client::{PgRateLimiter, RateLimitConfig, SearchQuery, WmsClient, WmsClientConfig};

use crate::helpers::*;

#[tokio::test]
async fn the_shared_limiter_keeps_every_caller_of_a_key_within_its_budget() {
    let app = spawn_app_with(|config| {
        config.sender.batch_size = 1;
        config.rate_limit.requests_per_second = 10.0;
        config.rate_limit.burst = 3;
        config.rate_limit.reserve = 1;
    })
    .await;
    let shop = app.shop().await;
    // The WMS enforces the same budget (a fresh bucket, after the connection check).
    app.limit_key(&shop, 10.0, 3);

    // Another service (status-sync, say) searching with the same key, through the same table.
    let limiter_pool = sqlx::PgPool::connect(&app.db.url)
        .await
        .expect("limiter pool");
    let limiter = PgRateLimiter::connect(limiter_pool, RateLimitConfig::new(10.0, 3))
        .await
        .expect("limiter");
    let other = WmsClient::new(
        &app.sim.base_url(),
        SecretString::from(shop.key.clone()),
        &WmsClientConfig {
            allow_http_hosts: vec!["127.0.0.1".into()],
            // The simulator listens on loopback.
            refuse_private_addresses: false,
            ..WmsClientConfig::default()
        },
        Arc::new(limiter),
    )
    .expect("client");

    let started = Instant::now();
    let numbers: Vec<String> = (0..12).map(|_| unique_order_no()).collect();
    let searches = tokio::spawn(async move {
        for _ in 0..8 {
            other
                .search(&SearchQuery::new().limit(1))
                .await
                .expect("search within budget");
        }
    });
    for no in &numbers {
        app.status_changed(&order(&shop, no, "paid", 1)).await;
    }
    searches.await.expect("searches");
    app.wait_for_all(&shop, &numbers, ShippingStatus::Sent)
        .await;
    let counters = app.counters(&shop);
    assert_eq!(
        counters.rate_limited, 0,
        "the WMS never had to refuse: {counters:?}"
    );
    assert_eq!(counters.registrations_accepted, 12);
    let calls: u64 = counters.requests.values().sum();
    assert!(calls >= 20, "{counters:?}");
    // 20 calls at 10/s with a burst of 2 cannot take less than ~1.8 s.
    assert!(
        started.elapsed().as_millis() >= 1_700,
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_wms_that_answers_429_is_waited_for_and_nothing_goes_to_error() {
    let app = spawn_app_with(|config| config.sender.batch_size = 1).await;
    let shop = app.shop().await;
    // The WMS is stricter than our (generous) limiter believes.
    app.limit_key(&shop, 2.0, 1);
    let numbers = app.publish_orders(&shop, 5, "paid").await;
    eventually(WAIT, "a 429", || async {
        (app.counters(&shop).rate_limited > 0).then_some(())
    })
    .await;
    let mut rate_limited_history = false;
    for no in &numbers {
        let (_, history) = app.wait_for(&shop, no, ShippingStatus::Sent).await;
        assert!(
            !transitions(&history).iter().any(|(_, to)| to == "ERROR"),
            "{history:?}"
        );
        rate_limited_history |= history_has(&history, "rate limit");
    }
    assert!(rate_limited_history, "a 429 shows in some history");
    let counters = app.counters(&shop);
    assert_eq!(counters.registrations_accepted, 5);
    assert_eq!(counters.duplicates_refused, 0);
}
