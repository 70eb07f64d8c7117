//! `ListShops`: the registered shops in shop id order, a page at a time, optionally only the
//! enabled ones; scope `settings.read`.

use std::collections::BTreeMap;

use tonic::Code;
use wmslink_proto::settings::v1 as pb;

use crate::helpers::*;

async fn page(
    client: &Client,
    enabled_only: bool,
    page_size: u32,
    page_token: &str,
) -> Result<pb::ListShopsResponse, tonic::Status> {
    client
        .clone()
        .list_shops(pb::ListShopsRequest {
            enabled_only,
            page_size,
            page_token: page_token.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Every page, in order; also returns how many pages it took.
async fn all_pages(
    client: &Client,
    enabled_only: bool,
    page_size: u32,
) -> (Vec<pb::ShopSummary>, usize) {
    let mut shops = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let answer = page(client, enabled_only, page_size, &token)
            .await
            .expect("ListShops");
        pages += 1;
        assert!(
            answer.shops.len() <= page_size as usize,
            "page of {} for a size of {page_size}",
            answer.shops.len()
        );
        shops.extend(answer.shops);
        if answer.next_page_token.is_empty() {
            return (shops, pages);
        }
        assert!(pages < 100, "pagination does not end");
        token = answer.next_page_token;
    }
}

fn ids(shops: &[pb::ShopSummary]) -> Vec<&str> {
    shops.iter().map(|shop| shop.shop_id.as_str()).collect()
}

#[tokio::test]
async fn registered_shops_are_listed_page_by_page_and_optionally_only_the_enabled_ones() {
    let app = spawn_app().await;
    let sim = start_simulator().await;

    // Five registered shops, two of them enabled; one with a catalog only (not registered).
    let mut expected: BTreeMap<String, (i64, bool)> = BTreeMap::new();
    for i in 0..5 {
        let shop = unique_shop();
        let (_, version) = app.registered_and_checked(&sim, &shop).await;
        let state = if i % 2 == 0 && i < 4 {
            let enabled = app
                .set_enabled(&shop, true, version)
                .await
                .expect("enabled");
            (enabled.version, true)
        } else {
            (version, false)
        };
        expected.insert(shop, state);
    }
    let catalog_only = unique_shop();
    app.put_catalog(&catalog_only).await;

    // One page with everything (the default size), in the order the pages follow.
    let first = page(&app.reader, false, 0, "").await.expect("ListShops");
    assert!(first.next_page_token.is_empty(), "{first:?}");
    assert_eq!(first.shops.len(), 5, "{first:?}");
    let listed: BTreeMap<String, (i64, bool)> = first
        .shops
        .iter()
        .map(|shop| (shop.shop_id.clone(), (shop.version, shop.enabled)))
        .collect();
    assert_eq!(listed, expected, "ids, versions and switches");
    assert!(!listed.contains_key(&catalog_only));

    // Pages of two: the same shops in the same order, each once.
    let (paged, pages) = all_pages(&app.reader, false, 2).await;
    assert_eq!(pages, 3);
    assert_eq!(ids(&paged), ids(&first.shops));

    // Only the enabled ones, a page of one at a time.
    let enabled: Vec<&str> = first
        .shops
        .iter()
        .filter(|shop| shop.enabled)
        .map(|shop| shop.shop_id.as_str())
        .collect();
    assert_eq!(enabled.len(), 2);
    let (paged, pages) = all_pages(&app.reader, true, 1).await;
    assert_eq!(ids(&paged), enabled);
    assert!(paged.iter().all(|shop| shop.enabled));
    // A token only when more shops follow: no empty last page.
    assert_eq!(pages, 2);

    // Disabling a shop takes it out of the enabled ones.
    let shop = enabled[0].to_owned();
    app.set_enabled(&shop, false, expected[&shop].0)
        .await
        .expect("disabled");
    let (now_enabled, _) = all_pages(&app.reader, true, 10).await;
    assert_eq!(ids(&now_enabled), [enabled[1]]);
}

#[tokio::test]
async fn no_shop_is_an_empty_last_page() {
    let app = spawn_app().await;
    let answer = page(&app.reader, false, 10, "").await.expect("ListShops");
    assert_eq!(answer, pb::ListShopsResponse::default());
}

#[tokio::test]
async fn a_page_token_that_is_no_shop_id_is_refused() {
    let app = spawn_app().await;
    let status = assert_code(
        page(&app.reader, false, 10, "not a token!").await,
        Code::InvalidArgument,
    );
    assert!(status.message().contains("page_token"), "{status:?}");
}

#[tokio::test]
async fn listing_shops_needs_settings_read() {
    let app = spawn_app().await;
    for client in [&app.writer, &app.dispatcher] {
        assert_code(page(client, true, 0, "").await, Code::PermissionDenied);
    }
    page(&app.admin, true, 0, "").await.expect("admin reads");
}
