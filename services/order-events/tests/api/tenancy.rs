//! I6: one shop never reads or changes another shop's orders.

use tonic::Code;
use wmslink_proto::orders::v1::{ChangeOrderStatusRequest, ListOrdersRequest, ShippingStatus};

use crate::helpers::{order, shipment, spawn_app};

#[tokio::test]
async fn shops_never_see_or_change_each_others_orders() {
    let app = spawn_app().await;
    app.make_shop_known("shop-a").await;
    app.make_shop_known("shop-b").await;
    let mut a = order("shop-a", "SAME-1", 1, "new");
    a.note = "shop a".into();
    let mut b = order("shop-b", "SAME-1", 7, "paid");
    b.note = "shop b".into();
    app.upsert(&a).await.expect("a");
    app.upsert(&b).await.expect("b");
    app.upsert(&order("shop-a", "ONLY-A", 1, "new"))
        .await
        .expect("only a");

    // Same order number, separate orders.
    assert_eq!(
        app.get("shop-a", "SAME-1").await.and_then(|v| v.order),
        Some(a.clone())
    );
    assert_eq!(
        app.get("shop-b", "SAME-1").await.and_then(|v| v.order),
        Some(b.clone())
    );
    assert!(app.get("shop-b", "ONLY-A").await.is_none());

    let listed = |shop: &str| {
        let mut client = app.cart.clone();
        let shop = shop.to_owned();
        async move {
            client
                .list_orders(ListOrdersRequest {
                    shop_id: shop,
                    ..ListOrdersRequest::default()
                })
                .await
                .expect("list")
                .into_inner()
                .rows
                .into_iter()
                .map(|row| (row.order_no, row.status_code))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        listed("shop-b").await,
        vec![("SAME-1".to_owned(), "paid".to_owned())]
    );
    assert_eq!(listed("shop-a").await.len(), 2);

    // A status change for shop-b cannot reach shop-a's order.
    let status = app
        .cart
        .clone()
        .change_order_status(ChangeOrderStatusRequest {
            shop_id: "shop-b".into(),
            order_no: "ONLY-A".into(),
            status_code: "cancelled".into(),
            expected_revision: 1,
        })
        .await
        .expect_err("not shop-b's order");
    assert_eq!(status.code(), Code::NotFound);

    // A shipment update of shop-b touches only shop-b's order.
    app.publish_shipment(&shipment(
        "shop-b",
        "SAME-1",
        1,
        ShippingStatus::Sent,
        20,
        "処理中",
    ))
    .await;
    app.wait_for_integration("shop-b", "SAME-1", "shop-b projection", |i| {
        i.wms_status_id == 20
    })
    .await;
    let a_integration = app
        .get("shop-a", "SAME-1")
        .await
        .and_then(|v| v.integration)
        .expect("integration");
    assert_eq!(a_integration.wms_status_id, 0);
    assert_eq!(a_integration.shipping_status(), ShippingStatus::NotSent);
    // ... so R4 locks shop-b's order only.
    let mut a2 = a.clone();
    a2.revision = 2;
    a2.status_code = "paid".into();
    app.upsert(&a2).await.expect("shop-a is not locked");

    // Each shop's events go to its own subjects.
    app.wait_for_events("shop-b", "SAME-1", 1).await;
    let a_events = app.wait_for_events("shop-a", "SAME-1", 2).await;
    assert!(a_events.iter().all(|e| e.shop() == "shop-a"));
}

const BOUND_TOKEN: &str = "merchant-console-token-bound-to-shop-a";

/// I6: a token bound to one shop (a merchant's console) cannot read or change another shop's
/// orders on any RPC of the service; on its own shop it works. The check is the
/// authorization layer's, from the service's one table, and the test calls every RPC the
/// service has.
#[tokio::test]
async fn a_shop_bound_token_cannot_read_or_change_another_shop_on_any_rpc() {
    use wmslink_platform::auth::{TokenConfig, scopes};
    use wmslink_proto::orders::v1::{GetOrderRequest, UpsertOrderRequest};

    let app = crate::helpers::spawn_app_with(|config| {
        config.auth.tokens.push(TokenConfig {
            caller: "merchant-console".into(),
            token: secrecy::SecretString::from(BOUND_TOKEN),
            scopes: vec![scopes::ORDERS_READ.into(), scopes::ORDERS_WRITE.into()],
            shops: vec!["shop-a".into()],
        });
    })
    .await;
    app.make_shop_known("shop-a").await;
    app.make_shop_known("shop-b").await;
    app.upsert(&order("shop-a", "A-1", 1, "new"))
        .await
        .expect("a");
    let b = order("shop-b", "B-1", 1, "new");
    app.upsert(&b).await.expect("b");
    let before = app.get("shop-b", "B-1").await.expect("b stored");
    let bound = app.client(BOUND_TOKEN).await;

    async fn every_rpc(
        client: &crate::helpers::Client,
        shop: &str,
        order_no: &str,
    ) -> Vec<(&'static str, Code)> {
        fn code<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Code {
            result.map_or_else(|status| status.code(), |_| Code::Ok)
        }
        let mut c = client.clone();
        let mut changed = order(shop, order_no, 2, "paid");
        changed.note = "changed by the console".into();
        vec![
            (
                "/wmslink.orders.v1.OrderService/UpsertOrder",
                code(
                    c.upsert_order(UpsertOrderRequest {
                        order: Some(changed),
                    })
                    .await,
                ),
            ),
            (
                "/wmslink.orders.v1.OrderService/ChangeOrderStatus",
                code(
                    c.change_order_status(ChangeOrderStatusRequest {
                        shop_id: shop.into(),
                        order_no: order_no.into(),
                        status_code: "cancelled".into(),
                        expected_revision: 1,
                    })
                    .await,
                ),
            ),
            (
                "/wmslink.orders.v1.OrderService/GetOrder",
                code(
                    c.get_order(GetOrderRequest {
                        shop_id: shop.into(),
                        order_no: order_no.into(),
                    })
                    .await,
                ),
            ),
            (
                "/wmslink.orders.v1.OrderService/ListOrders",
                code(
                    c.list_orders(ListOrdersRequest {
                        shop_id: shop.into(),
                        ..ListOrdersRequest::default()
                    })
                    .await,
                ),
            ),
        ]
    }

    let refused = every_rpc(&bound, "shop-b", "B-1").await;
    assert_eq!(
        refused
            .iter()
            .map(|(rpc, _)| (*rpc).to_owned())
            .collect::<Vec<_>>(),
        wmslink_platform::authz::methods_of("wmslink.orders.v1.OrderService"),
        "the test calls every RPC"
    );
    for (rpc, code) in &refused {
        assert_eq!(*code, Code::PermissionDenied, "{rpc} on another shop");
    }
    assert_eq!(
        app.get("shop-b", "B-1").await,
        Some(before),
        "nothing changed"
    );

    // On its own shop the token passes the layer (the status change may still be refused by
    // the order rules); the upsert and the reads succeed.
    for (rpc, code) in every_rpc(&bound, "shop-a", "A-1").await {
        assert_ne!(code, Code::PermissionDenied, "{rpc} on its own shop");
        assert_ne!(code, Code::Unauthenticated, "{rpc} on its own shop");
        if !rpc.ends_with("ChangeOrderStatus") {
            assert_eq!(code, Code::Ok, "{rpc} on its own shop");
        }
    }
}
