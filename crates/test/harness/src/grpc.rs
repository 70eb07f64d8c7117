//! Tokens, channels and authenticated clients of the services' gRPC APIs.

use std::net::SocketAddr;

use secrecy::SecretString;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use wmslink_platform::auth::{AuthConfig, BearerToken, TokenConfig, scopes};
use wmslink_platform::grpc::GrpcConfig;
use wmslink_proto::dispatch::v1::dispatch_service_client::DispatchServiceClient;
use wmslink_proto::orders::v1::order_service_client::OrderServiceClient;
use wmslink_proto::settings::v1::settings_service_client::SettingsServiceClient;
use wmslink_proto::sync::v1::sync_service_client::SyncServiceClient;

/// A channel that sends a bearer token with every call.
pub type Authed = InterceptedService<Channel, BearerToken>;
pub type SettingsClient = SettingsServiceClient<Authed>;
pub type OrdersClient = OrderServiceClient<Authed>;
pub type DispatchClient = DispatchServiceClient<Authed>;
pub type SyncClient = SyncServiceClient<Authed>;

/// A token a service accepts: who presents it and what it may do.
pub fn token(caller: &str, token: &str, scopes: &[&str]) -> TokenConfig {
    TokenConfig {
        caller: caller.into(),
        token: SecretString::from(token.to_owned()),
        scopes: scopes.iter().map(|scope| (*scope).to_owned()).collect(),
        shops: Vec::new(),
    }
}

/// An operator (`operate` + `orders.read`) and a reader (`orders.read` only), as the
/// dispatcher's and status-sync's suites call them.
pub fn operator_and_reader(operator_token: &str, reader_token: &str) -> AuthConfig {
    AuthConfig {
        tokens: vec![
            token(
                "operator",
                operator_token,
                &[scopes::OPERATE, scopes::ORDERS_READ],
            ),
            token("reader", reader_token, &[scopes::ORDERS_READ]),
        ],
    }
}

/// The interceptor a client presents `token` with.
pub fn bearer(token: &str) -> BearerToken {
    BearerToken::new(&SecretString::from(token.to_owned())).expect("ascii token")
}

/// gRPC on a free loopback port.
pub fn port_zero() -> GrpcConfig {
    GrpcConfig::listening_on("127.0.0.1:0")
}

/// A channel to `addr` that connects on its first call.
pub fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect_lazy()
}

/// A channel to `addr`, connected now (fails the test when nothing listens).
pub async fn connect(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connects")
}

pub fn settings_client(channel: Channel, token: &str) -> SettingsClient {
    SettingsServiceClient::with_interceptor(channel, bearer(token))
}

pub fn orders_client(channel: Channel, token: &str) -> OrdersClient {
    OrderServiceClient::with_interceptor(channel, bearer(token))
}

pub fn dispatch_client(channel: Channel, token: &str) -> DispatchClient {
    DispatchServiceClient::with_interceptor(channel, bearer(token))
}

pub fn sync_client(channel: Channel, token: &str) -> SyncClient {
    SyncServiceClient::with_interceptor(channel, bearer(token))
}
