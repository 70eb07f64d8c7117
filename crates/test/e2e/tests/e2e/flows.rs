use std::time::Duration;

use tonic::Code;
use wmslink_e2e::{STATUS_CANCELLED, STATUS_HOLD, STATUS_READY, System, SystemOptions, order};
use wmslink_proto::dispatch::v1 as dispatch;
use wmslink_proto::orders::v1 as orders;
use wmslink_proto::orders::v1::ShippingStatus;
use wmslink_proto::sync::v1 as sync;
use wmslink_testkit::{eventually, unique};
use wmslink_wms_simulator::OrderPatch;

const WAIT: Duration = Duration::from_secs(30);

async fn integration_of(system: &System, shop: &str, order_no: &str) -> orders::IntegrationStatus {
    let mut client = system.orders();
    client
        .get_order(orders::GetOrderRequest {
            shop_id: shop.into(),
            order_no: order_no.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .order
        .and_then(|view| view.integration)
        .unwrap_or_default()
}

async fn wait_for_shipping_status(
    system: &System,
    shop: &str,
    order_no: &str,
    wanted: ShippingStatus,
) -> orders::IntegrationStatus {
    eventually(
        WAIT,
        &format!("{order_no} to be {wanted:?} in the order list"),
        || async {
            let integration = integration_of(system, shop, order_no).await;
            (integration.shipping_status() == wanted).then_some(integration)
        },
    )
    .await
}

async fn wms_order(
    system: &System,
    key: &str,
    order_no: &str,
) -> Option<wmslink_wms_simulator::SimOrder> {
    system
        .simulator
        .state()
        .orders(key)
        .unwrap()
        .into_iter()
        .find(|order| order.order_no == order_no)
}

async fn run_sync(system: &System, shop: &str) -> sync::SyncRun {
    system
        .sync()
        .run_sync(sync::RunSyncRequest {
            shop_id: shop.into(),
            from: None,
            to: None,
        })
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap()
}

async fn upsert(system: &System, order: orders::Order) {
    system
        .orders()
        .upsert_order(orders::UpsertOrderRequest { order: Some(order) })
        .await
        .unwrap();
}

async fn change_status(
    system: &System,
    shop: &str,
    order_no: &str,
    status_code: &str,
    expected_revision: i64,
) -> Result<orders::ChangeOrderStatusResponse, tonic::Status> {
    system
        .orders()
        .change_order_status(orders::ChangeOrderStatusRequest {
            shop_id: shop.into(),
            order_no: order_no.into(),
            status_code: status_code.into(),
            expected_revision,
        })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn an_order_is_registered_once_tracked_back_and_locked_while_processing() {
    let system = System::start(SystemOptions::default()).await.unwrap();
    let shop = unique("shop-");
    let key = system.enable_shop(&shop).await.unwrap();

    // The cart sends an order already in a target status.
    upsert(&system, order(&shop, "A-1", 1, STATUS_READY)).await;
    let sent = wait_for_shipping_status(&system, &shop, "A-1", ShippingStatus::Sent).await;
    assert_eq!(sent.wms_status_id, 0, "no WMS status seen yet");
    let in_wms = wms_order(&system, &key, "A-1")
        .await
        .expect("registered in the WMS");
    assert_eq!(
        system
            .simulator
            .state()
            .counters(&key)
            .unwrap()
            .registrations_accepted,
        1
    );

    // The warehouse starts processing (処理中): status-sync brings it back, R4 locks the order.
    system
        .simulator
        .state()
        .patch_order(
            &key,
            in_wms.order_id,
            OrderPatch {
                status_id: Some(20),
                ..OrderPatch::default()
            },
        )
        .unwrap();
    run_sync(&system, &shop).await;
    let processing = eventually(WAIT, "WMS status 20 in the order list", || async {
        let integration = integration_of(&system, &shop, "A-1").await;
        (integration.wms_status_id == 20).then_some(integration)
    })
    .await;
    assert_eq!(processing.shipping_status(), ShippingStatus::Sent);
    assert!(
        !processing.wms_status_name.is_empty(),
        "the WMS's own status name is shown"
    );
    let refused = change_status(&system, &shop, "A-1", STATUS_HOLD, 1)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");

    // Shipped with a tracking code: it comes back to the dispatcher and the order list.
    system
        .simulator
        .state()
        .patch_order(
            &key,
            in_wms.order_id,
            OrderPatch {
                status_id: Some(100),
                shipped_flag: Some(1),
                tracking_code: Some("1234-5678-9012".into()),
                shipping_date: Some(chrono::Utc::now().date_naive()),
                ..OrderPatch::default()
            },
        )
        .unwrap();
    run_sync(&system, &shop).await;
    let shipped = wait_for_shipping_status(&system, &shop, "A-1", ShippingStatus::Shipped).await;
    assert_eq!(shipped.tracking_code, "1234-5678-9012");
    assert!(!shipped.shipped_date.is_empty());

    let shipment = system
        .dispatch()
        .get_shipment(dispatch::GetShipmentRequest {
            shop_id: shop.clone(),
            order_no: "A-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let shipment_row = shipment.shipment.unwrap();
    assert_eq!(shipment_row.shipping_status(), ShippingStatus::Shipped);
    assert_eq!(shipment_row.wms_order_id, in_wms.order_id);
    assert!(!shipment.history.is_empty(), "the exchange history is kept");

    // O2: the list filters by shipping status and shows both levels.
    let listed = system
        .orders()
        .list_orders(orders::ListOrdersRequest {
            shop_id: shop.clone(),
            filter: Some(orders::ListOrdersFilter {
                shipping_statuses: vec![ShippingStatus::Shipped as i32],
                ..Default::default()
            }),
            page_size: 50,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.rows.len(), 1);
    assert_eq!(listed.rows[0].order_no, "A-1");
    assert_eq!(listed.rows[0].wms_status_id, 100);
    assert_eq!(listed.rows[0].tracking_code, "1234-5678-9012");
    assert_eq!(
        system
            .simulator
            .state()
            .counters(&key)
            .unwrap()
            .registrations_accepted,
        1
    );
    system.stop().await;
}

#[tokio::test]
async fn a_cart_cancellation_cancels_in_the_wms_and_is_final() {
    let system = System::start(SystemOptions::default()).await.unwrap();
    let shop = unique("shop-");
    let key = system.enable_shop(&shop).await.unwrap();

    upsert(&system, order(&shop, "B-1", 1, STATUS_READY)).await;
    wait_for_shipping_status(&system, &shop, "B-1", ShippingStatus::Sent).await;

    // R2: cancelling in the cart cancels in the WMS.
    change_status(&system, &shop, "B-1", STATUS_CANCELLED, 1)
        .await
        .unwrap();
    wait_for_shipping_status(&system, &shop, "B-1", ShippingStatus::Cancelled).await;
    let cancelled = wms_order(&system, &key, "B-1").await.unwrap();
    assert_eq!(cancelled.cancel_flag, 1);

    // R3: whatever the cart does next, the order is never sent again. Another order sent
    // after it proves the dispatcher has processed the later change (events go in order).
    change_status(&system, &shop, "B-1", STATUS_READY, 1)
        .await
        .unwrap();
    upsert(&system, order(&shop, "B-2", 1, STATUS_READY)).await;
    wait_for_shipping_status(&system, &shop, "B-2", ShippingStatus::Sent).await;
    let counters = system.simulator.state().counters(&key).unwrap();
    assert_eq!(counters.registrations_accepted, 2, "B-1 once, B-2 once");
    assert_eq!(counters.cancels, 1);
    assert_eq!(
        integration_of(&system, &shop, "B-1")
            .await
            .shipping_status(),
        ShippingStatus::Cancelled
    );
    system.stop().await;
}

/// The WMS's rate limit belongs to the access key: the dispatcher sending and status-sync
/// polling at the same time, in two services, draw from one budget and never provoke a 429.
#[tokio::test]
async fn dispatcher_and_status_sync_share_one_wms_budget() {
    let tight = wmslink_wms_simulator::SimRateLimit::new(4.0, 2);
    let system = System::start(SystemOptions {
        wms_rate_limit: tight,
        ..SystemOptions::default()
    })
    .await
    .unwrap();
    let shop = unique("shop-");
    let key = system.enable_shop(&shop).await.unwrap();

    // One order at a time, each sent before the next: one registration call per order.
    let orders_done = async {
        for n in 0..12 {
            let order_no = format!("R-{n}");
            upsert(&system, order(&shop, &order_no, 1, STATUS_READY)).await;
            wait_for_shipping_status(&system, &shop, &order_no, ShippingStatus::Sent).await;
        }
    };
    let syncs_done = async {
        for _ in 0..4 {
            run_sync(&system, &shop).await;
        }
    };
    tokio::join!(orders_done, syncs_done);
    for n in 0..12 {
        wait_for_shipping_status(&system, &shop, &format!("R-{n}"), ShippingStatus::Sent).await;
    }

    let counters = system.simulator.state().counters(&key).unwrap();
    let calls: u64 = counters.requests.values().sum();
    assert!(
        calls > u64::from(tight.burst) + 4,
        "the budget was exercised: {calls} calls"
    );
    assert!(
        counters.requests.get("search").copied().unwrap_or(0) >= 4,
        "status-sync polled"
    );
    assert_eq!(
        counters.rate_limited, 0,
        "no 429 with one shared budget: {counters:?}"
    );
    assert_eq!(counters.registrations_accepted, 12);
    system.stop().await;
}
