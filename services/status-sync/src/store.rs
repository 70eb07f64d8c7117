//! Every query of status-sync's own database.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection, PgPool};
use uuid::Uuid;
use wmslink_platform::outbox::{self, OutboxMessage};
use wmslink_proto::sync::v1::AnomalyKind;

use crate::events::AnomalyRecord;
use crate::model::{
    Candidate, Observation, Period, WatchRow, anomaly_kind_from_key, anomaly_kind_key,
};

fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

#[derive(FromRow)]
struct WatchRecord {
    order_no: String,
    wms_order_id: i64,
    order_date: DateTime<Utc>,
    shipping_status: String,
    sequence: i64,
    shipped_at: Option<DateTime<Utc>>,
    obs_wms_order_id: Option<i64>,
    obs_status_id: Option<i32>,
    obs_status_name: Option<String>,
    obs_cancelled: Option<bool>,
    obs_shipped: Option<bool>,
    obs_shipping_status_id: Option<i32>,
    obs_shipping_status_name: Option<String>,
    obs_carrier_final: Option<bool>,
    obs_tracking_code: Option<String>,
    obs_shipping_date: Option<String>,
    obs_wms_updated_at: Option<DateTime<Utc>>,
    wms_seen_at: Option<DateTime<Utc>>,
}

impl From<WatchRecord> for WatchRow {
    fn from(r: WatchRecord) -> Self {
        let last = match (r.obs_status_id, r.obs_wms_updated_at) {
            (Some(status_id), Some(wms_updated_at)) => Some(Observation {
                wms_order_id: r.obs_wms_order_id.unwrap_or(0),
                status_id,
                status_name: r.obs_status_name.unwrap_or_default(),
                cancelled: r.obs_cancelled.unwrap_or(false),
                shipped: r.obs_shipped.unwrap_or(false),
                shipping_status_id: r.obs_shipping_status_id.unwrap_or(0),
                shipping_status_name: r.obs_shipping_status_name.unwrap_or_default(),
                carrier_final: r.obs_carrier_final.unwrap_or(false),
                tracking_code: r.obs_tracking_code.unwrap_or_default(),
                shipping_date: r.obs_shipping_date.unwrap_or_default(),
                wms_updated_at,
            }),
            _ => None,
        };
        WatchRow {
            order_no: r.order_no,
            wms_order_id: r.wms_order_id,
            order_date: r.order_date,
            shipping_status: r.shipping_status,
            sequence: r.sequence,
            shipped_at: r.shipped_at,
            last,
            seen_in_wms_at: r.wms_seen_at,
        }
    }
}

const WATCH_COLUMNS_BY_ORDER_NOS: &str =
    "SELECT order_no, wms_order_id, order_date, shipping_status, sequence, shipped_at,
        obs_wms_order_id, obs_status_id, obs_status_name, obs_cancelled, obs_shipped,
        obs_shipping_status_id, obs_shipping_status_name, obs_carrier_final, obs_tracking_code,
        obs_shipping_date, obs_wms_updated_at, wms_seen_at
   FROM watch_list WHERE shop_id = $1 AND order_no = ANY($2)";

/// The shipment as the dispatcher reported it.
#[derive(Debug, Clone)]
pub struct ShipmentChange<'a> {
    pub shop_id: &'a str,
    pub order_no: &'a str,
    pub wms_order_id: i64,
    pub order_date: DateTime<Utc>,
    pub shipping_status: &'a str,
    pub sequence: i64,
    pub occurred_at: DateTime<Utc>,
}

/// Where a shop's passes stand.
#[derive(Debug, Clone, Default, FromRow)]
pub struct Cursor {
    pub updated_since: Option<DateTime<Utc>>,
    pub passes_since_full: i32,
    pub last_full_at: Option<DateTime<Utc>>,
    pub next_due_at: Option<DateTime<Utc>>,
    pub failures: i32,
}

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

#[derive(FromRow)]
struct CandidateRecord {
    kind: String,
    order_no: String,
    wms_order_id: i64,
    wms_status_id: i32,
    wms_status_name: String,
    detail: String,
    first_seen_at: DateTime<Utc>,
}

#[derive(FromRow)]
struct AnomalyRow {
    anomaly_id: Uuid,
    shop_id: String,
    kind: String,
    order_no: String,
    wms_order_id: i64,
    wms_status_id: i32,
    wms_status_name: String,
    detail: String,
    detected_at: DateTime<Utc>,
    run_id: Uuid,
}

impl From<AnomalyRow> for AnomalyRecord {
    fn from(r: AnomalyRow) -> Self {
        AnomalyRecord {
            anomaly_id: r.anomaly_id,
            shop_id: r.shop_id,
            kind: anomaly_kind_from_key(&r.kind),
            order_no: r.order_no,
            wms_order_id: r.wms_order_id,
            wms_status_id: r.wms_status_id,
            wms_status_name: r.wms_status_name,
            detail: r.detail,
            detected_at: r.detected_at,
            run_id: r.run_id,
        }
    }
}

/// A suspect to re-check, with the moment it was first seen.
#[derive(Debug, Clone)]
pub struct Suspect {
    pub candidate: Candidate,
    pub first_seen_at: DateTime<Utc>,
}

#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    // ---- watch list (consumer side) ----

    /// Makes the shop known (idempotent).
    pub async fn upsert_shop(conn: &mut PgConnection, shop_id: &str) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO shops (shop_id) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(shop_id)
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Applies a shipment update when its sequence is newer than the stored one. Returns
    /// whether it was applied.
    pub async fn apply_shipment(
        conn: &mut PgConnection,
        change: &ShipmentChange<'_>,
    ) -> Result<bool, sqlx::Error> {
        let applied = sqlx::query(
            "INSERT INTO watch_list AS w
                (shop_id, order_no, wms_order_id, order_date, shipping_status, sequence, shipped_at)
             VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $5 = 'SHIPPED' THEN $7::timestamptz END)
             ON CONFLICT (shop_id, order_no) DO UPDATE SET
                wms_order_id = CASE WHEN EXCLUDED.wms_order_id <> 0
                                    THEN EXCLUDED.wms_order_id ELSE w.wms_order_id END,
                order_date = EXCLUDED.order_date,
                shipping_status = EXCLUDED.shipping_status,
                sequence = EXCLUDED.sequence,
                shipped_at = CASE WHEN EXCLUDED.shipping_status = 'SHIPPED'
                                  THEN COALESCE(w.shipped_at, EXCLUDED.shipped_at)
                                  ELSE w.shipped_at END,
                updated_at = now()
             WHERE w.sequence < EXCLUDED.sequence",
        )
        .bind(change.shop_id)
        .bind(change.order_no)
        .bind(change.wms_order_id)
        .bind(change.order_date)
        .bind(change.shipping_status)
        .bind(change.sequence)
        .bind(change.occurred_at)
        .execute(conn)
        .await?;
        Ok(applied.rows_affected() == 1)
    }

    // ---- shops, cursors, leases ----

    /// A shop whose settings changed: known, and due at once.
    pub async fn shop_changed(&self, shop_id: &str) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        Self::upsert_shop(&mut tx, shop_id).await?;
        sqlx::query(
            "INSERT INTO sync_cursors (shop_id, next_due_at) VALUES ($1, now())
             ON CONFLICT (shop_id) DO UPDATE SET next_due_at = LEAST(sync_cursors.next_due_at, now())",
        )
        .bind(shop_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    /// Makes the shops known (enabled shops listed by the settings service); returns how many
    /// were new. A new shop has no cursor, so it is due at once; a known one keeps its
    /// schedule.
    pub async fn add_shops(&self, shop_ids: &[String]) -> Result<u64, sqlx::Error> {
        if shop_ids.is_empty() {
            return Ok(0);
        }
        let done = sqlx::query(
            "INSERT INTO shops (shop_id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING",
        )
        .bind(shop_ids)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Known shops whose next pass is due.
    pub async fn due_shops(&self) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT s.shop_id FROM shops s LEFT JOIN sync_cursors c USING (shop_id)
              WHERE c.next_due_at IS NULL OR c.next_due_at <= now()
              ORDER BY c.next_due_at NULLS FIRST",
        )
        .fetch_all(&self.pool)
        .await
    }

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

    /// Takes or renews the shop's lease for `holder`. Returns whether it is held.
    pub async fn try_lease(
        &self,
        shop_id: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, sqlx::Error> {
        let held: Option<String> = sqlx::query_scalar(
            "INSERT INTO sync_leases AS l (shop_id, holder, expires_at)
             VALUES ($1, $2, now() + make_interval(secs => $3))
             ON CONFLICT (shop_id) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
             WHERE l.expires_at < now() OR l.holder = EXCLUDED.holder
             RETURNING holder",
        )
        .bind(shop_id)
        .bind(holder)
        .bind(seconds(ttl))
        .fetch_optional(&self.pool)
        .await?;
        Ok(held.is_some())
    }

    pub async fn release_lease(&self, shop_id: &str, holder: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM sync_leases WHERE shop_id = $1 AND holder = $2")
            .bind(shop_id)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ---- runs ----

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

    // ---- the pass ----

    /// The stored rows (watched or not) of these order numbers.
    pub async fn rows_for(
        &self,
        shop_id: &str,
        order_nos: &[String],
    ) -> Result<HashMap<String, WatchRow>, sqlx::Error> {
        let records: Vec<WatchRecord> = sqlx::query_as(WATCH_COLUMNS_BY_ORDER_NOS)
            .bind(shop_id)
            .bind(order_nos)
            .fetch_all(&self.pool)
            .await?;
        Ok(records
            .into_iter()
            .map(|r| (r.order_no.clone(), WatchRow::from(r)))
            .collect())
    }

    /// Watched rows whose order date is in `period`, by order number. Mirrors
    /// `WatchRow::is_watched`.
    pub async fn watched_in_period(
        &self,
        shop_id: &str,
        period: &Period,
        now: DateTime<Utc>,
        shipped_watch: Duration,
    ) -> Result<Vec<WatchRow>, sqlx::Error> {
        let records: Vec<WatchRecord> = sqlx::query_as(
            "SELECT order_no, wms_order_id, order_date, shipping_status, sequence, shipped_at,
                    obs_wms_order_id, obs_status_id, obs_status_name, obs_cancelled, obs_shipped,
                    obs_shipping_status_id, obs_shipping_status_name, obs_carrier_final,
                    obs_tracking_code, obs_shipping_date, obs_wms_updated_at, wms_seen_at
               FROM watch_list
              WHERE shop_id = $1 AND order_date >= $2 AND ($3::timestamptz IS NULL OR order_date < $3)
                AND (shipping_status IN ('SENT', 'CANCEL_REQUESTED', 'CANCEL_REJECTED')
                     OR (shipping_status = 'SHIPPED'
                         AND NOT COALESCE(obs_carrier_final, false)
                         AND (shipped_at IS NULL OR shipped_at > $4::timestamptz - make_interval(secs => $5))))
              ORDER BY order_no",
        )
        .bind(shop_id)
        .bind(period.from)
        .bind(period.to)
        .bind(now)
        .bind(seconds(shipped_watch))
        .fetch_all(&self.pool)
        .await?;
        Ok(records.into_iter().map(WatchRow::from).collect())
    }

    /// Stores what one WMS answer showed, in one transaction: the new observations with their
    /// events (outbox), the time each order was seen, and the suspects.
    pub async fn save_review(
        &self,
        shop_id: &str,
        now: DateTime<Utc>,
        changed: &[(&str, &Observation, OutboxMessage)],
        unchanged: &[(&str, DateTime<Utc>)],
        suspects: &[Candidate],
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        for (order_no, observation, message) in changed {
            sqlx::query(
                "UPDATE watch_list SET obs_wms_order_id = $3, obs_status_id = $4, obs_status_name = $5,
                        obs_cancelled = $6, obs_shipped = $7, obs_shipping_status_id = $8,
                        obs_tracking_code = $9, obs_shipping_date = $10, obs_wms_updated_at = $11,
                        observed_at = $12, wms_seen_at = $12, obs_shipping_status_name = $13,
                        obs_carrier_final = $14
                  WHERE shop_id = $1 AND order_no = $2",
            )
            .bind(shop_id)
            .bind(*order_no)
            .bind(observation.wms_order_id)
            .bind(observation.status_id)
            .bind(&observation.status_name)
            .bind(observation.cancelled)
            .bind(observation.shipped)
            .bind(observation.shipping_status_id)
            .bind(&observation.tracking_code)
            .bind(&observation.shipping_date)
            .bind(observation.wms_updated_at)
            .bind(now)
            .bind(&observation.shipping_status_name)
            .bind(observation.carrier_final)
            .execute(&mut *tx)
            .await?;
            outbox::enqueue(&mut tx, message).await?;
        }
        if !unchanged.is_empty() {
            let order_nos: Vec<&str> = unchanged.iter().map(|(no, _)| *no).collect();
            let updated: Vec<DateTime<Utc>> = unchanged.iter().map(|(_, at)| *at).collect();
            sqlx::query(
                "UPDATE watch_list w SET obs_wms_updated_at = u.at, wms_seen_at = $4
                   FROM UNNEST($2::text[], $3::timestamptz[]) AS u(order_no, at)
                  WHERE w.shop_id = $1 AND w.order_no = u.order_no",
            )
            .bind(shop_id)
            .bind(&order_nos)
            .bind(&updated)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        for suspect in suspects {
            sqlx::query(
                "INSERT INTO anomaly_candidates
                    (shop_id, kind, order_no, wms_order_id, wms_status_id, wms_status_name, detail, first_seen_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            )
            .bind(shop_id)
            .bind(anomaly_kind_key(suspect.kind))
            .bind(&suspect.order_no)
            .bind(suspect.wms_order_id)
            .bind(suspect.wms_status_id)
            .bind(&suspect.wms_status_name)
            .bind(&suspect.detail)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// Suspects of the shop first seen at or before `seen_before`.
    pub async fn ripe_suspects(
        &self,
        shop_id: &str,
        seen_before: DateTime<Utc>,
    ) -> Result<Vec<Suspect>, sqlx::Error> {
        let records: Vec<CandidateRecord> = sqlx::query_as(
            "SELECT kind, order_no, wms_order_id, wms_status_id, wms_status_name, detail, first_seen_at
               FROM anomaly_candidates WHERE shop_id = $1 AND first_seen_at <= $2
              ORDER BY first_seen_at, order_no",
        )
        .bind(shop_id)
        .bind(seen_before)
        .fetch_all(&self.pool)
        .await?;
        Ok(records
            .into_iter()
            .map(|r| Suspect {
                candidate: Candidate {
                    kind: anomaly_kind_from_key(&r.kind),
                    order_no: r.order_no,
                    wms_order_id: r.wms_order_id,
                    wms_status_id: r.wms_status_id,
                    wms_status_name: r.wms_status_name,
                    detail: r.detail,
                },
                first_seen_at: r.first_seen_at,
            })
            .collect())
    }

    /// Settles one suspect: drops it and, when `anomaly` is given and was not recorded
    /// before, records it and enqueues its event (built by `message`). Returns whether a new
    /// anomaly was recorded.
    pub async fn settle_suspect(
        &self,
        shop_id: &str,
        suspect: &Candidate,
        anomaly: Option<(&AnomalyRecord, OutboxMessage)>,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM anomaly_candidates
              WHERE shop_id = $1 AND kind = $2 AND order_no = $3 AND wms_order_id = $4",
        )
        .bind(shop_id)
        .bind(anomaly_kind_key(suspect.kind))
        .bind(&suspect.order_no)
        .bind(suspect.wms_order_id)
        .execute(&mut *tx)
        .await?;
        let mut recorded = false;
        if let Some((record, message)) = anomaly {
            let inserted = sqlx::query(
                "INSERT INTO anomalies (anomaly_id, shop_id, kind, order_no, wms_order_id, wms_status_id,
                                        wms_status_name, detail, detected_at, run_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
            )
            .bind(record.anomaly_id)
            .bind(shop_id)
            .bind(anomaly_kind_key(record.kind))
            .bind(&record.order_no)
            .bind(record.wms_order_id)
            .bind(record.wms_status_id)
            .bind(&record.wms_status_name)
            .bind(&record.detail)
            .bind(record.detected_at)
            .bind(record.run_id)
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() == 1 {
                outbox::enqueue(&mut tx, &message).await?;
                recorded = true;
            }
        }
        tx.commit().await?;
        Ok(recorded)
    }

    pub async fn list_anomalies(
        &self,
        shop_id: &str,
        kind: Option<AnomalyKind>,
        limit: i64,
    ) -> Result<Vec<AnomalyRecord>, sqlx::Error> {
        let rows: Vec<AnomalyRow> = sqlx::query_as(
            "SELECT anomaly_id, shop_id, kind, order_no, wms_order_id, wms_status_id, wms_status_name,
                    detail, detected_at, run_id
               FROM anomalies WHERE shop_id = $1 AND ($2::text IS NULL OR kind = $2)
              ORDER BY detected_at DESC, anomaly_id DESC LIMIT $3",
        )
        .bind(shop_id)
        .bind(kind.map(anomaly_kind_key))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(AnomalyRecord::from).collect())
    }

    // ---- housekeeping ----

    /// Drops old runs, suspects nobody settled, shipments long out of every sync period, and
    /// this consumer's old processed-message ids. Returns the rows deleted.
    pub async fn prune(
        &self,
        keep_runs: Duration,
        consumer: &str,
        keep_processed: Duration,
    ) -> Result<u64, sqlx::Error> {
        let mut deleted = 0;
        deleted += sqlx::query(
            "DELETE FROM sync_runs WHERE started_at < now() - make_interval(secs => $1)",
        )
        .bind(seconds(keep_runs))
        .execute(&self.pool)
        .await?
        .rows_affected();
        deleted += sqlx::query(
            "DELETE FROM anomaly_candidates WHERE first_seen_at < now() - interval '7 days'",
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        // The sync period is at most 365 days; a shipment dated two years before can never be
        // asked about again, nor is it expected to change in the WMS any more.
        deleted += sqlx::query(
            "DELETE FROM watch_list WHERE order_date < now() - interval '800 days'
                AND updated_at < now() - interval '30 days'",
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        deleted += sqlx::query(
            "DELETE FROM processed_messages
              WHERE consumer = $1 AND processed_at < now() - make_interval(secs => $2)",
        )
        .bind(consumer)
        .bind(seconds(keep_processed))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(deleted)
    }
}
