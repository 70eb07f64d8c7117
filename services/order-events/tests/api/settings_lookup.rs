//! Orders are never refused for timing (R6): a shop whose settings event has not arrived is
//! asked of the settings service, the settings service out of reach is waited out without
//! dead-lettering anything, and a new database learns the registered shops at start.
//!
//! The settings service here publishes under NATS names of its own, so its events never reach
//! order-events (as if they were long gone from the stream): whatever order-events knows of a
//! shop, it asked for.

use async_nats::jetstream::consumer::pull;
use secrecy::SecretString;
use tonic::Code;
use wmslink_order_events::Config;
use wmslink_platform::nats::StreamKind;
use wmslink_platform::secrets::KeyRing;
use wmslink_test_harness::settings::{
    SETTINGS_ADMIN_TOKEN, SettingsService, admin_token, reader_service_token,
};
use wmslink_test_harness::{shop, wms};
use wmslink_testkit::{TestNats, eventually};
use wmslink_wms_simulator::{KeyOptions, RunningSimulator};

use crate::helpers::{DEADLINE, TestApp, order, spawn_app_with};

const SETTINGS_TOKEN: &str = "order-events-settings-token-0123456789";

/// The settings service and a WMS simulator for its connection checks.
struct Settings {
    service: SettingsService,
    sim: RunningSimulator,
    _nats: TestNats,
}

impl Settings {
    async fn start() -> Self {
        let nats = TestNats::create().await.expect("settings' own NATS names");
        let (_, master_keys) = KeyRing::generate("test-k1");
        let service = SettingsService::start(
            &nats,
            &master_keys,
            vec![
                admin_token(),
                reader_service_token("order-events", SETTINGS_TOKEN),
            ],
        )
        .await;
        Self {
            service,
            sim: wms::start_simulator().await,
            _nats: nats,
        }
    }

    /// Registers, checks and enables `shop` as an operator does (shipment results on, a 45-day
    /// sync period).
    async fn enable(&self, shop: &str) {
        let key = wms::new_account(&self.sim, KeyOptions::default());
        shop::setup(shop, shop::full_detail(&self.sim.base_url()), &key)
            .enable(&mut self.service.client(SETTINGS_ADMIN_TOKEN))
            .await
            .expect("shop enabled");
    }

    /// order-events' configuration tweak: ask this settings service.
    fn asked(&self, max_deliver: i64) -> impl FnOnce(&mut Config) + use<> {
        let url = format!("http://{}", self.service.addr());
        move |config| {
            config.orders.ask_settings = true;
            config.settings.url = url;
            config.settings.token = SecretString::from(SETTINGS_TOKEN);
            config.consumers.max_deliver = max_deliver;
        }
    }
}

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
async fn an_order_of_a_shop_whose_settings_event_has_not_arrived_is_accepted() {
    let settings = Settings::start().await;
    let app = spawn_app_with(settings.asked(10)).await;
    // Registered after order-events started: only asking can tell it.
    settings.enable("shop-new").await;

    app.publish_order(&order("shop-new", "N-1", 1, "new")).await;
    app.wait_for_revision("shop-new", "N-1", 1).await;
    app.upsert(&order("shop-new", "N-2", 1, "new"))
        .await
        .expect("over gRPC too");

    // A shop the settings service does not know is still refused, and dead-lettered on NATS.
    let refused = app
        .upsert(&order("shop-none", "X-1", 1, "new"))
        .await
        .expect_err("unknown shop");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    app.publish_order(&order("shop-none", "X-2", 1, "new"))
        .await;
    let letters = app.wait_for_dead_letters(1).await;
    assert!(
        letters[0].reason.contains("no WMS integration settings"),
        "{letters:?}"
    );
    assert!(
        letters[0].original_subject.contains("shop-none"),
        "{letters:?}"
    );
}

#[tokio::test]
async fn with_the_settings_service_out_of_reach_an_order_waits_and_is_not_dead_lettered() {
    let mut settings = Settings::start().await;
    settings.enable("shop-late").await;
    settings.service.stop().await;
    let app = spawn_app_with(settings.asked(2)).await;

    app.publish_order(&order("shop-late", "W-1", 1, "new"))
        .await;
    eventually(
        DEADLINE,
        "four deliveries while settings are down",
        || async {
            let letters = app.dead_letters().await;
            assert!(letters.is_empty(), "dead-lettered: {letters:?}");
            (cart_orders_delivered(&app).await >= 4).then_some(())
        },
    )
    .await;
    let unavailable = app
        .upsert(&order("shop-late", "W-2", 1, "new"))
        .await
        .expect_err("settings unreachable");
    assert_eq!(unavailable.code(), Code::Unavailable, "{unavailable:?}");

    settings.service.restart().await;
    app.wait_for_revision("shop-late", "W-1", 1).await;
    assert!(app.dead_letters().await.is_empty(), "never dead-lettered");
}

#[tokio::test]
async fn a_new_database_learns_the_registered_shops_at_start() {
    let settings = Settings::start().await;
    settings.enable("shop-old").await;
    let app = spawn_app_with(settings.asked(10)).await;

    // No order needed: at start order-events records the shop as the settings service has it.
    let pool = &app.db.pool;
    let learned: (bool, bool, bool, i32) = eventually(DEADLINE, "shop-old learned", || async {
        sqlx::query_as(
            "SELECT registered, enabled, shipment_results, sync_period_days
             FROM shops WHERE shop_id = 'shop-old'",
        )
        .fetch_optional(pool)
        .await
        .expect("shops")
    })
    .await;
    assert_eq!(learned, (true, true, true, 45));
}
