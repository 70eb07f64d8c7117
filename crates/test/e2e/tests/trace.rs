//! One trace per order: the W3C trace context of a cart message continues through order-events
//! (its consume span, its outbox event) into the dispatcher's consume span, the WMS call, then
//! status-sync's observation of the order and back through the dispatcher to order-events. The
//! services export over real OTLP/gRPC (`telemetry::init` with an endpoint) to an in-process
//! receiver.
//!
//! Its own test binary: it installs the process-wide subscriber and tracer provider.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::trace::TraceContextExt;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use tokio_stream::wrappers::TcpListenerStream;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use wmslink_e2e::{STATUS_READY, System, SystemOptions, order};
use wmslink_platform::shop::ShopId;
use wmslink_platform::telemetry::{self, TelemetryConfig};
use wmslink_proto::orders::v1 as orders;
use wmslink_proto::sync::v1 as sync_pb;
use wmslink_testkit::{eventually, eventually_every, unique};

/// A span as received: its trace id, span id and parent span id (hex), name and string
/// attributes.
#[derive(Debug, Clone)]
struct ReceivedSpan {
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    attributes: BTreeMap<String, String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                for span in scope.spans {
                    let attributes = span
                        .attributes
                        .iter()
                        .map(|kv| {
                            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                                Some(Value::StringValue(text)) => text.clone(),
                                Some(Value::IntValue(n)) => n.to_string(),
                                Some(Value::BoolValue(b)) => b.to_string(),
                                other => format!("{other:?}"),
                            };
                            (kv.key.clone(), value)
                        })
                        .collect();
                    spans.push(ReceivedSpan {
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        name: span.name,
                        attributes,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// The services export metrics to the same endpoint; accepted and dropped.
#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        _request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cart_message_trace_continues_to_the_wms_call_and_back_from_status_syncs_observation() {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .add_service(MetricsServiceServer::new(receiver.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let guard = telemetry::init(
        "wmslink-e2e",
        &TelemetryConfig {
            otlp_endpoint: endpoint,
            log_filter: "warn,wmslink_platform=info,wmslink_order_events=info,\
                         wmslink_shipment_dispatcher=info,wmslink_wms_client=info,\
                         wmslink_status_sync=info,trace=info"
                .into(),
            ..TelemetryConfig::default()
        },
    )
    .unwrap();

    let system = System::start(SystemOptions::default()).await.unwrap();
    let shop = unique("shop-");
    let key = system.enable_shop(&shop).await.unwrap();

    // The cart publishes an order with its trace context in the NATS headers.
    let cart_span = tracing::info_span!("cart publish", order_no = "T-1");
    let trace_id = cart_span
        .context()
        .span()
        .span_context()
        .trace_id()
        .to_string();
    let mut headers = async_nats::HeaderMap::new();
    {
        let _entered = cart_span.enter();
        telemetry::inject_trace_context(&mut headers);
    }
    assert!(
        headers.get("traceparent").is_some(),
        "trace context injected"
    );
    let subject = system
        .nats
        .subjects
        .cart_order_upserted(&ShopId::parse(&shop).unwrap());
    system
        .nats
        .js
        .publish_with_headers(
            subject,
            headers,
            prost::Message::encode_to_vec(&order(&shop, "T-1", 1, STATUS_READY)).into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    drop(cart_span);

    // Through order-events and the dispatcher into the WMS.
    eventually(
        Duration::from_secs(30),
        "T-1 registered in the WMS",
        || async {
            system
                .simulator
                .state()
                .orders(&key)
                .unwrap()
                .iter()
                .any(|o| o.order_no == "T-1")
                .then_some(())
        },
    )
    .await;
    let client = system.orders();
    eventually(
        Duration::from_secs(30),
        "T-1 SENT in the order list",
        || async {
            let view = client
                .clone()
                .get_order(orders::GetOrderRequest {
                    shop_id: shop.clone(),
                    order_no: "T-1".into(),
                })
                .await
                .ok()?
                .into_inner()
                .order?;
            (view.integration?.shipping_status() == orders::ShippingStatus::Sent).then_some(())
        },
    )
    .await;

    // The warehouse moves the order on; status-sync observes it and publishes the observation,
    // the dispatcher applies it, order-events shows it.
    system.simulator.state().tick_warehouse(Some(&key)).unwrap();
    let wms_status = system
        .simulator
        .state()
        .orders(&key)
        .unwrap()
        .iter()
        .find(|o| o.order_no == "T-1")
        .unwrap()
        .status_id;
    let sync = system.sync();
    eventually_every(
        Duration::from_millis(500),
        Duration::from_secs(30),
        "T-1's WMS status observed and shown",
        || async {
            sync.clone()
                .run_sync(sync_pb::RunSyncRequest {
                    shop_id: shop.clone(),
                    from: None,
                    to: None,
                })
                .await
                .ok()?;
            let view = client
                .clone()
                .get_order(orders::GetOrderRequest {
                    shop_id: shop.clone(),
                    order_no: "T-1".into(),
                })
                .await
                .ok()?
                .into_inner()
                .order?;
            (view.integration?.wms_status_id == wms_status).then_some(())
        },
    )
    .await;
    system.stop().await;
    // Flushes every span still batched.
    drop(guard);

    let spans = receiver.spans.lock().unwrap().clone();
    let in_trace: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.trace_id == trace_id).collect();
    let consumed_by = |consumer_suffix: &str, subject_part: &str| {
        in_trace.iter().any(|span| {
            span.name == "consume"
                && span
                    .attributes
                    .get("consumer")
                    .is_some_and(|c| c.ends_with(consumer_suffix))
                && span
                    .attributes
                    .get("subject")
                    .is_some_and(|s| s.contains(subject_part))
        })
    };
    let names: Vec<String> = in_trace
        .iter()
        .map(|span| format!("{} {:?}", span.name, span.attributes.get("consumer")))
        .collect();
    assert!(
        consumed_by("cart-orders", ".cart.orders."),
        "order-events' consume span is in the cart message's trace: {names:?}"
    );
    assert!(
        consumed_by("status-changed", ".orders."),
        "the dispatcher's consume span of the order event is in the same trace: {names:?}"
    );
    // The sender's call for the batch continues the order's trace, so the WMS call is in it.
    assert!(
        in_trace.iter().any(|span| span.name == "register_batch"),
        "the dispatcher's registration of the batch is in the trace: {names:?}"
    );
    assert!(
        in_trace.iter().any(|span| span.name == "wms_call"),
        "the WMS call is in the cart message's trace: {names:?}"
    );

    // status-sync's observation of the order continues the order's trace, and so do the
    // dispatcher applying it and order-events taking the shipment update that follows.
    let observation = in_trace
        .iter()
        .find(|span| {
            span.name == "wms_observation"
                && span.attributes.get("order_no").map(String::as_str) == Some("T-1")
        })
        .unwrap_or_else(|| panic!("status-sync's observation is in the order's trace: {names:?}"));
    let by_id: BTreeMap<&str, &ReceivedSpan> = spans
        .iter()
        .map(|span| (span.span_id.as_str(), span))
        .collect();
    let descends_from = |span: &ReceivedSpan, ancestor: &ReceivedSpan| {
        let mut at = span.parent_span_id.as_str();
        while let Some(parent) = by_id.get(at) {
            if parent.span_id == ancestor.span_id {
                return true;
            }
            at = parent.parent_span_id.as_str();
        }
        false
    };
    let applied = in_trace
        .iter()
        .find(|span| {
            span.name == "consume"
                && span
                    .attributes
                    .get("consumer")
                    .is_some_and(|c| c.ends_with("shipment-dispatcher-observed"))
                && descends_from(span, observation)
        })
        .unwrap_or_else(|| {
            panic!("the dispatcher's consume span of the observation follows it: {names:?}")
        });
    assert!(
        in_trace.iter().any(|span| {
            span.name == "consume"
                && span
                    .attributes
                    .get("consumer")
                    .is_some_and(|c| c.ends_with("order-events-shipments"))
                && descends_from(span, applied)
        }),
        "and back: order-events takes the shipment update the observation caused: {names:?}"
    );
}
