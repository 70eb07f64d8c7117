//! Typed calls against the simulator.

use wmslink_wms_client::{RowOutcome, SearchColumn, SearchOp, SearchQuery, WmsError, status_name};
use wmslink_wms_simulator::{Faults, OrderPatch, SimConfig, WarehouseConfig};

use crate::helpers::*;

#[tokio::test]
async fn register_search_get_cancel_round_trip() {
    let sim = sim().await;
    let key = add_key(&sim, None);
    let c = client(&sim.base_url(), &key);

    let results = c.register_batch(&rows("RT", 3)).await.unwrap();
    assert_eq!(results.len(), 3);
    let ids: Vec<i64> = results
        .iter()
        .map(|r| r.order_id().expect("registered"))
        .collect();
    assert_eq!(results[1].order_no, "RT-00001");

    let page = c
        .search(&SearchQuery::new().order_no_in(["RT-00000", "RT-00002"]))
        .await
        .unwrap();
    assert_eq!(page.total, Some(2));
    assert_eq!(page.orders.len(), 2);
    assert!(
        page.orders
            .iter()
            .all(|o| o.status_id == 50 && o.status_name == "出荷待ち")
    );

    let order = c.get_order(ids[0]).await.unwrap();
    assert_eq!(order.order_no, "RT-00000");
    assert!(!order.is_cancelled());
    assert_eq!(order.update_date.offset().local_minus_utc(), 9 * 3600);

    c.cancel_order(ids[0]).await.unwrap();
    let order = c.get_order(ids[0]).await.unwrap();
    assert!(order.is_cancelled());
    // Cancelling again answers OK.
    c.cancel_order(ids[0]).await.unwrap();
    assert_eq!(sim.state().counters(&key).unwrap().cancels, 1);
}

#[tokio::test]
async fn the_registered_row_is_the_modelled_body() {
    let sim = sim().await;
    let key = add_key(&sim, None);
    let c = client(&sim.base_url(), &key);
    let mut r = row("BODY-1");
    r.note = Some("line1\rline2\r\nline3".into());
    r.shipping.address2 = Some("棟\r101".into());
    let id = c.register_batch(&[r]).await.unwrap()[0].order_id().unwrap();
    let stored = sim.state().order_row(&key, id).unwrap();
    // No lone CR reached the WMS; CRLF kept.
    assert_eq!(stored["note"], "line1\nline2\r\nline3");
    assert_eq!(stored["shipping"]["address2"], "棟\n101");
    assert_eq!(stored["order_date"], "2026-11-28T09:58:00+09:00");
    assert_eq!(stored["shipping"]["delivery_date"], "2026-11-30");
    assert_eq!(stored["free_fields"]["free1"], "campaign-A");
    assert_eq!(stored["details"][0]["free_fields"]["free2"], "lot-9");
    assert_eq!(stored["delivery_company_id"], 5);
}

#[tokio::test]
async fn duplicates_and_invalid_rows_get_per_row_results() {
    let sim = sim().await;
    let key = add_key(&sim, None);
    let c = client(&sim.base_url(), &key);
    let first = c.register_batch(&[row("DUP-1")]).await.unwrap();
    let id = first[0].order_id().unwrap();

    let mut bad = row("BAD-1");
    bad.details[0].quantity = 0;
    bad.robot_id = -3;
    let results = c
        .register_batch(&[row("DUP-1"), row("NEW-1"), bad])
        .await
        .expect("NG with per-row data is not an error");
    assert_eq!(results[0].error_code(), Some("E_DUPLICATE"));
    assert!(results[1].order_id().is_some());
    match &results[2].outcome {
        RowOutcome::Rejected {
            code,
            message,
            details,
        } => {
            assert_eq!(code, "E_INVALID");
            let all: Vec<&str> = details.iter().map(|d| d.message.as_str()).collect();
            assert!(all.iter().any(|m| m.contains("robot_id")), "{all:?}");
            assert!(
                all.iter().any(|m| m.contains("details[0].quantity")),
                "{all:?}"
            );
            assert!(!message.is_empty());
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    let counters = sim.state().counters(&key).unwrap();
    assert_eq!(counters.duplicates_refused, 1);
    assert_eq!(counters.rows_invalid, 1);
    assert_eq!(counters.registrations_accepted, 2);

    // Once cancelled, the order_no may be registered again.
    c.cancel_order(id).await.unwrap();
    let again = c.register_batch(&[row("DUP-1")]).await.unwrap();
    assert!(again[0].order_id().is_some_and(|new| new != id));
    let found = c.find_by_order_nos(&["DUP-1"]).await.unwrap();
    assert_eq!(found.len(), 2);
}

#[tokio::test]
async fn cancel_is_refused_when_packing_or_shipped() {
    let sim = sim().await;
    let key = add_key(&sim, None);
    let c = client(&sim.base_url(), &key);
    let ids: Vec<i64> = c
        .register_batch(&rows("CX", 3))
        .await
        .unwrap()
        .iter()
        .map(|r| r.order_id().unwrap())
        .collect();
    sim.state()
        .patch_order(
            &key,
            ids[0],
            OrderPatch {
                status_id: Some(90),
                ..Default::default()
            },
        )
        .unwrap();
    sim.state()
        .patch_order(
            &key,
            ids[1],
            OrderPatch {
                shipped_flag: Some(1),
                ..Default::default()
            },
        )
        .unwrap();
    for id in &ids[..2] {
        let err = c.cancel_order(*id).await.unwrap_err();
        assert_eq!(err.rejection_code(), Some("E_NOT_CANCELLABLE"), "{err}");
        assert!(!err.is_retryable());
        assert!(!c.get_order(*id).await.unwrap().is_cancelled());
    }
    c.cancel_order(ids[2]).await.unwrap();
}

#[tokio::test]
async fn unknown_order_is_rejected_not_found() {
    let sim = sim().await;
    let key = add_key(&sim, None);
    let c = client(&sim.base_url(), &key);
    let err = c.get_order(999_999_999).await.unwrap_err();
    assert_eq!(err.rejection_code(), Some("E_NOT_FOUND"));
    // Another key's order is not visible (tenancy).
    let other = add_key(&sim, None);
    let id = client(&sim.base_url(), &other)
        .register_batch(&[row("T-1")])
        .await
        .unwrap()[0]
        .order_id()
        .unwrap();
    assert_eq!(
        c.get_order(id).await.unwrap_err().rejection_code(),
        Some("E_NOT_FOUND")
    );
    assert_eq!(
        c.cancel_order(id).await.unwrap_err().rejection_code(),
        Some("E_NOT_FOUND")
    );
}

#[tokio::test]
async fn search_by_update_date_and_status() {
    let sim = sim().await;
    let key = add_key(&sim, None);
    let c = client(&sim.base_url(), &key);
    let ids: Vec<i64> = c
        .register_batch(&rows("UD", 4))
        .await
        .unwrap()
        .iter()
        .map(|r| r.order_id().unwrap())
        .collect();
    let before = c.get_order(ids[0]).await.unwrap().update_date;
    // Wait for the next whole second (the WMS's precision) without a fixed sleep.
    wmslink_testkit::eventually(LONG, "the clock to pass a second", || async {
        (wmslink_wms_simulator::now_jst() > before).then_some(())
    })
    .await;
    let changed = sim
        .state()
        .patch_order(
            &key,
            ids[2],
            OrderPatch {
                status_id: Some(60),
                ..Default::default()
            },
        )
        .unwrap();
    let since = changed.update_date;
    let recent = c
        .search_all(&SearchQuery::new().update_date_gte(since))
        .await
        .unwrap();
    assert_eq!(
        recent.iter().map(|o| o.order_id).collect::<Vec<_>>(),
        vec![ids[2]]
    );
    assert_eq!(recent[0].status_name, status_name(60).unwrap());

    let in_60 = c
        .search(&SearchQuery::new().status_id_eq(60))
        .await
        .unwrap();
    assert_eq!(in_60.total, Some(1));
    let not_60 = c
        .search(&SearchQuery::new().filter(SearchColumn::StatusId, SearchOp::Not, "60"))
        .await
        .unwrap();
    assert_eq!(not_60.total, Some(3));
    let like = c
        .search(&SearchQuery::new().filter(SearchColumn::OrderNo, SearchOp::Like, "UD-%3"))
        .await
        .unwrap();
    assert_eq!(like.orders.len(), 1);
    assert_eq!(like.orders[0].order_no, "UD-00003");
}

#[tokio::test]
async fn warehouse_flow_is_observed_through_the_client() {
    let sim = sim_with(SimConfig {
        warehouse: WarehouseConfig {
            enabled: true,
            step_interval_ms: 40,
            ..WarehouseConfig::default()
        },
        ..SimConfig::for_tests()
    })
    .await;
    let key = add_key(&sim, None);
    let c = client(&sim.base_url(), &key);
    let id = c.register_batch(&[row("WH-1")]).await.unwrap()[0]
        .order_id()
        .unwrap();
    let shipped = wmslink_testkit::eventually(LONG, "the order to ship", || {
        let c = c.clone();
        async move { c.get_order(id).await.ok().filter(|o| o.is_shipped()) }
    })
    .await;
    assert_eq!(shipped.status_id, 100);
    assert!(shipped.tracking_code.is_some());
    assert!(shipped.shipping_date.is_some());
}

#[tokio::test]
async fn simulator_faults_map_to_typed_errors() {
    let sim = sim().await;
    let key = add_key(&sim, None);
    let c = client(&sim.base_url(), &key);
    let st = sim.state();

    st.set_faults(
        &key,
        Faults {
            error_500_ratio: 1.0,
            ..Faults::default()
        },
    )
    .unwrap();
    let err = c.search(&SearchQuery::new()).await.unwrap_err();
    assert!(
        matches!(
            err,
            WmsError::Transient {
                status: Some(500),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
    // A registration answered 500 may have been applied: an unknown outcome.
    let err = c.register_batch(&[row("F-1")]).await.unwrap_err();
    assert!(
        matches!(err, WmsError::UnknownOutcome { ref detail } if detail.contains("HTTP 500")),
        "{err:?}"
    );

    st.set_faults(
        &key,
        Faults {
            ng_ratio: 1.0,
            ..Faults::default()
        },
    )
    .unwrap();
    let err = c.register_batch(&[row("F-2")]).await.unwrap_err();
    assert_eq!(err.rejection_code(), Some("E_SIM_FAULT"), "{err:?}");
    let err = c.search(&SearchQuery::new()).await.unwrap_err();
    assert_eq!(err.rejection_code(), Some("E_SIM_FAULT"));

    st.set_faults(&key, Faults::default()).unwrap();
    assert!(
        st.orders(&key).unwrap().is_empty(),
        "failed calls applied nothing"
    );

    // Added latency beyond the request timeout: a search times out (safe to retry).
    st.set_faults(
        &key,
        Faults {
            latency_ms: 2_000,
            ..Faults::default()
        },
    )
    .unwrap();
    let impatient = client_with(
        &sim.base_url(),
        &key,
        &wmslink_wms_client::WmsClientConfig {
            request_timeout_ms: 300,
            ..config()
        },
        std::sync::Arc::new(wmslink_wms_client::Unlimited),
    );
    let err = impatient.search(&SearchQuery::new()).await.unwrap_err();
    assert!(matches!(err, WmsError::Timeout), "{err:?}");
}

#[tokio::test]
async fn apply_then_timeout_is_an_unknown_outcome() {
    let sim = sim().await;
    let key = add_key(&sim, None);
    let impatient = client_with(
        &sim.base_url(),
        &key,
        &wmslink_wms_client::WmsClientConfig {
            request_timeout_ms: 400,
            ..config()
        },
        std::sync::Arc::new(wmslink_wms_client::Unlimited),
    );
    sim.state()
        .set_faults(
            &key,
            Faults {
                apply_then_delay_ms: 3_000,
                endpoints: vec![
                    wmslink_wms_simulator::Endpoint::Register,
                    wmslink_wms_simulator::Endpoint::Cancel,
                    wmslink_wms_simulator::Endpoint::Get,
                ],
                ..Faults::default()
            },
        )
        .unwrap();

    let err = impatient
        .register_batch(&[row("UO-1"), row("UO-2")])
        .await
        .unwrap_err();
    assert!(matches!(err, WmsError::UnknownOutcome { .. }), "{err:?}");
    assert!(err.may_have_been_applied());
    // The WMS did apply it: a search on order_no (not faulted) finds both.
    let found = impatient
        .find_by_order_nos(&["UO-1", "UO-2"])
        .await
        .unwrap();
    assert_eq!(found.len(), 2);

    let id = found[0].order_id;
    let err = impatient.cancel_order(id).await.unwrap_err();
    assert!(matches!(err, WmsError::UnknownOutcome { .. }), "{err:?}");
    assert!(sim.state().order(&key, id).unwrap().cancel_flag == 1);

    // An idempotent GET that times out is a plain timeout.
    let err = impatient.get_order(id).await.unwrap_err();
    assert!(matches!(err, WmsError::Timeout), "{err:?}");
    assert_eq!(sim.state().counters(&key).unwrap().faults_delayed, 3);
}

#[tokio::test]
async fn wrong_key_is_unauthorized() {
    let sim = sim().await;
    let _key = add_key(&sim, None);
    let c = client(&sim.base_url(), "not-a-known-key");
    let err = c.search(&SearchQuery::new()).await.unwrap_err();
    assert!(matches!(err, WmsError::Unauthorized), "{err:?}");
    let err = c.register_batch(&[row("X")]).await.unwrap_err();
    assert!(matches!(err, WmsError::Unauthorized), "{err:?}");
    assert_eq!(sim.state().unauthorized_count(), 2);
}

#[tokio::test]
async fn base_url_with_path_and_trailing_slash() {
    let sim = sim().await;
    let key = add_key(&sim, None);
    let c = client(&format!("{}/v1/", sim.base_url()), &key);
    assert!(c.base_url().ends_with("/v1"));
    assert!(
        c.register_batch(&[row("V1-1")]).await.unwrap()[0]
            .order_id()
            .is_some()
    );
    assert_eq!(c.search(&SearchQuery::new()).await.unwrap().total, Some(1));
}
