//! The shipping-status state machine (出荷ステータス), pure: no I/O, no clock.
//!
//! ```text
//! NOT_SENT ─Queue─▶ QUEUED ─Claim─▶ SENDING ─Registered─▶ SENT ─ObservedShipped─▶ SHIPPED
//!                    ▲  │            │  │ ╲                 │                       │
//!              Retry │  │BuildFailed │  │  ╲Requeue (WMS down, or not in the WMS)   │
//!                    │  ▼            │  ▼   ╲──────▶ QUEUED  │CartCancel   CartCancel│
//!                   ERROR ◀─SendFailed  AdoptCancelled       ▼                       ▼
//!                                       ──▶ CANCELLED   CANCEL_REQUESTED ─CancelConfirmed─▶ CANCELLED
//!                                                               └─CancelRefused─▶ CANCEL_REJECTED
//! NOT_SENT | QUEUED | ERROR ─CartCancel─▶ CANCELLED (no WMS call: never in the WMS)
//! QUEUED | ERROR ─CancelInDoubt─▶ CANCEL_REQUESTED (sent before with an unknown outcome:
//!                                  the WMS is searched and the order cancelled there)
//! SENT | SHIPPED | CANCEL_REQUESTED | CANCEL_REJECTED ─ObservedCancelled─▶ CANCELLED
//! CANCEL_REJECTED ─ObservedShipped─▶ SHIPPED (the cancel_rejected flag stays)
//! ```
//!
//! `CANCELLED` is final (R3): every input is refused there. `SENDING` is the in-doubt step
//! around a WMS call: it is left only through what the WMS said or what a search of the WMS
//! found, never by a blind re-send. A cart cancellation that arrives while `SENDING` is not a
//! transition: it is recorded (`cancel_pending`) and applied when the send resolves.
//!
//! Beside [`transition`], [`plan_order_event`] and [`plan_observation`] decide what one order
//! event or one WMS observation does to a shipment.

use std::collections::HashSet;
use std::fmt;

use chrono::{DateTime, Utc};
use wmslink_proto::orders::v1::ShippingStatus;

/// 出荷ステータス.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    NotSent,
    Queued,
    Sending,
    Sent,
    Shipped,
    CancelRequested,
    Cancelled,
    CancelRejected,
    Error,
}

impl Status {
    pub const ALL: [Status; 9] = [
        Status::NotSent,
        Status::Queued,
        Status::Sending,
        Status::Sent,
        Status::Shipped,
        Status::CancelRequested,
        Status::Cancelled,
        Status::CancelRejected,
        Status::Error,
    ];

    /// The name stored in the database and shown in history.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::NotSent => "NOT_SENT",
            Status::Queued => "QUEUED",
            Status::Sending => "SENDING",
            Status::Sent => "SENT",
            Status::Shipped => "SHIPPED",
            Status::CancelRequested => "CANCEL_REQUESTED",
            Status::Cancelled => "CANCELLED",
            Status::CancelRejected => "CANCEL_REJECTED",
            Status::Error => "ERROR",
        }
    }

    pub fn parse(raw: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    pub fn to_proto(self) -> ShippingStatus {
        match self {
            Status::NotSent => ShippingStatus::NotSent,
            Status::Queued => ShippingStatus::Queued,
            Status::Sending => ShippingStatus::Sending,
            Status::Sent => ShippingStatus::Sent,
            Status::Shipped => ShippingStatus::Shipped,
            Status::CancelRequested => ShippingStatus::CancelRequested,
            Status::Cancelled => ShippingStatus::Cancelled,
            Status::CancelRejected => ShippingStatus::CancelRejected,
            Status::Error => ShippingStatus::Error,
        }
    }

    /// Nothing leaves it (R3).
    pub fn is_final(self) -> bool {
        self == Status::Cancelled
    }

    /// The WMS holds the order (registered by us): edits are no longer sent (R1).
    pub fn is_registered(self) -> bool {
        matches!(
            self,
            Status::Sent | Status::Shipped | Status::CancelRequested | Status::CancelRejected
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What can happen to a shipment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Input {
    /// The order entered a target status while the shop is enabled (or E1/E2 found it).
    Queue,
    /// The sender took it for a registration call.
    Claim,
    /// Its WMS row cannot be built (a mapping or a mapped field is missing).
    BuildFailed,
    /// The WMS registered it (answer, or a search after an unknown outcome or an "already
    /// registered" answer).
    Registered,
    /// Back to the queue: the WMS was down or rate limited, or a search showed it does not
    /// have the order.
    Requeue,
    /// The WMS refused the row.
    SendFailed,
    /// A search after an unknown outcome found the order only cancelled in the WMS.
    AdoptCancelled,
    /// The cart set a status of kind cancelled.
    CartCancel,
    /// The cart set a status of kind cancelled on a shipment that is not registered but was
    /// sent before with an unknown outcome: it may exist in the WMS, so it is searched there
    /// and cancelled, never cancelled without proof.
    CancelInDoubt,
    /// The WMS confirmed the cancel (answer, or the order read back cancelled).
    CancelConfirmed,
    /// The WMS refused the cancel (already packed or shipped).
    CancelRefused,
    /// status-sync saw the order shipped.
    ObservedShipped,
    /// status-sync saw the order cancelled in the WMS.
    ObservedCancelled,
    /// A person asked to try a failed shipment again.
    Retry,
    /// A person asked to send a rejected cancellation again.
    RetryCancel,
}

impl Input {
    pub const ALL: [Input; 15] = [
        Input::Queue,
        Input::Claim,
        Input::BuildFailed,
        Input::Registered,
        Input::Requeue,
        Input::SendFailed,
        Input::AdoptCancelled,
        Input::CartCancel,
        Input::CancelInDoubt,
        Input::CancelConfirmed,
        Input::CancelRefused,
        Input::ObservedShipped,
        Input::ObservedCancelled,
        Input::Retry,
        Input::RetryCancel,
    ];
}

/// A transition the state machine does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not allowed in {from}")]
pub struct Refused {
    pub from: Status,
    pub input: Input,
}

/// The one place that says which transitions exist.
pub fn transition(from: Status, input: Input) -> Result<Status, Refused> {
    use Input as I;
    use Status as S;
    let to = match (from, input) {
        (S::NotSent, I::Queue) => S::Queued,
        (S::Queued, I::Claim) => S::Sending,
        (S::Queued, I::BuildFailed) => S::Error,
        (S::Sending, I::Registered) => S::Sent,
        (S::Sending, I::Requeue) => S::Queued,
        (S::Sending, I::SendFailed) => S::Error,
        (S::Sending, I::AdoptCancelled) => S::Cancelled,
        (S::NotSent | S::Queued | S::Error, I::CartCancel) => S::Cancelled,
        (S::Sent | S::Shipped, I::CartCancel) => S::CancelRequested,
        (S::Queued | S::Error, I::CancelInDoubt) => S::CancelRequested,
        (S::CancelRequested, I::CancelConfirmed) => S::Cancelled,
        (S::CancelRequested, I::CancelRefused) => S::CancelRejected,
        // After a refused cancellation the WMS ships the order: SHIPPED, the refusal kept in
        // the sticky `cancel_rejected` flag, so a search for shipped orders finds it.
        (S::Sent | S::CancelRejected, I::ObservedShipped) => S::Shipped,
        (S::Sent | S::Shipped | S::CancelRequested | S::CancelRejected, I::ObservedCancelled) => {
            S::Cancelled
        }
        (S::Error, I::Retry) => S::Queued,
        (S::CancelRejected, I::RetryCancel) => S::CancelRequested,
        _ => return Err(Refused { from, input }),
    };
    Ok(to)
}

/// What the dispatcher knows of a shop when an order event arrives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShopPolicy {
    pub enabled: bool,
    /// S3 ④ shipment instructions.
    pub shipment_instructions: bool,
    /// S3 ④ cancellations.
    pub cancellations: bool,
    /// S3 ⑤.
    pub target_status_codes: HashSet<String>,
    /// Statuses of kind CANCELLED in the shop's catalog.
    pub cancel_status_codes: HashSet<String>,
    /// Every status of the shop's catalog (empty when the catalog was not read).
    pub known_status_codes: HashSet<String>,
}

impl ShopPolicy {
    /// Why an order in `status_code` is not sent, or `None` when it is.
    pub fn why_not_sent(&self, status_code: &str) -> Option<String> {
        if !self.enabled {
            Some("the shop's integration is not enabled".to_owned())
        } else if !self.shipment_instructions {
            Some("shipment instructions are not a data target of the shop".to_owned())
        } else if !self.target_status_codes.contains(status_code) {
            Some(format!(
                "order status '{status_code}' is not a target status"
            ))
        } else {
            None
        }
    }

    pub fn is_cancel(&self, status_code: &str) -> bool {
        self.cancel_status_codes.contains(status_code)
    }

    /// A status the shop's catalog does not list (never, when no catalog was read).
    pub fn is_unknown_status(&self, status_code: &str) -> bool {
        !self.known_status_codes.is_empty() && !self.known_status_codes.contains(status_code)
    }
}

/// The parts of a stored shipment that order events depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShipmentFacts {
    pub status: Status,
    pub revision: i64,
    pub cancel_pending: bool,
    pub sent_fingerprint: Option<String>,
    pub edited_revision: Option<i64>,
    /// Sent before with an unknown outcome and never found: it may exist in the WMS.
    pub possibly_in_wms: bool,
}

/// One order event: a full snapshot at a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderFacts {
    pub revision: i64,
    pub status_code: String,
    /// Fingerprint of the content (everything but status and revision).
    pub fingerprint: String,
}

/// What one order event does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderPlan {
    /// The event's snapshot is newer than the stored one (or the first): store it.
    pub store_snapshot: bool,
    /// A state change and why.
    pub change: Option<(Input, Status, String)>,
    /// Record a cancellation that arrived while SENDING.
    pub set_cancel_pending: bool,
    /// R1: the content now differs from what was sent; flag it at this revision.
    pub flag_edited: Option<i64>,
    /// Something worth a history line that is not a state change.
    pub note: Option<String>,
    /// Cancelled in the cart while cancellations are not a data target: the cancel is not
    /// sent, and the shipment shows it.
    pub cancel_not_sent: bool,
}

/// Decides what an order event does. Every event, even one older than the stored snapshot,
/// says "the order reached status X": reaching a target status queues a never-sent order
/// and reaching a cancelled status cancels, so the outcome does not depend on the order in
/// which events arrive. Only newer snapshots replace the stored one and count as edits.
pub fn plan_order_event(
    current: Option<&ShipmentFacts>,
    event: &OrderFacts,
    policy: &ShopPolicy,
) -> OrderPlan {
    let mut plan = OrderPlan {
        store_snapshot: current.is_none_or(|c| event.revision > c.revision),
        ..OrderPlan::default()
    };
    let status = current.map_or(Status::NotSent, |c| c.status);
    let code = event.status_code.as_str();

    if policy.is_cancel(code) {
        let in_doubt = current.is_some_and(|c| c.possibly_in_wms);
        match status {
            Status::Queued | Status::Error if in_doubt && policy.cancellations => {
                plan.change = Some((
                    Input::CancelInDoubt,
                    Status::CancelRequested,
                    format!(
                        "cancelled in the cart (status '{code}', revision {}); it was sent before with an unknown outcome and may exist in the WMS: searching and cancelling there",
                        event.revision
                    ),
                ));
            }
            Status::Queued | Status::Error if in_doubt => {
                plan.cancel_not_sent = true;
                plan.change = Some((
                    Input::CartCancel,
                    Status::Cancelled,
                    format!(
                        "cancelled in the cart (status '{code}', revision {}); it may exist in the WMS (sent before with an unknown outcome) but the cancel is not sent: cancellations are not a data target of the shop",
                        event.revision
                    ),
                ));
            }
            Status::NotSent | Status::Queued | Status::Error => {
                plan.change = Some((
                    Input::CartCancel,
                    Status::Cancelled,
                    format!(
                        "cancelled in the cart (status '{code}', revision {}) before it was registered; no WMS call",
                        event.revision
                    ),
                ));
            }
            Status::Sending => {
                if current.is_some_and(|c| !c.cancel_pending) {
                    plan.set_cancel_pending = true;
                    plan.note = Some(format!(
                        "cancelled in the cart (status '{code}', revision {}) while the registration is in flight; acted on once it resolves",
                        event.revision
                    ));
                }
            }
            Status::Sent | Status::Shipped => {
                if policy.cancellations {
                    plan.change = Some((
                        Input::CartCancel,
                        Status::CancelRequested,
                        format!(
                            "cancelled in the cart (status '{code}', revision {}); cancelling in the WMS",
                            event.revision
                        ),
                    ));
                } else {
                    plan.cancel_not_sent = true;
                    plan.note = Some(format!(
                        "cancelled in the cart (status '{code}', revision {}), not sent to the WMS: cancellations are not a data target of the shop",
                        event.revision
                    ));
                }
            }
            Status::CancelRequested | Status::Cancelled | Status::CancelRejected => {}
        }
    } else if status == Status::NotSent {
        match policy.why_not_sent(code) {
            None => {
                plan.change = Some((
                    Input::Queue,
                    Status::Queued,
                    format!(
                        "order entered target status '{code}' (revision {})",
                        event.revision
                    ),
                ));
            }
            Some(why) if current.is_none() => {
                plan.note = Some(format!("recorded, not sent: {why}"));
            }
            Some(_) => {}
        }
    }

    // R1: edits after registration are flagged, never sent.
    let after = plan.change.as_ref().map_or(status, |(_, to, _)| *to);
    if let Some(current) = current
        && plan.store_snapshot
        && after.is_registered()
        && current
            .sent_fingerprint
            .as_deref()
            .is_some_and(|sent| sent != event.fingerprint)
        && current.edited_revision.is_none_or(|r| r < event.revision)
    {
        plan.flag_edited = Some(event.revision);
    }
    plan
}

/// What status-sync saw in the WMS for one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub wms_order_id: i64,
    pub status_id: i32,
    pub status_name: String,
    pub cancelled: bool,
    pub shipped: bool,
    pub tracking_code: String,
    pub shipping_date: String,
    pub wms_updated_at: Option<DateTime<Utc>>,
}

/// The parts of a stored shipment that observations depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WmsFacts {
    pub status: Status,
    pub wms_order_id: Option<i64>,
    pub wms_updated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObservationPlan {
    /// Nothing to apply, and why.
    Ignore(String),
    Apply {
        change: Option<(Input, Status, String)>,
        /// R5: cancelled in the WMS though wmslink never asked.
        unrequested_cancel: bool,
    },
}

pub fn plan_observation(current: &WmsFacts, obs: &Observation) -> ObservationPlan {
    match current.wms_order_id {
        Some(id) if id == obs.wms_order_id => {}
        Some(id) => {
            return ObservationPlan::Ignore(format!(
                "observation of WMS order {} ignored: this shipment is WMS order {id}",
                obs.wms_order_id
            ));
        }
        None => {
            return ObservationPlan::Ignore(format!(
                "observation of WMS order {} ignored: the shipment is {} and has no WMS order",
                obs.wms_order_id, current.status
            ));
        }
    }
    if let (Some(last), Some(seen)) = (current.wms_updated_at, obs.wms_updated_at)
        && seen < last
    {
        return ObservationPlan::Ignore(format!(
            "observation of {seen} is older than the one applied ({last})"
        ));
    }
    let (change, unrequested_cancel) = if obs.cancelled {
        match current.status {
            Status::Sent | Status::Shipped => (
                Some((
                    Input::ObservedCancelled,
                    Status::Cancelled,
                    "cancelled in the WMS, not requested by wmslink (R5)".to_owned(),
                )),
                true,
            ),
            Status::CancelRequested | Status::CancelRejected => (
                Some((
                    Input::ObservedCancelled,
                    Status::Cancelled,
                    "the WMS shows the order cancelled".to_owned(),
                )),
                false,
            ),
            _ => (None, false),
        }
    } else if obs.shipped && matches!(current.status, Status::Sent | Status::CancelRejected) {
        let reason = if obs.tracking_code.is_empty() {
            format!(
                "shipped on {}",
                display_or(&obs.shipping_date, "an unknown date")
            )
        } else {
            format!(
                "shipped on {}, tracking code {}",
                display_or(&obs.shipping_date, "an unknown date"),
                obs.tracking_code
            )
        };
        (
            Some((Input::ObservedShipped, Status::Shipped, reason)),
            false,
        )
    } else {
        (None, false)
    };
    ObservationPlan::Apply {
        change,
        unrequested_cancel,
    }
}

fn display_or<'a>(value: &'a str, fallback: &'a str) -> &'a str {
    if value.is_empty() { fallback } else { value }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every allowed transition; anything not listed must be refused.
    const ALLOWED: &[(Status, Input, Status)] = &[
        (Status::NotSent, Input::Queue, Status::Queued),
        (Status::Queued, Input::Claim, Status::Sending),
        (Status::Queued, Input::BuildFailed, Status::Error),
        (Status::Sending, Input::Registered, Status::Sent),
        (Status::Sending, Input::Requeue, Status::Queued),
        (Status::Sending, Input::SendFailed, Status::Error),
        (Status::Sending, Input::AdoptCancelled, Status::Cancelled),
        (Status::NotSent, Input::CartCancel, Status::Cancelled),
        (Status::Queued, Input::CartCancel, Status::Cancelled),
        (Status::Error, Input::CartCancel, Status::Cancelled),
        (Status::Sent, Input::CartCancel, Status::CancelRequested),
        (Status::Shipped, Input::CartCancel, Status::CancelRequested),
        (
            Status::Queued,
            Input::CancelInDoubt,
            Status::CancelRequested,
        ),
        (Status::Error, Input::CancelInDoubt, Status::CancelRequested),
        (
            Status::CancelRequested,
            Input::CancelConfirmed,
            Status::Cancelled,
        ),
        (
            Status::CancelRequested,
            Input::CancelRefused,
            Status::CancelRejected,
        ),
        (Status::Sent, Input::ObservedShipped, Status::Shipped),
        (
            Status::CancelRejected,
            Input::ObservedShipped,
            Status::Shipped,
        ),
        (Status::Sent, Input::ObservedCancelled, Status::Cancelled),
        (Status::Shipped, Input::ObservedCancelled, Status::Cancelled),
        (
            Status::CancelRequested,
            Input::ObservedCancelled,
            Status::Cancelled,
        ),
        (
            Status::CancelRejected,
            Input::ObservedCancelled,
            Status::Cancelled,
        ),
        (Status::Error, Input::Retry, Status::Queued),
        (
            Status::CancelRejected,
            Input::RetryCancel,
            Status::CancelRequested,
        ),
    ];

    #[test]
    fn every_pair_of_status_and_input_is_allowed_or_refused_as_listed() {
        let mut checked = 0;
        for from in Status::ALL {
            for input in Input::ALL {
                let expected = ALLOWED
                    .iter()
                    .find(|(f, i, _)| *f == from && *i == input)
                    .map(|(_, _, to)| *to);
                match (transition(from, input), expected) {
                    (Ok(to), Some(want)) => assert_eq!(to, want, "{from} --{input:?}-->"),
                    (Err(refused), None) => {
                        assert_eq!(refused, Refused { from, input });
                        assert!(refused.to_string().contains(from.as_str()));
                    }
                    (got, want) => panic!("{from} --{input:?}--> got {got:?}, want {want:?}"),
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 9 * 15);
    }

    #[test]
    fn cancelled_is_final() {
        assert!(Status::Cancelled.is_final());
        for input in Input::ALL {
            assert!(transition(Status::Cancelled, input).is_err(), "{input:?}");
        }
        for status in Status::ALL {
            assert_eq!(status.is_final(), status == Status::Cancelled);
        }
    }

    #[test]
    fn sending_is_left_only_by_what_the_wms_said() {
        let exits: Vec<Input> = Input::ALL
            .into_iter()
            .filter(|i| transition(Status::Sending, *i).is_ok())
            .collect();
        assert_eq!(
            exits,
            vec![
                Input::Registered,
                Input::Requeue,
                Input::SendFailed,
                Input::AdoptCancelled
            ]
        );
        // A cart cancellation is not a transition out of SENDING.
        assert!(transition(Status::Sending, Input::CartCancel).is_err());
    }

    #[test]
    fn names_round_trip_and_map_to_proto() {
        for status in Status::ALL {
            assert_eq!(Status::parse(status.as_str()), Some(status));
            assert_eq!(
                status.to_proto().as_str_name(),
                format!("SHIPPING_STATUS_{status}")
            );
        }
        assert_eq!(Status::parse("nope"), None);
    }

    fn policy() -> ShopPolicy {
        ShopPolicy {
            enabled: true,
            shipment_instructions: true,
            cancellations: true,
            target_status_codes: ["ship".to_owned()].into(),
            cancel_status_codes: ["cancel".to_owned()].into(),
            known_status_codes: ["new", "ship", "cancel"].map(str::to_owned).into(),
        }
    }

    #[test]
    fn a_status_outside_the_catalog_is_unknown_unless_no_catalog_was_read() {
        assert!(policy().is_unknown_status("hold"));
        assert!(!policy().is_unknown_status("ship"));
        assert!(!ShopPolicy::default().is_unknown_status("hold"));
    }

    fn facts(status: Status, revision: i64) -> ShipmentFacts {
        ShipmentFacts {
            status,
            revision,
            cancel_pending: false,
            sent_fingerprint: status.is_registered().then(|| "sent".to_owned()),
            edited_revision: None,
            possibly_in_wms: false,
        }
    }

    fn event(revision: i64, code: &str, fingerprint: &str) -> OrderFacts {
        OrderFacts {
            revision,
            status_code: code.to_owned(),
            fingerprint: fingerprint.to_owned(),
        }
    }

    fn change_of(plan: &OrderPlan) -> Option<(Input, Status)> {
        plan.change.as_ref().map(|(i, s, _)| (*i, *s))
    }

    #[test]
    fn a_new_order_in_a_target_status_is_queued() {
        let plan = plan_order_event(None, &event(1, "ship", "a"), &policy());
        assert!(plan.store_snapshot);
        assert_eq!(change_of(&plan), Some((Input::Queue, Status::Queued)));
    }

    #[test]
    fn not_target_disabled_or_not_a_data_target_is_recorded_not_sent() {
        let cases = [
            (policy(), "open", "not a target status"),
            (
                ShopPolicy {
                    enabled: false,
                    ..policy()
                },
                "ship",
                "not enabled",
            ),
            (
                ShopPolicy {
                    shipment_instructions: false,
                    ..policy()
                },
                "ship",
                "not a data target",
            ),
        ];
        for (policy, code, why) in cases {
            let plan = plan_order_event(None, &event(1, code, "a"), &policy);
            assert_eq!(change_of(&plan), None);
            assert!(plan.store_snapshot);
            assert!(
                plan.note.as_deref().is_some_and(|n| n.contains(why)),
                "{plan:?}"
            );
        }
    }

    #[test]
    fn entering_a_target_status_later_queues_a_not_sent_order() {
        let plan = plan_order_event(
            Some(&facts(Status::NotSent, 1)),
            &event(2, "ship", "a"),
            &policy(),
        );
        assert_eq!(change_of(&plan), Some((Input::Queue, Status::Queued)));
    }

    #[test]
    fn target_status_does_nothing_once_queued_or_further() {
        for status in [
            Status::Queued,
            Status::Sending,
            Status::Sent,
            Status::Shipped,
            Status::CancelRequested,
            Status::Cancelled,
            Status::CancelRejected,
            Status::Error,
        ] {
            let plan = plan_order_event(
                Some(&facts(status, 1)),
                &event(2, "ship", "sent"),
                &policy(),
            );
            assert_eq!(change_of(&plan), None, "{status}");
        }
    }

    #[test]
    fn a_stale_event_still_counts_as_reaching_its_status() {
        // rev 3 (not target) arrived before rev 2 (target): the order did reach a target status.
        let plan = plan_order_event(
            Some(&facts(Status::NotSent, 3)),
            &event(2, "ship", "old"),
            &policy(),
        );
        assert!(!plan.store_snapshot);
        assert_eq!(change_of(&plan), Some((Input::Queue, Status::Queued)));
        // And a stale cancellation still cancels.
        let plan = plan_order_event(
            Some(&facts(Status::Queued, 3)),
            &event(2, "cancel", "old"),
            &policy(),
        );
        assert!(!plan.store_snapshot);
        assert_eq!(
            change_of(&plan),
            Some((Input::CartCancel, Status::Cancelled))
        );
    }

    #[test]
    fn a_repeated_revision_is_not_stored_again() {
        let plan = plan_order_event(
            Some(&facts(Status::Queued, 2)),
            &event(2, "ship", "a"),
            &policy(),
        );
        assert!(!plan.store_snapshot);
        assert_eq!(plan, OrderPlan::default());
    }

    #[test]
    fn cancellation_before_registration_needs_no_wms_call() {
        for status in [Status::NotSent, Status::Queued, Status::Error] {
            let plan =
                plan_order_event(Some(&facts(status, 1)), &event(2, "cancel", "a"), &policy());
            assert_eq!(
                change_of(&plan),
                Some((Input::CartCancel, Status::Cancelled)),
                "{status}"
            );
        }
        let plan = plan_order_event(None, &event(1, "cancel", "a"), &policy());
        assert_eq!(
            change_of(&plan),
            Some((Input::CartCancel, Status::Cancelled))
        );
    }

    #[test]
    fn cancellation_of_an_order_that_may_be_in_the_wms_searches_and_cancels_there() {
        for status in [Status::Queued, Status::Error] {
            let doubtful = ShipmentFacts {
                possibly_in_wms: true,
                ..facts(status, 1)
            };
            let plan = plan_order_event(Some(&doubtful), &event(2, "cancel", "a"), &policy());
            assert_eq!(
                change_of(&plan),
                Some((Input::CancelInDoubt, Status::CancelRequested)),
                "{status}"
            );
            // Cancellations off: cancelled here, and the history says the cancel was not sent.
            let off = ShopPolicy {
                cancellations: false,
                ..policy()
            };
            let plan = plan_order_event(Some(&doubtful), &event(2, "cancel", "a"), &off);
            assert_eq!(
                change_of(&plan),
                Some((Input::CartCancel, Status::Cancelled)),
                "{status}"
            );
            assert!(plan.cancel_not_sent);
            let (_, _, reason) = plan.change.expect("a change");
            assert!(reason.contains("the cancel is not sent"), "{reason}");
        }
    }

    #[test]
    fn cancellation_of_a_registered_order_is_requested_when_cancellations_are_a_target() {
        for status in [Status::Sent, Status::Shipped] {
            let plan = plan_order_event(
                Some(&facts(status, 1)),
                &event(2, "cancel", "sent"),
                &policy(),
            );
            assert_eq!(
                change_of(&plan),
                Some((Input::CartCancel, Status::CancelRequested)),
                "{status}"
            );
        }
        // Also while the shop is disabled: the sender acts once it is enabled again (I2).
        let disabled = ShopPolicy {
            enabled: false,
            ..policy()
        };
        let plan = plan_order_event(
            Some(&facts(Status::Sent, 1)),
            &event(2, "cancel", "sent"),
            &disabled,
        );
        assert_eq!(
            change_of(&plan),
            Some((Input::CartCancel, Status::CancelRequested))
        );
        let no_cancellations = ShopPolicy {
            cancellations: false,
            ..policy()
        };
        let plan = plan_order_event(
            Some(&facts(Status::Sent, 1)),
            &event(2, "cancel", "sent"),
            &no_cancellations,
        );
        assert_eq!(change_of(&plan), None);
        assert!(
            plan.cancel_not_sent,
            "the shipment shows the cancel was not sent"
        );
        assert!(
            plan.note
                .as_deref()
                .is_some_and(|n| n.contains("not a data target"))
        );
    }

    #[test]
    fn cancellation_while_sending_is_recorded_not_lost() {
        let plan = plan_order_event(
            Some(&facts(Status::Sending, 1)),
            &event(2, "cancel", "a"),
            &policy(),
        );
        assert_eq!(change_of(&plan), None);
        assert!(plan.set_cancel_pending);
        assert!(plan.note.is_some());
        let mut pending = facts(Status::Sending, 2);
        pending.cancel_pending = true;
        let again = plan_order_event(Some(&pending), &event(3, "cancel", "a"), &policy());
        assert!(!again.set_cancel_pending);
    }

    #[test]
    fn cancellation_after_cancel_or_rejection_changes_nothing() {
        for status in [
            Status::CancelRequested,
            Status::Cancelled,
            Status::CancelRejected,
        ] {
            let plan = plan_order_event(
                Some(&facts(status, 1)),
                &event(2, "cancel", "sent"),
                &policy(),
            );
            assert_eq!(change_of(&plan), None, "{status}");
        }
    }

    #[test]
    fn cancelled_is_final_for_every_later_event() {
        for code in ["ship", "open", "cancel"] {
            let plan = plan_order_event(
                Some(&facts(Status::Cancelled, 1)),
                &event(5, code, "x"),
                &policy(),
            );
            assert_eq!(change_of(&plan), None, "{code}");
            assert_eq!(plan.flag_edited, None);
        }
    }

    #[test]
    fn edits_after_registration_are_flagged_not_sent() {
        for status in [
            Status::Sent,
            Status::Shipped,
            Status::CancelRequested,
            Status::CancelRejected,
        ] {
            let plan = plan_order_event(
                Some(&facts(status, 1)),
                &event(2, "ship", "edited"),
                &policy(),
            );
            assert_eq!(plan.flag_edited, Some(2), "{status}");
            assert_eq!(change_of(&plan), None);
        }
        // The same content with a new revision (e.g. a status change) is no edit.
        let plan = plan_order_event(
            Some(&facts(Status::Sent, 1)),
            &event(2, "open", "sent"),
            &policy(),
        );
        assert_eq!(plan.flag_edited, None);
        // A stale edit is not flagged.
        let plan = plan_order_event(
            Some(&facts(Status::Sent, 3)),
            &event(2, "ship", "edited"),
            &policy(),
        );
        assert_eq!(plan.flag_edited, None);
        // Before registration nothing is flagged: the latest snapshot is what gets sent.
        for status in [Status::Queued, Status::NotSent, Status::Error] {
            let plan = plan_order_event(
                Some(&facts(status, 1)),
                &event(2, "ship", "edited"),
                &policy(),
            );
            assert_eq!(plan.flag_edited, None, "{status}");
            assert!(plan.store_snapshot);
        }
    }

    #[test]
    fn edit_together_with_a_cancellation_is_flagged_too() {
        let plan = plan_order_event(
            Some(&facts(Status::Sent, 1)),
            &event(2, "cancel", "edited"),
            &policy(),
        );
        assert_eq!(
            change_of(&plan),
            Some((Input::CartCancel, Status::CancelRequested))
        );
        assert_eq!(plan.flag_edited, Some(2));
    }

    fn wms(status: Status) -> WmsFacts {
        WmsFacts {
            status,
            wms_order_id: Some(7),
            wms_updated_at: DateTime::from_timestamp(1_000, 0),
        }
    }

    fn obs() -> Observation {
        Observation {
            wms_order_id: 7,
            status_id: 50,
            status_name: "出荷待ち".into(),
            cancelled: false,
            shipped: false,
            tracking_code: String::new(),
            shipping_date: String::new(),
            wms_updated_at: DateTime::from_timestamp(2_000, 0),
        }
    }

    fn applied(plan: &ObservationPlan) -> (Option<(Input, Status)>, bool) {
        match plan {
            ObservationPlan::Apply {
                change,
                unrequested_cancel,
            } => (
                change.as_ref().map(|(i, s, _)| (*i, *s)),
                *unrequested_cancel,
            ),
            ObservationPlan::Ignore(why) => panic!("ignored: {why}"),
        }
    }

    #[test]
    fn shipped_observation_moves_sent_to_shipped() {
        let shipped = Observation {
            shipped: true,
            tracking_code: "T1".into(),
            shipping_date: "2026-11-29".into(),
            ..obs()
        };
        let plan = plan_observation(&wms(Status::Sent), &shipped);
        assert_eq!(
            applied(&plan),
            (Some((Input::ObservedShipped, Status::Shipped)), false)
        );
        // R2: shipped after the WMS refused the cancellation.
        assert_eq!(
            applied(&plan_observation(&wms(Status::CancelRejected), &shipped)),
            (Some((Input::ObservedShipped, Status::Shipped)), false)
        );
        for status in [Status::Shipped, Status::CancelRequested] {
            assert_eq!(
                applied(&plan_observation(&wms(status), &shipped)),
                (None, false)
            );
        }
    }

    #[test]
    fn cancelled_observation_flags_what_was_not_requested() {
        let cancelled = Observation {
            cancelled: true,
            ..obs()
        };
        for status in [Status::Sent, Status::Shipped] {
            assert_eq!(
                applied(&plan_observation(&wms(status), &cancelled)),
                (Some((Input::ObservedCancelled, Status::Cancelled)), true)
            );
        }
        for status in [Status::CancelRequested, Status::CancelRejected] {
            assert_eq!(
                applied(&plan_observation(&wms(status), &cancelled)),
                (Some((Input::ObservedCancelled, Status::Cancelled)), false)
            );
        }
        assert_eq!(
            applied(&plan_observation(&wms(Status::Cancelled), &cancelled)),
            (None, false)
        );
    }

    #[test]
    fn status_only_observation_applies_without_a_change() {
        assert_eq!(
            applied(&plan_observation(&wms(Status::Sent), &obs())),
            (None, false)
        );
    }

    #[test]
    fn stale_or_foreign_observations_are_ignored() {
        let older = Observation {
            wms_updated_at: DateTime::from_timestamp(500, 0),
            shipped: true,
            ..obs()
        };
        assert!(matches!(
            plan_observation(&wms(Status::Sent), &older),
            ObservationPlan::Ignore(_)
        ));
        let other = Observation {
            wms_order_id: 8,
            ..obs()
        };
        assert!(matches!(
            plan_observation(&wms(Status::Sent), &other),
            ObservationPlan::Ignore(_)
        ));
        let no_id = WmsFacts {
            wms_order_id: None,
            ..wms(Status::Sending)
        };
        assert!(matches!(
            plan_observation(&no_id, &obs()),
            ObservationPlan::Ignore(_)
        ));
        // The same WMS update time again is applied (idempotent).
        let same = Observation {
            wms_updated_at: DateTime::from_timestamp(1_000, 0),
            ..obs()
        };
        assert_eq!(
            applied(&plan_observation(&wms(Status::Sent), &same)),
            (None, false)
        );
    }
}
