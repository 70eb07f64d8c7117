//! `wmslink.dispatch.v1.DispatchService`.
//!
//! | RPC | scope |
//! | --- | --- |
//! | RunDispatch, RetryShipment | `operate` |
//! | GetShipment | `orders.read` |

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tonic::{Request, Response, Status};
use wmslink_platform::auth::{require, scopes};
use wmslink_platform::grpc::internal;
use wmslink_platform::shop::ShopId;
use wmslink_platform::validation::FieldViolations;
use wmslink_proto::dispatch::v1 as pb;
use wmslink_proto::dispatch::v1::dispatch_service_server::DispatchService;

use crate::consumers::MAX_ORDER_NO_LEN;
use crate::core::Core;
use crate::events;
use crate::sender;
use crate::settings::Lookup;
use crate::state_machine::{Input, Status as Shipping};
use crate::store;

#[derive(Clone)]
pub struct DispatchApi {
    core: Arc<Core>,
}

impl DispatchApi {
    pub fn new(core: Arc<Core>) -> Self {
        Self { core }
    }
}

fn validate(shop_id: &str, order_no: Option<&str>) -> Result<ShopId, Status> {
    let mut violations = FieldViolations::new();
    let shop = match ShopId::parse(shop_id) {
        Ok(shop) => Some(shop),
        Err(err) => {
            violations.add("shop_id", err.to_string());
            None
        }
    };
    if let Some(order_no) = order_no {
        if order_no.is_empty() {
            violations.add("order_no", "must not be empty");
        } else if order_no.chars().count() > MAX_ORDER_NO_LEN {
            violations.add(
                "order_no",
                format!("must be at most {MAX_ORDER_NO_LEN} characters"),
            );
        }
    }
    match shop {
        Some(shop) if violations.is_empty() => Ok(shop),
        _ => Err(violations.into_status()),
    }
}

fn db_error(err: sqlx::Error) -> Status {
    internal("database", err)
}

#[tonic::async_trait]
impl DispatchService for DispatchApi {
    async fn run_dispatch(
        &self,
        request: Request<pb::RunDispatchRequest>,
    ) -> Result<Response<pb::RunDispatchResponse>, Status> {
        let caller = require(&request, scopes::OPERATE)?.name.clone();
        let shop = validate(&request.get_ref().shop_id, None)?;
        let shop_id = shop.as_str();
        let core = &self.core;
        // An operator's explicit run reads the settings fresh.
        let view = match core.settings.refresh(shop_id).await {
            Ok(Lookup::Known(view)) => view,
            Ok(Lookup::Unknown) => {
                return Err(Status::not_found(format!(
                    "shop '{shop_id}' has no settings"
                )));
            }
            Err(err) => return Err(Status::unavailable(err.to_string())),
        };
        if !view.policy.enabled {
            return Err(Status::failed_precondition(format!(
                "the integration of shop '{shop_id}' is not enabled"
            )));
        }
        if !view.policy.shipment_instructions {
            return Err(Status::failed_precondition(format!(
                "shipment instructions are not a data target of shop '{shop_id}'"
            )));
        }
        let mut watched: BTreeSet<String> =
            store::order_nos_in(&core.pool, shop_id, Shipping::Queued)
                .await
                .map_err(db_error)?
                .into_iter()
                .collect();
        let queued = sender::queue_due(core, shop_id, &view, &format!("E2 run by {caller}"))
            .await
            .map_err(db_error)?;
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
            }
        }
        tracing::info!(shop = shop_id, %caller, queued = queued.len(), sent = counts.sent, errors = counts.errors, pending = counts.pending, "RunDispatch");
        Ok(Response::new(pb::RunDispatchResponse {
            queued: u32::try_from(queued.len()).unwrap_or(u32::MAX),
            sent: counts.sent,
            errors: counts.errors,
            pending: counts.pending,
        }))
    }

    async fn retry_shipment(
        &self,
        request: Request<pb::RetryShipmentRequest>,
    ) -> Result<Response<pb::RetryShipmentResponse>, Status> {
        let caller = require(&request, scopes::OPERATE)?.name.clone();
        let body = request.get_ref();
        let shop = validate(&body.shop_id, Some(&body.order_no))?;
        let core = &self.core;
        let mut tx = core.pool.begin().await.map_err(db_error)?;
        let Some(mut row) = store::lock(&mut tx, shop.as_str(), &body.order_no)
            .await
            .map_err(db_error)?
        else {
            return Err(Status::not_found(format!(
                "no shipment for order '{}' of shop '{shop}'",
                body.order_no
            )));
        };
        let line = row
            .apply(Input::Retry, format!("retried by {caller}"))
            .map_err(|_| {
                Status::failed_precondition(format!(
                    "the shipment is {}; only a shipment in ERROR can be retried",
                    row.status
                ))
            })?;
        row.last_error = None;
        store::persist(&mut tx, &core.subjects, &mut row, &[line], true)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        core.relay.wake();
        core.sender.wake(shop.as_str());
        Ok(Response::new(pb::RetryShipmentResponse {
            shipment: Some(events::shipment(&row)),
        }))
    }

    async fn get_shipment(
        &self,
        request: Request<pb::GetShipmentRequest>,
    ) -> Result<Response<pb::GetShipmentResponse>, Status> {
        require(&request, scopes::ORDERS_READ)?;
        let body = request.get_ref();
        let shop = validate(&body.shop_id, Some(&body.order_no))?;
        let pool = &self.core.pool;
        let row = store::get(pool, shop.as_str(), &body.order_no)
            .await
            .map_err(db_error)?
            .ok_or_else(|| {
                Status::not_found(format!(
                    "no shipment for order '{}' of shop '{shop}'",
                    body.order_no
                ))
            })?;
        let history = store::history(pool, shop.as_str(), &body.order_no)
            .await
            .map_err(db_error)?;
        Ok(Response::new(pb::GetShipmentResponse {
            shipment: Some(events::shipment(&row)),
            history: history.iter().map(events::history_entry).collect(),
        }))
    }
}

struct Counts {
    sent: u32,
    errors: u32,
    pending: u32,
}

async fn count(core: &Core, shop_id: &str, order_nos: &[String]) -> Result<Counts, Status> {
    let mut counts = Counts {
        sent: 0,
        errors: 0,
        pending: 0,
    };
    for chunk in order_nos.chunks(5_000) {
        for (_, status) in store::statuses_of(&core.pool, shop_id, chunk)
            .await
            .map_err(db_error)?
        {
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
