//! `wmslink.sync.v1.SyncService`: request checks, then the runner or the store. Who may call
//! what is declared once in [`AUTHORIZATION`] and enforced by the
//! [`Authorize`](wmslink_platform::authz::Authorize) layer before a handler runs. Errors become
//! statuses in one place, `From<SyncError> for Status` (`errors.rs`).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use wmslink_platform::auth::{caller_name, scopes};
use wmslink_platform::authz::{MethodRule, ShopRule};
use wmslink_platform::shop::ShopId;
use wmslink_platform::validation::FieldViolations;
use wmslink_proto::sync::v1::sync_service_server::SyncService;
use wmslink_proto::sync::v1::{
    AnomalyKind, GetSyncRunsRequest, GetSyncRunsResponse, ListAnomaliesRequest,
    ListAnomaliesResponse, RunSyncRequest, RunSyncResponse, SyncRun,
};

use chrono::SubsecRound;

use wmslink_proto::{from_timestamp, to_timestamp as timestamp};

use crate::errors::SyncError;
use crate::model::Period;
use crate::runner::Runner;
use crate::store::RunRecord;

macro_rules! rule {
    ($method:literal, $scope:expr) => {
        MethodRule {
            method: concat!("/wmslink.sync.v1.SyncService/", $method),
            scope: $scope,
            shop: ShopRule::ShopIdField1,
        }
    };
}

/// Every RPC and the scope it needs (each names its shop in field 1): the one table the
/// [`Authorize`](wmslink_platform::authz::Authorize) layer checks. An RPC missing here is
/// refused.
pub const AUTHORIZATION: &[MethodRule] = &[
    rule!("RunSync", scopes::OPERATE),
    rule!("GetSyncRuns", scopes::ORDERS_READ),
    rule!("ListAnomalies", scopes::ORDERS_READ),
];

/// Longest explicit period of `RunSync`.
const MAX_PERIOD_DAYS: i64 = 366;

pub struct SyncApi {
    runner: Arc<Runner>,
    shutdown: CancellationToken,
}

impl SyncApi {
    pub fn new(runner: Arc<Runner>, shutdown: CancellationToken) -> Self {
        Self { runner, shutdown }
    }
}

fn shop_id(raw: &str, violations: &mut FieldViolations) -> Option<ShopId> {
    match ShopId::parse(raw) {
        Ok(shop) => Some(shop),
        Err(err) => {
            violations.add("shop_id", err.to_string());
            None
        }
    }
}

/// The shop of a request whose violations were all checked: [`shop_id`] adds one whenever it
/// gives no shop.
fn checked_shop(shop: Option<ShopId>) -> Result<ShopId, SyncError> {
    shop.ok_or_else(|| SyncError::invalid("shop_id", "invalid"))
}

/// The checked request of `RunSync`.
pub fn check_run_sync(request: &RunSyncRequest) -> Result<(ShopId, Option<Period>), SyncError> {
    let mut violations = FieldViolations::new();
    let shop = shop_id(&request.shop_id, &mut violations);
    // Microseconds, as stored.
    let read = |at: &prost_types::Timestamp| from_timestamp(at).map(|at| at.trunc_subsecs(6));
    let from = request.from.as_ref().map(|at| (at, read(at)));
    let to = request.to.as_ref().map(|at| (at, read(at)));
    let period = match (from, to) {
        (None, None) => None,
        (Some((_, Some(from))), Some((_, Some(to)))) => {
            if from >= to {
                violations.add("to", "must be after from");
                None
            } else if to - from > chrono::Duration::days(MAX_PERIOD_DAYS) {
                violations.add("to", format!("at most {MAX_PERIOD_DAYS} days after from"));
                None
            } else {
                Some(Period { from, to: Some(to) })
            }
        }
        (from, to) => {
            for (field, value) in [("from", from), ("to", to)] {
                match value {
                    None => violations.add(field, "give both from and to, or neither"),
                    Some((_, None)) => violations.add(field, "not a valid timestamp"),
                    Some(_) => {}
                }
            }
            None
        }
    };
    SyncError::check(violations)?;
    Ok((checked_shop(shop)?, period))
}

pub fn run_to_proto(run: &RunRecord) -> SyncRun {
    let positive = |n: i32| u32::try_from(n).unwrap_or(0);
    SyncRun {
        run_id: run.run_id.to_string(),
        shop_id: run.shop_id.clone(),
        trigger: run.trigger.clone(),
        started_at: Some(timestamp(run.started_at)),
        finished_at: run.finished_at.map(timestamp),
        asked: positive(run.asked),
        changed: positive(run.changed),
        anomalies: positive(run.anomalies),
        wms_calls: positive(run.wms_calls),
        errors: positive(run.errors),
        last_error: run.last_error.clone(),
        period_from: Some(timestamp(run.period_from)),
        period_to: run.period_to.map(timestamp),
        pass: run.pass.clone(),
        outcome: run.outcome.clone(),
    }
}

fn limit(requested: u32, default: u32, max: u32) -> i64 {
    i64::from(if requested == 0 {
        default
    } else {
        requested.min(max)
    })
}

#[tonic::async_trait]
impl SyncService for SyncApi {
    async fn run_sync(
        &self,
        request: Request<RunSyncRequest>,
    ) -> Result<Response<RunSyncResponse>, Status> {
        let caller = caller_name(&request);
        let (shop, period) = check_run_sync(request.get_ref())?;
        tracing::info!(%shop, %caller, ?period, "manual sync requested");
        // Its own task: the pass is finished and recorded even if the caller goes away.
        let runner = self.runner.clone();
        let shutdown = self.shutdown.clone();
        let run = tokio::spawn(async move { runner.run_manual(&shop, period, shutdown).await })
            .await
            .map_err(SyncError::from)??;
        Ok(Response::new(RunSyncResponse {
            run_id: run.run_id.to_string(),
            run: Some(run_to_proto(&run)),
        }))
    }

    async fn get_sync_runs(
        &self,
        request: Request<GetSyncRunsRequest>,
    ) -> Result<Response<GetSyncRunsResponse>, Status> {
        let mut violations = FieldViolations::new();
        let shop = shop_id(&request.get_ref().shop_id, &mut violations);
        SyncError::check(violations)?;
        let shop = checked_shop(shop)?;
        let runs = self
            .runner
            .store()
            .list_runs(shop.as_str(), limit(request.get_ref().limit, 20, 100))
            .await
            .map_err(SyncError::from)?;
        Ok(Response::new(GetSyncRunsResponse {
            runs: runs.iter().map(run_to_proto).collect(),
        }))
    }

    async fn list_anomalies(
        &self,
        request: Request<ListAnomaliesRequest>,
    ) -> Result<Response<ListAnomaliesResponse>, Status> {
        let body = request.get_ref();
        let mut violations = FieldViolations::new();
        let shop = shop_id(&body.shop_id, &mut violations);
        let kind = match AnomalyKind::try_from(body.kind) {
            Ok(AnomalyKind::Unspecified) => None,
            Ok(kind) => Some(kind),
            Err(_) => {
                violations.add("kind", format!("unknown value {}", body.kind));
                None
            }
        };
        SyncError::check(violations)?;
        let shop = checked_shop(shop)?;
        let anomalies = self
            .runner
            .store()
            .list_anomalies(shop.as_str(), kind, limit(body.limit, 100, 500))
            .await
            .map_err(SyncError::from)?;
        Ok(Response::new(ListAnomaliesResponse {
            anomalies: anomalies.iter().map(|a| a.to_proto()).collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use wmslink_platform::validation::violations_of;

    #[test]
    fn every_rpc_is_in_the_authorization_table() {
        let problems =
            wmslink_platform::authz::table_problems("wmslink.sync.v1.SyncService", AUTHORIZATION);
        assert!(problems.is_empty(), "{problems:?}");
    }

    fn at(seconds: i64) -> Option<prost_types::Timestamp> {
        Some(prost_types::Timestamp { seconds, nanos: 0 })
    }

    #[test]
    fn run_sync_period_is_both_or_neither_ordered_and_bounded() {
        let ok = check_run_sync(&RunSyncRequest {
            shop_id: "s1".into(),
            from: at(1_700_000_000),
            to: at(1_700_086_400),
        })
        .unwrap();
        assert_eq!(ok.1.unwrap().to.unwrap().timestamp(), 1_700_086_400);
        assert!(
            check_run_sync(&RunSyncRequest {
                shop_id: "s1".into(),
                ..Default::default()
            })
            .unwrap()
            .1
            .is_none()
        );

        let fields = |request: RunSyncRequest| {
            violations_of(&Status::from(check_run_sync(&request).unwrap_err()))
                .into_iter()
                .map(|(field, _)| field)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            fields(RunSyncRequest {
                shop_id: "a.b".into(),
                from: at(10),
                to: None
            }),
            vec!["shop_id", "to"]
        );
        assert_eq!(
            fields(RunSyncRequest {
                shop_id: "s1".into(),
                from: at(20),
                to: at(10)
            }),
            vec!["to"]
        );
        assert_eq!(
            fields(RunSyncRequest {
                shop_id: "s1".into(),
                from: at(0),
                to: at(400 * 86_400)
            }),
            vec!["to"]
        );
    }
}
