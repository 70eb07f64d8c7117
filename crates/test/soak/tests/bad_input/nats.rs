//! Bad cart messages on NATS, protobuf and proto3 JSON: each is dead-lettered with its reason,
//! the good order published right behind each one is stored and registered in the WMS once,
//! and no order number of a bad message reaches the WMS.

use std::collections::BTreeSet;

use async_nats::HeaderMap;
use prost::Message;
use wmslink_e2e::{STATUS_READY, System, order};
use wmslink_platform::shop::ShopId;
use wmslink_proto::orders::v1 as orders;
use wmslink_proto::orders::v1::ShippingStatus;
use wmslink_testkit::eventually;

use crate::common::{WAIT, dead_letters, system_with_shop};

const PROTOBUF: &str = "application/protobuf";
const JSON: &str = "application/json";

/// One bad message: published on `subject_shop`'s cart subject with `content_type`, it must
/// be dead-lettered with a reason holding every `reason` text.
pub struct BadMessage {
    pub name: &'static str,
    pub subject_shop: String,
    pub content_type: &'static str,
    pub payload: Vec<u8>,
    pub reason: Vec<String>,
}

fn json_of(order: &orders::Order) -> serde_json::Value {
    let bytes = wmslink_proto::json::encode("wmslink.orders.v1.Order", order).expect("JSON");
    serde_json::from_slice(&bytes).expect("JSON value")
}

/// The order as proto3 JSON with `change` applied to its JSON value.
fn json_with(order: &orders::Order, change: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut value = json_of(order);
    change(&mut value);
    serde_json::to_vec(&value).expect("JSON bytes")
}

/// Every kind of bad cart message for `shop` (known and enabled); `stored_no` is an order
/// already stored at revision 1 (for the revision conflict).
pub fn bad_messages(shop: &str, stored_no: &str) -> Vec<BadMessage> {
    let bad = |no: &str| order(shop, no, 1, STATUS_READY);
    let case = |name, content_type, payload, reason: &[&str]| BadMessage {
        name,
        subject_shop: shop.to_owned(),
        content_type,
        payload,
        reason: reason.iter().map(|r| (*r).to_owned()).collect(),
    };
    let mut truncated = bad("BAD-TRUNC").encode_to_vec();
    truncated.truncate(truncated.len() / 2);
    // Field 3 (revision, a varint) sent as a length-delimited field.
    let mut wrong_wire_type = bad("BAD-WIRE").encode_to_vec();
    wrong_wire_type.extend_from_slice(&[0x1a, 0x01, b'x']);
    // Field 2 (order_no) holding bytes that are not UTF-8.
    let invalid_utf8 = vec![0x12, 0x02, 0xff, 0xfe];
    let mut nested = String::from(r#"{"shopId":"x","extra":{"a":"#);
    nested.push_str(&"[".repeat(100_000));
    nested.push_str(&"]".repeat(100_000));
    nested.push_str("}}");
    let mut control = bad("BAD-CTRL");
    control.note = "bell \u{7} and escape \u{1b}".into();
    let mut too_many_lines = bad("BAD-LINES");
    too_many_lines.lines = vec![too_many_lines.lines[0].clone(); 501];
    let mut huge_lines = bad("BAD-HUGE-LINES");
    huge_lines.lines = vec![huge_lines.lines[0].clone(); 20_000];
    let mut negative = bad("BAD-NEG");
    if let Some(amounts) = negative.amounts.as_mut() {
        amounts.total = -1;
    }
    negative.lines[0].quantity = -3;
    let mut huge_quantity = bad("BAD-QTY");
    huge_quantity.lines[0].quantity = i64::MAX;
    let mut revision_zero = bad("BAD-REV0");
    revision_zero.revision = 0;
    let mut revision_negative = bad("BAD-REVNEG");
    revision_negative.revision = i64::MIN;
    let mut conflict = order(shop, stored_no, 1, STATUS_READY);
    conflict.note = "other content under the same revision".into();
    let mut date_out_of_range = bad("BAD-DATE");
    date_out_of_range.order_date = Some(prost_types::Timestamp {
        seconds: i64::MAX,
        nanos: 0,
    });
    let mut bad_nanos = bad("BAD-NANOS");
    bad_nanos.order_date = Some(prost_types::Timestamp {
        seconds: 0,
        nanos: -1,
    });
    let mut long_note = bad("BAD-NOTE");
    long_note.note = "あ".repeat(4_001);
    let bad_order_no = bad("BAD/../1*>");
    let mut long_order_no = bad("BAD");
    long_order_no.order_no = "B".repeat(65);
    let mut empty_status = bad("BAD-STATUS");
    empty_status.status_code = String::new();
    let mut bad_delivery_date = bad("BAD-DDATE");
    bad_delivery_date.delivery_date = "2026-02-30".into();
    let mut many_extra = bad("BAD-EXTRA");
    many_extra.extra = (0..51).map(|i| (format!("k{i}"), "v".to_owned())).collect();
    let other_shop = "ghost-shop-never-set-up";

    vec![
        case(
            "garbage protobuf",
            PROTOBUF,
            vec![0xff, 0xff, 0xff, 0x01],
            &["undecodable protobuf"],
        ),
        case(
            "truncated protobuf",
            PROTOBUF,
            truncated,
            &["undecodable protobuf"],
        ),
        case(
            "wrong wire type",
            PROTOBUF,
            wrong_wire_type,
            &["undecodable protobuf"],
        ),
        case(
            "invalid UTF-8 in a protobuf string",
            PROTOBUF,
            invalid_utf8,
            &["undecodable protobuf", "UTF-8"],
        ),
        case(
            "empty protobuf",
            PROTOBUF,
            Vec::new(),
            &["order.shop_id", "is ''"],
        ),
        case(
            "malformed JSON",
            JSON,
            br#"{"shopId": "x", "orderNo": "#.to_vec(),
            &["undecodable JSON"],
        ),
        case(
            "invalid UTF-8 in JSON",
            JSON,
            b"{\"shopId\": \"\xff\xfe\"}".to_vec(),
            &["undecodable JSON"],
        ),
        case(
            "JSON top level not an object",
            JSON,
            b"[1, 2, 3]".to_vec(),
            &["undecodable JSON"],
        ),
        case("JSON null", JSON, b"null".to_vec(), &["undecodable JSON"]),
        case(
            "JSON wrong type: revision",
            JSON,
            json_with(&bad("BAD-TYPE1"), |v| v["revision"] = "abc".into()),
            &["undecodable JSON"],
        ),
        case(
            "JSON wrong type: lines",
            JSON,
            json_with(&bad("BAD-TYPE2"), |v| {
                v["lines"] = serde_json::json!({"sku": "x"});
            }),
            &["undecodable JSON"],
        ),
        case(
            "JSON wrong type: extra value",
            JSON,
            json_with(&bad("BAD-TYPE3"), |v| {
                v["extra"] = serde_json::json!({"k": {"nested": true}});
            }),
            &["undecodable JSON"],
        ),
        case(
            "JSON unknown field",
            JSON,
            json_with(&bad("BAD-UNKNOWN"), |v| v["colour"] = "red".into()),
            &["undecodable JSON", "colour"],
        ),
        case(
            "JSON overflowing number",
            JSON,
            json_with(&bad("BAD-OVERFLOW"), |v| {
                v["revision"] = "9223372036854775808".into();
            }),
            &["undecodable JSON"],
        ),
        case(
            "JSON number beyond f64",
            JSON,
            json_with(&bad("BAD-F64"), |v| {
                v["lines"][0]["quantity"] = serde_json::Value::String("1e400".into());
            }),
            &["undecodable JSON"],
        ),
        case(
            "JSON missing order date",
            JSON,
            json_with(&bad("BAD-NODATE"), |v| {
                v.as_object_mut().map(|o| o.remove("orderDate"));
            }),
            &["invalid order", "order.order_date: must be set"],
        ),
        case(
            "JSON missing order number",
            JSON,
            json_with(&bad("BAD-NONO"), |v| {
                v.as_object_mut().map(|o| o.remove("orderNo"));
            }),
            &["invalid order", "order.order_no"],
        ),
        case(
            "deeply nested JSON",
            JSON,
            nested.into_bytes(),
            &["undecodable JSON"],
        ),
        case(
            "huge line count",
            PROTOBUF,
            huge_lines.encode_to_vec(),
            &["order.lines: must have at most 500 lines (has 20000)"],
        ),
        case(
            "501 lines",
            PROTOBUF,
            too_many_lines.encode_to_vec(),
            &["order.lines: must have at most 500 lines"],
        ),
        case(
            "control characters",
            PROTOBUF,
            control.encode_to_vec(),
            &["order.note: must not contain control characters"],
        ),
        case(
            "negative numbers",
            PROTOBUF,
            negative.encode_to_vec(),
            &["order.amounts.total", "order.lines[0].quantity"],
        ),
        case(
            "overflowing quantity",
            PROTOBUF,
            huge_quantity.encode_to_vec(),
            &["order.lines[0].quantity"],
        ),
        case(
            "revision 0",
            PROTOBUF,
            revision_zero.encode_to_vec(),
            &["order.revision: must be at least 1"],
        ),
        case(
            "revision i64::MIN",
            PROTOBUF,
            revision_negative.encode_to_vec(),
            &["order.revision: must be at least 1"],
        ),
        case(
            "same revision, other content",
            PROTOBUF,
            conflict.encode_to_vec(),
            &["revision conflict", stored_no],
        ),
        case(
            "order date out of range",
            PROTOBUF,
            date_out_of_range.encode_to_vec(),
            &["order.order_date"],
        ),
        case(
            "negative nanos",
            PROTOBUF,
            bad_nanos.encode_to_vec(),
            &["order.order_date"],
        ),
        case(
            "note too long",
            PROTOBUF,
            long_note.encode_to_vec(),
            &["order.note: must be at most 4000 characters"],
        ),
        case(
            "order number with subject characters",
            PROTOBUF,
            bad_order_no.encode_to_vec(),
            &["order.order_no"],
        ),
        case(
            "order number too long",
            PROTOBUF,
            long_order_no.encode_to_vec(),
            &["order.order_no"],
        ),
        case(
            "empty status",
            PROTOBUF,
            empty_status.encode_to_vec(),
            &["order.status_code: must not be empty"],
        ),
        case(
            "impossible delivery date",
            PROTOBUF,
            bad_delivery_date.encode_to_vec(),
            &["order.delivery_date"],
        ),
        case(
            "51 extra entries",
            PROTOBUF,
            many_extra.encode_to_vec(),
            &["order.extra"],
        ),
        BadMessage {
            name: "payload of another shop",
            subject_shop: shop.to_owned(),
            content_type: PROTOBUF,
            payload: order(other_shop, "BAD-TENANT", 1, STATUS_READY).encode_to_vec(),
            reason: vec!["tenancy".into()],
        },
        BadMessage {
            name: "unknown shop",
            subject_shop: other_shop.to_owned(),
            content_type: PROTOBUF,
            payload: order(other_shop, "BAD-GHOST", 1, STATUS_READY).encode_to_vec(),
            reason: vec!["has no WMS integration settings".into()],
        },
        case(
            "unsupported content type",
            "text/csv; charset=utf-8",
            b"shop,BAD-CSV,1".to_vec(),
            &["unsupported content type"],
        ),
    ]
}

async fn publish(system: &System, shop: &str, content_type: &str, payload: Vec<u8>, id: &str) {
    let shop = ShopId::parse(shop).expect("shop id");
    let mut headers = HeaderMap::new();
    headers.insert("Content-Type", content_type);
    headers.insert(async_nats::header::NATS_MESSAGE_ID, id);
    system
        .nats
        .js
        .publish_with_headers(
            system.nats.subjects.cart_order_upserted(&shop),
            headers,
            payload.into(),
        )
        .await
        .expect("publish")
        .await
        .expect("stored by the stream");
}

async fn shipping_status(system: &System, shop: &str, order_no: &str) -> Option<ShippingStatus> {
    let view = system
        .orders()
        .get_order(orders::GetOrderRequest {
            shop_id: shop.into(),
            order_no: order_no.into(),
        })
        .await
        .ok()?
        .into_inner()
        .order?;
    Some(view.integration.unwrap_or_default().shipping_status())
}

#[tokio::test]
async fn every_bad_cart_message_is_dead_lettered_and_the_one_behind_it_is_registered_once() {
    let (system, shop, key) = system_with_shop().await;
    let first = order(&shop, "GOOD-FIRST", 1, STATUS_READY);
    publish(
        &system,
        &shop,
        PROTOBUF,
        first.encode_to_vec(),
        "good-first",
    )
    .await;
    eventually(WAIT, "the first order stored", || async {
        shipping_status(&system, &shop, "GOOD-FIRST").await
    })
    .await;

    let cases = bad_messages(&shop, "GOOD-FIRST");
    let mut good = vec!["GOOD-FIRST".to_owned()];
    for (index, case) in cases.iter().enumerate() {
        publish(
            &system,
            &case.subject_shop,
            case.content_type,
            case.payload.clone(),
            &format!("bad-{index}"),
        )
        .await;
        // A good one right behind it, in protobuf or JSON, with a lone CR in its address (the
        // WMS refuses lone CRs: it must be normalised before it goes out) and an unknown
        // protobuf field (ignored, as protobuf readers must).
        let order_no = format!("GOOD-{index}");
        let mut next = order(&shop, &order_no, 1, STATUS_READY);
        if let Some(shipping) = next.shipping.as_mut() {
            shipping.address2 = "棟\r101".into();
        }
        if index % 2 == 0 {
            let json = wmslink_proto::json::encode("wmslink.orders.v1.Order", &next).expect("json");
            publish(&system, &shop, JSON, json, &format!("good-{index}")).await;
        } else {
            let mut bytes = next.encode_to_vec();
            bytes.extend_from_slice(&[0xf8, 0x06, 0x01]); // field 99, varint 1
            publish(&system, &shop, PROTOBUF, bytes, &format!("good-{index}")).await;
        }
        good.push(order_no);
    }

    // Over NATS's payload limit (1 MiB, the orders' bound too): refused to the publisher, never
    // stored, so no consumer sees it.
    let mut headers = HeaderMap::new();
    headers.insert("Content-Type", JSON);
    let oversized = system
        .nats
        .js
        .publish_with_headers(
            system
                .nats
                .subjects
                .cart_order_upserted(&ShopId::parse(&shop).expect("shop")),
            headers,
            vec![b' '; 1_200_000].into(),
        )
        .await;
    assert!(oversized.is_err(), "a message over 1 MiB is refused");

    // Every good order goes out and is registered.
    for order_no in &good {
        let status = eventually(WAIT, &format!("{order_no} sent"), || async {
            shipping_status(&system, &shop, order_no)
                .await
                .filter(|s| *s == ShippingStatus::Sent)
        })
        .await;
        assert_eq!(status, ShippingStatus::Sent, "{order_no}");
    }
    // Every bad one is a dead letter with its reason (at least once: a message redelivered
    // before its termination landed is dead-lettered again, by design), and nothing else is.
    let distinct = |letters: &[wmslink_proto::ops::v1::DeadLetter]| {
        letters
            .iter()
            .map(|l| l.original_msg_id.clone())
            .collect::<BTreeSet<String>>()
    };
    let letters = eventually(WAIT, "every bad message dead-lettered", || async {
        let letters = dead_letters(&system).await;
        (distinct(&letters).len() >= cases.len()).then_some(letters)
    })
    .await;
    let expected_ids: BTreeSet<String> = (0..cases.len()).map(|i| format!("bad-{i}")).collect();
    assert_eq!(
        distinct(&letters),
        expected_ids,
        "the dead-lettered messages: {:#?}",
        letters
            .iter()
            .map(|l| (&l.original_msg_id, &l.reason))
            .collect::<Vec<_>>()
    );
    let mut wrong = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        let id = format!("bad-{index}");
        let letter = letters
            .iter()
            .find(|letter| letter.original_msg_id == id)
            .unwrap_or_else(|| panic!("{}: no dead letter", case.name));
        for text in &case.reason {
            if !letter.reason.contains(text.as_str()) {
                wrong.push(format!(
                    "{}: reason {:?} lacks {text:?}",
                    case.name, letter.reason
                ));
            }
        }
        assert!(
            letter.reason.len() <= 4_096,
            "{}: reason of {} bytes",
            case.name,
            letter.reason.len()
        );
        assert_eq!(
            letter.payload_bytes,
            case.payload.len() as u64,
            "{}",
            case.name
        );
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // The WMS received exactly the good orders, each once, each accepted (the lone CR was
    // normalised), and nothing of the bad ones.
    let received = system
        .simulator
        .state()
        .order_no_counters(&key)
        .expect("counters");
    let expected: BTreeSet<&str> = good.iter().map(String::as_str).collect();
    let got: BTreeSet<&str> = received.keys().map(String::as_str).collect();
    assert_eq!(got, expected, "what reached the WMS");
    for (order_no, counter) in &received {
        assert_eq!(
            (counter.received, counter.accepted),
            (1, 1),
            "{order_no}: {counter:?}"
        );
    }
    system.stop().await;
}
