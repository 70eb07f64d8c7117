//! Clear errors and exit codes scripts can trust: no or bad token, unreachable service, usage,
//! invalid arguments with every field, and the `--json` error document.

use wmslink_e2e::{System, SystemOptions};
use wmslink_testkit::unique;

use crate::Ctl;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_exit_with_documented_codes_and_say_what_failed() {
    let system = System::start(SystemOptions::default()).await.unwrap();
    let shop = unique("shop-");
    system.enable_shop(&shop).await.unwrap();
    let ctl = Ctl::for_system(&system);

    // 6: a bad token, no token.
    let bad = Ctl::for_system(&system).with_token(Some("not-a-token"));
    let run = bad.run(&["--json", "orders", "list", &shop]).await;
    assert_eq!(run.code, 6, "{run:?}");
    assert!(run.stderr.contains("invalid bearer token"), "{run:?}");
    let error = &run.json()["error"];
    assert_eq!(error["kind"], "unauthenticated");
    assert_eq!(error["exit_code"], 6);
    assert_eq!(error["grpc_code"], "Unauthenticated");
    let none = Ctl::for_system(&system).with_token(None);
    let run = none.run(&["settings", "show", &shop]).await;
    assert_eq!(run.code, 6, "{run:?}");
    assert!(run.stderr.contains("WMSLINK_TOKEN"), "{run:?}");

    // 7: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut down = Ctl::for_system(&system);
    down.urls.retain(|(name, _)| *name != "WMSCTL_SYNC_URL");
    down.urls
        .push(("WMSCTL_SYNC_URL", format!("http://127.0.0.1:{port}")));
    let run = down.run(&["sync", "runs", &shop]).await;
    assert_eq!(run.code, 7, "{run:?}");
    assert!(run.stderr.contains("status-sync"), "{run:?}");
    assert!(run.stderr.contains(&port.to_string()), "{run:?}");

    // 2: usage.
    let run = ctl.run(&["orders", "list"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    let run = ctl
        .run(&["orders", "list", &shop, "--shipping-status", "lost"])
        .await;
    assert_eq!(run.code, 2, "{run:?}");

    // 5: invalid arguments, every field listed (by the service, and locally).
    let run = ctl
        .run(&[
            "--json",
            "orders",
            "list",
            &shop,
            "--page-size",
            "500",
            "--prefix",
            "bad prefix!",
        ])
        .await;
    assert_eq!(run.code, 5, "{run:?}");
    let fields: Vec<String> = run.json()["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|field| field["field"].as_str().unwrap().to_owned())
        .collect();
    assert!(fields.len() >= 2, "{fields:?}");
    assert!(fields.iter().any(|f| f.contains("page_size")), "{fields:?}");
    let run = ctl
        .run(&["orders", "list", &shop, "--from", "yesterday"])
        .await;
    assert_eq!(run.code, 5, "{run:?}");
    assert!(run.stderr.contains("--from"), "{run:?}");

    // A configuration file that is named but missing.
    let missing = ctl.dir().join("nope.toml").display().to_string();
    let run = ctl
        .run(&["--config", &missing, "settings", "show", &shop])
        .await;
    assert_eq!(run.code, 5, "{run:?}");

    // The token from a file named in the configuration file; URLs from it too.
    let token_file = ctl.file("token", &format!("{}\n", wmslink_e2e::OPERATOR_TOKEN));
    let config = ctl.file(
        "wmsctl.toml",
        &format!(
            "settings_url = \"http://{}\"\ntoken_file = \"{token_file}\"\n",
            system.settings_addr()
        ),
    );
    let mut from_file = Ctl::for_system(&system).with_token(None);
    from_file.urls.clear();
    let run = from_file
        .run(&["--config", &config, "settings", "show", &shop])
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    system.stop().await;
}
