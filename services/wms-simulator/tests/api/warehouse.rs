//! The warehouse flow.

use reqwest::Method;
use serde_json::{Value, json};
use wmslink_wms_simulator::{SimConfig, WarehouseConfig};

use crate::helpers::*;

#[tokio::test]
async fn manual_ticks_walk_the_flow_and_ship() {
    let sim = start_default().await; // warehouse off: only ticks move orders
    let key = sim.key(None).await;
    let ids = sim.register_ok(&key, &["W-1", "W-2"]).await;
    sim.get(&key, &format!("/order_cancel/{}", ids[1])).await;
    let mut seen = Vec::new();
    let mut dates = Vec::new();
    for _ in 0..5 {
        let o = sim.get(&key, &format!("/order/{}", ids[0])).await.body["data"].clone();
        seen.push((
            o["status_id"].as_i64().unwrap(),
            o["status_name"].as_str().unwrap().to_owned(),
        ));
        dates.push(o["update_date"].as_str().unwrap().to_owned());
        if o["status_id"] != 100 {
            assert_eq!(o["shipped_flag"], 0);
            assert_eq!(o["tracking_code"], Value::Null);
        } else {
            assert_eq!(o["shipped_flag"], 1);
            assert!(o["tracking_code"].as_str().unwrap().starts_with("SIM"));
            assert!(o["shipping_date"].is_string());
            assert_eq!(o["shipping_status_id"], 5);
        }
        sim.ctl(
            Method::POST,
            &format!("/_sim/keys/{key}/warehouse/tick"),
            None,
        )
        .await;
    }
    let statuses: Vec<i64> = seen.iter().map(|s| s.0).collect();
    assert_eq!(statuses, [50, 60, 20, 90, 100]);
    assert_eq!(seen[2].1, "処理中");
    assert!(
        dates.windows(2).all(|w| w[1] >= w[0]),
        "update_date never goes back"
    );
    // Shipped stays shipped; the cancelled one never moved.
    let a = sim.ctl(Method::POST, "/_sim/warehouse/tick", None).await;
    assert_eq!(a.body["moved"], 0);
    let c = sim.get(&key, &format!("/order/{}", ids[1])).await.body["data"].clone();
    assert_eq!(
        (c["status_id"].as_i64(), c["cancel_flag"].as_i64()),
        (Some(50), Some(1))
    );
}

#[tokio::test]
async fn the_warehouse_moves_orders_by_itself_and_update_date_follows() {
    let sim = start(SimConfig {
        warehouse: WarehouseConfig {
            enabled: true,
            step_interval_ms: 30,
            flow: vec![50, 60, 20, 90, 100],
        },
        ..SimConfig::for_tests()
    })
    .await;
    let key = sim.key(None).await;
    let registered_at = wmslink_wms_simulator::now_jst();
    let ids = sim.register_ok(&key, &["A-1", "A-2", "A-3"]).await;
    let shipped = wmslink_testkit::eventually(
        std::time::Duration::from_secs(10),
        "all orders shipped",
        || {
            let sim = &sim;
            let key = key.clone();
            async move {
                let a = sim.get(&key, "/order/search?shipped_flag-eq=1").await;
                (a.body["total"] == 3).then_some(a.body["data"].clone())
            }
        },
    )
    .await;
    for o in shipped.as_array().unwrap() {
        assert_eq!(o["status_id"], 100);
        let updated =
            chrono::DateTime::parse_from_rfc3339(o["update_date"].as_str().unwrap()).unwrap();
        assert!(updated >= registered_at);
    }
    // Incremental search finds them by update_date.
    let since = registered_at.to_rfc3339().replace('+', "%2B");
    let a = sim
        .get(&key, &format!("/order/search?update_date-gte={since}"))
        .await;
    assert_eq!(a.body["total"], 3);
    assert_eq!(ids.len(), 3);
}

#[tokio::test]
async fn a_custom_flow_and_a_control_patch() {
    let sim = start(SimConfig {
        warehouse: WarehouseConfig {
            enabled: false,
            step_interval_ms: 1000,
            flow: vec![40, 50, 100],
        },
        ..SimConfig::for_tests()
    })
    .await;
    let key = sim.key(None).await;
    let ids = sim.register_ok(&key, &["CF-1"]).await;
    let o = sim.get(&key, &format!("/order/{}", ids[0])).await.body["data"].clone();
    assert_eq!(o["status_id"], 40);
    // Set 90 by hand: 90 is not in the flow, the order stays there.
    let a = sim
        .ctl(
            Method::PATCH,
            &format!("/_sim/keys/{key}/orders/{}", ids[0]),
            Some(json!({"status_id": 90})),
        )
        .await;
    assert_eq!(a.body["status_id"], 90);
    assert_eq!(a.body["status_name"], "出荷準備中/出荷作業中");
    sim.ctl(Method::POST, "/_sim/warehouse/tick", None).await;
    assert_eq!(
        sim.get(&key, &format!("/order/{}", ids[0])).await.body["data"]["status_id"],
        90
    );
    // A flow of unknown statuses is refused at build.
    let bad = wmslink_wms_simulator::Simulator::build(SimConfig {
        warehouse: WarehouseConfig {
            flow: vec![50, 7],
            ..WarehouseConfig::default()
        },
        ..SimConfig::for_tests()
    })
    .await;
    assert!(bad.is_err());
}
