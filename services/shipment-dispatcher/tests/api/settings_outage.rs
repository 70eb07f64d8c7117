//! The settings service is down, or refuses the dispatcher's token for a missing scope, or the
//! dispatcher's database is out of reach, when an order event arrives: the event is redelivered
//! (trouble that goes away), never dead-lettered, and sent exactly once when that is over.

use wmslink_platform::auth::scopes;
use wmslink_platform::nats::StreamKind;
use wmslink_proto::orders::v1::ShippingStatus;
use wmslink_testkit::{LogCapture, TcpProxy, eventually, host_port};

use crate::helpers::*;

#[tokio::test]
async fn an_order_event_arriving_while_settings_are_down_is_sent_once_they_are_back() {
    let mut app = spawn_app_with(|config| {
        // Enabling the shop must not make the dispatcher fetch (and cache) its settings: the
        // dispatcher has never seen the shop when its order event arrives.
        config.sender.sweep_on_settings_change = false;
        // Quick redeliveries; an outage never spends the delivery budget, so a small one
        // must not dead-letter the event.
        config.consumers.retry_base_delay_ms = 50;
        config.consumers.retry_max_delay_ms = 200;
        config.consumers.max_deliver = 2;
    })
    .await;
    let shop = app.shop().await;
    app.stop_settings().await;

    let no = unique_order_no();
    app.status_changed(&order(&shop, &no, "paid", 1)).await;

    // Delivered at least four times (past `max_deliver`): each delivery was handled and
    // given back (NAK) without a trace in the dispatcher.
    let durable = "shipment-dispatcher-status-changed";
    eventually(WAIT, "the event delivered past max_deliver", || async {
        let letters = app.dead_letters().await;
        assert!(letters.is_empty(), "dead-lettered while down: {letters:?}");
        let info = app.consumer_info(StreamKind::Orders, durable).await;
        (info.delivered.consumer_sequence >= 4 && info.num_redelivered >= 1).then_some(())
    })
    .await;
    assert!(
        app.get(&shop, &no).await.is_none(),
        "nothing recorded while the settings are unknown"
    );
    assert_eq!(app.register_calls(&shop), 0);
    assert!(app.dead_letters().await.is_empty(), "not dead-lettered");
    let processed: i64 = sqlx::query_scalar("SELECT count(*) FROM processed_messages")
        .fetch_one(&app.db.pool)
        .await
        .expect("count");
    assert_eq!(processed, 0, "not marked processed");

    app.restart_settings().await;
    let (shipment, history) = app.wait_for(&shop, &no, ShippingStatus::Sent).await;
    assert_eq!(transitions(&history), sent_at_first_attempt());
    let (wms, _) = app.wms_row(&shop, &no);
    assert_eq!(shipment.wms_order_id, wms.order_id);

    // The event was acked at last; nothing dead-lettered, nothing sent twice.
    let info = eventually(WAIT, "the event acked", || async {
        let info = app.consumer_info(StreamKind::Orders, durable).await;
        (info.num_ack_pending == 0 && info.num_pending == 0).then_some(info)
    })
    .await;
    assert!(info.delivered.consumer_sequence >= 4, "{info:?}");
    assert!(app.dead_letters().await.is_empty(), "never dead-lettered");
    let counters = app.counters(&shop);
    assert_eq!(counters.registrations_accepted, 1);
    assert_eq!(counters.duplicates_refused, 0);
    assert_eq!(app.register_calls(&shop), 1);
}

/// A token missing a scope is fixed by an operator, not by the message: the event waits (a
/// warning and `wmslink.consumer.long_waits` once it has waited `long_wait_warn_ms`), is never
/// dead-lettered, and is sent once the scope is granted.
#[tokio::test(flavor = "current_thread")]
async fn an_order_event_waits_while_the_settings_token_lacks_a_scope_and_is_sent_once_granted() {
    let (logs, _guard) = LogCapture::install();
    let mut app = spawn_app_with(|config| {
        // Nothing fetches (and caches) the shop's settings before its order event does.
        without_sweeps(config);
        config.consumers.retry_base_delay_ms = 50;
        config.consumers.retry_max_delay_ms = 200;
        config.consumers.max_deliver = 2;
        config.consumers.long_wait_warn_ms = 500;
    })
    .await;
    let shop = app.shop().await;
    app.settings_grant_dispatcher(&[]).await;

    let no = unique_order_no();
    app.status_changed(&order(&shop, &no, "paid", 1)).await;
    eventually(WAIT, "a warning that the event has waited long", || async {
        let letters = app.dead_letters().await;
        assert!(letters.is_empty(), "dead-lettered: {letters:?}");
        logs.contents()
            .contains("still waiting for a dependency")
            .then_some(())
    })
    .await;
    let info = app
        .consumer_info(StreamKind::Orders, "shipment-dispatcher-status-changed")
        .await;
    assert!(info.num_redelivered >= 1, "{info:?}");
    assert!(app.get(&shop, &no).await.is_none(), "nothing recorded");
    assert_eq!(app.register_calls(&shop), 0);

    app.settings_grant_dispatcher(&[scopes::SETTINGS_READ, scopes::SETTINGS_CREDENTIALS])
        .await;
    let (_, history) = app.wait_for(&shop, &no, ShippingStatus::Sent).await;
    assert_eq!(transitions(&history), sent_at_first_attempt());
    assert!(app.dead_letters().await.is_empty(), "never dead-lettered");
    assert_eq!(app.counters(&shop).registrations_accepted, 1);
    assert_eq!(app.rows_received(&shop, &no), 1);
}

/// The dispatcher's PostgreSQL out of reach (a proxy in front of it cut) for longer than the
/// delivery budget: the order event waits the outage out, is never dead-lettered, and is sent
/// once when the database is back.
#[tokio::test]
async fn an_order_event_arriving_while_the_database_is_out_of_reach_is_sent_once_it_is_back() {
    let server = wmslink_testkit::postgres_server_url();
    let proxy = TcpProxy::start(host_port(&server).to_owned()).await;
    let app = spawn_app_with(|config| {
        config.database.url = proxy.url_through(&config.database.url);
        config.consumers.retry_base_delay_ms = 50;
        config.consumers.retry_max_delay_ms = 200;
        config.consumers.max_deliver = 2;
    })
    .await;
    let shop = app.shop().await;
    // The dispatcher works through the proxy (and has the shop's settings).
    let first = unique_order_no();
    app.status_changed(&order(&shop, &first, "paid", 1)).await;
    app.wait_for(&shop, &first, ShippingStatus::Sent).await;

    proxy.cut().await;
    let no = unique_order_no();
    app.status_changed(&order(&shop, &no, "paid", 1)).await;
    let durable = "shipment-dispatcher-status-changed";
    eventually(WAIT, "the event delivered past max_deliver", || async {
        let letters = app.dead_letters().await;
        assert!(letters.is_empty(), "dead-lettered while down: {letters:?}");
        let info = app.consumer_info(StreamKind::Orders, durable).await;
        // One delivery of the first event, then four or more of this one.
        (info.delivered.consumer_sequence >= 5).then_some(())
    })
    .await;
    assert_eq!(app.register_calls(&shop), 1, "nothing sent while down");

    proxy.restore();
    let (_, history) = app.wait_for(&shop, &no, ShippingStatus::Sent).await;
    assert_eq!(transitions(&history), sent_at_first_attempt());
    assert!(app.dead_letters().await.is_empty(), "never dead-lettered");
    assert_eq!(app.rows_received(&shop, &no), 1);
    assert_eq!(app.counters(&shop).registrations_accepted, 2);
}
