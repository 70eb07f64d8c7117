//! The order list's SQL. Every variant takes the same parameters:
//!
//! `$1` shop, `$2` shipping statuses, `$3` WMS status ids, `$4` status codes, `$5` order date
//! from (inclusive), `$6` order date to (exclusive), `$7`/`$8` the order_no range of the prefix,
//! `$9`/`$10` the keyset cursor (order_date, order_no), `$11` the limit (page size + 1), `$12`
//! the anomaly kinds' bits (`orders.anomalies`).
//!
//! An absent filter is NULL. The statements run unnamed, so PostgreSQL plans each execution
//! with its actual parameters and drops the `NULL IS NULL OR ...` branches.
//!
//! A variant first finds the page's keys (order_no, order_date) by an index-only scan of the
//! index of its [`Driver`] (each list index carries the other filter columns), then reads those
//! rows and their projection. Multi-valued filters on an index's second column would lose the
//! index order (and sort every match), so a filter drives as one ordered, limited range per
//! value (LATERAL), merged by a top-N sort of at most values x limit keys.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use wmslink_proto::orders::v1::OrderListRow;

use super::timestamp;
use crate::domain::list::{Cursor, Driver, ListQuery, Probe, kinds_of_bits};

/// Rows of the date index a broad prefix reads before it switches to the GiST index.
pub const BROAD_PREFIX_BUDGET: i64 = 5_000;

macro_rules! filter_shipping {
    ($t:literal) => {
        concat!(
            " AND ($2::smallint[] IS NULL OR ",
            $t,
            ".shipping_status = ANY($2))"
        )
    };
}
macro_rules! filter_wms {
    ($t:literal) => {
        concat!(
            " AND ($3::int[] IS NULL OR ",
            $t,
            ".wms_status_id = ANY($3))"
        )
    };
}
macro_rules! filter_code {
    ($t:literal) => {
        concat!(
            " AND ($4::text[] IS NULL OR ",
            $t,
            ".status_code = ANY($4))"
        )
    };
}
macro_rules! filter_anomalies {
    ($t:literal) => {
        concat!(" AND ($12::int IS NULL OR (", $t, ".anomalies & $12) <> 0)")
    };
}
macro_rules! filter_dates {
    ($t:literal) => {
        concat!(
            " AND ($5::timestamptz IS NULL OR ",
            $t,
            ".order_date >= $5)",
            " AND ($6::timestamptz IS NULL OR ",
            $t,
            ".order_date < $6)",
        )
    };
}
macro_rules! filter_prefix {
    ($t:literal) => {
        concat!(
            " AND ($7::text IS NULL OR (",
            $t,
            ".order_no >= $7 AND ",
            $t,
            ".order_no < $8::text))"
        )
    };
}
macro_rules! filter_after {
    ($t:literal) => {
        concat!(
            " AND ($9::timestamptz IS NULL OR (",
            $t,
            ".order_date, ",
            $t,
            ".order_no) < ($9, $10::text))"
        )
    };
}
macro_rules! list_order {
    ($t:literal) => {
        concat!(" ORDER BY ", $t, ".order_date DESC, ", $t, ".order_no DESC")
    };
}
/// The page's rows from its keys `k`.
macro_rules! rows_of_keys {
    ($keys:expr) => {
        concat!(
            "SELECT k.order_no, k.order_date, o.status_code, o.revision, o.total, o.shipping_name,
                    o.shipping_status, o.wms_status_id,
                    COALESCE(p.wms_status_name, '') AS wms_status_name,
                    COALESCE(p.tracking_code, '') AS tracking_code,
                    COALESCE(p.edited_after_sending, false) AS edited_after_sending,
                    COALESCE(p.cancel_rejected, false) AS cancel_rejected,
                    COALESCE(p.cancelled_in_wms_unrequested, false) AS cancelled_in_wms_unrequested,
                    o.anomalies
             FROM (",
            $keys,
            ") k
             JOIN orders o ON o.shop_id = $1 AND o.order_no = k.order_no
             LEFT JOIN order_integration p ON p.shop_id = $1 AND p.order_no = k.order_no",
            list_order!("k")
        )
    };
}
macro_rules! keys_by_date {
    () => {
        concat!(
            "SELECT o.order_no, o.order_date FROM orders o WHERE o.shop_id = $1",
            filter_shipping!("o"),
            filter_wms!("o"),
            filter_code!("o"),
            filter_anomalies!("o"),
            filter_dates!("o"),
            filter_prefix!("o"),
            filter_after!("o"),
            list_order!("o"),
            " LIMIT $11"
        )
    };
}
/// Orders with an anomaly, from their partial index (`anomalies <> 0`) in list order.
macro_rules! keys_by_anomalies {
    () => {
        concat!(
            "SELECT o.order_no, o.order_date FROM orders o
             WHERE o.shop_id = $1 AND o.anomalies <> 0",
            filter_anomalies!("o"),
            filter_shipping!("o"),
            filter_wms!("o"),
            filter_code!("o"),
            filter_dates!("o"),
            filter_prefix!("o"),
            filter_after!("o"),
            list_order!("o"),
            " LIMIT $11"
        )
    };
}
macro_rules! keys_driven_by {
    ($values:literal, $column:literal, $($filters:expr),*) => {
        concat!(
            "SELECT d.order_no, d.order_date FROM unnest(", $values, ") AS f(v)
             CROSS JOIN LATERAL (SELECT o.order_no, o.order_date FROM orders o
                                 WHERE o.shop_id = $1 AND o.", $column, " = f.v",
            $($filters,)*
            filter_anomalies!("o"),
            filter_dates!("o"),
            filter_prefix!("o"),
            filter_after!("o"),
            list_order!("o"),
            " LIMIT $11) d",
            list_order!("d"),
            " LIMIT $11"
        )
    };
}
/// Every match of a short prefix (the primary key's range, index-only), sorted.
macro_rules! keys_by_order_no_range {
    () => {
        concat!(
            "SELECT m.order_no, m.order_date FROM (SELECT o.order_no, o.order_date FROM orders o
                 WHERE o.shop_id = $1 AND o.order_no >= $7 AND o.order_no < $8::text",
            filter_shipping!("o"),
            filter_wms!("o"),
            filter_code!("o"),
            filter_anomalies!("o"),
            filter_dates!("o"),
            filter_after!("o"),
            " OFFSET 0) m",
            list_order!("m"),
            " LIMIT $11"
        )
    };
}
/// A broad prefix, first try: a bounded stretch of the date index.
macro_rules! keys_broad_prefix_by_date {
    () => {
        concat!(
            "SELECT s.order_no, s.order_date FROM (
                 SELECT o.order_no, o.order_date, o.shipping_status, o.wms_status_id,
                        o.status_code, o.anomalies
                 FROM orders o WHERE o.shop_id = $1",
            filter_dates!("o"),
            filter_after!("o"),
            list_order!("o"),
            " LIMIT 5000) s WHERE true",
            filter_shipping!("s"),
            filter_wms!("s"),
            filter_code!("s"),
            filter_anomalies!("s"),
            filter_prefix!("s"),
            list_order!("s"),
            " LIMIT $11"
        )
    };
}
/// A broad prefix, second try: the prefix range nearest-first in time (GiST, index-only); ties
/// on the last date are all kept, then cut in list order.
macro_rules! keys_broad_prefix_by_knn {
    () => {
        concat!(
            "SELECT n.order_no, n.order_date FROM (SELECT o.order_no, o.order_date FROM orders o
                 WHERE o.shop_id = $1 AND (o.order_no || '') >= $7
                   AND (o.order_no || '') < $8::text",
            " AND ($9::timestamptz IS NULL OR o.order_date <= $9)",
            filter_shipping!("o"),
            filter_wms!("o"),
            filter_code!("o"),
            filter_anomalies!("o"),
            filter_dates!("o"),
            filter_after!("o"),
            " ORDER BY o.order_date <-> '100000-01-01 00:00:00+00'::timestamptz",
            " FETCH FIRST ($11) ROWS WITH TIES) n",
            list_order!("n"),
            " LIMIT $11"
        )
    };
}
/// Matches of one filter column in the date range below the cursor (its index is ordered by
/// date after the value, so the count reads at most the cap).
macro_rules! probe_count {
    ($condition:literal) => {
        concat!(
            "(SELECT count(*) FROM (SELECT 1 FROM orders o WHERE o.shop_id = $1 AND ",
            $condition,
            filter_dates!("o"),
            filter_after!("o"),
            " LIMIT 2001) x)"
        )
    };
}
/// Matches of the prefix in the whole shop (the primary key cannot bound the dates; reading
/// at most the cap keeps the count cheap, and a prefix with few matches is cheap to sort).
macro_rules! probe_count_prefix {
    () => {
        concat!(
            "(SELECT count(*) FROM (SELECT 1 FROM orders o WHERE o.shop_id = $1",
            " AND o.order_no >= $7 AND o.order_no < $8::text LIMIT 2001) x)"
        )
    };
}

/// The share of all orders that the values `$n` of a filter column have, from PostgreSQL's
/// statistics (most common values; other values count as rare).
macro_rules! share_of {
    ($column:literal, $param:literal, $array:literal) => {
        concat!(
            "(SELECT COALESCE(sum(m.f), 0)::float8 FROM pg_stats s
                 CROSS JOIN LATERAL unnest(s.most_common_vals::text::",
            $array,
            ", s.most_common_freqs) AS m(v, f)
              WHERE s.schemaname = current_schema() AND s.tablename = 'orders'
                AND s.attname = '",
            $column,
            "' AND m.v = ANY(",
            $param,
            "))"
        )
    };
}

const PROBE: &str = concat!(
    "SELECT CASE WHEN $2::smallint[] IS NULL THEN NULL ELSE ",
    probe_count!("o.shipping_status = ANY($2)"),
    " END AS shipping, CASE WHEN $3::int[] IS NULL THEN NULL ELSE ",
    probe_count!("o.wms_status_id = ANY($3)"),
    " END AS wms, CASE WHEN $4::text[] IS NULL THEN NULL ELSE ",
    probe_count!("o.status_code = ANY($4)"),
    " END AS codes, CASE WHEN $7::text IS NULL THEN NULL ELSE ",
    probe_count_prefix!(),
    " END AS prefix, CASE WHEN $2::smallint[] IS NULL THEN NULL ELSE ",
    share_of!("shipping_status", "$2", "smallint[]"),
    " END AS shipping_share, CASE WHEN $3::int[] IS NULL THEN NULL ELSE ",
    share_of!("wms_status_id", "$3", "int[]"),
    " END AS wms_share, CASE WHEN $4::text[] IS NULL THEN NULL ELSE ",
    share_of!("status_code", "$4", "text[]"),
    " END AS codes_share, $11::bigint AS page_limit, $12::int AS anomaly_bits"
);

/// The SQL of each way to read a page (its rows, or with `explain`, its plan).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Statement {
    ByDate,
    ByShippingStatus,
    ByWmsStatus,
    ByStatusCode,
    ByOrderNoRange,
    BroadPrefixByDate,
    BroadPrefixByKnn,
    ByAnomalies,
}

macro_rules! statement_sql {
    ($statement:expr, $prefix:literal) => {
        match $statement {
            Statement::ByDate => concat!($prefix, rows_of_keys!(keys_by_date!())),
            Statement::ByShippingStatus => concat!(
                $prefix,
                rows_of_keys!(keys_driven_by!(
                    "$2::smallint[]",
                    "shipping_status",
                    filter_wms!("o"),
                    filter_code!("o")
                ))
            ),
            Statement::ByWmsStatus => concat!(
                $prefix,
                rows_of_keys!(keys_driven_by!(
                    "$3::int[]",
                    "wms_status_id",
                    filter_shipping!("o"),
                    filter_code!("o")
                ))
            ),
            Statement::ByStatusCode => concat!(
                $prefix,
                rows_of_keys!(keys_driven_by!(
                    "$4::text[]",
                    "status_code",
                    filter_shipping!("o"),
                    filter_wms!("o")
                ))
            ),
            Statement::ByOrderNoRange => {
                concat!($prefix, rows_of_keys!(keys_by_order_no_range!()))
            }
            Statement::BroadPrefixByDate => {
                concat!($prefix, rows_of_keys!(keys_broad_prefix_by_date!()))
            }
            Statement::BroadPrefixByKnn => {
                concat!($prefix, rows_of_keys!(keys_broad_prefix_by_knn!()))
            }
            Statement::ByAnomalies => concat!($prefix, rows_of_keys!(keys_by_anomalies!())),
        }
    };
}

impl Statement {
    /// The first statement of a driver (a broad prefix may need a second).
    fn first(driver: Driver) -> Self {
        match driver {
            Driver::Date => Self::ByDate,
            Driver::ShippingStatus => Self::ByShippingStatus,
            Driver::WmsStatus => Self::ByWmsStatus,
            Driver::StatusCode => Self::ByStatusCode,
            Driver::OrderNoRange => Self::ByOrderNoRange,
            Driver::BroadPrefix => Self::BroadPrefixByDate,
            Driver::Anomalies => Self::ByAnomalies,
        }
    }

    fn sql(self) -> &'static str {
        statement_sql!(self, "")
    }

    fn explain_sql(self) -> &'static str {
        statement_sql!(self, "EXPLAIN (ANALYZE, BUFFERS) ")
    }
}

/// Binds the twelve list parameters in order.
macro_rules! bind_list {
    ($query:expr, $list:expr) => {{
        let list: &ListQuery = $list;
        let (prefix_from, prefix_to) = match &list.order_no_range {
            Some((from, to)) => (Some(from.as_str()), Some(to.as_str())),
            None => (None, None),
        };
        $query
            .persistent(false)
            .bind(list.shop.as_str())
            .bind(list.shipping_statuses.as_deref())
            .bind(list.wms_status_ids.as_deref())
            .bind(list.status_codes.as_deref())
            .bind(list.order_date_from)
            .bind(list.order_date_to)
            .bind(prefix_from)
            .bind(prefix_to)
            .bind(list.after.as_ref().map(|cursor| cursor.order_date))
            .bind(list.after.as_ref().map(|cursor| cursor.order_no.as_str()))
            .bind(i64::from(list.page_size) + 1)
            .bind(list.anomaly_bits)
    }};
}

#[derive(sqlx::FromRow)]
struct ProbeRow {
    shipping: Option<i64>,
    wms: Option<i64>,
    codes: Option<i64>,
    prefix: Option<i64>,
    shipping_share: Option<f64>,
    wms_share: Option<f64>,
    codes_share: Option<f64>,
}

/// Counts the matches of each present filter, up to [`PROBE_CAP`] + 1, when the driver depends
/// on them.
async fn probe(pool: &PgPool, query: &ListQuery) -> sqlx::Result<Probe> {
    if !query.needs_probe() {
        return Ok(Probe::default());
    }
    let row: ProbeRow = bind_list!(sqlx::query_as(PROBE), query)
        .fetch_one(pool)
        .await?;
    Ok(Probe {
        shipping: row.shipping,
        wms: row.wms,
        codes: row.codes,
        prefix: row.prefix,
        shipping_share: row.shipping_share,
        wms_share: row.wms_share,
        codes_share: row.codes_share,
    })
}

#[derive(sqlx::FromRow)]
struct ListRow {
    order_no: String,
    order_date: DateTime<Utc>,
    status_code: String,
    revision: i64,
    total: i64,
    shipping_name: String,
    shipping_status: i16,
    wms_status_id: i32,
    wms_status_name: String,
    tracking_code: String,
    edited_after_sending: bool,
    cancel_rejected: bool,
    cancelled_in_wms_unrequested: bool,
    anomalies: i32,
}

async fn fetch(
    pool: &PgPool,
    statement: Statement,
    query: &ListQuery,
) -> sqlx::Result<Vec<ListRow>> {
    bind_list!(sqlx::query_as(statement.sql()), query)
        .fetch_all(pool)
        .await
}

/// One page and, when more rows follow, the cursor after its last row.
pub struct Page {
    pub rows: Vec<OrderListRow>,
    pub next: Option<Cursor>,
    /// How the page was read (for the benchmark and logs).
    pub driver: Driver,
}

/// One page of the list.
pub async fn list_orders(pool: &PgPool, query: &ListQuery) -> sqlx::Result<Page> {
    let driver = query.driver(&probe(pool, query).await?);
    list_orders_with(pool, query, driver).await
}

/// One page read by `driver` (which must suit the query: a filter driver needs its filter, the
/// prefix drivers a prefix). Every suitable driver gives the same page.
pub async fn list_orders_with(
    pool: &PgPool,
    query: &ListQuery,
    driver: Driver,
) -> sqlx::Result<Page> {
    let limit = query.page_size as usize + 1;
    let mut rows = fetch(pool, Statement::first(driver), query).await?;
    if driver == Driver::BroadPrefix && rows.len() < limit {
        // The bounded stretch of the date index did not fill the page: the matches are
        // elsewhere in time (or there are no more).
        rows = fetch(pool, Statement::BroadPrefixByKnn, query).await?;
    }
    let more = rows.len() > query.page_size as usize;
    rows.truncate(query.page_size as usize);
    let next = match rows.last() {
        Some(last) if more => Some(Cursor {
            order_date: last.order_date,
            order_no: last.order_no.clone(),
        }),
        _ => None,
    };
    Ok(Page {
        rows: rows.into_iter().map(list_row).collect(),
        next,
        driver,
    })
}

fn list_row(row: ListRow) -> OrderListRow {
    OrderListRow {
        order_no: row.order_no,
        order_date: Some(timestamp(row.order_date)),
        status_code: row.status_code,
        total: row.total,
        shipping_name: row.shipping_name,
        shipping_status: i32::from(row.shipping_status),
        wms_status_id: row.wms_status_id,
        wms_status_name: row.wms_status_name,
        tracking_code: row.tracking_code,
        edited_after_sending: row.edited_after_sending,
        cancel_rejected: row.cancel_rejected,
        cancelled_in_wms_unrequested: row.cancelled_in_wms_unrequested,
        anomalies: kinds_of_bits(row.anomalies),
        revision: row.revision,
    }
}

/// `EXPLAIN (ANALYZE, BUFFERS)` of the statements a page runs (for the benchmark and tuning).
pub async fn explain_list(pool: &PgPool, query: &ListQuery) -> sqlx::Result<Vec<String>> {
    let driver = query.driver(&probe(pool, query).await?);
    let mut statements = vec![Statement::first(driver)];
    if driver == Driver::BroadPrefix {
        statements.push(Statement::BroadPrefixByKnn);
    }
    let mut lines = vec![format!("driver {driver:?}")];
    for statement in statements {
        let plan: Vec<(String,)> = bind_list!(sqlx::query_as(statement.explain_sql()), query)
            .fetch_all(pool)
            .await?;
        lines.push(format!("{statement:?}:"));
        lines.extend(plan.into_iter().map(|(line,)| line));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::list::PROBE_CAP;

    const ALL: [Statement; 8] = [
        Statement::ByDate,
        Statement::ByShippingStatus,
        Statement::ByWmsStatus,
        Statement::ByStatusCode,
        Statement::ByOrderNoRange,
        Statement::BroadPrefixByDate,
        Statement::BroadPrefixByKnn,
        Statement::ByAnomalies,
    ];

    #[test]
    fn every_statement_uses_every_parameter_and_the_list_order() {
        for statement in ALL.into_iter().map(Statement::sql).chain([PROBE]) {
            for n in 1..=12 {
                assert!(
                    statement.contains(&format!("${n}")),
                    "${n} missing in {statement}"
                );
            }
        }
        for statement in ALL {
            assert!(
                statement
                    .sql()
                    .ends_with("ORDER BY k.order_date DESC, k.order_no DESC"),
                "{statement:?}"
            );
            assert!(statement.explain_sql().ends_with(statement.sql()));
        }
    }

    #[test]
    fn a_filter_driving_the_query_is_an_equality_not_an_array() {
        let sql = Statement::ByShippingStatus.sql();
        assert!(sql.contains("o.shipping_status = f.v"));
        assert!(!sql.contains("o.shipping_status = ANY"));
        assert!(
            Statement::ByWmsStatus
                .sql()
                .contains("o.wms_status_id = f.v")
        );
        assert!(
            !Statement::ByWmsStatus
                .sql()
                .contains("o.wms_status_id = ANY")
        );
        assert!(
            Statement::ByStatusCode
                .sql()
                .contains("o.status_code = f.v")
        );
        assert!(
            !Statement::ByStatusCode
                .sql()
                .contains("o.status_code = ANY")
        );
    }

    #[test]
    fn limits_in_sql_match_the_constants() {
        assert!(PROBE.contains(&format!("LIMIT {}", PROBE_CAP + 1)));
        assert!(
            Statement::BroadPrefixByDate
                .sql()
                .contains(&format!("LIMIT {BROAD_PREFIX_BUDGET})"))
        );
    }
}
