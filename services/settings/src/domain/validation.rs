//! S1, S3: what a valid `RegisterSettings` request is (every bad field listed), with the
//! endpoint URL and access key checks the connection check shares.

use std::collections::HashSet;

use secrecy::SecretString;
use url::{Host, Url};
use wmslink_platform::validation::FieldViolations;
use wmslink_proto::field_paths;
use wmslink_proto::settings::v1 as pb;
use wmslink_wms_client::WmsClientConfig;

use super::model::{
    DataTargets, Detail, FreeFieldMapping, OrderStatus, PaymentMapping, StatusKind, WmsKind,
    find_status,
};

/// S3 ⑧: the default sync period and its bounds.
pub const DEFAULT_SYNC_PERIOD_DAYS: u32 = 30;
pub const MAX_SYNC_PERIOD_DAYS: u32 = 365;
/// `free1` … `free10`.
pub const MAX_FREE_FIELD_SLOT: u32 = 10;
pub const MAX_CODE_LEN: usize = 64;
pub const MAX_URL_LEN: usize = 2048;
pub const MAX_ACCESS_KEY_LEN: usize = 256;
pub const MAX_TARGET_STATUSES: usize = 100;
pub const MAX_PAYMENT_MAPPINGS: usize = 100;
pub const MAX_FIELD_PATH_LEN: usize = 100;

/// A checked endpoint URL, or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlProblem {
    Malformed(String),
    HttpNotAllowed(String),
    /// Not one of `wms.allowed_hosts`.
    HostNotAllowed(String),
}

/// Parses and normalises an endpoint URL: http(s), a host, no credentials, query or fragment,
/// trailing slashes stripped. Plain http is a [`UrlProblem::HttpNotAllowed`] unless the host is
/// allowed by `wms`.
pub fn parse_endpoint_url(raw: &str, wms: &WmsClientConfig) -> Result<String, UrlProblem> {
    let malformed = |why: &str| UrlProblem::Malformed(why.to_owned());
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(malformed("must be set"));
    }
    if trimmed.len() > MAX_URL_LEN {
        return Err(UrlProblem::Malformed(format!(
            "must be at most {MAX_URL_LEN} characters"
        )));
    }
    let url = Url::parse(trimmed).map_err(|err| {
        UrlProblem::Malformed(format!(
            "is not a valid URL ({err}); e.g. https://api.crobo.jp/v1"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(malformed("must be an https:// URL"));
    }
    let host = match url.host() {
        Some(Host::Domain(domain)) if !domain.is_empty() => domain.to_owned(),
        Some(Host::Ipv4(ip)) => ip.to_string(),
        Some(Host::Ipv6(ip)) => ip.to_string(),
        _ => return Err(malformed("must name a host")),
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(malformed("must not contain credentials"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(malformed("must not have a query or fragment"));
    }
    if !wms.host_allowed(&host) {
        return Err(UrlProblem::HostNotAllowed(format!(
            "must name one of the configured WMS hosts, not {host}"
        )));
    }
    if url.scheme() == "http" && !wms.http_allowed_for(&host) {
        return Err(UrlProblem::HttpNotAllowed(format!(
            "must use https (plain http is allowed only for configured hosts, not {host})"
        )));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Checks an access key given in a request. Messages never repeat the key.
pub fn check_access_key(raw: &str) -> Result<SecretString, &'static str> {
    if raw.is_empty() {
        return Err("must not be empty (leave it out to keep the stored key)");
    }
    if raw.len() > MAX_ACCESS_KEY_LEN || !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be 1 to 256 visible ASCII characters without spaces");
    }
    Ok(SecretString::from(raw.to_owned()))
}

/// Checks a cart code (status or payment method): 1..=64 characters, no control characters,
/// no surrounding spaces.
pub(super) fn check_code(raw: &str) -> Result<(), String> {
    if raw.is_empty() {
        return Err("must not be empty".into());
    }
    if raw.chars().count() > MAX_CODE_LEN {
        return Err(format!("must be at most {MAX_CODE_LEN} characters"));
    }
    if raw.chars().any(char::is_control) || raw.trim() != raw {
        return Err("must not contain control characters or surrounding spaces".into());
    }
    Ok(())
}

/// What the validation of a registration needs to know besides the request.
pub struct RegisterContext<'a> {
    pub catalog: &'a [OrderStatus],
    pub wms: &'a WmsClientConfig,
    /// The endpoint URL the stored key was registered with, if a key is stored. The request
    /// may leave the key out only while it keeps this URL (I7: the stored key is only ever
    /// sent to the endpoint it was registered with).
    pub stored_endpoint_url: Option<&'a str>,
}

/// Why a request that names a new endpoint must bring the key again.
pub const KEY_REQUIRED_FOR_NEW_URL: &str = "required when endpoint_url differs from the registered endpoint: the stored key is only ever sent to the URL it was registered with";

/// A valid registration.
#[derive(Debug)]
pub struct Registration {
    pub detail: Detail,
    /// `None`: keep the stored key.
    pub access_key: Option<SecretString>,
}

/// Validates a `RegisterSettings` request; every violation is listed.
pub fn validate_registration(
    detail: Option<&pb::DetailSettings>,
    access_key: Option<&str>,
    ctx: &RegisterContext<'_>,
) -> Result<Registration, FieldViolations> {
    let mut violations = FieldViolations::new();
    let access_key_raw_missing = access_key.is_none();
    let access_key = match access_key {
        Some(raw) => match check_access_key(raw) {
            Ok(key) => Some(key),
            Err(why) => {
                violations.add("access_key", why);
                None
            }
        },
        None => {
            if ctx.stored_endpoint_url.is_none() {
                violations.add("access_key", "required on the first registration");
            }
            None
        }
    };
    let Some(detail) = detail else {
        violations.add("detail", "must be set");
        return Err(violations);
    };
    let detail = validate_detail(detail, ctx, &mut violations);
    if let (None, Some(stored_url), Some(detail)) = (&access_key, ctx.stored_endpoint_url, &detail)
        && access_key_raw_missing
        && detail.endpoint_url != stored_url
    {
        violations.add("access_key", KEY_REQUIRED_FOR_NEW_URL);
    }
    match detail {
        Some(detail) if violations.is_empty() => Ok(Registration { detail, access_key }),
        _ => Err(violations),
    }
}

fn validate_detail(
    raw: &pb::DetailSettings,
    ctx: &RegisterContext<'_>,
    v: &mut FieldViolations,
) -> Option<Detail> {
    let wms_kind = match pb::WmsKind::try_from(raw.wms_kind) {
        Ok(pb::WmsKind::CommerceRobo) => Some(WmsKind::CommerceRobo),
        Ok(pb::WmsKind::Unspecified) => {
            v.add("detail.wms_kind", "must be set (WMS_KIND_COMMERCE_ROBO)");
            None
        }
        Err(_) => {
            v.add(
                "detail.wms_kind",
                format!(
                    "unsupported WMS kind {}; only WMS_KIND_COMMERCE_ROBO is supported",
                    raw.wms_kind
                ),
            );
            None
        }
    };
    let endpoint_url = match parse_endpoint_url(&raw.endpoint_url, ctx.wms) {
        Ok(url) => Some(url),
        Err(
            UrlProblem::Malformed(why)
            | UrlProblem::HttpNotAllowed(why)
            | UrlProblem::HostNotAllowed(why),
        ) => {
            v.add("detail.endpoint_url", why);
            None
        }
    };
    let data_targets = raw
        .data_targets
        .map(|t| DataTargets {
            shipment_instructions: t.shipment_instructions,
            cancellations: t.cancellations,
            shipment_results: t.shipment_results,
        })
        .unwrap_or_default();

    // ⑤ target statuses: from the catalog, not cancelled, no duplicates.
    if raw.target_status_codes.len() > MAX_TARGET_STATUSES {
        v.add(
            "detail.target_status_codes",
            format!("at most {MAX_TARGET_STATUSES} statuses"),
        );
    }
    let mut seen = HashSet::new();
    for (index, code) in raw.target_status_codes.iter().enumerate() {
        let field = format!("detail.target_status_codes[{index}]");
        if let Err(why) = check_code(code) {
            v.add(field, why);
            continue;
        }
        if !seen.insert(code.as_str()) {
            v.add(field, format!("order status '{code}' is listed twice"));
            continue;
        }
        match find_status(ctx.catalog, code) {
            None => v.add(
                field,
                format!(
                    "unknown order status '{code}': not in the shop's order-status catalog (PutOrderStatusCatalog)"
                ),
            ),
            Some(status) if status.kind == StatusKind::Cancelled => v.add(
                field,
                format!("order status '{code}' is a cancelled status and cannot trigger shipment instructions"),
            ),
            Some(_) => {}
        }
    }

    // ⑥ ⑦ ⑨ WMS ids: 0 = not set yet, else positive.
    for (field, value) in [
        ("detail.shipper_id", raw.shipper_id),
        ("detail.delivery_method_id", raw.delivery_method_id),
        ("detail.robot_id", raw.robot_id),
    ] {
        if value < 0 {
            v.add(field, "must be a positive WMS id (or 0 while not set)");
        }
    }

    // ⑧ sync period.
    let sync_period_days = match raw.sync_period_days {
        0 => DEFAULT_SYNC_PERIOD_DAYS,
        days if days > MAX_SYNC_PERIOD_DAYS => {
            v.add(
                "detail.sync_period_days",
                format!("must be between 1 and {MAX_SYNC_PERIOD_DAYS} days (0 for the default, {DEFAULT_SYNC_PERIOD_DAYS})"),
            );
            DEFAULT_SYNC_PERIOD_DAYS
        }
        days => days,
    };

    // ⑩ ⑪ payment mappings.
    if raw.payment_mappings.len() > MAX_PAYMENT_MAPPINGS {
        v.add(
            "detail.payment_mappings",
            format!("at most {MAX_PAYMENT_MAPPINGS} mappings"),
        );
    }
    let mut codes = HashSet::new();
    for (index, mapping) in raw.payment_mappings.iter().enumerate() {
        let prefix = format!("detail.payment_mappings[{index}]");
        match check_code(&mapping.payment_method_code) {
            Err(why) => v.add(format!("{prefix}.payment_method_code"), why),
            Ok(()) => {
                if !codes.insert(mapping.payment_method_code.as_str()) {
                    v.add(
                        format!("{prefix}.payment_method_code"),
                        format!(
                            "payment method '{}' is mapped twice",
                            mapping.payment_method_code
                        ),
                    );
                }
            }
        }
        if mapping.wms_payment_method_id <= 0 {
            v.add(
                format!("{prefix}.wms_payment_method_id"),
                "must be a positive WMS payment method id",
            );
        }
        if mapping.delivery_company_id < 0 {
            v.add(
                format!("{prefix}.delivery_company_id"),
                "must be a positive WMS delivery company id, or 0 for no override",
            );
        }
    }

    // ⑫ ⑬ free fields.
    let header_free_fields = validate_free_fields(
        &raw.header_free_fields,
        "detail.header_free_fields",
        field_paths::validate_header_path,
        v,
    );
    let line_free_fields = validate_free_fields(
        &raw.line_free_fields,
        "detail.line_free_fields",
        field_paths::validate_line_path,
        v,
    );

    // Multi-channel accounts: an order-number prefix, as order numbers are written.
    if !raw.wms_order_no_prefix.is_empty()
        && let Err(err) = wmslink_platform::shop::OrderNo::parse(&raw.wms_order_no_prefix)
    {
        v.add("detail.wms_order_no_prefix", err.to_string());
    }

    Some(Detail {
        wms_kind: wms_kind?,
        endpoint_url: endpoint_url?,
        data_targets,
        target_status_codes: raw.target_status_codes.clone(),
        shipper_id: raw.shipper_id,
        delivery_method_id: raw.delivery_method_id,
        sync_period_days,
        robot_id: raw.robot_id,
        payment_mappings: raw
            .payment_mappings
            .iter()
            .map(|m| PaymentMapping {
                payment_method_code: m.payment_method_code.clone(),
                wms_payment_method_id: m.wms_payment_method_id,
                delivery_company_id: m.delivery_company_id,
            })
            .collect(),
        header_free_fields,
        line_free_fields,
        wms_order_no_prefix: raw.wms_order_no_prefix.clone(),
    })
}

fn validate_free_fields(
    raw: &[pb::FreeFieldMapping],
    name: &str,
    check_path: fn(&str) -> Result<(), field_paths::FieldPathError>,
    v: &mut FieldViolations,
) -> Vec<FreeFieldMapping> {
    let mut slots = HashSet::new();
    for (index, mapping) in raw.iter().enumerate() {
        let prefix = format!("{name}[{index}]");
        if !(1..=MAX_FREE_FIELD_SLOT).contains(&mapping.slot) {
            v.add(
                format!("{prefix}.slot"),
                format!(
                    "slot {} is out of range: must be 1 to {MAX_FREE_FIELD_SLOT} (free1…free{MAX_FREE_FIELD_SLOT})",
                    mapping.slot
                ),
            );
        } else if !slots.insert(mapping.slot) {
            v.add(
                format!("{prefix}.slot"),
                format!("slot free{} is mapped twice", mapping.slot),
            );
        }
        if mapping.cart_field.len() > MAX_FIELD_PATH_LEN {
            v.add(
                format!("{prefix}.cart_field"),
                format!("must be at most {MAX_FIELD_PATH_LEN} characters"),
            );
        } else if let Err(err) = check_path(&mapping.cart_field) {
            v.add(format!("{prefix}.cart_field"), err.to_string());
        }
    }
    raw.iter()
        .map(|m| FreeFieldMapping {
            slot: m.slot,
            cart_field: m.cart_field.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::domain::enable_switch::completeness_blockers;
    use crate::domain::fixtures::{catalog, full, validate, wms};

    #[test]
    fn a_full_registration_is_valid_and_normalised() {
        let registration = validate(&full(), Some("key-1234567890")).unwrap();
        assert_eq!(
            registration.detail.endpoint_url,
            "https://api12.crobo.jp/v1"
        );
        assert_eq!(
            registration.detail.sync_period_days,
            DEFAULT_SYNC_PERIOD_DAYS
        );
        assert!(completeness_blockers(&registration.detail, &catalog()).is_empty());
        assert_eq!(
            registration.detail.to_proto().endpoint_url,
            "https://api12.crobo.jp/v1"
        );
    }

    #[test]
    fn every_bad_field_is_listed() {
        let mut detail = full();
        detail.wms_kind = 9;
        detail.endpoint_url = "not a url".into();
        detail.target_status_codes =
            vec!["paid".into(), "paid".into(), "nope".into(), "cancel".into()];
        detail.shipper_id = -1;
        detail.sync_period_days = 366;
        detail.payment_mappings.push(pb::PaymentMapping {
            payment_method_code: "cod".into(),
            wms_payment_method_id: 0,
            delivery_company_id: -2,
        });
        detail.header_free_fields.push(pb::FreeFieldMapping {
            slot: 1,
            cart_field: "orderer.fax".into(),
        });
        detail.line_free_fields.push(pb::FreeFieldMapping {
            slot: 11,
            cart_field: "sku".into(),
        });
        detail.wms_order_no_prefix = "WEB 1".into();
        let fields = validate(&detail, None).unwrap_err();
        for expected in [
            "access_key",
            "detail.wms_kind",
            "detail.endpoint_url",
            "detail.target_status_codes[1]",
            "detail.target_status_codes[2]",
            "detail.target_status_codes[3]",
            "detail.shipper_id",
            "detail.sync_period_days",
            "detail.payment_mappings[1].payment_method_code",
            "detail.payment_mappings[1].wms_payment_method_id",
            "detail.payment_mappings[1].delivery_company_id",
            "detail.header_free_fields[1].slot",
            "detail.header_free_fields[1].cart_field",
            "detail.line_free_fields[1].slot",
            "detail.wms_order_no_prefix",
        ] {
            assert!(
                fields.iter().any(|f| f == expected),
                "{expected} missing in {fields:?}"
            );
        }
        assert_eq!(fields.len(), 15, "{fields:?}");
    }

    #[test]
    fn urls_are_checked_and_http_needs_an_allowed_host() {
        let wms = wms();
        assert_eq!(
            parse_endpoint_url("http://LOCALHOST:8080/v1//", &wms),
            Ok("http://localhost:8080/v1".into())
        );
        assert!(matches!(
            parse_endpoint_url("http://api.crobo.jp/v1", &wms),
            Err(UrlProblem::HttpNotAllowed(_))
        ));
        let production = WmsClientConfig {
            allowed_hosts: vec!["*.crobo.jp".into()],
            ..WmsClientConfig::default()
        };
        assert!(parse_endpoint_url("https://api12.crobo.jp/v1", &production).is_ok());
        assert!(matches!(
            parse_endpoint_url("https://listener.example/v1", &production),
            Err(UrlProblem::HostNotAllowed(_))
        ));
        for bad in [
            "",
            "api.crobo.jp/v1",
            "ftp://api.crobo.jp",
            "https://user:pw@api.crobo.jp",
            "https://api.crobo.jp/v1?x=1",
            "https://api.crobo.jp/v1#f",
            "https://",
        ] {
            assert!(
                matches!(parse_endpoint_url(bad, &wms), Err(UrlProblem::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn access_keys_are_checked_without_echo() {
        assert!(check_access_key("abc-DEF_123").is_ok());
        for bad in ["", "with space", "tab\tkey", "ключ"] {
            let why = check_access_key(bad).unwrap_err();
            assert!(bad.is_empty() || !why.contains(bad));
        }
        assert!(check_access_key(&"k".repeat(MAX_ACCESS_KEY_LEN + 1)).is_err());
    }
}
