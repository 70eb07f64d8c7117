//! The cart simulator against the whole system in-process (real PostgreSQL, NATS, gRPC and
//! the WMS simulator, whose warehouse moves orders on every 1.5 s): the order list ends up showing every
//! shipping status that lasts, edits after sending, R4 refusals answered with a revert, and
//! both kinds of R5 anomaly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use wmslink_cart_sim::{CartSim, CartSimConfig, StatusCodes, WmsAccess};
use wmslink_e2e::{OPERATOR_TOKEN, System, SystemOptions};
use wmslink_proto::orders::v1 as orders;
use wmslink_proto::orders::v1::ShippingStatus;
use wmslink_proto::sync::v1 as sync;
use wmslink_testkit::{eventually_every, unique};

/// What the order list shows now.
#[derive(Debug, Default)]
struct Seen {
    statuses: BTreeSet<i32>,
    edited_after_sending: bool,
    cancelled_in_wms_unrequested: bool,
    anomaly_kinds: BTreeSet<i32>,
}

async fn seen(system: &System, shop: &str) -> Seen {
    let mut client = system.orders();
    let mut seen = Seen::default();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_orders(orders::ListOrdersRequest {
                shop_id: shop.into(),
                filter: None,
                page_size: 200,
                page_token,
            })
            .await
            .unwrap()
            .into_inner();
        for row in &page.rows {
            seen.statuses.insert(row.shipping_status);
            seen.edited_after_sending |= row.edited_after_sending;
            seen.cancelled_in_wms_unrequested |= row.cancelled_in_wms_unrequested;
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let anomalies = system
        .sync()
        .list_anomalies(sync::ListAnomaliesRequest {
            shop_id: shop.into(),
            limit: 500,
            kind: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .anomalies;
    seen.anomaly_kinds = anomalies.iter().map(|anomaly| anomaly.kind).collect();
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cart_keeps_every_shipping_status_refusals_and_anomalies_in_the_order_list() {
    // The demo's pace against the WMS budget is a deployment matter; here the budget is ample
    // so the test runs in seconds, not minutes.
    let system = System::start(SystemOptions {
        scheduled_sync: true,
        wms_rate_limit: wmslink_wms_simulator::SimRateLimit::new(50.0, 100),
        anomaly_grace_ms: 2_000,
        // The warehouse works at its own pace: every order stays a while in each status.
        warehouse_step_ms: Some(1_500),
    })
    .await
    .unwrap();
    let shop = unique("shop-");
    let key = system.enable_shop(&shop).await.unwrap();

    let stop = CancellationToken::new();
    let sim = CartSim::connect(CartSimConfig {
        shop_id: shop.clone(),
        nats: system.nats.config(),
        orders_url: format!("http://{}", system.orders_addr()),
        orders_tls: Default::default(),
        token: SecretString::from(OPERATOR_TOKEN),
        wms: Some(WmsAccess {
            endpoint_url: format!("{}/v1", system.simulator.base_url()),
            access_key: SecretString::from(key.clone()),
            allow_http_hosts: vec!["127.0.0.1".into()],
        }),
        interval: Duration::from_millis(300),
        json_ratio: 0.3,
        seed: 7,
        statuses: StatusCodes::default(),
        order_no_prefix: "SIM".into(),
    })
    .await
    .unwrap();
    let stats = sim.stats();
    let running = {
        let stop = stop.clone();
        tokio::spawn(async move { sim.run(stop, None).await })
    };

    let wanted: BTreeSet<i32> = [
        ShippingStatus::NotSent,
        ShippingStatus::Sent,
        ShippingStatus::Shipped,
        ShippingStatus::Cancelled,
        ShippingStatus::CancelRejected,
        ShippingStatus::Error,
    ]
    .iter()
    .map(|status| *status as i32)
    .collect();
    // R5, registered by hand: an anomaly. R5, cancelled by hand: the order list's flag (the
    // anomaly list does not get this kind today: status-sync's grace check sees the shipment
    // CANCELLED by the dispatcher's own R5 handling and drops the suspect as explained).
    let anomalies: BTreeSet<i32> = [sync::AnomalyKind::NotSentByWmslink as i32].into();
    // What the list showed last, printed whenever it changes: on a time-out the test's output
    // says what was missing.
    let last = std::cell::RefCell::new(String::new());
    let (wanted, anomalies, last) = (&wanted, &anomalies, &last);
    let shown = eventually_every(
        Duration::from_millis(500),
        Duration::from_secs(150),
        "every shipping status, edits after sending, R4 refusals and R5 anomalies",
        || {
            let now_seen = seen(&system, &shop);
            let counts = stats.snapshot();
            async move {
                let now = now_seen.await;
                let state = format!("the list shows {now:?}, the cart did {counts:?}");
                if *last.borrow() != state {
                    eprintln!("{state}");
                    last.replace(state);
                }
                (now.statuses.is_superset(wanted)
                    && now.edited_after_sending
                    && now.cancelled_in_wms_unrequested
                    && now.anomaly_kinds.is_superset(anomalies)
                    && counts.r4_refusals > 0
                    && counts.reverted > 0)
                    .then_some(now)
            }
        },
    )
    .await;
    stop.cancel();
    let counts = running.await.unwrap().unwrap();

    assert!(counts.json_messages > 0, "{counts:?}");
    assert!(counts.json_messages < counts.orders_published, "{counts:?}");
    assert!(counts.cancels_before_sending > 0, "{counts:?}");
    assert!(counts.cancels_after_sending > 0, "{counts:?}");
    assert!(counts.cancels_too_late > 0, "{counts:?}");
    assert!(counts.edits_after_sending > 0, "{counts:?}");
    assert!(
        counts.wms_direct_orders > 0 && counts.wms_direct_cancels > 0,
        "{counts:?}"
    );
    assert_eq!(counts.errors, 0, "{counts:?}");
    assert!(shown.statuses.is_superset(wanted), "{shown:?}");

    // Nothing the cart sent was lost: every order it published is in the list or was refused
    // on purpose (none is dead-lettered).
    let dead = system
        .nats
        .js
        .get_stream(
            system
                .nats
                .subjects
                .stream_name(wmslink_platform::nats::StreamKind::DeadLetters),
        )
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages;
    assert_eq!(dead, 0, "the cart's messages were all accepted");
    system.stop().await;
}
