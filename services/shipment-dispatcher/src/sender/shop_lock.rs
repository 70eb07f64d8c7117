//! One sender per shop at a time across replicas: a session advisory lock
//! (`pg_try_advisory_lock(7262101, hashtext(shop_id))`) held for the whole pass. While it is
//! held no registration of the shop can be in flight elsewhere, so every `SENDING` shipment
//! the pass finds is in doubt and is searched, never re-sent.
//!
//! Every shop lock of the process lives on **one** connection of its own ([`ShopLocks`]),
//! outside the pool: hundreds of passes at once would otherwise pin hundreds of pooled
//! connections for the length of their WMS calls. A session may hold many advisory locks;
//! they count per key, and passes of one shop are serialised within the process (the shop's
//! state mutex), so a shop is locked by at most one pass here, except briefly while a
//! cancelled pass's release is still on its way (a count per shop keeps that balanced).

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection as _, PgConnection, PgPool};
use tokio::sync::Mutex;

/// Namespace of the per-shop advisory locks (`pg_try_advisory_lock(NS, hashtext(shop))`).
const SHOP_LOCK_NAMESPACE: i32 = 7_262_101;

/// The lock session and what this process holds on it.
#[derive(Default)]
struct Session {
    conn: Option<PgConnection>,
    /// Shop → passes of this process holding it; the session holds each shop's advisory
    /// lock once.
    held: HashMap<String, u32>,
}

/// This process's shop locks, on one dedicated session.
#[derive(Clone)]
pub struct ShopLocks {
    options: Arc<PgConnectOptions>,
    session: Arc<Mutex<Session>>,
}

impl ShopLocks {
    /// Locks on a session of the pool's database (opened when first needed).
    pub fn new(pool: &PgPool) -> Self {
        Self {
            options: Arc::new((*pool.connect_options()).clone()),
            session: Arc::new(Mutex::new(Session::default())),
        }
    }

    /// The shop's lock, or `None` when another replica holds it.
    pub async fn acquire(&self, shop_id: &str) -> Result<Option<ShopLock>, sqlx::Error> {
        let mut session = self.session.lock().await;
        if let Some(count) = session.held.get_mut(shop_id) {
            // Only while a cancelled pass's release is on its way (see the module docs).
            *count += 1;
            return Ok(Some(ShopLock::new(self, shop_id)));
        }
        let conn = self.connected(&mut session).await?;
        let locked = try_lock(conn, shop_id).await;
        let locked = match locked {
            Ok(locked) => locked,
            Err(err) => {
                // The session may be gone, and every lock on it: the next call opens another.
                lost(&mut session, &err);
                return Err(err);
            }
        };
        if !locked {
            return Ok(None);
        }
        session.held.insert(shop_id.to_owned(), 1);
        Ok(Some(ShopLock::new(self, shop_id)))
    }

    /// Shops whose lock this process holds now (for tests and diagnostics).
    pub async fn held(&self) -> usize {
        self.session.lock().await.held.len()
    }

    async fn unlock(&self, shop_id: &str) {
        let mut session = self.session.lock().await;
        match session.held.get_mut(shop_id) {
            // Still held by another pass of this process: the server-side lock stays.
            Some(count) if *count > 1 => {
                *count -= 1;
                return;
            }
            Some(_) => {
                session.held.remove(shop_id);
            }
            None => return,
        }
        let Some(conn) = session.conn.as_mut() else {
            return;
        };
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1, hashtext($2))")
            .bind(SHOP_LOCK_NAMESPACE)
            .bind(shop_id)
            .execute(&mut *conn)
            .await;
        if let Err(err) = unlocked {
            tracing::warn!(shop = %shop_id, error = %err, "cannot release a shop lock; closing the lock session");
            lost(&mut session, &err);
        }
    }

    /// The session, opened again if it was lost. Locks held on a lost session are taken again
    /// on the new one, so passes still running keep their shop to themselves; one another
    /// replica took meanwhile is only logged (that pass's rows are fenced by their claims).
    async fn connected<'s>(
        &self,
        session: &'s mut Session,
    ) -> Result<&'s mut PgConnection, sqlx::Error> {
        if session.conn.is_none() {
            let mut conn = PgConnection::connect_with(&self.options).await?;
            for shop_id in session.held.keys() {
                if !try_lock(&mut conn, shop_id).await? {
                    tracing::error!(shop = %shop_id, "a shop lock lost with its session is held elsewhere now");
                }
            }
            session.conn = Some(conn);
        }
        session.conn.as_mut().ok_or(sqlx::Error::PoolClosed)
    }
}

async fn try_lock(conn: &mut PgConnection, shop_id: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext($2))")
        .bind(SHOP_LOCK_NAMESPACE)
        .bind(shop_id)
        .fetch_one(conn)
        .await
}

fn lost(session: &mut Session, err: &sqlx::Error) {
    tracing::warn!(error = %err, "the shop lock session failed; opening another");
    // Dropping the connection closes the session, which ends its locks server-side.
    session.conn = None;
}

/// A shop's sender lock. Dropped without [`release`](Self::release) (a cancelled pass), it is
/// released by a task of its own.
pub struct ShopLock {
    locks: Option<ShopLocks>,
    shop_id: String,
}

impl ShopLock {
    fn new(locks: &ShopLocks, shop_id: &str) -> Self {
        Self {
            locks: Some(locks.clone()),
            shop_id: shop_id.to_owned(),
        }
    }

    pub async fn release(mut self) {
        if let Some(locks) = self.locks.take() {
            locks.unlock(&self.shop_id).await;
        }
    }
}

impl Drop for ShopLock {
    fn drop(&mut self) {
        let Some(locks) = self.locks.take() else {
            return;
        };
        let shop_id = std::mem::take(&mut self.shop_id);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { locks.unlock(&shop_id).await });
        }
        // Without a runtime the process is ending, and its session with it.
    }
}
