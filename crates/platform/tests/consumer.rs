//! A durable consumer against the local NATS JetStream: a dependency outage is waited out
//! however many deliveries it takes, while a message failing on its own is dead-lettered at
//! `max_deliver`.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wmslink_platform::consumer::{
    self, ConsumerSpec, DEAD_LETTER_REASON, DEAD_LETTER_TRUNCATED, Delivery, HandleError, Handler,
};
use wmslink_platform::nats::{self, StreamKind};
use wmslink_platform::shop::ShopId;
use wmslink_testkit::{TestNats, eventually};

const WAIT: Duration = Duration::from_secs(20);

/// Fails its first `failures` deliveries with `error`, then succeeds; counts deliveries.
struct Flaky {
    failures: i64,
    error: fn() -> HandleError,
    deliveries: Arc<AtomicI64>,
    done: Arc<AtomicI64>,
}

impl Handler for Flaky {
    async fn handle(&self, delivery: &Delivery<'_>) -> Result<(), HandleError> {
        self.deliveries.fetch_add(1, Ordering::SeqCst);
        if delivery.delivered <= self.failures {
            return Err((self.error)());
        }
        self.done.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

struct Run {
    nats: TestNats,
    deliveries: Arc<AtomicI64>,
    done: Arc<AtomicI64>,
    stop: CancellationToken,
    subject: String,
}

async fn run(failures: i64, error: fn() -> HandleError) -> Run {
    run_with(failures, error, |_| b"{}".to_vec()).await
}

/// [`run`] publishing the payload `payload` makes from the server's `max_payload`.
async fn run_with(
    failures: i64,
    error: fn() -> HandleError,
    payload: impl FnOnce(usize) -> Vec<u8>,
) -> Run {
    let nats = TestNats::create().await.expect("nats");
    nats::ensure_streams(
        &nats.js,
        &nats.subjects,
        &[StreamKind::Orders, StreamKind::DeadLetters],
        1,
    )
    .await
    .expect("streams");
    let mut spec = ConsumerSpec::new(
        nats.subjects.stream_name(StreamKind::Orders),
        "test-consumer".into(),
        nats.subjects.order_updated_all(),
    );
    spec.max_deliver = 3;
    spec.base_delay = Duration::from_millis(10);
    spec.max_delay = Duration::from_millis(40);
    let deliveries = Arc::new(AtomicI64::new(0));
    let done = Arc::new(AtomicI64::new(0));
    let handler = Flaky {
        failures,
        error,
        deliveries: deliveries.clone(),
        done: done.clone(),
    };
    let stop = CancellationToken::new();
    let (js, subjects, token) = (nats.js.clone(), nats.subjects.clone(), stop.clone());
    tokio::spawn(async move {
        let _ = consumer::run(&js, &subjects, &spec, &handler, &token, async {}).await;
    });
    let shop = ShopId::parse("shop-1").expect("shop");
    let subject = nats.subjects.order_updated(&shop);
    let payload = payload(nats.js.client().server_info().max_payload);
    nats.publish(subject.clone(), payload, Some("m-1"), "application/json")
        .await;
    Run {
        nats,
        deliveries,
        done,
        stop,
        subject,
    }
}

#[tokio::test]
async fn an_outage_longer_than_the_delivery_budget_is_waited_out_and_nothing_is_dead_lettered() {
    let run = run(12, || {
        HandleError::unavailable("database: connection refused")
    })
    .await;
    eventually(
        WAIT,
        "the message processed once the dependency is back",
        || {
            let done = run.done.load(Ordering::SeqCst);
            async move { (done == 1).then_some(()) }
        },
    )
    .await;
    assert_eq!(
        run.deliveries.load(Ordering::SeqCst),
        13,
        "12 waits, then done"
    );
    let dead = run
        .nats
        .stored(
            StreamKind::DeadLetters,
            run.nats.subjects.dead_letter(&run.subject),
        )
        .await;
    assert!(dead.is_empty(), "an outage dead-letters nothing");
    run.stop.cancel();
}

#[tokio::test]
async fn a_message_failing_transiently_on_its_own_is_dead_lettered_at_max_deliver() {
    let run = run(i64::MAX, || HandleError::transient("conflict")).await;
    let dead = eventually(WAIT, "the dead letter", || {
        let nats = &run.nats;
        let subject = nats.subjects.dead_letter(&run.subject);
        async move {
            let stored = nats.stored(StreamKind::DeadLetters, subject).await;
            (!stored.is_empty()).then_some(stored)
        }
    })
    .await;
    assert_eq!(dead.len(), 1);
    let reason = dead[0]
        .headers
        .as_ref()
        .and_then(|headers| headers.get(DEAD_LETTER_REASON))
        .map(|value| value.as_str().to_owned());
    assert_eq!(
        reason.as_deref(),
        Some("gave up after 3 deliveries: conflict")
    );
    assert_eq!(run.deliveries.load(Ordering::SeqCst), 3);
    assert_eq!(run.done.load(Ordering::SeqCst), 0);
    run.stop.cancel();
}

/// A message near NATS's size limit still dead-letters: the dead letter keeps its start and says
/// how large it was, instead of failing for size and coming back forever.
#[tokio::test]
async fn an_invalid_message_near_the_size_limit_is_still_dead_lettered() {
    let run = run_with(
        i64::MAX,
        || HandleError::permanent("invalid order_no: must not be empty"),
        |max_payload| vec![b'x'; max_payload - 200],
    )
    .await;
    let dead = eventually(WAIT, "the dead letter", || {
        let nats = &run.nats;
        let subject = nats.subjects.dead_letter(&run.subject);
        async move {
            let stored = nats.stored(StreamKind::DeadLetters, subject).await;
            (!stored.is_empty()).then_some(stored)
        }
    })
    .await;
    assert_eq!(dead.len(), 1);
    let max_payload = run.nats.js.client().server_info().max_payload;
    let headers = dead[0].headers.as_ref().expect("headers");
    assert_eq!(
        headers.get(DEAD_LETTER_REASON).map(|v| v.as_str()),
        Some("invalid order_no: must not be empty")
    );
    assert_eq!(
        headers
            .get(DEAD_LETTER_TRUNCATED)
            .map(|v| v.as_str().to_owned()),
        Some((max_payload - 200).to_string())
    );
    assert!(dead[0].payload.len() < max_payload - 200);
    assert!(dead[0].payload.iter().all(|b| *b == b'x'));
    assert_eq!(run.deliveries.load(Ordering::SeqCst), 1);
    run.stop.cancel();
}
