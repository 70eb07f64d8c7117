//! gRPC clients of the four services (and the dead-letter service), each with the bearer token.

use std::time::Duration;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use wmslink_platform::auth::BearerToken;
use wmslink_proto::dispatch::v1::dispatch_service_client::DispatchServiceClient;
use wmslink_proto::ops::v1::dead_letter_service_client::DeadLetterServiceClient;
use wmslink_proto::orders::v1::order_service_client::OrderServiceClient;
use wmslink_proto::settings::v1::settings_service_client::SettingsServiceClient;
use wmslink_proto::sync::v1::sync_service_client::SyncServiceClient;

use crate::config::Config;
use crate::error::CliError;

pub type Authed = InterceptedService<Channel, BearerToken>;

/// Connects on demand; each command uses only the services it needs.
pub struct Clients {
    config: Config,
    token: BearerToken,
}

pub const SETTINGS: &str = "settings";
pub const ORDERS: &str = "order-events";
pub const DISPATCH: &str = "shipment-dispatcher";
pub const SYNC: &str = "status-sync";
pub const DEAD_LETTERS: &str = "dead letters";

impl Clients {
    pub fn new(config: Config) -> Result<Self, CliError> {
        let token = BearerToken::new(&config.token()?)
            .map_err(|_| CliError::Auth("the token is not valid ASCII".into()))?;
        Ok(Self { config, token })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    async fn channel(
        &self,
        service: &'static str,
        url: &str,
        timeout: Duration,
    ) -> Result<Authed, CliError> {
        let unreachable = |reason: String| CliError::Unreachable {
            service,
            url: url.to_owned(),
            reason,
        };
        let endpoint = wmslink_platform::grpc::client_endpoint(url, &self.config.tls())
            .map_err(|err| CliError::invalid(format!("{service}: {err}")))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(timeout);
        let channel = endpoint.connect().await.map_err(|err| {
            let mut reason = err.to_string();
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                reason = format!("{reason}: {cause}");
                source = cause.source();
            }
            unreachable(reason)
        })?;
        Ok(InterceptedService::new(channel, self.token.clone()))
    }

    pub async fn settings(&self) -> Result<SettingsServiceClient<Authed>, CliError> {
        let channel = self
            .channel(SETTINGS, &self.config.settings_url, self.config.timeout())
            .await?;
        Ok(SettingsServiceClient::new(channel))
    }

    pub async fn orders(&self) -> Result<OrderServiceClient<Authed>, CliError> {
        let channel = self
            .channel(ORDERS, &self.config.orders_url, self.config.timeout())
            .await?;
        Ok(OrderServiceClient::new(channel))
    }

    /// `long`: for runs that answer when they are over.
    pub async fn dispatch(&self, long: bool) -> Result<DispatchServiceClient<Authed>, CliError> {
        let timeout = self.config.timeout() * if long { 10 } else { 1 };
        let channel = self
            .channel(DISPATCH, &self.config.dispatch_url, timeout)
            .await?;
        Ok(DispatchServiceClient::new(channel))
    }

    pub async fn sync(&self, long: bool) -> Result<SyncServiceClient<Authed>, CliError> {
        let timeout = self.config.timeout() * if long { 10 } else { 1 };
        let channel = self.channel(SYNC, &self.config.sync_url, timeout).await?;
        Ok(SyncServiceClient::new(channel))
    }

    pub async fn dead_letters(&self) -> Result<DeadLetterServiceClient<Authed>, CliError> {
        let channel = self
            .channel(
                DEAD_LETTERS,
                &self.config.dead_letters_url,
                self.config.timeout(),
            )
            .await?;
        Ok(DeadLetterServiceClient::new(channel))
    }
}

/// Maps a call's result to the CLI's error, naming the service.
pub trait CallExt<T> {
    fn or_cli(self, service: &'static str) -> Result<T, CliError>;
}

impl<T> CallExt<T> for Result<tonic::Response<T>, tonic::Status> {
    fn or_cli(self, service: &'static str) -> Result<T, CliError> {
        self.map(tonic::Response::into_inner)
            .map_err(|status| CliError::rpc(service, status))
    }
}
