//! Deletes what earlier test runs left on the local services: JetStream streams of test
//! prefixes (`T<12 hex>_…`) and test databases (`wmslink_test_<unix seconds>_…`), once they
//! are older than `--older-than-minutes` (default 120). Run by `scripts/test` before the
//! suites, so the shared NATS server and PostgreSQL never fill up, while test runs going on at
//! the same time on this machine keep their databases and streams. With `--run <id>` it drops
//! the databases of that run only, whatever their age (`scripts/test` does so when it ends).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt as _;

fn is_test_stream(name: &str) -> bool {
    let Some((prefix, _)) = name.split_once('_') else {
        return false;
    };
    prefix.len() == 13
        && prefix.starts_with('T')
        && prefix[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// The creation time (unix seconds) of a test database, from its name; `Some(0)` for a test
/// database named before times were part of the name (old enough by definition); `None` for
/// anything that is not a test database.
fn test_database_created(name: &str) -> Option<u64> {
    let rest = name.strip_prefix(wmslink_testkit::TEST_DATABASE_PREFIX)?;
    match rest.split_once('_') {
        Some((seconds, _)) if seconds.bytes().all(|b| b.is_ascii_digit()) => seconds.parse().ok(),
        _ => Some(0),
    }
}

/// Drops old test databases and test streams from the local PostgreSQL and NATS.
#[derive(clap::Parser)]
struct Args {
    /// Only what was created at least this many minutes ago.
    #[arg(long, default_value_t = 120)]
    older_than_minutes: u64,
    /// Instead: only the databases of this test run (`WMSLINK_TEST_RUN`), whatever their age.
    #[arg(long)]
    run: Option<String>,
}

/// Whether `name` is a database of test run `run` (`wmslink_test_<seconds>_<run>_<8 hex>`).
fn of_run(name: &str, run: &str) -> bool {
    name.strip_prefix(wmslink_testkit::TEST_DATABASE_PREFIX)
        .and_then(|rest| rest.split_once('_'))
        .and_then(|(_, rest)| rest.split_once('_'))
        .is_some_and(|(id, _)| id == run)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = <Args as clap::Parser>::parse();
    if let Some(run) = &args.run {
        anyhow::ensure!(
            wmslink_testkit::is_run_id(run),
            "--run takes 1 to 16 lowercase hex digits"
        );
        let dropped = drop_databases(|name| of_run(name, run)).await?;
        println!("test cleanup: {dropped} databases of run {run} dropped");
        return Ok(());
    }
    let age = Duration::from_secs(args.older_than_minutes.saturating_mul(60));
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
    let cutoff = now.saturating_sub(age).as_secs();

    let client = async_nats::connect(wmslink_testkit::nats_url()).await?;
    let js = async_nats::jetstream::new(client);
    let mut streams = js.streams();
    let mut doomed = Vec::new();
    while let Some(info) = streams.next().await {
        let info = info?;
        let created = u64::try_from(info.created.unix_timestamp()).unwrap_or(0);
        if is_test_stream(&info.config.name) && created < cutoff {
            doomed.push(info.config.name);
        }
    }
    for name in &doomed {
        js.delete_stream(name).await?;
    }

    let dropped =
        drop_databases(|name| test_database_created(name).is_some_and(|created| created < cutoff))
            .await?;
    println!(
        "test cleanup: {} streams, {dropped} databases older than {} min dropped",
        doomed.len(),
        age.as_secs() / 60
    );
    Ok(())
}

/// Drops every test database whose name `doomed` accepts; returns how many.
async fn drop_databases(doomed: impl Fn(&str) -> bool) -> anyhow::Result<usize> {
    let admin = sqlx::PgPool::connect(&format!(
        "{}/postgres",
        wmslink_testkit::postgres_server_url()
    ))
    .await?;
    let databases: Vec<String> = sqlx::query_scalar(
        "SELECT datname FROM pg_database WHERE datname LIKE 'wmslink\\_test\\_%'",
    )
    .fetch_all(&admin)
    .await?;
    let mut dropped = 0;
    for database in databases.iter().filter(|name| doomed(name)) {
        let statement = format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)");
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&admin)
            .await?;
        dropped += 1;
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::{is_test_stream, of_run, test_database_created};

    #[test]
    fn only_test_prefixes_match() {
        assert!(is_test_stream("T0123456789ab_ORDERS"));
        assert!(!is_test_stream("ORDERS"));
        assert!(!is_test_stream("STAGING_ORDERS"));
        assert!(!is_test_stream("T0123456789az_ORDERS"));
    }

    #[test]
    fn database_age_comes_from_its_name() {
        assert_eq!(
            test_database_created("wmslink_test_1764480000_0a1b2c3d"),
            Some(1_764_480_000)
        );
        assert_eq!(test_database_created("wmslink_test_0a1b2c3d4e5f"), Some(0));
        assert_eq!(test_database_created("wmslink_rate_limit"), None);
        assert_eq!(test_database_created("postgres"), None);
        assert_eq!(
            test_database_created("wmslink_test_1764480000_a1b2c3_0a1b2c3d"),
            Some(1_764_480_000)
        );
    }

    #[test]
    fn a_run_owns_only_the_databases_named_with_its_id() {
        assert!(of_run("wmslink_test_1764480000_a1b2c3_0a1b2c3d", "a1b2c3"));
        assert!(!of_run("wmslink_test_1764480000_ffffff_0a1b2c3d", "a1b2c3"));
        assert!(!of_run("wmslink_test_1764480000_0a1b2c3d", "0a1b2c3d"));
        assert!(!of_run("wmslink_rate_limit", "a1b2c3"));
    }
}
