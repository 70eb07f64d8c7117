//! The HTTP client.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{Instrument, field};

use super::types::{
    MAX_IN_VALUES, MAX_ROWS_PER_REGISTRATION, MAX_SEARCH_LIMIT, RowOutcome, RowResult, SearchPage,
    SearchQuery, ShipmentInstruction, WmsOrder, normalize_json,
};
use crate::config::WmsClientConfig;
use crate::error::{WmsError, WmsErrorDetail};
use crate::limiter::{BucketId, RateLimiter};
use crate::metrics::WmsMetrics;
use crate::policy::{
    ForbiddenAddress, GuardedResolver, error_chain, guards_private_addresses, parse_base_url,
};

/// Largest answer body the client reads.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Guard against a WMS whose paging never ends.
const MAX_PAGES: usize = 10_000;

/// A client for one WMS account (one base URL and access key).
///
/// Cheap to clone (an `Arc` inside); keeps a connection pool. See the crate docs for the
/// request rules it applies.
#[derive(Clone)]
pub struct WmsClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: String,
    bucket: BucketId,
    limiter: Arc<dyn RateLimiter>,
    metrics: WmsMetrics,
}

impl fmt::Debug for WmsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WmsClient")
            .field("base_url", &self.inner.base)
            .field("bucket", &self.inner.bucket)
            .field("limiter", &self.inner.limiter)
            .finish_non_exhaustive()
    }
}

/// The result of [`WmsClient::register`]: per-row results of every batch that was answered,
/// and the first batch that failed as a whole, if any.
#[derive(Debug, Default)]
pub struct RegisterReport {
    /// Per-row results, in input order, of the batches that got an answer.
    pub rows: Vec<RowResult>,
    /// The first batch that failed as a whole. Batches after it were not sent.
    pub failed: Option<FailedBatch>,
}

/// A batch of [`RegisterReport`] that failed as a whole.
#[derive(Debug)]
pub struct FailedBatch {
    /// Why. When [`WmsError::may_have_been_applied`] is true, `order_nos` may be registered:
    /// search for them before any retry.
    pub error: WmsError,
    /// The `order_no`s of the failed batch.
    pub order_nos: Vec<String>,
    /// The `order_no`s after it, which were not sent.
    pub not_sent: Vec<String>,
}

/// The outcome of a connection check, as the settings service shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    /// HTTP 2xx with `result: "OK"` and a list in `data`.
    Ok,
    /// HTTP 401: wrong access key or this client's IP address is not allowed.
    Unauthorized,
    /// Host not found, connection refused.
    Unreachable,
    /// TLS handshake or certificate failure.
    Tls,
    /// No answer in time (connect or request timeout).
    Timeout,
    /// HTTP 429 (the key's budget is used up right now).
    RateLimited,
    /// The server answered, but not as the WMS does: `NG`, 5xx, a redirect, another status,
    /// a body that is not the envelope.
    UnexpectedAnswer,
    /// Not attempted: the URL breaks the request rules (plain http to a host not allowed,
    /// private address refused) or is not a valid URL, or the key is empty.
    RefusedByPolicy,
}

impl ConnectionStatus {
    /// `ok`, `unauthorized`, `unreachable`, `tls`, `timeout`, `rate_limited`,
    /// `unexpected_answer`, `refused_by_policy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Unauthorized => "unauthorized",
            Self::Unreachable => "unreachable",
            Self::Tls => "tls",
            Self::Timeout => "timeout",
            Self::RateLimited => "rate_limited",
            Self::UnexpectedAnswer => "unexpected_answer",
            Self::RefusedByPolicy => "refused_by_policy",
        }
    }

    /// The classification of a call error.
    pub fn from_error(err: &WmsError) -> Self {
        match err {
            WmsError::Unauthorized => Self::Unauthorized,
            WmsError::RateLimited { .. } => Self::RateLimited,
            WmsError::Unreachable(_) => Self::Unreachable,
            WmsError::Tls(_) => Self::Tls,
            WmsError::Timeout | WmsError::UnknownOutcome { .. } => Self::Timeout,
            WmsError::Transient { .. }
            | WmsError::Rejected { .. }
            | WmsError::Malformed(_)
            | WmsError::UnexpectedStatus { .. }
            | WmsError::Limiter(_)
            | WmsError::InvalidRequest(_) => Self::UnexpectedAnswer,
            WmsError::PolicyRefused(_) | WmsError::Config(_) => Self::RefusedByPolicy,
        }
    }
}

impl fmt::Display for ConnectionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`WmsClient::check_connection`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionReport {
    /// The classification.
    pub status: ConnectionStatus,
    /// A sentence for people: the WMS's own error text when it gave one, otherwise a fixed
    /// description. Never contains the access key or our internals.
    pub detail: String,
    /// How long the check took (rate-limit wait included).
    pub elapsed: Duration,
}

impl ConnectionReport {
    fn from_error(err: &WmsError, elapsed: Duration) -> Self {
        let status = ConnectionStatus::from_error(err);
        let detail = match err {
            WmsError::Unauthorized => {
                "the WMS refused the access key or this server's IP address (HTTP 401)".to_owned()
            }
            WmsError::RateLimited { retry_after } => format!(
                "the WMS rate limit for this access key is used up; retry after {} s",
                retry_after.as_secs().max(1)
            ),
            WmsError::Unreachable(_) => {
                "the WMS host could not be reached (not found or connection refused)".to_owned()
            }
            WmsError::Tls(_) => {
                "the TLS connection to the WMS failed (certificate or handshake)".to_owned()
            }
            WmsError::Timeout | WmsError::UnknownOutcome { .. } => {
                "the WMS did not answer in time".to_owned()
            }
            WmsError::Rejected { code, message, .. } => {
                format!("the WMS answered NG: {code}: {message}")
            }
            WmsError::Transient {
                status: Some(s), ..
            } => {
                format!("the WMS answered with HTTP {s}")
            }
            WmsError::UnexpectedStatus { status } => {
                format!("the server answered with HTTP {status}, which the WMS does not use")
            }
            WmsError::Transient { status: None, .. }
            | WmsError::Malformed(_)
            | WmsError::Limiter(_)
            | WmsError::InvalidRequest(_) => "the server's answer is not a WMS answer".to_owned(),
            WmsError::PolicyRefused(msg) | WmsError::Config(msg) => msg.clone(),
        };
        Self {
            status,
            detail,
            elapsed,
        }
    }
}

/// Check a WMS endpoint and access key before they are saved: builds a client and calls
/// [`WmsClient::check_connection`]; a URL or key the client refuses is reported as
/// [`ConnectionStatus::RefusedByPolicy`] without any network traffic.
pub async fn check_connection(
    base_url: &str,
    access_key: SecretString,
    config: &WmsClientConfig,
    limiter: Arc<dyn RateLimiter>,
) -> ConnectionReport {
    let start = Instant::now();
    match WmsClient::new(base_url, access_key, config, limiter) {
        Ok(client) => client.check_connection().await,
        Err(err) => ConnectionReport::from_error(&err, start.elapsed()),
    }
}

/// [`check_connection`] that gives up after `deadline` (the rate-limit wait included). What
/// the deadline cut short is classified by where it was: still waiting for the key's budget is
/// [`ConnectionStatus::RateLimited`]; a request that had gone out and got no answer yet is
/// [`ConnectionStatus::Timeout`] (a slow WMS, even when the budget was waited for first).
pub async fn check_connection_within(
    base_url: &str,
    access_key: SecretString,
    config: &WmsClientConfig,
    limiter: Arc<dyn RateLimiter>,
    deadline: Duration,
) -> ConnectionReport {
    let passed = Arc::new(AtomicBool::new(false));
    let watched: Arc<dyn RateLimiter> = Arc::new(PassWatch {
        inner: limiter,
        passed: passed.clone(),
    });
    let start = Instant::now();
    match tokio::time::timeout(
        deadline,
        check_connection(base_url, access_key, config, watched),
    )
    .await
    {
        Ok(report) => report,
        Err(_) if passed.load(Ordering::SeqCst) => ConnectionReport {
            status: ConnectionStatus::Timeout,
            detail: "the WMS did not answer in time".to_owned(),
            elapsed: start.elapsed(),
        },
        Err(_) => ConnectionReport {
            status: ConnectionStatus::RateLimited,
            detail: "the WMS rate limit for this access key is used up; try again later".to_owned(),
            elapsed: start.elapsed(),
        },
    }
}

/// A limiter that notes when it let the request go (the connection check goes on when the
/// limiter cannot be consulted, so an error counts as let through too).
#[derive(Debug)]
struct PassWatch {
    inner: Arc<dyn RateLimiter>,
    passed: Arc<AtomicBool>,
}

impl RateLimiter for PassWatch {
    fn acquire<'a>(
        &'a self,
        bucket: &'a BucketId,
    ) -> futures::future::BoxFuture<'a, Result<(), crate::limiter::LimiterError>> {
        Box::pin(async move {
            let result = self.inner.acquire(bucket).await;
            self.passed.store(true, Ordering::SeqCst);
            result
        })
    }

    fn defer<'a>(
        &'a self,
        bucket: &'a BucketId,
        retry_after: Duration,
    ) -> futures::future::BoxFuture<'a, Result<(), crate::limiter::LimiterError>> {
        self.inner.defer(bucket, retry_after)
    }
}

/// The envelope of every answer.
#[derive(Debug)]
struct Envelope {
    ok: bool,
    data: Value,
    errors: Vec<WmsErrorDetail>,
    total: Option<u64>,
}

#[derive(Deserialize)]
struct RawEnvelope {
    result: String,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    error: Option<Vec<WmsErrorDetail>>,
    #[serde(default)]
    total: Option<u64>,
}

fn parse_envelope(body: &[u8]) -> Result<Envelope, String> {
    let raw: RawEnvelope = serde_json::from_slice(body)
        .map_err(|e| format!("the answer is not the WMS's JSON envelope: {e}"))?;
    let ok = match raw.result.as_str() {
        "OK" => true,
        "NG" => false,
        other => return Err(format!("unknown result {other:?}")),
    };
    Ok(Envelope {
        ok,
        data: raw.data,
        errors: raw.error.unwrap_or_default(),
        total: raw.total,
    })
}

#[derive(Deserialize)]
struct RawRow {
    #[serde(default)]
    order_no: Option<String>,
    result: String,
    #[serde(default)]
    order_id: Option<i64>,
    #[serde(default)]
    error: Option<Vec<WmsErrorDetail>>,
}

/// One call to make.
struct Call {
    method: Method,
    /// Path template for spans (`/order/{order_id}`).
    template: &'static str,
    path: String,
    query: String,
    body: Option<Vec<u8>>,
    /// Safe to repeat: a lost answer is a plain timeout/transient error, not an unknown outcome.
    idempotent: bool,
    /// Go on when the limiter cannot be consulted (connection check only).
    limiter_fail_open: bool,
}

impl WmsClient {
    /// A client for the WMS at `base_url` with `access_key`, waiting on `limiter` before
    /// every call (bucket: [`BucketId::for_access_key`]).
    ///
    /// Fails with [`WmsError::PolicyRefused`] (plain http to a host not in
    /// `allow_http_hosts`, a private IP literal while those are refused) or
    /// [`WmsError::Config`] (invalid URL, URL with credentials/query, empty key or a key that
    /// cannot be sent in a header). Nothing is sent.
    pub fn new(
        base_url: &str,
        access_key: SecretString,
        config: &WmsClientConfig,
        limiter: Arc<dyn RateLimiter>,
    ) -> Result<Self, WmsError> {
        let url = parse_base_url(base_url, config)?;
        let key = access_key.expose_secret().trim();
        if key.is_empty() {
            return Err(WmsError::Config("the access key is empty".to_owned()));
        }
        let mut key_value = HeaderValue::from_str(key).map_err(|_| {
            WmsError::Config(
                "the access key contains characters not allowed in a header".to_owned(),
            )
        })?;
        key_value.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", key_value);
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));

        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(config.connect_timeout())
            .timeout(config.request_timeout())
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(config.user_agent.clone());
        if guards_private_addresses(&url, config) {
            builder = builder.dns_resolver(Arc::new(GuardedResolver));
        }
        let http = builder
            .build()
            .map_err(|e| WmsError::Config(format!("could not build the HTTP client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base: url.as_str().trim_end_matches('/').to_owned(),
                bucket: BucketId::for_access_key(&access_key, &config.bucket_salt),
                limiter,
                metrics: WmsMetrics::global().clone(),
            }),
        })
    }

    /// This client recording on `metrics` instead of the process-wide [`WmsMetrics::global`].
    pub fn with_metrics(self, metrics: WmsMetrics) -> Self {
        let inner = &self.inner;
        Self {
            inner: Arc::new(Inner {
                http: inner.http.clone(),
                base: inner.base.clone(),
                bucket: inner.bucket.clone(),
                limiter: inner.limiter.clone(),
                metrics,
            }),
        }
    }

    /// The base URL, without trailing slash.
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// The rate-limit bucket of this client's key.
    pub fn bucket(&self) -> &BucketId {
        &self.inner.bucket
    }

    /// Register 1 to 200 shipment instructions in one `POST /order/`.
    ///
    /// Returns one [`RowResult`] per row, in order, when the WMS answered per row (`OK`, or
    /// `NG` with per-row data): rejected rows (e.g. `E_DUPLICATE`) are not errors here.
    /// Text fields are normalised first (no lone CR). Errors: [`WmsError::InvalidRequest`]
    /// for 0 or more than 200 rows; [`WmsError::UnknownOutcome`] when the answer was lost or
    /// unreadable (search by `order_no` before any retry); the usual call errors otherwise.
    pub async fn register_batch(
        &self,
        rows: &[ShipmentInstruction],
    ) -> Result<Vec<RowResult>, WmsError> {
        let rows: Vec<&ShipmentInstruction> = rows.iter().collect();
        self.register_rows(&rows).await
    }

    /// [`register_batch`](Self::register_batch) of borrowed rows.
    pub(crate) async fn register_rows(
        &self,
        rows: &[&ShipmentInstruction],
    ) -> Result<Vec<RowResult>, WmsError> {
        if rows.is_empty() || rows.len() > MAX_ROWS_PER_REGISTRATION {
            return Err(WmsError::InvalidRequest(format!(
                "a registration takes 1 to {MAX_ROWS_PER_REGISTRATION} rows, got {}",
                rows.len()
            )));
        }
        #[derive(Serialize)]
        struct Body<'a> {
            data: &'a [&'a ShipmentInstruction],
        }
        let mut body = serde_json::to_value(Body { data: rows })
            .map_err(|e| WmsError::InvalidRequest(format!("rows cannot be encoded: {e}")))?;
        normalize_json(&mut body);
        let bytes = serde_json::to_vec(&body)
            .map_err(|e| WmsError::InvalidRequest(format!("rows cannot be encoded: {e}")))?;
        let env = self
            .execute(Call {
                method: Method::POST,
                template: "/order/",
                path: "/order/".to_owned(),
                query: String::new(),
                body: Some(bytes),
                idempotent: false,
                limiter_fail_open: false,
            })
            .await?;
        row_results(rows, env)
    }

    /// Register any number of rows, split into calls of at most 200 (450 rows: 3 calls).
    /// Stops at the first batch that fails as a whole; see [`RegisterReport`].
    pub async fn register(&self, rows: &[ShipmentInstruction]) -> RegisterReport {
        let mut report = RegisterReport::default();
        let mut done = 0;
        for chunk in rows.chunks(MAX_ROWS_PER_REGISTRATION) {
            match self.register_batch(chunk).await {
                Ok(results) => report.rows.extend(results),
                Err(error) => {
                    report.failed = Some(FailedBatch {
                        error,
                        order_nos: chunk.iter().map(|r| r.order_no.clone()).collect(),
                        not_sent: rows[done + chunk.len()..]
                            .iter()
                            .map(|r| r.order_no.clone())
                            .collect(),
                    });
                    break;
                }
            }
            done += chunk.len();
        }
        report
    }

    /// One `GET /order/search` call (one page).
    pub async fn search(&self, query: &SearchQuery) -> Result<SearchPage, WmsError> {
        self.search_inner(query, false).await
    }

    async fn search_inner(
        &self,
        query: &SearchQuery,
        limiter_fail_open: bool,
    ) -> Result<SearchPage, WmsError> {
        query.validate()?;
        let env = self
            .execute(Call {
                method: Method::GET,
                template: "/order/search",
                path: "/order/search".to_owned(),
                query: query.to_query_string(),
                body: None,
                idempotent: true,
                limiter_fail_open,
            })
            .await?;
        if !env.ok {
            return Err(WmsError::rejected(env.errors));
        }
        let orders: Vec<WmsOrder> = match env.data {
            Value::Null => Vec::new(),
            data @ Value::Array(_) => serde_json::from_value(data)
                .map_err(|e| WmsError::Malformed(format!("search data: {e}")))?,
            _ => return Err(WmsError::Malformed("search data is not a list".to_owned())),
        };
        Ok(SearchPage {
            orders,
            total: env.total,
        })
    }

    /// Every order matching `query`'s filters, paging with `limit=200` and `offset` until
    /// `total` is reached or, when the WMS gives no `total`, until a page comes back short
    /// (the query's own limit/offset are ignored).
    pub async fn search_all(&self, query: &SearchQuery) -> Result<Vec<WmsOrder>, WmsError> {
        let mut out = Vec::new();
        let mut offset: u32 = 0;
        for _ in 0..MAX_PAGES {
            let page_query = query.clone().limit(MAX_SEARCH_LIMIT).offset(offset);
            let page = self.search(&page_query).await?;
            let n = page.orders.len();
            out.extend(page.orders);
            offset = offset.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
            let total_reached = page.total.is_some_and(|total| u64::from(offset) >= total);
            if n == 0 || total_reached || n < MAX_SEARCH_LIMIT as usize {
                return Ok(out);
            }
        }
        Err(WmsError::Malformed(format!(
            "search paging did not end after {MAX_PAGES} pages"
        )))
    }

    /// The WMS orders with these `order_no`s (`order_no-in`, 100 per call, each call paged):
    /// 250 order numbers make 3 searches. An `order_no` registered, cancelled and registered
    /// again appears once per WMS order.
    pub async fn find_by_order_nos<S: AsRef<str>>(
        &self,
        order_nos: &[S],
    ) -> Result<Vec<WmsOrder>, WmsError> {
        let mut out = Vec::new();
        for chunk in order_nos.chunks(MAX_IN_VALUES) {
            let q = SearchQuery::new().order_no_in(chunk.iter().map(|s| s.as_ref().to_owned()));
            out.extend(self.search_all(&q).await?);
        }
        Ok(out)
    }

    /// `GET /order/{order_id}`. An unknown id is [`WmsError::Rejected`] (code from the WMS,
    /// `E_NOT_FOUND` for the simulator).
    pub async fn get_order(&self, order_id: i64) -> Result<WmsOrder, WmsError> {
        let env = self
            .execute(Call {
                method: Method::GET,
                template: "/order/{order_id}",
                path: format!("/order/{order_id}"),
                query: String::new(),
                body: None,
                idempotent: true,
                limiter_fail_open: false,
            })
            .await?;
        if !env.ok {
            return Err(WmsError::rejected(env.errors));
        }
        let data = match env.data {
            Value::Array(mut items) if items.len() == 1 => items.remove(0),
            other => other,
        };
        serde_json::from_value(data).map_err(|e| WmsError::Malformed(format!("order data: {e}")))
    }

    /// `GET /order_cancel/{order_id}`: cancel one order, irreversibly. `Ok` also when it was
    /// already cancelled. Refused as [`WmsError::Rejected`] with `E_NOT_CANCELLABLE` when
    /// shipped or in 90/95/100. A lost answer is [`WmsError::UnknownOutcome`].
    pub async fn cancel_order(&self, order_id: i64) -> Result<(), WmsError> {
        let env = self
            .execute(Call {
                method: Method::GET,
                template: "/order_cancel/{order_id}",
                path: format!("/order_cancel/{order_id}"),
                query: String::new(),
                body: None,
                idempotent: false,
                limiter_fail_open: false,
            })
            .await?;
        if env.ok {
            Ok(())
        } else {
            Err(WmsError::rejected(env.errors))
        }
    }

    /// The connection check: `GET /order/search?limit=1`, classified into a
    /// [`ConnectionStatus`]. Waits on the rate limiter like any call (and goes on if the
    /// limiter itself is unavailable). Never fails; see [`ConnectionReport`].
    pub async fn check_connection(&self) -> ConnectionReport {
        let start = Instant::now();
        match self.search_inner(&SearchQuery::new().limit(1), true).await {
            Ok(_) => ConnectionReport {
                status: ConnectionStatus::Ok,
                detail: "connected: the WMS accepted the access key".to_owned(),
                elapsed: start.elapsed(),
            },
            Err(err) => ConnectionReport::from_error(&err, start.elapsed()),
        }
    }

    async fn execute(&self, call: Call) -> Result<Envelope, WmsError> {
        let method = call.method.clone();
        let endpoint = call.template;
        let span = tracing::info_span!(
            "wms_call",
            otel.kind = "client",
            method = %call.method,
            path = call.template,
            bucket = self.inner.bucket.short(),
            status = field::Empty,
            outcome = field::Empty,
            limiter_wait_ms = field::Empty,
            elapsed_ms = field::Empty,
        );
        let start = Instant::now();
        let mut sent_at = None;
        let result = self
            .execute_inner(call, &span, &mut sent_at)
            .instrument(span.clone())
            .await;
        let elapsed = start.elapsed().as_millis() as u64;
        span.record("elapsed_ms", elapsed);
        let outcome = match &result {
            Ok(env) => {
                let outcome = if env.ok { "ok" } else { "ng" };
                span.record("outcome", outcome);
                span.in_scope(|| tracing::debug!(outcome, elapsed_ms = elapsed, "WMS call done"));
                outcome
            }
            Err(err) => {
                span.record("outcome", err.kind());
                span.in_scope(|| {
                    tracing::warn!(outcome = err.kind(), elapsed_ms = elapsed, error = %err, "WMS call failed")
                });
                err.kind()
            }
        };
        self.inner.metrics.call(
            method.as_str(),
            endpoint,
            outcome,
            sent_at.map(|at: Instant| at.elapsed()),
        );
        result
    }

    /// `sent_at` is set when the limiter let the call through and the request goes out.
    async fn execute_inner(
        &self,
        call: Call,
        span: &tracing::Span,
        sent_at: &mut Option<Instant>,
    ) -> Result<Envelope, WmsError> {
        let wait_start = Instant::now();
        match self.inner.limiter.acquire(&self.inner.bucket).await {
            Ok(()) => self.inner.metrics.limiter_waited(
                call.method.as_str(),
                call.template,
                wait_start.elapsed(),
            ),
            Err(e) if call.limiter_fail_open => {
                tracing::warn!(error = %e, "rate limiter unavailable; the connection check goes on");
            }
            Err(e) => return Err(WmsError::Limiter(e.0)),
        }
        span.record("limiter_wait_ms", wait_start.elapsed().as_millis() as u64);
        *sent_at = Some(Instant::now());

        let mut url = format!("{}{}", self.inner.base, call.path);
        if !call.query.is_empty() {
            url.push('?');
            url.push_str(&call.query);
        }
        let mut req = self.inner.http.request(call.method.clone(), url);
        if let Some(body) = call.body {
            req = req
                .header(CONTENT_TYPE, "application/json; charset=utf-8")
                .body(body);
        }
        let mut resp = req
            .send()
            .await
            .map_err(|e| classify_transport(&e, call.idempotent))?;
        let status = resp.status();
        span.record("status", status.as_u16());
        let retry_after = resp.headers().get(RETRY_AFTER).and_then(parse_retry_after);

        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_BODY_BYTES {
                        return Err(if call.idempotent || !status.is_success() {
                            WmsError::Malformed("the answer is larger than 16 MiB".to_owned())
                        } else {
                            WmsError::UnknownOutcome {
                                detail: "the answer is larger than 16 MiB".to_owned(),
                            }
                        });
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(classify_transport(&e, call.idempotent)),
            }
        }

        match status {
            StatusCode::UNAUTHORIZED => Err(WmsError::Unauthorized),
            StatusCode::TOO_MANY_REQUESTS => {
                let retry_after = retry_after.unwrap_or(Duration::from_secs(1));
                if let Err(e) = self
                    .inner
                    .limiter
                    .defer(&self.inner.bucket, retry_after)
                    .await
                {
                    tracing::warn!(error = %e, "could not push the rate-limit bucket back");
                }
                Err(WmsError::RateLimited { retry_after })
            }
            s if s.is_server_error() => {
                let wms_text = parse_envelope(&body)
                    .ok()
                    .and_then(|env| env.errors.into_iter().next())
                    .map(|d| format!(": {}: {}", d.code, d.message))
                    .unwrap_or_default();
                // A server that failed may have done the work first (or go on doing it):
                // for a registration or a cancel any 5xx is an unknown outcome.
                if !call.idempotent {
                    return Err(WmsError::UnknownOutcome {
                        detail: format!("HTTP {}{wms_text}", s.as_u16()),
                    });
                }
                Err(WmsError::Transient {
                    status: Some(s.as_u16()),
                    detail: format!("HTTP {}{wms_text}", s.as_u16()),
                })
            }
            s if s.is_success() => parse_envelope(&body).map_err(|msg| {
                if call.idempotent {
                    WmsError::Malformed(msg)
                } else {
                    WmsError::UnknownOutcome {
                        detail: format!("unreadable answer: {msg}"),
                    }
                }
            }),
            s if s.is_client_error() => match parse_envelope(&body) {
                Ok(env) if !env.ok => Err(WmsError::rejected(env.errors)),
                _ => Err(WmsError::UnexpectedStatus { status: s.as_u16() }),
            },
            s => Err(WmsError::UnexpectedStatus { status: s.as_u16() }),
        }
    }
}

fn row_results(rows: &[&ShipmentInstruction], env: Envelope) -> Result<Vec<RowResult>, WmsError> {
    let items = match env.data {
        Value::Array(items) if items.len() == rows.len() => items,
        Value::Null if !env.ok => return Err(WmsError::rejected(env.errors)),
        Value::Array(items) if !env.ok && items.is_empty() => {
            return Err(WmsError::rejected(env.errors));
        }
        _ => {
            return Err(WmsError::UnknownOutcome {
                detail: format!(
                    "the answer does not hold one result per row ({} rows sent)",
                    rows.len()
                ),
            });
        }
    };
    let mut out = Vec::with_capacity(rows.len());
    for (row, item) in rows.iter().zip(items) {
        let raw: RawRow = serde_json::from_value(item).map_err(|e| WmsError::UnknownOutcome {
            detail: format!("unreadable row result for {}: {e}", row.order_no),
        })?;
        if let Some(no) = &raw.order_no
            && no != &row.order_no
        {
            return Err(WmsError::UnknownOutcome {
                detail: format!(
                    "row results are out of order: expected {}, got {no}",
                    row.order_no
                ),
            });
        }
        let outcome = match (raw.result.as_str(), raw.order_id) {
            ("OK", Some(order_id)) => RowOutcome::Registered { order_id },
            ("OK", None) => {
                return Err(WmsError::UnknownOutcome {
                    detail: format!("row {} is OK without an order_id", row.order_no),
                });
            }
            ("NG", _) => {
                let mut details = raw.error.unwrap_or_default();
                if details.is_empty() {
                    details = env
                        .errors
                        .iter()
                        .filter(|d| d.order_no.as_deref() == Some(row.order_no.as_str()))
                        .cloned()
                        .collect();
                }
                let (code, message) = details
                    .first()
                    .map(|d| (d.code.clone(), d.message.clone()))
                    .unwrap_or_else(|| {
                        (
                            "NG".to_owned(),
                            "the WMS refused the row without a reason".to_owned(),
                        )
                    });
                RowOutcome::Rejected {
                    code,
                    message,
                    details,
                }
            }
            (other, _) => {
                return Err(WmsError::UnknownOutcome {
                    detail: format!("row {} has unknown result {other:?}", row.order_no),
                });
            }
        };
        out.push(RowResult {
            order_no: row.order_no.clone(),
            outcome,
        });
    }
    Ok(out)
}

/// The longest wait a `Retry-After` can impose on a key's bucket: the time the WMS's documented
/// budget (1 request/s, burst 60) takes to refill. The endpoint is the tenant's choice, so a
/// hostile one must not freeze the shop's budget for an hour.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

fn parse_retry_after(value: &HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    let cap = MAX_RETRY_AFTER;
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(cap));
    }
    let when = chrono::DateTime::parse_from_rfc2822(text).ok()?;
    let delta = when.signed_duration_since(chrono::Utc::now());
    Some(delta.to_std().unwrap_or(Duration::ZERO).min(cap))
}

/// The innermost message of an error chain (no URL, no headers).
fn root_message(err: &(dyn std::error::Error + 'static)) -> String {
    error_chain(err)
        .last()
        .map(|e| e.to_string())
        .unwrap_or_else(|| "unknown error".to_owned())
}

fn classify_transport(err: &reqwest::Error, idempotent: bool) -> WmsError {
    let chain = error_chain(err);
    if let Some(forbidden) = chain
        .iter()
        .find_map(|e| e.downcast_ref::<ForbiddenAddress>())
    {
        return WmsError::PolicyRefused(forbidden.0.clone());
    }
    let tls = chain.iter().any(|e| {
        e.downcast_ref::<rustls::Error>().is_some() || {
            let text = e.to_string().to_ascii_lowercase();
            text.contains("certificate") || text.contains("tls handshake")
        }
    });
    if tls {
        return WmsError::Tls(root_message(err));
    }
    if err.is_connect() {
        return if err.is_timeout() {
            WmsError::Timeout
        } else {
            WmsError::Unreachable(root_message(err))
        };
    }
    if err.is_timeout() {
        return if idempotent {
            WmsError::Timeout
        } else {
            WmsError::UnknownOutcome {
                detail: "no answer within the request timeout".to_owned(),
            }
        };
    }
    if idempotent {
        WmsError::Transient {
            status: None,
            detail: root_message(err),
        }
    } else {
        WmsError::UnknownOutcome {
            detail: format!("the connection failed after sending: {}", root_message(err)),
        }
    }
}
