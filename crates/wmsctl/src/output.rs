//! Output: human tables by default; with `--json`, one JSON document per line on stdout (the
//! proto3 JSON of the answer, with proto field names, every field present, enums by name,
//! 64-bit integers as numbers and timestamps as RFC 3339 strings).

use std::io::Write;
use std::sync::OnceLock;

use comfy_table::{ContentArrangement, Table, presets};
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde_json::Value;

use crate::error::CliError;

fn pool() -> Result<&'static DescriptorPool, CliError> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(wmslink_proto::FILE_DESCRIPTOR_SET).map_err(|err| err.to_string())
    })
    .as_ref()
    .map_err(|err| CliError::Other(format!("descriptors: {err}")))
}

/// The message's JSON (see the module doc). `full_name`: e.g. `wmslink.orders.v1.OrderView`.
pub fn to_json<T: prost::Message>(full_name: &str, message: &T) -> Result<Value, CliError> {
    let descriptor = pool()?
        .get_message_by_name(full_name)
        .ok_or_else(|| CliError::Other(format!("unknown message {full_name}")))?;
    let mut dynamic = DynamicMessage::new(descriptor);
    dynamic
        .transcode_from(message)
        .map_err(|err| CliError::Other(format!("{full_name}: {err}")))?;
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(false)
        .stringify_64_bit_integers(false);
    dynamic
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|err| CliError::Other(format!("{full_name}: {err}")))
}

/// Reads a message from JSON (proto or JSON field names; unknown fields refused).
pub fn from_json<T: prost::Message + Default>(full_name: &str, value: Value) -> Result<T, String> {
    let descriptor = pool()
        .map_err(|err| err.to_string())?
        .get_message_by_name(full_name)
        .ok_or_else(|| format!("unknown message {full_name}"))?;
    let dynamic = DynamicMessage::deserialize(descriptor, value).map_err(|err| err.to_string())?;
    dynamic.transcode_to::<T>().map_err(|err| err.to_string())
}

/// Where results go.
pub struct Printer {
    pub json: bool,
}

impl Printer {
    /// Prints `json` (with `--json`) or `human`.
    pub fn emit(&self, json: &Value, human: impl FnOnce() -> String) {
        let mut stdout = std::io::stdout().lock();
        let text = if self.json { json.to_string() } else { human() };
        // A closed pipe (`| head`) is not an error worth a panic.
        let _ = writeln!(stdout, "{}", text.trim_end_matches('\n'));
        let _ = stdout.flush();
    }
}

/// A borderless table with a header row.
pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_style(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().copied());
    table
}

/// A borderless table without a header (later pages of `--all`).
pub fn bare_table() -> Table {
    let mut table = Table::new();
    table
        .load_style(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled);
    table
}

/// Key/value lines, aligned.
pub fn pairs(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(key, _)| key.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(key, value)| format!("{key:<width$}  {value}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A protobuf timestamp as RFC 3339 (JST, the cart's zone), or `-`.
pub fn time(ts: Option<&prost_types::Timestamp>) -> String {
    let Some(ts) = ts else {
        return "-".into();
    };
    let nanos = u32::try_from(ts.nanos).unwrap_or(0);
    match chrono::DateTime::from_timestamp(ts.seconds, nanos) {
        Some(at) => at
            .with_timezone(&crate::jst())
            .format("%Y-%m-%d %H:%M:%S%:z")
            .to_string(),
        None => "-".into(),
    }
}

/// `-` for empty text.
pub fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".into()
    } else {
        text.to_owned()
    }
}

/// An enum name without its type prefix, lower case: `SHIPPING_STATUS_SENT` → `sent`.
pub fn short(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
}
