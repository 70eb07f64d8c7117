//! PostgreSQL out of reach: the cart's orders wait the outage out, whatever the delivery budget,
//! and nothing is dead-lettered.

use async_nats::jetstream::consumer::pull;
use wmslink_platform::nats::StreamKind;
use wmslink_testkit::{TcpProxy as Proxy, eventually, host_port};

use crate::helpers::{DEADLINE, TestApp, order, spawn_app_with};

async fn cart_orders_delivered(app: &TestApp) -> u64 {
    let stream = app
        .nats
        .js
        .get_stream(app.nats.subjects.stream_name(StreamKind::CartOrders))
        .await
        .expect("stream");
    let mut consumer = stream
        .get_consumer::<pull::Config>("order-events-cart-orders")
        .await
        .expect("consumer");
    consumer
        .info()
        .await
        .expect("info")
        .delivered
        .consumer_sequence
}

#[tokio::test]
async fn a_database_outage_dead_letters_nothing() {
    let server = wmslink_testkit::postgres_server_url();
    let proxy = Proxy::start(host_port(&server).to_owned()).await;
    let app = spawn_app_with(|config| {
        config.database.url =
            config
                .database
                .url
                .replacen(host_port(&server), &proxy.addr.to_string(), 1);
        config.consumers.max_deliver = 2;
    })
    .await;
    app.make_shop_known("shop-a").await;

    proxy.cut().await;
    app.publish_order(&order("shop-a", "OUT-1", 1, "new")).await;
    // Delivered twice the delivery budget while the database is out of reach.
    eventually(DEADLINE, "four deliveries during the outage", || async {
        let letters = app.dead_letters().await;
        assert!(
            letters.is_empty(),
            "dead-lettered during the outage: {letters:?}"
        );
        (cart_orders_delivered(&app).await >= 4).then_some(())
    })
    .await;

    proxy.restore();
    app.wait_for_revision("shop-a", "OUT-1", 1).await;
    assert!(app.dead_letters().await.is_empty(), "never dead-lettered");
}
