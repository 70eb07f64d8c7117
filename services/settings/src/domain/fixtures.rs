//! Requests and catalogs the unit tests of the rules share.

use wmslink_proto::settings::v1 as pb;
use wmslink_wms_client::WmsClientConfig;

use super::model::{OrderStatus, StatusKind};
use super::validation::{RegisterContext, Registration, validate_registration};

pub fn catalog() -> Vec<OrderStatus> {
    vec![
        OrderStatus {
            code: "new".into(),
            display_name: "新規受付".into(),
            kind: StatusKind::Open,
        },
        OrderStatus {
            code: "paid".into(),
            display_name: "入金済み".into(),
            kind: StatusKind::Open,
        },
        OrderStatus {
            code: "cancel".into(),
            display_name: "キャンセル".into(),
            kind: StatusKind::Cancelled,
        },
    ]
}

pub fn wms() -> WmsClientConfig {
    WmsClientConfig {
        allow_http_hosts: vec!["localhost".into()],
        ..WmsClientConfig::default()
    }
}

pub fn full() -> pb::DetailSettings {
    pb::DetailSettings {
        wms_kind: pb::WmsKind::CommerceRobo as i32,
        endpoint_url: "https://api12.crobo.jp/v1/".into(),
        data_targets: Some(pb::DataTargets {
            shipment_instructions: true,
            cancellations: true,
            shipment_results: true,
        }),
        target_status_codes: vec!["paid".into()],
        shipper_id: 3,
        delivery_method_id: 2,
        sync_period_days: 0,
        robot_id: 12,
        payment_mappings: vec![pb::PaymentMapping {
            payment_method_code: "cod".into(),
            wms_payment_method_id: 7,
            delivery_company_id: 5,
        }],
        header_free_fields: vec![pb::FreeFieldMapping {
            slot: 1,
            cart_field: "extra.gift".into(),
        }],
        line_free_fields: vec![pb::FreeFieldMapping {
            slot: 10,
            cart_field: "options.color".into(),
        }],
        wms_order_no_prefix: String::new(),
    }
}

pub fn validate(
    detail: &pb::DetailSettings,
    key: Option<&str>,
) -> Result<Registration, Vec<String>> {
    let catalog = catalog();
    let wms = wms();
    let ctx = RegisterContext {
        catalog: &catalog,
        wms: &wms,
        stored_endpoint_url: None,
    };
    validate_registration(Some(detail), key, &ctx)
        .map_err(|v| v.iter().map(|(field, _)| field.to_owned()).collect())
}
