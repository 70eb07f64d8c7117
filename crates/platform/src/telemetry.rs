//! Structured logs always; OpenTelemetry traces and metrics over OTLP only when an endpoint is
//! configured (without one, the global meter provider stays the no-op one and instruments cost
//! next to nothing). W3C trace context travels in gRPC metadata and NATS headers.
//!
//! Instruments are created once per process from [`meter`], after [`init`] has installed the
//! meter provider (a meter taken before that stays a no-op one).

use opentelemetry::InstrumentationScope;
use opentelemetry::metrics::Meter;
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::{Deserialize, Serialize};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TelemetryConfig {
    /// `json` (default) or `pretty`.
    pub log_format: String,
    /// An `EnvFilter` directive, e.g. `info,sqlx=warn`. `RUST_LOG` overrides it.
    pub log_filter: String,
    /// OTLP/gRPC endpoint, e.g. `http://otel-collector:4317`. Empty: no trace or metric
    /// export. Metrics are exported every 60 s (`OTEL_METRIC_EXPORT_INTERVAL`, in ms, changes it).
    pub otlp_endpoint: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: "json".into(),
            log_filter: "info,sqlx=warn,async_nats=warn,h2=warn,tower=warn".into(),
            otlp_endpoint: String::new(),
        }
    }
}

impl crate::config::Validate for TelemetryConfig {
    fn check(&self, section: &str, problems: &mut crate::config::InvalidConfig) {
        problems.check(
            matches!(self.log_format.as_str(), "json" | "pretty"),
            crate::config::key(section, "log_format"),
            format!("must be 'json' or 'pretty', not '{}'", self.log_format),
        );
        if let Err(err) = EnvFilter::try_new(&self.log_filter) {
            problems.add(crate::config::key(section, "log_filter"), err);
        }
    }
}

/// How long the last export of traces and metrics may take at shutdown.
const FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("OTLP exporter: {0}")]
    Exporter(String),
    #[error("log subscriber: {0}")]
    Subscriber(String),
}

/// Flushes and shuts the trace and metric pipelines down: with [`shutdown`](Self::shutdown) at
/// the end of `main`, or when dropped. Each export gets at most 5 s (a collector that is down
/// never holds the process).
#[must_use = "dropping the guard at once stops trace and metric export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
    meter_provider: Option<SdkMeterProvider>,
}

impl TelemetryGuard {
    /// Exports the last spans and measurements and stops the pipelines.
    pub fn shutdown(mut self) {
        self.flush();
    }

    fn flush(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(err) = provider.shutdown_with_timeout(FLUSH_TIMEOUT)
        {
            eprintln!("telemetry shutdown (traces): {err}");
        }
        // Exports the last measurements.
        if let Some(provider) = self.meter_provider.take()
            && let Err(err) = provider.shutdown_with_timeout(FLUSH_TIMEOUT)
        {
            eprintln!("telemetry shutdown (metrics): {err}");
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The meter of one wmslink crate (the instrumentation scope), from the global meter provider.
/// Call it where instruments are created once, not per measurement.
pub fn meter(crate_name: &'static str, version: &'static str) -> Meter {
    opentelemetry::global::meter_with_scope(
        InstrumentationScope::builder(crate_name)
            .with_version(version)
            .build(),
    )
}

/// Installs the global log subscriber, and when an OTLP endpoint is configured the OTLP trace
/// layer and the global meter provider (OTLP metric exporter with a periodic reader). Call it
/// inside the Tokio runtime (the gRPC exporters need it) and before any instrument is created.
pub fn init(service: &str, config: &TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log_filter))
        .map_err(|err| TelemetryError::Subscriber(err.to_string()))?;
    let fmt_layer = if config.log_format == "pretty" {
        tracing_subscriber::fmt::layer().boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .boxed()
    };

    let (provider, meter_provider) = if config.otlp_endpoint.is_empty() {
        (None, None)
    } else {
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(service.to_owned())
            .build();
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(config.otlp_endpoint.clone())
            .build()
            .map_err(|err| TelemetryError::Exporter(format!("traces: {err}")))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.clone())
            .build();
        let meter_provider = otlp_meter_provider(&config.otlp_endpoint, resource)?;
        (Some(provider), Some(meter_provider))
    };
    let otel_layer = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer().with_tracer(provider.tracer(service.to_owned()))
    });

    tracing_subscriber::registry()
        .with(filter)
        .with(fmt_layer)
        .with(otel_layer)
        .try_init()
        .map_err(|err| TelemetryError::Subscriber(err.to_string()))?;
    if let Some(meter_provider) = &meter_provider {
        opentelemetry::global::set_meter_provider(meter_provider.clone());
    }
    Ok(TelemetryGuard {
        provider,
        meter_provider,
    })
}

/// A meter provider exporting over OTLP/gRPC every `OTEL_METRIC_EXPORT_INTERVAL` ms
/// (default 60 s), cumulative temporality.
fn otlp_meter_provider(
    endpoint: &str,
    resource: opentelemetry_sdk::Resource,
) -> Result<SdkMeterProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.to_owned())
        .build()
        .map_err(|err| TelemetryError::Exporter(format!("metrics: {err}")))?;
    Ok(SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter).build())
        .with_resource(resource)
        .build())
}

struct NatsHeaderInjector<'a>(&'a mut async_nats::HeaderMap);

impl Injector for NatsHeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

struct NatsHeaderExtractor<'a>(&'a async_nats::HeaderMap);

impl Extractor for NatsHeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|value| value.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_ref()).collect()
    }
}

struct MapInjector<'a>(&'a mut std::collections::BTreeMap<String, String>);

impl Injector for MapInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

struct HttpHeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HttpHeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

/// Writes the current span's W3C trace context into a header map (outbox rows keep it until
/// the relay publishes them, so a trace follows an order across services).
pub fn inject_trace_context_into_map(headers: &mut std::collections::BTreeMap<String, String>) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut MapInjector(headers));
    });
}

/// The current span's W3C `traceparent`, to keep with a row that work later picks up outside
/// this span (the dispatcher's queue); `None` without a sampled trace.
pub fn current_traceparent() -> Option<String> {
    let mut headers = std::collections::BTreeMap::new();
    inject_trace_context_into_map(&mut headers);
    headers.remove("traceparent")
}

/// Makes `span`, which carries work done for several queued items at once (one WMS call for a
/// batch of orders), continue the trace of the first item and link the traces of the others,
/// so each order's trace reaches the call that carried it. Call before `span` is first entered.
pub fn continue_traces<'a>(span: &tracing::Span, traceparents: impl IntoIterator<Item = &'a str>) {
    let mut contexts = traceparents.into_iter().map(|traceparent| {
        let carrier =
            std::collections::BTreeMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
        opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.extract(&MapExtractor(&carrier))
        })
    });
    if let Some(first) = contexts.next() {
        let _ = span.set_parent(first);
    }
    for context in contexts {
        use opentelemetry::trace::TraceContextExt as _;
        let linked = context.span().span_context().clone();
        if linked.is_valid() {
            span.add_link(linked);
        }
    }
}

struct MapExtractor<'a>(&'a std::collections::BTreeMap<String, String>);

impl Extractor for MapExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// A span for one gRPC call, child of the caller's W3C trace context when it sent one.
pub fn grpc_request_span<B>(request: &http::Request<B>) -> tracing::Span {
    let span = tracing::info_span!("grpc", rpc = %request.uri().path());
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HttpHeaderExtractor(request.headers()))
    });
    let _ = span.set_parent(parent);
    span
}

/// Writes the current span's W3C trace context into NATS headers.
pub fn inject_trace_context(headers: &mut async_nats::HeaderMap) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut NatsHeaderInjector(headers));
    });
}

/// Makes `span` a child of the trace context carried in NATS headers, if any.
pub fn adopt_trace_context(span: &tracing::Span, headers: Option<&async_nats::HeaderMap>) {
    let Some(headers) = headers else { return };
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&NatsHeaderExtractor(headers))
    });
    let _ = span.set_parent(parent);
}

/// Capturing metrics in tests (feature `testing`, for `[dev-dependencies]` only): build the
/// instruments under test on [`MetricsCapture::meter`], record, then read the data points.
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use std::collections::BTreeMap;

    use opentelemetry::metrics::{Meter, MeterProvider as _};
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

    /// A meter provider of its own exporting into memory (nothing global is touched).
    pub struct MetricsCapture {
        provider: SdkMeterProvider,
        exporter: InMemoryMetricExporter,
    }

    /// One data point: its attributes and, by kind, the counter's sum, the gauge's value, or
    /// the histogram's sum (`count` is the histogram's count, 1 otherwise).
    #[derive(Debug, Clone, PartialEq)]
    pub struct DataPoint {
        pub attributes: BTreeMap<String, String>,
        pub value: f64,
        pub count: u64,
    }

    impl Default for MetricsCapture {
        fn default() -> Self {
            Self::new()
        }
    }

    impl MetricsCapture {
        pub fn new() -> Self {
            let exporter = InMemoryMetricExporter::default();
            let provider = SdkMeterProvider::builder()
                .with_reader(PeriodicReader::builder(exporter.clone()).build())
                .build();
            Self { provider, exporter }
        }

        pub fn meter(&self) -> Meter {
            self.provider.meter("wmslink-test")
        }

        /// Collects now (observable callbacks run) and returns every data point of `name`.
        ///
        /// # Panics
        /// When the collection fails (a test helper).
        #[allow(clippy::expect_used)]
        pub fn points(&self, name: &str) -> Vec<DataPoint> {
            self.provider.force_flush().expect("metrics flush");
            let exported = self.exporter.get_finished_metrics().expect("metrics");
            self.exporter.reset();
            exported
                .last()
                .map(|batch| points_of(batch, name))
                .unwrap_or_default()
        }

        /// The data point of `name` whose attributes are exactly `attributes`.
        pub fn point(&self, name: &str, attributes: &[(&str, &str)]) -> Option<DataPoint> {
            let wanted: BTreeMap<String, String> = attributes
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            self.points(name)
                .into_iter()
                .find(|point| point.attributes == wanted)
        }
    }

    fn points_of(batch: &ResourceMetrics, name: &str) -> Vec<DataPoint> {
        let mut out = Vec::new();
        for scope in batch.scope_metrics() {
            for metric in scope.metrics().filter(|metric| metric.name() == name) {
                match metric.data() {
                    AggregatedMetrics::U64(data) => collect(data, |v| v as f64, &mut out),
                    AggregatedMetrics::I64(data) => collect(data, |v| v as f64, &mut out),
                    AggregatedMetrics::F64(data) => collect(data, |v| v, &mut out),
                }
            }
        }
        out
    }

    fn collect<T: Copy>(data: &MetricData<T>, to_f64: fn(T) -> f64, out: &mut Vec<DataPoint>) {
        let attributes = |attrs: &mut dyn Iterator<Item = &opentelemetry::KeyValue>| {
            attrs
                .map(|kv| (kv.key.to_string(), kv.value.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        match data {
            MetricData::Sum(sum) => out.extend(sum.data_points().map(|p| DataPoint {
                attributes: attributes(&mut p.attributes()),
                value: to_f64(p.value()),
                count: 1,
            })),
            MetricData::Gauge(gauge) => out.extend(gauge.data_points().map(|p| DataPoint {
                attributes: attributes(&mut p.attributes()),
                value: to_f64(p.value()),
                count: 1,
            })),
            MetricData::Histogram(histogram) => {
                out.extend(histogram.data_points().map(|p| DataPoint {
                    attributes: attributes(&mut p.attributes()),
                    value: to_f64(p.sum()),
                    count: p.count(),
                }))
            }
            MetricData::ExponentialHistogram(histogram) => {
                out.extend(histogram.data_points().map(|p| DataPoint {
                    attributes: attributes(&mut p.attributes()),
                    value: to_f64(p.sum()),
                    count: u64::try_from(p.count()).unwrap_or(u64::MAX),
                }))
            }
        }
    }
}
