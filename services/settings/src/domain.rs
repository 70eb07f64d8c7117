//! The settings of one shop, their validation (S1, S3) and the rules for enabling (S4) and for
//! changing the order-status catalog. Pure: no I/O, so every rule is unit-tested here.

use std::collections::HashSet;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use url::{Host, Url};
use wmslink_platform::validation::FieldViolations;
use wmslink_proto::field_paths;
use wmslink_proto::settings::v1 as pb;
use wmslink_wms_client::WmsClientConfig;

/// S3 ⑧: the default sync period and its bounds.
pub const DEFAULT_SYNC_PERIOD_DAYS: u32 = 30;
pub const MAX_SYNC_PERIOD_DAYS: u32 = 365;
/// `free1` … `free10`.
pub const MAX_FREE_FIELD_SLOT: u32 = 10;
pub const MAX_CODE_LEN: usize = 64;
pub const MAX_DISPLAY_NAME_LEN: usize = 200;
pub const MAX_URL_LEN: usize = 2048;
pub const MAX_ACCESS_KEY_LEN: usize = 256;
pub const MAX_TARGET_STATUSES: usize = 100;
pub const MAX_PAYMENT_MAPPINGS: usize = 100;
pub const MAX_CATALOG_STATUSES: usize = 500;
pub const MAX_FIELD_PATH_LEN: usize = 100;

/// S1: the WMS product. Stored as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WmsKind {
    CommerceRobo,
}

impl WmsKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CommerceRobo => "commerce_robo",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "commerce_robo" => Some(Self::CommerceRobo),
            _ => None,
        }
    }

    pub fn to_proto(self) -> pb::WmsKind {
        match self {
            Self::CommerceRobo => pb::WmsKind::CommerceRobo,
        }
    }
}

/// S3 ④.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataTargets {
    pub shipment_instructions: bool,
    pub cancellations: bool,
    pub shipment_results: bool,
}

/// S3 ⑩ ⑪.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentMapping {
    pub payment_method_code: String,
    pub wms_payment_method_id: i64,
    /// 0: no override.
    pub delivery_company_id: i64,
}

/// S3 ⑫ ⑬.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreeFieldMapping {
    pub slot: u32,
    pub cart_field: String,
}

/// The detail settings of S1 and S3, valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detail {
    pub wms_kind: WmsKind,
    /// Normalised: no trailing slash.
    pub endpoint_url: String,
    pub data_targets: DataTargets,
    pub target_status_codes: Vec<String>,
    /// 0: not set yet.
    pub shipper_id: i64,
    pub delivery_method_id: i64,
    pub sync_period_days: u32,
    pub robot_id: i64,
    pub payment_mappings: Vec<PaymentMapping>,
    pub header_free_fields: Vec<FreeFieldMapping>,
    pub line_free_fields: Vec<FreeFieldMapping>,
}

impl Detail {
    pub fn to_proto(&self) -> pb::DetailSettings {
        let free = |fields: &[FreeFieldMapping]| {
            fields
                .iter()
                .map(|f| pb::FreeFieldMapping {
                    slot: f.slot,
                    cart_field: f.cart_field.clone(),
                })
                .collect()
        };
        pb::DetailSettings {
            wms_kind: self.wms_kind.to_proto() as i32,
            endpoint_url: self.endpoint_url.clone(),
            data_targets: Some(pb::DataTargets {
                shipment_instructions: self.data_targets.shipment_instructions,
                cancellations: self.data_targets.cancellations,
                shipment_results: self.data_targets.shipment_results,
            }),
            target_status_codes: self.target_status_codes.clone(),
            shipper_id: self.shipper_id,
            delivery_method_id: self.delivery_method_id,
            sync_period_days: self.sync_period_days,
            robot_id: self.robot_id,
            payment_mappings: self
                .payment_mappings
                .iter()
                .map(|m| pb::PaymentMapping {
                    payment_method_code: m.payment_method_code.clone(),
                    wms_payment_method_id: m.wms_payment_method_id,
                    delivery_company_id: m.delivery_company_id,
                })
                .collect(),
            header_free_fields: free(&self.header_free_fields),
            line_free_fields: free(&self.line_free_fields),
        }
    }
}

/// The kind of a cart order status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusKind {
    Open,
    Cancelled,
    Completed,
}

impl StatusKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Cancelled => "cancelled",
            Self::Completed => "completed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "open" => Some(Self::Open),
            "cancelled" => Some(Self::Cancelled),
            "completed" => Some(Self::Completed),
            _ => None,
        }
    }

    pub fn from_proto(raw: i32) -> Option<Self> {
        match pb::OrderStatusKind::try_from(raw).ok()? {
            pb::OrderStatusKind::Open => Some(Self::Open),
            pb::OrderStatusKind::Cancelled => Some(Self::Cancelled),
            pb::OrderStatusKind::Completed => Some(Self::Completed),
            pb::OrderStatusKind::Unspecified => None,
        }
    }

    pub fn to_proto(self) -> pb::OrderStatusKind {
        match self {
            Self::Open => pb::OrderStatusKind::Open,
            Self::Cancelled => pb::OrderStatusKind::Cancelled,
            Self::Completed => pb::OrderStatusKind::Completed,
        }
    }
}

/// One entry of the shop's order-status catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderStatus {
    pub code: String,
    pub display_name: String,
    pub kind: StatusKind,
}

impl OrderStatus {
    pub fn to_proto(&self) -> pb::OrderStatus {
        pb::OrderStatus {
            code: self.code.clone(),
            display_name: self.display_name.clone(),
            kind: self.kind.to_proto() as i32,
        }
    }
}

fn find<'a>(catalog: &'a [OrderStatus], code: &str) -> Option<&'a OrderStatus> {
    catalog.iter().find(|status| status.code == code)
}

/// Why a request cannot be carried out in the current state (FAILED_PRECONDITION).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocker {
    /// `CONNECTION_CHECK`, `INCOMPLETE`, `STATUS_IN_USE`, `ENABLED`.
    pub kind: &'static str,
    /// The setting concerned, e.g. `detail.shipper_id`.
    pub subject: String,
    pub description: String,
}

impl Blocker {
    fn new(kind: &'static str, subject: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            kind,
            subject: subject.into(),
            description: description.into(),
        }
    }
}

/// The outcome of a connection check, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOutcome {
    Ok,
    Unauthorized,
    Unreachable,
    Tls,
    Timeout,
    RateLimited,
    UnexpectedAnswer,
    RefusedByPolicy,
}

impl CheckOutcome {
    pub const ALL: [Self; 8] = [
        Self::Ok,
        Self::Unauthorized,
        Self::Unreachable,
        Self::Tls,
        Self::Timeout,
        Self::RateLimited,
        Self::UnexpectedAnswer,
        Self::RefusedByPolicy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Unauthorized => "unauthorized",
            Self::Unreachable => "unreachable",
            Self::Tls => "tls",
            Self::Timeout => "timeout",
            Self::RateLimited => "rate_limited",
            Self::UnexpectedAnswer => "unexpected_answer",
            Self::RefusedByPolicy => "refused_by_policy",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|outcome| outcome.as_str() == raw)
    }

    pub fn to_proto(self) -> pb::ConnectionCheckOutcome {
        use pb::ConnectionCheckOutcome as P;
        match self {
            Self::Ok => P::Ok,
            Self::Unauthorized => P::Unauthorized,
            Self::Unreachable => P::Unreachable,
            Self::Tls => P::Tls,
            Self::Timeout => P::Timeout,
            Self::RateLimited => P::RateLimited,
            Self::UnexpectedAnswer => P::UnexpectedAnswer,
            Self::RefusedByPolicy => P::RefusedByPolicy,
        }
    }
}

/// The last connection check, bound to the credentials revision it was made with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRecord {
    pub outcome: CheckOutcome,
    pub detail: String,
    pub checked_at: chrono::DateTime<chrono::Utc>,
    pub credentials_rev: i64,
}

/// Why the connection check does not allow enabling, if it does not.
pub fn check_blocker(check: Option<&CheckRecord>, credentials_rev: i64) -> Option<Blocker> {
    const SUBJECT: &str = "last_connection_check";
    match check {
        None => Some(Blocker::new(
            "CONNECTION_CHECK",
            SUBJECT,
            "no connection check has been made with the stored access key and endpoint URL; run CheckConnection first",
        )),
        Some(check) if check.credentials_rev != credentials_rev => Some(Blocker::new(
            "CONNECTION_CHECK",
            SUBJECT,
            "the access key or endpoint URL changed after the last connection check; run CheckConnection again",
        )),
        Some(check) if check.outcome != CheckOutcome::Ok => Some(Blocker::new(
            "CONNECTION_CHECK",
            SUBJECT,
            format!(
                "the last connection check failed ({}): {}",
                check.outcome.as_str(),
                check.detail
            ),
        )),
        Some(_) => None,
    }
}

/// What the detail settings lack before the integration may be enabled (S4).
///
/// "Complete" means:
/// - at least one data target is on;
/// - with shipment instructions on: at least one target order status, every one still in the
///   catalog and not of kind cancelled; shipper id, delivery method id and conversion robot id
///   set; at least one payment method mapping (orders paid with an unmapped method are put in
///   error by the dispatcher, naming the method);
/// - with cancellations on: the catalog has at least one status of kind cancelled (otherwise
///   no cart cancellation could ever be recognised).
pub fn completeness_blockers(detail: &Detail, catalog: &[OrderStatus]) -> Vec<Blocker> {
    let mut blockers = Vec::new();
    let mut missing = |subject: &str, description: String| {
        blockers.push(Blocker::new("INCOMPLETE", subject, description));
    };
    let targets = detail.data_targets;
    if !(targets.shipment_instructions || targets.cancellations || targets.shipment_results) {
        missing(
            "detail.data_targets",
            "no data target is on (shipment instructions, cancellations or shipment results)"
                .into(),
        );
    }
    if targets.shipment_instructions {
        if detail.target_status_codes.is_empty() {
            missing(
                "detail.target_status_codes",
                "shipment instructions need at least one target order status".into(),
            );
        }
        for (index, code) in detail.target_status_codes.iter().enumerate() {
            match find(catalog, code) {
                None => missing(
                    &format!("detail.target_status_codes[{index}]"),
                    format!("order status '{code}' is not in the shop's order-status catalog"),
                ),
                Some(status) if status.kind == StatusKind::Cancelled => missing(
                    &format!("detail.target_status_codes[{index}]"),
                    format!("order status '{code}' is of kind cancelled"),
                ),
                Some(_) => {}
            }
        }
        for (subject, value, what) in [
            (
                "detail.shipper_id",
                detail.shipper_id,
                "the WMS shipper id (発送元)",
            ),
            (
                "detail.delivery_method_id",
                detail.delivery_method_id,
                "the WMS delivery method id (配送方法)",
            ),
            (
                "detail.robot_id",
                detail.robot_id,
                "the WMS conversion robot id (変換ロボットID)",
            ),
        ] {
            if value <= 0 {
                missing(subject, format!("shipment instructions need {what}"));
            }
        }
        if detail.payment_mappings.is_empty() {
            missing(
                "detail.payment_mappings",
                "shipment instructions need at least one payment method mapping (支払方法)".into(),
            );
        }
    }
    if targets.cancellations && !catalog.iter().any(|s| s.kind == StatusKind::Cancelled) {
        missing(
            "order_status_catalog",
            "cancellations need at least one order status of kind cancelled in the catalog".into(),
        );
    }
    blockers
}

/// What a new catalog would break in the registered settings (refused when not empty).
pub fn catalog_blockers(
    detail: &Detail,
    enabled: bool,
    new_catalog: &[OrderStatus],
) -> Vec<Blocker> {
    let mut blockers = Vec::new();
    for (index, code) in detail.target_status_codes.iter().enumerate() {
        let subject = format!("detail.target_status_codes[{index}]");
        match find(new_catalog, code) {
            None => blockers.push(Blocker::new(
                "STATUS_IN_USE",
                subject,
                format!(
                    "order status '{code}' is a target order status of the registered settings; remove it from the target statuses first"
                ),
            )),
            Some(status) if status.kind == StatusKind::Cancelled => blockers.push(Blocker::new(
                "STATUS_IN_USE",
                subject,
                format!(
                    "order status '{code}' is a target order status of the registered settings and cannot become a cancelled status"
                ),
            )),
            Some(_) => {}
        }
    }
    if enabled
        && detail.data_targets.cancellations
        && !new_catalog.iter().any(|s| s.kind == StatusKind::Cancelled)
    {
        blockers.push(Blocker::new(
            "STATUS_IN_USE",
            "detail.data_targets.cancellations",
            "the integration is enabled with cancellations on, which needs at least one order status of kind cancelled",
        ));
    }
    blockers
}

/// A checked endpoint URL, or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlProblem {
    Malformed(String),
    HttpNotAllowed(String),
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
fn check_code(raw: &str) -> Result<(), String> {
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
    /// A key is stored already (the request may leave it out).
    pub key_stored: bool,
}

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
    let access_key = match access_key {
        Some(raw) => match check_access_key(raw) {
            Ok(key) => Some(key),
            Err(why) => {
                violations.add("access_key", why);
                None
            }
        },
        None => {
            if !ctx.key_stored {
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
        Err(UrlProblem::Malformed(why) | UrlProblem::HttpNotAllowed(why)) => {
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
        match find(ctx.catalog, code) {
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

/// Validates a whole catalog (`PutOrderStatusCatalog`).
pub fn validate_catalog(raw: &[pb::OrderStatus]) -> Result<Vec<OrderStatus>, FieldViolations> {
    let mut v = FieldViolations::new();
    if raw.len() > MAX_CATALOG_STATUSES {
        v.add(
            "statuses",
            format!("at most {MAX_CATALOG_STATUSES} statuses"),
        );
        return Err(v);
    }
    let mut seen = HashSet::new();
    let mut statuses = Vec::with_capacity(raw.len());
    for (index, status) in raw.iter().enumerate() {
        let prefix = format!("statuses[{index}]");
        match check_code(&status.code) {
            Err(why) => v.add(format!("{prefix}.code"), why),
            Ok(()) => {
                if !seen.insert(status.code.as_str()) {
                    v.add(
                        format!("{prefix}.code"),
                        format!("order status '{}' is listed twice", status.code),
                    );
                }
            }
        }
        let name = status.display_name.trim();
        if name.is_empty() {
            v.add(format!("{prefix}.display_name"), "must not be empty");
        } else if status.display_name.chars().count() > MAX_DISPLAY_NAME_LEN {
            v.add(
                format!("{prefix}.display_name"),
                format!("must be at most {MAX_DISPLAY_NAME_LEN} characters"),
            );
        } else if status.display_name.chars().any(char::is_control) {
            v.add(
                format!("{prefix}.display_name"),
                "must not contain control characters",
            );
        }
        match StatusKind::from_proto(status.kind) {
            Some(kind) => statuses.push(OrderStatus {
                code: status.code.clone(),
                display_name: status.display_name.clone(),
                kind,
            }),
            None => v.add(
                format!("{prefix}.kind"),
                "must be ORDER_STATUS_KIND_OPEN, _CANCELLED or _COMPLETED",
            ),
        }
    }
    if v.is_empty() { Ok(statuses) } else { Err(v) }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn catalog() -> Vec<OrderStatus> {
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

    fn wms() -> WmsClientConfig {
        WmsClientConfig {
            allow_http_hosts: vec!["localhost".into()],
            ..WmsClientConfig::default()
        }
    }

    fn full() -> pb::DetailSettings {
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
        }
    }

    fn validate(
        detail: &pb::DetailSettings,
        key: Option<&str>,
    ) -> Result<Registration, Vec<String>> {
        let catalog = catalog();
        let wms = wms();
        let ctx = RegisterContext {
            catalog: &catalog,
            wms: &wms,
            key_stored: false,
        };
        validate_registration(Some(detail), key, &ctx)
            .map_err(|v| v.iter().map(|(field, _)| field.to_owned()).collect())
    }

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
        ] {
            assert!(
                fields.iter().any(|f| f == expected),
                "{expected} missing in {fields:?}"
            );
        }
        assert_eq!(fields.len(), 14, "{fields:?}");
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

    #[test]
    fn unset_wms_ids_are_allowed_but_make_the_settings_incomplete() {
        let mut detail = full();
        detail.shipper_id = 0;
        detail.delivery_method_id = 0;
        detail.robot_id = 0;
        detail.payment_mappings.clear();
        detail.target_status_codes.clear();
        let registration = validate(&detail, Some("key-1")).unwrap();
        let subjects: Vec<String> = completeness_blockers(&registration.detail, &catalog())
            .into_iter()
            .map(|b| b.subject)
            .collect();
        assert_eq!(
            subjects,
            [
                "detail.target_status_codes",
                "detail.shipper_id",
                "detail.delivery_method_id",
                "detail.robot_id",
                "detail.payment_mappings"
            ]
        );
    }

    #[test]
    fn without_shipment_instructions_ids_are_not_needed() {
        let mut detail = full();
        detail.data_targets = Some(pb::DataTargets {
            shipment_instructions: false,
            cancellations: false,
            shipment_results: true,
        });
        detail.shipper_id = 0;
        detail.payment_mappings.clear();
        let registration = validate(&detail, Some("key-1")).unwrap();
        assert!(completeness_blockers(&registration.detail, &catalog()).is_empty());

        let mut none = registration.detail.clone();
        none.data_targets = DataTargets::default();
        assert_eq!(
            completeness_blockers(&none, &catalog())[0].subject,
            "detail.data_targets"
        );
    }

    #[test]
    fn cancellations_need_a_cancelled_status() {
        let registration = validate(&full(), Some("key-1")).unwrap();
        let open_only: Vec<OrderStatus> = catalog()
            .into_iter()
            .filter(|s| s.kind != StatusKind::Cancelled)
            .collect();
        let blockers = completeness_blockers(&registration.detail, &open_only);
        assert_eq!(blockers.len(), 1);
        assert_eq!(blockers[0].subject, "order_status_catalog");
    }

    #[test]
    fn catalog_changes_may_not_drop_target_statuses() {
        let registration = validate(&full(), Some("key-1")).unwrap();
        let without_paid: Vec<OrderStatus> =
            catalog().into_iter().filter(|s| s.code != "paid").collect();
        let blockers = catalog_blockers(&registration.detail, false, &without_paid);
        assert_eq!(blockers.len(), 1);
        assert!(blockers[0].description.contains("'paid'"));

        let mut paid_cancelled = catalog();
        paid_cancelled[1].kind = StatusKind::Cancelled;
        assert_eq!(
            catalog_blockers(&registration.detail, false, &paid_cancelled).len(),
            1
        );

        let no_cancel: Vec<OrderStatus> = catalog()
            .into_iter()
            .filter(|s| s.code != "cancel")
            .collect();
        assert!(catalog_blockers(&registration.detail, false, &no_cancel).is_empty());
        assert_eq!(
            catalog_blockers(&registration.detail, true, &no_cancel).len(),
            1
        );
    }

    #[test]
    fn the_check_must_be_ok_and_current() {
        let at = chrono::Utc::now();
        let ok = CheckRecord {
            outcome: CheckOutcome::Ok,
            detail: "connected".into(),
            checked_at: at,
            credentials_rev: 2,
        };
        assert!(check_blocker(Some(&ok), 2).is_none());
        assert!(check_blocker(None, 2).is_some());
        assert!(
            check_blocker(Some(&ok), 3)
                .unwrap()
                .description
                .contains("changed")
        );
        let failed = CheckRecord {
            outcome: CheckOutcome::Unauthorized,
            ..ok
        };
        assert!(
            check_blocker(Some(&failed), 2)
                .unwrap()
                .description
                .contains("unauthorized")
        );
    }

    #[test]
    fn catalog_validation_lists_every_problem() {
        let raw = vec![
            pb::OrderStatus {
                code: "a".into(),
                display_name: "A".into(),
                kind: pb::OrderStatusKind::Open as i32,
            },
            pb::OrderStatus {
                code: "a".into(),
                display_name: " ".into(),
                kind: 0,
            },
            pb::OrderStatus {
                code: "".into(),
                display_name: "C".into(),
                kind: 42,
            },
        ];
        let fields: Vec<String> = validate_catalog(&raw)
            .unwrap_err()
            .iter()
            .map(|(f, _)| f.to_owned())
            .collect();
        assert_eq!(
            fields,
            [
                "statuses[1].code",
                "statuses[1].display_name",
                "statuses[1].kind",
                "statuses[2].code",
                "statuses[2].kind"
            ]
        );
    }

    #[test]
    fn outcomes_round_trip_through_text() {
        for outcome in CheckOutcome::ALL {
            assert_eq!(CheckOutcome::parse(outcome.as_str()), Some(outcome));
        }
        for kind in [
            StatusKind::Open,
            StatusKind::Cancelled,
            StatusKind::Completed,
        ] {
            assert_eq!(StatusKind::parse(kind.as_str()), Some(kind));
            assert_eq!(StatusKind::from_proto(kind.to_proto() as i32), Some(kind));
        }
        assert_eq!(WmsKind::parse("commerce_robo"), Some(WmsKind::CommerceRobo));
    }
}
