//! Bounds on every input (I5): an order snapshot is checked as a whole and every violation is
//! reported at once, with the path of the field (`order.lines[3].quantity`).

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use wmslink_platform::shop::{OrderNo, ShopId};
use wmslink_platform::validation::FieldViolations;
use wmslink_proto::orders::v1::{Address, Order};

pub use wmslink_platform::shop::MAX_ORDER_NO_LEN as MAX_ORDER_NO_CHARS;
pub const MAX_STATUS_CODE_CHARS: usize = 64;
pub const MAX_TEXT_CHARS: usize = 1_000;
pub const MAX_NOTE_CHARS: usize = 4_000;
pub const MAX_LINES: usize = 500;
pub const MAX_MAP_ENTRIES: usize = 50;
pub const MAX_MAP_KEY_CHARS: usize = 100;
pub const MAX_QUANTITY: i64 = 1_000_000;

/// Order numbers: the platform's one rule ([`OrderNo`]), the same in every service.
pub fn order_no_problem(value: &str) -> Option<String> {
    OrderNo::check(value).err().map(|err| err.to_string())
}

pub fn check_order_no(field: &str, value: &str, violations: &mut FieldViolations) {
    if let Some(problem) = order_no_problem(value) {
        violations.add(field, problem);
    }
}

/// Parses the shop id, recording a violation when it is not a valid one.
pub fn check_shop_id(field: &str, value: &str, violations: &mut FieldViolations) -> Option<ShopId> {
    match ShopId::parse(value) {
        Ok(shop) => Some(shop),
        Err(err) => {
            violations.add(field, err.to_string());
            None
        }
    }
}

pub fn check_status_code(field: &str, value: &str, violations: &mut FieldViolations) {
    if value.is_empty() {
        violations.add(field, "must not be empty");
    } else {
        check_text(field, value, MAX_STATUS_CODE_CHARS, violations);
    }
}

/// A free text: at most `max` characters and no control characters other than tab and newlines.
pub fn check_text(field: &str, value: &str, max: usize, violations: &mut FieldViolations) {
    if value.chars().count() > max {
        violations.add(field, format!("must be at most {max} characters"));
    }
    if value
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        violations.add(field, "must not contain control characters");
    }
}

fn check_map(field: &str, map: &HashMap<String, String>, violations: &mut FieldViolations) {
    if map.len() > MAX_MAP_ENTRIES {
        violations.add(
            field,
            format!(
                "must have at most {MAX_MAP_ENTRIES} entries (has {})",
                map.len()
            ),
        );
        return;
    }
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    for key in keys {
        let entry = format!("{field}[{key:?}]");
        if key.is_empty() {
            violations.add(field, "keys must not be empty");
        } else {
            check_text(&format!("{entry}.key"), key, MAX_MAP_KEY_CHARS, violations);
        }
        if let Some(value) = map.get(key) {
            check_text(&entry, value, MAX_TEXT_CHARS, violations);
        }
    }
}

fn check_address(field: &str, address: &Address, violations: &mut FieldViolations) {
    for (name, value) in [
        ("name", &address.name),
        ("kana", &address.kana),
        ("zip", &address.zip),
        ("prefecture", &address.prefecture),
        ("address1", &address.address1),
        ("address2", &address.address2),
        ("phone", &address.phone),
        ("email", &address.email),
    ] {
        check_text(
            &format!("{field}.{name}"),
            value,
            MAX_TEXT_CHARS,
            violations,
        );
    }
}

pub use wmslink_proto::from_timestamp as to_datetime;

/// Earliest and latest accepted order dates (the PostgreSQL and protobuf ranges both hold them).
fn order_date_in_range(date: &DateTime<Utc>) -> bool {
    let year = chrono::Datelike::year(date);
    (1970..=9999).contains(&year)
}

pub fn check_timestamp(
    field: &str,
    ts: Option<&prost_types::Timestamp>,
    required: bool,
    violations: &mut FieldViolations,
) -> Option<DateTime<Utc>> {
    match ts {
        None if required => {
            violations.add(field, "must be set");
            None
        }
        None => None,
        Some(ts) => match to_datetime(ts) {
            Some(date) if order_date_in_range(&date) => Some(date),
            _ => {
                violations.add(
                    field,
                    "must be a valid time between the years 1970 and 9999",
                );
                None
            }
        },
    }
}

/// Checks a whole order snapshot; `field` is the prefix of every path (`order`).
pub fn check_order(
    field: &str,
    order: &Order,
    encoded_len: usize,
    max_bytes: usize,
    violations: &mut FieldViolations,
) {
    if encoded_len > max_bytes {
        violations.add(
            field,
            format!("is {encoded_len} bytes encoded; at most {max_bytes} are accepted"),
        );
    }
    check_shop_id(&format!("{field}.shop_id"), &order.shop_id, violations);
    check_order_no(&format!("{field}.order_no"), &order.order_no, violations);
    if order.revision < 1 {
        violations.add(format!("{field}.revision"), "must be at least 1");
    }
    check_timestamp(
        &format!("{field}.order_date"),
        order.order_date.as_ref(),
        true,
        violations,
    );
    check_status_code(
        &format!("{field}.status_code"),
        &order.status_code,
        violations,
    );
    check_text(
        &format!("{field}.payment_method_code"),
        &order.payment_method_code,
        MAX_STATUS_CODE_CHARS,
        violations,
    );
    if let Some(orderer) = &order.orderer {
        check_address(&format!("{field}.orderer"), orderer, violations);
    }
    if let Some(shipping) = &order.shipping {
        check_address(&format!("{field}.shipping"), shipping, violations);
    }
    if !order.delivery_date.is_empty()
        && NaiveDate::parse_from_str(&order.delivery_date, "%Y-%m-%d").is_err()
    {
        violations.add(
            format!("{field}.delivery_date"),
            "must be an ISO date (YYYY-MM-DD) or empty",
        );
    }
    check_text(
        &format!("{field}.delivery_time"),
        &order.delivery_time,
        MAX_TEXT_CHARS,
        violations,
    );
    if let Some(amounts) = &order.amounts {
        for (name, value) in [
            ("products", amounts.products),
            ("shipping_fee", amounts.shipping_fee),
            ("cod_fee", amounts.cod_fee),
            ("discount", amounts.discount),
            ("tax", amounts.tax),
            ("total", amounts.total),
        ] {
            if value < 0 {
                violations.add(format!("{field}.amounts.{name}"), "must not be negative");
            }
        }
    }
    check_text(
        &format!("{field}.note"),
        &order.note,
        MAX_NOTE_CHARS,
        violations,
    );
    if order.lines.len() > MAX_LINES {
        violations.add(
            format!("{field}.lines"),
            format!(
                "must have at most {MAX_LINES} lines (has {})",
                order.lines.len()
            ),
        );
    } else {
        for (index, line) in order.lines.iter().enumerate() {
            let path = format!("{field}.lines[{index}]");
            if line.sku.is_empty() {
                violations.add(format!("{path}.sku"), "must not be empty");
            } else {
                check_text(
                    &format!("{path}.sku"),
                    &line.sku,
                    MAX_TEXT_CHARS,
                    violations,
                );
            }
            check_text(
                &format!("{path}.name"),
                &line.name,
                MAX_TEXT_CHARS,
                violations,
            );
            if !(1..=MAX_QUANTITY).contains(&line.quantity) {
                violations.add(
                    format!("{path}.quantity"),
                    format!("must be between 1 and {MAX_QUANTITY}"),
                );
            }
            if line.unit_price < 0 {
                violations.add(format!("{path}.unit_price"), "must not be negative");
            }
            check_map(&format!("{path}.options"), &line.options, violations);
        }
    }
    check_map(&format!("{field}.extra"), &order.extra, violations);
}

#[cfg(test)]
mod tests {
    use super::*;
    use wmslink_proto::orders::v1::{Amounts, LineItem};

    fn good() -> Order {
        Order {
            shop_id: "shop-1".into(),
            order_no: "A-1001".into(),
            revision: 1,
            order_date: Some(prost_types::Timestamp {
                seconds: 1_770_000_000,
                nanos: 0,
            }),
            status_code: "new".into(),
            delivery_date: "2026-05-03".into(),
            amounts: Some(Amounts {
                total: 1000,
                ..Amounts::default()
            }),
            lines: vec![LineItem {
                sku: "SKU-1".into(),
                name: "T-shirt".into(),
                quantity: 1,
                unit_price: 1000,
                options: HashMap::new(),
            }],
            ..Order::default()
        }
    }

    fn violations(order: &Order) -> Vec<String> {
        let mut violations = FieldViolations::new();
        check_order("order", order, 100, 1024, &mut violations);
        violations
            .iter()
            .map(|(field, _)| field.to_owned())
            .collect()
    }

    #[test]
    fn a_good_order_passes() {
        assert!(violations(&good()).is_empty());
    }

    #[test]
    fn every_bad_field_is_listed_at_once() {
        let mut order = good();
        order.shop_id = "a.b".into();
        order.order_no = "A 1".into();
        order.revision = 0;
        order.order_date = None;
        order.status_code = String::new();
        order.delivery_date = "3 May".into();
        order.note = "x".repeat(MAX_NOTE_CHARS + 1);
        order.amounts = Some(Amounts {
            discount: -1,
            ..Amounts::default()
        });
        order.lines[0].quantity = 0;
        order.lines[0].unit_price = -5;
        order.lines[0].sku = String::new();
        order.extra.insert("k".into(), "v\0".into());
        assert_eq!(
            violations(&order),
            vec![
                "order.shop_id",
                "order.order_no",
                "order.revision",
                "order.order_date",
                "order.status_code",
                "order.delivery_date",
                "order.amounts.discount",
                "order.note",
                "order.lines[0].sku",
                "order.lines[0].quantity",
                "order.lines[0].unit_price",
                "order.extra[\"k\"]",
            ]
        );
    }

    #[test]
    fn sizes_and_counts_are_bounded() {
        let mut order = good();
        order.order_no = "A".repeat(MAX_ORDER_NO_CHARS + 1);
        order.lines = vec![order.lines[0].clone(); MAX_LINES + 1];
        order.extra = (0..=MAX_MAP_ENTRIES)
            .map(|i| (format!("k{i}"), "v".into()))
            .collect();
        order.status_code = "s".repeat(MAX_STATUS_CODE_CHARS + 1);
        let mut found = FieldViolations::new();
        check_order("order", &order, 2048, 1024, &mut found);
        let fields: Vec<&str> = found.iter().map(|(field, _)| field).collect();
        assert_eq!(
            fields,
            vec![
                "order",
                "order.order_no",
                "order.status_code",
                "order.lines",
                "order.extra"
            ]
        );
    }

    #[test]
    fn limits_count_characters_not_bytes() {
        let mut order = good();
        // 1,000 Japanese characters are 3,000 bytes of UTF-8 and still fine.
        order.lines[0].name = "あ".repeat(MAX_TEXT_CHARS);
        assert!(violations(&order).is_empty());
        order.lines[0].name.push('あ');
        assert_eq!(violations(&order), vec!["order.lines[0].name"]);
    }

    #[test]
    fn order_numbers_use_a_safe_charset() {
        assert!(order_no_problem("2026-0001_a.b").is_none());
        for bad in ["", "a b", "a/b", "注文1", "a*", "a>"] {
            assert!(order_no_problem(bad).is_some(), "{bad:?} accepted");
        }
    }

    #[test]
    fn timestamps_must_be_valid() {
        let mut order = good();
        order.order_date = Some(prost_types::Timestamp {
            seconds: 0,
            nanos: 1_000_000_000,
        });
        assert_eq!(violations(&order), vec!["order.order_date"]);
        order.order_date = Some(prost_types::Timestamp {
            seconds: -1,
            nanos: 0,
        });
        assert_eq!(violations(&order), vec!["order.order_date"]);
    }
}
