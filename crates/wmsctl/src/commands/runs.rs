//! `dispatch …`, `sync …` and `anomalies list`: the 連携実行 tab. Runs answer when they are
//! over; meanwhile the progress is polled from the services that have it (the order list's
//! shipping statuses for dispatch, the sync-runs list for sync).

use std::future::Future;
use std::time::Duration;

use wmslink_proto::dispatch::v1 as dispatch;
use wmslink_proto::orders::v1 as orders;
use wmslink_proto::orders::v1::ShippingStatus;
use wmslink_proto::sync::v1 as sync;

use crate::cli::{AnomaliesCommand, AnomalyKindArg, DispatchCommand, SyncCommand};
use crate::client::{Authed, CallExt, Clients, DISPATCH, ORDERS, SYNC};
use crate::commands::orders::shipping_name;
use crate::error::CliError;
use crate::output::{Printer, or_dash, pairs, short, table, time, to_json};
use crate::progress::Progress;

const POLL: Duration = Duration::from_millis(500);
/// Counting stops here (pages of 200): the display says "1000+".
const COUNT_CAP: usize = 1000;

type OrdersClient = orders::order_service_client::OrderServiceClient<Authed>;

/// Polls `progress_of` every half second while `call` runs, showing what it returns.
async fn with_progress<T, C, P, PF>(json: bool, call: C, mut progress_of: P) -> Result<T, CliError>
where
    C: Future<Output = Result<T, CliError>>,
    P: FnMut() -> PF,
    PF: Future<Output = Option<String>>,
{
    let mut progress = Progress::new(json);
    tokio::pin!(call);
    let result = loop {
        tokio::select! {
            result = &mut call => break result,
            _ = tokio::time::sleep(POLL) => {
                if let Some(message) = progress_of().await {
                    progress.update(message);
                }
            }
        }
    };
    progress.finish();
    result
}

/// How many of the shop's orders are in `statuses` (up to [`COUNT_CAP`]).
async fn count_orders(
    client: &mut OrdersClient,
    shop: &str,
    status: ShippingStatus,
) -> Result<String, CliError> {
    let mut count = 0;
    let mut page_token = String::new();
    loop {
        let page = client
            .list_orders(orders::ListOrdersRequest {
                shop_id: shop.to_owned(),
                filter: Some(orders::ListOrdersFilter {
                    shipping_statuses: vec![status as i32],
                    ..Default::default()
                }),
                page_size: 200,
                page_token,
            })
            .await
            .or_cli(ORDERS)?;
        count += page.rows.len();
        if page.next_page_token.is_empty() {
            return Ok(count.to_string());
        }
        if count >= COUNT_CAP {
            return Ok(format!("{count}+"));
        }
        page_token = page.next_page_token;
    }
}

async fn queue_state(client: &mut OrdersClient, shop: &str) -> Result<(String, String), CliError> {
    Ok((
        count_orders(client, shop, ShippingStatus::Queued).await?,
        count_orders(client, shop, ShippingStatus::Sending).await?,
    ))
}

pub async fn dispatch(
    clients: &Clients,
    printer: &Printer,
    command: DispatchCommand,
) -> Result<(), CliError> {
    match command {
        DispatchCommand::Run {
            shop,
            wait,
            retry_errors,
        } => {
            let mut client = clients.dispatch(true).await?;
            let orders_client = clients.orders().await?;
            let call = async {
                client
                    .run_dispatch(dispatch::RunDispatchRequest {
                        shop_id: shop.clone(),
                        retry_errors,
                    })
                    .await
                    .or_cli(DISPATCH)
            };
            let answer = with_progress(printer.json, call, || {
                let mut orders_client = orders_client.clone();
                let shop = shop.clone();
                async move {
                    let (queued, sending) = queue_state(&mut orders_client, &shop).await.ok()?;
                    Some(format!(
                        "dispatch run of {shop}: {queued} queued, {sending} sending"
                    ))
                }
            })
            .await?;
            if wait && answer.pending > 0 {
                let mut progress = Progress::new(printer.json);
                let mut orders_client = orders_client.clone();
                loop {
                    let (queued, sending) = queue_state(&mut orders_client, &shop).await?;
                    if queued == "0" && sending == "0" {
                        break;
                    }
                    progress.update(format!(
                        "waiting for {shop}: {queued} queued, {sending} sending"
                    ));
                    tokio::time::sleep(POLL).await;
                }
                progress.finish();
            }
            let json = to_json("wmslink.dispatch.v1.RunDispatchResponse", &answer)?;
            printer.emit(&json, || {
                pairs(&[
                    ("queued by this run", answer.queued.to_string()),
                    ("sent", answer.sent.to_string()),
                    ("errors", answer.errors.to_string()),
                    ("pending", answer.pending.to_string()),
                    ("errors retried", answer.retried.to_string()),
                ])
            });
        }
        DispatchCommand::Retry { shop, order_no } => {
            let mut client = clients.dispatch(false).await?;
            let answer = client
                .retry_shipment(dispatch::RetryShipmentRequest {
                    shop_id: shop,
                    order_no,
                })
                .await
                .or_cli(DISPATCH)?;
            let json = to_json("wmslink.dispatch.v1.RetryShipmentResponse", &answer)?;
            let shipment = answer.shipment.clone().unwrap_or_default();
            printer.emit(&json, || {
                format!(
                    "{} is {} again; the sender takes it next",
                    shipment.order_no,
                    shipping_name(shipment.shipping_status())
                )
            });
        }
        DispatchCommand::RetryCancel { shop, order_no } => {
            let mut client = clients.dispatch(false).await?;
            let answer = client
                .retry_cancel(dispatch::RetryCancelRequest {
                    shop_id: shop,
                    order_no,
                })
                .await
                .or_cli(DISPATCH)?;
            let json = to_json("wmslink.dispatch.v1.RetryCancelResponse", &answer)?;
            let shipment = answer.shipment.clone().unwrap_or_default();
            printer.emit(&json, || {
                format!(
                    "{} is {} again; the sender sends the cancellation next",
                    shipment.order_no,
                    shipping_name(shipment.shipping_status())
                )
            });
        }
    }
    Ok(())
}

fn runs_table(runs: &[sync::SyncRun]) -> String {
    let mut out = table(&[
        "RUN",
        "TRIGGER",
        "PASS",
        "STARTED",
        "FINISHED",
        "OUTCOME",
        "ASKED",
        "CHANGED",
        "ANOMALIES",
        "WMS CALLS",
        "ERRORS",
        "LAST ERROR",
    ]);
    for run in runs {
        out.add_row(vec![
            run.run_id.clone(),
            run.trigger.clone(),
            run.pass.clone(),
            time(run.started_at.as_ref()),
            time(run.finished_at.as_ref()),
            run.outcome.clone(),
            run.asked.to_string(),
            run.changed.to_string(),
            run.anomalies.to_string(),
            run.wms_calls.to_string(),
            run.errors.to_string(),
            or_dash(&run.last_error),
        ]);
    }
    if runs.is_empty() {
        "no sync runs".into()
    } else {
        out.to_string()
    }
}

pub async fn sync(
    clients: &Clients,
    printer: &Printer,
    command: SyncCommand,
) -> Result<(), CliError> {
    match command {
        SyncCommand::Run { shop, from, to } => {
            let from = from
                .as_deref()
                .map(|from| crate::parse_time("from", from))
                .transpose()?;
            let to = to
                .as_deref()
                .map(|to| crate::parse_time("to", to))
                .transpose()?;
            let mut client = clients.sync(true).await?;
            let poller = clients.sync(false).await?;
            let call = async {
                client
                    .run_sync(sync::RunSyncRequest {
                        shop_id: shop.clone(),
                        from,
                        to,
                    })
                    .await
                    .or_cli(SYNC)
            };
            let answer = with_progress(printer.json, call, || {
                let mut poller = poller.clone();
                let shop = shop.clone();
                async move {
                    let runs = poller
                        .get_sync_runs(sync::GetSyncRunsRequest {
                            shop_id: shop.clone(),
                            limit: 5,
                        })
                        .await
                        .ok()?
                        .into_inner()
                        .runs;
                    let running = runs.iter().find(|run| run.outcome == "running")?;
                    Some(format!(
                        "sync run {} of {shop} ({}, {}): running since {}",
                        running.run_id,
                        running.trigger,
                        or_dash(&running.pass),
                        time(running.started_at.as_ref())
                    ))
                }
            })
            .await?;
            let json = to_json("wmslink.sync.v1.RunSyncResponse", &answer)?;
            printer.emit(&json, || runs_table(answer.run.as_slice()));
        }
        SyncCommand::Runs { shop, limit } => {
            let mut client = clients.sync(false).await?;
            let answer = client
                .get_sync_runs(sync::GetSyncRunsRequest {
                    shop_id: shop,
                    limit,
                })
                .await
                .or_cli(SYNC)?;
            let json = to_json("wmslink.sync.v1.GetSyncRunsResponse", &answer)?;
            printer.emit(&json, || runs_table(&answer.runs));
        }
    }
    Ok(())
}

pub async fn anomalies(
    clients: &Clients,
    printer: &Printer,
    command: AnomaliesCommand,
) -> Result<(), CliError> {
    let AnomaliesCommand::List { shop, kind, limit } = command;
    let kind = anomaly_kind(kind);
    let mut client = clients.sync(false).await?;
    let answer = client
        .list_anomalies(sync::ListAnomaliesRequest {
            shop_id: shop,
            limit,
            kind: kind as i32,
        })
        .await
        .or_cli(SYNC)?;
    let json = to_json("wmslink.sync.v1.ListAnomaliesResponse", &answer)?;
    printer.emit(&json, || {
        if answer.anomalies.is_empty() {
            return "no anomalies".into();
        }
        let mut out = table(&[
            "DETECTED",
            "ORDER_NO",
            "KIND",
            "WMS ORDER",
            "WMS STATUS",
            "DETAIL",
        ]);
        for anomaly in &answer.anomalies {
            out.add_row(vec![
                time(anomaly.detected_at.as_ref()),
                anomaly.order_no.clone(),
                short(anomaly.kind().as_str_name(), "ANOMALY_KIND_"),
                anomaly.wms_order_id.to_string(),
                if anomaly.wms_status_id == 0 {
                    "-".into()
                } else {
                    format!("{} {}", anomaly.wms_status_id, anomaly.wms_status_name)
                },
                anomaly.detail.clone(),
            ]);
        }
        out.to_string()
    });
    Ok(())
}

/// The proto kind of a `--kind`/`--anomaly` argument (none: unspecified, every kind).
pub(crate) fn anomaly_kind(kind: Option<AnomalyKindArg>) -> sync::AnomalyKind {
    match kind {
        None => sync::AnomalyKind::Unspecified,
        Some(AnomalyKindArg::CancelledUnrequested) => sync::AnomalyKind::CancelledUnrequested,
        Some(AnomalyKindArg::NotSentByWmslink) => sync::AnomalyKind::NotSentByWmslink,
        Some(AnomalyKindArg::MissingInWms) => sync::AnomalyKind::MissingInWms,
        Some(AnomalyKindArg::RegisteredOutsideWmslink) => {
            sync::AnomalyKind::RegisteredOutsideWmslink
        }
    }
}
