//! The rebuild sweep: redoes what lost order events could not. An order event can be lost (deleted
//! from the stream, dead-lettered and never replayed, published while the dispatcher's consumer
//! was not there); the E1 sweep and [`super::sweep::recheck_cancels`] only see orders the
//! dispatcher knows. So every `order_events.rebuild_interval_ms` (slower than the E1 sweep),
//! each enabled shop's orders in a target or cancel status within the sync period are read
//! from order-events (`ListOrders`, in pages of `order_events.page_size`) and compared with
//! `shipments` by order number, revision and cart status ([`needs_rebuild`]). An order the
//! dispatcher does not know, holds at an older revision, or holds in another cart status that
//! would change its shipment is read whole (`GetOrder`) and applied exactly as its order event
//! would have been ([`consumers::apply_rebuilt`]: the same `plan_order_event`), so it is queued,
//! cancelled (in the WMS when registered) or flagged as edited. An event that arrives after
//! all finds the work done: "the order reached status X" may be applied any number of times.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use wmslink_platform::consumer::HandleError;
use wmslink_platform::shop::{OrderNo, ShopId};
use wmslink_proto::orders::v1::OrderListRow;

use crate::consumers::{self, MAX_STATUS_CODE_LEN, OrderEvent};
use crate::core::Core;
use crate::order_events::{MAX_FILTER_VALUES, OrderEventsClient, OrderEventsError};
use crate::settings::{Lookup, SettingsError, ShopView};
use crate::state_machine::{OrderFacts, ShipmentFacts, ShopPolicy, plan_order_event};
use crate::store::{self, KnownOrder};

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("order-events: {0}")]
    OrderEvents(#[from] OrderEventsError),
    #[error("settings: {0}")]
    Settings(#[from] SettingsError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{0}")]
    Unavailable(String),
}

/// What one shop's rebuild did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rebuilt {
    /// Orders read from order-events.
    pub listed: usize,
    /// Orders applied again (their events were lost, or are late).
    pub applied: usize,
}

/// Whether order-events' row of an order (its revision, 0 when not given, and cart status)
/// says something the dispatcher has not applied: an order it does not know, a newer revision,
/// or another status that would change the shipment as its event would.
pub fn needs_rebuild(
    known: Option<&KnownOrder>,
    listed_revision: i64,
    listed_code: &str,
    policy: &ShopPolicy,
) -> bool {
    let Some(known) = known else {
        return true;
    };
    if listed_revision > known.order_revision {
        return true;
    }
    if listed_code == known.order_status_code {
        return false;
    }
    // The same revision in another status (a change made in wmslink keeps the cart's
    // revision): only what the state machine would do with that status counts.
    let facts = ShipmentFacts {
        status: known.status,
        revision: known.order_revision,
        cancel_pending: known.cancel_pending,
        sent_fingerprint: known.sent_fingerprint.clone(),
        edited_revision: known.edited_revision,
        possibly_in_wms: known.possibly_in_wms,
    };
    let event = OrderFacts {
        revision: known.order_revision,
        status_code: listed_code.to_owned(),
        fingerprint: known.content_fingerprint.clone(),
    };
    let plan = plan_order_event(Some(&facts), &event, policy);
    plan.change.is_some()
        || plan.set_cancel_pending
        || (plan.cancel_not_sent && !known.cancel_not_sent)
}

/// Compares one enabled shop with order-events and applies what differs.
pub async fn rebuild_shop(
    core: &Core,
    client: &OrderEventsClient,
    shop_id: &str,
    stop: &CancellationToken,
) -> Result<Rebuilt, RebuildError> {
    let Lookup::Known(view) = core.settings.get(shop_id).await? else {
        return Ok(Rebuilt::default());
    };
    if !view.policy.enabled {
        return Ok(Rebuilt::default());
    }
    let mut codes: Vec<String> = view
        .policy
        .target_status_codes
        .iter()
        .chain(&view.policy.cancel_status_codes)
        .cloned()
        .collect();
    codes.sort();
    codes.dedup();
    let since = Utc::now() - chrono::Duration::days(i64::from(view.sync_period_days.max(1)));
    let mut done = Rebuilt::default();
    for chunk in codes.chunks(MAX_FILTER_VALUES) {
        let mut page_token = String::new();
        loop {
            if stop.is_cancelled() {
                return Ok(done);
            }
            let page = client.list_page(shop_id, chunk, since, page_token).await?;
            done.listed += page.rows.len();
            done.applied += rebuild_page(core, client, shop_id, &view, &page.rows).await?;
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
    }
    if done.applied > 0 {
        tracing::info!(
            shop = shop_id,
            listed = done.listed,
            applied = done.applied,
            "rebuild sweep: applied orders whose order events never reached the dispatcher"
        );
    }
    Ok(done)
}

/// One page of order-events' list: compares it with `shipments` and applies what differs.
async fn rebuild_page(
    core: &Core,
    client: &OrderEventsClient,
    shop_id: &str,
    view: &Arc<ShopView>,
    rows: &[OrderListRow],
) -> Result<usize, RebuildError> {
    let order_nos: Vec<String> = rows.iter().map(|row| row.order_no.clone()).collect();
    let known = store::known_orders(&core.pool, shop_id, &order_nos).await?;
    let known: std::collections::HashMap<&str, &KnownOrder> =
        known.iter().map(|k| (k.order_no.as_str(), k)).collect();
    let mut applied = 0;
    let mut wake = false;
    for row in rows {
        let mine = known.get(row.order_no.as_str()).copied();
        if !needs_rebuild(mine, row.revision, &row.status_code, &view.policy) {
            continue;
        }
        let Some(order) = client.get(shop_id, &row.order_no).await? else {
            continue;
        };
        let Some(event) = checked(shop_id, order, view) else {
            continue;
        };
        // Read again: the order may have moved since the list was read.
        if !needs_rebuild(mine, event.revision, &event.order.status_code, &view.policy) {
            continue;
        }
        let origin = format!(
            "rebuild sweep: order-events holds revision {} in status '{}', which the dispatcher had not applied (its order event was lost or is late)",
            event.revision, event.order.status_code
        );
        match consumers::apply_rebuilt(core, &event, view, &origin).await {
            Ok(has_work) => {
                wake |= has_work;
                applied += 1;
            }
            Err(HandleError::Unavailable(reason)) => {
                return Err(RebuildError::Unavailable(reason));
            }
            // E.g. an order event inserting the same new row meanwhile: the next pass sees it.
            Err(err) => {
                tracing::warn!(shop = shop_id, order_no = %row.order_no, error = %err, "rebuild sweep: not applied");
            }
        }
    }
    if wake {
        core.sender.wake(shop_id);
    }
    Ok(applied)
}

/// The order from order-events as an order event, checked as the consumer checks one; `None`
/// (logged) when it cannot be applied now.
fn checked(
    shop_id: &str,
    order: wmslink_proto::orders::v1::Order,
    view: &ShopView,
) -> Option<OrderEvent> {
    let refuse = |why: String| {
        tracing::warn!(shop = shop_id, order_no = %order.order_no, why, "rebuild sweep: order skipped");
    };
    let shop = match ShopId::parse(shop_id) {
        Ok(shop) => shop,
        Err(err) => {
            refuse(err.to_string());
            return None;
        }
    };
    if order.shop_id != shop_id {
        refuse(format!(
            "order-events answered for shop '{}'",
            order.shop_id
        ));
        return None;
    }
    if let Err(err) = OrderNo::check(&order.order_no) {
        refuse(err.to_string());
        return None;
    }
    let code = order.status_code.as_str();
    if code.is_empty() || code.chars().count() > MAX_STATUS_CODE_LEN || order.revision < 0 {
        refuse(format!(
            "status '{code}' or revision {} is not valid",
            order.revision
        ));
        return None;
    }
    // The consumer waits for the catalog to know a status; the next pass will see it again.
    if view.policy.is_unknown_status(code) {
        refuse(format!("status '{code}' is not in the shop's catalog yet"));
        return None;
    }
    let revision = order.revision;
    Some(OrderEvent {
        shop,
        order,
        revision,
    })
}

/// The enabled shops, every `interval`, until `stop`.
pub async fn run_rebuilder(
    core: Arc<Core>,
    client: OrderEventsClient,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let shops = match core.settings.client().list_shops(true).await {
            Ok(shops) => shops,
            Err(err) => {
                tracing::warn!(error = %err, "rebuild sweep: cannot list the enabled shops");
                continue;
            }
        };
        for shop in shops {
            if stop.is_cancelled() {
                return;
            }
            if let Err(err) = rebuild_shop(&core, &client, &shop.shop_id, &stop).await {
                tracing::warn!(shop = %shop.shop_id, error = %err, "rebuild sweep failed; tried again next time");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state_machine::Status;

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

    fn known(status: Status, revision: i64, code: &str) -> KnownOrder {
        KnownOrder {
            order_no: "A-1".into(),
            status,
            order_revision: revision,
            order_status_code: code.into(),
            content_fingerprint: "f".into(),
            cancel_pending: false,
            sent_fingerprint: status.is_registered().then(|| "f".to_owned()),
            edited_revision: None,
            possibly_in_wms: false,
            cancel_not_sent: false,
        }
    }

    #[test]
    fn an_unknown_order_or_a_newer_revision_is_rebuilt() {
        let policy = policy();
        assert!(needs_rebuild(None, 1, "ship", &policy));
        assert!(needs_rebuild(None, 0, "cancel", &policy));
        let sent = known(Status::Sent, 2, "ship");
        assert!(needs_rebuild(Some(&sent), 3, "ship", &policy));
        assert!(!needs_rebuild(Some(&sent), 2, "ship", &policy));
        // An older list (or one without revisions) never goes back.
        assert!(!needs_rebuild(Some(&sent), 1, "ship", &policy));
        assert!(!needs_rebuild(Some(&sent), 0, "ship", &policy));
    }

    #[test]
    fn another_status_at_the_same_revision_counts_only_when_the_state_machine_acts_on_it() {
        let policy = policy();
        // Lost: the event that made it a target status, and the one that cancelled it.
        assert!(needs_rebuild(
            Some(&known(Status::NotSent, 1, "new")),
            1,
            "ship",
            &policy
        ));
        assert!(needs_rebuild(
            Some(&known(Status::Sent, 1, "ship")),
            1,
            "cancel",
            &policy
        ));
        // A cancellation while the registration is in flight is recorded once.
        let mut sending = known(Status::Sending, 1, "ship");
        assert!(needs_rebuild(Some(&sending), 1, "cancel", &policy));
        sending.cancel_pending = true;
        assert!(!needs_rebuild(Some(&sending), 1, "cancel", &policy));
        // Nothing to do: already cancelled, or already past NOT_SENT.
        assert!(!needs_rebuild(
            Some(&known(Status::Cancelled, 1, "ship")),
            1,
            "cancel",
            &policy
        ));
        assert!(!needs_rebuild(
            Some(&known(Status::Queued, 1, "new")),
            1,
            "ship",
            &policy
        ));
        // Cancellations off: "not sent" is recorded once.
        let off = ShopPolicy {
            cancellations: false,
            ..policy.clone()
        };
        let mut sent = known(Status::Sent, 1, "ship");
        assert!(needs_rebuild(Some(&sent), 1, "cancel", &off));
        sent.cancel_not_sent = true;
        assert!(!needs_rebuild(Some(&sent), 1, "cancel", &off));
    }
}
