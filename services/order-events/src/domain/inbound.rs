//! Decoding of inbound NATS payloads: protobuf by default, proto3 JSON when the `Content-Type`
//! header says `application/json`.

use wmslink_platform::validation::FieldViolations;
use wmslink_proto::dispatch::v1::ShipmentUpdated;
use wmslink_proto::orders::v1::ShippingStatus;

use super::validation::{MAX_TEXT_CHARS, check_order_no, check_shop_id, check_text};

/// How a payload is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

/// The encoding named by a `Content-Type` header value (parameters such as `charset` are
/// ignored); no header means protobuf.
pub fn encoding_of(content_type: Option<&str>) -> Result<Encoding, String> {
    let Some(raw) = content_type else {
        return Ok(Encoding::Protobuf);
    };
    let media = raw.split(';').next().unwrap_or_default().trim();
    if media.is_empty() {
        return Ok(Encoding::Protobuf);
    }
    match media.to_ascii_lowercase().as_str() {
        "application/json" => Ok(Encoding::Json),
        "application/protobuf" | "application/x-protobuf" | "application/octet-stream" => {
            Ok(Encoding::Protobuf)
        }
        _ => Err(format!(
            "unsupported content type '{}': use application/protobuf (default) or application/json",
            raw.chars().take(100).collect::<String>()
        )),
    }
}

/// Decodes a payload of the message type `full_name` (e.g. `wmslink.orders.v1.Order`).
pub fn decode<T: prost::Message + Default>(
    full_name: &str,
    payload: &[u8],
    encoding: Encoding,
) -> Result<T, String> {
    match encoding {
        Encoding::Protobuf => {
            T::decode(payload).map_err(|err| format!("undecodable protobuf {full_name}: {err}"))
        }
        Encoding::Json => wmslink_proto::json::decode::<T>(full_name, payload)
            .map_err(|err| format!("undecodable JSON {full_name}: {err}")),
    }
}

/// Checks a shipment update for the projection; every violation is listed.
pub fn check_shipment_update(update: &ShipmentUpdated) -> Result<(), FieldViolations> {
    let mut violations = FieldViolations::new();
    if update.sequence < 1 {
        violations.add("sequence", "must be at least 1");
    }
    match &update.shipment {
        None => violations.add("shipment", "must be set"),
        Some(shipment) => {
            check_shop_id("shipment.shop_id", &shipment.shop_id, &mut violations);
            check_order_no("shipment.order_no", &shipment.order_no, &mut violations);
            if ShippingStatus::try_from(shipment.shipping_status).is_err() {
                violations.add(
                    "shipment.shipping_status",
                    format!("{} is not a shipping status", shipment.shipping_status),
                );
            }
            if shipment.wms_status_id < 0 {
                violations.add("shipment.wms_status_id", "must not be negative");
            }
            for (name, value) in [
                ("wms_status_name", &shipment.wms_status_name),
                ("tracking_code", &shipment.tracking_code),
                ("shipped_date", &shipment.shipped_date),
                ("last_error", &shipment.last_error),
            ] {
                check_text(
                    &format!("shipment.{name}"),
                    value,
                    MAX_TEXT_CHARS * 4,
                    &mut violations,
                );
            }
        }
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(violations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use wmslink_proto::dispatch::v1::Shipment;
    use wmslink_proto::orders::v1::Order;

    #[test]
    fn content_type_selects_the_decoder() {
        assert_eq!(encoding_of(None), Ok(Encoding::Protobuf));
        assert_eq!(encoding_of(Some("application/json")), Ok(Encoding::Json));
        assert_eq!(
            encoding_of(Some("Application/JSON; charset=utf-8")),
            Ok(Encoding::Json)
        );
        assert_eq!(
            encoding_of(Some("application/protobuf")),
            Ok(Encoding::Protobuf)
        );
        assert!(encoding_of(Some("text/xml")).is_err());
    }

    #[test]
    fn decodes_both_encodings_and_names_the_failure() {
        let order = Order {
            shop_id: "s".into(),
            order_no: "1".into(),
            revision: 2,
            ..Order::default()
        };
        let decoded: Order = decode(
            "wmslink.orders.v1.Order",
            &order.encode_to_vec(),
            Encoding::Protobuf,
        )
        .expect("protobuf");
        assert_eq!(decoded, order);
        let decoded: Order = decode(
            "wmslink.orders.v1.Order",
            br#"{"shopId":"s","order_no":"1","revision":"2","orderDate":"2026-05-01T10:15:00+09:00"}"#,
            Encoding::Json,
        )
        .expect("json");
        assert_eq!(decoded.revision, 2);
        assert_eq!(decoded.order_date.map(|ts| ts.seconds), Some(1_777_598_100));
        let err = decode::<Order>(
            "wmslink.orders.v1.Order",
            b"\xff\xff\xff",
            Encoding::Protobuf,
        )
        .expect_err("garbage");
        assert!(err.contains("undecodable protobuf"), "{err}");
        let err = decode::<Order>("wmslink.orders.v1.Order", b"{\"nope\":1}", Encoding::Json)
            .expect_err("unknown field");
        assert!(err.contains("undecodable JSON"), "{err}");
    }

    #[test]
    fn shipment_updates_are_checked() {
        let mut update = ShipmentUpdated {
            event_id: "e".into(),
            shipment: Some(Shipment {
                shop_id: "s1".into(),
                order_no: "A-1".into(),
                shipping_status: ShippingStatus::Sent as i32,
                wms_status_id: 20,
                ..Shipment::default()
            }),
            sequence: 1,
            occurred_at: None,
        };
        assert!(check_shipment_update(&update).is_ok());
        update.sequence = 0;
        if let Some(shipment) = update.shipment.as_mut() {
            shipment.order_no = "a b".into();
            shipment.shipping_status = 42;
        }
        let violations = check_shipment_update(&update).expect_err("invalid");
        let fields: Vec<&str> = violations.iter().map(|(field, _)| field).collect();
        assert_eq!(
            fields,
            vec!["sequence", "shipment.order_no", "shipment.shipping_status"]
        );
    }
}
