//! Deletes what earlier test runs left on the local services: JetStream streams of test
//! prefixes (`T<12 hex>_…`) and test databases (`wmslink_test_…`). Run by `scripts/test`
//! before the suites, so the shared NATS server and PostgreSQL never fill up.

use futures::StreamExt as _;

fn is_test_stream(name: &str) -> bool {
    let Some((prefix, _)) = name.split_once('_') else {
        return false;
    };
    prefix.len() == 13
        && prefix.starts_with('T')
        && prefix[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let client = async_nats::connect(wmslink_testkit::nats_url()).await?;
    let js = async_nats::jetstream::new(client);
    let mut names = js.stream_names();
    let mut doomed = Vec::new();
    while let Some(name) = names.next().await {
        let name = name?;
        if is_test_stream(&name) {
            doomed.push(name);
        }
    }
    for name in &doomed {
        js.delete_stream(name).await?;
    }

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
    for database in &databases {
        let statement = format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)");
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&admin)
            .await?;
    }
    println!(
        "test cleanup: {} streams, {} databases dropped",
        doomed.len(),
        databases.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::is_test_stream;

    #[test]
    fn only_test_prefixes_match() {
        assert!(is_test_stream("T0123456789ab_ORDERS"));
        assert!(!is_test_stream("ORDERS"));
        assert!(!is_test_stream("STAGING_ORDERS"));
        assert!(!is_test_stream("T0123456789az_ORDERS"));
    }
}
