//! `watch_list`: every shipment the dispatcher told status-sync about, with the last WMS state
//! seen (watched or not: the ones not watched still count as "sent by wmslink").

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection};
use wmslink_platform::outbox::{self, OutboxMessage};

use super::{Store, seconds};
use crate::anomalies::Candidate;
use crate::model::{Observation, Period, WatchRow};

#[derive(FromRow)]
struct WatchRecord {
    order_no: String,
    wms_order_id: i64,
    order_date: DateTime<Utc>,
    shipping_status: String,
    cancelled_unrequested: bool,
    registered_outside: bool,
    possibly_in_wms: bool,
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
    traceparent: Option<String>,
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
            cancelled_unrequested: r.cancelled_unrequested,
            registered_outside: r.registered_outside,
            possibly_in_wms: r.possibly_in_wms,
            sequence: r.sequence,
            shipped_at: r.shipped_at,
            last,
            seen_in_wms_at: r.wms_seen_at,
            traceparent: r.traceparent,
        }
    }
}

const WATCH_COLUMNS_BY_ORDER_NOS: &str =
    "SELECT order_no, wms_order_id, order_date, shipping_status, cancelled_unrequested, registered_outside, possibly_in_wms, sequence, shipped_at,
        obs_wms_order_id, obs_status_id, obs_status_name, obs_cancelled, obs_shipped,
        obs_shipping_status_id, obs_shipping_status_name, obs_carrier_final, obs_tracking_code,
        obs_shipping_date, obs_wms_updated_at, wms_seen_at, traceparent
   FROM watch_list WHERE shop_id = $1 AND order_no = ANY($2)";

/// The shipment as the dispatcher reported it.
#[derive(Debug, Clone)]
pub struct ShipmentChange<'a> {
    pub shop_id: &'a str,
    pub order_no: &'a str,
    pub wms_order_id: i64,
    pub order_date: DateTime<Utc>,
    pub shipping_status: &'a str,
    pub cancelled_unrequested: bool,
    pub registered_outside: bool,
    pub possibly_in_wms: bool,
    pub wms_status_id: i32,
    pub sequence: i64,
    pub occurred_at: DateTime<Utc>,
    /// The W3C trace context the update came with (the order's trace), if any.
    pub traceparent: Option<&'a str>,
}

impl Store {
    /// Applies a shipment update when its sequence is newer than the stored one. Returns
    /// whether it was applied.
    pub async fn apply_shipment(
        conn: &mut PgConnection,
        change: &ShipmentChange<'_>,
    ) -> Result<bool, sqlx::Error> {
        let applied = sqlx::query(
            "INSERT INTO watch_list AS w
                (shop_id, order_no, wms_order_id, order_date, shipping_status, sequence, shipped_at,
                 cancelled_unrequested, reported_wms_status_id, registered_outside, possibly_in_wms,
                 traceparent)
             VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $5 = 'SHIPPED' THEN $7::timestamptz END, $8,
                     $9, $10, $11, $12)
             ON CONFLICT (shop_id, order_no) DO UPDATE SET
                wms_order_id = CASE WHEN EXCLUDED.wms_order_id <> 0
                                    THEN EXCLUDED.wms_order_id ELSE w.wms_order_id END,
                order_date = EXCLUDED.order_date,
                shipping_status = EXCLUDED.shipping_status,
                cancelled_unrequested = EXCLUDED.cancelled_unrequested,
                registered_outside = EXCLUDED.registered_outside,
                possibly_in_wms = EXCLUDED.possibly_in_wms,
                reported_wms_status_id = EXCLUDED.reported_wms_status_id,
                sequence = EXCLUDED.sequence,
                shipped_at = CASE WHEN EXCLUDED.shipping_status = 'SHIPPED'
                                  THEN COALESCE(w.shipped_at, EXCLUDED.shipped_at)
                                  ELSE w.shipped_at END,
                traceparent = COALESCE(EXCLUDED.traceparent, w.traceparent),
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
        .bind(change.cancelled_unrequested)
        .bind(change.wms_status_id)
        .bind(change.registered_outside)
        .bind(change.possibly_in_wms)
        .bind(change.traceparent)
        .execute(conn)
        .await?;
        Ok(applied.rows_affected() == 1)
    }

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
            "SELECT order_no, wms_order_id, order_date, shipping_status, cancelled_unrequested, registered_outside, possibly_in_wms,
                    sequence, shipped_at, obs_wms_order_id, obs_status_id, obs_status_name, obs_cancelled, obs_shipped,
                    obs_shipping_status_id, obs_shipping_status_name, obs_carrier_final,
                    obs_tracking_code, obs_shipping_date, obs_wms_updated_at, wms_seen_at,
                    traceparent
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

    /// Rows whose last observation (published at least `published_before`) the dispatcher's
    /// last shipment update does not reflect: another WMS status, or shipped / cancelled in the
    /// WMS while the dispatcher says otherwise. Only the WMS order the dispatcher registered.
    pub async fn not_reflected(
        &self,
        shop_id: &str,
        published_before: DateTime<Utc>,
    ) -> Result<Vec<WatchRow>, sqlx::Error> {
        let records: Vec<WatchRecord> = sqlx::query_as(
            "SELECT order_no, wms_order_id, order_date, shipping_status, cancelled_unrequested, registered_outside, possibly_in_wms,
                    sequence, shipped_at, obs_wms_order_id, obs_status_id, obs_status_name,
                    obs_cancelled, obs_shipped, obs_shipping_status_id, obs_shipping_status_name,
                    obs_carrier_final, obs_tracking_code, obs_shipping_date, obs_wms_updated_at,
                    wms_seen_at, traceparent
               FROM watch_list
              WHERE shop_id = $1 AND obs_status_id IS NOT NULL AND obs_wms_updated_at IS NOT NULL
                AND reported_wms_status_id IS NOT NULL AND observed_at < $2
                AND (wms_order_id = 0 OR obs_wms_order_id = wms_order_id)
                AND (reported_wms_status_id <> obs_status_id
                     OR (obs_shipped AND shipping_status <> 'SHIPPED')
                     OR (obs_cancelled AND shipping_status <> 'CANCELLED'))
              ORDER BY order_no",
        )
        .bind(shop_id)
        .bind(published_before)
        .fetch_all(&self.pool)
        .await?;
        Ok(records.into_iter().map(WatchRow::from).collect())
    }

    /// Publishes observations again (through the outbox) and notes when.
    pub async fn republish(
        &self,
        shop_id: &str,
        now: DateTime<Utc>,
        messages: &[(&str, OutboxMessage)],
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        for (order_no, message) in messages {
            sqlx::query(
                "UPDATE watch_list SET observed_at = $3 WHERE shop_id = $1 AND order_no = $2",
            )
            .bind(shop_id)
            .bind(*order_no)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            outbox::enqueue(&mut tx, message).await?;
        }
        tx.commit().await
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
        Store::insert_candidates(&mut tx, shop_id, now, suspects).await?;
        tx.commit().await
    }
}
