//! The dispatcher's client of order-events (the `[order_events]` section): the rebuild sweep
//! ([`crate::sender::rebuild`]) asks it, over gRPC, for a shop's orders in a target or cancel
//! status, to redo what lost order events left undone. Off when `url` is empty.

use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use wmslink_platform::auth::BearerToken;
use wmslink_platform::config::{InvalidConfig, Validate, key};
use wmslink_platform::runtime::Profile;
use wmslink_proto::orders::v1::order_service_client::OrderServiceClient;
use wmslink_proto::orders::v1::{
    GetOrderRequest, ListOrdersFilter, ListOrdersRequest, ListOrdersResponse, Order,
};

/// The most rows order-events gives in one page of `ListOrders`.
pub const MAX_PAGE_SIZE: u32 = 200;
/// The most status codes one `ListOrders` filter may carry.
pub const MAX_FILTER_VALUES: usize = 50;

/// The `[order_events]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct OrderEventsConfig {
    /// order-events' gRPC URL, e.g. `http://127.0.0.1:50052`. Empty (the default): no rebuild
    /// sweep; an order whose order event was lost waits for a person.
    pub url: String,
    /// A bearer token with order-events' `orders.read` scope for every shop; serialized as an
    /// empty string.
    #[serde(serialize_with = "serialize_redacted")]
    pub token: SecretString,
    /// Connect timeout and deadline of one call (at least 100). Default 5,000.
    pub timeout_ms: u64,
    /// How often every enabled shop is compared with order-events (at least
    /// `sender.sweep_interval_ms`: each pass reads every order of the sync period in a target
    /// or cancel status). Default 900,000 (15 minutes).
    pub rebuild_interval_ms: u64,
    /// Orders per `ListOrders` page (1 to 200). Default 200.
    pub page_size: u32,
}

impl Default for OrderEventsConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            token: SecretString::from(""),
            timeout_ms: 5_000,
            rebuild_interval_ms: 900_000,
            page_size: MAX_PAGE_SIZE,
        }
    }
}

fn serialize_redacted<S: serde::Serializer>(_: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("")
}

impl OrderEventsConfig {
    pub fn enabled(&self) -> bool {
        !self.url.is_empty()
    }

    pub fn rebuild_interval(&self) -> Duration {
        Duration::from_millis(self.rebuild_interval_ms)
    }

    /// With the rebuild on, the production profile needs a production token.
    pub fn check_production(&self, profile: Profile, section: &str, problems: &mut InvalidConfig) {
        if self.enabled() {
            wmslink_platform::secrets::check_production_token(
                profile,
                key(section, "token"),
                "the token presented to order-events",
                &self.token,
                problems,
            );
        }
    }
}

impl Validate for OrderEventsConfig {
    fn check(&self, section: &str, problems: &mut InvalidConfig) {
        if self.enabled()
            && let Err(err) = Endpoint::from_shared(self.url.clone())
        {
            problems.add(key(section, "url"), format!("not a URL: {err}"));
        }
        problems.check(
            self.timeout_ms >= 100,
            key(section, "timeout_ms"),
            "must be at least 100",
        );
        problems.check(
            self.rebuild_interval_ms >= 100,
            key(section, "rebuild_interval_ms"),
            "must be at least 100",
        );
        problems.check(
            (1..=MAX_PAGE_SIZE).contains(&self.page_size),
            key(section, "page_size"),
            "must be between 1 and 200",
        );
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OrderEventsError {
    #[error("order-events cannot be asked: {0}")]
    Config(String),
    #[error("order-events did not answer ({code:?}: {message})")]
    Call { code: Code, message: String },
}

impl From<Status> for OrderEventsError {
    fn from(status: Status) -> Self {
        Self::Call {
            code: status.code(),
            message: status.message().to_owned(),
        }
    }
}

type Client = OrderServiceClient<InterceptedService<Channel, BearerToken>>;

/// `ListOrders` and `GetOrder` of order-events.
#[derive(Clone)]
pub struct OrderEventsClient {
    client: Client,
    page_size: u32,
}

impl OrderEventsClient {
    /// Connects lazily; `None` when the rebuild is off (no URL).
    pub fn new(config: &OrderEventsConfig) -> Result<Option<Self>, OrderEventsError> {
        if !config.enabled() {
            tracing::warn!(
                "order_events.url is empty: no rebuild sweep; an order whose order event was lost is not sent or cancelled"
            );
            return Ok(None);
        }
        let timeout = Duration::from_millis(config.timeout_ms);
        let channel = Endpoint::from_shared(config.url.clone())
            .map_err(|err| OrderEventsError::Config(format!("url '{}': {err}", config.url)))?
            .connect_timeout(timeout)
            .timeout(timeout)
            .connect_lazy();
        let token = BearerToken::new(&config.token)
            .map_err(|status| OrderEventsError::Config(status.message().to_owned()))?;
        Ok(Some(Self {
            client: OrderServiceClient::with_interceptor(channel, token),
            page_size: config.page_size.clamp(1, MAX_PAGE_SIZE),
        }))
    }

    /// One page of the shop's orders in one of `status_codes` (at most
    /// [`MAX_FILTER_VALUES`]) with an order date at or after `since`; `page_token` from the
    /// previous page (empty for the first).
    pub async fn list_page(
        &self,
        shop_id: &str,
        status_codes: &[String],
        since: DateTime<Utc>,
        page_token: String,
    ) -> Result<ListOrdersResponse, OrderEventsError> {
        let request = ListOrdersRequest {
            shop_id: shop_id.to_owned(),
            filter: Some(ListOrdersFilter {
                status_codes: status_codes.to_vec(),
                order_date_from: Some(wmslink_proto::to_timestamp(since)),
                ..ListOrdersFilter::default()
            }),
            page_size: self.page_size,
            page_token,
        };
        Ok(self.client.clone().list_orders(request).await?.into_inner())
    }

    /// The order as order-events stores it; `None` when it does not know it.
    pub async fn get(
        &self,
        shop_id: &str,
        order_no: &str,
    ) -> Result<Option<Order>, OrderEventsError> {
        let request = GetOrderRequest {
            shop_id: shop_id.to_owned(),
            order_no: order_no.to_owned(),
        };
        match self.client.clone().get_order(request).await {
            Ok(answer) => Ok(answer.into_inner().order.and_then(|view| view.order)),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(status.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_bad_values_are_refused_by_name() {
        let config = OrderEventsConfig::default();
        assert!(!config.enabled());
        assert!(matches!(OrderEventsClient::new(&config), Ok(None)));
        let bad = OrderEventsConfig {
            url: "not a url".into(),
            timeout_ms: 5,
            page_size: 201,
            ..OrderEventsConfig::default()
        };
        let mut problems = InvalidConfig::default();
        bad.check("order_events", &mut problems);
        let text = problems.to_string();
        assert!(text.contains("order_events.url: not a URL"), "{text}");
        assert!(text.contains("order_events.timeout_ms"), "{text}");
        assert!(text.contains("order_events.page_size"), "{text}");
        assert_eq!(problems.problems().len(), 3, "{text}");
    }
}
