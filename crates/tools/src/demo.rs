//! The demo shop: its order statuses, its settings against the WMS simulator, and the orders it
//! is fed. `wmslink-demo` sets it up for `docker compose up`; the end-to-end suite runs the same
//! shop in-process.

use secrecy::SecretString;
use wmslink_proto::orders::v1 as orders;
use wmslink_proto::settings::v1 as settings;

use crate::shop_setup::ShopSetup;

/// The cart's order statuses of the demo shop.
pub const STATUS_NEW: &str = "new";
/// The one target status: orders in it are sent to the WMS.
pub const STATUS_READY: &str = "ready_to_ship";
pub const STATUS_HOLD: &str = "on_hold";
pub const STATUS_CANCELLED: &str = "cancelled";
pub const STATUS_COMPLETED: &str = "completed";

/// The demo shop against a WMS at `wms_endpoint_url` with `access_key`.
pub fn shop(shop_id: &str, access_key: SecretString, wms_endpoint_url: &str) -> ShopSetup {
    use settings::OrderStatusKind as Kind;
    let status = |code: &str, name: &str, kind: Kind| settings::OrderStatus {
        code: code.into(),
        display_name: name.into(),
        kind: kind as i32,
    };
    ShopSetup {
        shop_id: shop_id.to_owned(),
        catalog: vec![
            status(STATUS_NEW, "新規受付", Kind::Open),
            status(STATUS_READY, "出荷待ち", Kind::Open),
            status(STATUS_HOLD, "保留", Kind::Open),
            status(STATUS_CANCELLED, "キャンセル", Kind::Cancelled),
            status(STATUS_COMPLETED, "完了", Kind::Completed),
        ],
        detail: settings::DetailSettings {
            wms_kind: settings::WmsKind::CommerceRobo as i32,
            endpoint_url: wms_endpoint_url.to_owned(),
            data_targets: Some(settings::DataTargets {
                shipment_instructions: true,
                cancellations: true,
                shipment_results: true,
            }),
            target_status_codes: vec![STATUS_READY.into()],
            shipper_id: 1,
            delivery_method_id: 1,
            sync_period_days: 30,
            robot_id: 1,
            payment_mappings: vec![
                settings::PaymentMapping {
                    payment_method_code: "card".into(),
                    wms_payment_method_id: 1,
                    delivery_company_id: 0,
                },
                settings::PaymentMapping {
                    payment_method_code: "cod".into(),
                    wms_payment_method_id: 2,
                    delivery_company_id: 5,
                },
            ],
            header_free_fields: vec![settings::FreeFieldMapping {
                slot: 1,
                cart_field: "note".into(),
            }],
            line_free_fields: vec![],
            wms_order_no_prefix: String::new(),
        },
        access_key,
    }
}

/// A complete cart order of the demo shop placed now, in `status_code`, paid by
/// `payment_method_code` (`card` or `cod`).
pub fn order(
    shop_id: &str,
    order_no: &str,
    revision: i64,
    status_code: &str,
    payment_method_code: &str,
) -> orders::Order {
    let address = orders::Address {
        name: "山田 太郎".into(),
        kana: "ヤマダ タロウ".into(),
        zip: "150-0001".into(),
        prefecture: "東京都".into(),
        address1: "渋谷区神宮前1-1-1".into(),
        address2: "101".into(),
        phone: "03-0000-0000".into(),
        email: "taro@example.com".into(),
    };
    orders::Order {
        shop_id: shop_id.into(),
        order_no: order_no.into(),
        revision,
        order_date: Some(prost_types::Timestamp {
            seconds: chrono::Utc::now().timestamp(),
            nanos: 0,
        }),
        status_code: status_code.into(),
        payment_method_code: payment_method_code.into(),
        orderer: Some(address.clone()),
        shipping: Some(address),
        delivery_date: String::new(),
        delivery_time: String::new(),
        amounts: Some(orders::Amounts {
            products: 5400,
            shipping_fee: 600,
            cod_fee: 0,
            discount: 0,
            tax: 545,
            total: 6000,
        }),
        note: format!("note of {order_no}"),
        lines: vec![orders::LineItem {
            sku: "TSHIRT-RED-M".into(),
            name: "Tシャツ 赤 M".into(),
            quantity: 2,
            unit_price: 2700,
            options: Default::default(),
        }],
        extra: Default::default(),
    }
}
