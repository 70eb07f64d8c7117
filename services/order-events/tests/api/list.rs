//! ListOrders (O1, O2): every filter, newest first, keyset pagination.

use tonic::Code;
use wmslink_platform::validation::violations_of;
use wmslink_proto::orders::v1::{
    ListOrdersFilter, ListOrdersRequest, ListOrdersResponse, ShippingStatus,
};

use crate::helpers::{TestApp, order, shipment, spawn_app};

const T0: i64 = 1_777_000_000;
const HOUR: i64 = 3600;

fn at(hours: i64) -> prost_types::Timestamp {
    wmslink_proto::timestamp(T0 + hours * HOUR, 0)
}

/// Shipping status, WMS status id and name, as the dispatcher reports them.
type Integration = Option<(ShippingStatus, i32, &'static str)>;

/// (order_no, hours after T0, status code, integration).
const SEED: &[(&str, i64, &str, Integration)] = &[
    ("L-001", 1, "new", None),
    ("L-002", 2, "paid", Some((ShippingStatus::Queued, 0, ""))),
    (
        "L-003",
        3,
        "paid",
        Some((ShippingStatus::Sent, 10, "出荷指示済み")),
    ),
    (
        "L-004",
        4,
        "shipped",
        Some((ShippingStatus::Shipped, 40, "出荷済み")),
    ),
    (
        "L-005",
        5,
        "shipped",
        Some((ShippingStatus::Shipped, 40, "出荷済み")),
    ),
    (
        "L-006",
        5,
        "cancelled",
        Some((ShippingStatus::Cancelled, 90, "キャンセル")),
    ),
    (
        "L-007",
        6,
        "paid",
        Some((ShippingStatus::Sent, 20, "処理中")),
    ),
    ("L-008", 7, "new", Some((ShippingStatus::Error, 0, ""))),
    ("M-001", 8, "new", None),
    (
        "M-002",
        9,
        "paid",
        Some((ShippingStatus::Sent, 20, "処理中")),
    ),
];

async fn seeded_app() -> TestApp {
    let app = spawn_app().await;
    app.make_shop_known("shop-a").await;
    app.make_shop_known("shop-b").await;
    for (order_no, hours, status, integration) in SEED {
        let mut snapshot = order("shop-a", order_no, 1, status);
        snapshot.order_date = Some(at(*hours));
        app.upsert(&snapshot).await.expect("seed order");
        if let Some((shipping, wms, name)) = integration {
            app.publish_shipment(&shipment("shop-a", order_no, 1, *shipping, *wms, name))
                .await;
        }
        // Another shop with the same order numbers must never show up.
        let mut other = order("shop-b", order_no, 1, status);
        other.order_date = Some(at(*hours));
        app.upsert(&other).await.expect("seed other shop");
    }
    for (order_no, _, _, integration) in SEED {
        if let Some((shipping, _, _)) = integration {
            app.wait_for_integration("shop-a", order_no, "seed projection", |i| {
                i.shipping_status == *shipping as i32
            })
            .await;
        }
    }
    app
}

async fn page(
    app: &TestApp,
    filter: ListOrdersFilter,
    page_size: u32,
    token: &str,
) -> Result<ListOrdersResponse, tonic::Status> {
    app.cart
        .clone()
        .list_orders(ListOrdersRequest {
            shop_id: "shop-a".into(),
            filter: Some(filter),
            page_size,
            page_token: token.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn list(app: &TestApp, filter: ListOrdersFilter) -> Vec<String> {
    let response = page(app, filter.clone(), 0, "").await.expect("list");
    assert!(response.next_page_token.is_empty(), "one page: {filter:?}");
    response.rows.into_iter().map(|row| row.order_no).collect()
}

fn shipping(statuses: &[ShippingStatus]) -> ListOrdersFilter {
    ListOrdersFilter {
        shipping_statuses: statuses.iter().map(|s| *s as i32).collect(),
        ..ListOrdersFilter::default()
    }
}

#[tokio::test]
async fn every_filter_alone_and_combined() {
    let app = seeded_app().await;
    let all = ListOrdersFilter::default;

    assert_eq!(
        list(&app, all()).await,
        vec![
            "M-002", "M-001", "L-008", "L-007", "L-006", "L-005", "L-004", "L-003", "L-002",
            "L-001"
        ],
        "newest first; equal dates by order number, descending"
    );

    // Shipping status, one or several (O2). No dispatcher update yet means NOT_SENT.
    assert_eq!(
        list(&app, shipping(&[ShippingStatus::Sent])).await,
        vec!["M-002", "L-007", "L-003"]
    );
    assert_eq!(
        list(
            &app,
            shipping(&[ShippingStatus::Shipped, ShippingStatus::Cancelled])
        )
        .await,
        vec!["L-006", "L-005", "L-004"]
    );
    assert_eq!(
        list(&app, shipping(&[ShippingStatus::NotSent])).await,
        vec!["M-001", "L-001"]
    );
    assert_eq!(
        list(&app, shipping(&[ShippingStatus::CancelRejected])).await,
        Vec::<String>::new()
    );

    // WMS status.
    let wms = |ids: &[i32]| ListOrdersFilter {
        wms_status_ids: ids.to_vec(),
        ..all()
    };
    assert_eq!(list(&app, wms(&[20])).await, vec!["M-002", "L-007"]);
    assert_eq!(
        list(&app, wms(&[10, 40])).await,
        vec!["L-005", "L-004", "L-003"]
    );

    // Order status.
    let codes = |codes: &[&str]| ListOrdersFilter {
        status_codes: codes.iter().map(|c| (*c).to_owned()).collect(),
        ..all()
    };
    assert_eq!(
        list(&app, codes(&["paid"])).await,
        vec!["M-002", "L-007", "L-003", "L-002"]
    );
    assert_eq!(
        list(&app, codes(&["new", "cancelled"])).await,
        vec!["M-001", "L-008", "L-006", "L-001"]
    );

    // Order date: from inclusive, to exclusive.
    assert_eq!(
        list(
            &app,
            ListOrdersFilter {
                order_date_from: Some(at(3)),
                order_date_to: Some(at(6)),
                ..all()
            }
        )
        .await,
        vec!["L-006", "L-005", "L-004", "L-003"]
    );
    assert_eq!(
        list(
            &app,
            ListOrdersFilter {
                order_date_from: Some(at(8)),
                ..all()
            }
        )
        .await,
        vec!["M-002", "M-001"]
    );
    assert_eq!(
        list(
            &app,
            ListOrdersFilter {
                order_date_to: Some(at(2)),
                ..all()
            }
        )
        .await,
        vec!["L-001"]
    );

    // Order number prefix.
    let prefix = |p: &str| ListOrdersFilter {
        order_no_prefix: p.into(),
        ..all()
    };
    assert_eq!(list(&app, prefix("M-")).await, vec!["M-002", "M-001"]);
    assert_eq!(list(&app, prefix("L-00")).await.len(), 8);
    assert_eq!(list(&app, prefix("L-005")).await, vec!["L-005"]);
    assert!(list(&app, prefix("L-0010")).await.is_empty());
    assert!(list(&app, prefix("l-")).await.is_empty(), "case-sensitive");

    // Combinations.
    assert_eq!(
        list(
            &app,
            ListOrdersFilter {
                status_codes: vec!["paid".into()],
                order_date_from: Some(at(4)),
                ..shipping(&[ShippingStatus::Sent])
            }
        )
        .await,
        vec!["M-002", "L-007"]
    );
    assert_eq!(
        list(
            &app,
            ListOrdersFilter {
                wms_status_ids: vec![20, 40],
                ..shipping(&[ShippingStatus::Sent, ShippingStatus::Shipped])
            }
        )
        .await,
        vec!["M-002", "L-007", "L-005", "L-004"]
    );
    assert_eq!(
        list(
            &app,
            ListOrdersFilter {
                wms_status_ids: vec![40],
                order_no_prefix: "L-004".into(),
                ..all()
            }
        )
        .await,
        vec!["L-004"]
    );
    assert_eq!(
        list(
            &app,
            ListOrdersFilter {
                status_codes: vec!["paid".into()],
                order_no_prefix: "L".into(),
                order_date_to: Some(at(6)),
                ..all()
            }
        )
        .await,
        vec!["L-003", "L-002"]
    );
}

#[tokio::test]
async fn rows_carry_both_levels_of_the_status() {
    let app = seeded_app().await;
    let rows = page(
        &app,
        ListOrdersFilter {
            order_no_prefix: "L-007".into(),
            ..Default::default()
        },
        0,
        "",
    )
    .await
    .expect("list")
    .rows;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.order_no, "L-007");
    assert_eq!(row.order_date, Some(at(6)));
    assert_eq!(row.status_code, "paid");
    assert_eq!(row.total, 4130);
    assert_eq!(row.shipping_name, "山田 太郎");
    assert_eq!(row.shipping_status(), ShippingStatus::Sent);
    assert_eq!(row.wms_status_id, 20);
    assert_eq!(row.wms_status_name, "処理中");
}

#[tokio::test]
async fn keyset_pages_cover_every_row_once_in_order() {
    let app = seeded_app().await;
    let everything = list(&app, ListOrdersFilter::default()).await;

    for page_size in [1, 3, 5] {
        let mut seen = Vec::new();
        let mut token = String::new();
        let mut pages = 0;
        loop {
            let response = page(&app, ListOrdersFilter::default(), page_size, &token)
                .await
                .expect("page");
            assert!(response.rows.len() <= page_size as usize);
            seen.extend(response.rows.into_iter().map(|row| row.order_no));
            pages += 1;
            if response.next_page_token.is_empty() {
                break;
            }
            token = response.next_page_token;
            assert!(pages <= everything.len(), "pagination does not end");
        }
        assert_eq!(seen, everything, "page size {page_size}");
    }

    // With a filter, across the tie of L-006 and L-005.
    let filter = shipping(&[ShippingStatus::Shipped, ShippingStatus::Cancelled]);
    let first = page(&app, filter.clone(), 1, "").await.expect("page 1");
    assert_eq!(first.rows[0].order_no, "L-006");
    let second = page(&app, filter.clone(), 1, &first.next_page_token)
        .await
        .expect("page 2");
    assert_eq!(second.rows[0].order_no, "L-005");
    let third = page(&app, filter, 5, &second.next_page_token)
        .await
        .expect("page 3");
    assert_eq!(
        third
            .rows
            .iter()
            .map(|r| r.order_no.as_str())
            .collect::<Vec<_>>(),
        vec!["L-004"]
    );
    assert!(third.next_page_token.is_empty());
}

#[tokio::test]
async fn bad_list_requests_are_refused_with_every_field() {
    let app = seeded_app().await;
    let status = page(
        &app,
        ListOrdersFilter {
            shipping_statuses: vec![0, 77],
            order_no_prefix: "L %".into(),
            ..ListOrdersFilter::default()
        },
        500,
        "not-a-token",
    )
    .await
    .expect_err("invalid");
    assert_eq!(status.code(), Code::InvalidArgument);
    let fields: Vec<String> = violations_of(&status).into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        fields,
        vec![
            "filter.shipping_statuses[0]",
            "filter.shipping_statuses[1]",
            "filter.order_no_prefix",
            "page_token",
            "page_size"
        ]
    );
}

/// Every way the service can read a page (chosen by match counts at scale) gives the same
/// pages on the same data.
#[tokio::test]
async fn every_way_of_reading_a_page_gives_the_same_pages() {
    use wmslink_order_events::domain::list::{Driver, parse_list_request};
    use wmslink_order_events::store::list_orders_with;

    let app = seeded_app().await;
    let filters = vec![
        ListOrdersFilter::default(),
        shipping(&[
            ShippingStatus::Sent,
            ShippingStatus::Shipped,
            ShippingStatus::NotSent,
        ]),
        ListOrdersFilter {
            wms_status_ids: vec![20, 40, 0],
            status_codes: vec!["paid".into(), "shipped".into(), "new".into()],
            ..ListOrdersFilter::default()
        },
        ListOrdersFilter {
            order_no_prefix: "L-00".into(),
            ..ListOrdersFilter::default()
        },
        ListOrdersFilter {
            order_no_prefix: "L".into(),
            order_date_from: Some(at(2)),
            order_date_to: Some(at(9)),
            status_codes: vec!["paid".into(), "shipped".into(), "cancelled".into()],
            ..shipping(&[
                ShippingStatus::Sent,
                ShippingStatus::Shipped,
                ShippingStatus::Cancelled,
            ])
        },
        ListOrdersFilter {
            order_no_prefix: "M-00".into(),
            wms_status_ids: vec![0, 20],
            ..ListOrdersFilter::default()
        },
    ];
    for filter in filters {
        let expected = list(&app, filter.clone()).await;
        let base = ListOrdersRequest {
            shop_id: "shop-a".into(),
            filter: Some(filter.clone()),
            ..ListOrdersRequest::default()
        };
        let query = parse_list_request(&base).expect("valid");
        let mut drivers = vec![Driver::Date];
        if query.shipping_statuses.is_some() {
            drivers.push(Driver::ShippingStatus);
        }
        if query.wms_status_ids.is_some() {
            drivers.push(Driver::WmsStatus);
        }
        if query.status_codes.is_some() {
            drivers.push(Driver::StatusCode);
        }
        if query.order_no_range.is_some() {
            drivers.extend([Driver::OrderNoRange, Driver::BroadPrefix]);
        }
        for driver in drivers {
            for page_size in [1_u32, 2, 50] {
                let mut seen = Vec::new();
                let mut token = String::new();
                loop {
                    let query = parse_list_request(&ListOrdersRequest {
                        page_size,
                        page_token: token.clone(),
                        ..base.clone()
                    })
                    .expect("valid");
                    let page = list_orders_with(&app.db.pool, &query, driver)
                        .await
                        .expect("page");
                    assert!(page.rows.len() <= page_size as usize);
                    seen.extend(page.rows.into_iter().map(|row| row.order_no));
                    match page.next {
                        Some(next) => token = next.encode(),
                        None => break,
                    }
                    assert!(seen.len() <= expected.len(), "{driver:?} does not end");
                }
                assert_eq!(
                    seen, expected,
                    "{driver:?}, page size {page_size}, filter {filter:?}"
                );
            }
        }
    }
}
