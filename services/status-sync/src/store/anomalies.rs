//! `anomaly_candidates` (suspects waiting out the grace time) and `anomalies` (R5, each recorded
//! once; see `crate::anomalies`).

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;
use wmslink_platform::outbox::{self, OutboxMessage};
use wmslink_proto::sync::v1::AnomalyKind;

use super::Store;
use crate::anomalies::{AnomalyRecord, Candidate, kind_from_key, kind_key};

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
            kind: kind_from_key(&r.kind),
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

impl Store {
    /// Records suspects of one WMS answer (a suspect already waiting keeps its first sight).
    pub(super) async fn insert_candidates(
        conn: &mut PgConnection,
        shop_id: &str,
        now: DateTime<Utc>,
        suspects: &[Candidate],
    ) -> Result<(), sqlx::Error> {
        for suspect in suspects {
            sqlx::query(
                "INSERT INTO anomaly_candidates
                    (shop_id, kind, order_no, wms_order_id, wms_status_id, wms_status_name, detail, first_seen_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            )
            .bind(shop_id)
            .bind(kind_key(suspect.kind))
            .bind(&suspect.order_no)
            .bind(suspect.wms_order_id)
            .bind(suspect.wms_status_id)
            .bind(&suspect.wms_status_name)
            .bind(&suspect.detail)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
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
                    kind: kind_from_key(&r.kind),
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
        .bind(kind_key(suspect.kind))
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
            .bind(kind_key(record.kind))
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
        .bind(kind.map(kind_key))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(AnomalyRecord::from).collect())
    }
}
