//! PostgreSQL: a pool per service, its own database (created when missing), its migrations, and
//! the platform's own tables (outbox, processed message ids) that every service has.

use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DatabaseConfig {
    /// e.g. `postgres://postgres@127.0.0.1:5432/wmslink_settings`.
    pub url: String,
    pub max_connections: u32,
    /// Create the database named in `url` when it does not exist.
    pub create_if_missing: bool,
    /// PostgreSQL `sslmode` (`disable`, `allow`, `prefer`, `require`, `verify-ca`,
    /// `verify-full`); overrides the URL's. Empty: as the URL says (default `prefer`).
    /// Production: `verify-full` (TLS by rustls, the server's name and authority checked).
    pub ssl_mode: String,
    /// PEM file of the authority that signed the server's certificate (for `verify-ca` and
    /// `verify-full`), trusted besides the system's roots. Empty: the system's roots only.
    pub ssl_root_cert: String,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "postgres://postgres@127.0.0.1:5432/wmslink".into(),
            max_connections: 10,
            create_if_missing: true,
            ssl_mode: String::new(),
            ssl_root_cert: String::new(),
        }
    }
}

impl crate::config::Validate for DatabaseConfig {
    fn check(&self, section: &str, problems: &mut crate::config::InvalidConfig) {
        use crate::config::key;
        if let Err(err) = PgConnectOptions::from_str(&self.url) {
            problems.add(key(section, "url"), format!("not a PostgreSQL URL: {err}"));
        }
        problems.check(
            self.max_connections >= 1,
            key(section, "max_connections"),
            "must be at least 1",
        );
        problems.check(
            self.ssl_mode.is_empty() || PgSslMode::from_str(&self.ssl_mode).is_ok(),
            key(section, "ssl_mode"),
            "must be disable, allow, prefer, require, verify-ca or verify-full",
        );
    }
}

/// The connection options of `config`: its URL, then `ssl_mode` and `ssl_root_cert` when set.
pub fn connect_options(config: &DatabaseConfig) -> Result<PgConnectOptions, DbError> {
    let mut options =
        PgConnectOptions::from_str(&config.url).map_err(|err| DbError::Url(err.to_string()))?;
    if !config.ssl_mode.is_empty() {
        let mode = PgSslMode::from_str(&config.ssl_mode)
            .map_err(|err| DbError::Url(format!("ssl_mode: {err}")))?;
        options = options.ssl_mode(mode);
    }
    if !config.ssl_root_cert.is_empty() {
        options = options.ssl_root_cert(&config.ssl_root_cert);
    }
    Ok(options)
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database url: {0}")]
    Url(String),
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Opens the pool, creating the database first when configured to.
pub async fn connect(config: &DatabaseConfig) -> Result<PgPool, DbError> {
    let options = connect_options(config)?
        .log_statements(tracing::log::LevelFilter::Debug)
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500));
    if config.create_if_missing {
        create_database_if_missing(&options).await?;
    }
    Ok(PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await?)
}

async fn create_database_if_missing(options: &PgConnectOptions) -> Result<(), DbError> {
    let Some(name) = options.get_database().map(str::to_owned) else {
        return Ok(());
    };
    let mut admin = PgConnection::connect_with(&options.clone().database("postgres")).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        let statement = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        // Two replicas may race to create it; losing that race is fine.
        if let Err(err) = sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut admin)
            .await
        {
            // 42P04 duplicate_database; 23505 when the other CREATE commits while ours runs.
            let already = err
                .as_database_error()
                .and_then(|db| db.code())
                .is_some_and(|code| code == "42P04" || code == "23505");
            if !already {
                return Err(err.into());
            }
        }
    }
    admin.close().await?;
    Ok(())
}

/// Opens the pool and migrates it (the platform's tables, then `migrator`): what every service
/// waits for at start.
pub async fn connect_and_migrate(
    config: &DatabaseConfig,
    migrator: &Migrator,
) -> Result<PgPool, DbError> {
    let pool = connect(config).await?;
    migrate(&pool, migrator).await?;
    Ok(pool)
}

/// The platform's own tables, created idempotently before the service's migrations run.
const PLATFORM_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS outbox (
    id           BIGSERIAL PRIMARY KEY,
    msg_id       TEXT        NOT NULL UNIQUE,
    subject      TEXT        NOT NULL,
    payload      BYTEA       NOT NULL,
    headers      JSONB       NOT NULL DEFAULT '{}'::jsonb,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
-- Outbox rows NATS can never take (over max_payload), moved aside so the rest flows.
CREATE TABLE IF NOT EXISTS outbox_unpublishable (
    id           BIGINT      PRIMARY KEY,
    msg_id       TEXT        NOT NULL,
    subject      TEXT        NOT NULL,
    payload      BYTEA       NOT NULL,
    headers      JSONB       NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    reason       TEXT        NOT NULL,
    set_aside_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS processed_messages (
    consumer     TEXT        NOT NULL,
    msg_id       TEXT        NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, msg_id)
);
"#;

/// Runs the platform schema, then the service's migrations.
pub async fn migrate(pool: &PgPool, migrator: &Migrator) -> Result<(), DbError> {
    // Serialise concurrent start-ups of replicas on the DDL.
    let mut conn = pool.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock(7262001)")
        .execute(&mut *conn)
        .await?;
    let result = sqlx::raw_sql(PLATFORM_SCHEMA).execute(&mut *conn).await;
    sqlx::query("SELECT pg_advisory_unlock(7262001)")
        .execute(&mut *conn)
        .await?;
    result?;
    migrator.run(pool).await?;
    Ok(())
}

/// Whether `err` means the database is down or out of reach (no connection, pool exhausted,
/// the server shutting down or refusing connections), as opposed to an error it answered about
/// the work itself. Callers wait out the first kind without giving up on their input.
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        // SQLSTATE classes 08 (connection exception), 53 (insufficient resources) and 57P
        // (operator intervention: admin shutdown, crash shutdown, cannot connect now).
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || code.starts_with("53") || code.starts_with("57P")
        }),
        _ => false,
    }
}

/// Deletes the processed-message ids older than `keep` (of every consumer of the database).
/// `keep` must outlast the time a message can still be delivered (the stream's retention), or a
/// redelivery would be processed twice.
pub async fn prune_processed(pool: &PgPool, keep: Duration) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM processed_messages WHERE processed_at < now() - make_interval(secs => $1)",
    )
    .bind(keep.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Records `msg_id` as processed by `consumer` inside the caller's transaction. Returns `false`
/// when it was processed before, in which case the caller must do nothing and just ack.
pub async fn mark_processed(
    conn: &mut PgConnection,
    consumer: &str,
    msg_id: &str,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO processed_messages (consumer, msg_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(consumer)
    .bind(msg_id)
    .execute(conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Records every one of `msg_ids` as processed by `consumer` in one statement inside the
/// caller's transaction (a batch of messages). Returns the ids that were not processed before,
/// each once even when `msg_ids` repeats it; the caller must do nothing for the others.
pub async fn mark_processed_many(
    conn: &mut PgConnection,
    consumer: &str,
    msg_ids: &[&str],
) -> Result<std::collections::HashSet<String>, sqlx::Error> {
    if msg_ids.is_empty() {
        return Ok(std::collections::HashSet::new());
    }
    let fresh: Vec<String> = sqlx::query_scalar(
        "INSERT INTO processed_messages (consumer, msg_id)
         SELECT $1, id FROM unnest($2::text[]) AS ids(id)
         ON CONFLICT DO NOTHING RETURNING msg_id",
    )
    .bind(consumer)
    .bind(msg_ids)
    .fetch_all(conn)
    .await?;
    Ok(fresh.into_iter().collect())
}

/// Takes back [`mark_processed_many`] for `msg_ids` inside the same transaction: messages of a
/// batch that were refused, so that a redelivery is processed again, as if each had had a
/// transaction of its own that rolled back.
pub async fn unmark_processed(
    conn: &mut PgConnection,
    consumer: &str,
    msg_ids: &[&str],
) -> Result<(), sqlx::Error> {
    if msg_ids.is_empty() {
        return Ok(());
    }
    sqlx::query("DELETE FROM processed_messages WHERE consumer = $1 AND msg_id = ANY($2)")
        .bind(consumer)
        .bind(msg_ids)
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::Validate;

    #[test]
    fn ssl_mode_and_root_cert_reach_the_connect_options() {
        let url = |mode: &str| DatabaseConfig {
            url: format!("postgres://u@db.example:5432/x{mode}"),
            ..DatabaseConfig::default()
        };
        // As the URL says, prefer by default.
        assert!(matches!(
            connect_options(&url("")).unwrap().get_ssl_mode(),
            PgSslMode::Prefer
        ));
        assert!(matches!(
            connect_options(&url("?sslmode=require"))
                .unwrap()
                .get_ssl_mode(),
            PgSslMode::Require
        ));
        // The config overrides the URL.
        let config = DatabaseConfig {
            ssl_mode: "verify-full".into(),
            ssl_root_cert: "/etc/wmslink/pg-ca.pem".into(),
            ..url("?sslmode=disable")
        };
        assert!(matches!(
            connect_options(&config).unwrap().get_ssl_mode(),
            PgSslMode::VerifyFull
        ));
        let mut problems = crate::config::InvalidConfig::default();
        config.check("database", &mut problems);
        assert!(problems.problems().is_empty(), "{problems:?}");
        let bad = DatabaseConfig {
            ssl_mode: "sometimes".into(),
            ..DatabaseConfig::default()
        };
        let mut problems = crate::config::InvalidConfig::default();
        bad.check("database", &mut problems);
        assert!(
            format!("{problems:?}").contains("database.ssl_mode"),
            "{problems:?}"
        );
        assert!(connect_options(&bad).is_err());
    }
}
