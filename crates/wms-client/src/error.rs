//! The client's error type.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One entry of the `error` array of the WMS envelope.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WmsErrorDetail {
    /// The WMS's code, e.g. `E_DUPLICATE`, `E_NOT_CANCELLABLE` (cleaned, at most 64
    /// characters).
    #[serde(default, deserialize_with = "crate::text::de_code")]
    pub code: String,
    /// The WMS's message, shown to people (control and bidi characters replaced, at most 500
    /// characters).
    #[serde(default, deserialize_with = "crate::text::de_message")]
    pub message: String,
    /// The order number the error is about, when the WMS says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_no: Option<String>,
}

/// Everything a WMS call can fail with. The access key never appears in any variant.
///
/// How a caller decides:
/// - [`is_retryable`](Self::is_retryable): try again later (after
///   [`retry_after`](Self::retry_after) when given).
/// - [`may_have_been_applied`](Self::may_have_been_applied) (only [`UnknownOutcome`](Self::UnknownOutcome)):
///   a registration or cancel may have taken effect; search the WMS by `order_no` before any
///   retry, never re-send blindly.
/// - otherwise permanent until a person or a setting changes something.
#[derive(Debug, thiserror::Error)]
pub enum WmsError {
    /// HTTP 401: the access key is wrong or this client's IP address is not allowed.
    #[error("the WMS refused the access key or this client's IP address (HTTP 401)")]
    Unauthorized,
    /// HTTP 429. The bucket of the key has also been pushed back by `retry_after`.
    #[error("the WMS rate limit was exceeded; retry after {retry_after:?}")]
    RateLimited {
        /// From the `Retry-After` header (1 s when absent or unreadable).
        retry_after: Duration,
    },
    /// 5xx answer or a broken connection on a call that is safe to repeat.
    #[error("the WMS is temporarily unavailable: {detail}")]
    Transient {
        /// HTTP status when there was an answer.
        status: Option<u16>,
        /// What happened (no secrets).
        detail: String,
    },
    /// Host not found or connection refused: nothing was sent.
    #[error("the WMS could not be reached: {0}")]
    Unreachable(String),
    /// TLS handshake or certificate failure.
    #[error("TLS failure talking to the WMS: {0}")]
    Tls(String),
    /// No answer in time on a call that is safe to repeat (or a connect timeout).
    #[error("the WMS did not answer in time")]
    Timeout,
    /// A registration or cancel was (or may have been) sent, and its answer was lost (timeout,
    /// reset, any 5xx, unreadable answer). The WMS may have applied it.
    #[error("outcome unknown, the WMS may have applied the request: {detail}")]
    UnknownOutcome {
        /// What happened.
        detail: String,
    },
    /// The WMS answered `NG` (or a 4xx with an `NG` envelope) for the whole call.
    #[error("the WMS rejected the request: {code}: {message}")]
    Rejected {
        /// First error code (`NG` when the WMS gave none).
        code: String,
        /// First error message.
        message: String,
        /// Every error entry the WMS sent.
        details: Vec<WmsErrorDetail>,
    },
    /// A 2xx answer that is not the documented envelope or data.
    #[error("malformed answer from the WMS: {0}")]
    Malformed(String),
    /// An HTTP status the protocol does not use (3xx since redirects are not followed, 4xx
    /// without an `NG` envelope, 1xx).
    #[error("unexpected HTTP status {status} from the WMS")]
    UnexpectedStatus {
        /// The status.
        status: u16,
    },
    /// Refused before sending by the request rules: plain http to a host not allowed, a
    /// private address while those are refused.
    #[error("refused by policy: {0}")]
    PolicyRefused(String),
    /// The client could not be built from its settings (bad URL, empty key).
    #[error("invalid WMS client settings: {0}")]
    Config(String),
    /// The caller asked for something the protocol does not allow (0 or more than 200 rows
    /// in one registration, more than 100 values in one `in`, ...).
    #[error("invalid WMS request: {0}")]
    InvalidRequest(String),
    /// The rate limiter could not be consulted (e.g. its database is down). Nothing was sent.
    #[error("rate limiter unavailable: {0}")]
    Limiter(String),
}

impl WmsError {
    /// Worth retrying later without any change: rate limited, transient, unreachable,
    /// timeout, limiter unavailable.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::Transient { .. }
                | Self::Unreachable(_)
                | Self::Timeout
                | Self::Limiter(_)
        )
    }

    /// The request may have taken effect in the WMS (only [`Self::UnknownOutcome`]).
    pub fn may_have_been_applied(&self) -> bool {
        matches!(self, Self::UnknownOutcome { .. })
    }

    /// The wait the WMS asked for, for [`Self::RateLimited`].
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    /// The WMS error code for [`Self::Rejected`].
    pub fn rejection_code(&self) -> Option<&str> {
        match self {
            Self::Rejected { code, .. } => Some(code),
            _ => None,
        }
    }

    /// A short stable name of the variant, for metrics and span fields.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::RateLimited { .. } => "rate_limited",
            Self::Transient { .. } => "transient",
            Self::Unreachable(_) => "unreachable",
            Self::Tls(_) => "tls",
            Self::Timeout => "timeout",
            Self::UnknownOutcome { .. } => "unknown_outcome",
            Self::Rejected { .. } => "rejected",
            Self::Malformed(_) => "malformed",
            Self::UnexpectedStatus { .. } => "unexpected_status",
            Self::PolicyRefused(_) => "policy_refused",
            Self::Config(_) => "config",
            Self::InvalidRequest(_) => "invalid_request",
            Self::Limiter(_) => "limiter",
        }
    }

    pub(crate) fn rejected(details: Vec<WmsErrorDetail>) -> Self {
        let (code, message) = match details.first() {
            Some(d) => (
                if d.code.is_empty() {
                    "NG".to_owned()
                } else {
                    d.code.clone()
                },
                d.message.clone(),
            ),
            None => (
                "NG".to_owned(),
                "the WMS answered NG without a reason".to_owned(),
            ),
        };
        Self::Rejected {
            code,
            message,
            details,
        }
    }
}
