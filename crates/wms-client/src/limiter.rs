//! Per-access-key rate limiting: the [`RateLimiter`] trait and its implementations.
//!
//! The WMS limits each access key to 1 request/s with a burst of 60. Every call of a
//! [`WmsClient`](crate::WmsClient) first waits on its limiter for the key's bucket. Buckets are
//! named by [`BucketId`], a SHA-256 fingerprint of the key, never the key itself.
//!
//! - [`InProcessRateLimiter`]: a keyed `governor` limiter, for one process.
//! - [`PgRateLimiter`]: a GCRA bucket per key in a PostgreSQL table, one atomic
//!   `INSERT … ON CONFLICT DO UPDATE … RETURNING` per call, so every service and replica that
//!   calls the WMS with the same key draws from one budget. Call [`ensure_schema`] once.
//! - [`Unlimited`]: no limit (one-off tools, tests).

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use governor::{DefaultKeyedRateLimiter, Quota};
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tokio::time::Instant;

use crate::config::{BucketSalt, RateLimitConfig};

/// The name of a rate-limit bucket: hex HMAC-SHA256 of the access key keyed with the bucket
/// salt (`wms.bucket_salt`), or, without a salt (development), hex SHA-256 of a fixed prefix
/// and the key. Safe to store and log; it does not reveal the key, and with a salt it cannot
/// confirm a guessed key either.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BucketId(String);

impl BucketId {
    /// The bucket of an access key, under `salt` (empty: unsalted).
    pub fn for_access_key(access_key: &SecretString, salt: &BucketSalt) -> Self {
        let digest = if salt.expose().is_empty() {
            let mut hasher = Sha256::new();
            hasher.update(b"wmslink-wms-rate-limit:v1:");
            hasher.update(access_key.expose_secret().as_bytes());
            hasher.finalize().to_vec()
        } else {
            // HMAC takes a key of any length.
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(salt.expose().as_bytes())
                .unwrap_or_else(|_| unreachable!());
            mac.update(b"wmslink-wms-rate-limit:v2:");
            mac.update(access_key.expose_secret().as_bytes());
            mac.finalize().into_bytes().to_vec()
        };
        let mut hex = String::with_capacity(64);
        for byte in digest.iter() {
            hex.push_str(&format!("{byte:02x}"));
        }
        Self(hex)
    }

    /// A bucket with an explicit name (for tests and for callers with their own scheme).
    pub fn from_name(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    /// The full name (64 hex digits for a key's bucket).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 characters, enough to tell buckets apart in logs.
    pub fn short(&self) -> &str {
        self.0.get(..12).unwrap_or(&self.0)
    }
}

impl fmt::Debug for BucketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BucketId({})", self.short())
    }
}

impl fmt::Display for BucketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The limiter could not be consulted.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LimiterError(pub String);

/// A budget of requests per bucket that callers wait on.
///
/// Object safe: clients hold an `Arc<dyn RateLimiter>`.
pub trait RateLimiter: Send + Sync + fmt::Debug {
    /// Wait until one request may be sent for `bucket`, and take its token.
    fn acquire<'a>(&'a self, bucket: &'a BucketId) -> BoxFuture<'a, Result<(), LimiterError>>;

    /// The WMS answered 429 with `Retry-After`: let no request of `bucket` through for
    /// `retry_after`, and restart its budget from empty afterwards.
    fn defer<'a>(
        &'a self,
        bucket: &'a BucketId,
        retry_after: Duration,
    ) -> BoxFuture<'a, Result<(), LimiterError>>;
}

/// No limit at all.
#[derive(Clone, Copy, Debug, Default)]
pub struct Unlimited;

impl RateLimiter for Unlimited {
    fn acquire<'a>(&'a self, _bucket: &'a BucketId) -> BoxFuture<'a, Result<(), LimiterError>> {
        Box::pin(async { Ok(()) })
    }

    fn defer<'a>(
        &'a self,
        _bucket: &'a BucketId,
        _retry_after: Duration,
    ) -> BoxFuture<'a, Result<(), LimiterError>> {
        Box::pin(async { Ok(()) })
    }
}

fn quota(config: &RateLimitConfig) -> Result<Quota, LimiterError> {
    let interval = config.interval().map_err(LimiterError)?;
    let burst = NonZeroU32::new(config.effective_burst())
        .ok_or_else(|| LimiterError("burst must be at least 1".to_owned()))?;
    Quota::with_period(interval)
        .map(|q| q.allow_burst(burst))
        .ok_or_else(|| LimiterError("rate limit interval must not be zero".to_owned()))
}

/// An in-process limiter: one `governor` GCRA bucket per [`BucketId`].
pub struct InProcessRateLimiter {
    limiter: DefaultKeyedRateLimiter<BucketId>,
    deferred: Mutex<HashMap<BucketId, Instant>>,
    config: RateLimitConfig,
}

impl fmt::Debug for InProcessRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcessRateLimiter")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl InProcessRateLimiter {
    /// A limiter with the given budget per bucket.
    pub fn new(config: RateLimitConfig) -> Result<Self, LimiterError> {
        Ok(Self {
            limiter: DefaultKeyedRateLimiter::keyed(quota(&config)?),
            deferred: Mutex::new(HashMap::new()),
            config,
        })
    }

    fn deferred_until(&self, bucket: &BucketId) -> Option<Instant> {
        let map = self.deferred.lock().unwrap_or_else(|e| e.into_inner());
        map.get(bucket).copied().filter(|t| *t > Instant::now())
    }
}

impl RateLimiter for InProcessRateLimiter {
    fn acquire<'a>(&'a self, bucket: &'a BucketId) -> BoxFuture<'a, Result<(), LimiterError>> {
        Box::pin(async move {
            while let Some(until) = self.deferred_until(bucket) {
                tokio::time::sleep_until(until).await;
            }
            self.limiter.until_key_ready(bucket).await;
            Ok(())
        })
    }

    fn defer<'a>(
        &'a self,
        bucket: &'a BucketId,
        retry_after: Duration,
    ) -> BoxFuture<'a, Result<(), LimiterError>> {
        Box::pin(async move {
            let until = Instant::now() + retry_after;
            let mut map = self.deferred.lock().unwrap_or_else(|e| e.into_inner());
            let entry = map.entry(bucket.clone()).or_insert(until);
            if *entry < until {
                *entry = until;
            }
            Ok(())
        })
    }
}

/// The table the PostgreSQL limiter keeps its buckets in.
pub const RATE_LIMIT_TABLE: &str = "wms_rate_limit_buckets";

/// Create the PostgreSQL limiter's table if it does not exist. Safe to call concurrently
/// from several services (serialised with an advisory lock) and at every start.
pub async fn ensure_schema(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('wmslink.wms_rate_limit_buckets'))")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS wms_rate_limit_buckets (
            bucket      text PRIMARY KEY,
            tat         timestamptz NOT NULL,
            updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
        )",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// A limiter whose buckets live in PostgreSQL, shared by every process using the same
/// database and the same [`RateLimitConfig`].
///
/// Each bucket is one row holding the GCRA *theoretical arrival time* (`tat`). Acquiring is a
/// single atomic statement that reserves the next slot (`tat = max(tat, now) + interval`) and
/// returns how long the caller must wait for it (`tat - now - burst × interval`, if positive);
/// the caller then sleeps that long. The database clock is the only clock, so replicas with
/// skewed clocks still share one budget. A caller cancelled while waiting only wastes its
/// slot (the budget errs on the safe side).
#[derive(Clone)]
pub struct PgRateLimiter {
    pool: PgPool,
    interval: Duration,
    burst: u32,
    config: RateLimitConfig,
}

impl fmt::Debug for PgRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgRateLimiter")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl PgRateLimiter {
    /// A limiter over `pool` (whose database has the table, see [`ensure_schema`]).
    pub fn new(pool: PgPool, config: RateLimitConfig) -> Result<Self, LimiterError> {
        let interval = config.interval().map_err(LimiterError)?;
        Ok(Self {
            pool,
            interval,
            burst: config.effective_burst(),
            config,
        })
    }

    /// [`ensure_schema`] then [`new`](Self::new).
    pub async fn connect(pool: PgPool, config: RateLimitConfig) -> Result<Self, LimiterError> {
        ensure_schema(&pool)
            .await
            .map_err(|e| LimiterError(format!("creating the rate-limit table: {e}")))?;
        Self::new(pool, config)
    }

    /// Reserve the next slot of `bucket` and return how long to wait for it.
    pub async fn reserve(&self, bucket: &BucketId) -> Result<Duration, LimiterError> {
        let interval = self.interval.as_secs_f64();
        let tolerance = interval * f64::from(self.burst);
        let wait: f64 = sqlx::query_scalar(
            "INSERT INTO wms_rate_limit_buckets AS b (bucket, tat, updated_at)
             VALUES ($1, clock_timestamp() + make_interval(secs => $2), clock_timestamp())
             ON CONFLICT (bucket) DO UPDATE
                SET tat = GREATEST(b.tat, clock_timestamp()) + make_interval(secs => $2),
                    updated_at = clock_timestamp()
             RETURNING (EXTRACT(EPOCH FROM (b.tat - clock_timestamp())))::float8 - $3",
        )
        .bind(bucket.as_str())
        .bind(interval)
        .bind(tolerance)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| LimiterError(format!("rate-limit bucket update failed: {e}")))?;
        Ok(Duration::try_from_secs_f64(wait.max(0.0)).unwrap_or(Duration::ZERO))
    }
}

impl RateLimiter for PgRateLimiter {
    fn acquire<'a>(&'a self, bucket: &'a BucketId) -> BoxFuture<'a, Result<(), LimiterError>> {
        Box::pin(async move {
            let wait = self.reserve(bucket).await?;
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            Ok(())
        })
    }

    fn defer<'a>(
        &'a self,
        bucket: &'a BucketId,
        retry_after: Duration,
    ) -> BoxFuture<'a, Result<(), LimiterError>> {
        Box::pin(async move {
            // Nothing passes before now + retry_after, and the bucket is empty then.
            let push =
                retry_after.as_secs_f64() + self.interval.as_secs_f64() * f64::from(self.burst);
            sqlx::query(
                "INSERT INTO wms_rate_limit_buckets AS b (bucket, tat, updated_at)
                 VALUES ($1, clock_timestamp() + make_interval(secs => $2), clock_timestamp())
                 ON CONFLICT (bucket) DO UPDATE
                    SET tat = GREATEST(b.tat, EXCLUDED.tat), updated_at = clock_timestamp()",
            )
            .bind(bucket.as_str())
            .bind(push)
            .execute(&self.pool)
            .await
            .map_err(|e| LimiterError(format!("rate-limit bucket update failed: {e}")))?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bucket_id_is_a_fingerprint() {
        let none = BucketSalt::default();
        let key = SecretString::from("super-secret-key-123");
        let b = BucketId::for_access_key(&key, &none);
        assert_eq!(b.as_str().len(), 64);
        assert!(!b.as_str().contains("super-secret"));
        assert_eq!(
            b,
            BucketId::for_access_key(&SecretString::from("super-secret-key-123"), &none)
        );
        assert_ne!(
            b,
            BucketId::for_access_key(&SecretString::from("other"), &none)
        );
        assert_eq!(format!("{b:?}"), format!("BucketId({})", &b.as_str()[..12]));
    }

    /// With a salt, the bucket id of a key cannot be recomputed without the salt: it is not
    /// the unsalted id, and another salt gives another id; one salt gives one id (the
    /// services share buckets through it).
    #[test]
    fn a_salted_bucket_id_needs_the_salt() {
        let key = SecretString::from("super-secret-key-123");
        let salt = |s: &str| BucketSalt(SecretString::from(s.to_owned()));
        let unsalted = BucketId::for_access_key(&key, &BucketSalt::default());
        let salted = BucketId::for_access_key(&key, &salt("pepper-one"));
        assert_eq!(salted.as_str().len(), 64);
        assert_ne!(salted, unsalted);
        assert_ne!(salted, BucketId::for_access_key(&key, &salt("pepper-two")));
        assert_eq!(salted, BucketId::for_access_key(&key, &salt("pepper-one")));
        assert_ne!(
            salted,
            BucketId::for_access_key(&SecretString::from("other"), &salt("pepper-one"))
        );
        assert_eq!(
            format!("{:?}", salt("pepper-one")),
            "BucketSalt([redacted])"
        );
    }

    #[tokio::test]
    async fn in_process_limiter_enforces_burst_then_rate() {
        let limiter = InProcessRateLimiter::new(RateLimitConfig {
            requests_per_second: 20.0,
            burst: 5,
            reserve: 0,
        })
        .unwrap();
        let bucket = BucketId::from_name("b");
        let start = std::time::Instant::now();
        for _ in 0..5 {
            limiter.acquire(&bucket).await.unwrap();
        }
        assert!(
            start.elapsed() < Duration::from_millis(40),
            "burst must pass at once"
        );
        for _ in 0..4 {
            limiter.acquire(&bucket).await.unwrap();
        }
        // 4 more tokens at 20/s need at least ~200 ms.
        assert!(
            start.elapsed() >= Duration::from_millis(190),
            "{:?}",
            start.elapsed()
        );
        // Another bucket is independent.
        let t = std::time::Instant::now();
        limiter.acquire(&BucketId::from_name("c")).await.unwrap();
        assert!(t.elapsed() < Duration::from_millis(40));
    }

    #[tokio::test]
    async fn in_process_defer_blocks_the_bucket() {
        let limiter = InProcessRateLimiter::new(RateLimitConfig::new(1000.0, 10)).unwrap();
        let bucket = BucketId::from_name("b");
        limiter
            .defer(&bucket, Duration::from_millis(150))
            .await
            .unwrap();
        let t = std::time::Instant::now();
        limiter.acquire(&bucket).await.unwrap();
        assert!(t.elapsed() >= Duration::from_millis(140));
    }

    #[test]
    fn bad_configs_are_refused() {
        assert!(InProcessRateLimiter::new(RateLimitConfig::new(0.0, 5)).is_err());
        assert!(InProcessRateLimiter::new(RateLimitConfig::new(f64::NAN, 5)).is_err());
        assert_eq!(RateLimitConfig::new(1.0, 60).effective_burst(), 59);
        assert_eq!(RateLimitConfig::new(1.0, 1).effective_burst(), 1);
    }
}
