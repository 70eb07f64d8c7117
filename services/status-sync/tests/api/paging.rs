//! Paging the `update_date` changes cannot skip an order: the WMS documents no order for its
//! answers, and under offset paging an `update_date`-ordered answer shifts when an order read
//! on an early page changes during the pass. The simulator answers in `update_date` order and
//! updates orders of the first page right after serving it (`/_sim` faults
//! `sort_by_update_date`, `touch_after_search`).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::json;
use wmslink_proto::sync::v1 as pb;

use crate::helpers::*;

/// 450 orders the WMS holds that wmslink never sent, registered at once (so most share one
/// `update_date`): each is an anomaly (the grace time is 0 in these tests), so the anomalies
/// recorded by one pass are exactly the orders its `update_date` paging read.
async fn orders_in_the_wms(shop: &TestShop) -> BTreeSet<String> {
    let orders: Vec<(String, DateTime<Utc>)> = (0..450)
        .map(|n| (format!("CSV-{n:04}"), days_ago(1)))
        .collect();
    register_in_wms(&shop.wms, &orders).await;
    orders.into_iter().map(|(no, _)| no).collect()
}

async fn reported(app: &TestApp, shop: &TestShop) -> BTreeSet<String> {
    app.reader
        .clone()
        .list_anomalies(pb::ListAnomaliesRequest {
            shop_id: shop.id.clone(),
            limit: 500,
            kind: pb::AnomalyKind::NotSentByWmslink as i32,
        })
        .await
        .expect("ListAnomalies")
        .into_inner()
        .anomalies
        .into_iter()
        .map(|a| a.order_no)
        .collect()
}

#[tokio::test]
async fn orders_changing_during_the_paging_of_an_update_date_ordered_answer_are_not_skipped() {
    let app = spawn_app().await;
    let shop = app.add_shop().await;
    let all = orders_in_the_wms(&shop).await;
    // Right after the first page (200 orders) is served, 5 of its orders change: they move
    // to the end, and the 5 orders after the first page move onto it.
    app.faults(
        &shop,
        Some(json!({
            "sort_by_update_date": true,
            "touch_after_search": 1,
            "touch_count": 5,
            "endpoints": ["search"],
        })),
    )
    .await;

    let run = app.run_sync(&shop).await;
    assert_eq!(run.outcome, "succeeded", "{run:?}");
    let seen = reported(&app, &shop).await;
    let missing: Vec<&String> = all.difference(&seen).collect();
    assert!(missing.is_empty(), "skipped by the paging: {missing:?}");
    // The changes were read again once: 3 pages, then 3 more.
    assert_eq!(run.wms_calls, 6, "{run:?}");
}

#[tokio::test]
async fn many_orders_sharing_one_update_date_are_all_read_once() {
    let app = spawn_app().await;
    let shop = app.add_shop().await;
    let all = orders_in_the_wms(&shop).await;
    app.faults(
        &shop,
        Some(json!({ "sort_by_update_date": true, "endpoints": ["search"] })),
    )
    .await;

    let run = app.run_sync(&shop).await;
    assert_eq!(run.outcome, "succeeded", "{run:?}");
    assert_eq!(reported(&app, &shop).await, all);
    assert_eq!(run.wms_calls, 3, "nothing moved: read once, {run:?}");
}
