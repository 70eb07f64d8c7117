//! Rows, answers and a review context the unit tests share (a fixed "now").
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use wmslink_wms_client::port::WmsOrder;

use crate::model::{Period, WatchRow};
use crate::review::ReviewContext;

pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 3, 0, 0).unwrap()
}

pub fn ctx() -> ReviewContext {
    ReviewContext {
        now: now(),
        period: Period::last_days(now(), 30),
        shipped_watch: Duration::from_secs(14 * 86_400),
        wms_order_no_prefix: String::new(),
    }
}

pub fn wms(order_no: &str, order_id: i64, status_id: i32) -> WmsOrder {
    WmsOrder {
        order_id,
        order_no: order_no.into(),
        status_id,
        status_name: format!("status {status_id}"),
        cancelled: false,
        shipped: false,
        processing: false,
        carrier: None,
        tracking_code: None,
        shipping_date: None,
        updated_at: now() - chrono::Duration::hours(1),
    }
}

pub fn row(order_no: &str, wms_order_id: i64, status: &str) -> WatchRow {
    WatchRow {
        order_no: order_no.into(),
        wms_order_id,
        order_date: now() - chrono::Duration::days(2),
        shipping_status: status.into(),
        cancelled_unrequested: false,
        registered_outside: false,
        possibly_in_wms: false,
        sequence: 3,
        shipped_at: None,
        last: None,
        seen_in_wms_at: None,
        traceparent: None,
    }
}

pub fn rows(list: Vec<WatchRow>) -> HashMap<String, WatchRow> {
    list.into_iter().map(|r| (r.order_no.clone(), r)).collect()
}
