//! `sync_cursors`: where each shop's passes stand (the last update_date search, full passes,
//! the next due time, failures in a row).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::{Store, seconds};

/// Where a shop's passes stand.
#[derive(Debug, Clone, Default, FromRow)]
pub struct Cursor {
    pub updated_since: Option<DateTime<Utc>>,
    pub passes_since_full: i32,
    pub last_full_at: Option<DateTime<Utc>>,
    pub next_due_at: Option<DateTime<Utc>>,
    pub failures: i32,
}

impl Store {
    pub async fn cursor(&self, shop_id: &str) -> Result<Cursor, sqlx::Error> {
        Ok(sqlx::query_as(
            "SELECT updated_since, passes_since_full, last_full_at, next_due_at, failures
               FROM sync_cursors WHERE shop_id = $1",
        )
        .bind(shop_id)
        .fetch_optional(&self.pool)
        .await?
        .unwrap_or_default())
    }

    /// Next pass of the shop not before `delay` from now (nothing to do, or a failure).
    pub async fn postpone(
        &self,
        shop_id: &str,
        delay: Duration,
        failed: bool,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO sync_cursors (shop_id, next_due_at, failures)
             VALUES ($1, now() + make_interval(secs => $2), CASE WHEN $3 THEN 1 ELSE 0 END)
             ON CONFLICT (shop_id) DO UPDATE SET
                next_due_at = EXCLUDED.next_due_at,
                failures = CASE WHEN $3 THEN sync_cursors.failures + 1 ELSE 0 END",
        )
        .bind(shop_id)
        .bind(seconds(delay))
        .bind(failed)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a successful pass. `searched_since_start`: the pass ran the update_date search
    /// (and started at `started_at`); `full`: it asked for every watched order.
    pub async fn pass_succeeded(
        &self,
        shop_id: &str,
        started_at: DateTime<Utc>,
        searched: bool,
        full: bool,
        next_due_in: Option<Duration>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO sync_cursors AS c
                (shop_id, updated_since, passes_since_full, last_full_at, next_due_at, failures, last_success_at)
             VALUES ($1, CASE WHEN $3 THEN $2::timestamptz END, CASE WHEN $4 THEN 0 ELSE 1 END,
                     CASE WHEN $4 THEN $2::timestamptz END,
                     COALESCE($2::timestamptz + make_interval(secs => $5), now()), 0, now())
             ON CONFLICT (shop_id) DO UPDATE SET
                updated_since = CASE WHEN $3 THEN $2::timestamptz ELSE c.updated_since END,
                passes_since_full = CASE WHEN $4 THEN 0
                                         WHEN $3 THEN c.passes_since_full + 1
                                         ELSE c.passes_since_full END,
                last_full_at = CASE WHEN $4 THEN $2::timestamptz ELSE c.last_full_at END,
                next_due_at = CASE WHEN $5::float8 IS NULL THEN c.next_due_at
                                   ELSE $2::timestamptz + make_interval(secs => $5) END,
                failures = CASE WHEN $5::float8 IS NULL THEN c.failures ELSE 0 END,
                last_success_at = now()",
        )
        .bind(shop_id)
        .bind(started_at)
        .bind(searched)
        .bind(full)
        .bind(next_due_in.map(seconds))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
