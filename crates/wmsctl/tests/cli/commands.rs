//! Every command group against the running services, human and `--json`.

use wmslink_e2e::{STATUS_READY, System, SystemOptions, order};
use wmslink_proto::orders::v1 as orders;
use wmslink_testkit::{eventually, unique};
use wmslink_wms_simulator::KeyOptions;

use crate::{Ctl, WAIT};

const CATALOG_TOML: &str = r#"
[[statuses]]
code = "new"
display_name = "新規受付"
kind = "open"

[[statuses]]
code = "ready_to_ship"
display_name = "出荷待ち"
kind = "open"

[[statuses]]
code = "cancelled"
display_name = "キャンセル"
kind = "cancelled"
"#;

fn detail_yaml(endpoint_url: &str) -> String {
    format!(
        r#"
endpoint_url: {endpoint_url}
data_targets:
  shipment_instructions: true
  cancellations: true
  shipment_results: true
target_status_codes: [ready_to_ship]
shipper_id: 3
delivery_method_id: 2
sync_period_days: 30
robot_id: 12
payment_mappings:
  - payment_method_code: card
    wms_payment_method_id: 7
header_free_fields:
  - slot: 1
    cart_field: note
"#
    )
}

const BAD_DETAIL_TOML: &str = r#"
endpoint_url = "ftp://wms.example/v1"
target_status_codes = ["no_such_status"]
shipper_id = -1
sync_period_days = 400
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_and_statuses_are_registered_from_files_checked_and_enabled() {
    let system = System::start(SystemOptions::default()).await.unwrap();
    let ctl = Ctl::for_system(&system);
    let shop = unique("shop-");
    let key = format!("ak-{shop}");
    system
        .simulator
        .state()
        .add_key(&key, KeyOptions::default())
        .unwrap();

    // The catalog from TOML, short kind names.
    let catalog = ctl.file("catalog.toml", CATALOG_TOML);
    let put = ctl
        .run(&["--json", "statuses", "put", &shop, "--file", &catalog])
        .await
        .ok()
        .json();
    assert_eq!(put["statuses"].as_array().unwrap().len(), 3);
    assert_eq!(put["statuses"][2]["kind"], "ORDER_STATUS_KIND_CANCELLED");
    let listed = ctl.run(&["statuses", "list", &shop]).await.ok();
    assert!(listed.stdout.contains("出荷待ち"), "{listed:?}");
    assert!(listed.stdout.contains("cancelled"), "{listed:?}");

    // A bad form: every bad field listed, exit 5, nothing saved.
    let bad = ctl.file("bad.toml", BAD_DETAIL_TOML);
    let refused = ctl
        .run_with_stdin(
            &["settings", "register", &shop, "--file", &bad, "--key-stdin"],
            Some(&format!("{key}\n")),
        )
        .await;
    assert_eq!(refused.code, 5, "{refused:?}");
    for field in [
        "detail.endpoint_url",
        "detail.target_status_codes[0]",
        "detail.sync_period_days",
    ] {
        assert!(refused.stderr.contains(field), "{field} in {refused:?}");
    }
    let unknown_field = ctl.file("typo.yaml", "endpoint_urll: https://x.example\n");
    let typo = ctl
        .run(&[
            "--json",
            "settings",
            "register",
            &shop,
            "--file",
            &unknown_field,
        ])
        .await;
    assert_eq!(typo.code, 5, "{typo:?}");
    assert_eq!(typo.json()["error"]["kind"], "invalid_argument");
    assert!(typo.stderr.contains("endpoint_urll"), "{typo:?}");
    let nothing = ctl.run(&["settings", "show", &shop]).await;
    assert_eq!(nothing.code, 3, "not registered yet: {nothing:?}");

    // The whole form from YAML, the key from stdin only.
    let detail = ctl.file(
        "detail.yaml",
        &detail_yaml(&format!("{}/v1", system.simulator.base_url())),
    );
    let registered = ctl
        .run_with_stdin(
            &[
                "--json",
                "settings",
                "register",
                &shop,
                "--file",
                &detail,
                "--key-stdin",
            ],
            Some(&format!("{key}\n")),
        )
        .await
        .ok()
        .json();
    assert_eq!(registered["settings"]["access_key_set"], true);
    assert!(!registered.to_string().contains(&key), "key leaked");

    // Enabling before a connection check: refused with the reasons, exit 4.
    let early = ctl.run(&["settings", "enable", &shop]).await;
    assert_eq!(early.code, 4, "{early:?}");
    assert!(early.stderr.contains("FailedPrecondition"), "{early:?}");

    // A check of another key (not recorded) fails: exit 4 with the outcome.
    let wrong = ctl
        .run_with_stdin(
            &["settings", "check", &shop, "--key-stdin"],
            Some("not-the-key\n"),
        )
        .await;
    assert_eq!(wrong.code, 4, "{wrong:?}");
    assert!(wrong.stdout.contains("unauthorized"), "{wrong:?}");

    let checked = ctl
        .run(&["--json", "settings", "check", &shop])
        .await
        .ok()
        .json();
    assert_eq!(checked["check"]["outcome"], "CONNECTION_CHECK_OUTCOME_OK");
    assert_eq!(checked["recorded"], true);
    ctl.run(&["settings", "enable", &shop]).await.ok();

    let shown = ctl
        .run(&["--json", "settings", "show", &shop])
        .await
        .ok()
        .json();
    let settings = &shown["settings"];
    assert_eq!(settings["shop_id"], shop.as_str());
    assert_eq!(settings["enabled"], true);
    assert_eq!(settings["detail"]["wms_kind"], "WMS_KIND_COMMERCE_ROBO");
    assert_eq!(settings["detail"]["shipper_id"], 3);
    assert_eq!(
        settings["detail"]["payment_mappings"][0]["wms_payment_method_id"],
        7
    );
    assert!(settings["version"].is_number());
    assert!(!shown.to_string().contains(&key), "key leaked");
    let human = ctl.run(&["settings", "show", &shop]).await.ok();
    assert!(human.stdout.contains("enabled"), "{human:?}");
    assert!(human.stdout.contains("free1"), "{human:?}");

    let disabled = ctl
        .run(&["--json", "settings", "disable", &shop])
        .await
        .ok()
        .json();
    assert_eq!(disabled["settings"]["enabled"], false);
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_listed_with_both_levels_paged_and_shown_with_their_history() {
    let system = System::start(SystemOptions::default()).await.unwrap();
    let ctl = Ctl::for_system(&system);
    let shop = unique("shop-");
    system.enable_shop(&shop).await.unwrap();
    let mut client = system.orders();
    for n in 1..=3 {
        client
            .upsert_order(orders::UpsertOrderRequest {
                order: Some(order(&shop, &format!("L-{n}"), 1, STATUS_READY)),
            })
            .await
            .unwrap();
    }
    client
        .upsert_order(orders::UpsertOrderRequest {
            order: Some(order(&shop, "HOLD-1", 1, "on_hold")),
        })
        .await
        .unwrap();
    eventually(WAIT, "three orders sent", || async {
        let run = ctl
            .run(&[
                "--json",
                "orders",
                "list",
                &shop,
                "--shipping-status",
                "sent",
            ])
            .await;
        (run.code == 0 && run.json()["rows"].as_array().map(Vec::len) == Some(3)).then_some(())
    })
    .await;

    let sent = ctl
        .run(&[
            "--json",
            "orders",
            "list",
            &shop,
            "--shipping-status",
            "sent,queued",
            "--prefix",
            "L-",
        ])
        .await
        .ok()
        .json();
    let row = &sent["rows"][0];
    for key in [
        "order_no",
        "order_date",
        "status_code",
        "total",
        "shipping_name",
        "shipping_status",
        "wms_status_id",
        "wms_status_name",
        "tracking_code",
        "edited_after_sending",
        "cancel_rejected",
        "cancelled_in_wms_unrequested",
    ] {
        assert!(row.get(key).is_some(), "{key} missing in {row}");
    }
    assert_eq!(row["shipping_status"], "SHIPPING_STATUS_SENT");
    assert_eq!(row["total"], 6000);
    assert_eq!(sent["next_page_token"], "");

    let not_sent = ctl
        .run(&[
            "--json",
            "orders",
            "list",
            &shop,
            "--shipping-status",
            "not-sent",
        ])
        .await
        .ok()
        .json();
    assert_eq!(not_sent["rows"][0]["order_no"], "HOLD-1");
    let by_status = ctl
        .run(&[
            "--json",
            "orders",
            "list",
            &shop,
            "--status",
            "on_hold",
            "--from",
            "2000-01-01",
        ])
        .await
        .ok()
        .json();
    assert_eq!(by_status["rows"].as_array().unwrap().len(), 1);

    // Pages of one, streamed: one JSON line per page, every order once.
    let pages = ctl
        .run(&[
            "--json",
            "orders",
            "list",
            &shop,
            "--page-size",
            "1",
            "--all",
        ])
        .await
        .ok()
        .json_lines();
    assert_eq!(pages.len(), 4);
    assert_eq!(pages[3]["next_page_token"], "");
    let human = ctl
        .run(&["orders", "list", &shop, "--page-size", "2"])
        .await
        .ok();
    assert!(human.stdout.contains("ORDER_NO"), "{human:?}");
    assert!(human.stdout.contains("--page-token"), "{human:?}");

    // One order: snapshot, both levels, the WMS exchange history.
    let shown = ctl
        .run(&["--json", "orders", "show", &shop, "L-1"])
        .await
        .ok()
        .json();
    assert_eq!(shown["order"]["order"]["order_no"], "L-1");
    assert_eq!(
        shown["order"]["integration"]["shipping_status"],
        "SHIPPING_STATUS_SENT"
    );
    assert!(shown["shipment"]["wms_order_id"].as_i64().unwrap() > 0);
    let history = shown["history"].as_array().unwrap();
    assert!(
        history.iter().any(|entry| entry["kind"] == "wms_call"),
        "{history:?}"
    );
    assert!(
        history
            .iter()
            .any(|entry| entry["kind"] == "state_change" && entry["to_status"] == "SENT"),
        "{history:?}"
    );
    let human = ctl.run(&["orders", "show", &shop, "L-1"]).await.ok();
    assert!(human.stdout.contains("history"), "{human:?}");
    assert!(human.stdout.contains("wms_call"), "{human:?}");

    let missing = ctl.run(&["orders", "show", &shop, "NOPE-1"]).await;
    assert_eq!(missing.code, 3, "{missing:?}");
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_and_sync_runs_answer_when_over_and_refusals_exit_4() {
    let system = System::start(SystemOptions::default()).await.unwrap();
    let ctl = Ctl::for_system(&system);
    let shop = unique("shop-");
    system.enable_shop(&shop).await.unwrap();
    system
        .orders()
        .upsert_order(orders::UpsertOrderRequest {
            order: Some(order(&shop, "D-1", 1, STATUS_READY)),
        })
        .await
        .unwrap();

    let run = ctl
        .run(&["--json", "dispatch", "run", &shop, "--wait"])
        .await
        .ok();
    let answer = run.json();
    for key in ["queued", "sent", "errors", "pending"] {
        assert!(answer[key].is_number(), "{key} in {answer}");
    }
    let human = ctl.run(&["dispatch", "run", &shop]).await.ok();
    assert!(human.stdout.contains("pending"), "{human:?}");

    // Retrying an order that is not in ERROR is refused.
    eventually(WAIT, "D-1 sent", || async {
        let shown = ctl.run(&["--json", "orders", "show", &shop, "D-1"]).await;
        (shown.code == 0
            && shown.json()["order"]["integration"]["shipping_status"] == "SHIPPING_STATUS_SENT")
            .then_some(())
    })
    .await;
    let retry = ctl.run(&["dispatch", "retry", &shop, "D-1"]).await;
    assert_eq!(retry.code, 4, "{retry:?}");

    let synced = ctl.run(&["--json", "sync", "run", &shop]).await.ok().json();
    assert_eq!(synced["run"]["outcome"], "succeeded", "{synced}");
    assert_eq!(synced["run"]["trigger"], "manual");
    let period = ctl
        .run(&[
            "--json",
            "sync",
            "run",
            &shop,
            "--from",
            "2020-01-01",
            "--to",
            "2020-02-01",
        ])
        .await
        .ok()
        .json();
    assert_eq!(period["run"]["pass"], "period");
    let runs = ctl
        .run(&["--json", "sync", "runs", &shop])
        .await
        .ok()
        .json();
    assert!(runs["runs"].as_array().unwrap().len() >= 2);
    let human = ctl.run(&["sync", "runs", &shop]).await.ok();
    assert!(human.stdout.contains("succeeded"), "{human:?}");

    let anomalies = ctl
        .run(&["--json", "anomalies", "list", &shop])
        .await
        .ok()
        .json();
    assert!(anomalies["anomalies"].as_array().unwrap().is_empty());

    // An unknown shop: not found. A period with only --from: usage.
    let unknown = ctl.run(&["dispatch", "run", "no-such-shop"]).await;
    assert_eq!(unknown.code, 3, "{unknown:?}");
    let usage = ctl
        .run(&["sync", "run", &shop, "--from", "2020-01-01"])
        .await;
    assert_eq!(usage.code, 2, "{usage:?}");
    ctl.run(&["settings", "disable", &shop]).await.ok();
    // status-sync hears of the switch through `settings.{shop}.changed`: refused from then on.
    let refused = eventually(WAIT, "sync runs of a disabled shop refused", || async {
        let run = ctl.run(&["sync", "run", &shop]).await;
        (run.code != 0).then_some(run)
    })
    .await;
    assert_eq!(refused.code, 4, "{refused:?}");
    assert!(refused.stderr.contains("FailedPrecondition"), "{refused:?}");
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_listed_with_its_reason_and_replayed_once_the_cause_is_fixed() {
    let system = System::start(SystemOptions::default()).await.unwrap();
    let ctl = Ctl::for_system(&system);
    let shop = unique("shop-");

    // An order for a shop without settings is refused by order-events and dead-lettered.
    let cart_order = order(&shop, "DLQ-1", 1, STATUS_READY);
    let subject = system
        .nats
        .subjects
        .cart_order_upserted(&wmslink_platform::shop::ShopId::parse(&shop).unwrap());
    system
        .nats
        .js
        .publish(subject, prost::Message::encode_to_vec(&cart_order).into())
        .await
        .unwrap()
        .await
        .unwrap();
    let filter = format!("cart.orders.{shop}.>");
    let listed = eventually(WAIT, "the dead letter", || async {
        let run = ctl
            .run(&["--json", "dlq", "list", "--subject", &filter])
            .await;
        (run.code == 0 && !run.json()["dead_letters"].as_array()?.is_empty()).then_some(run)
    })
    .await
    .json();
    let dead = &listed["dead_letters"][0];
    assert_eq!(dead["subject"], format!("cart.orders.{shop}.upserted"));
    assert!(
        dead["reason"].as_str().unwrap().contains("unknown shop"),
        "{dead}"
    );
    assert_eq!(dead["consumer"], "order-events-cart-orders");
    let id = dead["sequence"].as_u64().unwrap().to_string();
    let human = ctl.run(&["dlq", "list", "--subject", &filter]).await.ok();
    assert!(human.stdout.contains("unknown shop"), "{human:?}");

    // The cause is fixed (the shop registered); the replay goes through.
    system.enable_shop(&shop).await.unwrap();
    let replayed = ctl.run(&["--json", "dlq", "replay", &id]).await.ok().json();
    assert_eq!(
        replayed["replayed"][0]["subject"],
        format!("cart.orders.{shop}.upserted")
    );
    eventually(WAIT, "the replayed order in the list", || async {
        let run = ctl.run(&["--json", "orders", "show", &shop, "DLQ-1"]).await;
        (run.code == 0).then_some(())
    })
    .await;

    let unknown = ctl.run(&["dlq", "replay", "999999999"]).await;
    assert_eq!(unknown.code, 3, "{unknown:?}");
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_show_their_progress_on_stderr_while_they_go() {
    let system = System::start(SystemOptions::default()).await.unwrap();
    let ctl = Ctl::for_system(&system);
    let shop = unique("shop-");
    let key = system.enable_shop(&shop).await.unwrap();
    // A slow WMS: every registration and search takes 2.5 s, so the runs last a while.
    system
        .simulator
        .state()
        .set_faults(
            &key,
            wmslink_wms_simulator::Faults {
                latency_ms: 2_500,
                endpoints: vec![
                    wmslink_wms_simulator::Endpoint::Register,
                    wmslink_wms_simulator::Endpoint::Search,
                ],
                ..Default::default()
            },
        )
        .unwrap();
    system
        .orders()
        .upsert_order(orders::UpsertOrderRequest {
            order: Some(order(&shop, "P-1", 1, STATUS_READY)),
        })
        .await
        .unwrap();

    let dispatched = ctl.run(&["dispatch", "run", &shop, "--wait"]).await.ok();
    assert!(
        dispatched
            .stderr
            .contains(&format!("dispatch run of {shop}:"))
            || dispatched.stderr.contains(&format!("waiting for {shop}:")),
        "{dispatched:?}"
    );
    assert!(dispatched.stdout.contains("pending"), "{dispatched:?}");

    let synced = ctl.run(&["sync", "run", &shop]).await.ok();
    assert!(
        synced.stderr.contains(&format!("of {shop} (manual")),
        "{synced:?}"
    );
    // Scripts get the answer only.
    let quiet = ctl.run(&["--json", "sync", "run", &shop]).await.ok();
    assert!(quiet.stderr.is_empty(), "{quiet:?}");
    assert_eq!(quiet.json()["run"]["outcome"], "succeeded");
    system.stop().await;
}
