//! Re-sealing after a master-key rotation: add the new key to the key file (as the active
//! one, keeping the old), run `wmslink-settings reseal`, then retire the old key. Every stored
//! access key is opened with the key it was sealed with and sealed again with the active one,
//! one shop per transaction. The access key itself does not change, so the connection check
//! and the settings version stay as they are.

use sqlx::PgPool;
use wmslink_platform::secrets::{KeyRing, Sealed, SecretsError};

/// Why re-sealing stopped.
#[derive(Debug, thiserror::Error)]
pub enum ResealError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("the access key of shop {shop} cannot be re-sealed: {source}")]
    Key { shop: String, source: SecretsError },
}

/// Re-seals every access key not sealed with `keys`' active key; returns how many.
pub async fn reseal_all(pool: &PgPool, keys: &KeyRing) -> Result<usize, ResealError> {
    let active = keys.active_key_id().to_owned();
    let shops: Vec<String> = sqlx::query_scalar(
        "SELECT shop_id FROM shop_settings WHERE access_key_id <> $1 ORDER BY shop_id",
    )
    .bind(&active)
    .fetch_all(pool)
    .await?;
    let mut resealed = 0;
    for shop in shops {
        let mut tx = pool.begin().await?;
        let row: Option<(String, Vec<u8>)> = sqlx::query_as(
            "SELECT access_key_id, access_key_sealed FROM shop_settings
             WHERE shop_id = $1 AND access_key_id <> $2 FOR UPDATE",
        )
        .bind(&shop)
        .bind(&active)
        .fetch_optional(&mut *tx)
        .await?;
        // Changed meanwhile (a new key was registered, sealed with the active key).
        let Some((key_id, blob)) = row else { continue };
        let failed = |source| ResealError::Key {
            shop: shop.clone(),
            source,
        };
        let key = keys
            .open(&Sealed { key_id, blob }, shop.as_bytes())
            .map_err(failed)?;
        let sealed = keys.seal(&key, shop.as_bytes()).map_err(failed)?;
        sqlx::query(
            // The fingerprint was keyed by the old master key: made again when next needed.
            "UPDATE shop_settings
                SET access_key_id = $2, access_key_sealed = $3, credentials_fingerprint = NULL
              WHERE shop_id = $1",
        )
        .bind(&shop)
        .bind(&sealed.key_id)
        .bind(&sealed.blob)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        resealed += 1;
    }
    Ok(resealed)
}
