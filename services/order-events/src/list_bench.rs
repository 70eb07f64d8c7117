//! The order-list benchmark (issue 4, O1/O2), as a library so the benchmark command
//! (`wmslink-bench`) runs the same code: one shop with 1,000,000 orders (plus a few other
//! shops), one page of 50 rows per query through the real list code (request checking, SQL,
//! rows, page token), for every filter combination, at random depths; p50/p95/p99 per
//! combination. `orders-bench` is its command line.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use prost::Message;
use sqlx::PgPool;
use wmslink_platform::db::{self, DatabaseConfig};
use wmslink_proto::orders::v1::{
    Address, Amounts, LineItem, ListOrdersFilter, ListOrdersRequest, Order, ShippingStatus,
};
use wmslink_proto::sync::v1::AnomalyKind;

use crate::domain::list::{Cursor, parse_list_request};
use crate::grpc::list_orders;
use crate::store;

/// What to load and how to measure.
#[derive(Debug, Clone)]
pub struct Options {
    /// PostgreSQL server (without database), e.g. `postgres://postgres@127.0.0.1:5432`.
    pub server: String,
    /// The benchmark's own database; dropped and recreated unless `reuse`.
    pub database: String,
    /// Orders of the benchmarked shop.
    pub orders: i64,
    /// Orders of each of the three other shops.
    pub other_orders: i64,
    /// Measured queries per filter combination.
    pub queries: usize,
    pub page_size: u32,
    /// Keep the data of an earlier run when its order count matches.
    pub reuse: bool,
    /// Print EXPLAIN ANALYZE of one deep-page query per combination (stderr).
    pub explain: bool,
}

/// One filter combination's timings.
#[derive(Debug, Clone)]
pub struct Row {
    pub filter: &'static str,
    pub driver: String,
    pub rows_per_page: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Every combination, and how long loading took (`None` when reused).
#[derive(Debug, Clone)]
pub struct Report {
    pub rows: Vec<Row>,
    pub load_seconds: Option<f64>,
}

impl Report {
    /// The worst p99 over the combinations, ms.
    pub fn worst_p99_ms(&self) -> f64 {
        self.rows.iter().map(|r| r.p99_ms).fold(0.0, f64::max)
    }
}

const SHOP: &str = "bench-shop";
const DAYS: i64 = 730;

/// Loads the data (unless reused) and measures every filter combination.
pub async fn run(args: &Options) -> anyhow::Result<Report> {
    let (pool, load_seconds) = prepare(args).await?;
    let now = Utc::now();
    let start = now - chrono::Duration::days(DAYS);
    let mut report = Report {
        rows: Vec::new(),
        load_seconds,
    };
    let mut random = Lcg(0x5eed);
    for (name, filter) in combinations(start, now) {
        let request = |token: String| ListOrdersRequest {
            shop_id: SHOP.into(),
            filter: Some(filter.clone()),
            page_size: args.page_size,
            page_token: token,
        };
        // A quarter of the queries ask for the first page, the rest for a page at a random
        // depth (a cursor at a random time in the two years).
        let token = |random: &mut Lcg, i: usize| {
            if i.is_multiple_of(4) {
                return String::new();
            }
            let offset = random.below(DAYS * 86_400);
            Cursor {
                order_date: start + chrono::Duration::seconds(offset),
                order_no: "B999999999".into(),
            }
            .encode()
        };
        for i in 0..20 {
            list_orders(&pool, &request(token(&mut random, i)))
                .await
                .map_err(|status| anyhow::anyhow!("{name}: {status}"))?;
        }
        let queries = args.queries.max(1);
        let mut timings = Vec::with_capacity(queries);
        let mut rows = 0usize;
        let mut drivers = std::collections::BTreeMap::new();
        for i in 0..queries {
            let request = request(token(&mut random, i));
            let began = Instant::now();
            let (response, driver) = list_orders(&pool, &request)
                .await
                .map_err(|status| anyhow::anyhow!("{name}: {status}"))?;
            timings.push(began.elapsed());
            rows += response.rows.len();
            *drivers.entry(format!("{driver:?}")).or_insert(0usize) += 1;
        }
        timings.sort();
        let p = |q: f64| {
            let index = ((timings.len() as f64 * q).ceil() as usize).clamp(1, timings.len()) - 1;
            timings[index]
        };
        let driver = drivers
            .iter()
            .map(|(driver, n)| {
                if drivers.len() == 1 {
                    driver.clone()
                } else {
                    format!("{driver} ({n})")
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        report.rows.push(Row {
            filter: name,
            driver,
            rows_per_page: rows as f64 / queries as f64,
            p50_ms: ms(p(0.50)),
            p95_ms: ms(p(0.95)),
            p99_ms: ms(p(0.99)),
            max_ms: ms(timings[timings.len() - 1]),
        });
        if args.explain {
            let deep = request(token(&mut random, 1));
            let query = parse_list_request(&deep).map_err(|v| anyhow::anyhow!(v.summary()))?;
            for line in store::explain_list(&pool, &query).await? {
                eprintln!("    {line}");
            }
        }
    }
    pool.close().await;
    Ok(report)
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// A tiny deterministic generator (no dependency needed for picking cursors).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, bound: i64) -> i64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let bound = u64::try_from(bound.max(1)).unwrap_or(1);
        i64::try_from((self.0 >> 33) % bound).unwrap_or(0)
    }
}

fn combinations(start: DateTime<Utc>, now: DateTime<Utc>) -> Vec<(&'static str, ListOrdersFilter)> {
    let shipping = |statuses: &[ShippingStatus]| ListOrdersFilter {
        shipping_statuses: statuses.iter().map(|s| *s as i32).collect(),
        ..ListOrdersFilter::default()
    };
    let codes = |codes: &[&str]| ListOrdersFilter {
        status_codes: codes.iter().map(|c| (*c).to_owned()).collect(),
        ..ListOrdersFilter::default()
    };
    let wms = |ids: &[i32]| ListOrdersFilter {
        wms_status_ids: ids.to_vec(),
        ..ListOrdersFilter::default()
    };
    let prefix = |p: &str| ListOrdersFilter {
        order_no_prefix: p.into(),
        ..ListOrdersFilter::default()
    };
    let month_a_year_ago = ListOrdersFilter {
        order_date_from: Some(wmslink_proto::to_timestamp(
            now - chrono::Duration::days(395),
        )),
        order_date_to: Some(wmslink_proto::to_timestamp(
            now - chrono::Duration::days(365),
        )),
        ..ListOrdersFilter::default()
    };
    let last_year = ListOrdersFilter {
        order_date_from: Some(wmslink_proto::to_timestamp(
            now - chrono::Duration::days(365),
        )),
        ..ListOrdersFilter::default()
    };
    use ShippingStatus::*;
    vec![
        ("none", ListOrdersFilter::default()),
        ("shipping = NOT_SENT (4%)", shipping(&[NotSent])),
        ("shipping = SENT (recent only)", shipping(&[Sent])),
        ("shipping = SHIPPED (93%)", shipping(&[Shipped])),
        (
            "shipping in (ERROR, CANCEL_REJECTED) (0.2%)",
            shipping(&[Error, CancelRejected]),
        ),
        (
            "shipping in (NOT_SENT, QUEUED, SENDING, SENT, ERROR)",
            shipping(&[NotSent, Queued, Sending, Sent, Error]),
        ),
        ("wms = 20 (processing, 0.3%)", wms(&[20])),
        ("wms in (10, 20, 30)", wms(&[10, 20, 30])),
        ("status = paid", codes(&["paid"])),
        (
            "status in (returned, cancelled)",
            codes(&["returned", "cancelled"]),
        ),
        ("order date: one month a year ago", month_a_year_ago.clone()),
        (
            "order date: one month + shipping = SHIPPED",
            ListOrdersFilter {
                shipping_statuses: vec![Shipped as i32],
                ..month_a_year_ago.clone()
            },
        ),
        (
            "order date: last year + status = cancelled",
            ListOrdersFilter {
                status_codes: vec!["cancelled".into()],
                ..last_year.clone()
            },
        ),
        ("order_no prefix B000456 (1,000 orders)", prefix("B000456")),
        ("order_no prefix B0004 (100,000 orders)", prefix("B0004")),
        ("order_no prefix B (all)", prefix("B")),
        (
            "shipping = SHIPPED + status = on_hold (never together)",
            ListOrdersFilter {
                status_codes: vec!["on_hold".into()],
                ..shipping(&[Shipped])
            },
        ),
        (
            "shipping = SHIPPED + wms = 40 + status = shipped",
            ListOrdersFilter {
                wms_status_ids: vec![40],
                status_codes: vec!["shipped".into()],
                ..shipping(&[Shipped])
            },
        ),
        (
            "shipping = CANCELLED + prefix B00 + last year",
            ListOrdersFilter {
                shipping_statuses: vec![Cancelled as i32],
                order_no_prefix: "B00".into(),
                ..last_year.clone()
            },
        ),
        (
            "every filter",
            ListOrdersFilter {
                shipping_statuses: vec![Shipped as i32, Cancelled as i32],
                wms_status_ids: vec![40, 90],
                status_codes: vec!["shipped".into(), "cancelled".into()],
                order_date_from: Some(wmslink_proto::to_timestamp(start)),
                order_date_to: Some(wmslink_proto::to_timestamp(now)),
                order_no_prefix: "B0".into(),
                anomalies: vec![],
            },
        ),
        (
            "anomaly = any kind",
            ListOrdersFilter {
                anomalies: vec![
                    AnomalyKind::CancelledUnrequested as i32,
                    AnomalyKind::NotSentByWmslink as i32,
                    AnomalyKind::MissingInWms as i32,
                    AnomalyKind::RegisteredOutsideWmslink as i32,
                ],
                ..ListOrdersFilter::default()
            },
        ),
        (
            "anomaly = MISSING_IN_WMS + shipping = SHIPPED",
            ListOrdersFilter {
                anomalies: vec![AnomalyKind::MissingInWms as i32],
                shipping_statuses: vec![Shipped as i32],
                ..ListOrdersFilter::default()
            },
        ),
    ]
}

/// A realistic snapshot (~800 bytes) stored for every generated order.
fn template() -> Vec<u8> {
    let address = Address {
        name: "山田 太郎".into(),
        kana: "ヤマダ タロウ".into(),
        zip: "150-0001".into(),
        prefecture: "東京都".into(),
        address1: "渋谷区神宮前1-2-3".into(),
        address2: "ハイツ101".into(),
        phone: "03-1234-5678".into(),
        email: "taro@example.jp".into(),
    };
    let line = |sku: &str| LineItem {
        sku: sku.into(),
        name: "オーガニックコットン Tシャツ".into(),
        quantity: 1,
        unit_price: 2980,
        options: [("color".to_owned(), "navy".to_owned())].into(),
    };
    Order {
        shop_id: SHOP.into(),
        order_no: "B000000000".into(),
        revision: 1,
        order_date: Some(wmslink_proto::timestamp(1_770_000_000, 0)),
        status_code: "shipped".into(),
        payment_method_code: "credit".into(),
        orderer: Some(address.clone()),
        shipping: Some(address),
        delivery_date: "2026-05-03".into(),
        delivery_time: "14-16".into(),
        amounts: Some(Amounts {
            products: 5960,
            shipping_fee: 600,
            total: 7156,
            tax: 596,
            ..Amounts::default()
        }),
        note: "不在時は宅配ボックスへ".into(),
        lines: vec![line("TS-NV-M"), line("TS-NV-L")],
        extra: [("campaign".to_owned(), "spring".to_owned())].into(),
    }
    .encode_to_vec()
}

/// Generated orders: two years, every second order sharing its timestamp with the next;
/// order numbers ascending with time. The last 5,000 orders are recent (not yet shipped); older
/// ones are mostly shipped, with a few cancelled, stuck or never sent.
const LOAD_ORDERS: &str = "
WITH g AS (
    SELECT i,
           (i::bigint * 7919) % 1000 AS r,
           i > $5 - 5000 AS recent
    FROM generate_series(1, $5) AS i
), s AS (
    SELECT i, r,
           CASE WHEN recent THEN
                CASE WHEN r < 300 THEN 1 WHEN r < 450 THEN 2 WHEN r < 480 THEN 3
                     WHEN r < 880 THEN 4 WHEN r < 990 THEN 5 ELSE 9 END
           ELSE
                CASE WHEN r < 30 THEN 7 WHEN r = 30 THEN 9 WHEN r = 31 THEN 8
                     WHEN r = 32 THEN 4 WHEN r < 70 THEN 1 ELSE 5 END
           END AS shipping_status,
           recent
    FROM g
)
INSERT INTO orders (shop_id, order_no, revision, status_code, order_date, total, shipping_name,
                    snapshot, shipping_status, wms_status_id, anomalies)
SELECT $1,
       $6 || lpad(i::text, 9, '0'),
       1,
       CASE shipping_status
            WHEN 5 THEN CASE WHEN r % 20 = 0 THEN 'returned' ELSE 'shipped' END
            WHEN 7 THEN 'cancelled'
            WHEN 8 THEN 'cancelled'
            WHEN 1 THEN CASE WHEN recent THEN 'new' ELSE 'on_hold' END
            WHEN 9 THEN 'backorder'
            ELSE CASE WHEN r % 2 = 0 THEN 'paid' ELSE 'processing' END
       END,
       $2::timestamptz + make_interval(secs => ((i / 2) * 2) * $3::float8),
       1000 + (r * 37),
       'お客様 ' || (i % 5000),
       $4,
       shipping_status,
       CASE shipping_status
            WHEN 4 THEN CASE WHEN NOT recent OR r % 2 = 0 THEN 20 ELSE 10 END
            WHEN 5 THEN 40
            WHEN 7 THEN 90
            WHEN 8 THEN 30
            ELSE 0
       END,
       -- R5 anomalies are rare: about one order in 1,000 (bits 1 << kind, kinds 1..=4).
       CASE WHEN (i::bigint * 104729) % 1000 = 7 THEN 1 << (1 + (i % 4))::int ELSE 0 END
FROM s";

const LOAD_PROJECTION: &str = "
INSERT INTO order_integration (shop_id, order_no, sequence, shipping_status, wms_status_id,
                               wms_status_name, tracking_code, shipped_date,
                               edited_after_sending, edited_revision, cancel_rejected,
                               cancelled_in_wms_unrequested, last_error, updated_at)
SELECT shop_id, order_no, 3, shipping_status, wms_status_id,
       CASE wms_status_id WHEN 10 THEN '出荷指示済み' WHEN 20 THEN '処理中'
            WHEN 30 THEN '梱包済み' WHEN 40 THEN '出荷済み' WHEN 90 THEN 'キャンセル'
            ELSE '' END,
       CASE WHEN shipping_status = 5 THEN '4400-' || lpad(order_no, 12, '0') ELSE '' END,
       CASE WHEN shipping_status = 5 THEN to_char(order_date + interval '1 day', 'YYYY-MM-DD')
            ELSE '' END,
       false, 0, shipping_status = 8, false,
       CASE WHEN shipping_status = 9 THEN 'WMS refused: unknown delivery method' ELSE '' END,
       order_date + interval '1 day'
FROM orders WHERE shipping_status <> 1";

async fn prepare(args: &Options) -> anyhow::Result<(PgPool, Option<f64>)> {
    let config = DatabaseConfig {
        url: format!("{}/{}", args.server, args.database),
        max_connections: 4,
        create_if_missing: true,
        ..DatabaseConfig::default()
    };
    if args.reuse
        && let Ok(pool) = db::connect(&config).await
    {
        let count: Option<i64> =
            sqlx::query_scalar("SELECT count(*) FROM orders WHERE shop_id = $1")
                .bind(SHOP)
                .fetch_one(&pool)
                .await
                .ok();
        if count == Some(args.orders) {
            return Ok((pool, None));
        }
        pool.close().await;
    }

    let admin = db::connect(&DatabaseConfig {
        url: format!("{}/postgres", args.server),
        max_connections: 1,
        create_if_missing: false,
        ..DatabaseConfig::default()
    })
    .await
    .context("connecting to the PostgreSQL server")?;
    let drop = format!(
        "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
        args.database.replace('"', "")
    );
    sqlx::query(sqlx::AssertSqlSafe(drop))
        .execute(&admin)
        .await?;
    admin.close().await;

    let pool = db::connect(&config).await?;
    db::migrate(&pool, &store::MIGRATOR).await?;
    let began = Instant::now();
    let snapshot = template();
    let start = Utc::now() - chrono::Duration::days(DAYS);
    let shops = [
        (SHOP.to_owned(), args.orders, "B"),
        ("other-shop-1".to_owned(), args.other_orders, "O"),
        ("other-shop-2".to_owned(), args.other_orders, "P"),
        ("other-shop-3".to_owned(), args.other_orders, "Q"),
    ];
    for (shop, count, prefix) in &shops {
        let step = (DAYS * 86_400) as f64 / (*count).max(1) as f64;
        sqlx::query(LOAD_ORDERS)
            .bind(shop)
            .bind(start)
            .bind(step)
            .bind(&snapshot)
            .bind(count)
            .bind(*prefix)
            .execute(&pool)
            .await
            .with_context(|| format!("loading orders of {shop}"))?;
    }
    sqlx::query(LOAD_PROJECTION).execute(&pool).await?;
    sqlx::query(
        "INSERT INTO shops (shop_id, settings_version, registered, enabled, last_change)
                 SELECT DISTINCT shop_id, 1, true, true, 'registered' FROM orders",
    )
    .execute(&pool)
    .await?;
    for table in ["VACUUM ANALYZE orders", "VACUUM ANALYZE order_integration"] {
        sqlx::raw_sql(table).execute(&pool).await?;
    }
    Ok((pool, Some(began.elapsed().as_secs_f64())))
}
