//! `deploy/nats/accounts.conf` against a nats-server of the test's own: the cart's user may
//! publish order snapshots and nothing the services publish, nor use the JetStream API; a
//! service's user may run its streams.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use wmslink_platform::nats::{StreamKind, Subjects, ensure_streams};
use wmslink_testkit::{PrivateNats, eventually};

const PASSWORDS: [(&str, &str); 5] = [
    ("WMSLINK_NATS_CART_PASSWORD", "cart-test-password"),
    ("WMSLINK_NATS_SETTINGS_PASSWORD", "settings-test-password"),
    (
        "WMSLINK_NATS_ORDER_EVENTS_PASSWORD",
        "order-events-test-password",
    ),
    (
        "WMSLINK_NATS_DISPATCHER_PASSWORD",
        "dispatcher-test-password",
    ),
    (
        "WMSLINK_NATS_STATUS_SYNC_PASSWORD",
        "status-sync-test-password",
    ),
];

fn accounts_conf() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/nats/accounts.conf"
    ))
    .expect("deploy/nats/accounts.conf")
}

fn password(variable: &str) -> String {
    PASSWORDS
        .iter()
        .find(|(name, _)| *name == variable)
        .map(|(_, password)| (*password).to_owned())
        .unwrap()
}

/// Connects as `user`, collecting the errors the server reports (permission violations).
async fn connect(
    nats: &PrivateNats,
    user: &str,
    password: String,
) -> (async_nats::Client, Arc<Mutex<Vec<String>>>) {
    let errors = Arc::new(Mutex::new(Vec::new()));
    let seen = errors.clone();
    let client = async_nats::ConnectOptions::with_user_and_password(user.to_owned(), password)
        .event_callback(move |event| {
            let seen = seen.clone();
            async move {
                if let async_nats::Event::ServerError(err) = event {
                    seen.lock().unwrap().push(err.to_string());
                }
            }
        })
        .connect(nats.url())
        .await
        .unwrap_or_else(|err| panic!("{user} connects: {err}\n{}", nats.log()));
    (client, errors)
}

async fn messages_in(js: &jetstream::Context, subjects: &Subjects, kind: StreamKind) -> u64 {
    js.get_stream(subjects.stream_name(kind))
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages
}

#[tokio::test]
async fn a_cart_may_publish_order_snapshots_and_nothing_the_services_publish() {
    let conf = accounts_conf();
    let nats = PrivateNats::start(
        "include ./accounts.conf",
        &[("accounts.conf", &conf)],
        &PASSWORDS,
    )
    .await
    .unwrap();
    let subjects = Subjects::new("").unwrap();

    // A service's user runs the streams (as order-events and the dispatcher do at start).
    let (service, service_errors) = connect(
        &nats,
        "order-events",
        password("WMSLINK_NATS_ORDER_EVENTS_PASSWORD"),
    )
    .await;
    let service_js = jetstream::new(service);
    let kinds = [
        StreamKind::CartOrders,
        StreamKind::Orders,
        StreamKind::Settings,
        StreamKind::Shipments,
        StreamKind::Wms,
    ];
    ensure_streams(&service_js, &subjects, &kinds, 1)
        .await
        .unwrap_or_else(|err| panic!("{err}\n{}", nats.log()));

    let (cart, cart_errors) = connect(&nats, "cart", password("WMSLINK_NATS_CART_PASSWORD")).await;
    let forbidden = [
        "wms.shop-a.observed",
        "wms.shop-a.anomaly",
        "shipments.shop-a.updated",
        "orders.shop-a.status_changed",
        "settings.shop-a.changed",
        "deadletter.cart.orders.shop-a.upserted",
    ];
    for subject in forbidden {
        cart.publish(subject, "forged".into()).await.unwrap();
    }
    // The allowed one, through JetStream with its ack: sent after the forbidden ones on the
    // same connection, so the server has handled them all once this one is acked.
    let cart_js = jetstream::new(cart.clone());
    cart_js
        .publish("cart.orders.shop-a.upserted", "snapshot".into())
        .await
        .unwrap()
        .await
        .expect("a cart may publish an order snapshot");

    let errors = eventually(
        Duration::from_secs(10),
        "a permission violation for every forbidden subject",
        || async {
            let errors = cart_errors.lock().unwrap().clone();
            (errors.len() >= forbidden.len()).then_some(errors)
        },
    )
    .await;
    for subject in forbidden {
        assert!(
            errors.iter().any(|error| {
                let error = error.to_lowercase();
                error.contains("permissions violation for publish") && error.contains(subject)
            }),
            "{subject}: {errors:?}"
        );
    }
    assert_eq!(
        messages_in(&service_js, &subjects, StreamKind::CartOrders).await,
        1
    );
    for kind in [
        StreamKind::Orders,
        StreamKind::Settings,
        StreamKind::Shipments,
        StreamKind::Wms,
    ] {
        assert_eq!(
            messages_in(&service_js, &subjects, kind).await,
            0,
            "{kind:?}"
        );
    }

    // Nor may the cart use the JetStream API: deleting a stream is refused, and it stays.
    let mut cart_js = jetstream::new(cart);
    cart_js.set_timeout(Duration::from_secs(2));
    assert!(
        cart_js
            .delete_stream(subjects.stream_name(StreamKind::Orders))
            .await
            .is_err()
    );
    eventually(
        Duration::from_secs(10),
        "the stream deletion reported as a violation",
        || async {
            let errors = cart_errors.lock().unwrap().clone();
            errors
                .iter()
                .any(|error| error.contains("$JS.API.STREAM.DELETE"))
                .then_some(())
        },
    )
    .await;
    messages_in(&service_js, &subjects, StreamKind::Orders).await;
    assert!(
        service_errors.lock().unwrap().is_empty(),
        "the service's user was refused nothing: {:?}",
        service_errors.lock().unwrap()
    );
}

/// kustomize reads files under `deploy/kubernetes` only, so the manifests deploy a copy of the
/// accounts file: it must be this one.
#[test]
fn the_kubernetes_copy_of_the_accounts_is_the_tested_file() {
    let copy = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/kubernetes/nats-accounts.conf"
    ))
    .expect("deploy/kubernetes/nats-accounts.conf");
    assert!(
        copy == accounts_conf(),
        "deploy/kubernetes/nats-accounts.conf differs from deploy/nats/accounts.conf: cp deploy/nats/accounts.conf deploy/kubernetes/nats-accounts.conf"
    );
}
