//! S4: the enable switch. The integration may be switched on only with a current, successful
//! connection check and complete settings; while it is on, a registration may not change the
//! key or URL nor leave the settings incomplete. Switching off needs nothing.

use super::connection_check::{CheckRecord, check_blocker};
use super::model::{Blocker, Detail, OrderStatus, StatusKind, find_status};

/// Why the integration may not be switched on now (empty: it may).
pub fn enable_blockers(
    check: Option<&CheckRecord>,
    credentials_rev: i64,
    detail: &Detail,
    catalog: &[OrderStatus],
) -> Vec<Blocker> {
    let mut blockers: Vec<Blocker> = check_blocker(check, credentials_rev).into_iter().collect();
    blockers.extend(completeness_blockers(detail, catalog));
    blockers
}

/// Why a registration is refused while the integration is enabled (empty: it is not):
/// a new key or URL would void the connection check the switch relies on, and the settings
/// must stay complete.
pub fn register_while_enabled_blockers(
    credentials_changed: bool,
    detail: &Detail,
    catalog: &[OrderStatus],
) -> Vec<Blocker> {
    let mut blockers = Vec::new();
    if credentials_changed {
        blockers.push(Blocker::new(
            "ENABLED",
            "access_key / detail.endpoint_url",
            "the integration is enabled: check the new access key and endpoint URL first (CheckConnection with them) and register exactly those to rotate them while enabled, or disable it, change them, check the connection and enable it again",
        ));
    }
    blockers.extend(completeness_blockers(detail, catalog));
    blockers
}

/// Another enabled shop uses the same WMS access key and endpoint URL: one WMS account for two
/// shops, where adopting an order by its number could take the other shop's order. The other
/// shop is not named (it may belong to another tenant).
pub fn shared_account_blocker() -> Blocker {
    Blocker::new(
        "SHARED_WMS_ACCOUNT",
        "access_key / detail.endpoint_url",
        "another enabled shop uses the same WMS access key and endpoint URL; two shops on one WMS account could take each other's orders, so each shop needs a WMS account (access key) of its own",
    )
}

/// What the detail settings lack before the integration may be enabled (S4).
///
/// "Complete" means:
/// - at least one data target is on;
/// - with shipment instructions on: at least one target order status, every one still in the
///   catalog and not of kind cancelled; shipper id, delivery method id and conversion robot id
///   set; at least one payment method mapping (orders paid with an unmapped method are put in
///   error by the dispatcher, naming the method);
/// - with cancellations on: the catalog has at least one status of kind cancelled (otherwise
///   no cart cancellation could ever be recognised).
pub fn completeness_blockers(detail: &Detail, catalog: &[OrderStatus]) -> Vec<Blocker> {
    let mut blockers = Vec::new();
    let mut missing = |subject: &str, description: String| {
        blockers.push(Blocker::new("INCOMPLETE", subject, description));
    };
    let targets = detail.data_targets;
    if !(targets.shipment_instructions || targets.cancellations || targets.shipment_results) {
        missing(
            "detail.data_targets",
            "no data target is on (shipment instructions, cancellations or shipment results)"
                .into(),
        );
    }
    if targets.shipment_instructions {
        if detail.target_status_codes.is_empty() {
            missing(
                "detail.target_status_codes",
                "shipment instructions need at least one target order status".into(),
            );
        }
        for (index, code) in detail.target_status_codes.iter().enumerate() {
            match find_status(catalog, code) {
                None => missing(
                    &format!("detail.target_status_codes[{index}]"),
                    format!("order status '{code}' is not in the shop's order-status catalog"),
                ),
                Some(status) if status.kind == StatusKind::Cancelled => missing(
                    &format!("detail.target_status_codes[{index}]"),
                    format!("order status '{code}' is of kind cancelled"),
                ),
                Some(_) => {}
            }
        }
        for (subject, value, what) in [
            (
                "detail.shipper_id",
                detail.shipper_id,
                "the WMS shipper id (発送元)",
            ),
            (
                "detail.delivery_method_id",
                detail.delivery_method_id,
                "the WMS delivery method id (配送方法)",
            ),
            (
                "detail.robot_id",
                detail.robot_id,
                "the WMS conversion robot id (変換ロボットID)",
            ),
        ] {
            if value <= 0 {
                missing(subject, format!("shipment instructions need {what}"));
            }
        }
        if detail.payment_mappings.is_empty() {
            missing(
                "detail.payment_mappings",
                "shipment instructions need at least one payment method mapping (支払方法)".into(),
            );
        }
    }
    if targets.cancellations && !catalog.iter().any(|s| s.kind == StatusKind::Cancelled) {
        missing(
            "order_status_catalog",
            "cancellations need at least one order status of kind cancelled in the catalog".into(),
        );
    }
    blockers
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::domain::connection_check::CheckOutcome;
    use crate::domain::fixtures::{catalog, full, validate};
    use crate::domain::model::DataTargets;
    use wmslink_proto::settings::v1 as pb;

    #[test]
    fn unset_wms_ids_are_allowed_but_make_the_settings_incomplete() {
        let mut detail = full();
        detail.shipper_id = 0;
        detail.delivery_method_id = 0;
        detail.robot_id = 0;
        detail.payment_mappings.clear();
        detail.target_status_codes.clear();
        let registration = validate(&detail, Some("key-1")).unwrap();
        let subjects: Vec<String> = completeness_blockers(&registration.detail, &catalog())
            .into_iter()
            .map(|b| b.subject)
            .collect();
        assert_eq!(
            subjects,
            [
                "detail.target_status_codes",
                "detail.shipper_id",
                "detail.delivery_method_id",
                "detail.robot_id",
                "detail.payment_mappings"
            ]
        );
    }

    #[test]
    fn without_shipment_instructions_ids_are_not_needed() {
        let mut detail = full();
        detail.data_targets = Some(pb::DataTargets {
            shipment_instructions: false,
            cancellations: false,
            shipment_results: true,
        });
        detail.shipper_id = 0;
        detail.payment_mappings.clear();
        let registration = validate(&detail, Some("key-1")).unwrap();
        assert!(completeness_blockers(&registration.detail, &catalog()).is_empty());

        let mut none = registration.detail.clone();
        none.data_targets = DataTargets::default();
        assert_eq!(
            completeness_blockers(&none, &catalog())[0].subject,
            "detail.data_targets"
        );
    }

    #[test]
    fn cancellations_need_a_cancelled_status() {
        let registration = validate(&full(), Some("key-1")).unwrap();
        let open_only: Vec<OrderStatus> = catalog()
            .into_iter()
            .filter(|s| s.kind != StatusKind::Cancelled)
            .collect();
        let blockers = completeness_blockers(&registration.detail, &open_only);
        assert_eq!(blockers.len(), 1);
        assert_eq!(blockers[0].subject, "order_status_catalog");
    }

    #[test]
    fn enabling_needs_a_current_check_and_complete_settings() {
        let registration = validate(&full(), Some("key-1")).unwrap();
        let check = CheckRecord {
            outcome: CheckOutcome::Ok,
            detail: "connected".into(),
            checked_at: chrono::Utc::now(),
            credentials_rev: 1,
        };
        assert!(enable_blockers(Some(&check), 1, &registration.detail, &catalog()).is_empty());
        let mut incomplete = registration.detail.clone();
        incomplete.shipper_id = 0;
        let kinds: Vec<&str> = enable_blockers(None, 1, &incomplete, &catalog())
            .iter()
            .map(|b| b.kind)
            .collect();
        assert_eq!(kinds, ["CONNECTION_CHECK", "INCOMPLETE"]);
    }

    #[test]
    fn while_enabled_a_registration_keeps_key_url_and_completeness() {
        let registration = validate(&full(), Some("key-1")).unwrap();
        assert!(
            register_while_enabled_blockers(false, &registration.detail, &catalog()).is_empty()
        );
        let blockers = register_while_enabled_blockers(true, &registration.detail, &catalog());
        assert_eq!(blockers.len(), 1);
        assert_eq!(blockers[0].kind, "ENABLED");
    }
}
