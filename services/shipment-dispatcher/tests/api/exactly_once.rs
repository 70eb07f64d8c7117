//! I1: exactly one registration, whatever is redelivered, reordered, crashed or timed out.

use std::sync::Arc;

use secrecy::SecretString;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};
use wmslink_platform::nats::StreamKind;
use wmslink_proto::orders::v1::ShippingStatus;

use wmslink_testkit::eventually;
use wmslink_wms_client::commerce_robo::build_row;
use wmslink_wms_client::{Unlimited, WmsClient, WmsClientConfig};
use wmslink_wms_simulator::{Endpoint, Faults};

use crate::helpers::*;

#[tokio::test]
async fn redelivered_and_repeated_events_register_once() {
    let mut app = spawn_app().await;
    let shop = app.shop().await;
    let no = unique_order_no();
    let event = order(&shop, &no, "paid", 1);
    // The same event under one message id twice (JetStream dedup), and republished under
    // other ids (as a producer retrying after a lost publish ack would).
    app.status_changed_with_id(&event, "evt-1").await;
    app.status_changed_with_id(&event, "evt-1").await;
    for i in 2..=4 {
        app.status_changed_with_id(&event, &format!("evt-{i}"))
            .await;
    }
    let (_, history) = app.wait_for(&shop, &no, ShippingStatus::Sent).await;
    let processed = eventually(WAIT, "all four messages processed", || async {
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM processed_messages WHERE msg_id LIKE '% evt-%'",
        )
        .fetch_one(&app.db.pool)
        .await
        .expect("count");
        (count == 4).then_some(count)
    })
    .await;
    assert_eq!(processed, 4);
    assert_eq!(transitions(&history), sent_at_first_attempt());

    // A real redelivery: the dispatcher dies, its consumers are reset, and every message of
    // the stream comes again under its original id.
    app.crash().await;
    let stream = app
        .nats
        .js
        .get_stream(app.nats.subjects.stream_name(StreamKind::Orders))
        .await
        .expect("stream");
    for durable in [
        "shipment-dispatcher-status-changed",
        "shipment-dispatcher-updated",
    ] {
        stream
            .delete_consumer(durable)
            .await
            .expect("consumer deleted");
    }
    app.start().await;
    eventually(WAIT, "the stream consumed again", || async {
        let mut consumer = stream
            .get_consumer::<async_nats::jetstream::consumer::pull::Config>(
                "shipment-dispatcher-status-changed",
            )
            .await
            .ok()?;
        let info = consumer.info().await.ok()?;
        (info.num_pending == 0
            && info.num_ack_pending == 0
            && info.delivered.consumer_sequence >= 4)
            .then_some(())
    })
    .await;
    let (shipment, again) = app.get(&shop, &no).await.expect("shipment");
    assert_eq!(shipment.shipping_status(), ShippingStatus::Sent);
    assert_eq!(
        again.len(),
        history.len(),
        "nothing happened twice: {again:?}"
    );
    let counters = app.counters(&shop);
    assert_eq!(counters.registrations_accepted, 1);
    assert_eq!(counters.duplicates_refused, 0);
}

#[tokio::test]
async fn reordered_revisions_send_the_latest_snapshot_once() {
    let app = spawn_app().await;
    let shop = app.shop().await;

    // Revision 3 (left the target status, new content) overtakes revision 2 (target status):
    // the order did reach a target status, and what goes out is the newest content.
    let no = unique_order_no();
    let mut newest = order(&shop, &no, "new", 3);
    newest.note = "revision 3".into();
    let mut older = order(&shop, &no, "paid", 2);
    older.note = "revision 2".into();
    app.status_changed(&newest).await;
    app.wait_for(&shop, &no, ShippingStatus::NotSent).await;
    app.status_changed(&older).await;
    let (shipment, _) = app.wait_for(&shop, &no, ShippingStatus::Sent).await;
    assert_eq!(shipment.order_revision, 3);
    assert_eq!(shipment.sent_revision, 3);
    assert!(!shipment.edited_after_sending);
    let (_, row) = app.wms_row(&shop, &no);
    assert_eq!(row["note"], "revision 3");

    // While queued (shop disabled), a later edit replaces the snapshot; an older one arriving
    // afterwards does not.
    let shop2 = app.shop_with(full_detail(), false).await;
    let no2 = unique_order_no();
    let mut v5 = order(&shop2, &no2, "paid", 5);
    v5.note = "revision 5".into();
    let mut v4 = order(&shop2, &no2, "paid", 4);
    v4.note = "revision 4".into();
    app.status_changed(&v5).await;
    app.updated(&v4).await;
    app.wait_until(&shop2, &no2, "revision 5 stored", |s| s.order_revision == 5)
        .await;
    eventually(WAIT, "both events processed", || async {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM processed_messages")
            .fetch_one(&app.db.pool)
            .await
            .expect("count");
        (count >= 4).then_some(())
    })
    .await;
    app.set_enabled(&shop2, true).await;
    let (shipment, _) = app.wait_for(&shop2, &no2, ShippingStatus::Sent).await;
    assert_eq!(shipment.sent_revision, 5);
    let (_, row) = app.wms_row(&shop2, &no2);
    assert_eq!(row["note"], "revision 5");
    assert_eq!(app.counters(&shop).registrations_accepted, 1);
    assert_eq!(app.counters(&shop2).registrations_accepted, 1);
}

#[tokio::test]
async fn a_registration_applied_whose_answer_times_out_is_adopted_not_resent() {
    let app = spawn_app_with(|config| {
        config.wms.request_timeout_ms = 1_000;
        config.sender.sweep_on_settings_change = true;
    })
    .await;
    let shop = app.shop_with(full_detail(), false).await;
    app.fault(
        &shop,
        Endpoint::Register,
        Faults {
            apply_then_delay_ms: 3_000,
            ..Faults::default()
        },
    );
    let numbers = app.publish_orders(&shop, 5, "paid").await;
    app.wait_for_all(&shop, &numbers, ShippingStatus::NotSent)
        .await;
    app.set_enabled(&shop, true).await;

    for no in &numbers {
        let (shipment, history) = app.wait_for(&shop, no, ShippingStatus::Sent).await;
        let (wms, _) = app.wms_row(&shop, no);
        assert_eq!(shipment.wms_order_id, wms.order_id);
        assert!(
            history_has(&history, "the outcome is unknown"),
            "{history:?}"
        );
        assert_eq!(app.rows_received(&shop, no), 1, "{no} sent exactly once");
        assert!(history_has(&history, "order_no-in"), "{history:?}");
    }
    let counters = app.counters(&shop);
    assert_eq!(counters.faults_delayed, 1);
    assert_eq!(counters.registrations_accepted, 5);
    assert_eq!(counters.duplicates_refused, 0, "never sent blindly again");
    assert_eq!(counters.requests.get("register").copied(), Some(1));
}

#[tokio::test]
async fn a_crash_in_sending_after_the_wms_applied_is_reconciled_on_restart() {
    let mut app = spawn_app_with(|config| {
        // The answer is held back longer than the test runs: the crash comes first.
        config.wms.request_timeout_ms = 5_000;
        // The drain outlasts a WMS call (checked when the config is validated).
        config.runtime.drain_timeout_ms = 6_000;
    })
    .await;
    let shop = app.shop_with(full_detail(), false).await;
    app.fault(
        &shop,
        Endpoint::Register,
        Faults {
            apply_then_delay_ms: 30_000,
            ..Faults::default()
        },
    );
    let numbers = app.publish_orders(&shop, 3, "paid").await;
    app.wait_for_all(&shop, &numbers, ShippingStatus::NotSent)
        .await;
    app.set_enabled(&shop, true).await;
    app.wait_for_all(&shop, &numbers, ShippingStatus::Sending)
        .await;
    eventually(WAIT, "the WMS applied the batch", || async {
        (app.counters(&shop).registrations_accepted == 3).then_some(())
    })
    .await;

    // kill -9 while the answer is outstanding.
    app.crash().await;
    for no in &numbers {
        let row = wmslink_shipment_dispatcher::store::get(&app.db.pool, &shop.id, no)
            .await
            .expect("db")
            .expect("row");
        assert_eq!(row.status.as_str(), "SENDING", "in doubt after the crash");
    }
    app.clear_faults(&shop);
    app.start().await;

    for no in &numbers {
        let (shipment, history) = app.wait_for(&shop, no, ShippingStatus::Sent).await;
        let (wms, _) = app.wms_row(&shop, no);
        assert_eq!(shipment.wms_order_id, wms.order_id);
        assert!(history_has(&history, "in doubt"), "{history:?}");
    }
    let counters = app.counters(&shop);
    assert_eq!(
        counters.registrations_accepted, 3,
        "exactly one registration each"
    );
    assert_eq!(counters.duplicates_refused, 0, "never sent blindly again");
    assert_eq!(counters.requests.get("register").copied(), Some(1));
    for no in &numbers {
        assert_eq!(app.rows_received(&shop, no), 1, "{no} sent exactly once");
    }
}

/// After a crash mid-call nobody knows whether the WMS got the request (here it finishes
/// the write after the client is gone): the shipment is searched only once the call would
/// surely be over, found, and never sent again. (A call never applied ends in ERROR after
/// the bounded searches: `in_doubt::an_unknown_outcome_never_found_...`.)
#[tokio::test]
async fn a_crash_mid_call_the_wms_applies_later_is_found_on_restart_not_resent() {
    let mut app = spawn_app_with(|config| {
        config.wms.request_timeout_ms = 3_000;
        // The drain outlasts a WMS call (checked when the config is validated).
        config.runtime.drain_timeout_ms = 4_000;
    })
    .await;
    let shop = app.shop().await;
    app.fault(
        &shop,
        Endpoint::Register,
        Faults {
            latency_ms: 2_500,
            ..Faults::default()
        },
    );
    let no = unique_order_no();
    app.status_changed(&order(&shop, &no, "paid", 1)).await;
    app.wait_for(&shop, &no, ShippingStatus::Sending).await;
    eventually(WAIT, "the call reached the WMS", || async {
        (app.register_calls(&shop) == 1).then_some(())
    })
    .await;
    app.crash().await;
    assert_eq!(app.counters(&shop).registrations_accepted, 0);
    app.clear_faults(&shop);
    app.start().await;

    let (shipment, history) = app.wait_for(&shop, &no, ShippingStatus::Sent).await;
    assert!(
        history_has(&history, "adopted without sending again"),
        "{history:?}"
    );
    let (wms, _) = app.wms_row(&shop, &no);
    assert_eq!(shipment.wms_order_id, wms.order_id);
    assert!(
        !shipment.registered_outside_wmslink,
        "wmslink's own registration, found by a search, is not flagged"
    );
    assert_eq!(app.rows_received(&shop, &no), 1, "sent exactly once");
    assert_eq!(app.counters(&shop).registrations_accepted, 1);
}

#[tokio::test]
async fn an_order_the_wms_already_has_is_adopted_on_e_duplicate() {
    let app = spawn_app().await;
    let shop = app.shop().await;
    let no = unique_order_no();
    let snapshot = order(&shop, &no, "paid", 1);
    // Someone registered it already (say, a CSV import).
    let mut detail = full_detail();
    detail.endpoint_url = app.sim.base_url();
    let row = build_row(&snapshot, &detail).expect("row");
    let client = WmsClient::new(
        &app.sim.base_url(),
        SecretString::from(shop.key.clone()),
        &WmsClientConfig {
            allow_http_hosts: vec!["127.0.0.1".into()],
            // The simulator listens on loopback.
            refuse_private_addresses: false,
            ..WmsClientConfig::default()
        },
        Arc::new(Unlimited),
    )
    .expect("client");
    let existing = client.register_batch(&[row]).await.expect("registered")[0]
        .order_id()
        .expect("order id");

    app.status_changed(&snapshot).await;
    let (shipment, history) = app.wait_for(&shop, &no, ShippingStatus::Sent).await;
    assert_eq!(shipment.wms_order_id, existing);
    assert!(
        history
            .iter()
            .any(|h| h.response_summary.starts_with("NG E_DUPLICATE"))
    );
    assert!(history_has(&history, "adopted without sending again"));
    // R5: adopted, and flagged visibly as registered outside wmslink.
    assert!(shipment.registered_outside_wmslink, "{shipment:?}");
    assert!(
        history_has(&history, "registered outside wmslink"),
        "{history:?}"
    );
    let counters = app.counters(&shop);
    assert_eq!(counters.registrations_accepted, 1);
    assert_eq!(counters.duplicates_refused, 1);
}

#[tokio::test]
async fn a_gateway_timeout_on_registration_is_resolved_by_one_search() {
    let app = spawn_app().await;
    let wms = MockServer::start().await;
    let no = unique_order_no();
    // The connection check.
    Mock::given(method("GET"))
        .and(path("/order/search"))
        .and(query_param("limit", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "result": "OK", "data": [], "total": 0, "error": []
        })))
        .mount(&wms)
        .await;
    // The registration: a gateway lost the answer.
    Mock::given(method("POST"))
        .and(path("/order/"))
        .respond_with(ResponseTemplate::new(504))
        .expect(1)
        .mount(&wms)
        .await;
    // The search that follows finds it.
    Mock::given(method("GET"))
        .and(path("/order/search"))
        .and(query_param("order_no-in", no.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "result": "OK",
            "data": [{
                "order_id": 4242, "order_no": no, "status_id": 50, "status_name": "出荷待ち",
                "cancel_flag": 0, "shipped_flag": 0, "shipping_status_id": null,
                "tracking_code": null, "shipping_date": null,
                "update_date": "2026-11-28T10:15:00+09:00"
            }],
            "total": 1,
            "error": []
        })))
        .expect(1)
        .mount(&wms)
        .await;
    let shop = app
        .shop_at(full_detail(), &wms.uri(), "wiremock-key", true)
        .await;

    app.status_changed(&order(&shop, &no, "paid", 1)).await;
    let (shipment, history) = app.wait_for(&shop, &no, ShippingStatus::Sent).await;
    assert_eq!(shipment.wms_order_id, 4242);
    assert_eq!(shipment.wms_status_id, 50);
    assert_eq!(shipment.wms_status_name, "出荷待ち");
    assert!(
        history.iter().any(|h| h.error.contains("504")),
        "{history:?}"
    );
    wms.verify().await;
}

/// Two replicas on one database, eight shops whose WMS answers slowly (0.5 s a call, calls of
/// 2 rows) under the real per-key limit of the WMS (1 per second, burst 60): each replica runs
/// at most four shops at once (`sender.max_parallel_shops`; with the default of 256 one replica
/// could take all eight shops before the other starts), so both work; every order is sent
/// exactly once (counted per order number as the WMS received it).
#[tokio::test]
async fn two_replicas_share_the_work_and_register_each_order_once() {
    let app = spawn_app_with(|config| {
        config.sender.batch_size = 2;
        config.sender.max_parallel_shops = 4;
    })
    .await;
    let _replica = app.replica().await;
    let mut shops = Vec::new();
    for _ in 0..8 {
        let shop = app.shop().await;
        app.limit_key(&shop, 1.0, 60);
        app.fault(
            &shop,
            Endpoint::Register,
            Faults {
                latency_ms: 500,
                ..Faults::default()
            },
        );
        shops.push(shop);
    }
    let mut all = Vec::new();
    for (i, shop) in shops.iter().enumerate() {
        for n in 0..10 {
            let no = unique_order_no();
            let status = if (i + n) % 2 == 0 { "paid" } else { "ready" };
            app.status_changed(&order(shop, &no, status, 1)).await;
            all.push((shop, no));
        }
    }
    let mut replicas = std::collections::BTreeSet::new();
    for (shop, no) in &all {
        let (_, history) = app.wait_for(shop, no, ShippingStatus::Sent).await;
        let claim = history
            .iter()
            .find(|h| h.reason.starts_with("taken for registration by replica "))
            .expect("claimed");
        let replica = claim
            .reason
            .trim_start_matches("taken for registration by replica ")
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_owned();
        replicas.insert(replica);
        assert_eq!(app.rows_received(shop, no), 1, "{no} sent exactly once");
        assert_eq!(app.wms_orders(shop, no).len(), 1, "{no}");
    }
    assert_eq!(replicas.len(), 2, "both replicas worked: {replicas:?}");
    for shop in &shops {
        let counters = app.counters(shop);
        assert_eq!(counters.registrations_accepted, 10);
        assert_eq!(counters.duplicates_refused, 0);
        assert_eq!(
            counters.rate_limited, 0,
            "the shared limiter kept within the WMS limit"
        );
    }
}

#[tokio::test]
async fn first_events_of_one_order_racing_each_other_keep_the_newest_snapshot() {
    let app = spawn_app().await;
    let shop = app.shop_with(full_detail(), false).await;
    let numbers: Vec<String> = (0..40).map(|_| unique_order_no()).collect();
    // Both consumers get their first event of each order at about the same time.
    for no in &numbers {
        let mut newer = order(&shop, no, "paid", 5);
        newer.note = "revision 5".into();
        let mut older = order(&shop, no, "paid", 4);
        older.note = "revision 4".into();
        app.status_changed(&newer).await;
        app.updated(&older).await;
    }
    eventually(WAIT, "all 80 events processed", || async {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM processed_messages")
            .fetch_one(&app.db.pool)
            .await
            .expect("count");
        (count == 80).then_some(())
    })
    .await;
    for no in &numbers {
        let row = wmslink_shipment_dispatcher::store::get(&app.db.pool, &shop.id, no)
            .await
            .expect("db")
            .expect("row");
        assert_eq!(row.order_revision, 5, "{no}");
        let stored =
            wmslink_shipment_dispatcher::snapshot::decode(&row.order_snapshot).expect("snapshot");
        assert_eq!(stored.note, "revision 5", "{no}");
    }
    assert!(app.dead_letters().await.is_empty());
}

/// A graceful stop (SIGTERM) during a registration call: the drain outlasts the WMS request
/// timeout, so the pass finishes its call and records the answer before the process ends —
/// the order is SENT, not left in doubt, and was sent once.
#[tokio::test]
async fn a_graceful_stop_during_a_registration_call_records_its_answer_before_ending() {
    let mut app = spawn_app().await;
    let shop = app.shop().await;
    app.fault(
        &shop,
        Endpoint::Register,
        Faults {
            // Within the test's 3 s request timeout.
            latency_ms: 2_500,
            ..Faults::default()
        },
    );
    let no = unique_order_no();
    app.status_changed(&order(&shop, &no, "paid", 1)).await;
    app.wait_for(&shop, &no, ShippingStatus::Sending).await;

    app.stop().await;
    let row = wmslink_shipment_dispatcher::store::get(&app.db.pool, &shop.id, &no)
        .await
        .expect("db")
        .expect("row");
    assert_eq!(
        row.status.as_str(),
        "SENT",
        "the answer was recorded: {row:?}"
    );
    assert!(!row.possibly_in_wms, "not left in doubt");
    let (wms, _) = app.wms_row(&shop, &no);
    assert_eq!(row.wms_order_id, Some(wms.order_id));
    assert_eq!(app.rows_received(&shop, &no), 1);
}
