//! The order list (O1, O2): request checking, the keyset cursor and its opaque page token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use wmslink_platform::shop::ShopId;
use wmslink_platform::validation::FieldViolations;
use wmslink_proto::orders::v1::{ListOrdersRequest, ShippingStatus};
use wmslink_proto::sync::v1::AnomalyKind;

use super::validation::{
    MAX_STATUS_CODE_CHARS, check_shop_id, check_status_code, check_text, check_timestamp,
    order_no_problem,
};

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 200;
/// Values per multi-valued filter.
pub const MAX_FILTER_VALUES: usize = 50;

/// Where the previous page ended, in list order (order_date DESC, order_no DESC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub order_date: DateTime<Utc>,
    pub order_no: String,
}

const TOKEN_VERSION: &str = "v1";

impl Cursor {
    /// The opaque page token (url-safe base64 of a versioned text).
    pub fn encode(&self) -> String {
        let text = format!(
            "{TOKEN_VERSION}:{}:{}",
            self.order_date.timestamp_micros(),
            self.order_no
        );
        URL_SAFE_NO_PAD.encode(text)
    }

    pub fn decode(token: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let mut parts = text.splitn(3, ':');
        if parts.next()? != TOKEN_VERSION {
            return None;
        }
        let micros: i64 = parts.next()?.parse().ok()?;
        let order_no = parts.next()?;
        if order_no_problem(order_no).is_some() {
            return None;
        }
        Some(Self {
            order_date: DateTime::from_timestamp_micros(micros)?,
            order_no: order_no.to_owned(),
        })
    }
}

/// A checked list request.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    pub shop: ShopId,
    /// `None`: no filter. Values are distinct.
    pub shipping_statuses: Option<Vec<i16>>,
    pub wms_status_ids: Option<Vec<i32>>,
    pub status_codes: Option<Vec<String>>,
    /// Inclusive.
    pub order_date_from: Option<DateTime<Utc>>,
    /// Exclusive.
    pub order_date_to: Option<DateTime<Utc>>,
    /// The prefix and the first string after every string that starts with it.
    pub order_no_range: Option<(String, String)>,
    /// Orders with any of these R5 anomaly kinds: their bits (`1 << kind`) in
    /// `orders.anomalies`.
    pub anomaly_bits: Option<i32>,
    pub after: Option<Cursor>,
    pub page_size: u32,
}

/// The bit of an anomaly kind in `orders.anomalies` (`1 << kind`).
pub fn kind_bit(kind: AnomalyKind) -> i32 {
    1_i32 << (kind as i32).clamp(0, 30)
}

/// The anomaly kinds set in `bits`, in enum order.
pub fn kinds_of_bits(bits: i32) -> Vec<i32> {
    (1..=30).filter(|kind| bits & (1 << kind) != 0).collect()
}

/// Filters are counted up to this many matches to pick the index that drives a query.
pub const PROBE_CAP: i64 = 2_000;

/// How a list query reads the orders: which index gives it its rows in list order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// The shop's date index; filters checked on the way.
    Date,
    /// One ordered range per shipping status in the shipping-status index, merged.
    ShippingStatus,
    WmsStatus,
    StatusCode,
    /// The (few) order numbers of the prefix, sorted.
    OrderNoRange,
    /// A prefix with many matches: the date index for a bounded number of rows, and when that
    /// does not fill the page, the prefix range nearest-first in time (GiST).
    BroadPrefix,
    /// The partial index of the orders with an anomaly (few), in list order.
    Anomalies,
}

/// Matches per present filter, counted up to [`PROBE_CAP`] + 1: for a filter column, in the
/// date range below the cursor; for the prefix, in the whole shop.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Probe {
    pub shipping: Option<i64>,
    pub wms: Option<i64>,
    pub codes: Option<i64>,
    pub prefix: Option<i64>,
    /// The share of all orders (every shop) the filter's values have, from PostgreSQL's
    /// statistics: which of several broad filters is likely the narrowest.
    pub shipping_share: Option<f64>,
    pub wms_share: Option<f64>,
    pub codes_share: Option<f64>,
}

impl ListQuery {
    fn candidates(&self) -> [(Driver, bool); 4] {
        [
            (Driver::ShippingStatus, self.shipping_statuses.is_some()),
            (Driver::WmsStatus, self.wms_status_ids.is_some()),
            (Driver::StatusCode, self.status_codes.is_some()),
            (Driver::OrderNoRange, self.order_no_range.is_some()),
        ]
    }

    /// Whether the driver depends on match counts: a prefix (few or many matches), or more
    /// than one filter column to choose from.
    pub fn needs_probe(&self) -> bool {
        if self.anomaly_bits.is_some() {
            return false;
        }
        let present = self.candidates().iter().filter(|(_, on)| *on).count();
        self.order_no_range.is_some() || present > 1
    }

    /// The driver: the filter with the fewest matches when one has at most [`PROBE_CAP`]
    /// (its scan is bounded by them); else, with a prefix, [`Driver::BroadPrefix`]; else the
    /// filter column whose values are the rarest by the statistics (so that filters that
    /// rarely meet are read from the narrower side); else the date index.
    pub fn driver(&self, probe: &Probe) -> Driver {
        // Orders with an anomaly are few, and their index holds only them.
        if self.anomaly_bits.is_some() {
            return Driver::Anomalies;
        }
        let counts = [probe.shipping, probe.wms, probe.codes, probe.prefix];
        let present: Vec<(Driver, Option<i64>)> = self
            .candidates()
            .iter()
            .zip(counts)
            .filter(|((_, on), _)| *on)
            .map(|((driver, _), count)| (*driver, count))
            .collect();
        if present.is_empty() {
            return Driver::Date;
        }
        if !self.needs_probe() {
            return present[0].0;
        }
        let fewest = present
            .iter()
            .filter_map(|(driver, count)| count.map(|count| (*driver, count)))
            .min_by_key(|(_, count)| *count);
        let share = |driver: Driver| match driver {
            Driver::ShippingStatus => probe.shipping_share,
            Driver::WmsStatus => probe.wms_share,
            Driver::StatusCode => probe.codes_share,
            _ => None,
        };
        let rarest = present
            .iter()
            .filter(|(driver, _)| *driver != Driver::OrderNoRange)
            .map(|(driver, _)| (*driver, share(*driver).unwrap_or(1.0)))
            .fold(
                None,
                |best: Option<(Driver, f64)>, (driver, share)| match best {
                    Some((_, best_share)) if best_share <= share => best,
                    _ => Some((driver, share)),
                },
            );
        match (fewest, rarest) {
            (Some((driver, count)), _) if count <= PROBE_CAP => driver,
            _ if self.order_no_range.is_some() => Driver::BroadPrefix,
            (_, Some((driver, _))) => driver,
            _ => present[0].0,
        }
    }
}

/// The smallest string greater than every string starting with `prefix` (byte order, `C`
/// collation). The prefix is ASCII from the order-number charset, so its last byte can grow.
pub fn prefix_upper_bound(prefix: &str) -> String {
    let mut bytes = prefix.as_bytes().to_vec();
    if let Some(last) = bytes.last_mut() {
        *last = last.saturating_add(1);
    }
    String::from_utf8(bytes).unwrap_or_else(|_| format!("{prefix}\u{7f}"))
}

fn distinct<T: Ord + Clone>(values: &[T]) -> Option<Vec<T>> {
    if values.is_empty() {
        return None;
    }
    let mut values = values.to_vec();
    values.sort();
    values.dedup();
    Some(values)
}

/// Checks a `ListOrdersRequest`, listing every bad field.
pub fn parse_list_request(request: &ListOrdersRequest) -> Result<ListQuery, FieldViolations> {
    let mut violations = FieldViolations::new();
    let shop = check_shop_id("shop_id", &request.shop_id, &mut violations);
    let filter = request.filter.clone().unwrap_or_default();

    let mut too_many = |field: &str, len: usize| {
        if len > MAX_FILTER_VALUES {
            violations.add(
                field,
                format!("must have at most {MAX_FILTER_VALUES} values (has {len})"),
            );
        }
    };
    too_many("filter.shipping_statuses", filter.shipping_statuses.len());
    too_many("filter.wms_status_ids", filter.wms_status_ids.len());
    too_many("filter.status_codes", filter.status_codes.len());
    too_many("filter.anomalies", filter.anomalies.len());

    let mut shipping = Vec::with_capacity(filter.shipping_statuses.len());
    for (index, &value) in filter.shipping_statuses.iter().enumerate() {
        match ShippingStatus::try_from(value) {
            Ok(status) if status != ShippingStatus::Unspecified => {
                shipping.push(i16::try_from(value).unwrap_or_default());
            }
            _ => violations.add(
                format!("filter.shipping_statuses[{index}]"),
                format!("{value} is not a shipping status"),
            ),
        }
    }
    let mut anomaly_bits = None;
    for (index, &value) in filter.anomalies.iter().enumerate() {
        match AnomalyKind::try_from(value) {
            Ok(kind) if kind != AnomalyKind::Unspecified => {
                anomaly_bits = Some(anomaly_bits.unwrap_or(0) | kind_bit(kind));
            }
            _ => violations.add(
                format!("filter.anomalies[{index}]"),
                format!("{value} is not an anomaly kind"),
            ),
        }
    }
    for (index, &value) in filter.wms_status_ids.iter().enumerate() {
        if value < 0 {
            violations.add(
                format!("filter.wms_status_ids[{index}]"),
                "must not be negative",
            );
        }
    }
    for (index, code) in filter.status_codes.iter().enumerate() {
        check_status_code(
            &format!("filter.status_codes[{index}]"),
            code,
            &mut violations,
        );
    }
    let from = check_timestamp(
        "filter.order_date_from",
        filter.order_date_from.as_ref(),
        false,
        &mut violations,
    );
    let to = check_timestamp(
        "filter.order_date_to",
        filter.order_date_to.as_ref(),
        false,
        &mut violations,
    );
    if let (Some(from), Some(to)) = (from, to)
        && to <= from
    {
        violations.add("filter.order_date_to", "must be after order_date_from");
    }
    let order_no_range = if filter.order_no_prefix.is_empty() {
        None
    } else if let Some(problem) = order_no_problem(&filter.order_no_prefix) {
        violations.add("filter.order_no_prefix", problem);
        None
    } else {
        Some((
            filter.order_no_prefix.clone(),
            prefix_upper_bound(&filter.order_no_prefix),
        ))
    };
    check_text(
        "page_token",
        &request.page_token,
        MAX_STATUS_CODE_CHARS * 4,
        &mut violations,
    );
    let after = if request.page_token.is_empty() {
        None
    } else {
        let cursor = Cursor::decode(&request.page_token);
        if cursor.is_none() {
            violations.add(
                "page_token",
                "is not a token returned by ListOrders (start again without one)",
            );
        }
        cursor
    };
    let page_size = match request.page_size {
        0 => DEFAULT_PAGE_SIZE,
        size if size > MAX_PAGE_SIZE => {
            violations.add("page_size", format!("must be at most {MAX_PAGE_SIZE}"));
            DEFAULT_PAGE_SIZE
        }
        size => size,
    };

    match shop {
        Some(shop) if violations.is_empty() => Ok(ListQuery {
            shop,
            shipping_statuses: distinct(&shipping),
            wms_status_ids: distinct(&filter.wms_status_ids),
            status_codes: distinct(&filter.status_codes),
            order_date_from: from,
            order_date_to: to,
            order_no_range,
            anomaly_bits,
            after,
            page_size,
        }
        .without_redundant_bound()),
        _ => Err(violations),
    }
}

impl ListQuery {
    /// The cursor and `order_date_to` both bound the dates from above; only the tighter one is
    /// kept, so that an index scan starts at it (PostgreSQL cannot tell which of a row
    /// comparison and a plain comparison is tighter and may start at the looser one).
    fn without_redundant_bound(mut self) -> Self {
        if let (Some(after), Some(to)) = (&self.after, self.order_date_to) {
            if after.order_date >= to {
                // Every row before `to` comes after the cursor.
                self.after = None;
            } else {
                // Every row after the cursor is before `to`.
                self.order_date_to = None;
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wmslink_proto::orders::v1::ListOrdersFilter;

    #[test]
    fn the_token_round_trips_and_refuses_garbage() {
        let cursor = Cursor {
            order_date: DateTime::from_timestamp_micros(1_770_000_000_123_456).expect("time"),
            order_no: "A-1001".into(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        for bad in [
            "",
            "x",
            "djE6YWJjOkEtMQ",
            &URL_SAFE_NO_PAD.encode("v1:1:a b"),
        ] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn prefix_bound_is_the_next_string() {
        assert_eq!(prefix_upper_bound("A-10"), "A-11");
        assert_eq!(prefix_upper_bound("Az"), "A{");
        assert!("A-10999" < prefix_upper_bound("A-10").as_str());
        assert!("A-11" >= prefix_upper_bound("A-10").as_str());
    }

    #[test]
    fn defaults_and_distinct_values() {
        let request = ListOrdersRequest {
            shop_id: "s1".into(),
            filter: Some(ListOrdersFilter {
                shipping_statuses: vec![4, 2, 4],
                ..ListOrdersFilter::default()
            }),
            ..ListOrdersRequest::default()
        };
        let query = parse_list_request(&request).expect("valid");
        assert_eq!(query.page_size, DEFAULT_PAGE_SIZE);
        assert_eq!(query.shipping_statuses, Some(vec![2, 4]));
        assert_eq!(query.wms_status_ids, None);
        assert_eq!(query.order_no_range, None);
    }

    fn query(shipping: bool, wms: bool, codes: bool, prefix: bool) -> ListQuery {
        ListQuery {
            shop: ShopId::parse("s").expect("shop"),
            shipping_statuses: shipping.then(|| vec![5]),
            wms_status_ids: wms.then(|| vec![20]),
            status_codes: codes.then(|| vec!["paid".to_owned()]),
            order_date_from: None,
            order_date_to: None,
            order_no_range: prefix.then(|| ("A".to_owned(), "B".to_owned())),
            anomaly_bits: None,
            after: None,
            page_size: 50,
        }
    }

    #[test]
    fn a_lone_filter_drives_without_counting() {
        let none = Probe::default();
        assert_eq!(
            query(false, false, false, false).driver(&none),
            Driver::Date
        );
        for (q, driver) in [
            (query(true, false, false, false), Driver::ShippingStatus),
            (query(false, true, false, false), Driver::WmsStatus),
            (query(false, false, true, false), Driver::StatusCode),
        ] {
            assert!(!q.needs_probe());
            assert_eq!(q.driver(&none), driver);
        }
        assert!(query(false, false, false, true).needs_probe());
        assert!(query(true, true, false, false).needs_probe());
    }

    #[test]
    fn the_filter_with_fewest_matches_drives() {
        let q = query(true, true, true, true);
        let probe = |shipping, wms, codes, prefix| Probe {
            shipping: Some(shipping),
            wms: Some(wms),
            codes: Some(codes),
            prefix: Some(prefix),
            ..Probe::default()
        };
        let many = PROBE_CAP + 1;
        assert_eq!(q.driver(&probe(many, 30, many, many)), Driver::WmsStatus);
        assert_eq!(q.driver(&probe(many, many, many, 12)), Driver::OrderNoRange);
        assert_eq!(q.driver(&probe(7, 7, 7, 7)), Driver::ShippingStatus);
        assert_eq!(
            q.driver(&probe(many, many, many, many)),
            Driver::BroadPrefix
        );
        // Several broad filters: the rarest by the statistics drives.
        let broad = Probe {
            shipping: Some(many),
            codes: Some(many),
            shipping_share: Some(0.93),
            codes_share: Some(0.04),
            ..Probe::default()
        };
        assert_eq!(
            query(true, false, true, false).driver(&broad),
            Driver::StatusCode
        );
        let unknown = Probe {
            shipping_share: None,
            codes_share: None,
            ..broad
        };
        assert_eq!(
            query(true, false, true, false).driver(&unknown),
            Driver::ShippingStatus
        );
        assert_eq!(
            query(true, false, true, false).driver(&Probe {
                shipping: Some(many),
                codes: Some(many),
                ..Probe::default()
            }),
            Driver::ShippingStatus
        );
        assert_eq!(
            query(false, false, false, true).driver(&Probe {
                prefix: Some(PROBE_CAP),
                ..Probe::default()
            }),
            Driver::OrderNoRange
        );
        assert_eq!(
            query(false, false, false, true).driver(&Probe {
                prefix: Some(many),
                ..Probe::default()
            }),
            Driver::BroadPrefix
        );
    }

    #[test]
    fn only_the_tighter_upper_date_bound_is_kept() {
        let ts = |seconds| prost_types::Timestamp { seconds, nanos: 0 };
        let request = |cursor_at: i64| ListOrdersRequest {
            shop_id: "s1".into(),
            filter: Some(ListOrdersFilter {
                order_date_to: Some(ts(2_000_000_000)),
                ..ListOrdersFilter::default()
            }),
            page_token: Cursor {
                order_date: DateTime::from_timestamp(cursor_at, 0).expect("time"),
                order_no: "A-1".into(),
            }
            .encode(),
            ..ListOrdersRequest::default()
        };
        let later = parse_list_request(&request(2_100_000_000)).expect("valid");
        assert_eq!(later.after, None);
        assert!(later.order_date_to.is_some());
        let earlier = parse_list_request(&request(1_900_000_000)).expect("valid");
        assert!(earlier.after.is_some());
        assert_eq!(earlier.order_date_to, None);
        let equal = parse_list_request(&request(2_000_000_000)).expect("valid");
        assert_eq!(equal.after, None);
    }

    #[test]
    fn every_bad_field_is_reported() {
        let request = ListOrdersRequest {
            shop_id: "".into(),
            filter: Some(ListOrdersFilter {
                shipping_statuses: vec![0, 99],
                wms_status_ids: vec![-1],
                status_codes: vec![String::new()],
                order_date_from: Some(prost_types::Timestamp {
                    seconds: 2_000_000_000,
                    nanos: 0,
                }),
                order_date_to: Some(prost_types::Timestamp {
                    seconds: 1_000_000_000,
                    nanos: 0,
                }),
                order_no_prefix: "a%".into(),
                anomalies: vec![2, 0],
            }),
            page_size: 1000,
            page_token: "nope".into(),
        };
        let violations = parse_list_request(&request).expect_err("invalid");
        let fields: Vec<&str> = violations.iter().map(|(field, _)| field).collect();
        assert_eq!(
            fields,
            vec![
                "shop_id",
                "filter.shipping_statuses[0]",
                "filter.shipping_statuses[1]",
                "filter.anomalies[1]",
                "filter.wms_status_ids[0]",
                "filter.status_codes[0]",
                "filter.order_date_to",
                "filter.order_no_prefix",
                "page_token",
                "page_size",
            ]
        );
    }
}
