//! The service's own vocabulary: watched shipments, what the WMS showed of them, sync periods.

use std::time::Duration;

use chrono::{DateTime, Utc};
use wmslink_proto::orders::v1::ShippingStatus;
use wmslink_wms_client::port::WmsOrder;

/// Shipping statuses under which the WMS holds the order and it is watched.
pub const WATCHED_STATUSES: [&str; 3] = ["SENT", "CANCEL_REQUESTED", "CANCEL_REJECTED"];

/// The short name a shipping status is stored under (`SENT`, `CANCEL_REQUESTED`, …).
pub fn status_key(status: ShippingStatus) -> &'static str {
    let name = status.as_str_name();
    name.strip_prefix("SHIPPING_STATUS_").unwrap_or(name)
}

/// What the WMS showed of one order, minus when we looked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub wms_order_id: i64,
    pub status_id: i32,
    pub status_name: String,
    pub cancelled: bool,
    pub shipped: bool,
    /// The carrier's status; 0 when none.
    pub shipping_status_id: i32,
    /// Its name as the WMS names it; empty when none.
    pub shipping_status_name: String,
    /// The carrier's status is final (delivered, returned, cancelled): nothing more will
    /// happen, so a shipped order needs no more watching. The WMS adapter decides.
    pub carrier_final: bool,
    /// Empty when none.
    pub tracking_code: String,
    /// ISO date, empty when none.
    pub shipping_date: String,
    /// When the WMS last changed the order.
    pub wms_updated_at: DateTime<Utc>,
}

impl Observation {
    pub fn from_wms(order: &WmsOrder) -> Self {
        let carrier = order.carrier.as_ref();
        Self {
            wms_order_id: order.order_id,
            status_id: order.status_id,
            status_name: order.status_name.clone(),
            cancelled: order.cancelled,
            shipped: order.shipped,
            shipping_status_id: carrier.map_or(0, |c| c.id),
            shipping_status_name: carrier.map(|c| c.name.clone()).unwrap_or_default(),
            carrier_final: carrier.is_some_and(|c| c.is_final),
            tracking_code: order.tracking_code.clone().unwrap_or_default(),
            shipping_date: order
                .shipping_date
                .map(|date| date.format("%Y-%m-%d").to_string())
                .unwrap_or_default(),
            wms_updated_at: order.updated_at,
        }
    }

    /// Whether anything the cart cares about differs (the WMS's update time alone does not
    /// count: the WMS bumps it for changes nobody downstream sees).
    pub fn differs_from(&self, before: &Observation) -> bool {
        self.wms_order_id != before.wms_order_id
            || self.status_id != before.status_id
            || self.status_name != before.status_name
            || self.cancelled != before.cancelled
            || self.shipped != before.shipped
            || self.shipping_status_id != before.shipping_status_id
            || self.tracking_code != before.tracking_code
            || self.shipping_date != before.shipping_date
    }
}

/// One shipment of the watch list as stored (every shipment of the shop that the dispatcher
/// told us about, watched or not: the ones not watched still count as "sent by wmslink").
#[derive(Debug, Clone, PartialEq)]
pub struct WatchRow {
    pub order_no: String,
    /// 0 until the WMS registered it.
    pub wms_order_id: i64,
    pub order_date: DateTime<Utc>,
    /// As [`status_key`].
    pub shipping_status: String,
    /// The dispatcher's R5 flag: it saw the WMS cancel the shipment without being asked.
    pub cancelled_unrequested: bool,
    /// The dispatcher's R5 flag: it adopted the shipment after the WMS refused it as a
    /// duplicate (registered outside wmslink).
    pub registered_outside: bool,
    /// The dispatcher's flag: sent with an unknown outcome and not found since, so the WMS
    /// may hold it from wmslink's own send.
    pub possibly_in_wms: bool,
    pub sequence: i64,
    /// When the dispatcher first reported it shipped.
    pub shipped_at: Option<DateTime<Utc>>,
    /// The last observation, if any.
    pub last: Option<Observation>,
    /// Last time the WMS returned it in any answer.
    pub seen_in_wms_at: Option<DateTime<Utc>>,
    /// The W3C trace context of the dispatcher's last update: an observation of the order
    /// continues it (one trace per order).
    pub traceparent: Option<String>,
}

impl WatchRow {
    /// Watched: held by the WMS and not settled yet. Mirrors the SQL in `store`.
    pub fn is_watched(&self, now: DateTime<Utc>, shipped_watch: Duration) -> bool {
        if WATCHED_STATUSES.contains(&self.shipping_status.as_str()) {
            return true;
        }
        if self.shipping_status != "SHIPPED" {
            return false;
        }
        let settled = self.last.as_ref().is_some_and(|last| last.carrier_final);
        let recent = self.shipped_at.is_none_or(|at| {
            chrono::Duration::from_std(shipped_watch)
                .map(|window| at + window > now)
                .unwrap_or(true)
        });
        !settled && recent
    }

    /// Whether the cart asked the WMS to cancel it (so a WMS cancellation is expected).
    pub fn cancellation_requested(&self) -> bool {
        matches!(
            self.shipping_status.as_str(),
            "CANCEL_REQUESTED" | "CANCELLED"
        )
    }

    /// Whether the dispatcher may still be registering it (the WMS may know it before we
    /// hear of the registration).
    pub fn before_registration(&self) -> bool {
        matches!(
            self.shipping_status.as_str(),
            "NOT_SENT" | "QUEUED" | "SENDING" | "ERROR" | "UNSPECIFIED"
        )
    }
}

/// Order dates `[from, to)`; `to` open when `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from: DateTime<Utc>,
    pub to: Option<DateTime<Utc>>,
}

impl Period {
    /// The shop's sync period ⑧: the last `days` days, up to any time (an order dated a little
    /// in the future by a skewed clock is still in).
    pub fn last_days(now: DateTime<Utc>, days: u32) -> Self {
        Self {
            from: now - chrono::Duration::days(i64::from(days.max(1))),
            to: None,
        }
    }

    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        at >= self.from && self.to.is_none_or(|to| at < to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: &str) -> WatchRow {
        WatchRow {
            order_no: "A-1".into(),
            wms_order_id: 7,
            order_date: Utc::now(),
            shipping_status: status.into(),
            cancelled_unrequested: false,
            registered_outside: false,
            possibly_in_wms: false,
            sequence: 1,
            shipped_at: None,
            last: None,
            seen_in_wms_at: None,
            traceparent: None,
        }
    }

    #[test]
    fn status_keys_round_trip_short_names() {
        assert_eq!(
            status_key(ShippingStatus::CancelRequested),
            "CANCEL_REQUESTED"
        );
        assert_eq!(status_key(ShippingStatus::Sent), "SENT");
    }

    #[test]
    fn watched_statuses_and_shipped_until_final_or_old() {
        let now = Utc::now();
        let window = Duration::from_secs(14 * 24 * 3600);
        for status in ["SENT", "CANCEL_REQUESTED", "CANCEL_REJECTED"] {
            assert!(row(status).is_watched(now, window), "{status}");
        }
        for status in ["CANCELLED", "NOT_SENT", "QUEUED", "SENDING", "ERROR"] {
            assert!(!row(status).is_watched(now, window), "{status}");
        }
        let mut shipped = row("SHIPPED");
        shipped.shipped_at = Some(now - chrono::Duration::days(2));
        assert!(shipped.is_watched(now, window));
        shipped.shipped_at = Some(now - chrono::Duration::days(15));
        assert!(!shipped.is_watched(now, window), "too old");
        shipped.shipped_at = Some(now);
        let mut delivered = observation();
        delivered.shipping_status_id = 1;
        delivered.carrier_final = true;
        shipped.last = Some(delivered);
        assert!(!shipped.is_watched(now, window), "delivered is final");
    }

    fn observation() -> Observation {
        Observation {
            wms_order_id: 7,
            status_id: 50,
            status_name: "出荷待ち".into(),
            cancelled: false,
            shipped: false,
            shipping_status_id: 0,
            shipping_status_name: String::new(),
            carrier_final: false,
            tracking_code: String::new(),
            shipping_date: String::new(),
            wms_updated_at: Utc::now(),
        }
    }

    #[test]
    fn an_observation_takes_the_meanings_the_wms_adapter_gave() {
        let order = WmsOrder {
            order_id: 7,
            order_no: "A-1".into(),
            status_id: 100,
            status_name: "出荷検品済".into(),
            cancelled: false,
            shipped: true,
            processing: false,
            carrier: Some(wmslink_wms_client::port::CarrierStatus {
                id: 12,
                name: "返品".into(),
                is_final: true,
            }),
            tracking_code: Some("T-1".into()),
            shipping_date: chrono::NaiveDate::from_ymd_opt(2026, 11, 29),
            updated_at: Utc::now(),
        };
        let seen = Observation::from_wms(&order);
        assert!(seen.shipped && !seen.cancelled);
        assert_eq!(
            (seen.shipping_status_id, seen.shipping_status_name.as_str()),
            (12, "返品")
        );
        assert!(seen.carrier_final);
        assert_eq!(seen.shipping_date, "2026-11-29");
        let none = Observation::from_wms(&WmsOrder {
            carrier: None,
            ..order
        });
        assert_eq!((none.shipping_status_id, none.carrier_final), (0, false));
        assert!(none.shipping_status_name.is_empty());
    }

    #[test]
    fn only_visible_changes_count() {
        let before = observation();
        let mut later = before.clone();
        later.wms_updated_at += chrono::Duration::minutes(3);
        assert!(!later.differs_from(&before));
        later.tracking_code = "1234-5678".into();
        assert!(later.differs_from(&before));
        let mut status = before.clone();
        status.status_id = 20;
        assert!(status.differs_from(&before));
    }

    #[test]
    fn period_is_half_open() {
        let now = Utc::now();
        let period = Period {
            from: now - chrono::Duration::days(1),
            to: Some(now),
        };
        assert!(period.contains(now - chrono::Duration::hours(1)));
        assert!(period.contains(period.from));
        assert!(!period.contains(now));
        assert!(Period::last_days(now, 30).contains(now + chrono::Duration::hours(1)));
        assert!(!Period::last_days(now, 30).contains(now - chrono::Duration::days(31)));
    }
}
