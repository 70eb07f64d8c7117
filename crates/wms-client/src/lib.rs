//! # wmslink WMS client
//!
//! Everything wmslink knows about talking to the WMS (COMMERCE ROBO) over HTTP, following
//! `wms-api.md`: typed calls, typed errors, the request rules, and the per-access-key rate
//! limiter shared by every service and replica.
//!
//! ## Building a client
//!
//! ```no_run
//! use std::sync::Arc;
//! use secrecy::SecretString;
//! use wmslink_wms_client::{
//!     InProcessRateLimiter, PgRateLimiter, RateLimitConfig, RateLimiter, WmsClient, WmsClientConfig,
//! };
//!
//! # async fn demo(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
//! let config = WmsClientConfig {
//!     allow_http_hosts: vec!["127.0.0.1".into(), "localhost".into(), "wms-simulator".into()],
//!     ..WmsClientConfig::default()
//! };
//! // One limiter per process (in-process) or one shared through PostgreSQL:
//! let limiter: Arc<dyn RateLimiter> = Arc::new(InProcessRateLimiter::new(RateLimitConfig::default())?);
//! let shared: Arc<dyn RateLimiter> =
//!     Arc::new(PgRateLimiter::connect(pool, RateLimitConfig::default()).await?); // runs ensure_schema
//! let client = WmsClient::new(
//!     "https://api12.crobo.jp/v1/",          // trailing slash stripped
//!     SecretString::from("the-shop-access-key"),
//!     &config,
//!     shared,
//! )?;
//! let page = client.search(&wmslink_wms_client::SearchQuery::new().status_id_eq(50)).await?;
//! # let _ = (limiter, page); Ok(()) }
//! ```
//!
//! ## Calls
//!
//! | method | WMS call | notes |
//! | --- | --- | --- |
//! | [`WmsClient::register_batch`] | `POST /order/` | 1–200 rows; `Vec<RowResult>` with `order_id` or the WMS's code/message per row |
//! | [`WmsClient::register`] | `POST /order/` × n | splits into batches of 200; [`RegisterReport`] stops at the first failed batch |
//! | [`WmsClient::search`] | `GET /order/search` | one page; [`SearchQuery`] builds `<column>-<op>=<value>`, `limit` ≤ 200, `offset` |
//! | [`WmsClient::search_all`] | `GET /order/search` × n | pages with `limit=200` until `total` |
//! | [`WmsClient::find_by_order_nos`] | `GET /order/search` × n | `order_no-in`, 100 values per call (250 → 3 calls) |
//! | [`WmsClient::get_order`] | `GET /order/{id}` | |
//! | [`WmsClient::cancel_order`] | `GET /order_cancel/{id}` | irreversible; already cancelled → `Ok` |
//! | [`WmsClient::check_connection`] / [`check_connection`] | `GET /order/search?limit=1` | never fails, returns a [`ConnectionReport`] |
//!
//! Success is HTTP 2xx **and** `result == "OK"`. A registration answered `NG` *with per-row
//! data* is not an error: the rows say which were refused.
//!
//! ## Errors ([`WmsError`])
//!
//! | variant | when | what the caller does |
//! | --- | --- | --- |
//! | `Unauthorized` | HTTP 401 (wrong key or IP not allowed) | stop; a person fixes the settings |
//! | `RateLimited { retry_after }` | HTTP 429 (`Retry-After` honoured; the bucket is pushed back too) | retry after the wait |
//! | `Transient { status, .. }` | 500/503 etc.; broken connection on a GET | retry later |
//! | `Unreachable` | host not found, connection refused (nothing sent) | retry later |
//! | `Tls` | TLS handshake or certificate failure | settings/operations problem |
//! | `Timeout` | no answer in time on a search/get, or a connect timeout | retry later |
//! | `UnknownOutcome` | registration or cancel sent and the answer lost (timeout, reset, 502/504, unreadable 2xx) | **search by `order_no` before any retry** |
//! | `Rejected { code, message, details }` | `NG` for the whole call, or 4xx with an `NG` envelope | permanent for this input; show the WMS's text |
//! | `Malformed` | 2xx that is not the envelope/data on a search/get | retry later / alert |
//! | `UnexpectedStatus` | 3xx (redirects are not followed), 4xx without envelope | settings/operations problem |
//! | `PolicyRefused` | request rules (http to a host not allowed, private address refused) | settings problem |
//! | `Config`, `InvalidRequest` | bad settings / caller bug (e.g. 201 rows) | fix the caller |
//! | `Limiter` | the rate limiter's database is unavailable (nothing sent) | retry later |
//!
//! [`WmsError::is_retryable`] and [`WmsError::may_have_been_applied`] sum this up.
//!
//! ## Connection check
//!
//! [`WmsClient::check_connection`] (or the free [`check_connection`], which also reports a
//! URL the client refuses to build) sends `GET /order/search?limit=1` and returns a
//! [`ConnectionReport`] `{ status, detail, elapsed }` with [`ConnectionStatus`]:
//!
//! | status (`as_str`) | from |
//! | --- | --- |
//! | `ok` | 2xx + `OK` + a list in `data` |
//! | `unauthorized` | 401 |
//! | `unreachable` | DNS failure, connection refused |
//! | `tls` | TLS/certificate failure |
//! | `timeout` | connect or request timeout |
//! | `rate_limited` | 429 |
//! | `unexpected_answer` | `NG`, 5xx, 3xx, other 4xx, a body that is not the envelope |
//! | `refused_by_policy` | http to a host not allowed, private address refused, invalid URL, empty key (nothing sent) |
//!
//! `detail` is safe to show: the WMS's own text for `NG`, otherwise a fixed sentence.
//!
//! ## Request rules
//!
//! - The base URL's trailing slashes are stripped; credentials, query and fragment refused.
//! - `https` only, except for hosts in [`WmsClientConfig::allow_http_hosts`].
//! - No redirects (a 3xx is [`WmsError::UnexpectedStatus`]); no proxies.
//! - Connect and request timeouts ([`WmsClientConfig::connect_timeout_ms`],
//!   [`WmsClientConfig::request_timeout_ms`]).
//! - Optional refusal of loopback/private/link-local addresses
//!   ([`WmsClientConfig::refuse_private_addresses`]): IP literals at construction, resolved
//!   addresses at every connect.
//! - Every text field sent is normalised so that no lone CR is sent ([`normalize_text`]).
//! - The access key is a [`secrecy::SecretString`]; the `X-API-KEY` header is marked
//!   sensitive; the key is in no `Debug` output, log line, span or error. Buckets and logs use
//!   a SHA-256 fingerprint ([`BucketId`]).
//!
//! ## Rate limiting
//!
//! Every call first waits on the [`RateLimiter`] for the key's [`BucketId`]. Default budget:
//! 1 request/s, burst 60 ([`RateLimitConfig`]), keeping one token in reserve against jitter.
//! [`InProcessRateLimiter`] (`governor`) for one process; [`PgRateLimiter`] (one atomic
//! statement per call on the table created by [`ensure_schema`]) so that the dispatcher,
//! status-sync and all their replicas share one budget per key. A 429 is still honoured.
//! [`SharedRateLimitConfig`] is the `[rate_limit]` section of every service that calls the WMS;
//! its [`connect`](SharedRateLimitConfig::connect) returns the shared limiter.
//!
//! ## Telemetry
//!
//! Each call runs in a `wms_call` span with `method`, `path` (template, e.g.
//! `/order/{order_id}`), `bucket` (short fingerprint), `status`, `outcome` (`ok`, `ng` or
//! [`WmsError::kind`]), `limiter_wait_ms`, `elapsed_ms`; a `debug` event on success and a
//! `warn` event on failure. Never the key.
//!
//! Metrics ([`WmsMetrics`], on the global meter provider unless
//! [`WmsClient::with_metrics`] says otherwise): `wmslink.wms.calls` (counter by `method`,
//! `endpoint` = path template, `outcome` as in the span), `wmslink.wms.call.duration` (seconds,
//! the HTTP exchange without the limiter wait, same attributes) and `wmslink.wms.limiter.wait`
//! (seconds waited on the rate limiter, by `method` and `endpoint`). No key, no bucket.

mod client;
mod config;
mod error;
mod limiter;
mod metrics;
mod policy;
mod types;

pub use client::{
    ConnectionReport, ConnectionStatus, FailedBatch, RegisterReport, WmsClient, check_connection,
};
pub use config::{
    DEFAULT_RATE_LIMIT_DATABASE_URL, RateLimitConfig, SharedRateLimitConfig, WmsClientConfig,
};
pub use error::{WmsError, WmsErrorDetail};
pub use limiter::{
    BucketId, InProcessRateLimiter, LimiterError, PgRateLimiter, RATE_LIMIT_TABLE, RateLimiter,
    Unlimited, ensure_schema,
};
pub use metrics::WmsMetrics;
pub use policy::is_forbidden_ip;
pub use secrecy::SecretString;
pub use types::{
    DEFAULT_SEARCH_LIMIT, Detail, FreeFields, MAX_IN_VALUES, MAX_ROWS_PER_REGISTRATION,
    MAX_SEARCH_LIMIT, Orderer, RowOutcome, RowResult, SHIPPING_STATUSES, STATUSES, SearchColumn,
    SearchFilter, SearchOp, SearchPage, SearchQuery, ShipmentInstruction, Shipping, WmsOrder,
    is_cancel_refused_status, jst, normalize_text, shipping_status_name, status_name,
};
