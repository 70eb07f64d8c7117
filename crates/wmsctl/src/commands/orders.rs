//! `orders list` and `orders show`: the order list with both status levels (O1, O2), and one
//! order joined with its shipment and the full WMS exchange history.

use serde_json::{Value, json};
use wmslink_proto::dispatch::v1 as dispatch;
use wmslink_proto::orders::v1 as pb;
use wmslink_proto::orders::v1::ShippingStatus;

use crate::cli::{ListOrdersArgs, OrdersCommand, ShippingStatusArg};
use crate::client::{CallExt, Clients, DISPATCH, ORDERS};
use crate::error::CliError;
use crate::output::{Printer, bare_table, or_dash, pairs, short, table, time, to_json};

pub async fn run(
    clients: &Clients,
    printer: &Printer,
    command: OrdersCommand,
) -> Result<(), CliError> {
    match command {
        OrdersCommand::List(args) => list(clients, printer, args).await,
        OrdersCommand::Show { shop, order_no } => show(clients, printer, shop, order_no).await,
    }
}

pub fn shipping_status(arg: ShippingStatusArg) -> ShippingStatus {
    match arg {
        ShippingStatusArg::NotSent => ShippingStatus::NotSent,
        ShippingStatusArg::Queued => ShippingStatus::Queued,
        ShippingStatusArg::Sending => ShippingStatus::Sending,
        ShippingStatusArg::Sent => ShippingStatus::Sent,
        ShippingStatusArg::Shipped => ShippingStatus::Shipped,
        ShippingStatusArg::CancelRequested => ShippingStatus::CancelRequested,
        ShippingStatusArg::Cancelled => ShippingStatus::Cancelled,
        ShippingStatusArg::CancelRejected => ShippingStatus::CancelRejected,
        ShippingStatusArg::Error => ShippingStatus::Error,
    }
}

pub fn shipping_name(status: ShippingStatus) -> String {
    short(status.as_str_name(), "SHIPPING_STATUS_")
}

fn wms_status(id: i32, name: &str) -> String {
    if id == 0 {
        "-".into()
    } else {
        format!("{id} {name}")
    }
}

fn flags(edited: bool, cancel_rejected: bool, unrequested: bool) -> String {
    let flags: Vec<&str> = [
        (edited, "edited-after-sending"),
        (cancel_rejected, "cancel-rejected"),
        (unrequested, "cancelled-in-wms-unrequested"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, name)| *name)
    .collect();
    or_dash(&flags.join(","))
}

async fn list(clients: &Clients, printer: &Printer, args: ListOrdersArgs) -> Result<(), CliError> {
    let filter = pb::ListOrdersFilter {
        shipping_statuses: args
            .shipping_statuses
            .iter()
            .map(|status| shipping_status(*status) as i32)
            .collect(),
        wms_status_ids: args.wms_statuses.clone(),
        status_codes: args.statuses.clone(),
        order_date_from: args
            .from
            .as_deref()
            .map(|from| crate::parse_time("from", from))
            .transpose()?,
        order_date_to: args
            .to
            .as_deref()
            .map(|to| crate::parse_time("to", to))
            .transpose()?,
        order_no_prefix: args.prefix.clone().unwrap_or_default(),
        anomalies: args
            .anomalies
            .iter()
            .map(|kind| crate::commands::runs::anomaly_kind(Some(*kind)) as i32)
            .collect(),
    };
    let mut client = clients.orders().await?;
    let mut page_token = args.page_token.clone().unwrap_or_default();
    let mut first = true;
    loop {
        let page = client
            .list_orders(pb::ListOrdersRequest {
                shop_id: args.shop.clone(),
                filter: Some(filter.clone()),
                page_size: args.page_size,
                page_token: page_token.clone(),
            })
            .await
            .or_cli(ORDERS)?;
        let json = to_json("wmslink.orders.v1.ListOrdersResponse", &page)?;
        printer.emit(&json, || orders_table(&page, first, args.all));
        first = false;
        if !args.all || page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    Ok(())
}

fn orders_table(page: &pb::ListOrdersResponse, header: bool, all: bool) -> String {
    let mut out = if header {
        table(&[
            "ORDER_NO",
            "ORDER_DATE",
            "STATUS",
            "SHIPPING",
            "WMS",
            "TRACKING",
            "FLAGS",
            "TOTAL",
            "NAME",
        ])
    } else {
        bare_table()
    };
    for row in &page.rows {
        out.add_row(vec![
            row.order_no.clone(),
            time(row.order_date.as_ref()),
            row.status_code.clone(),
            shipping_name(row.shipping_status()),
            wms_status(row.wms_status_id, &row.wms_status_name),
            or_dash(&row.tracking_code),
            flags(
                row.edited_after_sending,
                row.cancel_rejected,
                row.cancelled_in_wms_unrequested,
            ),
            row.total.to_string(),
            row.shipping_name.clone(),
        ]);
    }
    let mut text = if page.rows.is_empty() && header {
        "no orders".to_owned()
    } else if page.rows.is_empty() {
        String::new()
    } else {
        out.to_string()
    };
    if !all && !page.next_page_token.is_empty() {
        text.push_str(&format!(
            "\n\nmore: --page-token {} (or --all)",
            page.next_page_token
        ));
    }
    text
}

async fn show(
    clients: &Clients,
    printer: &Printer,
    shop: String,
    order_no: String,
) -> Result<(), CliError> {
    let mut orders = clients.orders().await?;
    let view = orders
        .get_order(pb::GetOrderRequest {
            shop_id: shop.clone(),
            order_no: order_no.clone(),
        })
        .await
        .or_cli(ORDERS)?
        .order
        .unwrap_or_default();
    let mut dispatcher = clients.dispatch(false).await?;
    // The dispatcher may not have heard of the order yet: no shipment, no history.
    let shipment = match dispatcher
        .get_shipment(dispatch::GetShipmentRequest {
            shop_id: shop,
            order_no,
        })
        .await
    {
        Ok(answer) => Some(answer.into_inner()),
        Err(status) if status.code() == tonic::Code::NotFound => None,
        Err(status) => return Err(CliError::rpc(DISPATCH, status)),
    };
    let json = json!({
        "order": to_json("wmslink.orders.v1.OrderView", &view)?,
        "shipment": match shipment.as_ref().and_then(|s| s.shipment.as_ref()) {
            Some(shipment) => to_json("wmslink.dispatch.v1.Shipment", shipment)?,
            None => Value::Null,
        },
        "history": shipment
            .as_ref()
            .map(|s| {
                s.history
                    .iter()
                    .map(|entry| to_json("wmslink.dispatch.v1.HistoryEntry", entry))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default(),
    });
    printer.emit(&json, || human_order(&view, shipment.as_ref()));
    Ok(())
}

fn human_order(view: &pb::OrderView, shipment: Option<&dispatch::GetShipmentResponse>) -> String {
    let order = view.order.clone().unwrap_or_default();
    let integration = view.integration.clone().unwrap_or_default();
    let shipping = order.shipping.clone().unwrap_or_default();
    let amounts = order.amounts.unwrap_or_default();
    let mut rows = vec![
        ("order", format!("{} / {}", order.shop_id, order.order_no)),
        ("revision", order.revision.to_string()),
        ("order date", time(order.order_date.as_ref())),
        ("status", order.status_code.clone()),
        ("payment", order.payment_method_code.clone()),
        (
            "ship to",
            format!(
                "{} {} {}{}",
                shipping.name, shipping.zip, shipping.prefecture, shipping.address1
            ),
        ),
        ("total", amounts.total.to_string()),
        ("lines", order.lines.len().to_string()),
        (
            "shipping status",
            shipping_name(integration.shipping_status()),
        ),
        (
            "wms status",
            wms_status(integration.wms_status_id, &integration.wms_status_name),
        ),
        ("tracking code", or_dash(&integration.tracking_code)),
        ("shipped date", or_dash(&integration.shipped_date)),
        (
            "flags",
            flags(
                integration.edited_after_sending,
                integration.cancel_rejected,
                integration.cancelled_in_wms_unrequested,
            ),
        ),
        ("last error", or_dash(&integration.last_error)),
    ];
    let shipment_row = shipment.and_then(|s| s.shipment.clone());
    if let Some(shipment) = &shipment_row {
        rows.push((
            "wms order id",
            match shipment.wms_order_id {
                0 => "-".to_owned(),
                id => id.to_string(),
            },
        ));
        rows.push(("sent revision", shipment.sent_revision.to_string()));
    }
    let mut out = pairs(&rows);
    match shipment {
        None => out.push_str("\n\nno shipment yet (the dispatcher has not seen the order)"),
        Some(shipment) => {
            let mut history = table(&["AT", "KIND", "CHANGE / CALL", "DETAIL"]);
            for entry in &shipment.history {
                let (change, detail) = match entry.kind.as_str() {
                    "state_change" => (
                        format!("{} -> {}", or_dash(&entry.from_status), entry.to_status),
                        entry.reason.clone(),
                    ),
                    "wms_call" => (
                        entry.request_summary.clone(),
                        if entry.error.is_empty() {
                            entry.response_summary.clone()
                        } else {
                            format!("{} ERROR {}", entry.response_summary, entry.error)
                        },
                    ),
                    _ => (String::new(), entry.reason.clone()),
                };
                history.add_row(vec![
                    time(entry.at.as_ref()),
                    entry.kind.clone(),
                    change,
                    detail,
                ]);
            }
            out.push_str(&format!("\n\nhistory\n{history}"));
        }
    }
    out
}
