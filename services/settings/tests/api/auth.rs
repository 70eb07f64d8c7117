use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use wmslink_proto::settings::v1 as pb;
use wmslink_proto::settings::v1::settings_service_client::SettingsServiceClient;

use crate::helpers::*;

/// Calls every RPC for `shop`; returns each name with its status code.
async fn call_every_rpc<T>(
    mut client: SettingsServiceClient<T>,
    shop: &str,
) -> Vec<(&'static str, Code)>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    fn code<R>(result: Result<R, tonic::Status>) -> Code {
        result
            .map(|_| Code::Ok)
            .unwrap_or_else(|status| status.code())
    }
    let shop_id = shop.to_owned();
    vec![
        (
            "GetSettings",
            code(
                client
                    .get_settings(pb::GetSettingsRequest {
                        shop_id: shop_id.clone(),
                    })
                    .await,
            ),
        ),
        (
            "ListOrderStatuses",
            code(
                client
                    .list_order_statuses(pb::ListOrderStatusesRequest {
                        shop_id: shop_id.clone(),
                    })
                    .await,
            ),
        ),
        (
            "RegisterSettings",
            code(
                client
                    .register_settings(pb::RegisterSettingsRequest {
                        shop_id: shop_id.clone(),
                        expected_version: 0,
                        detail: Some(full_detail("https://api.crobo.jp/v1")),
                        access_key: Some("ak-1234567890".into()),
                    })
                    .await,
            ),
        ),
        (
            "CheckConnection",
            code(
                client
                    .check_connection(pb::CheckConnectionRequest {
                        shop_id: shop_id.clone(),
                        access_key: None,
                        endpoint_url: None,
                    })
                    .await,
            ),
        ),
        (
            "SetEnabled",
            code(
                client
                    .set_enabled(pb::SetEnabledRequest {
                        shop_id: shop_id.clone(),
                        enabled: false,
                        expected_version: 0,
                    })
                    .await,
            ),
        ),
        (
            "PutOrderStatusCatalog",
            code(
                client
                    .put_order_status_catalog(pb::PutOrderStatusCatalogRequest {
                        shop_id: shop_id.clone(),
                        statuses: catalog(),
                        expected_version: None,
                    })
                    .await,
            ),
        ),
        (
            "GetWmsCredentials",
            code(
                client
                    .get_wms_credentials(pb::GetWmsCredentialsRequest {
                        shop_id: shop_id.clone(),
                    })
                    .await,
            ),
        ),
        (
            "ListShops",
            code(
                client
                    .list_shops(pb::ListShopsRequest {
                        enabled_only: false,
                        page_size: 0,
                        page_token: String::new(),
                    })
                    .await,
            ),
        ),
    ]
}

#[tokio::test]
async fn a_missing_or_wrong_token_is_unauthenticated() {
    let app = spawn_app().await;
    let shop = unique_shop();
    let channel: Channel = app.channel().await;

    let anonymous = SettingsServiceClient::new(channel.clone());
    for (rpc, code) in call_every_rpc(anonymous, &shop).await {
        assert_eq!(code, Code::Unauthenticated, "{rpc} without a token");
    }
    let wrong = client_for(&channel, "not-a-configured-token");
    for (rpc, code) in call_every_rpc(wrong, &shop).await {
        assert_eq!(code, Code::Unauthenticated, "{rpc} with a wrong token");
    }
    // A configured token with one character changed is wrong too.
    let almost = client_for(&channel, &ADMIN_TOKEN.replace('0', "1"));
    for (rpc, code) in call_every_rpc(almost, &shop).await {
        assert_eq!(
            code,
            Code::Unauthenticated,
            "{rpc} with an almost right token"
        );
    }
    assert_code(app.get(&shop).await, Code::NotFound);
}

#[tokio::test]
async fn each_rpc_needs_its_scope() {
    let app = spawn_app().await;
    let shop = unique_shop();

    let reader = call_every_rpc(app.reader.clone(), &shop).await;
    assert_eq!(
        reader,
        [
            ("GetSettings", Code::NotFound),
            ("ListOrderStatuses", Code::Ok),
            ("RegisterSettings", Code::PermissionDenied),
            ("CheckConnection", Code::PermissionDenied),
            ("SetEnabled", Code::PermissionDenied),
            ("PutOrderStatusCatalog", Code::PermissionDenied),
            ("GetWmsCredentials", Code::PermissionDenied),
            ("ListShops", Code::Ok),
        ]
    );
    let dispatcher = call_every_rpc(app.dispatcher.clone(), &shop).await;
    assert_eq!(
        dispatcher,
        [
            ("GetSettings", Code::PermissionDenied),
            ("ListOrderStatuses", Code::PermissionDenied),
            ("RegisterSettings", Code::PermissionDenied),
            ("CheckConnection", Code::PermissionDenied),
            ("SetEnabled", Code::PermissionDenied),
            ("PutOrderStatusCatalog", Code::PermissionDenied),
            ("GetWmsCredentials", Code::NotFound),
            ("ListShops", Code::PermissionDenied),
        ]
    );
    // Nothing was written by the refused calls.
    assert_code(app.get(&shop).await, Code::NotFound);

    let writer = call_every_rpc(app.writer.clone(), &shop).await;
    assert_eq!(
        writer,
        [
            ("GetSettings", Code::PermissionDenied),
            ("ListOrderStatuses", Code::PermissionDenied),
            // Refused: no catalog yet, so the target statuses are unknown.
            ("RegisterSettings", Code::InvalidArgument),
            ("CheckConnection", Code::NotFound),
            ("SetEnabled", Code::NotFound),
            ("PutOrderStatusCatalog", Code::Ok),
            ("GetWmsCredentials", Code::PermissionDenied),
            ("ListShops", Code::PermissionDenied),
        ]
    );
}

#[tokio::test]
async fn health_needs_no_token() {
    let app = spawn_app().await;
    let health = HealthClient::new(app.channel().await);
    // SERVING once the service's tasks run (a moment after it started).
    let answer = wmslink_testkit::eventually(
        std::time::Duration::from_secs(10),
        "the service SERVING",
        || {
            let mut health = health.clone();
            async move {
                let answer = health
                    .check(HealthCheckRequest {
                        service: "wmslink.settings.v1.SettingsService".into(),
                    })
                    .await
                    .expect("health")
                    .into_inner();
                (answer.status() == ServingStatus::Serving).then_some(answer)
            }
        },
    )
    .await;
    assert_eq!(answer.status(), ServingStatus::Serving);
}
