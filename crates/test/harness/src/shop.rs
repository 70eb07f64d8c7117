//! The shop the service suites set up: a catalog and detail settings that use every kind of
//! mapping, set up and enabled through the settings API by [`ShopSetup`], as an operator does.

use secrecy::SecretString;
use wmslink_proto::settings::v1 as pb;
pub use wmslink_tools::shop_setup::{ShopSetup, ShopSetupError};

/// A shop id no other test uses.
pub fn unique_shop_id() -> String {
    wmslink_testkit::unique("shop-")
}

/// The test shop with `detail` (its `endpoint_url` included) and `access_key`.
pub fn setup(shop_id: &str, detail: pb::DetailSettings, access_key: &str) -> ShopSetup {
    ShopSetup {
        shop_id: shop_id.to_owned(),
        catalog: catalog(),
        detail,
        access_key: SecretString::from(access_key.to_owned()),
    }
}

/// new, paid, ready (open), shipped (completed), cancel (cancelled).
pub fn catalog() -> Vec<pb::OrderStatus> {
    let status = |code: &str, name: &str, kind: pb::OrderStatusKind| pb::OrderStatus {
        code: code.into(),
        display_name: name.into(),
        kind: kind as i32,
    };
    vec![
        status("new", "新規受付", pb::OrderStatusKind::Open),
        status("paid", "入金済み", pb::OrderStatusKind::Open),
        status("ready", "出荷待ち", pb::OrderStatusKind::Open),
        status("shipped", "発送済み", pb::OrderStatusKind::Completed),
        status("cancel", "キャンセル", pb::OrderStatusKind::Cancelled),
    ]
}

/// Detail settings with every field set, complete for enabling: target statuses `paid` and
/// `ready`, every data target, a 45-day sync period, payment mappings `credit` (no carrier
/// override) and `cod` (carrier 5), header and line free fields.
pub fn full_detail(endpoint_url: &str) -> pb::DetailSettings {
    pb::DetailSettings {
        wms_kind: pb::WmsKind::CommerceRobo as i32,
        endpoint_url: endpoint_url.into(),
        data_targets: Some(pb::DataTargets {
            shipment_instructions: true,
            cancellations: true,
            shipment_results: true,
        }),
        target_status_codes: vec!["paid".into(), "ready".into()],
        shipper_id: 3,
        delivery_method_id: 2,
        sync_period_days: 45,
        robot_id: 12,
        payment_mappings: vec![
            pb::PaymentMapping {
                payment_method_code: "credit".into(),
                wms_payment_method_id: 1,
                delivery_company_id: 0,
            },
            pb::PaymentMapping {
                payment_method_code: "cod".into(),
                wms_payment_method_id: 7,
                delivery_company_id: 5,
            },
        ],
        header_free_fields: vec![
            pb::FreeFieldMapping {
                slot: 1,
                cart_field: "extra.gift_message".into(),
            },
            pb::FreeFieldMapping {
                slot: 2,
                cart_field: "shipping.email".into(),
            },
            pb::FreeFieldMapping {
                slot: 10,
                cart_field: "amounts.total".into(),
            },
        ],
        line_free_fields: vec![
            pb::FreeFieldMapping {
                slot: 1,
                cart_field: "options.color".into(),
            },
            pb::FreeFieldMapping {
                slot: 3,
                cart_field: "sku".into(),
            },
        ],
        wms_order_no_prefix: String::new(),
    }
}
