//! E3 `RunSync` and `GetSyncRuns`, scopes, failures, and the scheduler (E1) keeping shops apart.

use std::time::Duration;

use serde_json::json;
use tonic::Code;
use wmslink_proto::settings::v1 as settings_pb;
use wmslink_proto::sync::v1 as pb;
use wmslink_testkit::eventually;
use wmslink_wms_simulator::SimConfig;

use crate::helpers::*;

#[tokio::test]
async fn run_sync_with_an_explicit_period_asks_for_the_orders_dated_in_it() {
    let app = spawn_app().await;
    let shop = app.add_shop().await;
    app.sent_orders(
        &shop,
        &[
            ("P-OLD".into(), days_ago(10)),
            ("P-MID".into(), days_ago(4)),
            (
                "P-NEW".into(),
                chrono::Utc::now() - chrono::Duration::hours(2),
            ),
        ],
    )
    .await;
    let (from, to) = (days_ago(5), days_ago(0) - chrono::Duration::hours(12));
    let before = app.searches(&shop);
    let run = app
        .run_sync_request(pb::RunSyncRequest {
            shop_id: shop.id.clone(),
            from: timestamp(from),
            to: timestamp(to),
        })
        .await
        .expect("RunSync");
    assert_eq!(
        (
            run.pass.as_str(),
            run.trigger.as_str(),
            run.outcome.as_str()
        ),
        ("period", "manual", "succeeded")
    );
    assert_eq!(
        (run.asked, run.changed, run.wms_calls),
        (1, 1, 1),
        "{run:?}"
    );
    assert_eq!(app.searches(&shop) - before, 1);
    assert_eq!(run.period_from.map(|t| t.seconds), Some(from.timestamp()));
    assert_eq!(run.period_to.map(|t| t.seconds), Some(to.timestamp()));
    let events = app.observed_by_order(&shop).await;
    assert_eq!(events.keys().collect::<Vec<_>>(), vec!["P-MID"]);

    // Bad periods are refused with the field.
    let refused = app
        .run_sync_request(pb::RunSyncRequest {
            shop_id: shop.id.clone(),
            from: timestamp(to),
            to: timestamp(from),
        })
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        wmslink_platform::validation::violations_of(&refused)
            .into_iter()
            .map(|(field, _)| field)
            .collect::<Vec<_>>(),
        vec!["to"]
    );
}

#[tokio::test]
async fn get_sync_runs_lists_recent_runs_with_their_counts() {
    let app = spawn_app().await;
    let shop = app.add_shop().await;
    let ids = app.sent_orders(&shop, &[("G-1".into(), days_ago(1))]).await;
    let first = app.run_sync(&shop).await;
    app.patch_order(&shop, ids["G-1"], json!({ "status_id": 20 }))
        .await;
    let second = app.run_sync(&shop).await;

    let runs = app.runs(&shop).await;
    assert_eq!(
        runs,
        vec![second.clone(), first.clone()],
        "newest first, as answered"
    );
    assert_eq!((first.asked, first.changed, first.anomalies), (1, 1, 0));
    assert_eq!((second.asked, second.changed), (1, 1));
    for run in &runs {
        assert_eq!(run.shop_id, shop.id);
        assert_eq!(
            (run.trigger.as_str(), run.pass.as_str()),
            ("manual", "full")
        );
        assert!(
            run.finished_at.expect("finished").seconds >= run.started_at.expect("started").seconds
        );
        assert!(run.wms_calls >= 1 && run.errors == 0 && run.last_error.is_empty());
        // The sync period of the shop's settings.
        let period =
            run.started_at.expect("started").seconds - run.period_from.expect("from").seconds;
        assert!(
            (period - i64::from(SYNC_PERIOD_DAYS) * 86_400).abs() <= 1,
            "{run:?}"
        );
    }
    // Another shop's runs are not listed.
    let other = app.add_shop().await;
    assert!(app.runs(&other).await.is_empty());
}

#[tokio::test]
async fn scopes_tokens_and_shops_are_checked() {
    let app = spawn_app().await;
    let shop = app.add_shop().await;
    let request = || pb::RunSyncRequest {
        shop_id: shop.id.clone(),
        from: None,
        to: None,
    };

    let denied = app
        .reader
        .clone()
        .run_sync(request())
        .await
        .expect_err("denied");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let anonymous = sync_client(app.sync.addr, "not-a-token")
        .run_sync(request())
        .await
        .expect_err("unauthenticated");
    assert_eq!(anonymous.code(), Code::Unauthenticated);

    let unknown = app
        .run_sync_request(pb::RunSyncRequest {
            shop_id: "no-such-shop".into(),
            from: None,
            to: None,
        })
        .await
        .expect_err("unknown shop");
    assert_eq!(unknown.code(), Code::NotFound);

    // R6: a disabled shop is never touched.
    let mut settings = app.settings_client();
    let version = settings
        .get_settings(settings_pb::GetSettingsRequest {
            shop_id: shop.id.clone(),
        })
        .await
        .expect("settings")
        .into_inner()
        .settings
        .expect("settings")
        .version;
    settings
        .set_enabled(settings_pb::SetEnabledRequest {
            shop_id: shop.id.clone(),
            enabled: false,
            expected_version: version,
        })
        .await
        .expect("disabled");
    // The settings-change event drops the cached settings.
    eventually(WAIT, "the disabled shop to be refused", || async {
        app.run_sync_request(request()).await.err()
    })
    .await;
    let before = app.searches(&shop);
    let refused = app.run_sync_request(request()).await.expect_err("refused");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("not synced"), "{refused:?}");
    assert_eq!(
        app.searches(&shop),
        before,
        "no WMS call for a disabled shop"
    );
}

#[tokio::test]
async fn a_failing_wms_is_recorded_and_a_later_run_succeeds() {
    let app = spawn_app().await;
    let shop = app.add_shop().await;
    app.sent_orders(&shop, &[("F-1".into(), days_ago(1))]).await;
    app.faults(
        &shop,
        Some(json!({ "error_500_ratio": 1.0, "endpoints": ["search"] })),
    )
    .await;

    let failed = app.run_sync(&shop).await;
    assert_eq!(failed.outcome, "failed", "{failed:?}");
    assert_eq!(
        (failed.errors, failed.wms_calls),
        (2, 2),
        "two attempts: {failed:?}"
    );
    assert!(failed.last_error.contains("500"), "{}", failed.last_error);
    assert_eq!(failed.changed, 0);

    app.faults(&shop, None).await;
    let later = app.run_sync(&shop).await;
    assert_eq!(
        (later.outcome.as_str(), later.errors),
        ("succeeded", 0),
        "{later:?}"
    );
    assert_eq!(later.changed, 1);
    let runs = app.runs(&shop).await;
    assert_eq!(
        runs.iter().map(|r| r.outcome.as_str()).collect::<Vec<_>>(),
        vec!["succeeded", "failed"]
    );
    assert_eq!(app.observed(&shop).await.len(), 1);
}

#[tokio::test]
async fn scheduled_passes_keep_one_failing_shop_from_holding_up_another() {
    let app = spawn_app_with(SimConfig::for_tests(), |config| {
        config.sync.scheduled = true;
        config.sync.interval_ms = 1_000;
        config.sync.full_pass_every = 1;
    })
    .await;
    let slow = app.add_shop().await;
    let good = app.add_shop().await;
    app.sent_orders(&slow, &[("SLOW-1".into(), days_ago(1))])
        .await;
    let ids = app
        .sent_orders(&good, &[("GOOD-1".into(), days_ago(1))])
        .await;
    // Every search of the slow shop hangs 4 s, then fails.
    app.faults(
        &slow,
        Some(json!({ "error_500_ratio": 1.0, "latency_ms": 4000, "endpoints": ["search"] })),
    )
    .await;

    // The scheduler syncs the good shop by itself (E1)…
    eventually(WAIT, "GOOD-1 observed by a scheduled pass", || async {
        app.observed_by_order(&good).await.get("GOOD-1").map(|_| ())
    })
    .await;
    // …and goes on doing so while a pass of the slow shop is stuck on its WMS.
    eventually(WAIT, "a pass of the slow shop in progress", || async {
        let runs = app.runs(&slow).await;
        runs.first()
            .filter(|run| run.outcome == "running")
            .map(|_| ())
    })
    .await;
    app.patch_order(&good, ids["GOOD-1"], json!({ "status_id": 20 }))
        .await;
    eventually(
        Duration::from_secs(5),
        "GOOD-1 processing while the slow shop waits",
        || async {
            let events = app.observed_by_order(&good).await;
            events["GOOD-1"]
                .iter()
                .any(|e| e.status_id == 20)
                .then_some(())
        },
    )
    .await;

    // The slow shop's pass fails, is recorded, and is tried again later.
    let failed = eventually(
        Duration::from_secs(30),
        "a failed pass of the slow shop",
        || async {
            app.runs(&slow)
                .await
                .into_iter()
                .find(|run| run.outcome == "failed")
        },
    )
    .await;
    assert_eq!(failed.trigger, "scheduled");
    assert!(
        failed.errors >= 1 && failed.last_error.contains("500"),
        "{failed:?}"
    );
    let good_runs = app.runs(&good).await;
    assert!(
        good_runs
            .iter()
            .filter(|r| r.outcome == "succeeded")
            .count()
            >= 2,
        "{good_runs:?}"
    );
}

#[tokio::test]
async fn a_pass_interrupted_by_a_shutdown_is_simply_done_again() {
    let mut app = spawn_app().await;
    let shop = app.add_shop().await;
    app.sent_orders(&shop, &orders("INT", 3, days_ago(1))).await;
    app.faults(
        &shop,
        Some(json!({ "latency_ms": 3000, "endpoints": ["search"] })),
    )
    .await;

    let operator = app.operator.clone();
    let request = pb::RunSyncRequest {
        shop_id: shop.id.clone(),
        from: None,
        to: None,
    };
    let pending = tokio::spawn(async move { operator.clone().run_sync(request).await });
    eventually(WAIT, "the pass to be under way", || async {
        let runs = app.runs(&shop).await;
        runs.first()
            .filter(|run| run.outcome == "running")
            .map(|_| ())
    })
    .await;
    app.restart_sync().await;
    let interrupted = pending
        .await
        .expect("task")
        .expect("answered before stopping")
        .into_inner()
        .run
        .expect("run");
    assert_eq!(interrupted.outcome, "failed");
    assert!(
        interrupted.last_error.contains("interrupted"),
        "{interrupted:?}"
    );

    app.faults(&shop, None).await;
    let again = app.run_sync(&shop).await;
    assert_eq!(
        (again.outcome.as_str(), again.changed),
        ("succeeded", 3),
        "{again:?}"
    );
    let events = app.observed_by_order(&shop).await;
    assert_eq!(events.len(), 3);
    assert!(
        events.values().all(|e| e.len() == 1),
        "each published once: {events:?}"
    );
}

#[tokio::test]
async fn one_runner_per_shop_and_a_crashed_runner_is_recovered_from() {
    let app = spawn_app_with(SimConfig::for_tests(), |config| {
        config.sync.manual_wait_ms = 1_000;
    })
    .await;
    let shop = app.add_shop().await;
    app.sent_orders(&shop, &[("L-1".into(), days_ago(1))]).await;
    let pool = &app.sync.db.pool;

    // Another replica holds the shop: RunSync waits, then gives up without calling the WMS.
    sqlx::query(
        "INSERT INTO sync_leases (shop_id, holder, expires_at)
         VALUES ($1, 'other-replica', now() + interval '1 minute')",
    )
    .bind(&shop.id)
    .execute(pool)
    .await
    .expect("lease");
    let before = app.searches(&shop);
    let busy = app
        .run_sync_request(pb::RunSyncRequest {
            shop_id: shop.id.clone(),
            from: None,
            to: None,
        })
        .await
        .expect_err("busy");
    assert_eq!(busy.code(), Code::Aborted, "{busy:?}");
    assert_eq!(app.searches(&shop), before, "no WMS call");

    // That replica died mid-pass: its lease expires and its run is closed as interrupted.
    let dead_run = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO sync_runs (run_id, shop_id, trigger, pass, period_from, started_at)
         VALUES ($1, $2, 'scheduled', 'full', now() - interval '30 days', now() - interval '2 minutes')",
    )
    .bind(dead_run)
    .bind(&shop.id)
    .execute(pool)
    .await
    .expect("run");
    sqlx::query(
        "UPDATE sync_leases SET expires_at = now() - interval '1 second' WHERE shop_id = $1",
    )
    .bind(&shop.id)
    .execute(pool)
    .await
    .expect("expire");
    let run = app.run_sync(&shop).await;
    assert_eq!(
        (run.outcome.as_str(), run.changed),
        ("succeeded", 1),
        "{run:?}"
    );
    let runs = app.runs(&shop).await;
    let dead = runs
        .iter()
        .find(|r| r.run_id == dead_run.to_string())
        .expect("the dead run is listed");
    assert_eq!(
        (dead.outcome.as_str(), dead.last_error.as_str()),
        ("failed", "interrupted")
    );
    let leases: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_leases WHERE shop_id = $1")
        .bind(&shop.id)
        .fetch_one(pool)
        .await
        .expect("count");
    assert_eq!(leases, 0, "released after the run");
}
