//! Realistic cart orders: Japanese names and addresses, one to three lines from a small
//! product catalog, card or cash on delivery, amounts that add up.

use chrono::{DateTime, Utc};
use rand::Rng;
use rand::seq::IndexedRandom;
use wmslink_proto::orders::v1 as pb;

struct Customer {
    name: &'static str,
    kana: &'static str,
    zip: &'static str,
    prefecture: &'static str,
    address1: &'static str,
}

const CUSTOMERS: &[Customer] = &[
    Customer {
        name: "山田 太郎",
        kana: "ヤマダ タロウ",
        zip: "150-0001",
        prefecture: "東京都",
        address1: "渋谷区神宮前1-1-1",
    },
    Customer {
        name: "佐藤 花子",
        kana: "サトウ ハナコ",
        zip: "530-0001",
        prefecture: "大阪府",
        address1: "大阪市北区梅田2-2-2",
    },
    Customer {
        name: "鈴木 一郎",
        kana: "スズキ イチロウ",
        zip: "460-0008",
        prefecture: "愛知県",
        address1: "名古屋市中区栄3-3-3",
    },
    Customer {
        name: "高橋 美咲",
        kana: "タカハシ ミサキ",
        zip: "060-0001",
        prefecture: "北海道",
        address1: "札幌市中央区北一条西4-4",
    },
    Customer {
        name: "田中 健",
        kana: "タナカ ケン",
        zip: "812-0011",
        prefecture: "福岡県",
        address1: "福岡市博多区博多駅前5-5-5",
    },
    Customer {
        name: "伊藤 さくら",
        kana: "イトウ サクラ",
        zip: "980-0021",
        prefecture: "宮城県",
        address1: "仙台市青葉区中央6-6",
    },
];

struct Product {
    sku: &'static str,
    name: &'static str,
    price: i64,
}

const PRODUCTS: &[Product] = &[
    Product {
        sku: "TSHIRT-RED-M",
        name: "Tシャツ 赤 M",
        price: 2700,
    },
    Product {
        sku: "TSHIRT-NAVY-L",
        name: "Tシャツ 紺 L",
        price: 2700,
    },
    Product {
        sku: "MUG-WHITE",
        name: "マグカップ 白",
        price: 1200,
    },
    Product {
        sku: "TOTE-CANVAS",
        name: "キャンバストート",
        price: 3300,
    },
    Product {
        sku: "SOCKS-3P",
        name: "ソックス 3足組",
        price: 990,
    },
    Product {
        sku: "CAP-BLACK",
        name: "キャップ 黒",
        price: 3850,
    },
];

const TIME_SLOTS: &[&str] = &["", "", "08-12", "14-16", "16-18", "18-20", "19-21"];

/// How the order is paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payment {
    Card,
    CashOnDelivery,
    /// A method the demo shop never mapped to a WMS payment method: the dispatcher refuses to
    /// send the order (ERROR, with the reason).
    Unmapped,
}

impl Payment {
    pub fn code(self) -> &'static str {
        match self {
            Self::Card => "card",
            Self::CashOnDelivery => "cod",
            Self::Unmapped => "bank_transfer",
        }
    }
}

/// A new order, revision 1.
pub fn new_order<R: Rng>(
    rng: &mut R,
    shop_id: &str,
    order_no: &str,
    status_code: &str,
    payment: Payment,
    now: DateTime<Utc>,
) -> pb::Order {
    let customer = CUSTOMERS.choose(rng).unwrap_or(&CUSTOMERS[0]);
    let address = pb::Address {
        name: customer.name.into(),
        kana: customer.kana.into(),
        zip: customer.zip.into(),
        prefecture: customer.prefecture.into(),
        address1: customer.address1.into(),
        address2: format!("{}号室", rng.random_range(101..=905)),
        phone: format!(
            "0{}-{:04}-{:04}",
            rng.random_range(3..=9),
            rng.random_range(0..10_000),
            rng.random_range(0..10_000)
        ),
        email: format!("customer{}@example.com", rng.random_range(1..100_000)),
    };
    let lines: Vec<pb::LineItem> = (0..rng.random_range(1..=3))
        .map(|_| {
            let product = PRODUCTS.choose(rng).unwrap_or(&PRODUCTS[0]);
            pb::LineItem {
                sku: product.sku.into(),
                name: product.name.into(),
                quantity: rng.random_range(1..=3),
                unit_price: product.price,
                options: Default::default(),
            }
        })
        .collect();
    let products: i64 = lines.iter().map(|l| l.quantity * l.unit_price).sum();
    let shipping_fee = if products >= 5000 { 0 } else { 600 };
    let cod_fee = if payment == Payment::CashOnDelivery {
        330
    } else {
        0
    };
    let total = products + shipping_fee + cod_fee;
    pb::Order {
        shop_id: shop_id.into(),
        order_no: order_no.into(),
        revision: 1,
        order_date: Some(prost_types::Timestamp {
            seconds: now.timestamp(),
            nanos: 0,
        }),
        status_code: status_code.into(),
        payment_method_code: payment.code().into(),
        orderer: Some(address.clone()),
        shipping: Some(address),
        delivery_date: String::new(),
        delivery_time: (*TIME_SLOTS.choose(rng).unwrap_or(&"")).into(),
        amounts: Some(pb::Amounts {
            products,
            shipping_fee,
            cod_fee,
            discount: 0,
            tax: total / 11,
            total,
        }),
        note: if rng.random_bool(0.2) {
            "ギフト包装希望".into()
        } else {
            String::new()
        },
        lines,
        extra: Default::default(),
    }
}

/// A customer's edit: another room number or a delivery note, sometimes one more item.
pub fn edit<R: Rng>(rng: &mut R, order: &mut pb::Order) {
    match rng.random_range(0..3) {
        0 => {
            if let Some(shipping) = order.shipping.as_mut() {
                shipping.address2 = format!("{}号室（変更）", rng.random_range(101..=905));
            }
        }
        1 => order.note = "置き配希望".into(),
        _ => {
            if let Some(line) = order.lines.first_mut() {
                line.quantity += 1;
                let delta = line.unit_price;
                if let Some(amounts) = order.amounts.as_mut() {
                    amounts.products += delta;
                    amounts.total += delta;
                    amounts.tax = amounts.total / 11;
                }
            }
        }
    }
}
