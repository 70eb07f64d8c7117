//! `shops`: the shops status-sync considers (from shipments, settings changes and the settings
//! service's list of enabled shops), and when each is due (`sync_cursors.next_due_at`).

use sqlx::PgConnection;

use super::Store;

impl Store {
    /// Makes the shop known (idempotent).
    pub async fn upsert_shop(conn: &mut PgConnection, shop_id: &str) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO shops (shop_id) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(shop_id)
            .execute(conn)
            .await?;
        Ok(())
    }

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
}
