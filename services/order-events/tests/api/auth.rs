//! Callers authenticate with a bearer token; each RPC needs its scope.

use tonic::Code;
use tonic::transport::Channel;
use wmslink_proto::orders::v1::order_service_client::OrderServiceClient;
use wmslink_proto::orders::v1::{
    ChangeOrderStatusRequest, GetOrderRequest, ListOrdersRequest, UpsertOrderRequest,
};

use crate::helpers::{Client, OTHER_TOKEN, READER_TOKEN, WRITER_TOKEN, order, spawn_app};

/// Calls every RPC and returns the status codes (Ok for success).
async fn codes(client: &mut Client) -> [Code; 4] {
    let code = |result: Result<(), tonic::Status>| result.err().map_or(Code::Ok, |s| s.code());
    [
        code(
            client
                .upsert_order(UpsertOrderRequest {
                    order: Some(order("shop-a", "AUTH-1", 1, "new")),
                })
                .await
                .map(|_| ()),
        ),
        code(
            client
                .change_order_status(ChangeOrderStatusRequest {
                    shop_id: "shop-a".into(),
                    order_no: "AUTH-1".into(),
                    status_code: "new".into(),
                    expected_revision: 1,
                })
                .await
                .map(|_| ()),
        ),
        code(
            client
                .get_order(GetOrderRequest {
                    shop_id: "shop-a".into(),
                    order_no: "AUTH-1".into(),
                })
                .await
                .map(|_| ()),
        ),
        code(
            client
                .list_orders(ListOrdersRequest {
                    shop_id: "shop-a".into(),
                    ..ListOrdersRequest::default()
                })
                .await
                .map(|_| ()),
        ),
    ]
}

#[tokio::test]
async fn every_rpc_needs_a_token_with_its_scope() {
    let app = spawn_app().await;
    app.make_shop_known("shop-a").await;

    // Order: upsert, change status, get, list.
    let mut writer = app.client(WRITER_TOKEN).await;
    assert_eq!(
        codes(&mut writer).await,
        [
            Code::Ok,
            Code::Ok,
            Code::PermissionDenied,
            Code::PermissionDenied
        ]
    );
    let mut reader = app.client(READER_TOKEN).await;
    assert_eq!(
        codes(&mut reader).await,
        [
            Code::PermissionDenied,
            Code::PermissionDenied,
            Code::Ok,
            Code::Ok
        ]
    );
    let mut other = app.client(OTHER_TOKEN).await;
    assert_eq!(codes(&mut other).await, [Code::PermissionDenied; 4]);
    let mut wrong = app.client("not-a-configured-token").await;
    assert_eq!(codes(&mut wrong).await, [Code::Unauthenticated; 4]);

    let channel = Channel::from_shared(format!("http://{}", app.addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut anonymous = OrderServiceClient::new(channel);
    let status = anonymous
        .list_orders(ListOrdersRequest {
            shop_id: "shop-a".into(),
            ..ListOrdersRequest::default()
        })
        .await
        .expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = anonymous
        .upsert_order(UpsertOrderRequest {
            order: Some(order("shop-a", "AUTH-2", 1, "new")),
        })
        .await
        .expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(app.get("shop-a", "AUTH-2").await.is_none());
}
