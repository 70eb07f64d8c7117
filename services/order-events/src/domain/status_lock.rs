//! R4, the processing lock: while the WMS is processing an order, the cart may not change the
//! order's status. A change that keeps the status always passes.
//!
//! The lock holds only while all of these say the WMS status we hold is live and kept current:
//! - the shipment is live in the WMS: `SENT` or `CANCEL_REQUESTED` (not cancelled, not shipped,
//!   not yet sent); a WMS-side cancellation (the WMS keeps 処理中 and sets its cancel flag)
//!   makes the dispatcher report `CANCELLED`, which releases the lock;
//! - its WMS status is one of `orders.processing_wms_status_ids` (by default 20 処理中);
//! - the shop is enabled with shipment results on (otherwise status-sync no longer polls it);
//! - the order is dated within the shop's sync period (status-sync asks only about those).
//!
//! The WMS status is what status-sync last saw, so the lock lags the WMS by up to status-sync's
//! `sync.interval_ms` plus propagation; the refusal says when the status was last reported. The
//! gRPC path answers the refusal as `FAILED_PRECONDITION`; the NATS path keeps the snapshot
//! apart and publishes `status_change_rejected` (see `service.rs`).

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use wmslink_proto::orders::v1::{IntegrationStatus, ShippingStatus};

/// What order-events knows of a shop's synchronisation (from `settings.{shop}.changed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShopSync {
    pub enabled: bool,
    pub shipment_results: bool,
    pub sync_period_days: i32,
}

impl ShopSync {
    /// Whether status-sync keeps the WMS status of this shop's orders current.
    fn polled(&self) -> bool {
        self.enabled && self.shipment_results
    }
}

/// The lock, with the WMS status ids that hold it.
#[derive(Debug, Clone)]
pub struct StatusLock {
    locking_wms_status_ids: Arc<[i32]>,
}

/// A status change R4 refuses; the text says why and how fresh the WMS status is (it is what
/// the cart is told).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "order {order_no}: the WMS is processing it (WMS status {wms_status_id} {}, {}), so its \
     status cannot change from '{current}' to '{requested}' until the WMS is done (R4); the \
     WMS status is refreshed every status-sync interval (default 5 min) plus propagation, so \
     send the change again once the order has left processing",
    shown_name(.wms_status_name),
    shown_freshness(.reported_at)
)]
pub struct StatusLocked {
    pub order_no: String,
    pub wms_status_id: i32,
    pub wms_status_name: String,
    /// When the WMS status was last reported to order-events.
    pub reported_at: Option<DateTime<Utc>>,
    pub current: String,
    pub requested: String,
}

fn shown_name(wms_status_name: &str) -> &str {
    if wms_status_name.is_empty() {
        "処理中 (processing)"
    } else {
        wms_status_name
    }
}

fn shown_freshness(reported_at: &Option<DateTime<Utc>>) -> String {
    match reported_at {
        Some(at) => format!(
            "as last reported at {}",
            at.to_rfc3339_opts(SecondsFormat::Secs, true)
        ),
        None => "as last reported".to_owned(),
    }
}

impl StatusLock {
    pub fn new(locking_wms_status_ids: &[i32]) -> Self {
        Self {
            locking_wms_status_ids: locking_wms_status_ids.into(),
        }
    }

    /// Refuses moving the order from `current` to `requested` while the lock holds (see the
    /// module's rules). `order_date` is the stored order's.
    #[allow(clippy::too_many_arguments)]
    pub fn check(
        &self,
        order_no: &str,
        order_date: Option<DateTime<Utc>>,
        wms: &IntegrationStatus,
        shop: &ShopSync,
        current: &str,
        requested: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StatusLocked> {
        let locked = current != requested
            && shop.polled()
            && shipment_live(wms.shipping_status)
            && status_locked(wms.wms_status_id, &self.locking_wms_status_ids)
            && within_sync_period(order_date, shop.sync_period_days, now);
        if !locked {
            return Ok(());
        }
        Err(StatusLocked {
            order_no: order_no.to_owned(),
            wms_status_id: wms.wms_status_id,
            wms_status_name: wms.wms_status_name.clone(),
            reported_at: wms
                .updated_at
                .as_ref()
                .and_then(wmslink_proto::from_timestamp),
            current: current.to_owned(),
            requested: requested.to_owned(),
        })
    }
}

/// Whether the shipment is live in the WMS: sent, or its cancellation requested and not answered.
pub fn shipment_live(shipping_status: i32) -> bool {
    shipping_status == ShippingStatus::Sent as i32
        || shipping_status == ShippingStatus::CancelRequested as i32
}

/// Whether the WMS status locks the order's cart status (0: not known to the WMS).
pub fn status_locked(wms_status_id: i32, locking_ids: &[i32]) -> bool {
    wms_status_id != 0 && locking_ids.contains(&wms_status_id)
}

/// Whether status-sync still asks about an order of this date (its sync period).
fn within_sync_period(
    order_date: Option<DateTime<Utc>>,
    sync_period_days: i32,
    now: DateTime<Utc>,
) -> bool {
    order_date.is_some_and(|date| date >= now - TimeDelta::days(i64::from(sync_period_days)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOP: ShopSync = ShopSync {
        enabled: true,
        shipment_results: true,
        sync_period_days: 30,
    };

    fn wms(shipping_status: ShippingStatus, wms_status_id: i32) -> IntegrationStatus {
        IntegrationStatus {
            shipping_status: shipping_status as i32,
            wms_status_id,
            updated_at: Some(wmslink_proto::timestamp(1_780_000_000, 0)),
            ..IntegrationStatus::default()
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_780_000_600, 0).expect("time")
    }

    fn check(
        wms: &IntegrationStatus,
        shop: &ShopSync,
        order_date: DateTime<Utc>,
    ) -> Result<(), StatusLocked> {
        StatusLock::new(&[20]).check(
            "A-1",
            Some(order_date),
            wms,
            shop,
            "new",
            "cancelled",
            now(),
        )
    }

    #[test]
    fn only_configured_wms_statuses_lock() {
        assert!(status_locked(20, &[20]));
        assert!(!status_locked(10, &[20]));
        assert!(!status_locked(0, &[0, 20]));
        assert!(status_locked(25, &[20, 25]));
    }

    #[test]
    fn the_lock_reason_says_why_and_how_fresh() {
        let reason = check(&wms(ShippingStatus::Sent, 20), &SHOP, now())
            .expect_err("locked")
            .to_string();
        assert!(reason.contains("WMS status 20"), "{reason}");
        assert!(reason.contains("処理中"), "{reason}");
        assert!(reason.contains("R4"), "{reason}");
        assert!(reason.contains("'new' to 'cancelled'"), "{reason}");
        assert!(
            reason.contains("as last reported at 2026-05-28T20:26:40Z"),
            "{reason}"
        );
        assert!(reason.contains("status-sync interval"), "{reason}");
    }

    #[test]
    fn only_a_live_shipment_of_a_polled_shop_in_the_sync_period_locks() {
        let at_20 = wms(ShippingStatus::Sent, 20);
        assert!(check(&at_20, &SHOP, now()).is_err());
        assert!(check(&wms(ShippingStatus::CancelRequested, 20), &SHOP, now()).is_err());
        for released in [
            ShippingStatus::Cancelled,
            ShippingStatus::Shipped,
            ShippingStatus::CancelRejected,
            ShippingStatus::NotSent,
            ShippingStatus::Error,
        ] {
            assert_eq!(
                check(&wms(released, 20), &SHOP, now()),
                Ok(()),
                "{released:?}"
            );
        }
        let disabled = ShopSync {
            enabled: false,
            ..SHOP
        };
        assert_eq!(check(&at_20, &disabled, now()), Ok(()));
        let results_off = ShopSync {
            shipment_results: false,
            ..SHOP
        };
        assert_eq!(check(&at_20, &results_off, now()), Ok(()));
        assert!(check(&at_20, &SHOP, now() - TimeDelta::days(30)).is_err());
        assert_eq!(
            check(
                &at_20,
                &SHOP,
                now() - TimeDelta::days(30) - TimeDelta::seconds(1)
            ),
            Ok(())
        );
    }

    #[test]
    fn a_change_that_keeps_the_status_passes_and_other_statuses_never_lock() {
        let lock = StatusLock::new(&[20]);
        let keep = |wms: &IntegrationStatus, requested: &str| {
            lock.check("A-1", Some(now()), wms, &SHOP, "new", requested, now())
        };
        assert_eq!(keep(&wms(ShippingStatus::Sent, 20), "new"), Ok(()));
        assert_eq!(keep(&wms(ShippingStatus::Sent, 50), "cancelled"), Ok(()));
        assert_eq!(keep(&wms(ShippingStatus::Sent, 0), "cancelled"), Ok(()));
    }
}
