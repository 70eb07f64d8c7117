//! The service runtime over a real gRPC socket (health asked by a real client), and its outbox
//! steps against the local PostgreSQL and NATS.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use wmslink_platform::grpc::GrpcConfig;
use wmslink_platform::nats::{self, StreamKind};
use wmslink_platform::outbox::{self, OutboxMessage, OutboxRelay};
use wmslink_platform::runtime::{DeferredService, Runtime, RuntimeConfig, Task, TaskError};
use wmslink_testkit::{TestDb, TestNats, eventually};

const WAIT: Duration = Duration::from_secs(20);

/// A stand-in for a service's own API: every call answers `UNIMPLEMENTED`.
#[derive(Clone)]
struct Api;

impl NamedService for Api {
    const NAME: &'static str = "wmslink.test.v1.Api";
}

impl tonic::codegen::Service<http::Request<Body>> for Api {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: http::Request<Body>) -> Self::Future {
        Box::pin(async { Ok(tonic::Status::unimplemented("test API").into_http()) })
    }
}

fn config() -> RuntimeConfig {
    RuntimeConfig {
        drain_timeout_ms: 2_000,
        retry_base_delay_ms: 20,
        retry_max_delay_ms: 200,
        ..RuntimeConfig::default()
    }
}

async fn start(
    config: &RuntimeConfig,
    shutdown: &CancellationToken,
) -> (Runtime, DeferredService<Api>) {
    let api = DeferredService::new();
    let runtime = Runtime::start(
        "runtime-test",
        config,
        &GrpcConfig::listening_on("127.0.0.1:0"),
        &api,
        shutdown,
    )
    .await
    .expect("runtime starts");
    (runtime, api)
}

async fn health(addr: SocketAddr) -> HealthClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connects");
    HealthClient::new(channel)
}

async fn status(client: &mut HealthClient<Channel>, service: &str) -> ServingStatus {
    client
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .expect("health answers")
        .into_inner()
        .status()
}

async fn wait_status(client: &mut HealthClient<Channel>, want: ServingStatus, what: &str) {
    eventually(WAIT, what, || {
        let mut client = client.clone();
        async move {
            let whole = status(&mut client, "").await;
            let api = status(&mut client, Api::NAME).await;
            (whole == want && api == want).then_some(())
        }
    })
    .await;
}

/// Calls the stand-in API through the server and returns the answer's code.
async fn call_api(addr: SocketAddr) -> Code {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connects");
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.expect("ready");
    let path = http::uri::PathAndQuery::from_static("/wmslink.test.v1.Api/Call");
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    match client.unary(tonic::Request::new(()), path, codec).await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test]
async fn a_failing_required_task_is_restarted_and_health_is_not_serving_until_it_is_back() {
    let shutdown = CancellationToken::new();
    let (runtime, api) = start(&config(), &shutdown).await;
    let addr = runtime.grpc_addr();
    let mut client = health(addr).await;
    // Bound and answering before anything is ready.
    assert_eq!(status(&mut client, "").await, ServingStatus::NotServing);
    assert_eq!(call_api(addr).await, Code::Unavailable);
    api.set(Api);
    assert_eq!(call_api(addr).await, Code::Unimplemented);

    // Start 1 is ready at once and fails when allowed; start 2 panics when allowed, before it
    // is ready; start 3 is ready when allowed and runs until the service stops.
    let starts = Arc::new(AtomicU32::new(0));
    let permits = Arc::new(Semaphore::new(0));
    let flaky = {
        let starts = starts.clone();
        let permits = permits.clone();
        Task::required("flaky", move |ctx| {
            let attempt = starts.fetch_add(1, Ordering::SeqCst) + 1;
            let permits = permits.clone();
            async move {
                if attempt == 1 {
                    ctx.ready().await;
                }
                permits.acquire().await.expect("permits").forget();
                match attempt {
                    1 => Err::<(), TaskError>("lost its connection".into()),
                    2 => panic!("a bug"),
                    _ => {
                        ctx.ready().await;
                        ctx.stop().cancelled().await;
                        Ok(())
                    }
                }
            }
        })
        .signals_ready()
    };
    // Housekeeping that keeps failing restarts too, without touching health.
    let housekeeping_starts = Arc::new(AtomicU32::new(0));
    let housekeeping = {
        let starts = housekeeping_starts.clone();
        Task::background("housekeeping", move |_ctx| {
            starts.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), TaskError>("always fails".into()) }
        })
    };
    let flushed = Arc::new(AtomicU32::new(0));
    let hook = {
        let flushed = flushed.clone();
        Task::required("steady", |ctx| async move {
            ctx.stop().cancelled().await;
            Ok(())
        })
        .after_stop(move || async move {
            flushed.fetch_add(1, Ordering::SeqCst);
        })
    };
    let run = tokio::spawn(runtime.run(vec![flaky, housekeeping, hook]));

    wait_status(
        &mut client,
        ServingStatus::Serving,
        "SERVING once every task is ready",
    )
    .await;
    permits.add_permits(1);
    wait_status(
        &mut client,
        ServingStatus::NotServing,
        "NOT_SERVING after the failure",
    )
    .await;
    permits.add_permits(1);
    eventually(WAIT, "the third start", || async {
        (starts.load(Ordering::SeqCst) >= 3).then_some(())
    })
    .await;
    // The third start is not ready yet: still NOT_SERVING.
    assert_eq!(status(&mut client, "").await, ServingStatus::NotServing);
    permits.add_permits(1);
    wait_status(
        &mut client,
        ServingStatus::Serving,
        "SERVING once it is back",
    )
    .await;
    assert_eq!(
        starts.load(Ordering::SeqCst),
        3,
        "restarted once per failure"
    );
    eventually(WAIT, "the background task restarted", || async {
        (housekeeping_starts.load(Ordering::SeqCst) >= 3).then_some(())
    })
    .await;
    assert_eq!(status(&mut client, Api::NAME).await, ServingStatus::Serving);

    shutdown.cancel();
    tokio::time::timeout(WAIT, run)
        .await
        .expect("stops")
        .expect("joins")
        .expect("stops cleanly");
    assert_eq!(
        flushed.load(Ordering::SeqCst),
        1,
        "the after-stop hook ran once"
    );
}

#[tokio::test]
async fn a_dependency_down_at_start_is_waited_for_while_not_serving() {
    let shutdown = CancellationToken::new();
    let (runtime, _api) = start(&config(), &shutdown).await;
    let addr = runtime.grpc_addr();
    let attempts = Arc::new(AtomicU32::new(0));
    let up = Arc::new(Semaphore::new(0));
    let waiting = {
        let attempts = attempts.clone();
        let up = up.clone();
        tokio::spawn(async move {
            let value = runtime
                .wait_for("the database", || {
                    attempts.fetch_add(1, Ordering::SeqCst);
                    let up = up.clone();
                    async move {
                        match up.try_acquire() {
                            Ok(_) => Ok(42),
                            Err(_) => Err("connection refused"),
                        }
                    }
                })
                .await;
            (runtime, value)
        })
    };
    let mut client = health(addr).await;
    eventually(WAIT, "several attempts", || async {
        (attempts.load(Ordering::SeqCst) >= 3).then_some(())
    })
    .await;
    assert_eq!(status(&mut client, "").await, ServingStatus::NotServing);
    assert_eq!(call_api(addr).await, Code::Unavailable);
    up.add_permits(1);
    let (runtime, value) = waiting.await.expect("joins");
    assert_eq!(value, Ok(42));
    let run = tokio::spawn(runtime.run(Vec::new()));
    wait_status(
        &mut client,
        ServingStatus::Serving,
        "SERVING once it is reached",
    )
    .await;
    shutdown.cancel();
    run.await.expect("joins").expect("stops cleanly");

    // Asked to stop while waiting: the wait ends at once.
    let shutdown = CancellationToken::new();
    let (runtime, _api) = start(&config(), &shutdown).await;
    shutdown.cancel();
    let outcome = tokio::time::timeout(
        WAIT,
        runtime.wait_for("the database", || async { Err::<(), _>("down") }),
    )
    .await
    .expect("returns");
    assert!(outcome.is_err());
}

#[tokio::test]
async fn tasks_that_outlast_the_drain_are_aborted_and_the_hooks_still_run() {
    let shutdown = CancellationToken::new();
    let config = RuntimeConfig {
        drain_timeout_ms: 300,
        ..config()
    };
    let (runtime, _api) = start(&config, &shutdown).await;
    let hooked = Arc::new(AtomicU32::new(0));
    let stubborn = {
        let hooked = hooked.clone();
        Task::required("stubborn", |_ctx| async {
            std::future::pending::<()>().await;
            Ok(())
        })
        .after_stop(move || async move {
            hooked.fetch_add(1, Ordering::SeqCst);
        })
    };
    let mut client = health(runtime.grpc_addr()).await;
    let run = tokio::spawn(runtime.run(vec![stubborn]));
    wait_status(&mut client, ServingStatus::Serving, "SERVING").await;
    shutdown.cancel();
    let started = tokio::time::Instant::now();
    tokio::time::timeout(WAIT, run)
        .await
        .expect("stops")
        .expect("joins")
        .expect("stops cleanly");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "waited for the drain"
    );
    assert_eq!(hooked.load(Ordering::SeqCst), 1);
}

/// The relay publishes what a commit woke it for; a row written without waking it (as if the
/// relay had just gone to sleep for its poll interval) goes out with the final flush at
/// shutdown.
#[tokio::test]
async fn the_final_flush_publishes_what_the_outbox_holds_at_shutdown() {
    let db = TestDb::create().await.expect("database");
    wmslink_platform::db::migrate(&db.pool, &sqlx::migrate::Migrator::DEFAULT)
        .await
        .expect("platform tables");
    let nats = TestNats::create().await.expect("nats");
    nats::ensure_streams(&nats.js, &nats.subjects, &[StreamKind::Orders], 1)
        .await
        .expect("stream");
    let relay = OutboxRelay::new(db.pool.clone(), nats.js.clone())
        .with_poll_interval(Duration::from_secs(3600));

    let shop = wmslink_platform::shop::ShopId::parse("s1").expect("shop");
    let subject = nats.subjects.order_updated(&shop);
    let enqueue = |id: &'static str| {
        let pool = db.pool.clone();
        let subject = subject.clone();
        async move {
            let message = OutboxMessage {
                msg_id: id.to_owned(),
                subject,
                payload: id.as_bytes().to_vec(),
                headers: Default::default(),
            };
            let mut conn = pool.acquire().await.expect("connection");
            outbox::enqueue(&mut conn, &message)
                .await
                .expect("enqueued");
        }
    };
    let published = |id: &'static str| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_scalar::<_, bool>(
                "SELECT published_at IS NOT NULL FROM outbox WHERE msg_id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .expect("row")
        }
    };
    // Published by the relay's first pass, after which it sleeps its poll interval.
    enqueue("first").await;
    let shutdown = CancellationToken::new();
    let (runtime, _api) = start(&config(), &shutdown).await;
    let run = tokio::spawn(runtime.run(vec![Task::outbox_relay(relay)]));
    eventually(WAIT, "the first row published", || async {
        published("first").await.then_some(())
    })
    .await;
    enqueue("left-behind").await;
    assert!(!published("left-behind").await, "the relay sleeps");

    shutdown.cancel();
    tokio::time::timeout(WAIT, run)
        .await
        .expect("stops")
        .expect("joins")
        .expect("stops cleanly");
    assert!(published("left-behind").await, "flushed at shutdown");
    let stream = nats
        .js
        .get_stream(nats.subjects.stream_name(StreamKind::Orders))
        .await
        .expect("stream");
    let last = stream
        .get_last_raw_message_by_subject(&subject)
        .await
        .expect("a message");
    assert_eq!(last.payload.as_ref(), b"left-behind");
}

#[tokio::test]
async fn pruning_deletes_old_published_rows_and_old_processed_ids_only() {
    let db = TestDb::create().await.expect("database");
    wmslink_platform::db::migrate(&db.pool, &sqlx::migrate::Migrator::DEFAULT)
        .await
        .expect("platform tables");
    sqlx::raw_sql(
        "INSERT INTO outbox (msg_id, subject, payload, published_at) VALUES
            ('old-published', 's', '', now() - interval '10 days'),
            ('new-published', 's', '', now() - interval '1 day'),
            ('old-unpublished', 's', '', NULL);
         UPDATE outbox SET created_at = now() - interval '10 days' WHERE msg_id = 'old-unpublished';
         INSERT INTO processed_messages (consumer, msg_id, processed_at) VALUES
            ('c1', 'old', now() - interval '10 days'),
            ('c2', 'old', now() - interval '9 days'),
            ('c1', 'new', now() - interval '1 day');",
    )
    .execute(&db.pool)
    .await
    .expect("rows");

    wmslink_platform::runtime::prune(
        &db.pool,
        Duration::from_secs(7 * 86_400),
        Some(Duration::from_secs(8 * 86_400)),
    )
    .await;

    let outbox: Vec<String> = sqlx::query_scalar("SELECT msg_id FROM outbox ORDER BY msg_id")
        .fetch_all(&db.pool)
        .await
        .expect("outbox");
    assert_eq!(outbox, ["new-published", "old-unpublished"]);
    let processed: Vec<String> =
        sqlx::query_scalar("SELECT consumer || ':' || msg_id FROM processed_messages ORDER BY 1")
            .fetch_all(&db.pool)
            .await
            .expect("processed");
    assert_eq!(processed, ["c1:new"]);

    // Without consumers, processed ids are left alone.
    sqlx::query("INSERT INTO processed_messages (consumer, msg_id, processed_at) VALUES ('c1', 'older', now() - interval '30 days')")
        .execute(&db.pool)
        .await
        .expect("row");
    wmslink_platform::runtime::prune(&db.pool, Duration::from_secs(7 * 86_400), None).await;
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM processed_messages")
        .fetch_one(&db.pool)
        .await
        .expect("count");
    assert_eq!(left, 2);
}

/// Records the payloads it handles.
struct Recorder(Arc<std::sync::Mutex<Vec<String>>>);

impl wmslink_platform::consumer::Handler for Recorder {
    async fn handle(
        &self,
        delivery: &wmslink_platform::consumer::Delivery<'_>,
    ) -> Result<(), wmslink_platform::consumer::HandleError> {
        if let Ok(mut seen) = self.0.lock() {
            seen.push(String::from_utf8_lossy(delivery.payload).into_owned());
        }
        Ok(())
    }
}

/// A consumer deleted under a running service (an operator, a lost NATS store) is set up again
/// by its task's restart, and the messages published after that are consumed.
#[tokio::test]
async fn a_deleted_consumer_is_set_up_again_by_its_task() {
    let nats = TestNats::create().await.expect("nats");
    nats::ensure_streams(&nats.js, &nats.subjects, &[StreamKind::Orders], 1)
        .await
        .expect("stream");
    let stream_name = nats.subjects.stream_name(StreamKind::Orders);
    let spec = wmslink_platform::consumer::ConsumerSpec::new(
        stream_name.clone(),
        "runtime-test".into(),
        nats.subjects.order_updated_all(),
    );
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let shutdown = CancellationToken::new();
    let (runtime, _api) = start(&config(), &shutdown).await;
    let mut client = health(runtime.grpc_addr()).await;
    let run = tokio::spawn(runtime.run(vec![Task::consumer(
        nats.js.clone(),
        nats.subjects.clone(),
        spec,
        Recorder(seen.clone()),
    )]));
    wait_status(&mut client, ServingStatus::Serving, "SERVING").await;

    let shop = wmslink_platform::shop::ShopId::parse("s1").expect("shop");
    let publish = |payload: &'static str| {
        let js = nats.js.clone();
        let subject = nats.subjects.order_updated(&shop);
        async move {
            js.publish(subject, payload.into())
                .await
                .expect("publish")
                .await
                .expect("stored");
        }
    };
    let has = |payload: &'static str| {
        let seen = seen.clone();
        async move {
            seen.lock()
                .map(|seen| seen.iter().any(|p| p == payload))
                .unwrap_or(false)
                .then_some(())
        }
    };
    publish("before").await;
    eventually(WAIT, "the first message", || has("before")).await;

    nats.js
        .get_stream(&stream_name)
        .await
        .expect("stream")
        .delete_consumer("runtime-test")
        .await
        .expect("consumer deleted");
    publish("after").await;
    eventually(WAIT, "the message after the deletion", || has("after")).await;
    wait_status(&mut client, ServingStatus::Serving, "SERVING again").await;

    shutdown.cancel();
    tokio::time::timeout(WAIT, run)
        .await
        .expect("stops")
        .expect("joins")
        .expect("stops cleanly");
}
