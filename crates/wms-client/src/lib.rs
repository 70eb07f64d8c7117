//! # wmslink WMS client
//!
//! Everything wmslink knows about talking to a WMS: the **port** the services speak to
//! ([`port::Wms`]: what they need of a WMS, in their own terms) and its **COMMERCE ROBO
//! adapter** ([`commerce_robo`], following `wms-api.md`: typed calls, typed errors, the
//! request rules), with what every adapter shares: the per-access-key rate limiter used by
//! every service and replica, the request rules, the metrics and the error classification
//! ([`WmsError`]).
//!
//! ## The port, and why it lives here
//!
//! The shipment dispatcher and status-sync hold an `Arc<dyn Wms>` per shop, built by
//! [`connect`] from the shop's `wms_kind` (S1: `WMS_KIND_COMMERCE_ROBO`, the only kind the
//! settings service accepts today), endpoint and access key. They register batches, cancel,
//! look up by order numbers, list what changed since a time and get one order; orders come
//! back as [`port::WmsOrder`], whose meanings (`cancelled`, `shipped`, `processing` = 処理中,
//! a final carrier status) are decided by the adapter, while the WMS's own status id and name
//! stay visible as data (O1). The shipment-instruction row is built by the adapter too
//! ([`port::Wms::build_instruction`], from the order and the shop's mappings), and reaches the
//! services as an opaque [`port::Instruction`].
//!
//! The port sits in this crate, beside its adapter, rather than in a crate of its own:
//! - both services already depend on this crate for the limiter and the request rules, so
//!   the trait is shared once without a new crate;
//! - an [`port::Instruction`] holds the adapter's row in a crate-private enum, so the services
//!   cannot see (or depend on) COMMERCE ROBO's field names, and [`port::Wms::register`] needs
//!   no downcasting; a second WMS is a new module here, a new variant and a new arm of
//!   [`connect`].
//!
//! ```no_run
//! use std::sync::Arc;
//! use secrecy::SecretString;
//! use wmslink_proto::settings::v1::WmsKind;
//! use wmslink_wms_client::port::{PageCursor, Wms};
//! use wmslink_wms_client::{RateLimiter, Unlimited, WmsClientConfig};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let wms: Arc<dyn Wms> = wmslink_wms_client::connect(
//!     WmsKind::CommerceRobo,
//!     "https://api12.crobo.jp/v1",
//!     SecretString::from("the-shop-access-key"),
//!     &WmsClientConfig::default(),
//!     Arc::new(Unlimited),
//! )?;
//! let since = chrono::Utc::now() - chrono::Duration::hours(1);
//! let page = wms.changed_since(since, PageCursor::FIRST).await?;
//! # let _ = page; Ok(()) }
//! ```
//!
//! | port call | COMMERCE ROBO |
//! | --- | --- |
//! | `build_instruction` | [`commerce_robo::build_row`] (robot ⑨, shipper ⑥, delivery method ⑦, payment ⑩ ⑪, free fields ⑫ ⑬) |
//! | `register` | `POST /order/`; `E_DUPLICATE` → `AlreadyRegistered` |
//! | `cancel` | `GET /order_cancel/{id}`; `NG E_NOT_CANCELLABLE` → `CancelOutcome::NotCancellable`, other `NG` → `CancelOutcome::Refused` (for now) |
//! | `get` | `GET /order/{id}` |
//! | `lookup` | `GET /order/search?order_no-in=…` (100 per call), one page of 200 |
//! | `changed_since` | `GET /order/search?update_date-gte=…`, one page of 200 |
//! | `find_by_order_nos` | `lookup` by 100, every page |
//! | meanings | `cancel_flag`, `shipped_flag`, `status_id` 20 (処理中), `shipping_status_id` 1 / 12 / 32 (final) |
//!
//! ## The COMMERCE ROBO client itself
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
//! | `RateLimited { retry_after }` | HTTP 429 (`Retry-After` honoured up to [`MAX_RETRY_AFTER`], 60 s; the bucket is pushed back too) | retry after the wait |
//! | `Transient { status, .. }` | 5xx or a broken connection on a search/get | retry later |
//! | `Unreachable` | host not found, connection refused (nothing sent) | retry later |
//! | `Tls` | TLS handshake or certificate failure | settings/operations problem |
//! | `Timeout` | no answer in time on a search/get, or a connect timeout | retry later |
//! | `UnknownOutcome` | registration or cancel sent and the answer lost or failed (timeout, reset, any 5xx, unreadable 2xx) | **search by `order_no` before any retry** |
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
//! ## WMS text
//!
//! Every status name, tracking code, error code and message is cleaned when parsed (control,
//! bidi-override and zero-width characters become spaces) and bounded (names 100, codes 64,
//! messages 500 characters; [`sanitize_wms_text`]), so what the tenant's endpoint says cannot
//! break the rows, events and logs it reaches. Answers are read up to 16 MiB and paging stops
//! after 10,000 pages.
//!
//! ## Request rules
//!
//! - The base URL's trailing slashes are stripped; credentials, query and fragment refused.
//! - `https` only, except for hosts in [`WmsClientConfig::allow_http_hosts`].
//! - No redirects (a 3xx is [`WmsError::UnexpectedStatus`]); no proxies.
//! - Connect and request timeouts ([`WmsClientConfig::connect_timeout_ms`],
//!   [`WmsClientConfig::request_timeout_ms`]).
//! - Refusal of loopback/private/link-local/metadata addresses, on by default
//!   ([`WmsClientConfig::refuse_private_addresses`]; v4 inside v6 too: mapped, compatible,
//!   NAT64, 6to4, Teredo): IP literals at construction, resolved addresses at every connect,
//!   without naming the resolved address. `host:port`s in
//!   [`WmsClientConfig::allow_private_endpoints`] are exempt (the simulator in development).
//! - When [`WmsClientConfig::allowed_hosts`] is set, only those hosts (or `*.domain`).
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

pub mod commerce_robo;
mod config;
mod error;
mod limiter;
mod metrics;
mod policy;
pub mod port;
mod text;

use std::sync::Arc;

use wmslink_proto::settings::v1::WmsKind;

// The COMMERCE ROBO client's own API, for what talks to it directly (the settings service's
// connection check, tests against the simulator).
pub use commerce_robo::{
    ConnectionReport, ConnectionStatus, DEFAULT_SEARCH_LIMIT, Detail, FailedBatch, FreeFields,
    MAX_IN_VALUES, MAX_RETRY_AFTER, MAX_ROWS_PER_REGISTRATION, MAX_SEARCH_LIMIT, Orderer,
    RegisterReport, RowOutcome, RowResult, SHIPPING_STATUSES, STATUSES, SearchColumn, SearchFilter,
    SearchOp, SearchPage, SearchQuery, ShipmentInstruction, Shipping, WmsClient, WmsOrder,
    check_connection, check_connection_within, is_cancel_refused_status, jst, normalize_text,
    shipping_status_name, status_name,
};
pub use config::{
    BucketSalt, DEFAULT_RATE_LIMIT_DATABASE_URL, RateLimitConfig, SharedRateLimitConfig,
    WmsClientConfig,
};
pub use error::{WmsError, WmsErrorDetail};
pub use limiter::{
    BucketId, InProcessRateLimiter, LimiterError, PgRateLimiter, RATE_LIMIT_TABLE, RateLimiter,
    Unlimited, ensure_schema,
};
pub use metrics::WmsMetrics;
pub use policy::is_forbidden_ip;
pub use secrecy::SecretString;
pub use text::{MAX_WMS_CODE_CHARS, MAX_WMS_MESSAGE_CHARS, MAX_WMS_NAME_CHARS, sanitize_wms_text};

/// The [`port::Wms`] of a shop: the adapter of its `wms_kind` for its endpoint and access key,
/// waiting on `limiter` before every call. Fails like [`WmsClient::new`] (nothing is sent), and
/// with [`WmsError::Config`] for a kind no adapter speaks (`WMS_KIND_UNSPECIFIED`).
pub fn connect(
    kind: WmsKind,
    endpoint_url: &str,
    access_key: SecretString,
    config: &WmsClientConfig,
    limiter: Arc<dyn RateLimiter>,
) -> Result<Arc<dyn port::Wms>, WmsError> {
    match kind {
        WmsKind::CommerceRobo => Ok(Arc::new(WmsClient::new(
            endpoint_url,
            access_key,
            config,
            limiter,
        )?)),
        WmsKind::Unspecified => Err(WmsError::Config(
            "the shop's WMS kind is not set; only WMS_KIND_COMMERCE_ROBO is supported".to_owned(),
        )),
    }
}
