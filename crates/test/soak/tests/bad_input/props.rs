//! Property tests of the inbound decoders and checks (what order-events runs on every cart
//! message and list request) and of the WMS answer parser: any input gives a value or a typed
//! error naming the field, never a panic.

use proptest::prelude::*;
use wmslink_order_events::domain::list::{Cursor, MAX_PAGE_SIZE, parse_list_request};
use wmslink_order_events::domain::validation::check_order;
use wmslink_platform::consumer::{Encoding, decode};
use wmslink_platform::validation::FieldViolations;
use wmslink_proto::orders::v1 as orders;
use wmslink_wms_client::{SearchQuery, WmsError};

use crate::wms::{Answer, RawWms, row};

const MAX_BYTES: usize = 1024 * 1024;

fn checked(order: &orders::Order) -> Vec<(String, String)> {
    let mut violations = FieldViolations::new();
    check_order(
        "order",
        order,
        prost::Message::encoded_len(order),
        MAX_BYTES,
        &mut violations,
    );
    violations
        .iter()
        .map(|(field, reason)| (field.to_owned(), reason.to_owned()))
        .collect()
}

/// Any text, control characters, lone CRs and non-BMP characters included.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        "[a-zA-Z0-9._-]{1,70}",
        proptest::collection::vec(any::<char>(), 0..30).prop_map(|c| c.into_iter().collect()),
        Just("\r".to_owned()),
        Just("a\rb".to_owned()),
    ]
}

fn number() -> impl Strategy<Value = i64> {
    prop_oneof![any::<i64>(), -3i64..3, Just(i64::MAX), Just(i64::MIN)]
}

prop_compose! {
    fn line()(sku in text(), name in text(), quantity in number(), unit_price in number())
        -> orders::LineItem {
        orders::LineItem { sku, name, quantity, unit_price, options: Default::default() }
    }
}

prop_compose! {
    fn any_order()(
        shop_id in text(), order_no in text(), revision in number(),
        seconds in prop_oneof![any::<i64>(), 0i64..4_000_000_000], nanos in any::<i32>(),
        dated in any::<bool>(), status_code in text(), note in text(),
        delivery_date in text(), total in number(),
        lines in proptest::collection::vec(line(), 0..4),
        extra in proptest::collection::hash_map(text(), text(), 0..3),
    ) -> orders::Order {
        orders::Order {
            shop_id, order_no, revision,
            order_date: dated.then_some(prost_types::Timestamp { seconds, nanos }),
            status_code, note, delivery_date,
            amounts: Some(orders::Amounts { total, ..Default::default() }),
            lines, extra,
            ..Default::default()
        }
    }
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        ".{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("shopId".to_owned()),
                    Just("orderNo".to_owned()),
                    Just("revision".to_owned()),
                    Just("lines".to_owned()),
                    Just("orderDate".to_owned()),
                    Just("result".to_owned()),
                    Just("data".to_owned()),
                    Just("total".to_owned()),
                    Just("order_id".to_owned()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_decode_to_an_order_or_an_error_and_the_check_names_order_fields(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        json in any::<bool>(),
    ) {
        let encoding = if json { Encoding::Json } else { Encoding::Protobuf };
        match decode::<orders::Order>(&bytes, encoding) {
            Ok(order) => {
                for (field, reason) in checked(&order) {
                    prop_assert!(field.starts_with("order"), "{field}: {reason}");
                    prop_assert!(!reason.is_empty());
                }
            }
            Err(reason) => prop_assert!(reason.starts_with("undecodable"), "{reason}"),
        }
    }

    #[test]
    fn any_json_value_decodes_or_is_refused_with_a_reason(value in json_value()) {
        let bytes = serde_json::to_vec(&value).unwrap_or_default();
        if let Err(reason) = decode::<orders::Order>(&bytes, Encoding::Json) {
            prop_assert!(reason.starts_with("undecodable JSON"), "{reason}");
        }
    }

    #[test]
    fn every_bad_value_of_an_order_is_named(order in any_order()) {
        let fields: Vec<String> = checked(&order).into_iter().map(|(f, _)| f).collect();
        let named = |f: &str| fields.iter().any(|x| x == f);
        if order.revision < 1 {
            prop_assert!(named("order.revision"), "{fields:?}");
        }
        if order.amounts.as_ref().is_some_and(|a| a.total < 0) {
            prop_assert!(named("order.amounts.total"), "{fields:?}");
        }
        if order.order_date.is_none() {
            prop_assert!(named("order.order_date"), "{fields:?}");
        }
        if order.note.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')) {
            prop_assert!(named("order.note"), "{fields:?}");
        }
        if order.order_no.is_empty() || order.order_no.chars().count() > 64 {
            prop_assert!(named("order.order_no"), "{fields:?}");
        }
        for (index, line) in order.lines.iter().enumerate() {
            if line.quantity < 1 {
                let field = format!("order.lines[{index}].quantity");
                prop_assert!(named(&field), "{fields:?}");
            }
        }
        // A valid order survives proto3 JSON unchanged: both encodings carry the same order.
        if fields.is_empty() {
            let json = wmslink_proto::json::encode("wmslink.orders.v1.Order", &order)
                .expect("a valid order encodes");
            let back: orders::Order = decode(&json, Encoding::Json).expect("and decodes");
            prop_assert_eq!(back, order);
        }
    }

    #[test]
    fn list_requests_are_answered_or_refused_by_field(
        page_size in prop_oneof![any::<u32>(), 0u32..300],
        page_token in prop_oneof![".{0,40}", "[A-Za-z0-9_-]{0,40}"],
        shop_id in prop_oneof![Just("shop-a".to_owned()), text()],
    ) {
        let request = orders::ListOrdersRequest {
            shop_id,
            filter: None,
            page_size,
            page_token,
        };
        match parse_list_request(&request) {
            Ok(query) => {
                prop_assert!((1..=MAX_PAGE_SIZE).contains(&query.page_size));
            }
            Err(violations) => {
                let fields: Vec<&str> = violations.iter().map(|(f, _)| f).collect();
                prop_assert!(!fields.is_empty());
                for field in &fields {
                    prop_assert!(
                        ["shop_id", "page_size", "page_token"].contains(field),
                        "{field}"
                    );
                }
                if page_size > MAX_PAGE_SIZE {
                    prop_assert!(fields.contains(&"page_size"));
                }
            }
        }
    }

    #[test]
    fn page_tokens_round_trip_and_any_text_is_safe(
        micros in 0i64..253_402_300_799_000_000,
        order_no in "[A-Za-z0-9._-]{1,64}",
        junk in ".{0,80}",
    ) {
        let _ = Cursor::decode(&junk);
        let cursor = Cursor {
            order_date: chrono::DateTime::from_timestamp_micros(micros).expect("in range"),
            order_no,
        };
        prop_assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
    }
}

proptest! {
    // Each case is a real HTTP exchange: fewer of them.
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn any_wms_answer_is_read_or_refused_as_malformed_or_unknown(
        body in prop_oneof![
            json_value().prop_map(|v| serde_json::to_vec(&v).unwrap_or_default()),
            proptest::collection::vec(any::<u8>(), 0..512),
        ],
        status in prop_oneof![Just(200u16), Just(400), Just(500), Just(502)],
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let wms = RawWms::start().await;
            wms.answer(Answer::new(status, "application/json", body.clone()));
            let client = wms.client(2_000);
            match client.search(&SearchQuery::new()).await {
                Ok(_) => assert_eq!(status, 200, "only a 2xx is an answer"),
                Err(err) => assert!(
                    matches!(
                        err,
                        WmsError::Malformed(_)
                            | WmsError::Rejected { .. }
                            | WmsError::Transient { .. }
                            | WmsError::UnexpectedStatus { .. }
                    ),
                    "search: {err:?}"
                ),
            }
            match client.register_batch(&[row("P-1")]).await {
                Ok(rows) => {
                    assert_eq!(status, 200);
                    assert_eq!(rows.len(), 1, "one result per row sent");
                }
                Err(err) => assert!(
                    matches!(
                        err,
                        WmsError::UnknownOutcome { .. }
                            | WmsError::Rejected { .. }
                            | WmsError::Transient { .. }
                            | WmsError::UnexpectedStatus { .. }
                    ),
                    "register: {err:?}"
                ),
            }
        });
    }
}
