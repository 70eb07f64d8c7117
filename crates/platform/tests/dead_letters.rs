//! The dead-letter service against the local NATS JetStream, over real gRPC: a consumer
//! dead-letters what it cannot process, the service lists it (subject filter, paging) and
//! replays it to its original subject, where the consumer takes it again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use wmslink_platform::auth::{AuthConfig, BearerToken, TokenConfig, scopes};
use wmslink_platform::consumer::{self, ConsumerSpec, Delivery, HandleError, Handler};
use wmslink_platform::dead_letters::{self, REPLAY_OF};
use wmslink_platform::grpc::{self, GrpcConfig};
use wmslink_platform::nats::{StreamKind, Subjects, ensure_streams};
use wmslink_proto::ops::v1 as ops;
use wmslink_proto::ops::v1::dead_letter_service_client::DeadLetterServiceClient;
use wmslink_testkit::eventually;

const OPERATOR: &str = "dlq-test-operator-token";
const READER: &str = "dlq-test-reader-token";
const BOUND_OPERATOR: &str = "dlq-test-bound-operator-token";

type Client = DeadLetterServiceClient<InterceptedService<Channel, BearerToken>>;

/// What the handler accepted: msg id, payload, `Wmslink-Replay-Of`.
type Accepted = (String, Vec<u8>, Option<String>);

/// Refuses payloads starting with `bad` until `fixed`; records what it accepted.
#[derive(Clone, Default)]
struct PickyHandler {
    fixed: Arc<Mutex<bool>>,
    accepted: Arc<Mutex<Vec<Accepted>>>,
}

impl Handler for PickyHandler {
    async fn handle(&self, delivery: &Delivery<'_>) -> Result<(), HandleError> {
        let fixed = *self.fixed.lock().unwrap();
        if delivery.payload.starts_with(b"bad") && !fixed {
            return Err(HandleError::permanent("payload says it is bad"));
        }
        self.accepted.lock().unwrap().push((
            delivery.msg_id.clone(),
            delivery.payload.to_vec(),
            delivery.header(REPLAY_OF).map(str::to_owned),
        ));
        Ok(())
    }
}

struct Setup {
    subjects: Subjects,
    js: async_nats::jetstream::Context,
    handler: PickyHandler,
    addr: std::net::SocketAddr,
    stop: CancellationToken,
}

fn nats_url() -> String {
    std::env::var("WMSLINK_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

async fn setup() -> Setup {
    wmslink_platform::install_crypto_provider();
    // `t` + 12 hex: the test cleanup recognises (and eventually drops) these streams.
    let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let subjects = Subjects::new(&prefix).unwrap();
    let client = async_nats::connect(nats_url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    ensure_streams(
        &js,
        &subjects,
        &[
            StreamKind::CartOrders,
            StreamKind::Orders,
            StreamKind::DeadLetters,
        ],
        1,
    )
    .await
    .unwrap();
    let stop = CancellationToken::new();
    let handler = PickyHandler::default();
    for (kind, durable, filter) in [
        (
            StreamKind::CartOrders,
            "cart-orders",
            subjects.cart_orders_all(),
        ),
        (
            StreamKind::Orders,
            "orders",
            format!("{prefix}.orders.*.status_changed"),
        ),
    ] {
        let spec = ConsumerSpec::new(subjects.stream_name(kind), durable.into(), filter);
        let (js, subjects, handler, stop) =
            (js.clone(), subjects.clone(), handler.clone(), stop.clone());
        tokio::spawn(async move {
            consumer::run(&js, &subjects, &spec, &handler, &stop, async {}).await
        });
    }

    let auth = AuthConfig {
        tokens: vec![
            TokenConfig {
                caller: "operator".into(),
                token: SecretString::from(OPERATOR),
                scopes: vec![scopes::OPERATE.into()],
                shops: Vec::new(),
            },
            TokenConfig {
                caller: "reader".into(),
                token: SecretString::from(READER),
                scopes: vec![scopes::ORDERS_READ.into()],
                shops: Vec::new(),
            },
            TokenConfig {
                caller: "shop-a-console".into(),
                token: SecretString::from(BOUND_OPERATOR),
                scopes: vec![scopes::OPERATE.into()],
                shops: vec!["shop-a".into()],
            },
        ],
    };
    let config = GrpcConfig::listening_on("127.0.0.1:0");
    let (listener, addr) = grpc::bind(&config).await.unwrap();
    let (routes, _) = grpc::base_routes(&config).unwrap();
    let routes = routes.add_service(dead_letters::service(js.clone(), subjects.clone(), &auth));
    let serving = stop.clone();
    tokio::spawn(async move { grpc::serve(listener, routes, &config, serving).await });
    Setup {
        subjects,
        js,
        handler,
        addr,
        stop,
    }
}

fn client(setup: &Setup, token: &str) -> Client {
    let channel = Channel::from_shared(format!("http://{}", setup.addr))
        .unwrap()
        .connect_lazy();
    DeadLetterServiceClient::with_interceptor(
        channel,
        BearerToken::new(&SecretString::from(token.to_owned())).unwrap(),
    )
}

async fn publish(setup: &Setup, subject: String, msg_id: &str, payload: &'static [u8]) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id);
    headers.insert("content-type", "application/json");
    headers.insert(
        "traceparent",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    );
    setup
        .js
        .publish_with_headers(subject, headers, payload.into())
        .await
        .unwrap()
        .await
        .unwrap();
}

async fn list(
    client: &mut Client,
    subject: &str,
    page_size: u32,
    token: &str,
) -> ops::ListDeadLettersResponse {
    client
        .list(ops::ListDeadLettersRequest {
            subject: subject.into(),
            page_size,
            page_token: token.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn wait_for_dead_letters(client: &mut Client, count: usize) -> Vec<ops::DeadLetter> {
    eventually(
        Duration::from_secs(20),
        &format!("{count} dead letters"),
        || {
            let mut client = client.clone();
            async move {
                let found = list(&mut client, "", 100, "").await.dead_letters;
                (found.len() >= count).then_some(found)
            }
        },
    )
    .await
}

#[tokio::test]
async fn dead_letters_are_listed_by_subject_a_page_at_a_time_with_their_reasons() {
    let setup = setup().await;
    let mut operator = client(&setup, OPERATOR);
    let shop_a = format!("{}.cart.orders.shop-a.upserted", prefix_of(&setup));
    let shop_b = format!("{}.cart.orders.shop-b.upserted", prefix_of(&setup));
    publish(&setup, shop_a.clone(), "a-1", b"bad one").await;
    publish(&setup, shop_b.clone(), "b-1", b"bad two").await;
    publish(&setup, shop_a.clone(), "a-2", b"good").await;
    publish(&setup, shop_a.clone(), "a-3", b"bad three").await;

    let all = wait_for_dead_letters(&mut operator, 3).await;
    assert_eq!(all.len(), 3, "{all:?}");
    let first = &all[0];
    assert_eq!(first.subject, "cart.orders.shop-a.upserted");
    assert_eq!(first.reason, "payload says it is bad");
    assert_eq!(first.consumer, "cart-orders");
    assert_eq!(first.deliveries, 1);
    assert_eq!(first.original_msg_id, "a-1");
    assert_eq!(first.content_type, "application/json");
    assert_eq!(first.payload_bytes, 7);
    assert!(first.dead_lettered_at.is_some());
    assert!(
        all.windows(2)
            .all(|pair| pair[0].sequence < pair[1].sequence)
    );

    // Subject filter (wildcards), without the environment prefix.
    let shop_a_only = list(&mut operator, "cart.orders.shop-a.>", 100, "").await;
    let ids: Vec<_> = shop_a_only
        .dead_letters
        .iter()
        .map(|dead| dead.original_msg_id.as_str())
        .collect();
    assert_eq!(ids, ["a-1", "a-3"]);
    assert!(shop_a_only.next_page_token.is_empty());

    // Pages of one: every dead letter once, the last page says it is the last.
    let mut token = String::new();
    let mut paged = Vec::new();
    loop {
        let page = list(&mut operator, "cart.orders.*.upserted", 1, &token).await;
        assert!(page.dead_letters.len() <= 1);
        paged.extend(
            page.dead_letters
                .into_iter()
                .map(|dead| dead.original_msg_id),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(paged, ["a-1", "b-1", "a-3"]);

    // Bad requests list every bad field.
    let status = operator
        .list(ops::ListDeadLettersRequest {
            subject: "a.>.b".into(),
            page_size: 501,
            page_token: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let fields: Vec<_> = wmslink_platform::validation::violations_of(&status)
        .into_iter()
        .map(|(field, _)| field)
        .collect();
    assert_eq!(fields, ["subject", "page_size", "page_token"]);

    // Scope `operate`.
    let status = client(&setup, READER)
        .list(ops::ListDeadLettersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    setup.stop.cancel();
}

#[tokio::test]
async fn a_replayed_dead_letter_goes_back_to_its_subject_with_a_fresh_id_and_is_consumed() {
    let setup = setup().await;
    let mut operator = client(&setup, OPERATOR);
    let subject = format!("{}.orders.shop-a.status_changed", prefix_of(&setup));
    publish(&setup, subject.clone(), "event-1", b"bad event").await;
    let dead = wait_for_dead_letters(&mut operator, 1).await.remove(0);
    assert_eq!(dead.subject, "orders.shop-a.status_changed");

    // An unknown sequence among known ones: nothing is replayed.
    let status = operator
        .replay(ops::ReplayDeadLettersRequest {
            sequences: vec![dead.sequence, 999_999],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().contains("999999"), "{}", status.message());
    let status = operator
        .replay(ops::ReplayDeadLettersRequest {
            sequences: vec![dead.sequence, dead.sequence],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    *setup.handler.fixed.lock().unwrap() = true;
    let replayed = operator
        .replay(ops::ReplayDeadLettersRequest {
            sequences: vec![dead.sequence],
        })
        .await
        .unwrap()
        .into_inner()
        .replayed;
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0].subject, "orders.shop-a.status_changed");
    assert_ne!(replayed[0].msg_id, "event-1");

    // The consumer takes it again, under the new id, marked as a replay.
    let accepted = eventually(Duration::from_secs(20), "the replay consumed", || async {
        let accepted = setup.handler.accepted.lock().unwrap().clone();
        (!accepted.is_empty()).then_some(accepted)
    })
    .await;
    assert_eq!(
        accepted,
        [(
            replayed[0].msg_id.clone(),
            b"bad event".to_vec(),
            Some(dead.sequence.to_string())
        )]
    );

    // The republished message keeps the original headers and drops the dead-letter ones.
    let stream = setup
        .js
        .get_stream(setup.subjects.stream_name(StreamKind::Orders))
        .await
        .unwrap();
    let message = stream
        .get_raw_message(replayed[0].stream_sequence)
        .await
        .unwrap();
    assert_eq!(message.subject.as_str(), subject);
    let header = |name: &str| {
        message
            .headers
            .get(name)
            .map(|value| value.as_str().to_owned())
    };
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
    assert!(header("traceparent").is_some());
    for gone in [
        "Wmslink-Dead-Letter-Reason",
        "Wmslink-Original-Subject",
        "Wmslink-Consumer",
        "Wmslink-Deliveries",
        "Wmslink-Original-Msg-Id",
    ] {
        assert_eq!(header(gone), None, "{gone}");
    }
    // Replaying twice publishes twice (a fresh id each time), and the record stays listed.
    let again = operator
        .replay(ops::ReplayDeadLettersRequest {
            sequences: vec![dead.sequence],
        })
        .await
        .unwrap()
        .into_inner()
        .replayed;
    assert_ne!(again[0].msg_id, replayed[0].msg_id);
    assert_ne!(again[0].stream_sequence, replayed[0].stream_sequence);
    assert_eq!(list(&mut operator, "", 10, "").await.dead_letters.len(), 1);
    setup.stop.cancel();
}

fn prefix_of(setup: &Setup) -> String {
    setup
        .subjects
        .dead_letters_all()
        .trim_end_matches(".deadletter.>")
        .to_owned()
}

/// Dead letters are of every shop (one stream): a token bound to shops is refused on every
/// RPC of the service, even with `operate`, and even for a filter naming its own shop.
#[tokio::test]
async fn a_shop_bound_token_is_refused_on_every_dead_letter_rpc() {
    let setup = setup().await;
    let mut operator = client(&setup, OPERATOR);
    let subject = format!("{}.orders.shop-b.status_changed", prefix_of(&setup));
    publish(&setup, subject, "event-b", b"bad event of shop b").await;
    let dead = wait_for_dead_letters(&mut operator, 1).await.remove(0);

    let mut bound = client(&setup, BOUND_OPERATOR);
    let mut called = Vec::new();
    let status = bound
        .list(ops::ListDeadLettersRequest {
            subject: "orders.shop-a.>".into(),
            ..ops::ListDeadLettersRequest::default()
        })
        .await
        .map(|_| ())
        .unwrap_err();
    called.push(("/wmslink.ops.v1.DeadLetterService/List", status.code()));
    let status = bound
        .replay(ops::ReplayDeadLettersRequest {
            sequences: vec![dead.sequence],
        })
        .await
        .map(|_| ())
        .unwrap_err();
    called.push(("/wmslink.ops.v1.DeadLetterService/Replay", status.code()));

    let every_rpc = wmslink_platform::authz::methods_of("wmslink.ops.v1.DeadLetterService");
    assert_eq!(
        called
            .iter()
            .map(|(rpc, _)| rpc.to_string())
            .collect::<Vec<_>>(),
        every_rpc,
        "the test calls every RPC"
    );
    for (rpc, code) in called {
        assert_eq!(code, Code::PermissionDenied, "{rpc}");
    }
    // Nothing was replayed: the dead letter is still the only one, and still there.
    let left = list(&mut operator, "", 10, "").await.dead_letters;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].sequence, dead.sequence);
    setup.stop.cancel();
}
