//! Building the COMMERCE ROBO shipment-instruction row (the `POST /order/` row of `wms-api.md`)
//! from an order snapshot and the shop's mappings (S3 ⑥–⑬). Pure: an order that cannot be
//! built gets a [`BuildError`] naming everything that is missing, so it can go to `ERROR`
//! before any WMS call.

use chrono::NaiveDate;
use wmslink_proto::field_paths;
use wmslink_proto::orders::v1::{Address, LineItem, Order};
use wmslink_proto::settings::v1::{DetailSettings, FreeFieldMapping};

use super::types::{Detail, FreeFields, Orderer, ShipmentInstruction, Shipping, jst};
use crate::port::BuildError;

/// Builds the `POST /order/` row for `order` with the shop's `detail` settings.
pub fn build_row(
    order: &Order,
    detail: &DetailSettings,
) -> Result<ShipmentInstruction, BuildError> {
    let mut problems = Vec::new();

    for (value, what) in [
        (detail.robot_id, "conversion robot ID (⑨)"),
        (detail.shipper_id, "shipper ID (⑥)"),
        (detail.delivery_method_id, "delivery method ID (⑦)"),
    ] {
        if value <= 0 {
            problems.push(format!("{what} is not set in the shop's settings"));
        }
    }

    // ⑩ ⑪
    let payment = if order.payment_method_code.is_empty() {
        problems.push("the order has no payment method".to_owned());
        None
    } else {
        let found = detail
            .payment_mappings
            .iter()
            .find(|m| m.payment_method_code == order.payment_method_code);
        if found.is_none() {
            problems.push(format!(
                "payment method '{}' has no mapping to a WMS payment method ID (⑩)",
                order.payment_method_code
            ));
        }
        found
    };

    let order_date = match &order.order_date {
        None => {
            problems.push("the order has no order date".to_owned());
            None
        }
        Some(ts) => match wmslink_proto::from_timestamp(ts) {
            Some(at) => Some(at.with_timezone(&jst())),
            None => {
                problems.push("the order date is out of range".to_owned());
                None
            }
        },
    };

    let orderer = match &order.orderer {
        Some(address) => Some(orderer_of(address)),
        None => {
            problems.push("the order has no orderer".to_owned());
            None
        }
    };
    // Ship to the orderer when the cart gives no separate shipping address.
    let ship_to = order.shipping.as_ref().or(order.orderer.as_ref());
    let delivery_date = if order.delivery_date.is_empty() {
        None
    } else {
        match NaiveDate::parse_from_str(&order.delivery_date, "%Y-%m-%d") {
            Ok(date) => Some(date),
            Err(_) => {
                problems.push(format!(
                    "delivery date '{}' is not a date (YYYY-MM-DD)",
                    order.delivery_date
                ));
                None
            }
        }
    };
    let shipping = ship_to.map(|address| Shipping {
        name: address.name.clone(),
        kana: non_empty(&address.kana),
        zip: address.zip.clone(),
        pref: address.prefecture.clone(),
        address1: address.address1.clone(),
        address2: non_empty(&address.address2),
        tel: address.phone.clone(),
        delivery_date,
        delivery_time: non_empty(&order.delivery_time),
    });

    let amounts = order.amounts.unwrap_or_default();
    if order.amounts.is_none() {
        problems.push("the order has no amounts".to_owned());
    }

    // ⑫
    let header_free_fields = free_fields(
        &detail.header_free_fields,
        |path| header_field(order, path),
        "WMS free field",
        &mut problems,
    );

    // ⑬ and the lines.
    if order.lines.is_empty() {
        problems.push("the order has no lines".to_owned());
    }
    let details: Vec<Detail> = order
        .lines
        .iter()
        .enumerate()
        .map(|(index, line)| Detail {
            sku: line.sku.clone(),
            name: line.name.clone(),
            quantity: line.quantity,
            unit_price: line.unit_price,
            free_fields: free_fields(
                &detail.line_free_fields,
                |path| line_field(line, path),
                &format!(
                    "line {} (sku '{}') WMS free detail field",
                    index + 1,
                    line.sku
                ),
                &mut problems,
            ),
        })
        .collect();

    match (payment, order_date, orderer, shipping) {
        (Some(payment), Some(order_date), Some(orderer), Some(shipping)) if problems.is_empty() => {
            Ok(ShipmentInstruction {
                order_no: order.order_no.clone(),
                robot_id: detail.robot_id,
                shipper_id: detail.shipper_id,
                delivery_method_id: detail.delivery_method_id,
                delivery_company_id: (payment.delivery_company_id > 0)
                    .then_some(payment.delivery_company_id),
                payment_method_id: payment.wms_payment_method_id,
                order_date,
                orderer,
                shipping,
                product_total: amounts.products,
                shipping_fee: amounts.shipping_fee,
                cod_fee: amounts.cod_fee,
                discount: amounts.discount,
                tax_total: amounts.tax,
                pay_total: amounts.total,
                note: non_empty(&order.note),
                free_fields: header_free_fields,
                details,
            })
        }
        _ => Err(BuildError { problems }),
    }
}

fn orderer_of(address: &Address) -> Orderer {
    Orderer {
        name: address.name.clone(),
        kana: non_empty(&address.kana),
        zip: address.zip.clone(),
        pref: address.prefecture.clone(),
        address1: address.address1.clone(),
        address2: non_empty(&address.address2),
        tel: address.phone.clone(),
        email: non_empty(&address.email),
    }
}

fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

/// The value of a header path; `Err` when the path is unknown or names an `extra` key the
/// order does not have.
fn header_field(order: &Order, path: &str) -> Result<String, String> {
    if let Some(key) = path.strip_prefix(field_paths::HEADER_MAP_PREFIX)
        && !order.extra.contains_key(key)
    {
        return Err(format!("cart field '{path}' is missing in the order"));
    }
    field_paths::header_value(order, path).ok_or_else(|| format!("'{path}' is not a cart field"))
}

fn line_field(line: &LineItem, path: &str) -> Result<String, String> {
    if let Some(key) = path.strip_prefix(field_paths::LINE_MAP_PREFIX)
        && !line.options.contains_key(key)
    {
        return Err(format!("cart field '{path}' is missing in the line"));
    }
    field_paths::line_value(line, path).ok_or_else(|| format!("'{path}' is not a cart line field"))
}

fn free_fields(
    mappings: &[FreeFieldMapping],
    mut value_of: impl FnMut(&str) -> Result<String, String>,
    what: &str,
    problems: &mut Vec<String>,
) -> FreeFields {
    let mut fields = FreeFields::new();
    for mapping in mappings {
        let slot = u8::try_from(mapping.slot)
            .ok()
            .filter(|s| (1..=10).contains(s));
        let Some(slot) = slot else {
            problems.push(format!("{what} slot {} is not 1..=10", mapping.slot));
            continue;
        };
        match value_of(&mapping.cart_field) {
            // Nothing to send for an empty value; the WMS keeps the field empty.
            Ok(value) if value.is_empty() => {}
            Ok(value) => {
                if let Err(err) = fields.set(slot, value) {
                    problems.push(format!("{what} free{slot}: {err}"));
                }
            }
            Err(why) => problems.push(format!("{what} free{slot}: {why}")),
        }
    }
    fields
}

/// A one-line summary of a row for the history (no personal data beyond the order number).
pub fn summarize(row: &ShipmentInstruction) -> String {
    let free: Vec<String> = row
        .free_fields
        .iter()
        .map(|(n, _)| format!("free{n}"))
        .collect();
    let line_free: usize = row
        .details
        .iter()
        .map(|d| d.free_fields.iter().count())
        .sum();
    format!(
        "order_no {} robot_id {} shipper_id {} delivery_method_id {} payment_method_id {} delivery_company_id {} order_date {} lines {} pay_total {} free fields [{}] line free fields {}",
        row.order_no,
        row.robot_id,
        row.shipper_id,
        row.delivery_method_id,
        row.payment_method_id,
        row.delivery_company_id
            .map_or_else(|| "-".to_owned(), |id| id.to_string()),
        row.order_date.to_rfc3339(),
        row.details.len(),
        row.pay_total,
        free.join(","),
        line_free,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use wmslink_proto::orders::v1::Amounts;
    use wmslink_proto::settings::v1::PaymentMapping;

    fn address(name: &str) -> Address {
        Address {
            name: name.into(),
            kana: format!("{name}カナ"),
            zip: "100-0001".into(),
            prefecture: "東京都".into(),
            address1: "千代田区1-1".into(),
            address2: String::new(),
            phone: "03-0000-0000".into(),
            email: "a@example.com".into(),
        }
    }

    fn order() -> Order {
        let mut order = Order {
            shop_id: "shop".into(),
            order_no: "S1-1".into(),
            revision: 3,
            order_date: Some(prost_types::Timestamp {
                seconds: 1_795_827_480, // 2026-11-28T00:58:00Z
                nanos: 0,
            }),
            status_code: "ship".into(),
            payment_method_code: "cod".into(),
            orderer: Some(address("注文者")),
            shipping: Some(address("配送先")),
            delivery_date: "2026-11-30".into(),
            delivery_time: "14-16".into(),
            amounts: Some(Amounts {
                products: 5400,
                shipping_fee: 600,
                cod_fee: 330,
                discount: 100,
                tax: 545,
                total: 6230,
            }),
            note: "置き配".into(),
            lines: vec![
                LineItem {
                    sku: "A-1".into(),
                    name: "Tシャツ".into(),
                    quantity: 2,
                    unit_price: 2700,
                    options: [("color".to_owned(), "red".to_owned())].into(),
                },
                LineItem {
                    sku: "B-2".into(),
                    name: "靴下".into(),
                    quantity: 1,
                    unit_price: 0,
                    options: [("color".to_owned(), "blue".to_owned())].into(),
                },
            ],
            extra: [("gift_message".to_owned(), "おめでとう".to_owned())].into(),
        };
        order.extra.insert("campaign".into(), "BF".into());
        order
    }

    fn detail() -> DetailSettings {
        DetailSettings {
            robot_id: 12,
            shipper_id: 3,
            delivery_method_id: 2,
            payment_mappings: vec![
                PaymentMapping {
                    payment_method_code: "card".into(),
                    wms_payment_method_id: 1,
                    delivery_company_id: 0,
                },
                PaymentMapping {
                    payment_method_code: "cod".into(),
                    wms_payment_method_id: 7,
                    delivery_company_id: 5,
                },
            ],
            header_free_fields: vec![
                FreeFieldMapping {
                    slot: 1,
                    cart_field: "extra.gift_message".into(),
                },
                FreeFieldMapping {
                    slot: 3,
                    cart_field: "orderer.email".into(),
                },
                FreeFieldMapping {
                    slot: 10,
                    cart_field: "amounts.total".into(),
                },
            ],
            line_free_fields: vec![FreeFieldMapping {
                slot: 2,
                cart_field: "options.color".into(),
            }],
            ..DetailSettings::default()
        }
    }

    #[test]
    fn ids_robot_shipper_and_delivery_method_come_from_settings() {
        let row = build_row(&order(), &detail()).expect("builds");
        assert_eq!(row.order_no, "S1-1");
        assert_eq!(row.robot_id, 12);
        assert_eq!(row.shipper_id, 3);
        assert_eq!(row.delivery_method_id, 2);
    }

    #[test]
    fn payment_method_maps_with_its_delivery_company() {
        let row = build_row(&order(), &detail()).expect("builds");
        assert_eq!(row.payment_method_id, 7);
        assert_eq!(row.delivery_company_id, Some(5));
        let card = Order {
            payment_method_code: "card".into(),
            ..order()
        };
        let row = build_row(&card, &detail()).expect("builds");
        assert_eq!(row.payment_method_id, 1);
        assert_eq!(row.delivery_company_id, None, "0 means no override");
    }

    #[test]
    fn header_free_fields_come_from_their_cart_fields() {
        let row = build_row(&order(), &detail()).expect("builds");
        assert_eq!(row.free_fields.get(1), Some("おめでとう"));
        assert_eq!(row.free_fields.get(3), Some("a@example.com"));
        assert_eq!(row.free_fields.get(10), Some("6230"));
        assert_eq!(row.free_fields.get(2), None);
    }

    #[test]
    fn line_free_fields_come_from_each_line() {
        let row = build_row(&order(), &detail()).expect("builds");
        assert_eq!(row.details.len(), 2);
        assert_eq!(row.details[0].free_fields.get(2), Some("red"));
        assert_eq!(row.details[1].free_fields.get(2), Some("blue"));
        assert_eq!(row.details[0].sku, "A-1");
        assert_eq!(row.details[0].name, "Tシャツ");
        assert_eq!(row.details[0].quantity, 2);
        assert_eq!(row.details[0].unit_price, 2700);
    }

    #[test]
    fn addresses_amounts_dates_and_note_are_carried() {
        let row = build_row(&order(), &detail()).expect("builds");
        assert_eq!(row.orderer.name, "注文者");
        assert_eq!(row.orderer.kana.as_deref(), Some("注文者カナ"));
        assert_eq!(row.orderer.pref, "東京都");
        assert_eq!(row.orderer.tel, "03-0000-0000");
        assert_eq!(row.orderer.email.as_deref(), Some("a@example.com"));
        assert_eq!(row.orderer.address2, None);
        assert_eq!(row.shipping.name, "配送先");
        assert_eq!(
            row.shipping.delivery_date,
            NaiveDate::from_ymd_opt(2026, 11, 30)
        );
        assert_eq!(row.shipping.delivery_time.as_deref(), Some("14-16"));
        assert_eq!(
            (
                row.product_total,
                row.shipping_fee,
                row.cod_fee,
                row.discount,
                row.tax_total,
                row.pay_total
            ),
            (5400, 600, 330, 100, 545, 6230)
        );
        assert_eq!(row.order_date.to_rfc3339(), "2026-11-28T09:58:00+09:00");
        assert_eq!(row.note.as_deref(), Some("置き配"));
    }

    #[test]
    fn ships_to_the_orderer_without_a_shipping_address() {
        let no_shipping = Order {
            shipping: None,
            ..order()
        };
        let row = build_row(&no_shipping, &detail()).expect("builds");
        assert_eq!(row.shipping.name, "注文者");
    }

    #[test]
    fn a_payment_method_without_mapping_is_named() {
        let unknown = Order {
            payment_method_code: "bank".into(),
            ..order()
        };
        let err = build_row(&unknown, &detail()).expect_err("no mapping");
        assert_eq!(err.problems.len(), 1, "{err}");
        assert!(
            err.to_string()
                .contains("payment method 'bank' has no mapping"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_mapped_field_is_named_at_header_and_line_level() {
        let mut missing = order();
        missing.extra.remove("gift_message");
        missing.lines[1].options.clear();
        let err = build_row(&missing, &detail()).expect_err("fields missing");
        let text = err.to_string();
        assert!(
            text.contains("free1: cart field 'extra.gift_message' is missing"),
            "{text}"
        );
        assert!(
            text.contains("line 2 (sku 'B-2') WMS free detail field free2: cart field 'options.color' is missing"),
            "{text}"
        );
        assert_eq!(err.problems.len(), 2);
    }

    #[test]
    fn everything_missing_is_reported_at_once() {
        let empty = Order {
            order_no: "X".into(),
            ..Order::default()
        };
        let err = build_row(&empty, &DetailSettings::default()).expect_err("nothing there");
        let text = err.to_string();
        for expected in [
            "conversion robot ID",
            "shipper ID",
            "delivery method ID",
            "no payment method",
            "no order date",
            "no orderer",
            "no amounts",
            "no lines",
        ] {
            assert!(text.contains(expected), "{expected} in {text}");
        }
    }

    #[test]
    fn a_bad_delivery_date_or_unknown_path_is_named() {
        let bad_date = Order {
            delivery_date: "30/11/2026".into(),
            ..order()
        };
        let err = build_row(&bad_date, &detail()).expect_err("bad date");
        assert!(err.to_string().contains("delivery date '30/11/2026'"));
        let mut settings = detail();
        settings.header_free_fields.push(FreeFieldMapping {
            slot: 4,
            cart_field: "orderer.fax".into(),
        });
        settings.line_free_fields.push(FreeFieldMapping {
            slot: 11,
            cart_field: "sku".into(),
        });
        let err = build_row(&order(), &settings).expect_err("bad mappings");
        assert!(
            err.to_string()
                .contains("'orderer.fax' is not a cart field"),
            "{err}"
        );
        assert!(err.to_string().contains("slot 11 is not 1..=10"), "{err}");
    }

    #[test]
    fn empty_mapped_values_are_left_out() {
        let mut settings = detail();
        settings.header_free_fields = vec![FreeFieldMapping {
            slot: 5,
            cart_field: "orderer.address2".into(),
        }];
        let row = build_row(&order(), &settings).expect("builds");
        assert!(row.free_fields.is_empty());
    }

    #[test]
    fn summary_names_the_mapped_ids() {
        let row = build_row(&order(), &detail()).expect("builds");
        let summary = summarize(&row);
        for part in [
            "robot_id 12",
            "payment_method_id 7",
            "delivery_company_id 5",
            "lines 2",
            "free1,free3,free10",
        ] {
            assert!(summary.contains(part), "{part} in {summary}");
        }
    }
}
