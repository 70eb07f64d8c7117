//! I6: a token bound to shops cannot reach another shop through status-sync.

use tonic::Code;
use wmslink_platform::auth::scopes;
use wmslink_proto::sync::v1 as pb;

use crate::helpers::*;

const BOUND_TOKEN: &str = "test-sync-merchant-console-0123456789";

/// A token bound to one shop (a merchant's console with `operate` and `orders.read`) cannot
/// run a sync of, or read the runs and anomalies of, another shop on any RPC; on its own shop
/// it works. The check is the authorization layer's, from the service's one table, and the
/// test calls every RPC the service has.
#[tokio::test]
async fn a_shop_bound_token_cannot_read_or_change_another_shop_on_any_rpc() {
    let own = wmslink_test_harness::shop::unique_shop_id();
    let bound_shop = own.clone();
    let app = spawn_app_with(
        wmslink_wms_simulator::SimConfig::for_tests(),
        move |config| {
            let mut token = wmslink_test_harness::grpc::token(
                "merchant-console",
                BOUND_TOKEN,
                &[scopes::OPERATE, scopes::ORDERS_READ],
            );
            token.shops = vec![bound_shop];
            config.auth.tokens.push(token);
        },
    )
    .await;
    let key = wmslink_test_harness::wms::new_account(&app.sim, Default::default());
    enable_shop(&app.settings_client(), &own, &app.sim.base_url(), &key).await;
    let other = app.add_shop().await;
    app.run_sync(&other).await;
    let runs_before = app.runs(&other).await;
    assert_eq!(runs_before.len(), 1);
    let bound = sync_client(app.sync.addr, BOUND_TOKEN);

    async fn every_rpc(client: &SyncClient, shop: &str) -> Vec<(&'static str, Code)> {
        fn code<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Code {
            result.map_or_else(|status| status.code(), |_| Code::Ok)
        }
        let mut c = client.clone();
        vec![
            (
                "/wmslink.sync.v1.SyncService/RunSync",
                code(
                    c.run_sync(pb::RunSyncRequest {
                        shop_id: shop.into(),
                        from: None,
                        to: None,
                    })
                    .await,
                ),
            ),
            (
                "/wmslink.sync.v1.SyncService/GetSyncRuns",
                code(
                    c.get_sync_runs(pb::GetSyncRunsRequest {
                        shop_id: shop.into(),
                        limit: 0,
                    })
                    .await,
                ),
            ),
            (
                "/wmslink.sync.v1.SyncService/ListAnomalies",
                code(
                    c.list_anomalies(pb::ListAnomaliesRequest {
                        shop_id: shop.into(),
                        limit: 0,
                        kind: 0,
                    })
                    .await,
                ),
            ),
        ]
    }

    let refused = every_rpc(&bound, &other.id).await;
    assert_eq!(
        refused
            .iter()
            .map(|(rpc, _)| (*rpc).to_owned())
            .collect::<Vec<_>>(),
        wmslink_platform::authz::methods_of("wmslink.sync.v1.SyncService"),
        "the test calls every RPC"
    );
    for (rpc, code) in &refused {
        assert_eq!(*code, Code::PermissionDenied, "{rpc} on another shop");
    }
    assert_eq!(app.runs(&other).await, runs_before, "no run was started");

    for (rpc, code) in every_rpc(&bound, &own).await {
        assert_eq!(code, Code::Ok, "{rpc} on its own shop");
    }
}
