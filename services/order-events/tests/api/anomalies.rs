//! R5 anomalies on the order list: status-sync's `wms.{shop}.anomaly` and the dispatcher's
//! "registered outside wmslink" show on `ListOrders` rows and `GetOrder`, with a filter.

use prost::Message;
use wmslink_proto::orders::v1::{
    ListOrdersFilter, ListOrdersRequest, OrderListRow, ShippingStatus,
};
use wmslink_proto::sync::v1::{AnomalyKind, WmsAnomaly};
use wmslink_testkit::eventually;

use crate::helpers::{DEADLINE, TestApp, order, shipment, shop_id, spawn_app};

/// Publishes an anomaly as status-sync does (its outbox, `wms.{shop}.anomaly`).
async fn publish_anomaly(app: &TestApp, shop: &str, order_no: &str, kind: AnomalyKind) {
    let anomaly = WmsAnomaly {
        event_id: wmslink_testkit::unique("anomaly"),
        shop_id: shop.into(),
        order_no: order_no.into(),
        kind: kind as i32,
        wms_order_id: 7001,
        detail: format!("{kind:?} seen in the WMS"),
        detected_at: Some(wmslink_proto::to_timestamp(chrono::Utc::now())),
        wms_status_id: 10,
        wms_status_name: "出荷指示済み".into(),
        run_id: "run-1".into(),
    };
    let subject = app.nats.subjects.wms_anomaly(&shop_id(shop));
    app.publish(
        subject,
        async_nats::HeaderMap::new(),
        anomaly.encode_to_vec(),
    )
    .await;
}

async fn list(app: &TestApp, shop: &str, anomalies: &[AnomalyKind]) -> Vec<OrderListRow> {
    app.cart
        .clone()
        .list_orders(ListOrdersRequest {
            shop_id: shop.into(),
            filter: Some(ListOrdersFilter {
                anomalies: anomalies.iter().map(|kind| *kind as i32).collect(),
                ..ListOrdersFilter::default()
            }),
            ..ListOrdersRequest::default()
        })
        .await
        .expect("list")
        .into_inner()
        .rows
}

fn numbers(rows: &[OrderListRow]) -> Vec<&str> {
    rows.iter().map(|row| row.order_no.as_str()).collect()
}

#[tokio::test]
async fn anomalies_found_by_status_sync_show_on_the_order_list_and_the_order() {
    let app = spawn_app().await;
    app.make_shop_known("shop-a").await;
    for (no, day) in [("N-1", 1), ("N-2", 2), ("N-3", 3), ("N-4", 4)] {
        let mut order = order("shop-a", no, 1, "new");
        order.order_date = Some(prost_types::Timestamp {
            seconds: 1_777_000_000 + day * 86_400,
            nanos: 0,
        });
        app.upsert(&order).await.expect("order");
    }
    publish_anomaly(&app, "shop-a", "N-1", AnomalyKind::CancelledUnrequested).await;
    publish_anomaly(&app, "shop-a", "N-3", AnomalyKind::MissingInWms).await;
    publish_anomaly(&app, "shop-a", "N-3", AnomalyKind::NotSentByWmslink).await;
    // The same anomaly again (redelivered or published twice) changes nothing.
    publish_anomaly(&app, "shop-a", "N-3", AnomalyKind::MissingInWms).await;
    // An anomaly of an order the cart has not sent yet is kept for it.
    publish_anomaly(&app, "shop-a", "LATE-1", AnomalyKind::NotSentByWmslink).await;

    let view = eventually(DEADLINE, "N-3's anomalies on GetOrder", || async {
        app.get("shop-a", "N-3").await.filter(|view| {
            view.integration
                .as_ref()
                .is_some_and(|i| i.anomalies.len() == 2)
        })
    })
    .await;
    assert_eq!(
        view.integration
            .expect("integration")
            .anomalies()
            .collect::<Vec<_>>(),
        vec![AnomalyKind::NotSentByWmslink, AnomalyKind::MissingInWms]
    );
    let n1 = eventually(DEADLINE, "N-1's anomaly", || async {
        app.get("shop-a", "N-1").await.filter(|view| {
            view.integration
                .as_ref()
                .is_some_and(|i| !i.anomalies.is_empty())
        })
    })
    .await;
    assert_eq!(
        n1.integration
            .expect("integration")
            .anomalies()
            .collect::<Vec<_>>(),
        vec![AnomalyKind::CancelledUnrequested]
    );

    // Every row shows its kinds; orders without one show none.
    let rows = list(&app, "shop-a", &[]).await;
    assert_eq!(numbers(&rows), vec!["N-4", "N-3", "N-2", "N-1"]);
    assert!(rows[0].anomalies.is_empty() && rows[2].anomalies.is_empty());
    assert_eq!(
        rows[1].anomalies().collect::<Vec<_>>(),
        vec![AnomalyKind::NotSentByWmslink, AnomalyKind::MissingInWms]
    );
    assert_eq!(
        rows[3].anomalies().collect::<Vec<_>>(),
        vec![AnomalyKind::CancelledUnrequested]
    );

    // The filter: any of the kinds asked for.
    assert_eq!(
        numbers(&list(&app, "shop-a", &[AnomalyKind::MissingInWms]).await),
        vec!["N-3"]
    );
    assert_eq!(
        numbers(
            &list(
                &app,
                "shop-a",
                &[
                    AnomalyKind::CancelledUnrequested,
                    AnomalyKind::NotSentByWmslink
                ]
            )
            .await
        ),
        vec!["N-3", "N-1"]
    );
    assert!(
        list(&app, "shop-a", &[AnomalyKind::RegisteredOutsideWmslink])
            .await
            .is_empty()
    );

    // The order that arrives after its anomaly shows it at once.
    let pool = &app.db.pool;
    eventually(DEADLINE, "LATE-1's anomaly kept", || async {
        let kept: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM order_anomalies WHERE shop_id = 'shop-a' AND order_no = 'LATE-1')",
        )
        .fetch_one(pool)
        .await
        .expect("order_anomalies");
        kept.then_some(())
    })
    .await;
    app.upsert(&order("shop-a", "LATE-1", 1, "new"))
        .await
        .expect("order");
    let late = app.get("shop-a", "LATE-1").await.expect("late order");
    assert_eq!(
        late.integration
            .expect("integration")
            .anomalies()
            .collect::<Vec<_>>(),
        vec![AnomalyKind::NotSentByWmslink]
    );
    assert!(app.dead_letters().await.is_empty());
}

#[tokio::test]
async fn an_order_the_dispatcher_adopted_after_a_duplicate_is_flagged_registered_outside_wmslink() {
    let app = spawn_app().await;
    app.make_shop_known("shop-a").await;
    app.upsert(&order("shop-a", "CSV-1", 1, "new"))
        .await
        .expect("order");
    app.upsert(&order("shop-a", "OURS-1", 1, "new"))
        .await
        .expect("order");
    let mut adopted = shipment(
        "shop-a",
        "CSV-1",
        3,
        ShippingStatus::Sent,
        10,
        "出荷指示済み",
    );
    if let Some(s) = adopted.shipment.as_mut() {
        s.wms_order_id = 9001;
        s.registered_outside_wmslink = true;
    }
    app.publish_shipment(&adopted).await;
    let mut ours = shipment(
        "shop-a",
        "OURS-1",
        3,
        ShippingStatus::Sent,
        10,
        "出荷指示済み",
    );
    if let Some(s) = ours.shipment.as_mut() {
        s.wms_order_id = 9002;
    }
    app.publish_shipment(&ours).await;

    let view = app
        .wait_for_integration("shop-a", "CSV-1", "the adoption flag", |i| {
            !i.anomalies.is_empty()
        })
        .await;
    assert_eq!(
        view.integration
            .expect("integration")
            .anomalies()
            .collect::<Vec<_>>(),
        vec![AnomalyKind::RegisteredOutsideWmslink]
    );
    app.wait_for_integration("shop-a", "OURS-1", "our own registration", |i| {
        i.shipping_status() == ShippingStatus::Sent
    })
    .await;
    assert_eq!(
        numbers(&list(&app, "shop-a", &[AnomalyKind::RegisteredOutsideWmslink]).await),
        vec!["CSV-1"]
    );
}

#[tokio::test]
async fn a_bad_anomaly_message_is_dead_lettered_and_an_unknown_kind_is_refused_by_the_list() {
    let app = spawn_app().await;
    app.make_shop_known("shop-a").await;
    publish_anomaly(&app, "shop-a", "bad order no", AnomalyKind::MissingInWms).await;
    let dead = app.wait_for_dead_letters(1).await;
    assert!(dead[0].reason.contains("order_no"), "{}", dead[0].reason);

    let status = app
        .cart
        .clone()
        .list_orders(ListOrdersRequest {
            shop_id: "shop-a".into(),
            filter: Some(ListOrdersFilter {
                anomalies: vec![0, 99],
                ..ListOrdersFilter::default()
            }),
            ..ListOrdersRequest::default()
        })
        .await
        .expect_err("invalid kinds");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let fields: Vec<String> = wmslink_platform::validation::violations_of(&status)
        .into_iter()
        .map(|(field, _)| field)
        .collect();
    assert_eq!(fields, vec!["filter.anomalies[0]", "filter.anomalies[1]"]);
}
