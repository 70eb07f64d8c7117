//! Splitting at the protocol's limits.

use wmslink_wms_client::{SearchQuery, WmsError};
use wmslink_wms_simulator::Faults;

use crate::helpers::*;

#[tokio::test]
async fn registering_450_rows_makes_3_calls() {
    let sim = sim().await;
    let key = add_key(&sim, None);
    let c = client(&sim.base_url(), &key);
    let input = rows("B", 450);
    let report = c.register(&input).await;
    assert!(report.failed.is_none(), "{:?}", report.failed);
    assert_eq!(report.rows.len(), 450);
    assert_eq!(requests(&sim, &key, "register"), 3);
    let mut ids: Vec<i64> = report.rows.iter().map(|r| r.order_id().unwrap()).collect();
    assert!(
        report
            .rows
            .iter()
            .zip(&input)
            .all(|(r, i)| r.order_no == i.order_no)
    );
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 450);
    assert_eq!(
        sim.state().counters(&key).unwrap().registrations_accepted,
        450
    );
}

#[tokio::test]
async fn exactly_200_rows_is_one_call_and_201_is_refused_by_register_batch() {
    let sim = sim().await;
    let key = add_key(&sim, None);
    let c = client(&sim.base_url(), &key);
    assert_eq!(c.register_batch(&rows("E", 200)).await.unwrap().len(), 200);
    assert_eq!(requests(&sim, &key, "register"), 1);
    let err = c.register_batch(&rows("F", 201)).await.unwrap_err();
    assert!(matches!(err, WmsError::InvalidRequest(_)), "{err:?}");
    let err = c.register_batch(&[]).await.unwrap_err();
    assert!(matches!(err, WmsError::InvalidRequest(_)), "{err:?}");
    assert_eq!(
        requests(&sim, &key, "register"),
        1,
        "nothing sent for invalid batches"
    );
    // register() with 201 rows: 200 + 1.
    let report = c.register(&rows("G", 201)).await;
    assert_eq!(report.rows.len(), 201);
    assert_eq!(requests(&sim, &key, "register"), 3);
}

#[tokio::test]
async fn a_failed_batch_stops_the_rest_and_says_which_were_not_sent() {
    let sim = sim().await;
    let key = add_key(&sim, None);
    let c = client(&sim.base_url(), &key);
    // Every second call fails with 500: batch 1 OK, batch 2 fails, batch 3 not sent.
    sim.state()
        .set_faults(
            &key,
            Faults {
                error_500_ratio: 0.5,
                ..Faults::default()
            },
        )
        .unwrap();
    let report = c.register(&rows("S", 450)).await;
    assert_eq!(report.rows.len(), 200);
    let failed = report.failed.expect("second batch failed");
    assert!(
        failed.error.may_have_been_applied(),
        "a 500 may have been applied: {:?}",
        failed.error
    );
    assert_eq!(failed.order_nos.len(), 200);
    assert_eq!(failed.order_nos[0], "S-00200");
    assert_eq!(failed.not_sent.len(), 50);
    assert_eq!(failed.not_sent[0], "S-00400");
    assert_eq!(requests(&sim, &key, "register"), 2);
}

#[tokio::test]
async fn finding_250_order_nos_makes_3_searches() {
    let sim = sim().await;
    let key = add_key(&sim, None);
    let c = client(&sim.base_url(), &key);
    let input = rows("N", 250);
    assert!(c.register(&input).await.failed.is_none());
    let nos: Vec<String> = input.iter().map(|r| r.order_no.clone()).collect();
    let found = c.find_by_order_nos(&nos).await.unwrap();
    assert_eq!(found.len(), 250);
    assert_eq!(requests(&sim, &key, "search"), 3);
    let mut seen: Vec<&str> = found.iter().map(|o| o.order_no.as_str()).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 250);
}

#[tokio::test]
async fn search_all_pages_with_limit_200_and_offset() {
    let sim = sim().await;
    let key = add_key(&sim, None);
    let c = client(&sim.base_url(), &key);
    assert!(c.register(&rows("P", 450)).await.failed.is_none());
    let before = requests(&sim, &key, "search");
    let all = c
        .search_all(&SearchQuery::new().status_id_eq(50))
        .await
        .unwrap();
    assert_eq!(all.len(), 450);
    assert_eq!(requests(&sim, &key, "search") - before, 3);
    let mut ids: Vec<i64> = all.iter().map(|o| o.order_id).collect();
    ids.dedup();
    assert_eq!(ids.len(), 450, "no order twice across pages");

    let page = c
        .search(&SearchQuery::new().limit(10).offset(440))
        .await
        .unwrap();
    assert_eq!(page.total, Some(450));
    assert_eq!(page.orders.len(), 10);
    // Default page size is the WMS's 20.
    assert_eq!(
        c.search(&SearchQuery::new()).await.unwrap().orders.len(),
        20
    );
}

#[tokio::test]
async fn search_limits_are_checked_before_sending() {
    let sim = sim().await;
    let key = add_key(&sim, None);
    let c = client(&sim.base_url(), &key);
    let too_many: Vec<String> = (0..101).map(|i| format!("O{i}")).collect();
    let err = c
        .search(&SearchQuery::new().order_no_in(too_many))
        .await
        .unwrap_err();
    assert!(matches!(err, WmsError::InvalidRequest(_)), "{err:?}");
    let err = c.search(&SearchQuery::new().limit(201)).await.unwrap_err();
    assert!(matches!(err, WmsError::InvalidRequest(_)), "{err:?}");
    assert_eq!(requests(&sim, &key, "search"), 0);
    // 100 values is fine.
    let ok: Vec<String> = (0..100).map(|i| format!("O{i}")).collect();
    assert_eq!(
        c.search(&SearchQuery::new().order_no_in(ok))
            .await
            .unwrap()
            .total,
        Some(0)
    );
}
