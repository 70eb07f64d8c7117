//! gRPC `wmslink.orders.v1.OrderService`: input check, then the order rules. Who may call
//! what is declared once in [`AUTHORIZATION`] and enforced by the
//! [`Authorize`](wmslink_platform::authz::Authorize) layer before a handler runs. Errors become
//! statuses in one place, `From<OrderError> for Status` (`errors.rs`).

use prost::Message;
use sqlx::PgPool;
use tonic::{Request, Response, Status};
use wmslink_platform::auth::scopes;
use wmslink_platform::authz::{MethodRule, ShopRule};
use wmslink_platform::shop::ShopId;
use wmslink_platform::validation::FieldViolations;
use wmslink_proto::orders::v1::order_service_server::OrderService;
use wmslink_proto::orders::v1::{
    ChangeOrderStatusRequest, ChangeOrderStatusResponse, GetOrderRequest, GetOrderResponse,
    ListOrdersRequest, ListOrdersResponse, UpsertOrderRequest, UpsertOrderResponse,
};

use crate::domain::list::{Driver, parse_list_request};
use crate::domain::validation::{check_order, check_order_no, check_shop_id, check_status_code};
use crate::errors::OrderError;
use crate::service::{Orders, Source};
use crate::store;

macro_rules! rule {
    ($method:literal, $scope:expr, $shop:expr) => {
        MethodRule {
            method: concat!("/wmslink.orders.v1.OrderService/", $method),
            scope: $scope,
            shop: $shop,
        }
    };
}

/// Every RPC, the scope it needs and where its shop is: the one table the
/// [`Authorize`](wmslink_platform::authz::Authorize) layer checks. An RPC missing here is
/// refused.
pub const AUTHORIZATION: &[MethodRule] = &[
    rule!(
        "UpsertOrder",
        scopes::ORDERS_WRITE,
        ShopRule::ShopIdField1OfField1
    ),
    rule!(
        "ChangeOrderStatus",
        scopes::ORDERS_WRITE,
        ShopRule::ShopIdField1
    ),
    rule!("GetOrder", scopes::ORDERS_READ, ShopRule::ShopIdField1),
    rule!("ListOrders", scopes::ORDERS_READ, ShopRule::ShopIdField1),
];

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
) -> Result<(ListOrdersResponse, Driver), OrderError> {
    let query = parse_list_request(request).map_err(OrderError::Invalid)?;
    let page = store::list_orders(pool, &query).await?;
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
        let Some(order) = request.into_inner().order else {
            return Err(OrderError::invalid("order", "must be set").into());
        };
        let mut violations = FieldViolations::new();
        check_order(
            "order",
            &order,
            order.encoded_len(),
            self.max_message_bytes,
            &mut violations,
        );
        OrderError::check(violations)?;
        let shop = ShopId::parse(&order.shop_id)
            .map_err(|err| OrderError::invalid("order.shop_id", err.to_string()))?;
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
        let request = request.into_inner();
        let mut violations = FieldViolations::new();
        let shop = check_shop_id("shop_id", &request.shop_id, &mut violations);
        check_order_no("order_no", &request.order_no, &mut violations);
        check_status_code("status_code", &request.status_code, &mut violations);
        if request.expected_revision < 1 {
            violations.add("expected_revision", "must be at least 1");
        }
        OrderError::check(violations)?;
        // check_shop_id adds a violation whenever it gives no shop.
        let Some(shop) = shop else {
            return Err(OrderError::invalid("shop_id", "invalid").into());
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
        let request = request.into_inner();
        let mut violations = FieldViolations::new();
        let shop = check_shop_id("shop_id", &request.shop_id, &mut violations);
        check_order_no("order_no", &request.order_no, &mut violations);
        OrderError::check(violations)?;
        // check_shop_id adds a violation whenever it gives no shop.
        let Some(shop) = shop else {
            return Err(OrderError::invalid("shop_id", "invalid").into());
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
        let (response, _) = list_orders(self.orders.pool(), request.get_ref()).await?;
        Ok(Response::new(response))
    }
}

#[cfg(test)]
mod tests {
    use super::AUTHORIZATION;

    #[test]
    fn every_rpc_is_in_the_authorization_table() {
        let problems = wmslink_platform::authz::table_problems(
            "wmslink.orders.v1.OrderService",
            AUTHORIZATION,
        );
        assert!(problems.is_empty(), "{problems:?}");
    }
}
