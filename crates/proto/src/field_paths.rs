//! Cart field paths that a WMS free field (S3 ⑫ ⑬, `free1`…`free10`) can be filled from.
//!
//! Shared by the settings service (which validates the mappings a shop registers) and the
//! shipment dispatcher (which reads the values out of an order when it builds WMS rows), so
//! both always agree on the list.
//!
//! **Header paths** (an [`Order`](crate::orders::v1::Order)):
//!
//! | path | value |
//! | --- | --- |
//! | `order_no`, `status_code`, `payment_method_code`, `note` | the string as is |
//! | `order_date` | RFC 3339 in JST, e.g. `2026-11-28T09:58:00+09:00` (empty when unset) |
//! | `delivery_date`, `delivery_time` | the string as is |
//! | `orderer.<f>`, `shipping.<f>` with `<f>` one of `name`, `kana`, `zip`, `prefecture`, `address1`, `address2`, `phone`, `email` | the address field (empty when the address is absent) |
//! | `amounts.<a>` with `<a>` one of `products`, `shipping_fee`, `cod_fee`, `discount`, `tax`, `total` | decimal integer (yen) |
//! | `extra.<key>` | the cart's extra field `<key>` (empty when absent) |
//!
//! **Line paths** (a [`LineItem`](crate::orders::v1::LineItem)): `sku`, `name`, `quantity`,
//! `unit_price` (decimal integers for the last two), `options.<key>`.
//!
//! A `<key>` is 1 to [`MAX_KEY_LEN`] characters of `A-Z a-z 0-9 _ - .`.

use crate::orders::v1::{Address, LineItem, Order};

/// Every fixed header path (without the `extra.<key>` family).
pub const HEADER_FIELDS: &[&str] = &[
    "order_no",
    "order_date",
    "status_code",
    "payment_method_code",
    "note",
    "delivery_date",
    "delivery_time",
    "orderer.name",
    "orderer.kana",
    "orderer.zip",
    "orderer.prefecture",
    "orderer.address1",
    "orderer.address2",
    "orderer.phone",
    "orderer.email",
    "shipping.name",
    "shipping.kana",
    "shipping.zip",
    "shipping.prefecture",
    "shipping.address1",
    "shipping.address2",
    "shipping.phone",
    "shipping.email",
    "amounts.products",
    "amounts.shipping_fee",
    "amounts.cod_fee",
    "amounts.discount",
    "amounts.tax",
    "amounts.total",
];

/// The header family `extra.<key>` (the order's `extra` map).
pub const HEADER_MAP_PREFIX: &str = "extra.";

/// Every fixed line path (without the `options.<key>` family).
pub const LINE_FIELDS: &[&str] = &["sku", "name", "quantity", "unit_price"];

/// The line family `options.<key>` (the line's `options` map).
pub const LINE_MAP_PREFIX: &str = "options.";

/// Longest `<key>` of `extra.<key>` / `options.<key>`.
pub const MAX_KEY_LEN: usize = 64;

/// Why a path is not on the list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldPathError {
    #[error("must not be empty")]
    Empty,
    #[error("unknown cart field '{path}'; allowed: {allowed}")]
    Unknown { path: String, allowed: String },
    #[error(
        "'{path}': the key after '{prefix}' must be 1 to {MAX_KEY_LEN} characters of letters, digits, '_', '-' and '.'"
    )]
    BadKey { path: String, prefix: &'static str },
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn check(path: &str, fixed: &[&str], prefix: &'static str) -> Result<(), FieldPathError> {
    if path.is_empty() {
        return Err(FieldPathError::Empty);
    }
    if fixed.contains(&path) {
        return Ok(());
    }
    if let Some(key) = path.strip_prefix(prefix) {
        return if valid_key(key) {
            Ok(())
        } else {
            Err(FieldPathError::BadKey {
                path: path.to_owned(),
                prefix,
            })
        };
    }
    Err(FieldPathError::Unknown {
        path: shorten(path),
        allowed: format!("{}, {prefix}<key>", fixed.join(", ")),
    })
}

/// Keeps error messages bounded when a caller sends a huge path.
fn shorten(path: &str) -> String {
    const MAX: usize = 80;
    if path.chars().count() <= MAX {
        path.to_owned()
    } else {
        let head: String = path.chars().take(MAX).collect();
        format!("{head}…")
    }
}

/// Checks a header-level path (S3 ⑫).
pub fn validate_header_path(path: &str) -> Result<(), FieldPathError> {
    check(path, HEADER_FIELDS, HEADER_MAP_PREFIX)
}

/// Checks a line-level path (S3 ⑬).
pub fn validate_line_path(path: &str) -> Result<(), FieldPathError> {
    check(path, LINE_FIELDS, LINE_MAP_PREFIX)
}

fn address_field(address: Option<&Address>, field: &str) -> Option<String> {
    let empty = Address::default();
    let address = address.unwrap_or(&empty);
    let value = match field {
        "name" => &address.name,
        "kana" => &address.kana,
        "zip" => &address.zip,
        "prefecture" => &address.prefecture,
        "address1" => &address.address1,
        "address2" => &address.address2,
        "phone" => &address.phone,
        "email" => &address.email,
        _ => return None,
    };
    Some(value.clone())
}

/// The value of a header path in `order`; `None` when the path is not on the list.
/// Absent optional parts (an address, an `extra` key) give an empty string.
pub fn header_value(order: &Order, path: &str) -> Option<String> {
    if let Some(key) = path.strip_prefix(HEADER_MAP_PREFIX) {
        return valid_key(key).then(|| order.extra.get(key).cloned().unwrap_or_default());
    }
    if let Some(field) = path.strip_prefix("orderer.") {
        return address_field(order.orderer.as_ref(), field);
    }
    if let Some(field) = path.strip_prefix("shipping.") {
        return address_field(order.shipping.as_ref(), field);
    }
    if let Some(field) = path.strip_prefix("amounts.") {
        let amounts = order.amounts.unwrap_or_default();
        let value = match field {
            "products" => amounts.products,
            "shipping_fee" => amounts.shipping_fee,
            "cod_fee" => amounts.cod_fee,
            "discount" => amounts.discount,
            "tax" => amounts.tax,
            "total" => amounts.total,
            _ => return None,
        };
        return Some(value.to_string());
    }
    let value = match path {
        "order_no" => order.order_no.clone(),
        "order_date" => order
            .order_date
            .as_ref()
            .map(rfc3339_jst)
            .unwrap_or_default(),
        "status_code" => order.status_code.clone(),
        "payment_method_code" => order.payment_method_code.clone(),
        "note" => order.note.clone(),
        "delivery_date" => order.delivery_date.clone(),
        "delivery_time" => order.delivery_time.clone(),
        _ => return None,
    };
    Some(value)
}

/// The value of a line path in `line`; `None` when the path is not on the list.
pub fn line_value(line: &LineItem, path: &str) -> Option<String> {
    if let Some(key) = path.strip_prefix(LINE_MAP_PREFIX) {
        return valid_key(key).then(|| line.options.get(key).cloned().unwrap_or_default());
    }
    let value = match path {
        "sku" => line.sku.clone(),
        "name" => line.name.clone(),
        "quantity" => line.quantity.to_string(),
        "unit_price" => line.unit_price.to_string(),
        _ => return None,
    };
    Some(value)
}

/// `2026-11-28T09:58:00+09:00`: the WMS's own time zone (JST, no daylight saving); empty for
/// an invalid timestamp.
fn rfc3339_jst(timestamp: &prost_types::Timestamp) -> String {
    let Some(jst) = chrono::FixedOffset::east_opt(9 * 3600) else {
        return String::new();
    };
    crate::from_timestamp(timestamp)
        .map(|at| {
            at.with_timezone(&jst)
                .format("%Y-%m-%dT%H:%M:%S%:z")
                .to_string()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::v1::Amounts;

    #[test]
    fn accepts_listed_paths_and_families() {
        for path in HEADER_FIELDS {
            assert_eq!(validate_header_path(path), Ok(()), "{path}");
            assert!(
                validate_line_path(path).is_err(),
                "{path} is not a line path"
            );
        }
        for path in LINE_FIELDS {
            assert_eq!(validate_line_path(path), Ok(()), "{path}");
        }
        assert_eq!(validate_header_path("extra.gift-msg_1.x"), Ok(()));
        assert_eq!(validate_line_path("options.color"), Ok(()));
    }

    #[test]
    fn refuses_unknown_paths_and_bad_keys() {
        assert_eq!(validate_header_path(""), Err(FieldPathError::Empty));
        assert!(matches!(
            validate_header_path("orderer.fax"),
            Err(FieldPathError::Unknown { .. })
        ));
        assert!(matches!(
            validate_header_path("sku"),
            Err(FieldPathError::Unknown { .. })
        ));
        assert!(matches!(
            validate_line_path("order_no"),
            Err(FieldPathError::Unknown { .. })
        ));
        assert!(matches!(
            validate_header_path("extra."),
            Err(FieldPathError::BadKey { .. })
        ));
        assert!(matches!(
            validate_line_path("options.a b"),
            Err(FieldPathError::BadKey { .. })
        ));
        let long = format!("extra.{}", "k".repeat(MAX_KEY_LEN + 1));
        assert!(matches!(
            validate_header_path(&long),
            Err(FieldPathError::BadKey { .. })
        ));
    }

    #[test]
    fn every_valid_path_has_a_value() {
        let order = Order::default();
        for path in HEADER_FIELDS {
            assert!(header_value(&order, path).is_some(), "{path}");
        }
        let line = LineItem::default();
        for path in LINE_FIELDS {
            assert!(line_value(&line, path).is_some(), "{path}");
        }
        assert_eq!(header_value(&order, "nope"), None);
        assert_eq!(line_value(&line, "nope"), None);
    }

    #[test]
    fn reads_values_out_of_an_order() {
        let mut order = Order {
            order_no: "S1-1".into(),
            order_date: Some(prost_types::Timestamp {
                // 2026-11-28T00:58:00Z
                seconds: 1_795_827_480,
                nanos: 0,
            }),
            shipping: Some(Address {
                name: "山田".into(),
                ..Address::default()
            }),
            amounts: Some(Amounts {
                total: 6000,
                ..Amounts::default()
            }),
            ..Order::default()
        };
        order.extra.insert("gift".into(), "yes".into());
        assert_eq!(header_value(&order, "order_no").as_deref(), Some("S1-1"));
        assert_eq!(
            header_value(&order, "order_date").as_deref(),
            Some("2026-11-28T09:58:00+09:00")
        );
        assert_eq!(
            header_value(&order, "shipping.name").as_deref(),
            Some("山田")
        );
        assert_eq!(header_value(&order, "orderer.name").as_deref(), Some(""));
        assert_eq!(
            header_value(&order, "amounts.total").as_deref(),
            Some("6000")
        );
        assert_eq!(header_value(&order, "extra.gift").as_deref(), Some("yes"));
        assert_eq!(header_value(&order, "extra.none").as_deref(), Some(""));

        let mut line = LineItem {
            sku: "A-1".into(),
            quantity: 2,
            unit_price: 2700,
            ..LineItem::default()
        };
        line.options.insert("color".into(), "red".into());
        assert_eq!(line_value(&line, "quantity").as_deref(), Some("2"));
        assert_eq!(line_value(&line, "unit_price").as_deref(), Some("2700"));
        assert_eq!(line_value(&line, "options.color").as_deref(), Some("red"));
    }

    #[test]
    fn order_dates_are_written_in_jst() {
        let at = |seconds| prost_types::Timestamp { seconds, nanos: 0 };
        assert_eq!(rfc3339_jst(&at(0)), "1970-01-01T09:00:00+09:00");
        assert_eq!(rfc3339_jst(&at(-9 * 3600 - 1)), "1969-12-31T23:59:59+09:00");
        assert_eq!(rfc3339_jst(&at(1_772_290_800)), "2026-03-01T00:00:00+09:00");
    }
}
