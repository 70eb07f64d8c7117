//! The client's OpenTelemetry instruments. Attributes are the HTTP method, the path template
//! and the outcome kind only: never the key, the bucket, the shop or an order id, so the
//! number of series stays fixed.

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::metrics::{Counter, Histogram, Meter};
use opentelemetry::{InstrumentationScope, KeyValue};

/// Boundaries (seconds) of `wmslink.wms.call.duration`: the request timeout is 20 s by default.
const CALL_BOUNDARIES: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0,
];
/// Boundaries (seconds) of `wmslink.wms.limiter.wait`: a drained bucket refills at 1/s, so a
/// backlog of calls waits minutes.
const WAIT_BOUNDARIES: [f64; 14] = [
    0.0, 0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// The instruments of WMS calls:
///
/// - `wmslink.wms.calls` (counter, `{call}`): calls by `method`, `endpoint` (path template,
///   e.g. `/order/{order_id}`) and `outcome` (`ok`, `ng`, or [`WmsError::kind`](crate::WmsError::kind));
/// - `wmslink.wms.call.duration` (histogram, `s`): the HTTP exchange of calls that were sent
///   (limiter wait excluded), same attributes;
/// - `wmslink.wms.limiter.wait` (histogram, `s`): time spent waiting on the rate limiter
///   before a call, by `method` and `endpoint`.
#[derive(Debug, Clone)]
pub struct WmsMetrics {
    calls: Counter<u64>,
    duration: Histogram<f64>,
    limiter_wait: Histogram<f64>,
}

impl WmsMetrics {
    /// The instruments on `meter` (a test passes its own provider's meter).
    pub fn new(meter: &Meter) -> Self {
        Self {
            calls: meter
                .u64_counter("wmslink.wms.calls")
                .with_description("WMS calls by endpoint and outcome")
                .with_unit("{call}")
                .build(),
            duration: meter
                .f64_histogram("wmslink.wms.call.duration")
                .with_description("Duration of WMS HTTP exchanges (rate-limiter wait excluded)")
                .with_unit("s")
                .with_boundaries(CALL_BOUNDARIES.to_vec())
                .build(),
            limiter_wait: meter
                .f64_histogram("wmslink.wms.limiter.wait")
                .with_description(
                    "Time spent waiting on the per-key rate limiter before a WMS call",
                )
                .with_unit("s")
                .with_boundaries(WAIT_BOUNDARIES.to_vec())
                .build(),
        }
    }

    /// The process-wide instruments, created on first use from the global meter provider (so
    /// after the service installed it).
    pub fn global() -> &'static Self {
        static METRICS: OnceLock<WmsMetrics> = OnceLock::new();
        METRICS.get_or_init(|| {
            Self::new(&opentelemetry::global::meter_with_scope(
                InstrumentationScope::builder(env!("CARGO_PKG_NAME"))
                    .with_version(env!("CARGO_PKG_VERSION"))
                    .build(),
            ))
        })
    }

    pub(crate) fn limiter_waited(&self, method: &str, endpoint: &'static str, wait: Duration) {
        self.limiter_wait.record(
            wait.as_secs_f64(),
            &[
                KeyValue::new("method", method.to_owned()),
                KeyValue::new("endpoint", endpoint),
            ],
        );
    }

    /// One finished call; `sent_for` is the HTTP exchange's duration when it was attempted.
    pub(crate) fn call(
        &self,
        method: &str,
        endpoint: &'static str,
        outcome: &'static str,
        sent_for: Option<Duration>,
    ) {
        let attributes = [
            KeyValue::new("method", method.to_owned()),
            KeyValue::new("endpoint", endpoint),
            KeyValue::new("outcome", outcome),
        ];
        self.calls.add(1, &attributes);
        if let Some(duration) = sent_for {
            self.duration.record(duration.as_secs_f64(), &attributes);
        }
    }
}
