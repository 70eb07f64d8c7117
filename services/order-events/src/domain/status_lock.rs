//! R4, the processing lock: while the WMS is processing an order (its WMS status is one of
//! `orders.processing_wms_status_ids`, by default 20 処理中), the cart may not change the order's
//! status. A change that keeps the status always passes. The gRPC path answers the refusal as
//! `FAILED_PRECONDITION`; the NATS path keeps the snapshot apart and publishes
//! `status_change_rejected` (see `service.rs`).

use std::sync::Arc;

use wmslink_proto::orders::v1::IntegrationStatus;

/// The lock, with the WMS status ids that hold it.
#[derive(Debug, Clone)]
pub struct StatusLock {
    locking_wms_status_ids: Arc<[i32]>,
}

/// A status change R4 refuses; the text says why (it is what the cart is told).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "order {order_no}: the WMS is processing it (WMS status {wms_status_id} {}), so its \
     status cannot change from '{current}' to '{requested}' until the WMS is done (R4)",
    shown_name(.wms_status_name)
)]
pub struct StatusLocked {
    pub order_no: String,
    pub wms_status_id: i32,
    pub wms_status_name: String,
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

impl StatusLock {
    pub fn new(locking_wms_status_ids: &[i32]) -> Self {
        Self {
            locking_wms_status_ids: locking_wms_status_ids.into(),
        }
    }

    /// Refuses moving the order from `current` to `requested` while its WMS status (from the
    /// projection) locks it.
    pub fn check(
        &self,
        order_no: &str,
        wms: &IntegrationStatus,
        current: &str,
        requested: &str,
    ) -> Result<(), StatusLocked> {
        if current == requested || !status_locked(wms.wms_status_id, &self.locking_wms_status_ids) {
            return Ok(());
        }
        Err(StatusLocked {
            order_no: order_no.to_owned(),
            wms_status_id: wms.wms_status_id,
            wms_status_name: wms.wms_status_name.clone(),
            current: current.to_owned(),
            requested: requested.to_owned(),
        })
    }
}

/// Whether the WMS status locks the order's cart status (0: not known to the WMS).
pub fn status_locked(wms_status_id: i32, locking_ids: &[i32]) -> bool {
    wms_status_id != 0 && locking_ids.contains(&wms_status_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wms(wms_status_id: i32) -> IntegrationStatus {
        IntegrationStatus {
            wms_status_id,
            ..IntegrationStatus::default()
        }
    }

    #[test]
    fn only_configured_wms_statuses_lock() {
        assert!(status_locked(20, &[20]));
        assert!(!status_locked(10, &[20]));
        assert!(!status_locked(0, &[0, 20]));
        assert!(status_locked(25, &[20, 25]));
    }

    #[test]
    fn the_lock_reason_says_why() {
        let lock = StatusLock::new(&[20]);
        let reason = lock
            .check("A-1", &wms(20), "new", "cancelled")
            .expect_err("locked")
            .to_string();
        assert!(reason.contains("WMS status 20"), "{reason}");
        assert!(reason.contains("処理中"), "{reason}");
        assert!(reason.contains("R4"), "{reason}");
        assert!(reason.contains("'new' to 'cancelled'"), "{reason}");
    }

    #[test]
    fn a_change_that_keeps_the_status_passes_and_other_statuses_never_lock() {
        let lock = StatusLock::new(&[20]);
        assert_eq!(lock.check("A-1", &wms(20), "new", "new"), Ok(()));
        assert_eq!(lock.check("A-1", &wms(50), "new", "cancelled"), Ok(()));
        assert_eq!(lock.check("A-1", &wms(0), "new", "cancelled"), Ok(()));
    }
}
