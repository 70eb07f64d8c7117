//! gRPC `wmslink.orders.v1.OrderService`: scope check, input check, then the order rules.

use prost::Message;
use sqlx::PgPool;
use tonic::{Request, Response, Status};
use wmslink_platform::auth::{require, scopes};
use wmslink_platform::shop::ShopId;
use wmslink_platform::validation::FieldViolations;
use wmslink_proto::orders::v1::order_service_server::OrderService;
use wmslink_proto::orders::v1::{
    ChangeOrderStatusRequest, ChangeOrderStatusResponse, GetOrderRequest, GetOrderResponse,
    ListOrdersRequest, ListOrdersResponse, UpsertOrderRequest, UpsertOrderResponse,
};

use crate::domain::list::{Driver, parse_list_request};
use crate::domain::validation::{check_order, check_order_no, check_shop_id, check_status_code};
use crate::service::{Orders, Source};
use crate::store;

pub struct OrderApi {
    orders: Orders,
    max_message_bytes: usize,
}

impl OrderApi {
    pub fn new(orders: Orders, max_message_bytes: usize) -> Self {
        Self {
            orders,
            max_message_bytes,
        }
    }
}

/// The list, from a raw request to the response, and how the page was read (the gRPC handler
/// and the benchmark both go through here).
pub async fn list_orders(
    pool: &PgPool,
    request: &ListOrdersRequest,
) -> Result<(ListOrdersResponse, Driver), Status> {
    let query = parse_list_request(request).map_err(FieldViolations::into_status)?;
    let page = store::list_orders(pool, &query)
        .await
        .map_err(|err| wmslink_platform::grpc::internal("listing orders", err))?;
    let response = ListOrdersResponse {
        rows: page.rows,
        next_page_token: page.next.map(|cursor| cursor.encode()).unwrap_or_default(),
    };
    Ok((response, page.driver))
}

#[tonic::async_trait]
impl OrderService for OrderApi {
    async fn upsert_order(
        &self,
        request: Request<UpsertOrderRequest>,
    ) -> Result<Response<UpsertOrderResponse>, Status> {
        require(&request, scopes::ORDERS_WRITE)?;
        let mut violations = FieldViolations::new();
        let Some(order) = request.into_inner().order else {
            violations.add("order", "must be set");
            return Err(violations.into_status());
        };
        check_order(
            "order",
            &order,
            order.encoded_len(),
            self.max_message_bytes,
            &mut violations,
        );
        violations.into_result()?;
        let shop = ShopId::parse(&order.shop_id)
            .map_err(|err| Status::invalid_argument(format!("order.shop_id: {err}")))?;
        let (applied, stored_revision) = self.orders.upsert(&shop, &order, Source::Grpc).await?;
        Ok(Response::new(UpsertOrderResponse {
            outcome: applied.outcome() as i32,
            stored_revision,
        }))
    }

    async fn change_order_status(
        &self,
        request: Request<ChangeOrderStatusRequest>,
    ) -> Result<Response<ChangeOrderStatusResponse>, Status> {
        require(&request, scopes::ORDERS_WRITE)?;
        let request = request.into_inner();
        let mut violations = FieldViolations::new();
        let shop = check_shop_id("shop_id", &request.shop_id, &mut violations);
        check_order_no("order_no", &request.order_no, &mut violations);
        check_status_code("status_code", &request.status_code, &mut violations);
        if request.expected_revision < 1 {
            violations.add("expected_revision", "must be at least 1");
        }
        violations.into_result()?;
        let Some(shop) = shop else {
            return Err(Status::invalid_argument("shop_id: invalid"));
        };
        let view = self
            .orders
            .change_status(
                &shop,
                &request.order_no,
                &request.status_code,
                request.expected_revision,
            )
            .await?;
        Ok(Response::new(ChangeOrderStatusResponse {
            order: Some(view),
        }))
    }

    async fn get_order(
        &self,
        request: Request<GetOrderRequest>,
    ) -> Result<Response<GetOrderResponse>, Status> {
        require(&request, scopes::ORDERS_READ)?;
        let request = request.into_inner();
        let mut violations = FieldViolations::new();
        let shop = check_shop_id("shop_id", &request.shop_id, &mut violations);
        check_order_no("order_no", &request.order_no, &mut violations);
        violations.into_result()?;
        let Some(shop) = shop else {
            return Err(Status::invalid_argument("shop_id: invalid"));
        };
        let stored = self.orders.get(&shop, &request.order_no).await?;
        Ok(Response::new(GetOrderResponse {
            order: Some(stored.view()),
        }))
    }

    async fn list_orders(
        &self,
        request: Request<ListOrdersRequest>,
    ) -> Result<Response<ListOrdersResponse>, Status> {
        require(&request, scopes::ORDERS_READ)?;
        let (response, _) = list_orders(self.orders.pool(), request.get_ref()).await?;
        Ok(Response::new(response))
    }
}
