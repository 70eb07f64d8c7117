//! Wire types of `wms-api.md`: shipment-instruction rows, orders, per-row results, search
//! queries, and the status tables.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDate, SecondsFormat, TimeZone};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use crate::error::{WmsError, WmsErrorDetail};

/// Most rows in one `POST /order/`.
pub const MAX_ROWS_PER_REGISTRATION: usize = 200;
/// Most values in one `in` search filter.
pub const MAX_IN_VALUES: usize = 100;
/// Largest `limit` of one search page.
pub const MAX_SEARCH_LIMIT: u32 = 200;
/// `limit` the WMS uses when none is given.
pub const DEFAULT_SEARCH_LIMIT: u32 = 20;

/// The JST offset (+09:00) the WMS uses for its timestamps.
pub fn jst() -> FixedOffset {
    FixedOffset::east_opt(9 * 3600).expect("+09:00 is a valid offset")
}

/// `status_id` values the WMS documents, with their names.
pub const STATUSES: &[(i32, &str)] = &[
    (5, "同梱済"),
    (20, "処理中"),
    (30, "要確認"),
    (31, "入金確認"),
    (32, "住所不備"),
    (33, "備考確認"),
    (34, "後払いデータ"),
    (40, "入荷待ち"),
    (50, "出荷待ち"),
    (55, "引当前戻し後出荷待ち"),
    (60, "在庫確保"),
    (80, "未引当"),
    (90, "出荷準備中/出荷作業中"),
    (95, "出荷準備中(梱包待ち)"),
    (100, "出荷検品済"),
];

/// `shipping_status_id` values (the carrier's) the WMS documents.
pub const SHIPPING_STATUSES: &[(i32, &str)] = &[
    (1, "配達完了"),
    (3, "配達中"),
    (5, "依頼受付"),
    (9, "集荷"),
    (10, "輸送中"),
    (12, "返品"),
    (32, "キャンセル"),
];

/// The name of a documented `status_id`, `None` for an undocumented one.
pub fn status_name(status_id: i32) -> Option<&'static str> {
    STATUSES
        .iter()
        .find(|(id, _)| *id == status_id)
        .map(|(_, name)| *name)
}

/// The name of a documented `shipping_status_id`.
pub fn shipping_status_name(shipping_status_id: i32) -> Option<&'static str> {
    SHIPPING_STATUSES
        .iter()
        .find(|(id, _)| *id == shipping_status_id)
        .map(|(_, name)| *name)
}

/// Statuses in which the WMS refuses a cancel (90, 95, 100: packing or packed).
pub fn is_cancel_refused_status(status_id: i32) -> bool {
    matches!(status_id, 90 | 95 | 100)
}

/// Replace every lone CR (a `\r` not followed by `\n`) with LF. CRLF and LF are kept.
/// The WMS breaks on a lone CR; the client applies this to every text field it sends.
pub fn normalize_text(text: &str) -> Cow<'_, str> {
    if !text.contains('\r') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' {
            if chars.peek() == Some(&'\n') {
                out.push('\r');
            } else {
                out.push('\n');
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Apply [`normalize_text`] to every string inside a JSON value.
pub(crate) fn normalize_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => {
            if let Cow::Owned(fixed) = normalize_text(s) {
                *s = fixed;
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(normalize_json),
        serde_json::Value::Object(map) => map.values_mut().for_each(normalize_json),
        _ => {}
    }
}

/// Free fields `free1` … `free10` (at order and at line level).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FreeFields(BTreeMap<u8, String>);

impl FreeFields {
    /// No free field set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set `free{n}`; `n` must be 1..=10.
    pub fn set(&mut self, n: u8, value: impl Into<String>) -> Result<&mut Self, WmsError> {
        if !(1..=10).contains(&n) {
            return Err(WmsError::InvalidRequest(format!(
                "free field number must be 1..=10, got {n}"
            )));
        }
        self.0.insert(n, value.into());
        Ok(self)
    }

    /// Builder form of [`set`](Self::set).
    pub fn with(mut self, n: u8, value: impl Into<String>) -> Result<Self, WmsError> {
        self.set(n, value)?;
        Ok(self)
    }

    /// The value of `free{n}`.
    pub fn get(&self, n: u8) -> Option<&str> {
        self.0.get(&n).map(String::as_str)
    }

    /// Whether no field is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `(n, value)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (u8, &str)> {
        self.0.iter().map(|(n, v)| (*n, v.as_str()))
    }
}

impl Serialize for FreeFields {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (n, v) in &self.0 {
            map.serialize_entry(&format!("free{n}"), v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for FreeFields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FreeFields;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of free1..free10 to strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FreeFields, A::Error> {
                let mut out = FreeFields::new();
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    let n = k
                        .strip_prefix("free")
                        .and_then(|n| n.parse::<u8>().ok())
                        .filter(|n| (1..=10).contains(n))
                        .ok_or_else(|| de::Error::custom(format!("unknown free field {k:?}")))?;
                    out.0.insert(n, v);
                }
                Ok(out)
            }
        }
        deserializer.deserialize_map(V)
    }
}

/// The orderer (注文者) of a shipment instruction.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Orderer {
    /// Name (required).
    pub name: String,
    /// Name in kana.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kana: Option<String>,
    /// Postal code (required).
    pub zip: String,
    /// Prefecture (required).
    pub pref: String,
    /// Address line 1 (required).
    pub address1: String,
    /// Address line 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address2: Option<String>,
    /// Telephone (required).
    pub tel: String,
    /// E-mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// The ship-to party (配送先) with the delivery wishes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipping {
    /// Name (required).
    pub name: String,
    /// Name in kana.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kana: Option<String>,
    /// Postal code (required).
    pub zip: String,
    /// Prefecture (required).
    pub pref: String,
    /// Address line 1 (required).
    pub address1: String,
    /// Address line 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address2: Option<String>,
    /// Telephone (required).
    pub tel: String,
    /// Wished delivery date, `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_date: Option<NaiveDate>,
    /// Wished delivery time slot, e.g. `14-16`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_time: Option<String>,
}

/// One line of a shipment instruction.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detail {
    /// SKU (required).
    pub sku: String,
    /// Product name (required).
    pub name: String,
    /// Quantity (> 0).
    pub quantity: i64,
    /// Unit price in yen (≥ 0).
    pub unit_price: i64,
    /// Line-level free fields.
    #[serde(default, skip_serializing_if = "FreeFields::is_empty")]
    pub free_fields: FreeFields,
}

/// One shipment instruction (出荷指示), the modelled `POST /order/` row of `wms-api.md`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentInstruction {
    /// The cart's order number, unique per shop.
    pub order_no: String,
    /// Conversion robot (変換ロボットID).
    pub robot_id: i64,
    /// Shipper (発送元).
    pub shipper_id: i64,
    /// Delivery method (配送方法).
    pub delivery_method_id: i64,
    /// Optional per-payment delivery company (配送会社).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_company_id: Option<i64>,
    /// Payment method.
    pub payment_method_id: i64,
    /// When the order was placed (sent as RFC 3339 with its offset).
    pub order_date: DateTime<FixedOffset>,
    /// The orderer.
    pub orderer: Orderer,
    /// The ship-to party.
    pub shipping: Shipping,
    /// Products total, yen.
    pub product_total: i64,
    /// Shipping fee, yen.
    pub shipping_fee: i64,
    /// Cash-on-delivery fee, yen.
    pub cod_fee: i64,
    /// Discount, yen.
    pub discount: i64,
    /// Tax included, yen.
    pub tax_total: i64,
    /// Amount to pay, yen.
    pub pay_total: i64,
    /// Note (備考).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Order-level free fields.
    #[serde(default, skip_serializing_if = "FreeFields::is_empty")]
    pub free_fields: FreeFields,
    /// Lines (at least one).
    pub details: Vec<Detail>,
}

/// What the WMS said about one registered row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowResult {
    /// The row's `order_no`.
    pub order_no: String,
    /// Accepted with an id, or refused with the WMS's reason.
    pub outcome: RowOutcome,
}

/// The outcome of one row of a registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowOutcome {
    /// Registered; the WMS's id, needed to cancel.
    Registered {
        /// The WMS `order_id`.
        order_id: i64,
    },
    /// Refused (e.g. `E_DUPLICATE`, a validation error); nothing was registered for the row.
    Rejected {
        /// First error code.
        code: String,
        /// First error message.
        message: String,
        /// All error entries of the row.
        details: Vec<WmsErrorDetail>,
    },
}

impl RowResult {
    /// The `order_id` when registered.
    pub fn order_id(&self) -> Option<i64> {
        match self.outcome {
            RowOutcome::Registered { order_id } => Some(order_id),
            RowOutcome::Rejected { .. } => None,
        }
    }

    /// The error code when rejected.
    pub fn error_code(&self) -> Option<&str> {
        match &self.outcome {
            RowOutcome::Registered { .. } => None,
            RowOutcome::Rejected { code, .. } => Some(code),
        }
    }
}

/// An order as the WMS returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WmsOrder {
    /// The WMS's id.
    pub order_id: i64,
    /// The cart's order number.
    pub order_no: String,
    /// See [`STATUSES`].
    pub status_id: i32,
    /// The WMS's name of the status (cleaned and bounded, see [`crate::sanitize_wms_text`]).
    #[serde(default, deserialize_with = "crate::text::de_name")]
    pub status_name: String,
    /// 1 when cancelled.
    #[serde(deserialize_with = "de_flag")]
    pub cancel_flag: u8,
    /// 1 when shipped.
    #[serde(deserialize_with = "de_flag")]
    pub shipped_flag: u8,
    /// The carrier's status after shipping, see [`SHIPPING_STATUSES`].
    #[serde(default)]
    pub shipping_status_id: Option<i32>,
    /// Tracking number once shipped (cleaned and bounded).
    #[serde(default, deserialize_with = "crate::text::de_opt_name")]
    pub tracking_code: Option<String>,
    /// Shipping date once shipped (a date; a datetime is cut to its date).
    #[serde(default, deserialize_with = "de_opt_date")]
    pub shipping_date: Option<NaiveDate>,
    /// Last change, JST.
    pub update_date: DateTime<FixedOffset>,
}

impl WmsOrder {
    /// `cancel_flag == 1`.
    pub fn is_cancelled(&self) -> bool {
        self.cancel_flag != 0
    }

    /// `shipped_flag == 1`.
    pub fn is_shipped(&self) -> bool {
        self.shipped_flag != 0
    }
}

fn de_flag<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    match &v {
        serde_json::Value::Number(n) => match n.as_u64() {
            Some(0) => Ok(0),
            Some(1) => Ok(1),
            _ => Err(de::Error::custom(format!("flag must be 0 or 1, got {n}"))),
        },
        serde_json::Value::Bool(b) => Ok(u8::from(*b)),
        serde_json::Value::String(s) if s == "0" || s == "1" => Ok(u8::from(s == "1")),
        serde_json::Value::Null => Ok(0),
        other => Err(de::Error::custom(format!(
            "flag must be 0 or 1, got {other}"
        ))),
    }
}

fn de_opt_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
    let v: Option<String> = Option::deserialize(d)?;
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => {
            let day = s.get(..10).unwrap_or(s);
            NaiveDate::parse_from_str(day, "%Y-%m-%d")
                .map(Some)
                .map_err(|e| de::Error::custom(format!("bad date {s:?}: {e}")))
        }
    }
}

/// A searchable column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SearchColumn {
    /// `order_no`
    OrderNo,
    /// `order_id`
    OrderId,
    /// `status_id`
    StatusId,
    /// `update_date`
    UpdateDate,
}

impl SearchColumn {
    /// The column's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrderNo => "order_no",
            Self::OrderId => "order_id",
            Self::StatusId => "status_id",
            Self::UpdateDate => "update_date",
        }
    }
}

/// A search operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SearchOp {
    /// `eq`
    Eq,
    /// `like` (`%` and `_` wildcards)
    Like,
    /// `in` (at most [`MAX_IN_VALUES`] values)
    In,
    /// `lt`
    Lt,
    /// `gt`
    Gt,
    /// `lte`
    Lte,
    /// `gte`
    Gte,
    /// `not`
    Not,
}

impl SearchOp {
    /// The operator's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eq => "eq",
            Self::Like => "like",
            Self::In => "in",
            Self::Lt => "lt",
            Self::Gt => "gt",
            Self::Lte => "lte",
            Self::Gte => "gte",
            Self::Not => "not",
        }
    }
}

/// One `<column>-<op>=<value>` filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchFilter {
    /// Column.
    pub column: SearchColumn,
    /// Operator.
    pub op: SearchOp,
    /// One value, or several for `in`.
    pub values: Vec<String>,
}

/// A `GET /order/search` query: filters (ANDed) and paging.
///
/// ```
/// use wmslink_wms_client::SearchQuery;
/// let q = SearchQuery::new().status_id_eq(50).limit(100);
/// assert_eq!(q.to_query_string(), "status_id-eq=50&limit=100");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchQuery {
    /// Filters, all of which must hold.
    pub filters: Vec<SearchFilter>,
    /// Page size, 1..=200 (`None`: the WMS's default of 20).
    pub limit: Option<u32>,
    /// Rows to skip.
    pub offset: Option<u32>,
}

impl SearchQuery {
    /// No filter, default paging.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add any filter.
    pub fn filter(mut self, column: SearchColumn, op: SearchOp, value: impl Into<String>) -> Self {
        self.filters.push(SearchFilter {
            column,
            op,
            values: vec![value.into()],
        });
        self
    }

    /// `order_no-in=a,b,…` (at most 100 values; use
    /// [`WmsClient::find_by_order_nos`](crate::WmsClient::find_by_order_nos) for more).
    pub fn order_no_in<I, S>(mut self, order_nos: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.filters.push(SearchFilter {
            column: SearchColumn::OrderNo,
            op: SearchOp::In,
            values: order_nos.into_iter().map(Into::into).collect(),
        });
        self
    }

    /// `order_no-eq=…`
    pub fn order_no_eq(self, order_no: impl Into<String>) -> Self {
        self.filter(SearchColumn::OrderNo, SearchOp::Eq, order_no)
    }

    /// `status_id-eq=…`
    pub fn status_id_eq(self, status_id: i32) -> Self {
        self.filter(SearchColumn::StatusId, SearchOp::Eq, status_id.to_string())
    }

    /// `update_date-gte=…` (sent in JST, second precision).
    pub fn update_date_gte<Tz: TimeZone>(self, since: DateTime<Tz>) -> Self {
        let value = since
            .with_timezone(&jst())
            .to_rfc3339_opts(SecondsFormat::Secs, false);
        self.filter(SearchColumn::UpdateDate, SearchOp::Gte, value)
    }

    /// Page size (1..=200).
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Rows to skip.
    pub fn offset(mut self, offset: u32) -> Self {
        self.offset = Some(offset);
        self
    }

    /// Check the protocol's limits.
    pub fn validate(&self) -> Result<(), WmsError> {
        if let Some(limit) = self.limit
            && !(1..=MAX_SEARCH_LIMIT).contains(&limit)
        {
            return Err(WmsError::InvalidRequest(format!(
                "search limit must be 1..={MAX_SEARCH_LIMIT}, got {limit}"
            )));
        }
        for f in &self.filters {
            let name = format!("{}-{}", f.column.as_str(), f.op.as_str());
            if f.values.is_empty() {
                return Err(WmsError::InvalidRequest(format!("{name} has no value")));
            }
            if f.op == SearchOp::In {
                if f.values.len() > MAX_IN_VALUES {
                    return Err(WmsError::InvalidRequest(format!(
                        "{name} has {} values, at most {MAX_IN_VALUES} are allowed per call",
                        f.values.len()
                    )));
                }
                if f.values.iter().any(|v| v.contains(',')) {
                    return Err(WmsError::InvalidRequest(format!(
                        "{name}: a value contains a comma"
                    )));
                }
            } else if f.values.len() != 1 {
                return Err(WmsError::InvalidRequest(format!(
                    "{name} takes exactly one value"
                )));
            }
        }
        Ok(())
    }

    /// The query string, values percent-encoded, `in` values joined with commas.
    pub fn to_query_string(&self) -> String {
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let mut parts: Vec<String> = self
            .filters
            .iter()
            .map(|f| {
                let values: Vec<String> = f.values.iter().map(|v| enc(v)).collect();
                format!(
                    "{}-{}={}",
                    f.column.as_str(),
                    f.op.as_str(),
                    values.join(",")
                )
            })
            .collect();
        if let Some(limit) = self.limit {
            parts.push(format!("limit={limit}"));
        }
        if let Some(offset) = self.offset {
            parts.push(format!("offset={offset}"));
        }
        parts.join("&")
    }
}

/// One page of search results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchPage {
    /// The orders of this page.
    pub orders: Vec<WmsOrder>,
    /// How many orders match in all (`total` of the answer); `None` when the WMS omits it:
    /// unknown, so paging goes on until a page comes back short.
    pub total: Option<u64>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn lone_cr_becomes_lf_and_crlf_stays() {
        assert_eq!(normalize_text("a\rb\r\nc\n\r"), "a\nb\r\nc\n\n");
        assert!(matches!(normalize_text("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn free_fields_round_trip_and_bounds() {
        let f = FreeFields::new()
            .with(1, "x")
            .unwrap()
            .with(10, "y")
            .unwrap();
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(json, r#"{"free1":"x","free10":"y"}"#);
        let back: FreeFields = serde_json::from_str(&json).unwrap();
        assert_eq!(back, f);
        assert!(FreeFields::new().with(11, "z").is_err());
        assert!(FreeFields::new().with(0, "z").is_err());
        assert!(serde_json::from_str::<FreeFields>(r#"{"free11":"x"}"#).is_err());
    }

    #[test]
    fn status_names() {
        assert_eq!(status_name(20), Some("処理中"));
        assert_eq!(status_name(100), Some("出荷検品済"));
        assert_eq!(status_name(7), None);
        assert_eq!(shipping_status_name(32), Some("キャンセル"));
    }

    #[test]
    fn query_string_encodes_values() {
        let since = DateTime::parse_from_rfc3339("2026-11-28T01:15:00Z").unwrap();
        let q = SearchQuery::new()
            .order_no_in(["S1 1", "S1/2"])
            .update_date_gte(since)
            .limit(200)
            .offset(400);
        assert_eq!(
            q.to_query_string(),
            "order_no-in=S1+1,S1%2F2&update_date-gte=2026-11-28T10%3A15%3A00%2B09%3A00&limit=200&offset=400"
        );
        assert!(q.validate().is_ok());
        let too_many = SearchQuery::new().order_no_in((0..101).map(|i| i.to_string()));
        assert!(too_many.validate().is_err());
        assert!(SearchQuery::new().limit(201).validate().is_err());
        assert!(SearchQuery::new().limit(0).validate().is_err());
    }

    #[test]
    fn order_parses_flags_and_dates() {
        let o: WmsOrder = serde_json::from_str(
            r#"{"order_id":1,"order_no":"A","status_id":100,"status_name":"出荷検品済","cancel_flag":0,
            "shipped_flag":1,"shipping_status_id":5,"tracking_code":"T","shipping_date":"2026-11-29",
            "update_date":"2026-11-28T10:15:00+09:00"}"#,
        )
        .unwrap();
        assert!(o.is_shipped() && !o.is_cancelled());
        assert_eq!(o.shipping_date, NaiveDate::from_ymd_opt(2026, 11, 29));
    }
}
