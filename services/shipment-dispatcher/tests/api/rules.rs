//! R1 (edits after registration flagged, not sent), R6 and S3 ④ ⑤ (disabled shops and
//! non-target data are never sent).

use std::time::Duration;

use wmslink_proto::orders::v1::ShippingStatus;
use wmslink_proto::settings::v1 as spb;

use crate::helpers::*;

#[tokio::test]
async fn edits_after_registration_are_flagged_and_not_sent() {
    let app = spawn_app().await;
    let shop = app.shop().await;
    let no = unique_order_no();
    app.status_changed(&order(&shop, &no, "paid", 1)).await;
    let (sent, _) = app.wait_for(&shop, &no, ShippingStatus::Sent).await;
    assert!(!sent.edited_after_sending);

    // A status change with the same content is no edit.
    app.status_changed(&order(&shop, &no, "ready", 2)).await;
    let (same, _) = app
        .wait_until(&shop, &no, "revision 2 stored", |s| s.order_revision == 2)
        .await;
    assert!(!same.edited_after_sending);

    let mut edited = order(&shop, &no, "ready", 3);
    if let Some(shipping) = edited.shipping.as_mut() {
        shipping.address1 = "港区1-2-3".into();
    }
    app.updated(&edited).await;
    let (shipment, history) = app
        .wait_until(&shop, &no, "flagged as edited", |s| s.edited_after_sending)
        .await;
    assert_eq!(shipment.edited_revision, 3);
    assert_eq!(shipment.sent_revision, 1);
    assert_eq!(shipment.shipping_status(), ShippingStatus::Sent);
    assert!(
        history_has(&history, "not sent to the WMS (R1)"),
        "{history:?}"
    );

    // The WMS still has the registered version; nothing else was called.
    let (_, row) = app.wms_row(&shop, &no);
    assert_eq!(row["shipping"]["address1"], "千代田区千代田1-1");
    let counters = app.counters(&shop);
    assert_eq!(counters.registrations_accepted, 1);
    assert_eq!(counters.requests.get("update"), None);

    // The flag reached shipments.{shop}.updated.
    wmslink_testkit::eventually(WAIT, "flag published", || async {
        app.shipment_events(&shop)
            .await
            .iter()
            .any(|e| {
                e.shipment
                    .as_ref()
                    .is_some_and(|s| s.edited_after_sending && s.edited_revision == 3)
            })
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn disabled_shops_non_target_statuses_and_unknown_shops_are_never_sent() {
    let app = spawn_app().await;

    // A disabled shop: recorded, not sent.
    let disabled = app.shop_with(full_detail(), false).await;
    let a = unique_order_no();
    app.status_changed(&order(&disabled, &a, "paid", 1)).await;
    let (_, history) = app.wait_for(&disabled, &a, ShippingStatus::NotSent).await;
    assert!(history_has(&history, "not enabled"), "{history:?}");

    // An enabled shop, a status that is not a target.
    let enabled = app.shop().await;
    let b = unique_order_no();
    app.status_changed(&order(&enabled, &b, "new", 1)).await;
    let (_, history) = app.wait_for(&enabled, &b, ShippingStatus::NotSent).await;
    assert!(
        history_has(&history, "'new' is not a target status"),
        "{history:?}"
    );

    // An enabled shop without shipment instructions as a data target.
    let mut detail = full_detail();
    detail.data_targets = Some(spb::DataTargets {
        shipment_instructions: false,
        cancellations: true,
        shipment_results: true,
    });
    let no_instructions = app.shop_with(detail, true).await;
    let c = unique_order_no();
    app.status_changed(&order(&no_instructions, &c, "paid", 1))
        .await;
    let (_, history) = app
        .wait_for(&no_instructions, &c, ShippingStatus::NotSent)
        .await;
    assert!(history_has(&history, "not a data target"), "{history:?}");

    // A shop the settings service does not know.
    let unknown = Shop {
        id: wmslink_testkit::unique("shop-"),
        key: String::new(),
    };
    let d = unique_order_no();
    app.status_changed(&order(&unknown, &d, "paid", 1)).await;
    app.wait_for(&unknown, &d, ShippingStatus::NotSent).await;

    // Across more than one sweep, none of them reaches the WMS (beyond the connection check).
    consistently(Duration::from_millis(2_500), "nothing sent", || {
        [&disabled, &enabled, &no_instructions].iter().all(|shop| {
            let counters = app.counters(shop);
            counters
                .requests
                .keys()
                .all(|endpoint| endpoint == "search")
                && counters.requests.get("search").copied() == Some(1)
        })
    })
    .await;
    for (shop, no) in [
        (&disabled, &a),
        (&enabled, &b),
        (&no_instructions, &c),
        (&unknown, &d),
    ] {
        let (shipment, _) = app.get(shop, no).await.expect("shipment");
        assert_eq!(shipment.shipping_status(), ShippingStatus::NotSent, "{no}");
    }
}
