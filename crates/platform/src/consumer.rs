//! Durable JetStream pull consumers with explicit acks, delayed NAKs for transient failures and
//! a dead-letter stream for everything that cannot be processed, so one bad message never blocks
//! the ones behind it and nothing is silently dropped. Every delivery is counted by outcome, and
//! every dead letter by reason ([`ConsumerMetrics`]).
//!
//! Handlers read a message through its [`Delivery`]: [`Delivery::decode`] (protobuf, or proto3
//! JSON when `Content-Type` says so, size-bounded) and [`Delivery::shop`] (the shop of the
//! subject, which must be the payload's), so every service decodes and checks the same way.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::{self, AckKind, Message};
use futures::{FutureExt, StreamExt};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Meter};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{InvalidConfig, Validate, key};
use crate::nats::{STREAM_MAX_AGE, Subjects};
use crate::shop::ShopId;

/// Headers set on a dead-lettered message.
pub const DEAD_LETTER_REASON: &str = "Wmslink-Dead-Letter-Reason";
pub const DEAD_LETTER_SUBJECT: &str = "Wmslink-Original-Subject";
pub const DEAD_LETTER_CONSUMER: &str = "Wmslink-Consumer";
pub const DEAD_LETTER_DELIVERIES: &str = "Wmslink-Deliveries";
/// Set when the dead letter holds only the start of the message (which, with the dead-letter
/// headers, would not fit NATS's `max_payload`): the original size in bytes. Such a dead letter
/// cannot be replayed.
pub const DEAD_LETTER_TRUNCATED: &str = "Wmslink-Truncated-From-Bytes";

/// Room kept free under `max_payload` for the protocol's own bytes.
const DEAD_LETTER_MARGIN: usize = 512;

/// Largest payload a consumer decodes unless its spec says otherwise (NATS's default
/// `max_payload`).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Why a message could not be processed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HandleError {
    /// Something this service depends on is down or unreachable (PostgreSQL, the settings
    /// service, NATS, a token the dependency refuses): the message itself is fine and waits out
    /// the outage, redelivered with capped back-off for as long as it takes. Never
    /// dead-lettered, so an outage never loses an order or a cancellation.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Worth retrying a few times (a conflict, a failure that may be this message's own); after
    /// `max_deliver` deliveries it is dead-lettered.
    #[error("transient: {0}")]
    Transient(String),
    /// Retrying cannot help (undecodable, invalid, unknown shop): dead-letter it at once.
    #[error("{0}")]
    Permanent(String),
}

impl HandleError {
    pub fn unavailable(err: impl std::fmt::Display) -> Self {
        Self::Unavailable(err.to_string())
    }
    pub fn transient(err: impl std::fmt::Display) -> Self {
        Self::Transient(err.to_string())
    }
    pub fn permanent(err: impl std::fmt::Display) -> Self {
        Self::Permanent(err.to_string())
    }
    /// A field of the payload that is not acceptable: `invalid <field>: <reason>`.
    pub fn invalid(field: &str, reason: impl std::fmt::Display) -> Self {
        Self::Permanent(format!("invalid {field}: {reason}"))
    }
}

impl From<sqlx::Error> for HandleError {
    /// The database being down or out of reach is an outage ([`HandleError::Unavailable`]);
    /// an error the database answered about this message's work is [`HandleError::Transient`].
    fn from(err: sqlx::Error) -> Self {
        if crate::db::is_unavailable(&err) {
            Self::Unavailable(format!("database: {err}"))
        } else {
            Self::Transient(format!("database: {err}"))
        }
    }
}

/// How a payload is encoded, from its `Content-Type` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    /// proto3 JSON, for publishers that cannot speak protobuf.
    Json,
}

impl Encoding {
    /// The encoding named by a `Content-Type` value (parameters such as `charset` are ignored);
    /// no header, or an empty one, means protobuf.
    pub fn of(content_type: Option<&str>) -> Result<Self, String> {
        let Some(raw) = content_type else {
            return Ok(Self::Protobuf);
        };
        let media = raw.split(';').next().unwrap_or_default().trim();
        if media.is_empty() {
            return Ok(Self::Protobuf);
        }
        match media.to_ascii_lowercase().as_str() {
            "application/json" => Ok(Self::Json),
            "application/protobuf" | "application/x-protobuf" | "application/octet-stream" => {
                Ok(Self::Protobuf)
            }
            _ => Err(format!(
                "unsupported content type '{}': use application/protobuf (default) or application/json",
                raw.chars().take(100).collect::<String>()
            )),
        }
    }
}

/// Decodes `payload` as the message type `T` in `encoding`.
pub fn decode<T>(payload: &[u8], encoding: Encoding) -> Result<T, String>
where
    T: prost::Message + prost::Name + Default,
{
    let full_name = T::full_name();
    match encoding {
        Encoding::Protobuf => {
            T::decode(payload).map_err(|err| format!("undecodable protobuf {full_name}: {err}"))
        }
        Encoding::Json => wmslink_proto::json::decode::<T>(&full_name, payload)
            .map_err(|err| format!("undecodable JSON {full_name}: {err}")),
    }
}

/// What a handler sees of a message.
pub struct Delivery<'a> {
    pub subject: &'a str,
    pub payload: &'a [u8],
    pub headers: Option<&'a async_nats::HeaderMap>,
    /// `Nats-Msg-Id` when the publisher set one, else `<stream>:<sequence>` (for logs and
    /// answers; record [`Self::dedup_id`], not this).
    pub msg_id: String,
    /// The id to record as processed in the same transaction as the effects: the subject (which
    /// names the shop) and `msg_id`, so one shop's `Nats-Msg-Id` never marks another shop's
    /// message as processed.
    pub dedup_id: String,
    pub delivered: i64,
    /// The message's `consume` span (carrying its publisher's trace context): a batch handler
    /// enters it while it works on this message, so logs and the events it enqueues belong to
    /// the message's trace.
    pub span: tracing::Span,
    subjects: &'a Subjects,
    max_message_bytes: usize,
}

impl<'a> Delivery<'a> {
    /// A delivery for handlers run outside a consumer (tools, tests).
    pub fn new(
        subjects: &'a Subjects,
        subject: &'a str,
        payload: &'a [u8],
        headers: Option<&'a async_nats::HeaderMap>,
        msg_id: String,
    ) -> Self {
        Self {
            subject,
            payload,
            headers,
            dedup_id: dedup_id(subject, &msg_id),
            msg_id,
            delivered: 1,
            span: tracing::Span::current(),
            subjects,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }

    /// The header `name`, matched without regard to case.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        let headers = self.headers?;
        if let Some(value) = headers.get(name) {
            return Some(value.as_str());
        }
        headers.iter().find_map(|(candidate, values)| {
            let candidate: &str = candidate.as_ref();
            candidate
                .eq_ignore_ascii_case(name)
                .then(|| values.first().map(|value| value.as_str()))
                .flatten()
        })
    }

    /// The payload as `T`: at most the consumer's `max_message_bytes`, protobuf unless
    /// `Content-Type` is `application/json` (proto3 JSON, unknown fields refused). Every
    /// refusal is permanent, with the reason.
    pub fn decode<T>(&self) -> Result<T, HandleError>
    where
        T: prost::Message + prost::Name + Default,
    {
        if self.payload.len() > self.max_message_bytes {
            return Err(HandleError::Permanent(format!(
                "message too big: {} bytes; at most {} are accepted",
                self.payload.len(),
                self.max_message_bytes
            )));
        }
        let encoding = Encoding::of(self.header(crate::outbox::CONTENT_TYPE))
            .map_err(HandleError::Permanent)?;
        decode(self.payload, encoding).map_err(HandleError::Permanent)
    }

    /// The shop of the subject (`<area>.<shop>.…`), which must be `payload_shop`, the shop named
    /// by the payload's `field` (tenancy: a message never acts on another shop's data).
    pub fn shop(&self, payload_shop: &str, field: &str) -> Result<ShopId, HandleError> {
        let Some(token) = self.subjects.shop_of(self.subject) else {
            return Err(HandleError::Permanent(format!(
                "tenancy: the subject {} names no shop",
                self.subject
            )));
        };
        if token != payload_shop {
            return Err(HandleError::Permanent(format!(
                "tenancy: the subject {} is for shop '{token}' but {field} is '{payload_shop}'",
                self.subject
            )));
        }
        ShopId::parse(token).map_err(|err| {
            HandleError::Permanent(format!(
                "invalid shop id '{token}' in the subject {}: {err}",
                self.subject
            ))
        })
    }
}

/// The processed-message id of `msg_id` on `subject`: `<subject> <msg_id>` (a subject has no
/// spaces).
pub fn dedup_id(subject: &str, msg_id: &str) -> String {
    format!("{subject} {msg_id}")
}

/// Processes one message. Must be idempotent on [`Delivery::dedup_id`].
pub trait Handler: Send + Sync + 'static {
    fn handle(
        &self,
        delivery: &Delivery<'_>,
    ) -> impl Future<Output = Result<(), HandleError>> + Send;
}

/// Processes several messages at once (e.g. in one transaction with one commit). Must be
/// idempotent on each `msg_id`, and one message's failure must never become another's: every
/// delivery gets its own outcome.
pub trait BatchHandler: Send + Sync + 'static {
    /// One outcome per delivery, in the order of `deliveries` (the stream's order).
    fn handle_batch(
        &self,
        deliveries: &[Delivery<'_>],
    ) -> impl Future<Output = Vec<Result<(), HandleError>>> + Send;
}

/// The `[consumers]` section, the same in every service that consumes from JetStream: how its
/// durable consumers redeliver, and how long processed message ids are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsumersConfig {
    /// How long a delivered message may stay unacknowledged before it is redelivered.
    pub ack_wait_ms: u64,
    /// Deliveries of a transiently failing message before it is dead-lettered. A message
    /// waiting for a dependency that is down ([`HandleError::Unavailable`]) has no limit.
    pub max_deliver: i64,
    /// First redelivery delay after a transient failure; doubles per delivery up to
    /// `retry_max_delay_ms`.
    pub retry_base_delay_ms: u64,
    pub retry_max_delay_ms: u64,
    /// Processed message ids (`processed_messages`) are pruned after this; at least the
    /// streams' retention (7 days), as long as a message can still be delivered.
    pub keep_processed_ms: u64,
    /// A message still waiting for an unavailable dependency this long after it was
    /// published is logged as a warning and counted (`wmslink.consumer.long_waits`) at each
    /// further delivery.
    pub long_wait_warn_ms: u64,
    /// Messages a batching consumer hands its handler at once at most (those already
    /// delivered; it never waits for more). Consumers that take one message at a time
    /// ignore it.
    pub max_batch: usize,
}

impl Default for ConsumersConfig {
    fn default() -> Self {
        Self {
            ack_wait_ms: 30_000,
            max_deliver: 10,
            retry_base_delay_ms: 500,
            retry_max_delay_ms: 60_000,
            keep_processed_ms: 8 * 24 * 3600 * 1000,
            long_wait_warn_ms: 5 * 60 * 1000,
            max_batch: 100,
        }
    }
}

impl Validate for ConsumersConfig {
    fn check(&self, section: &str, problems: &mut InvalidConfig) {
        problems.check(
            self.ack_wait_ms >= 100,
            key(section, "ack_wait_ms"),
            "must be at least 100",
        );
        problems.check(
            self.max_deliver >= 1,
            key(section, "max_deliver"),
            "must be at least 1",
        );
        problems.check(
            (1..=1000).contains(&self.max_batch),
            key(section, "max_batch"),
            "must be between 1 and 1000 (the consumer's max_ack_pending)",
        );
        problems.check(
            self.retry_base_delay_ms >= 1,
            key(section, "retry_base_delay_ms"),
            "must be at least 1",
        );
        problems.check(
            self.retry_max_delay_ms >= self.retry_base_delay_ms,
            key(section, "retry_max_delay_ms"),
            "must be at least retry_base_delay_ms",
        );
        let stream_ms = u64::try_from(STREAM_MAX_AGE.as_millis()).unwrap_or(u64::MAX);
        problems.check(
            self.keep_processed_ms >= stream_ms,
            key(section, "keep_processed_ms"),
            format!(
                "must be at least {stream_ms} (the streams keep a message 7 days; a redelivery \
                 of an id pruned earlier would be processed twice)"
            ),
        );
    }
}

impl ConsumersConfig {
    /// The spec of one durable consumer with this section's redelivery rules.
    pub fn spec(&self, stream: String, durable_name: &str, filter_subject: String) -> ConsumerSpec {
        ConsumerSpec {
            ack_wait: Duration::from_millis(self.ack_wait_ms),
            max_deliver: self.max_deliver,
            base_delay: Duration::from_millis(self.retry_base_delay_ms),
            max_delay: Duration::from_millis(self.retry_max_delay_ms),
            long_wait_warn: Duration::from_millis(self.long_wait_warn_ms),
            max_batch: self.max_batch,
            ..ConsumerSpec::new(stream, durable_name.to_owned(), filter_subject)
        }
    }

    pub fn keep_processed(&self) -> Duration {
        Duration::from_millis(self.keep_processed_ms)
    }
}

#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    pub stream: String,
    pub durable_name: String,
    pub filter_subject: String,
    pub ack_wait: Duration,
    /// Deliveries before a transiently failing message is dead-lettered.
    pub max_deliver: i64,
    /// First redelivery delay after a transient failure; doubles per delivery up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Larger payloads are dead-lettered by [`Delivery::decode`] without being decoded.
    pub max_message_bytes: usize,
    /// See [`ConsumersConfig::long_wait_warn_ms`].
    pub long_wait_warn: Duration,
    /// See [`ConsumersConfig::max_batch`].
    pub max_batch: usize,
}

impl ConsumerSpec {
    pub fn new(stream: String, durable_name: String, filter_subject: String) -> Self {
        let defaults = ConsumersConfig::default();
        Self {
            stream,
            durable_name,
            filter_subject,
            ack_wait: Duration::from_millis(defaults.ack_wait_ms),
            max_deliver: defaults.max_deliver,
            base_delay: Duration::from_millis(defaults.retry_base_delay_ms),
            max_delay: Duration::from_millis(defaults.retry_max_delay_ms),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            long_wait_warn: Duration::from_millis(defaults.long_wait_warn_ms),
            max_batch: defaults.max_batch,
        }
    }

    /// The same consumer with another payload limit.
    pub fn with_max_message_bytes(mut self, max_message_bytes: usize) -> Self {
        self.max_message_bytes = max_message_bytes;
        self
    }

    fn config(&self) -> pull::Config {
        pull::Config {
            durable_name: Some(self.durable_name.clone()),
            filter_subject: self.filter_subject.clone(),
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            ack_wait: self.ack_wait,
            // Unlimited on the server: the consumer decides ([`Decision::of`]). A message
            // waiting out an outage is redelivered for as long as it takes; one failing
            // transiently on its own is dead-lettered at `max_deliver`.
            max_deliver: -1,
            max_ack_pending: 1000,
            ..Default::default()
        }
    }

    /// Delay before redelivery number `delivered + 1`.
    pub fn retry_delay(&self, delivered: i64) -> Duration {
        let attempt = u32::try_from(delivered.max(1)).unwrap_or(u32::MAX);
        crate::backoff::delay(self.base_delay, self.max_delay, attempt)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("consumer {durable} on {stream}: {reason}")]
    Setup {
        stream: String,
        durable: String,
        reason: String,
    },
    /// The consumer went away (deleted, or pulls keep failing): set it up again.
    #[error("consumer {durable} on {stream} lost: {reason}")]
    Lost {
        stream: String,
        durable: String,
        reason: String,
    },
}

/// Pull requests that may fail in a row before the consumer is set up again.
const MAX_PULL_FAILURES: u32 = 3;

/// Creates the durable consumer or brings its config up to date (never keeps a stale config).
pub async fn ensure_consumer(
    js: &jetstream::Context,
    spec: &ConsumerSpec,
) -> Result<consumer::Consumer<pull::Config>, ConsumerError> {
    let setup = |reason: String| ConsumerError::Setup {
        stream: spec.stream.clone(),
        durable: spec.durable_name.clone(),
        reason,
    };
    let stream = js
        .get_stream(&spec.stream)
        .await
        .map_err(|err| setup(err.to_string()))?;
    let config = spec.config();
    match stream.create_consumer(config.clone()).await {
        Ok(consumer) => Ok(consumer),
        Err(create_err) => stream
            .update_consumer(config)
            .await
            .map_err(|err| setup(format!("{create_err}; update: {err}"))),
    }
}

/// Ensures the consumer, calls `on_ready`, then consumes until `shutdown`, one message at a
/// time. Never stops on one message's error; returns an error when the consumer cannot be set
/// up, or is lost (deleted, or pulls keep failing), so that its task is restarted and sets it
/// up again.
pub async fn run<H: Handler>(
    js: &jetstream::Context,
    subjects: &Subjects,
    spec: &ConsumerSpec,
    handler: &H,
    shutdown: &CancellationToken,
    on_ready: impl Future<Output = ()>,
) -> Result<(), ConsumerError> {
    consume(js, spec, shutdown, on_ready, 1, |mut batch| async move {
        if let Some(message) = batch.pop() {
            process(js, subjects, spec, handler, message).await;
        }
    })
    .await
}

/// Like [`run`], but hands the handler every message already delivered, up to `max_batch` at
/// once (the spec's `max_batch`, [`BatchHandler`]): one message when they trickle in (no waiting for more), full
/// batches under load. Each message is then acknowledged, retried or dead-lettered on its own
/// outcome, exactly as [`run`] does.
pub async fn run_batched<H: BatchHandler>(
    js: &jetstream::Context,
    subjects: &Subjects,
    spec: &ConsumerSpec,
    handler: &H,
    shutdown: &CancellationToken,
    on_ready: impl Future<Output = ()>,
) -> Result<(), ConsumerError> {
    consume(
        js,
        spec,
        shutdown,
        on_ready,
        spec.max_batch.max(1),
        |batch| process_batch(js, subjects, spec, handler, batch),
    )
    .await
}

/// The pull loop shared by [`run`] and [`run_batched`]: waits for a message, takes the ones
/// already delivered behind it (up to `max_batch`), and processes them before pulling more.
async fn consume<F, Fut>(
    js: &jetstream::Context,
    spec: &ConsumerSpec,
    shutdown: &CancellationToken,
    on_ready: impl Future<Output = ()>,
    max_batch: usize,
    mut process: F,
) -> Result<(), ConsumerError>
where
    F: FnMut(Vec<Message>) -> Fut,
    Fut: Future<Output = ()>,
{
    let consumer = ensure_consumer(js, spec).await?;
    on_ready.await;
    let lost = |reason: String| ConsumerError::Lost {
        stream: spec.stream.clone(),
        durable: spec.durable_name.clone(),
        reason,
    };
    let mut pull_failures: u32 = 0;
    while !shutdown.is_cancelled() {
        let mut messages = match consumer.messages().await {
            Ok(messages) => {
                pull_failures = 0;
                messages
            }
            Err(err) => {
                pull_failures += 1;
                if pull_failures >= MAX_PULL_FAILURES {
                    return Err(lost(format!("cannot pull: {err}")));
                }
                tracing::warn!(error = %err, consumer = %spec.durable_name, "cannot pull; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                next = messages.next() => next,
            };
            let first = match next {
                None => break,
                Some(Err(err)) if err.kind() == pull::MessagesErrorKind::ConsumerDeleted => {
                    return Err(lost(err.to_string()));
                }
                // Missing heartbeats and similar: not fatal, keep consuming.
                Some(Err(err)) => {
                    tracing::warn!(error = %err, consumer = %spec.durable_name, "consume stream");
                    continue;
                }
                Some(Ok(message)) => message,
            };
            // Whatever has already arrived behind it joins the batch; nothing waits for more.
            let mut batch = vec![first];
            let mut deleted = None;
            let mut ended = false;
            while batch.len() < max_batch {
                match messages.next().now_or_never() {
                    Some(Some(Ok(message))) => batch.push(message),
                    Some(Some(Err(err)))
                        if err.kind() == pull::MessagesErrorKind::ConsumerDeleted =>
                    {
                        deleted = Some(err.to_string());
                        break;
                    }
                    Some(Some(Err(err))) => {
                        tracing::warn!(error = %err, consumer = %spec.durable_name, "consume stream");
                    }
                    Some(None) => {
                        ended = true;
                        break;
                    }
                    None => break,
                }
            }
            process(batch).await;
            if let Some(reason) = deleted {
                return Err(lost(reason));
            }
            if ended {
                break;
            }
        }
    }
    Ok(())
}

/// What the consumer knows of one message before its handler runs.
struct Received {
    msg_id: String,
    delivered: i64,
    published: Option<time::OffsetDateTime>,
    span: tracing::Span,
}

impl Received {
    fn of(spec: &ConsumerSpec, message: &Message) -> Self {
        let (delivered, stream_sequence, published) = match message.info() {
            Ok(info) => (info.delivered, info.stream_sequence, Some(info.published)),
            Err(_) => (1, 0, None),
        };
        let msg_id = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(async_nats::header::NATS_MESSAGE_ID))
            .map(|value| value.as_str().to_owned())
            .unwrap_or_else(|| format!("{}:{stream_sequence}", spec.stream));
        let span = tracing::info_span!(
            "consume",
            consumer = %spec.durable_name,
            subject = %message.subject,
            msg_id = %msg_id,
            delivered
        );
        crate::telemetry::adopt_trace_context(&span, message.headers.as_ref());
        Self {
            msg_id,
            delivered,
            published,
            span,
        }
    }

    fn delivery<'a>(
        &self,
        spec: &ConsumerSpec,
        subjects: &'a Subjects,
        message: &'a Message,
    ) -> Delivery<'a> {
        Delivery {
            subject: message.subject.as_str(),
            payload: &message.payload,
            headers: message.headers.as_ref(),
            dedup_id: dedup_id(message.subject.as_str(), &self.msg_id),
            msg_id: self.msg_id.clone(),
            delivered: self.delivered,
            span: self.span.clone(),
            subjects,
            max_message_bytes: spec.max_message_bytes,
        }
    }
}

async fn process<H: Handler>(
    js: &jetstream::Context,
    subjects: &Subjects,
    spec: &ConsumerSpec,
    handler: &H,
    message: Message,
) {
    let received = Received::of(spec, &message);
    let delivery = received.delivery(spec, subjects, &message);
    let outcome = handler
        .handle(&delivery)
        .instrument(received.span.clone())
        .await;
    settle(js, subjects, spec, &message, &received, outcome).await;
}

async fn process_batch<H: BatchHandler>(
    js: &jetstream::Context,
    subjects: &Subjects,
    spec: &ConsumerSpec,
    handler: &H,
    messages: Vec<Message>,
) {
    let received: Vec<Received> = messages
        .iter()
        .map(|message| Received::of(spec, message))
        .collect();
    let deliveries: Vec<Delivery<'_>> = received
        .iter()
        .zip(&messages)
        .map(|(received, message)| received.delivery(spec, subjects, message))
        .collect();
    let span = tracing::info_span!(
        "consume_batch",
        consumer = %spec.durable_name,
        messages = messages.len()
    );
    let mut outcomes = handler
        .handle_batch(&deliveries)
        .instrument(span)
        .await
        .into_iter();
    let settled = messages.iter().zip(&received).map(|(message, received)| {
        // A handler that returned too few outcomes: the rest come back later.
        let outcome = outcomes.next().unwrap_or_else(|| {
            Err(HandleError::Transient(
                "internal: the batch handler gave no outcome".to_owned(),
            ))
        });
        settle(js, subjects, spec, message, received, outcome)
    });
    futures::future::join_all(settled).await;
}

/// Acknowledges, redelivers or dead-letters one message by its handler's outcome.
async fn settle(
    js: &jetstream::Context,
    subjects: &Subjects,
    spec: &ConsumerSpec,
    message: &Message,
    received: &Received,
    outcome: Result<(), HandleError>,
) {
    let delivered = received.delivered;
    let span = received.span.clone();
    let metrics = ConsumerMetrics::global();
    let decision = Decision::of(outcome, delivered, spec);
    let ack = async {
        match decision {
            Decision::Ack => {
                metrics.record(&spec.durable_name, &spec.stream, ConsumeOutcome::Ok);
                message.ack().await
            }
            Decision::Retry { reason, delay } => {
                tracing::warn!(%reason, ?delay, "transient failure; will redeliver");
                metrics.record(&spec.durable_name, &spec.stream, ConsumeOutcome::Retried);
                message.ack_with(AckKind::Nak(Some(delay))).await
            }
            Decision::Wait { reason, delay } => {
                let waited = received.published.map(waited_since).unwrap_or_default();
                if waited >= spec.long_wait_warn {
                    tracing::warn!(%reason, ?delay, waited_s = waited.as_secs(), "still waiting for a dependency; will redeliver");
                    metrics.long_wait(&spec.durable_name, &spec.stream);
                } else {
                    tracing::info!(%reason, ?delay, "a dependency is unavailable; will redeliver");
                }
                metrics.record(&spec.durable_name, &spec.stream, ConsumeOutcome::Waiting);
                message.ack_with(AckKind::Nak(Some(delay))).await
            }
            Decision::DeadLetter { reason, why } => {
                match dead_letter(js, subjects, spec, message, delivered, &reason).await {
                    Ok(()) => {
                        tracing::warn!(%reason, "message dead-lettered");
                        metrics.record(
                            &spec.durable_name,
                            &spec.stream,
                            ConsumeOutcome::DeadLettered(why),
                        );
                        message.ack_with(AckKind::Term).await
                    }
                    Err(dlq_err) => {
                        tracing::error!(%reason, error = %dlq_err, "dead-letter publish failed; will redeliver");
                        metrics.record(&spec.durable_name, &spec.stream, ConsumeOutcome::Retried);
                        message
                            .ack_with(AckKind::Nak(Some(spec.retry_delay(delivered))))
                            .await
                    }
                }
            }
        }
    }
    .instrument(span)
    .await;
    if let Err(err) = ack {
        // The message will come back after ack_wait; processing is idempotent.
        tracing::warn!(parent: &received.span, error = %err, "ack failed");
    }
}

/// How long ago a message was first published (zero if its clock is ahead of ours).
fn waited_since(published: time::OffsetDateTime) -> Duration {
    let waited = time::OffsetDateTime::now_utc() - published;
    waited.try_into().unwrap_or_default()
}

/// What to do with a delivery once its handler returned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision {
    Ack,
    Retry {
        reason: String,
        delay: Duration,
    },
    /// A dependency is down: redeliver later, whatever the delivery count.
    Wait {
        reason: String,
        delay: Duration,
    },
    DeadLetter {
        reason: String,
        why: DeadLetterReason,
    },
}

impl Decision {
    fn of(outcome: Result<(), HandleError>, delivered: i64, spec: &ConsumerSpec) -> Self {
        match outcome {
            Ok(()) => Self::Ack,
            Err(HandleError::Unavailable(reason)) => Self::Wait {
                reason,
                delay: spec.retry_delay(delivered),
            },
            Err(HandleError::Transient(reason)) if delivered < spec.max_deliver => Self::Retry {
                reason,
                delay: spec.retry_delay(delivered),
            },
            Err(HandleError::Transient(reason)) => Self::DeadLetter {
                reason: format!("gave up after {delivered} deliveries: {reason}"),
                why: DeadLetterReason::RetriesExhausted,
            },
            Err(HandleError::Permanent(reason)) => Self::DeadLetter {
                reason,
                why: DeadLetterReason::Permanent,
            },
        }
    }
}

/// How one delivery ended, for [`ConsumerMetrics`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumeOutcome {
    /// Handled and acknowledged.
    Ok,
    /// Failed transiently (or its dead letter could not be published): redelivered later.
    Retried,
    /// A dependency was unavailable: redelivered later, without a delivery limit.
    Waiting,
    /// Copied to the dead-letter stream and terminated.
    DeadLettered(DeadLetterReason),
}

impl ConsumeOutcome {
    /// `ok`, `retried`, `waiting`, `dead_lettered`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Retried => "retried",
            Self::Waiting => "waiting",
            Self::DeadLettered(_) => "dead_lettered",
        }
    }
}

/// Why a message was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterReason {
    /// The handler said retrying cannot help.
    Permanent,
    /// Still failing transiently at the last allowed delivery.
    RetriesExhausted,
}

impl DeadLetterReason {
    /// `permanent`, `retries_exhausted`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Permanent => "permanent",
            Self::RetriesExhausted => "retries_exhausted",
        }
    }
}

/// The consumers' instruments:
///
/// - `wmslink.consumer.messages` (counter, `{message}`): deliveries handled, by `consumer`
///   (durable name), `stream` and `outcome` (`ok`, `retried`, `waiting`, `dead_lettered`);
/// - `wmslink.consumer.long_waits` (counter, `{delivery}`): deliveries of a message that has
///   been waiting for an unavailable dependency longer than `long_wait_warn_ms`, by
///   `consumer` and `stream` (alert when it grows);
/// - `wmslink.consumer.dead_letters` (counter, `{message}`): messages copied to the
///   dead-letter stream, by `consumer`, `stream` and `reason` (`permanent`,
///   `retries_exhausted`).
///
/// Never the subject (it names the shop) nor anything of the payload.
#[derive(Debug, Clone)]
pub struct ConsumerMetrics {
    messages: Counter<u64>,
    dead_letters: Counter<u64>,
    long_waits: Counter<u64>,
}

impl ConsumerMetrics {
    /// The instruments on `meter` (a test passes its own provider's meter).
    pub fn new(meter: &Meter) -> Self {
        Self {
            messages: meter
                .u64_counter("wmslink.consumer.messages")
                .with_description(
                    "Messages handled by a JetStream consumer, one per delivery, by outcome",
                )
                .with_unit("{message}")
                .build(),
            dead_letters: meter
                .u64_counter("wmslink.consumer.dead_letters")
                .with_description("Messages copied to the dead-letter stream")
                .with_unit("{message}")
                .build(),
            long_waits: meter
                .u64_counter("wmslink.consumer.long_waits")
                .with_description(
                    "Deliveries of a message that has waited long for an unavailable dependency",
                )
                .with_unit("{delivery}")
                .build(),
        }
    }

    /// Counts one delivery of a message that has waited long for a dependency.
    pub fn long_wait(&self, consumer: &str, stream: &str) {
        self.long_waits.add(
            1,
            &[
                KeyValue::new("consumer", consumer.to_owned()),
                KeyValue::new("stream", stream.to_owned()),
            ],
        );
    }

    /// The process-wide instruments, created on first use from the global meter provider
    /// (so after [`crate::telemetry::init`]).
    pub fn global() -> &'static Self {
        static METRICS: OnceLock<ConsumerMetrics> = OnceLock::new();
        METRICS.get_or_init(|| {
            Self::new(&crate::telemetry::meter(
                env!("CARGO_PKG_NAME"),
                env!("CARGO_PKG_VERSION"),
            ))
        })
    }

    /// Counts one delivery of `consumer` on `stream`.
    pub fn record(&self, consumer: &str, stream: &str, outcome: ConsumeOutcome) {
        let consumer = KeyValue::new("consumer", consumer.to_owned());
        let stream = KeyValue::new("stream", stream.to_owned());
        self.messages.add(
            1,
            &[
                consumer.clone(),
                stream.clone(),
                KeyValue::new("outcome", outcome.as_str()),
            ],
        );
        if let ConsumeOutcome::DeadLettered(reason) = outcome {
            self.dead_letters.add(
                1,
                &[consumer, stream, KeyValue::new("reason", reason.as_str())],
            );
        }
    }
}

async fn dead_letter(
    js: &jetstream::Context,
    subjects: &Subjects,
    spec: &ConsumerSpec,
    message: &Message,
    delivered: i64,
    reason: &str,
) -> Result<(), String> {
    let message_id: &str = async_nats::header::NATS_MESSAGE_ID.as_ref();
    // The dead letter gets no Nats-Msg-Id of its own (two dead letters of one message must
    // both be kept); the original id is kept for tracing.
    let mut clean = async_nats::HeaderMap::new();
    if let Some(headers) = &message.headers {
        for (name, values) in headers.iter() {
            let name: &str = name.as_ref();
            let target = if name == message_id {
                "Wmslink-Original-Msg-Id"
            } else {
                name
            };
            for value in values {
                clean.append(target, value.as_str());
            }
        }
    }
    let max_payload = js.client().server_info().max_payload;
    if header_bytes(&clean) + DEAD_LETTER_MARGIN > max_payload / 2 {
        // Headers that large are not ours: keep only what the dead letter itself says.
        clean = async_nats::HeaderMap::new();
    }
    clean.insert(DEAD_LETTER_REASON, truncate(reason, 1024).as_str());
    clean.insert(DEAD_LETTER_SUBJECT, message.subject.as_str());
    clean.insert(DEAD_LETTER_CONSUMER, spec.durable_name.as_str());
    clean.insert(DEAD_LETTER_DELIVERIES, delivered.to_string().as_str());
    // A message near the limit plus these headers would not fit: keep its start, say so, and
    // never fail for size (the reason is what matters; the stream still holds the original
    // until it ages out).
    let room = max_payload.saturating_sub(header_bytes(&clean) + DEAD_LETTER_MARGIN);
    let payload = if message.payload.len() > room {
        clean.insert(
            DEAD_LETTER_TRUNCATED,
            message.payload.len().to_string().as_str(),
        );
        message.payload.slice(..room)
    } else {
        message.payload.clone()
    };
    js.publish_with_headers(
        subjects.dead_letter(message.subject.as_str()),
        clean,
        payload,
    )
    .await
    .map_err(|err| err.to_string())?
    .await
    .map_err(|err| err.to_string())?;
    Ok(())
}

/// The bytes `headers` take on the wire (`NATS/1.0\r\n`, `name: value\r\n` each, `\r\n`).
fn header_bytes(headers: &async_nats::HeaderMap) -> usize {
    let lines: usize = headers
        .iter()
        .map(|(name, values)| {
            let name: &str = name.as_ref();
            values
                .iter()
                .map(|value| name.len() + value.as_str().len() + 4)
                .sum::<usize>()
        })
        .sum();
    12 + lines
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.replace(['\r', '\n'], " ");
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::telemetry::testing::MetricsCapture;

    fn spec() -> ConsumerSpec {
        let mut spec = ConsumerSpec::new("ORDERS".into(), "dispatcher-updated".into(), "x".into());
        spec.max_deliver = 3;
        spec
    }

    #[test]
    fn decisions_follow_the_outcome_and_the_delivery_count() {
        let spec = spec();
        assert_eq!(Decision::of(Ok(()), 1, &spec), Decision::Ack);
        assert_eq!(
            Decision::of(Err(HandleError::transient("db down")), 2, &spec),
            Decision::Retry {
                reason: "db down".into(),
                delay: spec.retry_delay(2)
            }
        );
        assert_eq!(
            Decision::of(Err(HandleError::transient("db down")), 3, &spec),
            Decision::DeadLetter {
                reason: "gave up after 3 deliveries: db down".into(),
                why: DeadLetterReason::RetriesExhausted
            }
        );
        assert_eq!(
            Decision::of(Err(HandleError::permanent("undecodable")), 1, &spec),
            Decision::DeadLetter {
                reason: "undecodable".into(),
                why: DeadLetterReason::Permanent
            }
        );
        // An outage never spends the delivery budget: far past max_deliver it still waits,
        // at the capped delay.
        for delivered in [1, 3, 50, 10_000] {
            assert_eq!(
                Decision::of(Err(HandleError::unavailable("db down")), delivered, &spec),
                Decision::Wait {
                    reason: "db down".into(),
                    delay: spec.retry_delay(delivered)
                }
            );
        }
        assert_eq!(spec.retry_delay(10_000), spec.max_delay);
    }

    #[test]
    fn the_server_never_stops_redelivering_the_consumer_decides() {
        assert_eq!(spec().config().max_deliver, -1);
    }

    #[test]
    fn consumer_metrics_count_deliveries_by_outcome_and_dead_letters_by_reason() {
        let capture = MetricsCapture::new();
        let metrics = ConsumerMetrics::new(&capture.meter());
        let (consumer, stream) = ("dispatcher-updated", "t1_ORDERS");
        metrics.record(consumer, stream, ConsumeOutcome::Ok);
        metrics.record(consumer, stream, ConsumeOutcome::Ok);
        metrics.record(consumer, stream, ConsumeOutcome::Retried);
        metrics.record(
            consumer,
            stream,
            ConsumeOutcome::DeadLettered(DeadLetterReason::Permanent),
        );
        metrics.record(
            "sync-observed",
            "t1_WMS",
            ConsumeOutcome::DeadLettered(DeadLetterReason::RetriesExhausted),
        );

        let messages = |consumer: &str, stream: &str, outcome: &str| {
            capture
                .point(
                    "wmslink.consumer.messages",
                    &[
                        ("consumer", consumer),
                        ("outcome", outcome),
                        ("stream", stream),
                    ],
                )
                .map(|point| point.value)
        };
        assert_eq!(messages(consumer, stream, "ok"), Some(2.0));
        assert_eq!(messages(consumer, stream, "retried"), Some(1.0));
        assert_eq!(messages(consumer, stream, "dead_lettered"), Some(1.0));
        assert_eq!(
            messages("sync-observed", "t1_WMS", "dead_lettered"),
            Some(1.0)
        );
        assert_eq!(messages("sync-observed", "t1_WMS", "ok"), None);
        assert_eq!(capture.points("wmslink.consumer.messages").len(), 4);

        let dead_letters = capture.points("wmslink.consumer.dead_letters");
        assert_eq!(dead_letters.len(), 2, "{dead_letters:?}");
        let permanent = capture
            .point(
                "wmslink.consumer.dead_letters",
                &[
                    ("consumer", consumer),
                    ("reason", "permanent"),
                    ("stream", stream),
                ],
            )
            .unwrap();
        assert_eq!(permanent.value, 1.0);
        assert!(
            capture
                .point(
                    "wmslink.consumer.dead_letters",
                    &[
                        ("consumer", "sync-observed"),
                        ("reason", "retries_exhausted"),
                        ("stream", "t1_WMS")
                    ],
                )
                .is_some()
        );
    }

    #[test]
    fn retry_delay_grows_and_is_capped() {
        let spec = ConsumerSpec::new("S".into(), "d".into(), "x".into());
        assert_eq!(spec.retry_delay(1), Duration::from_millis(500));
        assert_eq!(spec.retry_delay(2), Duration::from_secs(1));
        assert_eq!(spec.retry_delay(3), Duration::from_secs(2));
        assert_eq!(spec.retry_delay(30), Duration::from_secs(60));
    }

    #[test]
    fn the_consumers_section_is_validated_and_makes_the_specs() {
        let config = ConsumersConfig::default();
        assert_eq!(config.validate(), Ok(()));
        let spec = config.spec("S".into(), "d", "x".into());
        assert_eq!(spec.ack_wait, Duration::from_secs(30));
        assert_eq!(spec.max_deliver, 10);
        assert_eq!(spec.retry_delay(30), Duration::from_secs(60));
        let bad = ConsumersConfig {
            ack_wait_ms: 99,
            max_deliver: 0,
            retry_base_delay_ms: 10,
            retry_max_delay_ms: 5,
            keep_processed_ms: 3_600_000,
            long_wait_warn_ms: 1_000,
            max_batch: 0,
        };
        let mut problems = InvalidConfig::new();
        bad.check("consumers", &mut problems);
        let keys: Vec<&str> = problems
            .problems()
            .iter()
            .filter_map(|problem| problem.split(':').next())
            .collect();
        assert_eq!(
            keys,
            [
                "consumers.ack_wait_ms",
                "consumers.max_deliver",
                "consumers.max_batch",
                "consumers.retry_max_delay_ms",
                "consumers.keep_processed_ms"
            ]
        );
    }

    #[test]
    fn content_type_selects_the_decoder() {
        assert_eq!(Encoding::of(None), Ok(Encoding::Protobuf));
        assert_eq!(Encoding::of(Some("")), Ok(Encoding::Protobuf));
        assert_eq!(Encoding::of(Some("application/json")), Ok(Encoding::Json));
        assert_eq!(
            Encoding::of(Some("Application/JSON; charset=utf-8")),
            Ok(Encoding::Json)
        );
        assert_eq!(
            Encoding::of(Some("application/protobuf")),
            Ok(Encoding::Protobuf)
        );
        assert!(Encoding::of(Some("text/xml")).is_err());
    }

    fn headers(pairs: &[(&str, &str)]) -> async_nats::HeaderMap {
        let mut headers = async_nats::HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, *value);
        }
        headers
    }

    #[test]
    fn a_delivery_decodes_protobuf_or_json_within_its_size() {
        use prost::Message as _;
        use wmslink_proto::orders::v1::Order;
        let subjects = Subjects::new("p").unwrap();
        let order = Order {
            shop_id: "s1".into(),
            order_no: "A-1".into(),
            revision: 2,
            ..Order::default()
        };
        let bytes = order.encode_to_vec();
        let subject = "p.cart.orders.s1.upserted";
        let delivery = Delivery::new(&subjects, subject, &bytes, None, "m1".into());
        assert_eq!(delivery.decode::<Order>().unwrap(), order);

        let json = br#"{"shopId":"s1","order_no":"A-1","revision":"2","orderDate":"2026-05-01T10:15:00+09:00"}"#;
        let json_headers = headers(&[("content-type", "application/json")]);
        let delivery = Delivery::new(&subjects, subject, json, Some(&json_headers), "m2".into());
        let decoded: Order = delivery.decode().unwrap();
        assert_eq!(decoded.revision, 2);
        assert_eq!(decoded.order_date.map(|ts| ts.seconds), Some(1_777_598_100));

        let refused = |payload: &[u8], headers: Option<&async_nats::HeaderMap>| match Delivery::new(
            &subjects,
            subject,
            payload,
            headers,
            "m".into(),
        )
        .decode::<Order>()
        {
            Err(HandleError::Permanent(reason)) => reason,
            other => panic!("expected a permanent refusal, got {other:?}"),
        };
        assert!(
            refused(b"\xff\xff\xff", None).contains("undecodable protobuf wmslink.orders.v1.Order")
        );
        assert!(
            refused(b"{\"nope\":1}", Some(&json_headers))
                .contains("undecodable JSON wmslink.orders.v1.Order")
        );
        let xml = headers(&[("Content-Type", "text/xml")]);
        assert!(refused(&bytes, Some(&xml)).contains("unsupported content type 'text/xml'"));

        let mut small = Delivery::new(&subjects, subject, &bytes, None, "m3".into());
        small.max_message_bytes = bytes.len() - 1;
        match small.decode::<Order>() {
            Err(HandleError::Permanent(reason)) => {
                assert!(reason.contains("message too big"), "{reason}")
            }
            other => panic!("expected too big, got {other:?}"),
        }
    }

    #[test]
    fn the_shop_of_the_subject_must_be_the_payloads() {
        let subjects = Subjects::new("p").unwrap();
        let shop = |subject: &str, payload_shop: &str| {
            Delivery::new(&subjects, subject, b"", None, "m".into()).shop(payload_shop, "shop_id")
        };
        assert_eq!(
            shop("p.orders.s1.updated", "s1").unwrap(),
            ShopId::parse("s1").unwrap()
        );
        assert_eq!(
            shop("p.cart.orders.s1.upserted", "s1").unwrap().as_str(),
            "s1"
        );
        let reason = |result: Result<ShopId, HandleError>| match result {
            Err(HandleError::Permanent(reason)) => reason,
            other => panic!("expected a permanent refusal, got {other:?}"),
        };
        assert_eq!(
            reason(shop("p.orders.s2.updated", "s1")),
            "tenancy: the subject p.orders.s2.updated is for shop 's2' but shop_id is 's1'"
        );
        assert!(reason(shop("q.orders.s1.updated", "s1")).contains("names no shop"));
        assert!(reason(shop("p.orders.s*.updated", "s*")).contains("invalid shop id 's*'"));
    }
}
