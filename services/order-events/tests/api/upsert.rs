//! gRPC UpsertOrder and ChangeOrderStatus: the revision rules, events, bad input.

use std::collections::HashMap;

use tonic::Code;
use wmslink_platform::validation::violations_of;
use wmslink_proto::orders::v1::{
    ChangeOrderStatusRequest, ShippingStatus, UpsertOrderRequest, UpsertOutcome,
};

use crate::helpers::{OrderEvent, order, spawn_app, spawn_app_with};

#[tokio::test]
async fn a_new_order_is_stored_and_published_as_a_status_change_from_nothing() {
    let app = spawn_app().await;
    app.make_shop_known("shop-a").await;
    let sent = order("shop-a", "A-1001", 1, "new");

    let response = app.upsert(&sent).await.expect("upsert");
    assert_eq!(response.outcome(), UpsertOutcome::Created);
    assert_eq!(response.stored_revision, 1);

    let view = app.get("shop-a", "A-1001").await.expect("stored");
    assert_eq!(view.order.as_ref(), Some(&sent));
    let integration = view.integration.expect("integration");
    assert_eq!(integration.shipping_status(), ShippingStatus::NotSent);
    assert_eq!(integration.wms_status_id, 0);
    assert!(view.received_at.is_some());

    let events = app.wait_for_events("shop-a", "A-1001", 1).await;
    let OrderEvent::StatusChanged(event) = &events[0] else {
        panic!("expected status_changed, got {events:?}");
    };
    assert_eq!(event.previous_status_code, "");
    assert_eq!(event.new_status_code, "new");
    assert_eq!(event.revision, 1);
    assert_eq!(event.order.as_ref(), Some(&sent));
    assert!(event.occurred_at.is_some());
}

#[tokio::test]
async fn revision_rules_newer_replaces_older_is_ignored_same_must_match() {
    let app = spawn_app().await;
    app.make_shop_known("shop-a").await;
    let v1 = order("shop-a", "A-1", 1, "new");
    let v2 = order("shop-a", "A-1", 2, "paid");
    let mut v3 = order("shop-a", "A-1", 3, "paid");
    v3.note = "please ring twice".into();

    assert_eq!(
        app.upsert(&v1).await.expect("v1").outcome(),
        UpsertOutcome::Created
    );
    assert_eq!(
        app.upsert(&v2).await.expect("v2").outcome(),
        UpsertOutcome::StatusChanged
    );
    assert_eq!(
        app.upsert(&v3).await.expect("v3").outcome(),
        UpsertOutcome::Updated
    );

    // Older: ignored and counted.
    let stale = app.upsert(&v2).await.expect("v2 again");
    assert_eq!(stale.outcome(), UpsertOutcome::StaleIgnored);
    assert_eq!(stale.stored_revision, 3);
    let counted: i64 = sqlx::query_scalar(
        "SELECT stale_revisions_ignored FROM orders WHERE shop_id = 'shop-a' AND order_no = 'A-1'",
    )
    .fetch_one(&app.db.pool)
    .await
    .expect("counter");
    assert_eq!(counted, 1);
    assert_eq!(
        app.metrics
            .stale_ignored
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    // Same revision, same content: nothing to do.
    let same = app.upsert(&v3).await.expect("v3 again");
    assert_eq!(same.outcome(), UpsertOutcome::Unchanged);
    assert_eq!(same.stored_revision, 3);

    // Same revision, other content: conflict, nothing stored.
    let mut other = v3.clone();
    other.note = "something else".into();
    let status = app.upsert(&other).await.expect_err("conflict");
    assert_eq!(status.code(), Code::AlreadyExists);
    assert!(status.message().contains("revision conflict"), "{status:?}");
    let stored = app.get("shop-a", "A-1").await.expect("stored");
    assert_eq!(stored.order.as_ref(), Some(&v3));

    // Exactly one event per stored revision, in order. A later order's event shows that
    // nothing else is still on its way.
    app.upsert(&order("shop-a", "SENTINEL", 1, "new"))
        .await
        .expect("sentinel");
    app.wait_for_events("shop-a", "SENTINEL", 1).await;
    let described: Vec<String> = app
        .events_of("shop-a", "A-1")
        .await
        .iter()
        .map(OrderEvent::describe)
        .collect();
    assert_eq!(
        described,
        vec![
            "status_changed 1 ->new",
            "status_changed 2 new->paid",
            "updated 3"
        ]
    );
}

#[tokio::test]
async fn an_invalid_order_is_refused_with_every_bad_field() {
    let app = spawn_app().await;
    app.make_shop_known("shop-a").await;
    let mut bad = order("shop-a", "A 1", 0, "");
    bad.lines[0].quantity = 0;
    bad.lines[0].unit_price = -1;
    if let Some(amounts) = bad.amounts.as_mut() {
        amounts.total = -10;
    }
    bad.delivery_date = "tomorrow".into();

    let status = app.upsert(&bad).await.expect_err("invalid");
    assert_eq!(status.code(), Code::InvalidArgument);
    let fields: Vec<String> = violations_of(&status).into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        fields,
        vec![
            "order.order_no",
            "order.revision",
            "order.status_code",
            "order.delivery_date",
            "order.amounts.total",
            "order.lines[0].quantity",
            "order.lines[0].unit_price",
        ]
    );
    for field in &fields {
        assert!(status.message().contains(field.as_str()), "{status:?}");
    }

    let missing = app
        .cart
        .clone()
        .upsert_order(UpsertOrderRequest { order: None })
        .await
        .expect_err("no order");
    assert_eq!(missing.code(), Code::InvalidArgument);
    assert!(app.outbox().await.is_empty(), "nothing was written");
}

#[tokio::test]
async fn an_order_bigger_than_the_limit_is_refused() {
    let app = spawn_app_with(|config| config.orders.max_message_bytes = 16 * 1024).await;
    app.make_shop_known("shop-a").await;
    let mut big = order("shop-a", "A-1", 1, "new");
    big.extra = (0..40)
        .map(|i| (format!("field{i}"), "x".repeat(900)))
        .collect::<HashMap<_, _>>();

    let status = app.upsert(&big).await.expect_err("too big");
    assert_eq!(status.code(), Code::InvalidArgument);
    let violations = violations_of(&status);
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].0, "order");
    assert!(violations[0].1.contains("bytes"), "{violations:?}");
}

#[tokio::test]
async fn orders_of_a_shop_without_integration_settings_are_refused() {
    let app = spawn_app().await;
    let status = app
        .upsert(&order("unknown-shop", "A-1", 1, "new"))
        .await
        .expect_err("unknown shop");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("no WMS integration settings"),
        "{status:?}"
    );
    assert!(app.get("unknown-shop", "A-1").await.is_none());
    assert!(app.outbox().await.is_empty());
}

#[tokio::test]
async fn change_order_status_keeps_the_carts_revision_and_refuses_a_stale_one() {
    let app = spawn_app().await;
    app.make_shop_known("shop-a").await;
    app.upsert(&order("shop-a", "A-1", 4, "new"))
        .await
        .expect("v4");
    let mut client = app.cart.clone();
    let change = |status: &str, expected: i64| ChangeOrderStatusRequest {
        shop_id: "shop-a".into(),
        order_no: "A-1".into(),
        status_code: status.into(),
        expected_revision: expected,
    };

    let view = client
        .change_order_status(change("paid", 4))
        .await
        .expect("change")
        .into_inner()
        .order
        .expect("view");
    let changed = view.order.expect("order");
    assert_eq!(changed.revision, 4, "revisions belong to the cart");
    assert_eq!(changed.status_code, "paid");
    assert_eq!(
        app.get("shop-a", "A-1").await.and_then(|v| v.order),
        Some(changed.clone())
    );

    let stale = client
        .change_order_status(change("shipped", 3))
        .await
        .expect_err("stale expected revision");
    assert_eq!(stale.code(), Code::Aborted);
    assert!(
        stale.message().contains("revision 4 is stored"),
        "{stale:?}"
    );

    // The same status again changes nothing.
    let same = client
        .change_order_status(change("paid", 4))
        .await
        .expect("same status")
        .into_inner();
    assert_eq!(
        same.order.and_then(|v| v.order).map(|o| o.revision),
        Some(4)
    );

    let missing = client
        .change_order_status(ChangeOrderStatusRequest {
            order_no: "NOPE".into(),
            ..change("paid", 1)
        })
        .await
        .expect_err("not found");
    assert_eq!(missing.code(), Code::NotFound);

    let invalid = client
        .change_order_status(ChangeOrderStatusRequest {
            shop_id: String::new(),
            order_no: "a b".into(),
            status_code: String::new(),
            expected_revision: 0,
        })
        .await
        .expect_err("invalid");
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert_eq!(violations_of(&invalid).len(), 4, "{invalid:?}");

    let events = app.wait_for_events("shop-a", "A-1", 2).await;
    let described: Vec<String> = events.iter().map(OrderEvent::describe).collect();
    assert_eq!(
        described,
        vec!["status_changed 4 ->new", "status_changed 4 new->paid"]
    );
    let OrderEvent::StatusChanged(event) = &events[1] else {
        panic!("{events:?}");
    };
    assert_eq!(event.order.as_ref(), Some(&changed));
    assert_eq!(event.wmslink_change, 1, "made through ChangeOrderStatus");
}

/// Revisions belong to the cart: a status change made through `ChangeOrderStatus` does not take
/// the cart's next revision, so the cart's own next snapshot (with an edit) is applied.
#[tokio::test]
async fn the_carts_next_snapshot_wins_over_a_status_change_made_in_wmslink() {
    let app = spawn_app().await;
    app.make_shop_known("shop-a").await;
    app.upsert(&order("shop-a", "A-1", 1, "new"))
        .await
        .expect("v1");
    app.cart
        .clone()
        .change_order_status(ChangeOrderStatusRequest {
            shop_id: "shop-a".into(),
            order_no: "A-1".into(),
            status_code: "paid".into(),
            expected_revision: 1,
        })
        .await
        .expect("operator change");

    // The cart's own revision 1 again (a redelivery) is older than the change.
    assert_eq!(
        app.upsert(&order("shop-a", "A-1", 1, "new"))
            .await
            .expect("redelivered v1")
            .outcome(),
        UpsertOutcome::StaleIgnored
    );
    // The cart's next snapshot, with an edit, wins.
    let mut edited = order("shop-a", "A-1", 2, "paid");
    edited.note = "gift wrap".into();
    assert_eq!(
        app.upsert(&edited).await.expect("cart's v2").outcome(),
        UpsertOutcome::Updated
    );
    let stored = app.get("shop-a", "A-1").await.and_then(|v| v.order);
    assert_eq!(stored.as_ref(), Some(&edited));

    // Over NATS too: the cart's v3 after another operator change.
    app.cart
        .clone()
        .change_order_status(ChangeOrderStatusRequest {
            shop_id: "shop-a".into(),
            order_no: "A-1".into(),
            status_code: "shipped".into(),
            expected_revision: 2,
        })
        .await
        .expect("second operator change");
    let mut next = edited.clone();
    next.revision = 3;
    next.note = "gift wrap, ribbon".into();
    app.publish_order(&next).await;
    app.wait_for_revision("shop-a", "A-1", 3).await;
    let described: Vec<String> = app
        .wait_for_events("shop-a", "A-1", 5)
        .await
        .iter()
        .map(OrderEvent::describe)
        .collect();
    assert_eq!(
        described,
        vec![
            "status_changed 1 ->new",
            "status_changed 1 new->paid",
            "updated 2",
            "status_changed 2 paid->shipped",
            "status_changed 3 shipped->paid",
        ]
    );
    assert!(app.dead_letters().await.is_empty());
}

#[tokio::test]
async fn a_shop_is_known_once_its_settings_are_registered_not_by_its_catalog_alone() {
    let app = spawn_app().await;
    // The order-status catalog may be saved before the settings are registered.
    app.publish_settings("shop-c", 1, "status_catalog").await;
    app.publish_settings("shop-d", 1, "status_catalog").await;
    app.make_shop_known("shop-d").await; // version 1 "registered", after the catalog
    // shop-c's catalog event was processed before shop-d's registration (one consumer).
    let status = app
        .upsert(&order("shop-c", "C-1", 1, "new"))
        .await
        .expect_err("catalog only");
    assert_eq!(status.code(), Code::FailedPrecondition);

    // A later settings change (an older event arriving late) never forgets the registration.
    app.publish_settings("shop-c", 3, "registered").await;
    app.publish_settings("shop-c", 2, "status_catalog").await;
    app.publish_settings("shop-d", 9, "status_catalog").await;
    app.make_shop_known("shop-c").await;
    let (version, registered): (i64, bool) =
        sqlx::query_as("SELECT settings_version, registered FROM shops WHERE shop_id = 'shop-c'")
            .fetch_one(&app.db.pool)
            .await
            .expect("shop-c");
    assert_eq!((version, registered), (3, true));
    assert_eq!(
        app.upsert(&order("shop-c", "C-1", 1, "new"))
            .await
            .expect("known now")
            .outcome(),
        UpsertOutcome::Created
    );
}
