//! Where an order's time goes between the cart and the WMS: per-stage timings of every order of
//! a run, read after the run from the services' own tables (nothing is added to the hot paths)
//! and from what the bench and the simulator recorded:
//!
//! 1. cart message published → order stored by order-events (`orders.received_at`, the start
//!    of the transaction that stored it);
//! 2. → its `OrderStatusChanged` published by order-events' outbox relay (`outbox.published_at`);
//! 3. → the shipment stored by the dispatcher (`shipments.created_at`);
//! 4. → claimed for a register call (`shipment_history`, the first move to `SENDING`);
//! 5. → accepted by the simulator (its per-order first acceptance).
//!
//! Each stage's p50 and p99 over the run's orders; the stage with the largest share of the time
//! is where a missed target is lost. Clocks: every timestamp comes from this machine.

use std::collections::HashMap;

use anyhow::Context;
use sqlx::Connection;
use sqlx::postgres::PgConnection;

use crate::fleet::Fleet;

/// The stages, in order.
pub const STAGES: [&str; 5] = [
    "cart publish → stored by order-events",
    "stored → order event published (outbox relay)",
    "event published → shipment stored by the dispatcher",
    "shipment stored → claimed for a register call",
    "claimed → accepted by the WMS (limiter, call, simulator)",
];

/// Per-stage timings of one run, ms, each sorted.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    pub stages: Vec<Vec<f64>>,
    /// Orders with every timestamp found (the others are left out).
    pub orders: usize,
}

impl Profile {
    pub fn percentile(&self, stage: usize, q: f64) -> f64 {
        self.stages
            .get(stage)
            .map_or(f64::NAN, |v| crate::report::percentile(v, q))
    }

    /// The stage with the largest mean (where most of the end-to-end time goes), and its share.
    pub fn largest(&self) -> Option<(usize, f64)> {
        let means: Vec<f64> = self
            .stages
            .iter()
            .map(|v| v.iter().sum::<f64>() / v.len().max(1) as f64)
            .collect();
        let total: f64 = means.iter().map(|m| m.max(0.0)).sum();
        means
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, m)| (i, if total > 0.0 { m / total } else { f64::NAN }))
    }

    /// One line: each stage's p50/p99.
    pub fn describe(&self) -> String {
        let stages: Vec<String> = STAGES
            .iter()
            .enumerate()
            .map(|(i, name)| {
                format!(
                    "{name}: p50 {:.0} ms, p99 {:.0} ms",
                    self.percentile(i, 0.5),
                    self.percentile(i, 0.99)
                )
            })
            .collect();
        format!("{} orders; {}", self.orders, stages.join("; "))
    }
}

/// An order of a run: when the bench sent it and when the simulator first accepted it (unix ms).
#[derive(Debug, Clone)]
pub struct Sent {
    pub order_no: String,
    pub sent_ms: i64,
    pub accepted_ms: i64,
}

/// Reads the timestamps of the orders `{tag}-*` and builds the profile.
pub async fn measure(fleet: &Fleet, tag: &str, sent: &[Sent]) -> anyhow::Result<Profile> {
    let pattern = format!("{tag}-%");
    let mut orders = PgConnection::connect(&fleet.postgres.url("orders"))
        .await
        .context("orders database")?;
    let stored: HashMap<String, f64> = sqlx::query_as::<_, (String, f64)>(
        "SELECT order_no, EXTRACT(EPOCH FROM received_at)::float8 * 1000 FROM orders \
         WHERE order_no LIKE $1",
    )
    .bind(&pattern)
    .fetch_all(&mut orders)
    .await?
    .into_iter()
    .collect();
    let published: HashMap<String, f64> = sqlx::query_as::<_, (String, f64)>(
        "SELECT headers->>'Wmslink-Order-No', \
                EXTRACT(EPOCH FROM min(published_at))::float8 * 1000 \
         FROM outbox WHERE headers->>'Wmslink-Order-No' LIKE $1 \
           AND subject LIKE '%.status_changed' AND published_at IS NOT NULL \
         GROUP BY 1",
    )
    .bind(&pattern)
    .fetch_all(&mut orders)
    .await?
    .into_iter()
    .collect();
    let _ = orders.close().await;

    let mut dispatch = PgConnection::connect(&fleet.postgres.url("dispatch"))
        .await
        .context("dispatcher database")?;
    let shipped: HashMap<String, f64> = sqlx::query_as::<_, (String, f64)>(
        "SELECT order_no, EXTRACT(EPOCH FROM created_at)::float8 * 1000 FROM shipments \
         WHERE order_no LIKE $1",
    )
    .bind(&pattern)
    .fetch_all(&mut dispatch)
    .await?
    .into_iter()
    .collect();
    let claimed: HashMap<String, f64> = sqlx::query_as::<_, (String, f64)>(
        "SELECT order_no, EXTRACT(EPOCH FROM min(at))::float8 * 1000 FROM shipment_history \
         WHERE order_no LIKE $1 AND to_status = 'SENDING' GROUP BY order_no",
    )
    .bind(&pattern)
    .fetch_all(&mut dispatch)
    .await?
    .into_iter()
    .collect();
    let _ = dispatch.close().await;

    let mut profile = Profile {
        stages: vec![Vec::with_capacity(sent.len()); STAGES.len()],
        orders: 0,
    };
    for order in sent {
        let no = order.order_no.as_str();
        let (Some(stored), Some(published), Some(shipped), Some(claimed)) = (
            stored.get(no),
            published.get(no),
            shipped.get(no),
            claimed.get(no),
        ) else {
            continue;
        };
        let points = [
            order.sent_ms as f64,
            *stored,
            *published,
            *shipped,
            *claimed,
            order.accepted_ms as f64,
        ];
        for (stage, pair) in points.windows(2).enumerate() {
            // A transaction's start can precede the bench's own clock reading by a hair.
            profile.stages[stage].push((pair[1] - pair[0]).max(0.0));
        }
        profile.orders += 1;
    }
    for stage in &mut profile.stages {
        stage.sort_by(f64::total_cmp);
    }
    Ok(profile)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_stage_is_the_one_with_the_largest_mean() {
        let profile = Profile {
            stages: vec![
                vec![1.0, 1.0],
                vec![2.0, 2.0],
                vec![10.0, 30.0],
                vec![5.0, 5.0],
                vec![2.0, 2.0],
            ],
            orders: 2,
        };
        let (stage, share) = profile.largest().expect("a stage");
        assert_eq!(stage, 2);
        assert!((share - 20.0 / 30.0).abs() < 1e-9, "{share}");
        assert_eq!(profile.percentile(2, 0.99), 30.0);
    }
}
