//! Settings changing mid-flight: a key rotated in settings is used without a restart. A built
//! WMS client follows the settings version (so a missed `settings.{shop}.changed` costs at most
//! the settings cache TTL), and a `401` drops it at once.

use wmslink_proto::orders::v1::ShippingStatus;
use wmslink_test_harness::wms;
use wmslink_testkit::eventually;
use wmslink_wms_simulator::KeyOptions;

use crate::helpers::*;

#[tokio::test]
async fn a_key_rotated_in_settings_is_used_without_a_restart_even_when_the_change_event_is_missed()
{
    // Settings are read from the service every time (TTL 0): only the WMS client's own cache
    // stands between the rotation and its use.
    let app = spawn_app_missing_settings_events(|config| config.settings.cache_ttl_ms = 0).await;
    let mut shop = app.shop().await;
    let old = Shop {
        id: shop.id.clone(),
        key: shop.key.clone(),
    };
    let first = app.publish_orders(&shop, 1, "paid").await;
    app.wait_for_all(&shop, &first, ShippingStatus::Sent).await;

    // The old key still works at the WMS; the shop moves to a new one.
    let new_key = wms::new_account(&app.sim, KeyOptions::default());
    app.rotate_key(&mut shop, &new_key).await;
    let second = app.publish_orders(&shop, 1, "paid").await;
    app.wait_for_all(&shop, &second, ShippingStatus::Sent).await;

    assert_eq!(
        app.wms_orders(&shop, &second[0]).len(),
        1,
        "registered with the new key"
    );
    assert_eq!(
        app.rows_received(&old, &second[0]),
        0,
        "nothing sent with the old key after the rotation"
    );
    assert_eq!(app.rows_received(&old, &first[0]), 1);
}

#[tokio::test]
async fn a_401_drops_the_cached_client_and_the_next_pass_uses_the_key_rotated_in_settings() {
    let app = spawn_app_missing_settings_events(|_| {}).await;
    let mut shop = app.shop().await;
    let first = app.publish_orders(&shop, 1, "paid").await;
    app.wait_for_all(&shop, &first, ShippingStatus::Sent).await;

    // The WMS rotates the account's key: the old one is refused from now on.
    let new_key = format!("{}-rotated", shop.key);
    app.sim
        .state()
        .issue_key(&shop.key, &new_key)
        .expect("new key issued");
    assert!(app.sim.state().remove_key(&shop.key));
    let refused_before = app.sim.state().unauthorized_count();
    let second = app.publish_orders(&shop, 1, "paid").await;
    eventually(WAIT, "the old key refused", || async {
        (app.sim.state().unauthorized_count() > refused_before).then_some(())
    })
    .await;
    let (shipment, _) = app.get(&shop, &second[0]).await.expect("shipment");
    assert_ne!(shipment.shipping_status(), ShippingStatus::Sent);

    // The operator rotates it in settings; the dispatcher misses the change event.
    app.rotate_key(&mut shop, &new_key).await;
    let (shipment, history) = app.wait_for(&shop, &second[0], ShippingStatus::Sent).await;
    let (wms_order, _) = app.wms_row(&shop, &second[0]);
    assert_eq!(shipment.wms_order_id, wms_order.order_id);
    assert_eq!(
        app.rows_received(&shop, &second[0]),
        1,
        "sent once, with the new key: {history:?}"
    );
    assert!(!history_has(&history, &new_key), "no key in the history");
}
