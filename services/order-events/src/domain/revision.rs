//! What an incoming snapshot does to the stored one (the revision rules).

use wmslink_proto::orders::v1::Order;

/// The effect of an incoming snapshot, decided from the stored one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// First snapshot of the order: stored, and published as a status change from "".
    Create,
    /// A newer revision with another status: stored, `status_changed` published.
    StatusChange { previous_status: String },
    /// A newer revision with the same status: stored, `updated` published.
    ContentUpdate,
    /// An older revision than the stored one: ignored (and counted).
    Stale { stored_revision: i64 },
    /// The stored revision again with the same content: nothing to do.
    Unchanged,
    /// The stored revision again with other content: refused.
    Conflict { stored_revision: i64 },
}

/// Applies the revision rules: newer replaces, older is ignored, the same revision must carry
/// the same content. Revisions belong to the cart: a status change made through
/// `ChangeOrderStatus` keeps the cart's revision (`changed_by_wmslink`), so the cart's next
/// revision replaces it, and the cart's snapshot at that same revision is older than it.
pub fn decide(stored: Option<&Order>, changed_by_wmslink: bool, incoming: &Order) -> Decision {
    let Some(stored) = stored else {
        return Decision::Create;
    };
    match incoming.revision.cmp(&stored.revision) {
        std::cmp::Ordering::Less => Decision::Stale {
            stored_revision: stored.revision,
        },
        std::cmp::Ordering::Equal if incoming == stored => Decision::Unchanged,
        std::cmp::Ordering::Equal if changed_by_wmslink => Decision::Stale {
            stored_revision: stored.revision,
        },
        std::cmp::Ordering::Equal => Decision::Conflict {
            stored_revision: stored.revision,
        },
        std::cmp::Ordering::Greater if incoming.status_code != stored.status_code => {
            Decision::StatusChange {
                previous_status: stored.status_code.clone(),
            }
        }
        std::cmp::Ordering::Greater => Decision::ContentUpdate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(revision: i64, status: &str, note: &str) -> Order {
        Order {
            shop_id: "s".into(),
            order_no: "1".into(),
            revision,
            status_code: status.into(),
            note: note.into(),
            ..Order::default()
        }
    }

    #[test]
    fn first_snapshot_creates() {
        assert_eq!(decide(None, false, &order(3, "new", "")), Decision::Create);
    }

    #[test]
    fn newer_revision_replaces_as_status_change_or_update() {
        let stored = order(2, "new", "");
        assert_eq!(
            decide(Some(&stored), false, &order(3, "paid", "")),
            Decision::StatusChange {
                previous_status: "new".into()
            }
        );
        assert_eq!(
            decide(Some(&stored), false, &order(3, "new", "leave at door")),
            Decision::ContentUpdate
        );
        // Revisions may skip numbers.
        assert_eq!(
            decide(Some(&stored), false, &order(9, "new", "x")),
            Decision::ContentUpdate
        );
    }

    #[test]
    fn older_revision_is_stale() {
        let stored = order(5, "paid", "");
        assert_eq!(
            decide(Some(&stored), false, &order(4, "new", "")),
            Decision::Stale { stored_revision: 5 }
        );
    }

    #[test]
    fn same_revision_same_content_is_unchanged_else_conflict() {
        let stored = order(5, "paid", "a");
        assert_eq!(
            decide(Some(&stored), false, &stored.clone()),
            Decision::Unchanged
        );
        assert_eq!(
            decide(Some(&stored), false, &order(5, "paid", "b")),
            Decision::Conflict { stored_revision: 5 }
        );
        assert_eq!(
            decide(Some(&stored), false, &order(5, "new", "a")),
            Decision::Conflict { stored_revision: 5 }
        );
    }

    #[test]
    fn after_a_wmslink_status_change_the_carts_next_revision_wins() {
        // ChangeOrderStatus moved revision 5 to 'cancelled', keeping the revision.
        let stored = order(5, "cancelled", "a");
        assert_eq!(
            decide(Some(&stored), true, &order(5, "paid", "a")),
            Decision::Stale { stored_revision: 5 },
            "the cart's own revision 5 is older than the change"
        );
        assert_eq!(
            decide(Some(&stored), true, &order(6, "cancelled", "b")),
            Decision::ContentUpdate
        );
        assert_eq!(
            decide(Some(&stored), true, &stored.clone()),
            Decision::Unchanged
        );
    }
}
