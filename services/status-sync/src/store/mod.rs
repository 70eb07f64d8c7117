//! Every query of status-sync's own database, one file per table (the `Store` methods are
//! spread over them); housekeeping across tables is here.

mod anomalies;
mod shops;
mod sync_cursors;
mod sync_leases;
mod sync_runs;
mod watch_list;

use std::time::Duration;

use sqlx::PgPool;

pub use anomalies::Suspect;
pub use sync_cursors::Cursor;
pub use sync_runs::RunRecord;
pub use watch_list::ShipmentChange;

fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
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

    /// Drops old runs, suspects nobody settled and shipments long out of every sync period (the
    /// platform's tables are pruned by the runtime's pruner). Returns the rows deleted.
    pub async fn prune(&self, keep_runs: Duration) -> Result<u64, sqlx::Error> {
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
        Ok(deleted)
    }
}
