//! Sets a shop up through the settings service the way an operator does: the order-status
//! catalog, the detail settings with the WMS access key, a connection check that must pass, and
//! the enable switch. The demo seeder uses it, and so do the test suites that need an enabled
//! shop, so the sequence is written once.

use secrecy::{ExposeSecret, SecretString};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};
use wmslink_platform::auth::BearerToken;
use wmslink_proto::settings::v1 as pb;
use wmslink_proto::settings::v1::settings_service_client::SettingsServiceClient;

pub type SettingsClient = SettingsServiceClient<InterceptedService<Channel, BearerToken>>;

/// What a shop is set up with.
#[derive(Clone)]
pub struct ShopSetup {
    pub shop_id: String,
    pub catalog: Vec<pb::OrderStatus>,
    pub detail: pb::DetailSettings,
    pub access_key: SecretString,
}

#[derive(Debug, thiserror::Error)]
pub enum ShopSetupError {
    #[error("{step} of shop {shop_id}: {status}")]
    Call {
        step: &'static str,
        shop_id: String,
        status: Status,
    },
    #[error("the connection check of shop {shop_id} did not pass: {check:?}")]
    CheckFailed {
        shop_id: String,
        check: Option<pb::ConnectionCheck>,
    },
}

impl ShopSetup {
    fn failed(&self, step: &'static str) -> impl FnOnce(Status) -> ShopSetupError + '_ {
        move |status| ShopSetupError::Call {
            step,
            shop_id: self.shop_id.clone(),
            status,
        }
    }

    /// Stores the catalog and the settings (over the current version, so a shop set up before
    /// is set up again) and checks the connection, which must pass. Returns the settings
    /// version after the check, the one to enable.
    pub async fn register_and_check(
        &self,
        client: &mut SettingsClient,
    ) -> Result<i64, ShopSetupError> {
        client
            .put_order_status_catalog(pb::PutOrderStatusCatalogRequest {
                shop_id: self.shop_id.clone(),
                statuses: self.catalog.clone(),
                // The set-up is repeatable: the catalog is replaced whatever the version.
                expected_version: None,
            })
            .await
            .map_err(self.failed("storing the order-status catalog"))?;
        let current_version = match client
            .get_settings(pb::GetSettingsRequest {
                shop_id: self.shop_id.clone(),
            })
            .await
        {
            Ok(answer) => answer.into_inner().settings.map_or(0, |s| s.version),
            Err(status) if status.code() == Code::NotFound => 0,
            Err(status) => return Err(self.failed("reading the settings")(status)),
        };
        client
            .register_settings(pb::RegisterSettingsRequest {
                shop_id: self.shop_id.clone(),
                expected_version: current_version,
                detail: Some(self.detail.clone()),
                access_key: Some(self.access_key.expose_secret().to_owned()),
            })
            .await
            .map_err(self.failed("registering the settings"))?;
        let checked = client
            .check_connection(pb::CheckConnectionRequest {
                shop_id: self.shop_id.clone(),
                access_key: None,
                endpoint_url: None,
            })
            .await
            .map_err(self.failed("checking the connection"))?
            .into_inner();
        if checked.check.as_ref().map(pb::ConnectionCheck::outcome)
            != Some(pb::ConnectionCheckOutcome::Ok)
        {
            return Err(ShopSetupError::CheckFailed {
                shop_id: self.shop_id.clone(),
                check: checked.check,
            });
        }
        Ok(checked.version)
    }

    /// [`register_and_check`](Self::register_and_check), then switches the integration on.
    /// Returns the settings version it was enabled at.
    pub async fn enable(&self, client: &mut SettingsClient) -> Result<i64, ShopSetupError> {
        let version = self.register_and_check(client).await?;
        let enabled = client
            .set_enabled(pb::SetEnabledRequest {
                shop_id: self.shop_id.clone(),
                enabled: true,
                expected_version: version,
            })
            .await
            .map_err(self.failed("enabling"))?
            .into_inner();
        Ok(enabled
            .settings
            .map_or(version, |settings| settings.version))
    }
}
