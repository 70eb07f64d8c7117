//! Settings changing mid-flight: a shop's WMS endpoint does not change while shipments may be
//! in the WMS at the old one or cancellations are pending there. The settings service asks the
//! dispatcher (`GetInFlight`) and refuses with the reason; once they are settled, it changes.

use tonic::Code;
use wmslink_proto::orders::v1::ShippingStatus;
use wmslink_proto::settings::v1 as spb;
use wmslink_wms_simulator::{Endpoint, Faults};

use crate::helpers::*;

/// Registers the shop's settings with `endpoint_url` (and the key, which a new endpoint needs).
async fn move_endpoint(
    app: &TestApp,
    shop: &Shop,
    endpoint_url: &str,
) -> Result<spb::ShopSettings, tonic::Status> {
    let mut settings = app.settings.clone();
    let current = settings
        .get_settings(spb::GetSettingsRequest {
            shop_id: shop.id.clone(),
        })
        .await
        .expect("settings")
        .into_inner()
        .settings
        .expect("settings in answer");
    settings
        .register_settings(spb::RegisterSettingsRequest {
            shop_id: shop.id.clone(),
            expected_version: current.version,
            detail: Some(spb::DetailSettings {
                endpoint_url: endpoint_url.to_owned(),
                ..current.detail.expect("detail")
            }),
            access_key: Some(shop.key.clone()),
        })
        .await
        .map(|answer| answer.into_inner().settings.expect("settings"))
}

#[tokio::test]
async fn the_endpoint_does_not_change_while_a_shipment_is_in_doubt_or_a_cancel_is_pending() {
    // An unknown outcome is searched only 10.5 s after its claim: in doubt meanwhile.
    let mut app = spawn_app_with(|config| config.wms.request_timeout_ms = 10_000).await;
    app.settings_ask_the_dispatcher().await;
    let shop = app.shop().await;
    let moved = format!("{}/moved", app.sim.base_url());

    let sent = app.publish_orders(&shop, 1, "paid").await;
    app.wait_for_all(&shop, &sent, ShippingStatus::Sent).await;
    // The WMS applies the next registration and answers 500: it may be in the WMS.
    app.fault(
        &shop,
        Endpoint::Register,
        Faults {
            apply_then_500_ratio: 1.0,
            ..Faults::default()
        },
    );
    let doubtful = app.publish_orders(&shop, 1, "paid").await;
    app.wait_until(&shop, &doubtful[0], "in doubt", |s| {
        s.possibly_in_wms && s.shipping_status() == ShippingStatus::Sending
    })
    .await;
    // Switched off, nothing moves on: the sent order's cancellation waits.
    app.set_enabled(&shop, false).await;
    app.status_changed(&order(&shop, &sent[0], "cancel", 2))
        .await;
    app.wait_for(&shop, &sent[0], ShippingStatus::CancelRequested)
        .await;

    let status = refused(
        move_endpoint(&app, &shop, &moved).await,
        Code::FailedPrecondition,
        "moving the endpoint with work in flight",
    );
    let text = status.message();
    assert!(text.contains("detail.endpoint_url"), "{text}");
    assert!(
        text.contains("1 shipment(s) may be in the WMS at the current endpoint"),
        "{text}"
    );
    assert!(text.contains("1 cancellation(s) are pending"), "{text}");

    // Switched on again, the dispatcher settles both at the endpoint they were sent to.
    app.clear_faults(&shop);
    app.set_enabled(&shop, true).await;
    app.wait_for(&shop, &doubtful[0], ShippingStatus::Sent)
        .await;
    app.wait_for(&shop, &sent[0], ShippingStatus::Cancelled)
        .await;
    assert_eq!(app.rows_received(&shop, &doubtful[0]), 1);

    // Nothing left in flight: the endpoint may move (switched off, as a new key and URL need).
    app.set_enabled(&shop, false).await;
    let settings = move_endpoint(&app, &shop, &moved)
        .await
        .expect("moved once nothing is in flight");
    assert_eq!(settings.detail.expect("detail").endpoint_url, moved);
}
