//! `sync_leases`: one runner per shop across replicas.

use std::time::Duration;

use super::{Store, seconds};

impl Store {
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
}
