//! `wmslink.dispatch.v1.DispatchService`. Who may call what is declared once in
//! [`AUTHORIZATION`] and enforced by the [`Authorize`](wmslink_platform::authz::Authorize)
//! layer before a handler runs:
//!
//! | RPC | scope |
//! | --- | --- |
//! | RunDispatch, RetryShipment, RetryCancel | `operate` |
//! | GetShipment, GetInFlight | `orders.read` |

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tonic::{Request, Response, Status};
use wmslink_platform::auth::{caller_name, scopes};
use wmslink_platform::authz::{MethodRule, ShopRule};
use wmslink_platform::shop::{OrderNo, ShopId};
use wmslink_platform::validation::FieldViolations;
use wmslink_proto::dispatch::v1 as pb;
use wmslink_proto::dispatch::v1::dispatch_service_server::DispatchService;

use crate::core::Core;
use crate::errors::DispatchError;
use crate::events;
use crate::sender;
use crate::sender::sweep;
use crate::settings::Lookup;
use crate::state_machine::{Input, Status as Shipping};
use crate::store;

macro_rules! rule {
    ($method:literal, $scope:expr) => {
        MethodRule {
            method: concat!("/wmslink.dispatch.v1.DispatchService/", $method),
            scope: $scope,
            shop: ShopRule::ShopIdField1,
        }
    };
}

/// Every RPC and the scope it needs (each names its shop in field 1): the one table the
/// [`Authorize`](wmslink_platform::authz::Authorize) layer checks. An RPC missing here is
/// refused.
pub const AUTHORIZATION: &[MethodRule] = &[
    rule!("RunDispatch", scopes::OPERATE),
    rule!("RetryShipment", scopes::OPERATE),
    rule!("RetryCancel", scopes::OPERATE),
    rule!("GetShipment", scopes::ORDERS_READ),
    rule!("GetInFlight", scopes::ORDERS_READ),
];

#[derive(Clone)]
pub struct DispatchApi {
    core: Arc<Core>,
}

impl DispatchApi {
    pub fn new(core: Arc<Core>) -> Self {
        Self { core }
    }
}

fn validate(shop_id: &str, order_no: Option<&str>) -> Result<ShopId, DispatchError> {
    let mut violations = FieldViolations::new();
    let shop = match ShopId::parse(shop_id) {
        Ok(shop) => Some(shop),
        Err(err) => {
            violations.add("shop_id", err.to_string());
            None
        }
    };
    if let Some(Err(err)) = order_no.map(OrderNo::check) {
        violations.add("order_no", err.to_string());
    }
    match shop {
        Some(shop) if violations.is_empty() => Ok(shop),
        _ => Err(DispatchError::InvalidArgument(violations)),
    }
}

#[tonic::async_trait]
impl DispatchService for DispatchApi {
    async fn run_dispatch(
        &self,
        request: Request<pb::RunDispatchRequest>,
    ) -> Result<Response<pb::RunDispatchResponse>, Status> {
        let caller = caller_name(&request);
        let answer = run_dispatch(&self.core, &caller, request.get_ref()).await?;
        Ok(Response::new(answer))
    }

    async fn retry_shipment(
        &self,
        request: Request<pb::RetryShipmentRequest>,
    ) -> Result<Response<pb::RetryShipmentResponse>, Status> {
        let caller = caller_name(&request);
        let answer = retry_shipment(&self.core, &caller, request.get_ref()).await?;
        Ok(Response::new(answer))
    }

    async fn retry_cancel(
        &self,
        request: Request<pb::RetryCancelRequest>,
    ) -> Result<Response<pb::RetryCancelResponse>, Status> {
        let caller = caller_name(&request);
        let answer = retry_cancel(&self.core, &caller, request.get_ref()).await?;
        Ok(Response::new(answer))
    }

    async fn get_shipment(
        &self,
        request: Request<pb::GetShipmentRequest>,
    ) -> Result<Response<pb::GetShipmentResponse>, Status> {
        let answer = get_shipment(&self.core, request.get_ref()).await?;
        Ok(Response::new(answer))
    }

    async fn get_in_flight(
        &self,
        request: Request<pb::GetInFlightRequest>,
    ) -> Result<Response<pb::GetInFlightResponse>, Status> {
        let answer = get_in_flight(&self.core, request.get_ref()).await?;
        Ok(Response::new(answer))
    }
}

/// What of the shop's work is bound to its current WMS endpoint (asked by the settings
/// service before the endpoint changes).
async fn get_in_flight(
    core: &Core,
    body: &pb::GetInFlightRequest,
) -> Result<pb::GetInFlightResponse, DispatchError> {
    let shop = validate(&body.shop_id, None)?;
    let (in_doubt, cancels_pending) = store::in_flight(&core.pool, shop.as_str()).await?;
    let count = |n: i64| u32::try_from(n).unwrap_or(u32::MAX);
    Ok(pb::GetInFlightResponse {
        in_doubt: count(in_doubt),
        cancels_pending: count(cancels_pending),
    })
}

/// E2: queues what is due, sends now, and waits a while for the outcome.
async fn run_dispatch(
    core: &Core,
    caller: &str,
    body: &pb::RunDispatchRequest,
) -> Result<pb::RunDispatchResponse, DispatchError> {
    let shop = validate(&body.shop_id, None)?;
    let shop_id = shop.as_str();
    // An operator's explicit run reads the settings fresh.
    let view = match core.settings.refresh(shop_id).await? {
        Lookup::Known(view) => view,
        Lookup::Unknown => return Err(DispatchError::UnknownShop(shop_id.to_owned())),
    };
    if !view.policy.enabled {
        return Err(DispatchError::NotEnabled(shop_id.to_owned()));
    }
    if !view.policy.shipment_instructions {
        return Err(DispatchError::NotADataTarget(shop_id.to_owned()));
    }
    let mut watched: BTreeSet<String> = store::order_nos_in(&core.pool, shop_id, Shipping::Queued)
        .await?
        .into_iter()
        .collect();
    let retried = if body.retry_errors {
        retry_errors(core, shop_id, caller).await?
    } else {
        Vec::new()
    };
    watched.extend(retried.iter().cloned());
    let queued = sweep::queue_due(core, shop_id, &view, &format!("E2 run by {caller}")).await?;
    watched.extend(queued.iter().cloned());
    let watched: Vec<String> = watched.into_iter().collect();

    let deadline = Instant::now() + core.config.run_dispatch_wait();
    let mut counts;
    loop {
        let outcome = sender::pass(core, shop_id).await;
        counts = count(core, shop_id, &watched).await?;
        let done = counts.pending == 0;
        if done || Instant::now() >= deadline || (outcome.retry_in.is_some() && !outcome.busy) {
            break;
        }
        if outcome.busy {
            tokio::time::sleep(Duration::from_millis(200)).await;
        } else if let Some(due) = outcome.due_in
            && !outcome.more
        {
            // Shipments in doubt are searched later: wait for that within the deadline.
            if Instant::now() + due >= deadline {
                break;
            }
            tokio::time::sleep(due.max(Duration::from_millis(20))).await;
        }
    }
    tracing::info!(shop = shop_id, %caller, queued = queued.len(), sent = counts.sent, errors = counts.errors, pending = counts.pending, "RunDispatch");
    Ok(pb::RunDispatchResponse {
        queued: u32::try_from(queued.len()).unwrap_or(u32::MAX),
        sent: counts.sent,
        errors: counts.errors,
        pending: counts.pending,
        retried: u32::try_from(retried.len()).unwrap_or(u32::MAX),
    })
}

/// `ERROR → QUEUED` for every `ERROR` shipment of the shop, in chunks (one transaction each).
/// Returns the order numbers moved.
async fn retry_errors(
    core: &Core,
    shop_id: &str,
    caller: &str,
) -> Result<Vec<String>, DispatchError> {
    const CHUNK: i64 = 500;
    let mut retried = Vec::new();
    loop {
        let mut tx = core.pool.begin().await?;
        let rows = store::lock_errors(&mut tx, shop_id, CHUNK).await?;
        let done = rows.len() < usize::try_from(CHUNK).unwrap_or(usize::MAX);
        for mut row in rows {
            let Ok(line) = row.apply(Input::Retry, format!("retried by {caller} (RunDispatch)"))
            else {
                continue;
            };
            row.last_error = None;
            store::persist(&mut tx, &core.subjects, &mut row, &[line], true).await?;
            retried.push(row.order_no);
        }
        tx.commit().await?;
        if done {
            break;
        }
    }
    if !retried.is_empty() {
        core.relay.wake();
    }
    Ok(retried)
}

/// `ERROR → QUEUED` with the latest snapshot.
async fn retry_shipment(
    core: &Core,
    caller: &str,
    body: &pb::RetryShipmentRequest,
) -> Result<pb::RetryShipmentResponse, DispatchError> {
    let shop = validate(&body.shop_id, Some(&body.order_no))?;
    let mut tx = core.pool.begin().await?;
    let Some(mut row) = store::lock(&mut tx, shop.as_str(), &body.order_no).await? else {
        return Err(DispatchError::NoShipment {
            shop: shop.to_string(),
            order_no: body.order_no.clone(),
        });
    };
    let line = row
        .apply(Input::Retry, format!("retried by {caller}"))
        .map_err(|refused| DispatchError::NotRetryable(refused.from))?;
    row.last_error = None;
    store::persist(&mut tx, &core.subjects, &mut row, &[line], true).await?;
    tx.commit().await?;
    core.relay.wake();
    core.sender.wake(shop.as_str());
    Ok(pb::RetryShipmentResponse {
        shipment: Some(events::shipment(&row)),
    })
}

/// `CANCEL_REJECTED → CANCEL_REQUESTED`: the cancellation is sent again.
async fn retry_cancel(
    core: &Core,
    caller: &str,
    body: &pb::RetryCancelRequest,
) -> Result<pb::RetryCancelResponse, DispatchError> {
    let shop = validate(&body.shop_id, Some(&body.order_no))?;
    let mut tx = core.pool.begin().await?;
    let Some(mut row) = store::lock(&mut tx, shop.as_str(), &body.order_no).await? else {
        return Err(DispatchError::NoShipment {
            shop: shop.to_string(),
            order_no: body.order_no.clone(),
        });
    };
    let line = row
        .apply(
            Input::RetryCancel,
            format!("cancellation retried by {caller}"),
        )
        .map_err(|refused| DispatchError::CancelNotRetryable(refused.from))?;
    row.cancel_rejected = false;
    row.cancel_attempts = 0;
    row.cancel_after = None;
    row.last_error = None;
    store::persist(&mut tx, &core.subjects, &mut row, &[line], true).await?;
    tx.commit().await?;
    core.relay.wake();
    core.sender.wake(shop.as_str());
    Ok(pb::RetryCancelResponse {
        shipment: Some(events::shipment(&row)),
    })
}

/// The shipment with its full history.
async fn get_shipment(
    core: &Core,
    body: &pb::GetShipmentRequest,
) -> Result<pb::GetShipmentResponse, DispatchError> {
    let shop = validate(&body.shop_id, Some(&body.order_no))?;
    let pool = &core.pool;
    let row = store::get(pool, shop.as_str(), &body.order_no)
        .await?
        .ok_or_else(|| DispatchError::NoShipment {
            shop: shop.to_string(),
            order_no: body.order_no.clone(),
        })?;
    let history = store::history(pool, shop.as_str(), &body.order_no).await?;
    Ok(pb::GetShipmentResponse {
        shipment: Some(events::shipment(&row)),
        history: history.iter().map(events::history_entry).collect(),
    })
}

struct Counts {
    sent: u32,
    errors: u32,
    pending: u32,
}

async fn count(core: &Core, shop_id: &str, order_nos: &[String]) -> Result<Counts, DispatchError> {
    let mut counts = Counts {
        sent: 0,
        errors: 0,
        pending: 0,
    };
    for chunk in order_nos.chunks(5_000) {
        for (_, status) in store::statuses_of(&core.pool, shop_id, chunk).await? {
            match Shipping::parse(&status) {
                Some(Shipping::Sent | Shipping::Shipped) => counts.sent += 1,
                Some(Shipping::Error) => counts.errors += 1,
                Some(Shipping::Queued | Shipping::Sending) => counts.pending += 1,
                _ => {}
            }
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::AUTHORIZATION;

    #[test]
    fn every_rpc_is_in_the_authorization_table() {
        let problems = wmslink_platform::authz::table_problems(
            "wmslink.dispatch.v1.DispatchService",
            AUTHORIZATION,
        );
        assert!(problems.is_empty(), "{problems:?}");
    }
}
