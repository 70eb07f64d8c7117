use tonic::Code;
use wmslink_platform::validation::violations_of;
use wmslink_proto::settings::v1 as pb;

use crate::helpers::*;

async fn put(
    app: &TestApp,
    shop: &str,
    statuses: Vec<pb::OrderStatus>,
) -> Result<pb::PutOrderStatusCatalogResponse, tonic::Status> {
    app.admin
        .clone()
        .put_order_status_catalog(pb::PutOrderStatusCatalogRequest {
            shop_id: shop.into(),
            statuses,
            expected_version: None,
        })
        .await
        .map(|r| r.into_inner())
}

async fn list(app: &TestApp, shop: &str) -> pb::ListOrderStatusesResponse {
    app.reader
        .clone()
        .list_order_statuses(pb::ListOrderStatusesRequest {
            shop_id: shop.into(),
        })
        .await
        .expect("list")
        .into_inner()
}

fn without(code: &str) -> Vec<pb::OrderStatus> {
    catalog().into_iter().filter(|s| s.code != code).collect()
}

#[tokio::test]
async fn the_catalog_round_trips_in_order() {
    let app = spawn_app().await;
    let shop = unique_shop();
    assert_eq!(
        list(&app, &shop).await,
        pb::ListOrderStatusesResponse::default()
    );

    let mut statuses = catalog();
    statuses.reverse();
    let stored = put(&app, &shop, statuses.clone()).await.expect("stored");
    assert_eq!(stored.statuses, statuses);
    assert_eq!(stored.version, 1);
    assert_eq!(
        list(&app, &shop).await,
        pb::ListOrderStatusesResponse {
            statuses: statuses.clone(),
            version: 1
        }
    );

    // The same catalog again changes nothing.
    let same = put(&app, &shop, statuses).await.expect("stored");
    assert_eq!(same.version, 1);

    // Renaming and reordering is a change.
    let mut renamed = catalog();
    renamed[0].display_name = "受付".into();
    let changed = put(&app, &shop, renamed.clone()).await.expect("stored");
    assert_eq!(changed.version, 2);
    assert_eq!(list(&app, &shop).await.statuses, renamed);
}

#[tokio::test]
async fn an_invalid_catalog_is_refused_whole() {
    let app = spawn_app().await;
    let shop = unique_shop();
    put(&app, &shop, catalog()).await.expect("stored");
    let mut bad = catalog();
    bad.push(pb::OrderStatus {
        code: "new".into(),
        display_name: String::new(),
        kind: pb::OrderStatusKind::Unspecified as i32,
    });
    let status = assert_code(put(&app, &shop, bad).await, Code::InvalidArgument);
    let fields: Vec<String> = violations_of(&status).into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        fields,
        [
            "statuses[5].code",
            "statuses[5].display_name",
            "statuses[5].kind"
        ]
    );
    assert_eq!(list(&app, &shop).await.statuses, catalog());
}

#[tokio::test]
async fn a_target_status_cannot_vanish_from_the_catalog() {
    let app = spawn_app().await;
    let shop = unique_shop();
    let version = app.put_catalog(&shop).await;
    let registered = app
        .register(
            &shop,
            version,
            full_detail("https://api.crobo.jp/v1"),
            Some("ak-1234567890"),
        )
        .await
        .expect("registered");

    // "ready" is target_status_codes[1].
    let status = assert_code(
        put(&app, &shop, without("ready")).await,
        Code::FailedPrecondition,
    );
    assert!(status.message().contains("'ready'"), "{status:?}");
    assert!(
        status.message().contains("target order status"),
        "{status:?}"
    );
    assert_eq!(
        precondition_subjects(&status)
            .into_iter()
            .map(|(s, _)| s)
            .collect::<Vec<_>>(),
        ["detail.target_status_codes[1]"]
    );

    // Nor turn into a cancelled status.
    let mut cancelled = catalog();
    cancelled[1].kind = pb::OrderStatusKind::Cancelled as i32; // "paid"
    let status = assert_code(put(&app, &shop, cancelled).await, Code::FailedPrecondition);
    assert!(status.message().contains("'paid'"), "{status:?}");

    assert_eq!(list(&app, &shop).await.statuses, catalog());
    assert_eq!(app.get(&shop).await.expect("get"), registered);

    // A status nobody targets can go.
    let changed = put(&app, &shop, without("shipped")).await.expect("stored");
    assert_eq!(changed.version, registered.version + 1);
}

#[tokio::test]
async fn while_cancellations_are_enabled_a_cancelled_status_must_remain() {
    let app = spawn_app().await;
    let sim = start_simulator().await;
    let shop = unique_shop();
    let (_key, version) = app.registered_and_checked(&sim, &shop).await;
    app.set_enabled(&shop, true, version)
        .await
        .expect("enabled");
    let status = assert_code(
        put(&app, &shop, without("cancel")).await,
        Code::FailedPrecondition,
    );
    assert!(status.message().contains("cancelled"), "{status:?}");
}

#[tokio::test]
async fn a_registered_target_status_must_come_from_the_catalog() {
    let app = spawn_app().await;
    let shop = unique_shop();
    put(&app, &shop, without("ready")).await.expect("stored");
    let status = assert_code(
        app.register(
            &shop,
            0,
            full_detail("https://api.crobo.jp/v1"),
            Some("ak-1234567890"),
        )
        .await,
        Code::InvalidArgument,
    );
    assert_eq!(
        violations_of(&status),
        [(
            "detail.target_status_codes[1]".to_owned(),
            "unknown order status 'ready': not in the shop's order-status catalog (PutOrderStatusCatalog)".to_owned()
        )]
    );
}

/// Optimistic versioning like the rest of settings: a catalog put with a stale
/// `expected_version` is refused; the current one (0 for a new shop) is taken.
#[tokio::test]
async fn a_catalog_with_a_stale_expected_version_is_refused() {
    let app = spawn_app().await;
    let shop = unique_shop();
    let versioned = |statuses: Vec<pb::OrderStatus>, expected_version: i64| {
        let mut admin = app.admin.clone();
        let shop = shop.clone();
        async move {
            admin
                .put_order_status_catalog(pb::PutOrderStatusCatalogRequest {
                    shop_id: shop,
                    statuses,
                    expected_version: Some(expected_version),
                })
                .await
                .map(|r| r.into_inner())
        }
    };
    let first = versioned(catalog(), 0).await.expect("new shop at 0");
    assert_eq!(first.version, 1);
    let stale = versioned(without("paid"), 0)
        .await
        .expect_err("version 0 is stale now");
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
    assert_eq!(list(&app, &shop).await.statuses.len(), catalog().len());
    let second = versioned(without("paid"), first.version)
        .await
        .expect("current version");
    assert_eq!(second.version, 2);
}
