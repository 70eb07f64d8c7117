//! One sender per shop at a time across replicas: a session advisory lock
//! (`pg_try_advisory_lock(7262101, hashtext(shop_id))`) held on a dedicated pooled connection
//! for the whole pass. While it is held no registration of the shop can be in flight elsewhere,
//! so every `SENDING` shipment the pass finds is in doubt and is searched, never re-sent.

use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};

/// Namespace of the per-shop advisory locks (`pg_try_advisory_lock(NS, hashtext(shop))`).
const SHOP_LOCK_NAMESPACE: i32 = 7_262_101;

/// The shop's sender lock: a session advisory lock on a dedicated pooled connection. Dropped
/// without [`release`](Self::release) (a cancelled pass), the connection is closed instead of
/// returned to the pool, which ends the session and so the lock.
pub struct ShopLock {
    conn: Option<PoolConnection<Postgres>>,
    shop_id: String,
}

impl ShopLock {
    pub async fn acquire(pool: &PgPool, shop_id: &str) -> Result<Option<Self>, sqlx::Error> {
        let mut conn = pool.acquire().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext($2))")
            .bind(SHOP_LOCK_NAMESPACE)
            .bind(shop_id)
            .fetch_one(&mut *conn)
            .await?;
        Ok(locked.then(|| Self {
            conn: Some(conn),
            shop_id: shop_id.to_owned(),
        }))
    }

    pub async fn release(mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1, hashtext($2))")
            .bind(SHOP_LOCK_NAMESPACE)
            .bind(&self.shop_id)
            .execute(&mut *conn)
            .await;
        if let Err(err) = unlocked {
            tracing::warn!(shop = %self.shop_id, error = %err, "cannot release the shop lock; closing its connection");
            drop(conn.detach());
        }
    }
}

impl Drop for ShopLock {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            drop(conn.detach());
        }
    }
}
