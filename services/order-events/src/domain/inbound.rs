//! Checks of inbound NATS payloads beyond the order itself (decoding, size and the subject's
//! shop are the platform consumer's: `Delivery::decode`, `Delivery::shop`).

use wmslink_platform::validation::FieldViolations;
use wmslink_proto::dispatch::v1::ShipmentUpdated;
use wmslink_proto::orders::v1::ShippingStatus;
use wmslink_proto::sync::v1::{AnomalyKind, WmsAnomaly};

use super::validation::{MAX_TEXT_CHARS, check_order_no, check_shop_id, check_text};

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

/// Checks an anomaly from status-sync (`wms.{shop}.anomaly`); every violation is listed.
pub fn check_anomaly(anomaly: &WmsAnomaly) -> Result<AnomalyKind, FieldViolations> {
    let mut violations = FieldViolations::new();
    check_shop_id("shop_id", &anomaly.shop_id, &mut violations);
    check_order_no("order_no", &anomaly.order_no, &mut violations);
    let kind = match AnomalyKind::try_from(anomaly.kind) {
        Ok(kind) if kind != AnomalyKind::Unspecified => Some(kind),
        _ => {
            violations.add("kind", format!("{} is not an anomaly kind", anomaly.kind));
            None
        }
    };
    if anomaly.wms_order_id < 0 {
        violations.add("wms_order_id", "must not be negative");
    }
    check_text(
        "detail",
        &anomaly.detail,
        MAX_TEXT_CHARS * 4,
        &mut violations,
    );
    match kind {
        Some(kind) if violations.is_empty() => Ok(kind),
        _ => Err(violations),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wmslink_proto::dispatch::v1::Shipment;

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
