//! The shop's order-status catalog (受注ステータス, the source of S3 ⑤): what a valid catalog is,
//! and which changes it may not make to registered settings.

use std::collections::HashSet;

use wmslink_platform::validation::FieldViolations;
use wmslink_proto::settings::v1 as pb;

use super::model::{Blocker, Detail, OrderStatus, StatusKind, find_status};
use super::validation::check_code;

pub const MAX_CATALOG_STATUSES: usize = 500;
pub const MAX_DISPLAY_NAME_LEN: usize = 200;

/// Validates a whole catalog (`PutOrderStatusCatalog`).
pub fn validate_catalog(raw: &[pb::OrderStatus]) -> Result<Vec<OrderStatus>, FieldViolations> {
    let mut v = FieldViolations::new();
    if raw.len() > MAX_CATALOG_STATUSES {
        v.add(
            "statuses",
            format!("at most {MAX_CATALOG_STATUSES} statuses"),
        );
        return Err(v);
    }
    let mut seen = HashSet::new();
    let mut statuses = Vec::with_capacity(raw.len());
    for (index, status) in raw.iter().enumerate() {
        let prefix = format!("statuses[{index}]");
        match check_code(&status.code) {
            Err(why) => v.add(format!("{prefix}.code"), why),
            Ok(()) => {
                if !seen.insert(status.code.as_str()) {
                    v.add(
                        format!("{prefix}.code"),
                        format!("order status '{}' is listed twice", status.code),
                    );
                }
            }
        }
        let name = status.display_name.trim();
        if name.is_empty() {
            v.add(format!("{prefix}.display_name"), "must not be empty");
        } else if status.display_name.chars().count() > MAX_DISPLAY_NAME_LEN {
            v.add(
                format!("{prefix}.display_name"),
                format!("must be at most {MAX_DISPLAY_NAME_LEN} characters"),
            );
        } else if status.display_name.chars().any(char::is_control) {
            v.add(
                format!("{prefix}.display_name"),
                "must not contain control characters",
            );
        }
        match StatusKind::from_proto(status.kind) {
            Some(kind) => statuses.push(OrderStatus {
                code: status.code.clone(),
                display_name: status.display_name.clone(),
                kind,
            }),
            None => v.add(
                format!("{prefix}.kind"),
                "must be ORDER_STATUS_KIND_OPEN, _CANCELLED or _COMPLETED",
            ),
        }
    }
    if v.is_empty() { Ok(statuses) } else { Err(v) }
}

/// What a new catalog would break in the registered settings (refused when not empty).
pub fn catalog_blockers(
    detail: &Detail,
    enabled: bool,
    new_catalog: &[OrderStatus],
) -> Vec<Blocker> {
    let mut blockers = Vec::new();
    for (index, code) in detail.target_status_codes.iter().enumerate() {
        let subject = format!("detail.target_status_codes[{index}]");
        match find_status(new_catalog, code) {
            None => blockers.push(Blocker::new(
                "STATUS_IN_USE",
                subject,
                format!(
                    "order status '{code}' is a target order status of the registered settings; remove it from the target statuses first"
                ),
            )),
            Some(status) if status.kind == StatusKind::Cancelled => blockers.push(Blocker::new(
                "STATUS_IN_USE",
                subject,
                format!(
                    "order status '{code}' is a target order status of the registered settings and cannot become a cancelled status"
                ),
            )),
            Some(_) => {}
        }
    }
    if enabled
        && detail.data_targets.cancellations
        && !new_catalog.iter().any(|s| s.kind == StatusKind::Cancelled)
    {
        blockers.push(Blocker::new(
            "STATUS_IN_USE",
            "detail.data_targets.cancellations",
            "the integration is enabled with cancellations on, which needs at least one order status of kind cancelled",
        ));
    }
    blockers
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::domain::fixtures::{catalog, full, validate};

    #[test]
    fn catalog_changes_may_not_drop_target_statuses() {
        let registration = validate(&full(), Some("key-1")).unwrap();
        let without_paid: Vec<OrderStatus> =
            catalog().into_iter().filter(|s| s.code != "paid").collect();
        let blockers = catalog_blockers(&registration.detail, false, &without_paid);
        assert_eq!(blockers.len(), 1);
        assert!(blockers[0].description.contains("'paid'"));

        let mut paid_cancelled = catalog();
        paid_cancelled[1].kind = StatusKind::Cancelled;
        assert_eq!(
            catalog_blockers(&registration.detail, false, &paid_cancelled).len(),
            1
        );

        let no_cancel: Vec<OrderStatus> = catalog()
            .into_iter()
            .filter(|s| s.code != "cancel")
            .collect();
        assert!(catalog_blockers(&registration.detail, false, &no_cancel).is_empty());
        assert_eq!(
            catalog_blockers(&registration.detail, true, &no_cancel).len(),
            1
        );
    }

    #[test]
    fn catalog_validation_lists_every_problem() {
        let raw = vec![
            pb::OrderStatus {
                code: "a".into(),
                display_name: "A".into(),
                kind: pb::OrderStatusKind::Open as i32,
            },
            pb::OrderStatus {
                code: "a".into(),
                display_name: " ".into(),
                kind: 0,
            },
            pb::OrderStatus {
                code: "".into(),
                display_name: "C".into(),
                kind: 42,
            },
        ];
        let fields: Vec<String> = validate_catalog(&raw)
            .unwrap_err()
            .iter()
            .map(|(f, _)| f.to_owned())
            .collect();
        assert_eq!(
            fields,
            [
                "statuses[1].code",
                "statuses[1].display_name",
                "statuses[1].kind",
                "statuses[2].code",
                "statuses[2].kind"
            ]
        );
    }
}
