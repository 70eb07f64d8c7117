//! The real settings service of a test, in-process on a database of its own: the shops, their
//! sealed access keys and their enable switches come from it, as in production.

use std::net::SocketAddr;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wmslink_platform::auth::{AuthConfig, TokenConfig, scopes};
use wmslink_platform::grpc::GrpcError;
use wmslink_platform::secrets::MasterKeyConfig;
use wmslink_settings::{Application, Config, StartupError};
use wmslink_testkit::{TestDb, TestNats};

use crate::grpc::{self, SettingsClient, port_zero, token};
use crate::service::RunningService;
use crate::wms::wms_test_config;

/// `settings.read` + `settings.write`: the operator who sets shops up.
pub const SETTINGS_ADMIN_TOKEN: &str = "test-settings-admin-token-0123456789";

/// How long a restart may wait for the address its predecessor listened on.
const REBIND_WITHIN: Duration = Duration::from_secs(20);

/// The admin's token ([`SETTINGS_ADMIN_TOKEN`]).
pub fn admin_token() -> TokenConfig {
    token(
        "admin",
        SETTINGS_ADMIN_TOKEN,
        &[scopes::SETTINGS_READ, scopes::SETTINGS_WRITE],
    )
}

/// The token of a service that reads shops' settings and their sealed access keys (the
/// dispatcher, status-sync): `settings.read` + `settings.credentials`.
pub fn reader_service_token(caller: &str, token_value: &str) -> TokenConfig {
    token(
        caller,
        token_value,
        &[scopes::SETTINGS_READ, scopes::SETTINGS_CREDENTIALS],
    )
}

/// The master keys the settings service seals access keys with and its readers open them
/// with: `key_line` as `KeyRing::generate` gives it.
pub fn master_keys(key_line: &str) -> MasterKeyConfig {
    MasterKeyConfig {
        master_keys: key_line.to_owned().into(),
        ..MasterKeyConfig::default()
    }
}

pub struct SettingsService {
    /// The service's own database.
    pub db: TestDb,
    /// As started, listening on the address it bound first: a restarted service is where
    /// its clients expect it.
    pub config: Config,
    running: Option<RunningService>,
}

impl SettingsService {
    /// The test configuration: the service's database, the test's NATS prefix, port 0,
    /// `master_keys` (a key line as `KeyRing::generate` gives), `tokens`, WMS calls to loopback,
    /// and the WMS rate-limit buckets in its own database (no machine-wide one).
    pub fn config(
        db: &TestDb,
        nats: &TestNats,
        master_keys: &str,
        tokens: Vec<TokenConfig>,
    ) -> Config {
        let mut config = Config {
            database: db.config(),
            nats: nats.config(),
            grpc: port_zero(),
            auth: AuthConfig { tokens },
            secrets: self::master_keys(master_keys),
            wms: wms_test_config(),
            ..Config::default()
        };
        config.rate_limit.database_url = String::new();
        config
    }

    /// Starts the service with the test configuration.
    pub async fn start(nats: &TestNats, master_keys: &str, tokens: Vec<TokenConfig>) -> Self {
        Self::start_with(nats, master_keys, tokens, |_| {}).await
    }

    /// Starts the service with the test configuration, changed by `configure`.
    pub async fn start_with(
        nats: &TestNats,
        master_keys: &str,
        tokens: Vec<TokenConfig>,
        configure: impl FnOnce(&mut Config),
    ) -> Self {
        let db = TestDb::create().await.expect("settings database");
        let mut config = Self::config(&db, nats, master_keys, tokens);
        configure(&mut config);
        let running = start(&config).await;
        config.grpc.listen_addr = running.addr.to_string();
        Self {
            db,
            config,
            running: Some(running),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.config
            .grpc
            .listen_addr
            .parse()
            .expect("the bound address")
    }

    /// A client presenting `token`, connecting on its first call.
    pub fn client(&self, token: &str) -> SettingsClient {
        grpc::settings_client(grpc::channel(self.addr()), token)
    }

    /// Stops the service gracefully and waits until it no longer listens: calls to it fail
    /// from then on.
    pub async fn stop(&mut self) {
        if let Some(mut running) = self.running.take() {
            running.stop().await;
        }
    }

    /// Starts a new service on the same database and address (after [`stop`](Self::stop)).
    pub async fn restart(&mut self) {
        assert!(self.running.is_none(), "stop the settings service first");
        let running = start(&self.config).await;
        assert_eq!(running.addr, self.addr());
        self.running = Some(running);
    }
}

/// Builds and runs the service; an address still taken (by a service that has just stopped on
/// it) is tried again for a while.
async fn start(config: &Config) -> RunningService {
    let deadline = tokio::time::Instant::now() + REBIND_WITHIN;
    let shutdown = CancellationToken::new();
    let app = loop {
        match Application::build(config.clone(), shutdown.clone()).await {
            Ok(app) => break app,
            Err(err @ StartupError::Grpc(GrpcError::Bind { .. }))
                if tokio::time::Instant::now() < deadline =>
            {
                tracing::debug!(error = %err, "settings service not started yet; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!(
                "settings service starts on {}: {err}",
                config.grpc.listen_addr
            ),
        }
    };
    let addr = app.grpc_addr();
    RunningService::spawn("settings service", addr, shutdown, app.run_until_stopped())
}
