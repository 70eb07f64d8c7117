//! Order snapshots as the dispatcher stores them, and the content fingerprint that R1 compares.

use chrono::{DateTime, Utc};
use prost::Message;
use sha2::{Digest, Sha256};
use wmslink_proto::orders::v1::{Address, Amounts, LineItem, Order};

/// A fingerprint of what would be sent for an order: everything but its status and
/// revision, map entries sorted (protobuf encodes maps in no fixed order).
pub fn content_fingerprint(order: &Order) -> String {
    let mut h = Canonical(Sha256::new());
    h.str("order_no", &order.order_no);
    match &order.order_date {
        Some(ts) => h.str("order_date", &format!("{}.{}", ts.seconds, ts.nanos)),
        None => h.str("order_date", "-"),
    }
    h.str("payment_method_code", &order.payment_method_code);
    h.address("orderer", order.orderer.as_ref());
    h.address("shipping", order.shipping.as_ref());
    h.str("delivery_date", &order.delivery_date);
    h.str("delivery_time", &order.delivery_time);
    h.amounts(order.amounts.as_ref());
    h.str("note", &order.note);
    h.str("lines", &order.lines.len().to_string());
    for line in &order.lines {
        h.line(line);
    }
    h.map("extra", order.extra.iter());
    let digest = h.0.finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

struct Canonical(Sha256);

impl Canonical {
    fn str(&mut self, name: &str, value: &str) {
        self.0.update(name.as_bytes());
        self.0.update((value.len() as u64).to_be_bytes());
        self.0.update(value.as_bytes());
    }

    fn int(&mut self, name: &str, value: i64) {
        self.0.update(name.as_bytes());
        self.0.update(value.to_be_bytes());
    }

    fn address(&mut self, name: &str, address: Option<&Address>) {
        match address {
            None => self.str(name, "-"),
            Some(a) => {
                self.str(name, "+");
                for (field, value) in [
                    ("name", &a.name),
                    ("kana", &a.kana),
                    ("zip", &a.zip),
                    ("prefecture", &a.prefecture),
                    ("address1", &a.address1),
                    ("address2", &a.address2),
                    ("phone", &a.phone),
                    ("email", &a.email),
                ] {
                    self.str(field, value);
                }
            }
        }
    }

    fn amounts(&mut self, amounts: Option<&Amounts>) {
        match amounts {
            None => self.str("amounts", "-"),
            Some(a) => {
                self.str("amounts", "+");
                self.int("products", a.products);
                self.int("shipping_fee", a.shipping_fee);
                self.int("cod_fee", a.cod_fee);
                self.int("discount", a.discount);
                self.int("tax", a.tax);
                self.int("total", a.total);
            }
        }
    }

    fn line(&mut self, line: &LineItem) {
        self.str("sku", &line.sku);
        self.str("name", &line.name);
        self.int("quantity", line.quantity);
        self.int("unit_price", line.unit_price);
        self.map("options", line.options.iter());
    }

    fn map<'a>(&mut self, name: &str, entries: impl Iterator<Item = (&'a String, &'a String)>) {
        let mut sorted: Vec<_> = entries.collect();
        sorted.sort();
        self.str(name, &sorted.len().to_string());
        for (key, value) in sorted {
            self.str("key", key);
            self.str("value", value);
        }
    }
}

/// The order date as a UTC time, when the cart gave one.
pub fn order_date(order: &Order) -> Option<DateTime<Utc>> {
    order
        .order_date
        .as_ref()
        .and_then(wmslink_proto::from_timestamp)
}

pub fn encode(order: &Order) -> Vec<u8> {
    order.encode_to_vec()
}

pub fn decode(bytes: &[u8]) -> Result<Order, prost::DecodeError> {
    Order::decode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> Order {
        let mut order = Order {
            order_no: "S1".into(),
            revision: 1,
            status_code: "new".into(),
            payment_method_code: "card".into(),
            lines: vec![LineItem {
                sku: "A".into(),
                quantity: 1,
                ..LineItem::default()
            }],
            ..Order::default()
        };
        for i in 0..20 {
            order.extra.insert(format!("k{i}"), format!("v{i}"));
        }
        order
    }

    #[test]
    fn status_and_revision_do_not_count_as_content() {
        let a = order();
        let mut b = a.clone();
        b.revision = 9;
        b.status_code = "shipped".into();
        assert_eq!(content_fingerprint(&a), content_fingerprint(&b));
    }

    #[test]
    fn map_order_does_not_matter_but_every_field_does() {
        let a = order();
        // A map rebuilt in another insertion order.
        let mut b = a.clone();
        let mut entries: Vec<(String, String)> = a
            .extra
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        entries.reverse();
        b.extra = std::collections::HashMap::new();
        for (k, v) in entries {
            b.extra.insert(k, v);
        }
        assert_eq!(content_fingerprint(&a), content_fingerprint(&b));

        let mut c = a.clone();
        c.lines[0].quantity = 2;
        assert_ne!(content_fingerprint(&a), content_fingerprint(&c));
        let mut d = a.clone();
        d.shipping = Some(Address::default());
        assert_ne!(content_fingerprint(&a), content_fingerprint(&d));
        let mut e = a.clone();
        e.extra.insert("k0".into(), "changed".into());
        assert_ne!(content_fingerprint(&a), content_fingerprint(&e));
        let mut f = a.clone();
        f.note = "leave at the door".into();
        assert_ne!(content_fingerprint(&a), content_fingerprint(&f));
    }

    #[test]
    fn snapshot_round_trips() {
        let a = order();
        assert_eq!(decode(&encode(&a)).expect("decodes"), a);
    }
}
