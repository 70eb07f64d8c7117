//! Validation of registration rows (the modelled body of `wms-api.md`).

use chrono::{DateTime, NaiveDate};
use serde_json::{Map, Value};

/// One problem with a row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RowError {
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

fn required(field: &str) -> RowError {
    RowError {
        code: "E_REQUIRED",
        message: format!("{field} is required"),
    }
}

fn invalid(message: String) -> RowError {
    RowError {
        code: "E_INVALID",
        message,
    }
}

/// Longest `order_no` accepted.
pub(crate) const MAX_ORDER_NO_LEN: usize = 64;
/// Most lines in one row.
pub(crate) const MAX_DETAILS: usize = 500;

/// The `order_no` of a row, if it has a usable one.
pub(crate) fn order_no_of(row: &Value) -> Option<&str> {
    row.get("order_no")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Every problem of a registration row; empty when the row is valid.
pub(crate) fn validate_row(row: &Value) -> Vec<RowError> {
    let mut errors = Vec::new();
    let Some(obj) = row.as_object() else {
        errors.push(invalid("a row must be a JSON object".to_owned()));
        return errors;
    };
    match obj.get("order_no") {
        None | Some(Value::Null) => errors.push(required("order_no")),
        Some(Value::String(s)) if s.trim().is_empty() => errors.push(required("order_no")),
        Some(Value::String(s)) => {
            if s.chars().count() > MAX_ORDER_NO_LEN {
                errors.push(invalid(format!(
                    "order_no must be at most {MAX_ORDER_NO_LEN} characters"
                )));
            }
            if s.chars().any(char::is_control) {
                errors.push(invalid(
                    "order_no must not contain control characters".to_owned(),
                ));
            }
        }
        Some(_) => errors.push(invalid("order_no must be a string".to_owned())),
    }
    for field in [
        "robot_id",
        "shipper_id",
        "delivery_method_id",
        "payment_method_id",
    ] {
        positive_id(obj, field, true, &mut errors);
    }
    positive_id(obj, "delivery_company_id", false, &mut errors);
    match obj.get("order_date") {
        None | Some(Value::Null) => errors.push(required("order_date")),
        Some(Value::String(s)) if DateTime::parse_from_rfc3339(s).is_ok() => {}
        Some(_) => errors.push(invalid(
            "order_date must be an RFC 3339 date-time with offset, e.g. 2026-11-28T09:58:00+09:00"
                .to_owned(),
        )),
    }
    party(obj, "orderer", &["kana", "address2", "email"], &mut errors);
    party(
        obj,
        "shipping",
        &["kana", "address2", "delivery_time"],
        &mut errors,
    );
    if let Some(Value::Object(shipping)) = obj.get("shipping") {
        match shipping.get("delivery_date") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() => {}
            Some(_) => errors.push(invalid(
                "shipping.delivery_date must be a date YYYY-MM-DD".to_owned(),
            )),
        }
    }
    for field in [
        "product_total",
        "shipping_fee",
        "cod_fee",
        "discount",
        "tax_total",
        "pay_total",
    ] {
        amount(obj, field, field, &mut errors);
    }
    optional_string(obj, "note", "note", &mut errors);
    free_fields(obj, "free_fields", &mut errors);
    match obj.get("details") {
        None | Some(Value::Null) => errors.push(required("details")),
        Some(Value::Array(lines)) if lines.is_empty() => {
            errors.push(invalid("details must have at least one line".to_owned()))
        }
        Some(Value::Array(lines)) if lines.len() > MAX_DETAILS => errors.push(invalid(format!(
            "details must have at most {MAX_DETAILS} lines"
        ))),
        Some(Value::Array(lines)) => {
            for (i, line) in lines.iter().enumerate() {
                let prefix = format!("details[{i}]");
                let Some(line) = line.as_object() else {
                    errors.push(invalid(format!("{prefix} must be an object")));
                    continue;
                };
                for field in ["sku", "name"] {
                    required_string(line, field, &format!("{prefix}.{field}"), &mut errors);
                }
                match line.get("quantity") {
                    None | Some(Value::Null) => {
                        errors.push(required(&format!("{prefix}.quantity")))
                    }
                    Some(v) => match v.as_i64() {
                        Some(q) if q > 0 => {}
                        _ => errors.push(invalid(format!(
                            "{prefix}.quantity must be a positive integer"
                        ))),
                    },
                }
                amount(
                    line,
                    "unit_price",
                    &format!("{prefix}.unit_price"),
                    &mut errors,
                );
                free_fields(line, &format!("{prefix}.free_fields"), &mut errors);
            }
        }
        Some(_) => errors.push(invalid("details must be a list".to_owned())),
    }
    lone_cr(row, "", &mut errors);
    errors
}

fn positive_id(obj: &Map<String, Value>, field: &str, needed: bool, errors: &mut Vec<RowError>) {
    match obj.get(field) {
        None | Some(Value::Null) => {
            if needed {
                errors.push(required(field));
            }
        }
        Some(v) => match v.as_i64() {
            Some(id) if id > 0 => {}
            _ => errors.push(invalid(format!("{field} must be a positive integer id"))),
        },
    }
}

fn amount(obj: &Map<String, Value>, field: &str, path: &str, errors: &mut Vec<RowError>) {
    match obj.get(field) {
        None | Some(Value::Null) => errors.push(required(path)),
        Some(v) => match v.as_i64() {
            Some(n) if n >= 0 => {}
            _ => errors.push(invalid(format!("{path} must be an integer ≥ 0 (yen)"))),
        },
    }
}

fn required_string(obj: &Map<String, Value>, field: &str, path: &str, errors: &mut Vec<RowError>) {
    match obj.get(field) {
        None | Some(Value::Null) => errors.push(required(path)),
        Some(Value::String(s)) if s.trim().is_empty() => errors.push(required(path)),
        Some(Value::String(_)) => {}
        Some(_) => errors.push(invalid(format!("{path} must be a string"))),
    }
}

fn optional_string(obj: &Map<String, Value>, field: &str, path: &str, errors: &mut Vec<RowError>) {
    match obj.get(field) {
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(_) => errors.push(invalid(format!("{path} must be a string"))),
    }
}

fn party(obj: &Map<String, Value>, name: &str, optional: &[&str], errors: &mut Vec<RowError>) {
    match obj.get(name) {
        None | Some(Value::Null) => errors.push(required(name)),
        Some(Value::Object(p)) => {
            for field in ["name", "zip", "pref", "address1", "tel"] {
                required_string(p, field, &format!("{name}.{field}"), errors);
            }
            for field in optional {
                optional_string(p, field, &format!("{name}.{field}"), errors);
            }
        }
        Some(_) => errors.push(invalid(format!("{name} must be an object"))),
    }
}

fn free_fields(obj: &Map<String, Value>, path: &str, errors: &mut Vec<RowError>) {
    let field = path.rsplit('.').next().unwrap_or(path);
    match obj.get(field) {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let ok_name = k
                    .strip_prefix("free")
                    .and_then(|n| n.parse::<u8>().ok())
                    .is_some_and(|n| (1..=10).contains(&n) && k == &format!("free{n}"));
                if !ok_name {
                    errors.push(invalid(format!(
                        "{path}.{k} is not a free field (free1 … free10)"
                    )));
                } else if !(v.is_string() || v.is_null()) {
                    errors.push(invalid(format!("{path}.{k} must be a string")));
                }
            }
        }
        Some(_) => errors.push(invalid(format!("{path} must be an object"))),
    }
}

fn lone_cr(value: &Value, path: &str, errors: &mut Vec<RowError>) {
    match value {
        Value::String(s) => {
            let bytes = s.as_bytes();
            let lone = bytes
                .iter()
                .enumerate()
                .any(|(i, b)| *b == b'\r' && bytes.get(i + 1) != Some(&b'\n'));
            if lone {
                errors.push(invalid(format!(
                    "{path} contains a lone CR; line endings must be CRLF or LF"
                )));
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                lone_cr(v, &format!("{path}[{i}]"), errors);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                lone_cr(v, &p, errors);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn valid_row(order_no: &str) -> Value {
        json!({
            "order_no": order_no, "robot_id": 12, "shipper_id": 3, "delivery_method_id": 2,
            "payment_method_id": 7, "order_date": "2026-11-28T09:58:00+09:00",
            "orderer": {"name": "山田太郎", "zip": "1500001", "pref": "東京都", "address1": "渋谷区1-1", "tel": "0300000000"},
            "shipping": {"name": "山田太郎", "zip": "1500001", "pref": "東京都", "address1": "渋谷区1-1", "tel": "0300000000",
                         "delivery_date": "2026-11-30", "delivery_time": "14-16"},
            "product_total": 5400, "shipping_fee": 600, "cod_fee": 0, "discount": 0, "tax_total": 545, "pay_total": 6000,
            "note": "line1\r\nline2\nline3",
            "free_fields": {"free1": "a", "free10": "b"},
            "details": [{"sku": "SKU-1", "name": "Tea", "quantity": 2, "unit_price": 2700, "free_fields": {"free2": "x"}}]
        })
    }

    #[test]
    fn a_valid_row_passes() {
        assert_eq!(validate_row(&valid_row("A-1")), vec![]);
    }

    #[test]
    fn problems_are_reported_with_paths() {
        let mut row = valid_row("A-1");
        row["robot_id"] = json!(0);
        row["orderer"]
            .as_object_mut()
            .map(|o| o.remove("name"))
            .unwrap_or_default();
        row["details"][0]["quantity"] = json!(0);
        row["note"] = json!("bad\rline");
        row["free_fields"]["free11"] = json!("x");
        let messages: Vec<String> = validate_row(&row).into_iter().map(|e| e.message).collect();
        let all = messages.join(" | ");
        for needle in [
            "robot_id must be a positive integer id",
            "orderer.name is required",
            "details[0].quantity must be a positive integer",
            "note contains a lone CR",
            "free_fields.free11 is not a free field",
        ] {
            assert!(all.contains(needle), "{needle} missing in {all}");
        }
        assert_eq!(messages.len(), 5, "{all}");
    }

    #[test]
    fn missing_everything() {
        let errors = validate_row(&json!({}));
        assert!(
            errors
                .iter()
                .any(|e| e.code == "E_REQUIRED" && e.message == "order_no is required")
        );
        assert!(errors.iter().any(|e| e.message == "details is required"));
        assert!(!validate_row(&json!("x")).is_empty());
    }
}
