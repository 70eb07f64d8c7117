//! `settings …` and `statuses …`: the help page's 詳細設定 tab.

use std::path::Path;

use serde_json::{Value, json};
use wmslink_proto::settings::v1 as pb;

use crate::cli::{SettingsCommand, StatusesCommand};
use crate::client::{CallExt, Clients, SETTINGS};
use crate::error::CliError;
use crate::output::{Printer, or_dash, pairs, short, table, time, to_json};

pub async fn run(
    clients: &Clients,
    printer: &Printer,
    command: SettingsCommand,
) -> Result<(), CliError> {
    let mut client = clients.settings().await?;
    match command {
        SettingsCommand::Show { shop } => {
            let answer = client
                .get_settings(pb::GetSettingsRequest { shop_id: shop })
                .await
                .or_cli(SETTINGS)?;
            let json = to_json("wmslink.settings.v1.GetSettingsResponse", &answer)?;
            printer.emit(&json, || {
                answer
                    .settings
                    .as_ref()
                    .map(human_settings)
                    .unwrap_or_default()
            });
        }
        SettingsCommand::Register {
            shop,
            file,
            key_stdin,
        } => {
            let detail: pb::DetailSettings = read_form(
                &file,
                "wmslink.settings.v1.DetailSettings",
                normalize_detail,
            )?;
            let access_key = if key_stdin {
                Some(crate::key_from_stdin()?)
            } else {
                None
            };
            let expected_version = current_version(&mut client, &shop).await?;
            let answer = client
                .register_settings(pb::RegisterSettingsRequest {
                    shop_id: shop,
                    expected_version,
                    detail: Some(detail),
                    access_key,
                })
                .await
                .or_cli(SETTINGS)?;
            let json = to_json("wmslink.settings.v1.RegisterSettingsResponse", &answer)?;
            printer.emit(&json, || {
                let settings = answer.settings.as_ref();
                format!(
                    "registered, version {}\n(a changed key or URL needs a new connection check before enabling)",
                    settings.map_or(0, |s| s.version)
                )
            });
        }
        SettingsCommand::Check {
            shop,
            key_stdin,
            url,
        } => {
            let access_key = if key_stdin {
                Some(crate::key_from_stdin()?)
            } else {
                None
            };
            let answer = client
                .check_connection(pb::CheckConnectionRequest {
                    shop_id: shop,
                    access_key,
                    endpoint_url: url,
                })
                .await
                .or_cli(SETTINGS)?;
            let json = to_json("wmslink.settings.v1.CheckConnectionResponse", &answer)?;
            let check = answer.check.clone().unwrap_or_default();
            printer.emit(&json, || {
                pairs(&[
                    (
                        "outcome",
                        short(check.outcome().as_str_name(), "CONNECTION_CHECK_OUTCOME_"),
                    ),
                    ("detail", or_dash(&check.detail)),
                    ("checked at", time(check.checked_at.as_ref())),
                    ("recorded", answer.recorded.to_string()),
                    ("version", answer.version.to_string()),
                ])
            });
            if check.outcome() != pb::ConnectionCheckOutcome::Ok {
                return Err(CliError::Refused(format!(
                    "connection check failed: {} ({})",
                    short(check.outcome().as_str_name(), "CONNECTION_CHECK_OUTCOME_"),
                    check.detail
                )));
            }
        }
        SettingsCommand::Enable { shop } => set_enabled(&mut client, printer, shop, true).await?,
        SettingsCommand::Disable { shop } => set_enabled(&mut client, printer, shop, false).await?,
    }
    Ok(())
}

type SettingsClient = wmslink_proto::settings::v1::settings_service_client::SettingsServiceClient<
    crate::client::Authed,
>;

/// The shop's version for `expected_version`: 0 while it has no settings.
async fn current_version(client: &mut SettingsClient, shop: &str) -> Result<i64, CliError> {
    match client
        .get_settings(pb::GetSettingsRequest {
            shop_id: shop.to_owned(),
        })
        .await
    {
        Ok(answer) => Ok(answer.into_inner().settings.map_or(0, |s| s.version)),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(0),
        Err(status) => Err(CliError::rpc(SETTINGS, status)),
    }
}

async fn set_enabled(
    client: &mut SettingsClient,
    printer: &Printer,
    shop: String,
    enabled: bool,
) -> Result<(), CliError> {
    let expected_version = current_version(client, &shop).await?;
    let answer = client
        .set_enabled(pb::SetEnabledRequest {
            shop_id: shop.clone(),
            enabled,
            expected_version,
        })
        .await
        .or_cli(SETTINGS)?;
    let json = to_json("wmslink.settings.v1.SetEnabledResponse", &answer)?;
    printer.emit(&json, || {
        format!(
            "shop '{shop}' integration {} (version {})",
            if enabled { "enabled" } else { "disabled" },
            answer.settings.as_ref().map_or(0, |s| s.version)
        )
    });
    Ok(())
}

pub async fn statuses(
    clients: &Clients,
    printer: &Printer,
    command: StatusesCommand,
) -> Result<(), CliError> {
    let mut client = clients.settings().await?;
    match command {
        StatusesCommand::Put { shop, file } => {
            let mut request: pb::PutOrderStatusCatalogRequest = read_form(
                &file,
                "wmslink.settings.v1.PutOrderStatusCatalogRequest",
                normalize_catalog,
            )?;
            request.shop_id = shop;
            let answer = client
                .put_order_status_catalog(request)
                .await
                .or_cli(SETTINGS)?;
            let json = to_json("wmslink.settings.v1.PutOrderStatusCatalogResponse", &answer)?;
            printer.emit(&json, || {
                format!(
                    "{}\n\nversion {}",
                    statuses_table(&answer.statuses),
                    answer.version
                )
            });
        }
        StatusesCommand::List { shop } => {
            let answer = client
                .list_order_statuses(pb::ListOrderStatusesRequest { shop_id: shop })
                .await
                .or_cli(SETTINGS)?;
            let json = to_json("wmslink.settings.v1.ListOrderStatusesResponse", &answer)?;
            printer.emit(&json, || statuses_table(&answer.statuses));
        }
    }
    Ok(())
}

fn statuses_table(statuses: &[pb::OrderStatus]) -> String {
    let mut out = table(&["CODE", "NAME", "KIND"]);
    for status in statuses {
        out.add_row(vec![
            status.code.clone(),
            status.display_name.clone(),
            short(status.kind().as_str_name(), "ORDER_STATUS_KIND_"),
        ]);
    }
    out.to_string()
}

/// Reads a TOML, YAML or JSON file (by extension) into the message `full_name`, after `fix`
/// (short enum names). A form the message does not accept is refused with the reason.
fn read_form<T: prost::Message + Default>(
    file: &Path,
    full_name: &str,
    fix: fn(&mut Value),
) -> Result<T, CliError> {
    let shown = file.display().to_string();
    let text = std::fs::read_to_string(file)
        .map_err(|err| CliError::invalid(format!("{shown}: {err}")))?;
    let extension = file
        .extension()
        .and_then(|ext| ext.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut value: Value = match extension.as_str() {
        "toml" => toml::from_str(&text).map_err(|err| err.to_string()),
        "yaml" | "yml" => serde_yaml_ng::from_str(&text).map_err(|err| err.to_string()),
        "json" => serde_json::from_str(&text).map_err(|err| err.to_string()),
        _ => {
            return Err(CliError::Invalid {
                what: format!("{shown}: unknown file type"),
                fields: vec![("file".into(), "use .toml, .yaml, .yml or .json".into())],
            });
        }
    }
    .map_err(|reason| CliError::Invalid {
        what: format!("{shown} is not valid {extension}"),
        fields: vec![("file".into(), reason)],
    })?;
    fix(&mut value);
    crate::output::from_json(full_name, value).map_err(|reason| CliError::Invalid {
        what: format!("{shown} does not fit {full_name}"),
        fields: vec![("file".into(), reason)],
    })
}

/// Prefixes a short enum name (`commerce_robo`) with its type (`WMS_KIND_COMMERCE_ROBO`).
fn full_enum_name(value: &mut Value, prefix: &str) {
    if let Value::String(name) = value {
        let upper = name.to_ascii_uppercase();
        *name = if upper.starts_with(prefix) {
            upper
        } else {
            format!("{prefix}{upper}")
        };
    }
}

/// The detail form: `wms_kind` defaults to COMMERCE ROBO (the only kind) and takes short names.
fn normalize_detail(value: &mut Value) {
    if let Value::Object(form) = value {
        let kind = form
            .entry("wms_kind")
            .or_insert_with(|| json!("COMMERCE_ROBO"));
        full_enum_name(kind, "WMS_KIND_");
    }
}

/// The catalog: `kind` takes short names (`open`, `cancelled`, `completed`).
fn normalize_catalog(value: &mut Value) {
    if let Some(Value::Array(statuses)) = value.get_mut("statuses") {
        for status in statuses {
            if let Some(kind) = status.get_mut("kind") {
                full_enum_name(kind, "ORDER_STATUS_KIND_");
            }
        }
    }
}

fn human_settings(settings: &pb::ShopSettings) -> String {
    let detail = settings.detail.clone().unwrap_or_default();
    let targets = detail.data_targets.unwrap_or_default();
    let check = settings.last_connection_check.clone().unwrap_or_default();
    let flows = [
        ("shipment_instructions", targets.shipment_instructions),
        ("cancellations", targets.cancellations),
        ("shipment_results", targets.shipment_results),
    ]
    .iter()
    .filter(|(_, on)| *on)
    .map(|(name, _)| *name)
    .collect::<Vec<_>>()
    .join(", ");
    let mut out = pairs(&[
        ("shop", settings.shop_id.clone()),
        ("version", settings.version.to_string()),
        ("enabled", settings.enabled.to_string()),
        ("wms", short(detail.wms_kind().as_str_name(), "WMS_KIND_")),
        ("endpoint url", or_dash(&detail.endpoint_url)),
        ("access key", or_dash(&settings.access_key_masked)),
        (
            "connection check",
            format!(
                "{} at {}{} {}",
                short(check.outcome().as_str_name(), "CONNECTION_CHECK_OUTCOME_"),
                time(check.checked_at.as_ref()),
                if check.current { "" } else { " (not current)" },
                check.detail
            ),
        ),
        ("data targets", or_dash(&flows)),
        (
            "target statuses",
            or_dash(&detail.target_status_codes.join(", ")),
        ),
        ("shipper id", detail.shipper_id.to_string()),
        ("delivery method id", detail.delivery_method_id.to_string()),
        ("sync period days", detail.sync_period_days.to_string()),
        ("robot id", detail.robot_id.to_string()),
        ("updated at", time(settings.updated_at.as_ref())),
    ]);
    if !detail.payment_mappings.is_empty() {
        let mut payments = table(&["PAYMENT", "WMS PAYMENT ID", "DELIVERY COMPANY"]);
        for mapping in &detail.payment_mappings {
            payments.add_row(vec![
                mapping.payment_method_code.clone(),
                mapping.wms_payment_method_id.to_string(),
                match mapping.delivery_company_id {
                    0 => "-".to_owned(),
                    id => id.to_string(),
                },
            ]);
        }
        out.push_str(&format!("\n\n{payments}"));
    }
    let free: Vec<_> = detail
        .header_free_fields
        .iter()
        .map(|f| ("header", f))
        .chain(detail.line_free_fields.iter().map(|f| ("line", f)))
        .collect();
    if !free.is_empty() {
        let mut fields = table(&["LEVEL", "WMS FIELD", "CART FIELD"]);
        for (level, field) in free {
            fields.add_row(vec![
                level.to_owned(),
                format!("free{}", field.slot),
                field.cart_field.clone(),
            ]);
        }
        out.push_str(&format!("\n\n{fields}"));
    }
    out
}
