use tonic::Code;
use wmslink_platform::validation::violations_of;
use wmslink_proto::settings::v1 as pb;

use crate::helpers::*;

const URL: &str = "https://api.crobo.jp/v1";

fn free(slot: u32, cart_field: &str) -> pb::FreeFieldMapping {
    pb::FreeFieldMapping {
        slot,
        cart_field: cart_field.into(),
    }
}

fn payment(code: &str, id: i64, company: i64) -> pb::PaymentMapping {
    pb::PaymentMapping {
        payment_method_code: code.into(),
        wms_payment_method_id: id,
        delivery_company_id: company,
    }
}

/// (what is wrong, the detail, the key, the field expected in the violations, a word of the reason)
type Case = (
    &'static str,
    pb::DetailSettings,
    Option<&'static str>,
    &'static str,
    &'static str,
);

fn cases() -> Vec<Case> {
    let with = |change: &dyn Fn(&mut pb::DetailSettings)| {
        let mut detail = full_detail(URL);
        change(&mut detail);
        detail
    };
    vec![
        (
            "unknown status code",
            with(&|d| d.target_status_codes = vec!["paid".into(), "nope".into()]),
            None,
            "detail.target_status_codes[1]",
            "unknown order status 'nope'",
        ),
        (
            "cancelled status as target",
            with(&|d| d.target_status_codes = vec!["cancel".into()]),
            None,
            "detail.target_status_codes[0]",
            "cancelled",
        ),
        (
            "duplicate target status",
            with(&|d| d.target_status_codes = vec!["paid".into(), "paid".into()]),
            None,
            "detail.target_status_codes[1]",
            "twice",
        ),
        (
            "header slot 0",
            with(&|d| d.header_free_fields = vec![free(0, "note")]),
            None,
            "detail.header_free_fields[0].slot",
            "out of range",
        ),
        (
            "line slot 11",
            with(&|d| d.line_free_fields = vec![free(11, "sku")]),
            None,
            "detail.line_free_fields[0].slot",
            "out of range",
        ),
        (
            "duplicate header slot",
            with(&|d| d.header_free_fields = vec![free(1, "note"), free(1, "order_no")]),
            None,
            "detail.header_free_fields[1].slot",
            "twice",
        ),
        (
            "unknown header field path",
            with(&|d| d.header_free_fields = vec![free(1, "orderer.fax")]),
            None,
            "detail.header_free_fields[0].cart_field",
            "unknown cart field",
        ),
        (
            "line path at header level is unknown",
            with(&|d| d.header_free_fields = vec![free(1, "sku")]),
            None,
            "detail.header_free_fields[0].cart_field",
            "unknown cart field",
        ),
        (
            "unknown line field path",
            with(&|d| d.line_free_fields = vec![free(1, "order_no")]),
            None,
            "detail.line_free_fields[0].cart_field",
            "unknown cart field",
        ),
        (
            "map key missing",
            with(&|d| d.line_free_fields = vec![free(1, "options.")]),
            None,
            "detail.line_free_fields[0].cart_field",
            "key",
        ),
        (
            "negative shipper id",
            with(&|d| d.shipper_id = -1),
            None,
            "detail.shipper_id",
            "positive",
        ),
        (
            "negative delivery method id",
            with(&|d| d.delivery_method_id = -5),
            None,
            "detail.delivery_method_id",
            "positive",
        ),
        (
            "negative robot id",
            with(&|d| d.robot_id = -12),
            None,
            "detail.robot_id",
            "positive",
        ),
        (
            "zero WMS payment method id",
            with(&|d| d.payment_mappings = vec![payment("cod", 0, 0)]),
            None,
            "detail.payment_mappings[0].wms_payment_method_id",
            "positive",
        ),
        (
            "negative delivery company id",
            with(&|d| d.payment_mappings = vec![payment("cod", 7, -1)]),
            None,
            "detail.payment_mappings[0].delivery_company_id",
            "positive",
        ),
        (
            "duplicate payment mapping",
            with(&|d| d.payment_mappings = vec![payment("cod", 7, 0), payment("cod", 8, 0)]),
            None,
            "detail.payment_mappings[1].payment_method_code",
            "twice",
        ),
        (
            "empty payment method code",
            with(&|d| d.payment_mappings = vec![payment("", 7, 0)]),
            None,
            "detail.payment_mappings[0].payment_method_code",
            "empty",
        ),
        (
            "sync period 366",
            with(&|d| d.sync_period_days = 366),
            None,
            "detail.sync_period_days",
            "between 1 and 365",
        ),
        (
            "malformed URL",
            with(&|d| d.endpoint_url = "not a url".into()),
            None,
            "detail.endpoint_url",
            "not a valid URL",
        ),
        (
            "URL with credentials",
            with(&|d| d.endpoint_url = "https://user:pw@api.crobo.jp/v1".into()),
            None,
            "detail.endpoint_url",
            "credentials",
        ),
        (
            "URL with a query",
            with(&|d| d.endpoint_url = "https://api.crobo.jp/v1?debug=1".into()),
            None,
            "detail.endpoint_url",
            "query",
        ),
        (
            "empty URL",
            with(&|d| d.endpoint_url = String::new()),
            None,
            "detail.endpoint_url",
            "must be set",
        ),
        (
            "plain http to a host not allowed",
            with(&|d| d.endpoint_url = "http://api.crobo.jp/v1".into()),
            None,
            "detail.endpoint_url",
            "https",
        ),
        (
            "WMS kind unspecified",
            with(&|d| d.wms_kind = pb::WmsKind::Unspecified as i32),
            None,
            "detail.wms_kind",
            "must be set",
        ),
        (
            "unsupported WMS kind",
            with(&|d| d.wms_kind = 42),
            None,
            "detail.wms_kind",
            "unsupported",
        ),
        (
            "empty access key",
            full_detail(URL),
            Some(""),
            "access_key",
            "empty",
        ),
        (
            "access key with spaces",
            full_detail(URL),
            Some("ak with spaces"),
            "access_key",
            "visible ASCII",
        ),
    ]
}

#[tokio::test]
async fn each_invalid_field_is_refused_and_nothing_is_saved() {
    let app = spawn_app().await;
    let shop = unique_shop();
    app.put_catalog(&shop).await;
    let saved = app
        .register(&shop, 0, full_detail(URL), Some("ak-1234567890"))
        .await
        .expect("valid registration");

    for (what, detail, key, field, reason) in cases() {
        let status = assert_code(
            app.register(&shop, saved.version, detail, key).await,
            Code::InvalidArgument,
        );
        let violations = violations_of(&status);
        assert!(
            violations
                .iter()
                .any(|(f, r)| f == field && r.contains(reason)),
            "{what}: expected {field} ({reason}) in {violations:?}"
        );
        assert!(
            status.message().contains(field),
            "{what}: the message names the field: {}",
            status.message()
        );
    }
    assert_eq!(
        app.get(&shop).await.expect("get"),
        saved,
        "nothing was saved"
    );
}

#[tokio::test]
async fn every_violation_is_listed_at_once() {
    let app = spawn_app().await;
    let shop = unique_shop();
    app.put_catalog(&shop).await;
    let mut detail = full_detail("ftp://x");
    detail.wms_kind = 7;
    detail.target_status_codes = vec!["nope".into()];
    detail.shipper_id = -1;
    detail.sync_period_days = 1000;
    detail.header_free_fields = vec![free(12, "orderer.fax")];
    let status = assert_code(
        app.register(&shop, 0, detail, None).await,
        Code::InvalidArgument,
    );
    let mut fields: Vec<String> = violations_of(&status).into_iter().map(|(f, _)| f).collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "access_key",
            "detail.endpoint_url",
            "detail.header_free_fields[0].cart_field",
            "detail.header_free_fields[0].slot",
            "detail.shipper_id",
            "detail.sync_period_days",
            "detail.target_status_codes[0]",
            "detail.wms_kind",
        ]
    );
    // Nothing saved: still unknown, and the shop's version did not move.
    assert_code(app.get(&shop).await, Code::NotFound);
    let listed = app
        .reader
        .clone()
        .list_order_statuses(pb::ListOrderStatusesRequest {
            shop_id: shop.clone(),
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.version, 1);
}

#[tokio::test]
async fn the_first_registration_needs_a_key_and_a_detail() {
    let app = spawn_app().await;
    let shop = unique_shop();
    app.put_catalog(&shop).await;
    let status = assert_code(
        app.register(&shop, 0, full_detail(URL), None).await,
        Code::InvalidArgument,
    );
    assert_eq!(
        violations_of(&status),
        [(
            "access_key".to_owned(),
            "required on the first registration".to_owned()
        )]
    );

    let status = assert_code(
        app.admin
            .clone()
            .register_settings(pb::RegisterSettingsRequest {
                shop_id: shop.clone(),
                expected_version: 0,
                detail: None,
                access_key: Some("ak-1234567890".into()),
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violations_of(&status)[0].0, "detail");
    assert_code(app.get(&shop).await, Code::NotFound);
}

#[tokio::test]
async fn target_statuses_need_a_catalog() {
    let app = spawn_app().await;
    let shop = unique_shop();
    // No catalog registered: every target status is unknown.
    let status = assert_code(
        app.register(&shop, 0, full_detail(URL), Some("ak-1234567890"))
            .await,
        Code::InvalidArgument,
    );
    let fields: Vec<String> = violations_of(&status).into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        fields,
        [
            "detail.target_status_codes[0]",
            "detail.target_status_codes[1]"
        ]
    );
}

#[tokio::test]
async fn a_bad_shop_id_is_refused_by_every_rpc() {
    let app = spawn_app().await;
    for bad in ["", "a.b", "shop*", &"x".repeat(65)] {
        let status = assert_code(app.get(bad).await, Code::InvalidArgument);
        assert_eq!(violations_of(&status)[0].0, "shop_id");
        let status = assert_code(
            app.register(bad, 0, full_detail(URL), Some("ak-1234567890"))
                .await,
            Code::InvalidArgument,
        );
        assert_eq!(violations_of(&status)[0].0, "shop_id");
    }
}

/// A request with tens of thousands of bad entries is refused with a bounded list (the first
/// 100 violations and a count of the rest), not with an answer too large to deliver.
#[tokio::test]
async fn a_huge_request_gets_a_bounded_list_of_violations() {
    let app = spawn_app().await;
    let shop = unique_shop();
    app.put_catalog(&shop).await;
    let mut detail = full_detail("https://api.crobo.jp/v1");
    detail.target_status_codes = (0..30_000).map(|i| format!("nope-{i}")).collect();
    let status = assert_code(
        app.register(&shop, 0, detail, Some("ak-1234567890")).await,
        Code::InvalidArgument,
    );
    let violations = violations_of(&status);
    assert!(
        violations.len() > 10 && violations.len() <= wmslink_platform::validation::MAX_VIOLATIONS,
        "{}",
        violations.len()
    );
    assert_eq!(violations[0].0, "detail.target_status_codes");
    let (last_field, last_reason) = violations.last().expect("violations");
    assert_eq!(last_field, "");
    assert!(
        last_reason.contains("more violations not listed"),
        "{last_reason}"
    );
    assert!(status.message().contains("violations in all"));
}
