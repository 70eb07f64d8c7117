//! `wmslink.settings.v1.SettingsService`: small handlers that parse the shop id, call the
//! [`SettingsService`] and convert the answer. Who may call what is not theirs to check: every
//! RPC's scope (and where its shop is, for tokens bound to shops) is declared once in
//! [`AUTHORIZATION`], enforced by the [`Authorize`](wmslink_platform::authz::Authorize) layer.
//! Errors become statuses in one place, `From<SettingsError> for Status` (`errors.rs`).

use std::sync::Arc;

use tonic::{Request, Response, Status};
use wmslink_platform::auth::{caller_name, scopes};
use wmslink_platform::authz::{MethodRule, ShopRule};
use wmslink_platform::shop::ShopId;
use wmslink_proto::settings::v1 as pb;
use wmslink_proto::settings::v1::settings_service_server::SettingsService as SettingsRpc;
use wmslink_proto::to_timestamp as timestamp;
use zeroize::Zeroizing;

use crate::errors::SettingsError;
use crate::service::{CheckResult, SettingsService, SettingsView};

macro_rules! rule {
    ($method:literal, $scope:expr, $shop:expr) => {
        MethodRule {
            method: concat!("/wmslink.settings.v1.SettingsService/", $method),
            scope: $scope,
            shop: $shop,
        }
    };
}

/// Every RPC, the scope it needs and where its shop is: the one table the
/// [`Authorize`](wmslink_platform::authz::Authorize) layer checks. An RPC missing here is
/// refused.
pub const AUTHORIZATION: &[MethodRule] = &[
    rule!("GetSettings", scopes::SETTINGS_READ, ShopRule::ShopIdField1),
    rule!(
        "ListOrderStatuses",
        scopes::SETTINGS_READ,
        ShopRule::ShopIdField1
    ),
    rule!("ListShops", scopes::SETTINGS_READ, ShopRule::AllShops),
    rule!(
        "RegisterSettings",
        scopes::SETTINGS_WRITE,
        ShopRule::ShopIdField1
    ),
    rule!(
        "CheckConnection",
        scopes::SETTINGS_WRITE,
        ShopRule::ShopIdField1
    ),
    rule!("SetEnabled", scopes::SETTINGS_WRITE, ShopRule::ShopIdField1),
    rule!(
        "PutOrderStatusCatalog",
        scopes::SETTINGS_WRITE,
        ShopRule::ShopIdField1
    ),
    rule!(
        "GetWmsCredentials",
        scopes::SETTINGS_CREDENTIALS,
        ShopRule::ShopIdField1
    ),
];

/// The gRPC face of the settings service.
#[derive(Clone)]
pub struct SettingsApi {
    service: Arc<SettingsService>,
}

impl SettingsApi {
    pub fn new(service: Arc<SettingsService>) -> Self {
        Self { service }
    }
}

fn shop_id(raw: &str) -> Result<ShopId, SettingsError> {
    ShopId::parse(raw).map_err(|err| SettingsError::invalid("shop_id", err.to_string()))
}

fn settings_to_proto(view: &SettingsView) -> pb::ShopSettings {
    let settings = &view.settings;
    pb::ShopSettings {
        shop_id: view.shop_id.to_string(),
        version: settings.version,
        detail: Some(settings.detail.to_proto()),
        access_key_masked: view.access_key_masked.clone(),
        access_key_set: true,
        last_connection_check: settings.check.as_ref().map(|check| pb::ConnectionCheck {
            outcome: check.outcome.to_proto() as i32,
            detail: check.detail.clone(),
            checked_at: Some(timestamp(check.checked_at)),
            current: settings.check_is_current(),
        }),
        enabled: settings.enabled,
        updated_at: Some(timestamp(settings.updated_at)),
    }
}

fn check_to_proto(result: &CheckResult) -> pb::CheckConnectionResponse {
    pb::CheckConnectionResponse {
        check: Some(pb::ConnectionCheck {
            outcome: result.outcome.to_proto() as i32,
            detail: result.detail.clone(),
            checked_at: Some(timestamp(result.checked_at)),
            current: result.current,
        }),
        recorded: result.recorded,
        version: result.version,
    }
}

/// The audit trail of a settings write: who (the token's caller), what (the RPC, the shop and
/// what the request touched), when (the log's timestamp) and how it ended. Never the key: only
/// whether one was given.
fn audit<T>(
    caller: &str,
    action: &'static str,
    shop: &str,
    what: &str,
    result: &Result<T, SettingsError>,
) {
    let outcome = match result {
        Ok(_) => "done",
        Err(err) => err.kind(),
    };
    tracing::info!(
        target: "wmslink::audit",
        caller,
        action,
        shop_id = shop,
        what,
        outcome,
        "settings write"
    );
}

#[tonic::async_trait]
impl SettingsRpc for SettingsApi {
    async fn get_settings(
        &self,
        request: Request<pb::GetSettingsRequest>,
    ) -> Result<Response<pb::GetSettingsResponse>, Status> {
        let shop = shop_id(&request.get_ref().shop_id)?;
        let view = self.service.get(&shop).await?;
        Ok(Response::new(pb::GetSettingsResponse {
            settings: Some(settings_to_proto(&view)),
        }))
    }

    async fn register_settings(
        &self,
        request: Request<pb::RegisterSettingsRequest>,
    ) -> Result<Response<pb::RegisterSettingsResponse>, Status> {
        let caller = caller_name(&request);
        let mut request = request.into_inner();
        // The key given, zeroed when the call is done.
        let access_key = Zeroizing::new(request.access_key.take());
        let shop = shop_id(&request.shop_id)?;
        let view = self
            .service
            .register(
                &shop,
                request.expected_version,
                request.detail.as_ref(),
                access_key.as_deref(),
            )
            .await;
        let endpoint = request
            .detail
            .as_ref()
            .map_or("", |detail| detail.endpoint_url.as_str());
        let what = format!(
            "endpoint_url={endpoint:?} access_key_given={}",
            access_key.is_some()
        );
        audit(&caller, "RegisterSettings", shop.as_str(), &what, &view);
        let view = view?;
        Ok(Response::new(pb::RegisterSettingsResponse {
            settings: Some(settings_to_proto(&view)),
        }))
    }

    async fn check_connection(
        &self,
        request: Request<pb::CheckConnectionRequest>,
    ) -> Result<Response<pb::CheckConnectionResponse>, Status> {
        let caller = caller_name(&request);
        let mut request = request.into_inner();
        // The key given, zeroed when the call is done.
        let access_key = Zeroizing::new(request.access_key.take());
        let shop = shop_id(&request.shop_id)?;
        let result = self
            .service
            .check_connection(
                &shop,
                access_key.as_deref(),
                request.endpoint_url.as_deref(),
            )
            .await;
        let what = format!(
            "endpoint_url={:?} access_key_given={}",
            request.endpoint_url.as_deref().unwrap_or("(registered)"),
            access_key.is_some()
        );
        audit(&caller, "CheckConnection", shop.as_str(), &what, &result);
        let result = result?;
        Ok(Response::new(check_to_proto(&result)))
    }

    async fn set_enabled(
        &self,
        request: Request<pb::SetEnabledRequest>,
    ) -> Result<Response<pb::SetEnabledResponse>, Status> {
        let caller = caller_name(&request);
        let request = request.into_inner();
        let shop = shop_id(&request.shop_id)?;
        let view = self
            .service
            .set_enabled(&shop, request.enabled, request.expected_version)
            .await;
        let what = format!("enabled={}", request.enabled);
        audit(&caller, "SetEnabled", shop.as_str(), &what, &view);
        let view = view?;
        Ok(Response::new(pb::SetEnabledResponse {
            settings: Some(settings_to_proto(&view)),
        }))
    }

    async fn put_order_status_catalog(
        &self,
        request: Request<pb::PutOrderStatusCatalogRequest>,
    ) -> Result<Response<pb::PutOrderStatusCatalogResponse>, Status> {
        let caller = caller_name(&request);
        let request = request.into_inner();
        let shop = shop_id(&request.shop_id)?;
        let result = self
            .service
            .put_catalog(&shop, &request.statuses, request.expected_version)
            .await;
        let what = format!("statuses={}", request.statuses.len());
        audit(
            &caller,
            "PutOrderStatusCatalog",
            shop.as_str(),
            &what,
            &result,
        );
        let (statuses, version) = result?;
        Ok(Response::new(pb::PutOrderStatusCatalogResponse {
            statuses: statuses.iter().map(|s| s.to_proto()).collect(),
            version,
        }))
    }

    async fn list_order_statuses(
        &self,
        request: Request<pb::ListOrderStatusesRequest>,
    ) -> Result<Response<pb::ListOrderStatusesResponse>, Status> {
        let shop = shop_id(&request.get_ref().shop_id)?;
        let (statuses, version) = self.service.list_catalog(&shop).await?;
        Ok(Response::new(pb::ListOrderStatusesResponse {
            statuses: statuses.iter().map(|s| s.to_proto()).collect(),
            version,
        }))
    }

    async fn get_wms_credentials(
        &self,
        request: Request<pb::GetWmsCredentialsRequest>,
    ) -> Result<Response<pb::GetWmsCredentialsResponse>, Status> {
        let caller = caller_name(&request);
        let shop = shop_id(&request.get_ref().shop_id)?;
        let settings = self.service.credentials(&shop).await?;
        tracing::debug!(shop_id = %shop, caller = %caller, "sealed WMS credentials handed out");
        Ok(Response::new(pb::GetWmsCredentialsResponse {
            endpoint_url: settings.detail.endpoint_url,
            key_id: settings.access_key.key_id,
            sealed_access_key: settings.access_key.blob,
            version: settings.version,
            enabled: settings.enabled,
        }))
    }

    async fn list_shops(
        &self,
        request: Request<pb::ListShopsRequest>,
    ) -> Result<Response<pb::ListShopsResponse>, Status> {
        let request = request.into_inner();
        // The token is the id of the last shop of the previous page.
        let after = match request.page_token.as_str() {
            "" => None,
            token => Some(ShopId::parse(token).map_err(|_| {
                SettingsError::invalid("page_token", "not a token of a previous ListShops answer")
            })?),
        };
        let (shops, next) = self
            .service
            .list_shops(request.enabled_only, after.as_ref(), request.page_size)
            .await?;
        Ok(Response::new(pb::ListShopsResponse {
            shops: shops
                .into_iter()
                .map(|shop| pb::ShopSummary {
                    shop_id: shop.shop_id,
                    version: shop.version,
                    enabled: shop.enabled,
                })
                .collect(),
            next_page_token: next.unwrap_or_default(),
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeSet;

    use super::*;

    /// The table names every RPC of the service (no more), and every rule that reads the shop
    /// from field 1 is right about the request message.
    #[test]
    fn every_rpc_is_in_the_authorization_table() {
        let pool =
            prost_reflect::DescriptorPool::decode(wmslink_proto::FILE_DESCRIPTOR_SET).unwrap();
        let service = pool
            .get_service_by_name("wmslink.settings.v1.SettingsService")
            .unwrap();
        let methods: BTreeSet<String> = service
            .methods()
            .map(|m| format!("/{}/{}", service.full_name(), m.name()))
            .collect();
        let table: BTreeSet<String> = AUTHORIZATION.iter().map(|r| r.method.to_owned()).collect();
        assert_eq!(methods, table);
        for method in service.methods() {
            let path = format!("/{}/{}", service.full_name(), method.name());
            let rule = AUTHORIZATION.iter().find(|r| r.method == path).unwrap();
            if rule.shop == ShopRule::ShopIdField1 {
                let field = method.input().get_field(1).unwrap();
                assert_eq!(field.name(), "shop_id", "{path}");
                assert_eq!(field.kind(), prost_reflect::Kind::String, "{path}");
            }
        }
    }
}
