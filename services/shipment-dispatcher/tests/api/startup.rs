//! The dispatcher on the platform runtime: a dependency down at start is waited for (health
//! `NOT_SERVING`, the process stays up), and a consumer whose setup fails is restarted until it
//! works, `NOT_SERVING` meanwhile.

use std::net::SocketAddr;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use wmslink_platform::nats::{self, StreamKind};
use wmslink_proto::orders::v1::ShippingStatus;
use wmslink_proto::sync::v1::WmsObserved;
use wmslink_shipment_dispatcher::Application;
use wmslink_testkit::eventually;

use crate::helpers::*;
use crate::private_postgres::PrivatePostgres;

async fn health(addr: SocketAddr) -> ServingStatus {
    let Ok(endpoint) = tonic::transport::Channel::from_shared(format!("http://{addr}")) else {
        return ServingStatus::Unknown;
    };
    let Ok(channel) = endpoint.connect().await else {
        return ServingStatus::Unknown;
    };
    match HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
    {
        Ok(answer) => answer.into_inner().status(),
        Err(_) => ServingStatus::Unknown,
    }
}

async fn wait_health(addr: SocketAddr, want: ServingStatus) {
    eventually(WAIT, &format!("health {want:?}"), || async {
        (health(addr).await == want).then_some(())
    })
    .await;
}

/// Points the test's gRPC clients at a dispatcher started by the test itself.
async fn use_dispatcher(app: &mut TestApp, addr: SocketAddr) {
    let channel = channel(addr).await;
    app.operator = dispatch_client(channel.clone(), OPERATOR_TOKEN);
    app.reader = dispatch_client(channel, READER_TOKEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_at_start_is_waited_for_not_serving_then_serving() {
    let mut app = spawn_app().await;
    let shop = app.shop().await;
    app.stop().await;
    let mut postgres = tokio::task::spawn_blocking(PrivatePostgres::init)
        .await
        .expect("initdb");
    let mut config = app.config.clone();
    config.database.url = postgres.url("wmslink_dispatch");
    config.runtime.retry_base_delay_ms = 50;
    config.runtime.retry_max_delay_ms = 200;

    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let starting = Application::start(config, shutdown.clone())
        .await
        .expect("the port is bound without PostgreSQL");
    let addr = starting.grpc_addr();
    let ready = tokio::spawn(starting.ready());
    wait_health(addr, ServingStatus::NotServing).await;
    use_dispatcher(&mut app, addr).await;
    let status = app
        .reader
        .clone()
        .get_shipment(wmslink_proto::dispatch::v1::GetShipmentRequest {
            shop_id: shop.id.clone(),
            order_no: "A-1".into(),
        })
        .await
        .expect_err("not ready");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    // Still waiting, and still there, over several attempts (the process does not exit).
    consistently(Duration::from_secs(1), "waiting for PostgreSQL", || {
        !ready.is_finished()
    })
    .await;
    assert_eq!(health(addr).await, ServingStatus::NotServing);

    // PostgreSQL comes up after the service: it connects, migrates and serves.
    postgres = tokio::task::spawn_blocking(move || {
        postgres.start();
        postgres
    })
    .await
    .expect("pg_ctl start");
    let dispatcher = tokio::time::timeout(WAIT, ready)
        .await
        .expect("ready once PostgreSQL is up")
        .expect("joins")
        .expect("starts");
    let running = tokio::spawn(dispatcher.run_until_stopped());
    wait_health(addr, ServingStatus::Serving).await;

    let no = unique_order_no();
    app.status_changed(&order(&shop, &no, "paid", 1)).await;
    app.wait_for(&shop, &no, ShippingStatus::Sent).await;

    shutdown.cancel();
    tokio::time::timeout(WAIT, running)
        .await
        .expect("stops")
        .expect("joins")
        .expect("stops cleanly");
    drop(postgres);
}

/// The observation consumer cannot be set up when the service runs (its stream is gone): the
/// consumer task is restarted with back-off and health says `NOT_SERVING` until the stream is
/// back; then the consumer works (and the observation waiting in it is applied).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_cannot_start_is_restarted_and_not_serving_meanwhile() {
    let mut app = spawn_app().await;
    let shop = app.shop().await;
    let no = unique_order_no();
    app.status_changed(&order(&shop, &no, "paid", 1)).await;
    let (sent, _) = app.wait_for(&shop, &no, ShippingStatus::Sent).await;
    app.stop().await;

    let mut config = app.config.clone();
    config.runtime.retry_base_delay_ms = 50;
    config.runtime.retry_max_delay_ms = 200;
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let dispatcher = Application::build(config, shutdown.clone())
        .await
        .expect("builds");
    let addr = dispatcher.grpc_addr();
    // The WMS stream (and with it the observation consumer) disappears before the tasks run.
    let wms_stream = app.nats.subjects.stream_name(StreamKind::Wms);
    app.nats
        .js
        .delete_stream(&wms_stream)
        .await
        .expect("stream deleted");
    let running = tokio::spawn(dispatcher.run_until_stopped());
    use_dispatcher(&mut app, addr).await;
    wait_health(addr, ServingStatus::NotServing).await;
    consistently(Duration::from_millis(500), "still not serving", || {
        !running.is_finished()
    })
    .await;
    assert_eq!(health(addr).await, ServingStatus::NotServing);

    nats::ensure_streams(&app.nats.js, &app.nats.subjects, &[StreamKind::Wms], 1)
        .await
        .expect("stream back");
    app.observed(&WmsObserved {
        event_id: uuid::Uuid::now_v7().to_string(),
        shop_id: shop.id.clone(),
        order_no: no.clone(),
        wms_order_id: sent.wms_order_id,
        status_id: 20,
        status_name: "処理中".into(),
        wms_updated_at: Some(wmslink_proto::to_timestamp(chrono::Utc::now())),
        ..WmsObserved::default()
    })
    .await;
    wait_health(addr, ServingStatus::Serving).await;
    app.wait_until(&shop, &no, "WMS status 処理中 applied", |s| {
        s.wms_status_id == 20
    })
    .await;

    shutdown.cancel();
    tokio::time::timeout(WAIT, running)
        .await
        .expect("stops")
        .expect("joins")
        .expect("stops cleanly");
}

/// Published outbox rows older than `outbox.keep_published_ms` and processed message ids older
/// than `consumers.keep_processed_ms` are pruned (at start, then hourly); recent ones stay.
#[tokio::test]
async fn old_published_rows_and_old_processed_ids_are_pruned() {
    let mut app = spawn_app().await;
    app.stop().await;
    sqlx::raw_sql(
        "INSERT INTO outbox (msg_id, subject, payload, published_at) VALUES
            ('old-published', 'x', '', now() - interval '8 days'),
            ('new-published', 'x', '', now() - interval '1 day');
         INSERT INTO processed_messages (consumer, msg_id, processed_at) VALUES
            ('shipment-dispatcher-status-changed', 'old', now() - interval '9 days'),
            ('shipment-dispatcher-observed', 'old', now() - interval '9 days'),
            ('shipment-dispatcher-updated', 'new', now() - interval '1 day');",
    )
    .execute(&app.db.pool)
    .await
    .expect("old rows");

    app.start().await;
    eventually(WAIT, "old rows pruned", || async {
        let outbox: Vec<String> = sqlx::query_scalar("SELECT msg_id FROM outbox ORDER BY msg_id")
            .fetch_all(&app.db.pool)
            .await
            .expect("outbox");
        let processed: Vec<String> = sqlx::query_scalar(
            "SELECT consumer || ':' || msg_id FROM processed_messages ORDER BY 1",
        )
        .fetch_all(&app.db.pool)
        .await
        .expect("processed");
        (outbox == ["new-published"] && processed == ["shipment-dispatcher-updated:new"])
            .then_some(())
    })
    .await;
}
