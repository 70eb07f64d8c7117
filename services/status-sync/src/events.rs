//! The events status-sync publishes (through its outbox): `wms.{shop}.observed` and
//! `wms.{shop}.anomaly`.

use chrono::{DateTime, Utc};
use wmslink_platform::nats::Subjects;
use wmslink_platform::outbox::{self, OutboxMessage};
use wmslink_platform::shop::ShopId;
use wmslink_platform::telemetry;
use wmslink_proto::sync::v1::WmsObserved;
use wmslink_proto::to_timestamp;

use crate::anomalies::AnomalyRecord;
use crate::model::Observation;

pub fn observed(
    shop: &ShopId,
    order_no: &str,
    observation: &Observation,
    observed_at: DateTime<Utc>,
) -> WmsObserved {
    WmsObserved {
        event_id: outbox::new_event_id(),
        shop_id: shop.to_string(),
        order_no: order_no.to_owned(),
        wms_order_id: observation.wms_order_id,
        status_id: observation.status_id,
        status_name: observation.status_name.clone(),
        cancelled: observation.cancelled,
        shipped: observation.shipped,
        shipping_status_id: observation.shipping_status_id,
        tracking_code: observation.tracking_code.clone(),
        shipping_date: observation.shipping_date.clone(),
        wms_updated_at: Some(to_timestamp(observation.wms_updated_at)),
        observed_at: Some(to_timestamp(observed_at)),
        shipping_status_name: observation.shipping_status_name.clone(),
    }
}

/// `wms.{shop}.observed` for `event`, carrying the trace context of a `wms_observation` span
/// that continues the order's trace (`traceparent`, from the dispatcher's last update of the
/// shipment; without one, the current span's): the observation, and what the dispatcher and
/// order-events do with it, belong to the order's one trace.
pub fn observed_message(
    subjects: &Subjects,
    shop: &ShopId,
    event: &WmsObserved,
    traceparent: Option<&str>,
) -> OutboxMessage {
    let span = tracing::info_span!(
        "wms_observation",
        shop = %shop,
        order_no = %event.order_no,
        status_id = event.status_id
    );
    telemetry::continue_traces(&span, traceparent);
    span.in_scope(|| {
        OutboxMessage::protobuf(subjects.wms_observed(shop), event.event_id.clone(), event)
    })
}

pub fn anomaly_message(
    subjects: &Subjects,
    shop: &ShopId,
    anomaly: &AnomalyRecord,
) -> OutboxMessage {
    let event = anomaly.to_proto();
    OutboxMessage::protobuf(subjects.wms_anomaly(shop), event.event_id.clone(), &event)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use prost::Message;

    #[test]
    fn observed_event_carries_every_field_and_goes_to_the_shop_subject() {
        let subjects = Subjects::new("p").unwrap();
        let shop = ShopId::parse("s1").unwrap();
        let at = DateTime::parse_from_rfc3339("2026-11-28T01:15:00.5Z")
            .unwrap()
            .with_timezone(&Utc);
        let observation = Observation {
            wms_order_id: 7,
            status_id: 100,
            status_name: "出荷検品済".into(),
            cancelled: false,
            shipped: true,
            shipping_status_id: 1,
            shipping_status_name: "配達完了".into(),
            carrier_final: true,
            tracking_code: "T-1".into(),
            shipping_date: "2026-11-28".into(),
            wms_updated_at: at,
        };
        let event = observed(&shop, "A-1", &observation, at);
        let message = observed_message(&subjects, &shop, &event, None);
        assert_eq!(message.subject, "p.wms.s1.observed");
        assert_eq!(message.msg_id, event.event_id);
        let decoded = WmsObserved::decode(message.payload.as_slice()).unwrap();
        assert_eq!(decoded.shipping_status_name, "配達完了");
        assert_eq!(decoded.tracking_code, "T-1");
        assert_eq!(
            wmslink_proto::from_timestamp(&decoded.wms_updated_at.unwrap()),
            Some(at)
        );
    }
}
