//! `sync_runs`: every pass, with its counts and outcome.

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use uuid::Uuid;

use super::Store;

/// A sync run as stored.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct RunRecord {
    pub run_id: Uuid,
    pub shop_id: String,
    pub trigger: String,
    pub pass: String,
    pub outcome: String,
    pub period_from: DateTime<Utc>,
    pub period_to: Option<DateTime<Utc>>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub asked: i32,
    pub changed: i32,
    pub anomalies: i32,
    pub wms_calls: i32,
    pub errors: i32,
    pub last_error: String,
}

impl Store {
    /// Runs left `running` by a crashed or stopped replica (the caller holds the lease, so no
    /// run of the shop is really running).
    pub async fn close_interrupted_runs(&self, shop_id: &str) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query(
            "UPDATE sync_runs SET outcome = 'failed', finished_at = now(),
                    last_error = CASE WHEN last_error = '' THEN 'interrupted' ELSE last_error END
              WHERE shop_id = $1 AND outcome = 'running'",
        )
        .bind(shop_id)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    pub async fn insert_run(&self, run: &RunRecord) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO sync_runs (run_id, shop_id, trigger, pass, outcome, period_from, period_to, started_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(run.run_id)
        .bind(&run.shop_id)
        .bind(&run.trigger)
        .bind(&run.pass)
        .bind(&run.outcome)
        .bind(run.period_from)
        .bind(run.period_to)
        .bind(run.started_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn finish_run(&self, run: &RunRecord) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE sync_runs SET outcome = $2, finished_at = $3, asked = $4, changed = $5,
                    anomalies = $6, wms_calls = $7, errors = $8, last_error = $9
              WHERE run_id = $1",
        )
        .bind(run.run_id)
        .bind(&run.outcome)
        .bind(run.finished_at)
        .bind(run.asked)
        .bind(run.changed)
        .bind(run.anomalies)
        .bind(run.wms_calls)
        .bind(run.errors)
        .bind(&run.last_error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn list_runs(
        &self,
        shop_id: &str,
        limit: i64,
    ) -> Result<Vec<RunRecord>, sqlx::Error> {
        sqlx::query_as(
            "SELECT run_id, shop_id, trigger, pass, outcome, period_from, period_to, started_at,
                    finished_at, asked, changed, anomalies, wms_calls, errors, last_error
               FROM sync_runs WHERE shop_id = $1 ORDER BY started_at DESC, run_id DESC LIMIT $2",
        )
        .bind(shop_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }
}
