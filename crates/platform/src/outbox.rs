//! The transactional outbox: a service writes its business rows and the events they cause in one
//! transaction ([`enqueue`]); the [`OutboxRelay`] publishes committed rows to JetStream in id
//! order with `Nats-Msg-Id` = the row's message id, and marks them published. A crash between
//! commit and publish loses nothing (the row stays unpublished) and a crash between publish and
//! mark duplicates nothing downstream (JetStream dedup, and the consumers' processed-id tables).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use async_nats::jetstream::context::PublishErrorKind;
use opentelemetry::metrics::{Counter, Gauge, Meter};
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The `[outbox]` section of every service that publishes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct OutboxConfig {
    /// Run the relay that publishes committed outbox rows. Off only to simulate a crash between
    /// commit and publish in tests; rows wait in the table until a relay runs.
    pub relay_enabled: bool,
    /// How often the relay looks for rows when no commit woke it.
    pub poll_interval_ms: u64,
    /// Published rows older than this are deleted (hourly, and at start).
    pub keep_published_ms: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            relay_enabled: true,
            poll_interval_ms: 200,
            keep_published_ms: 7 * 24 * 3600 * 1000,
        }
    }
}

impl crate::config::Validate for OutboxConfig {
    fn check(&self, section: &str, problems: &mut crate::config::InvalidConfig) {
        problems.check(
            self.poll_interval_ms >= 1,
            crate::config::key(section, "poll_interval_ms"),
            "must be at least 1",
        );
    }
}

impl OutboxConfig {
    /// The relay, unless switched off.
    pub fn relay(&self, pool: &PgPool, js: &jetstream::Context) -> Option<OutboxRelay> {
        self.relay_enabled.then(|| {
            OutboxRelay::new(pool.clone(), js.clone())
                .with_poll_interval(Duration::from_millis(self.poll_interval_ms))
        })
    }

    pub fn keep_published(&self) -> Duration {
        Duration::from_millis(self.keep_published_ms)
    }
}

/// Header carrying the content type of a payload.
pub const CONTENT_TYPE: &str = "Content-Type";
pub const PROTOBUF: &str = "application/protobuf";

/// One event to publish after commit.
#[derive(Debug, Clone)]
pub struct OutboxMessage {
    /// Unique per event; becomes `Nats-Msg-Id`. Usually also the payload's `event_id`.
    pub msg_id: String,
    pub subject: String,
    pub payload: Vec<u8>,
    pub headers: BTreeMap<String, String>,
}

impl OutboxMessage {
    /// A protobuf event, carrying the current W3C trace context.
    pub fn protobuf(subject: String, msg_id: String, message: &impl prost::Message) -> Self {
        let mut headers = BTreeMap::new();
        headers.insert(CONTENT_TYPE.to_owned(), PROTOBUF.to_owned());
        crate::telemetry::inject_trace_context_into_map(&mut headers);
        Self {
            msg_id,
            subject,
            payload: message.encode_to_vec(),
            headers,
        }
    }
}

/// A new, time-ordered event id.
pub fn new_event_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Writes `message` into the outbox inside the caller's transaction.
pub async fn enqueue(conn: &mut PgConnection, message: &OutboxMessage) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO outbox (msg_id, subject, payload, headers) VALUES ($1, $2, $3, $4)")
        .bind(&message.msg_id)
        .bind(&message.subject)
        .bind(&message.payload)
        .bind(sqlx::types::Json(&message.headers))
        .execute(conn)
        .await?;
    Ok(())
}

/// Writes `messages` into the outbox inside the caller's transaction, in one statement, in
/// their order (their ids, which the relay publishes by, keep it).
pub async fn enqueue_many(
    conn: &mut PgConnection,
    messages: &[OutboxMessage],
) -> Result<(), sqlx::Error> {
    match messages {
        [] => return Ok(()),
        [message] => return enqueue(conn, message).await,
        _ => {}
    }
    let mut msg_ids = Vec::with_capacity(messages.len());
    let mut subjects = Vec::with_capacity(messages.len());
    let mut payloads = Vec::with_capacity(messages.len());
    let mut headers = Vec::with_capacity(messages.len());
    for message in messages {
        msg_ids.push(message.msg_id.as_str());
        subjects.push(message.subject.as_str());
        payloads.push(message.payload.as_slice());
        headers.push(sqlx::types::Json(&message.headers));
    }
    sqlx::query(
        "INSERT INTO outbox (msg_id, subject, payload, headers)
         SELECT m, s, p, h FROM UNNEST($1::text[], $2::text[], $3::bytea[], $4::jsonb[])
           WITH ORDINALITY AS o(m, s, p, h, n)
          ORDER BY n",
    )
    .bind(&msg_ids)
    .bind(&subjects)
    .bind(&payloads)
    .bind(&headers)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    msg_id: String,
    subject: String,
    payload: Vec<u8>,
    headers: sqlx::types::Json<BTreeMap<String, String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("outbox database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("publish {subject}: {reason}")]
    Publish { subject: String, reason: String },
}

/// The relay's instruments:
///
/// - `wmslink.outbox.published` (counter, `{message}`): outbox rows published to JetStream;
/// - `wmslink.outbox.backlog` (gauge, `{message}`): rows not yet published, sampled by
///   [`OutboxRelay::run`] every 15 s (every replica reports the same database: take the max);
/// - `wmslink.outbox.unpublishable` (counter, `{message}`): rows NATS refused for good (over
///   its `max_payload`), moved to `outbox_unpublishable` with the reason. Alert on any.
#[derive(Debug, Clone)]
pub struct OutboxMetrics {
    published: Counter<u64>,
    backlog: Gauge<u64>,
    unpublishable: Counter<u64>,
}

impl OutboxMetrics {
    /// The instruments on `meter` (a test passes its own provider's meter).
    pub fn new(meter: &Meter) -> Self {
        Self {
            published: meter
                .u64_counter("wmslink.outbox.published")
                .with_description("Outbox rows published to JetStream")
                .with_unit("{message}")
                .build(),
            backlog: meter
                .u64_gauge("wmslink.outbox.backlog")
                .with_description("Outbox rows not yet published")
                .with_unit("{message}")
                .build(),
            unpublishable: meter
                .u64_counter("wmslink.outbox.unpublishable")
                .with_description("Outbox rows NATS can never take, moved aside")
                .with_unit("{message}")
                .build(),
        }
    }

    /// The process-wide instruments, created on first use from the global meter provider
    /// (so after [`crate::telemetry::init`]).
    pub fn global() -> &'static Self {
        static METRICS: OnceLock<OutboxMetrics> = OnceLock::new();
        METRICS.get_or_init(|| {
            Self::new(&crate::telemetry::meter(
                env!("CARGO_PKG_NAME"),
                env!("CARGO_PKG_VERSION"),
            ))
        })
    }

    pub fn published(&self, count: usize) {
        if count > 0 {
            self.published
                .add(u64::try_from(count).unwrap_or(u64::MAX), &[]);
        }
    }

    pub fn unpublishable(&self, count: usize) {
        if count > 0 {
            self.unpublishable
                .add(u64::try_from(count).unwrap_or(u64::MAX), &[]);
        }
    }

    pub fn backlog(&self, rows: u64) {
        self.backlog.record(rows, &[]);
    }
}

/// How often [`OutboxRelay::run`] counts the unpublished rows for `wmslink.outbox.backlog`.
const BACKLOG_EVERY: Duration = Duration::from_secs(15);

/// Publishes outbox rows. One relay at a time per database (a transaction-scoped advisory
/// lock), so rows go out in id order even with several replicas.
#[derive(Clone)]
pub struct OutboxRelay {
    pool: PgPool,
    js: jetstream::Context,
    wake: Arc<Notify>,
    batch_size: i64,
    poll_interval: Duration,
    metrics: OutboxMetrics,
}

/// Wakes the relay at once after a commit instead of waiting for the next poll. The default one
/// wakes nothing (no relay runs).
#[derive(Clone, Default)]
pub struct RelayWaker(Arc<Notify>);

impl RelayWaker {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

const RELAY_LOCK: i64 = 7_262_002;

impl OutboxRelay {
    pub fn new(pool: PgPool, js: jetstream::Context) -> Self {
        Self {
            pool,
            js,
            wake: Arc::new(Notify::new()),
            batch_size: 500,
            poll_interval: Duration::from_millis(200),
            metrics: OutboxMetrics::global().clone(),
        }
    }

    /// Looks for rows this often when no commit woke it (default 200 ms).
    pub fn with_poll_interval(mut self, poll_interval: Duration) -> Self {
        self.poll_interval = poll_interval;
        self
    }

    /// Records on `metrics` instead of the process-wide instruments.
    pub fn with_metrics(mut self, metrics: OutboxMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Counts the unpublished rows (the partial index `outbox_unpublished` keeps this cheap).
    pub async fn backlog(&self) -> Result<u64, sqlx::Error> {
        let rows: i64 =
            sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                .fetch_one(&self.pool)
                .await?;
        Ok(u64::try_from(rows).unwrap_or(0))
    }

    pub fn waker(&self) -> RelayWaker {
        RelayWaker(self.wake.clone())
    }

    /// Runs until `shutdown`; errors are logged and retried, never fatal.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut failures: u32 = 0;
        let mut backlog_due = tokio::time::Instant::now();
        loop {
            let now = tokio::time::Instant::now();
            if now >= backlog_due {
                backlog_due = now + BACKLOG_EVERY;
                match self.backlog().await {
                    Ok(rows) => self.metrics.backlog(rows),
                    Err(err) => {
                        tracing::debug!(error = %err, "outbox relay: cannot count the backlog")
                    }
                }
            }
            let outcome = self.publish_batch().await;
            let pause = match outcome {
                Ok(n) if n as i64 >= self.batch_size => {
                    failures = 0;
                    continue;
                }
                Ok(_) => {
                    failures = 0;
                    self.poll_interval
                }
                Err(err) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %err, failures, "outbox relay: batch failed, will retry");
                    Duration::from_millis(200u64.saturating_mul(1 << failures.min(5)))
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Publishes what the outbox holds, batch after batch, until it is empty or `within` has
    /// passed (the final flush at shutdown: what is left goes out at the next start). Returns how
    /// many rows went out.
    pub async fn flush(&self, within: Duration) -> Result<usize, RelayError> {
        let deadline = tokio::time::Instant::now() + within;
        let mut total = 0;
        loop {
            match tokio::time::timeout_at(deadline, self.publish_batch()).await {
                Err(_) => {
                    tracing::warn!(published = total, "final outbox flush timed out");
                    return Ok(total);
                }
                Ok(Err(err)) => return Err(err),
                Ok(Ok(n)) => {
                    total += n;
                    if (n as i64) < self.batch_size {
                        return Ok(total);
                    }
                }
            }
        }
    }

    /// Publishes up to one batch of unpublished rows; returns how many left the outbox
    /// (published, or moved to `outbox_unpublishable` because NATS can never take them).
    pub async fn publish_batch(&self) -> Result<usize, RelayError> {
        let mut tx = self.pool.begin().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(RELAY_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            return Ok(0);
        }
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, msg_id, subject, payload, headers FROM outbox
             WHERE published_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(self.batch_size)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }

        // Send the whole batch, then await the acks in order: JetStream keeps a connection's
        // publish order, so per-order ordering holds and latency is paid once per batch.
        let mut pending = Vec::with_capacity(rows.len());
        let mut unpublishable = Vec::new();
        let mut first_error = None;
        for row in &rows {
            let mut headers = HeaderMap::new();
            for (name, value) in row.headers.iter() {
                headers.insert(name.as_str(), value.as_str());
            }
            headers.insert(async_nats::header::NATS_MESSAGE_ID, row.msg_id.as_str());
            match self
                .js
                .publish_with_headers(row.subject.clone(), headers, row.payload.clone().into())
                .await
            {
                Ok(ack) => pending.push((row.id, ack)),
                // No retry can help a message over NATS's limit: move it aside (below) so it
                // does not stop every row behind it, for every shop.
                Err(err) if err.kind() == PublishErrorKind::MaxPayloadExceeded => {
                    let size = row.payload.len();
                    tracing::error!(
                        msg_id = %row.msg_id,
                        subject = %row.subject,
                        payload_bytes = size,
                        "outbox row over the NATS message limit, moved to outbox_unpublishable"
                    );
                    unpublishable.push((
                        row.id,
                        format!("{err} (payload of {size} bytes plus headers)"),
                    ));
                }
                Err(err) => {
                    first_error = Some(RelayError::Publish {
                        subject: row.subject.clone(),
                        reason: err.to_string(),
                    });
                    break;
                }
            }
        }
        let mut published = Vec::with_capacity(pending.len());
        for (id, ack) in pending {
            match ack.await {
                Ok(_) => published.push(id),
                Err(err) => {
                    // Later rows may be stored too; they are re-sent with the same
                    // Nats-Msg-Id and deduplicated by JetStream.
                    first_error.get_or_insert(RelayError::Publish {
                        subject: format!("outbox row {id}"),
                        reason: err.to_string(),
                    });
                    break;
                }
            }
        }
        if !published.is_empty() {
            sqlx::query("UPDATE outbox SET published_at = now() WHERE id = ANY($1)")
                .bind(&published)
                .execute(&mut *tx)
                .await?;
        }
        for (id, reason) in &unpublishable {
            set_aside(&mut tx, *id, reason).await?;
        }
        tx.commit().await?;
        self.metrics.published(published.len());
        self.metrics.unpublishable(unpublishable.len());
        match first_error {
            Some(err) => Err(err),
            None => Ok(published.len() + unpublishable.len()),
        }
    }
}

/// Moves outbox row `id` to `outbox_unpublishable` with `reason`.
async fn set_aside(conn: &mut PgConnection, id: i64, reason: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH moved AS (DELETE FROM outbox WHERE id = $1
                        RETURNING id, msg_id, subject, payload, headers, created_at)
         INSERT INTO outbox_unpublishable (id, msg_id, subject, payload, headers, created_at, reason)
         SELECT id, msg_id, subject, payload, headers, created_at, $2 FROM moved
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes published rows older than `keep`, so the table stays small.
pub async fn prune(pool: &PgPool, keep: Duration) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM outbox WHERE published_at IS NOT NULL
           AND published_at < now() - make_interval(secs => $1)",
    )
    .bind(keep.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::testing::MetricsCapture;

    #[test]
    fn outbox_metrics_count_published_rows_and_keep_the_last_backlog() {
        let capture = MetricsCapture::new();
        let metrics = OutboxMetrics::new(&capture.meter());
        metrics.published(3);
        metrics.published(0);
        metrics.published(2);
        metrics.backlog(40);
        metrics.backlog(7);
        let published = capture.point("wmslink.outbox.published", &[]);
        assert_eq!(published.map(|p| p.value), Some(5.0));
        let backlog = capture.point("wmslink.outbox.backlog", &[]);
        assert_eq!(backlog.map(|p| p.value), Some(7.0));
        metrics.unpublishable(0);
        metrics.unpublishable(1);
        let unpublishable = capture.point("wmslink.outbox.unpublishable", &[]);
        assert_eq!(unpublishable.map(|p| p.value), Some(1.0));
    }
}
