//! Test helpers: a fresh PostgreSQL database and unique NATS names per test, so tests run in
//! parallel against the real services and never see each other's data; and log capture.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use futures::StreamExt;
use sqlx::PgPool;
use wmslink_platform::db::DatabaseConfig;
use wmslink_platform::nats::{NatsConfig, StreamKind, Subjects};

mod proxy;
pub use proxy::{TcpProxy, host_port};

/// Server URL (without database) of the PostgreSQL the tests use.
pub fn postgres_server_url() -> String {
    std::env::var("WMSLINK_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

pub fn nats_url() -> String {
    std::env::var("WMSLINK_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// A short unique token, e.g. for a database, a prefix or a shop id.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}{}", &id[..12])
}

/// Prefix of every test database name.
pub const TEST_DATABASE_PREFIX: &str = "wmslink_test_";

/// Environment variable naming the current test run (set by `scripts/test`): databases made
/// under it carry it in their name, so the run drops exactly its own databases when it ends.
pub const TEST_RUN_ENV: &str = "WMSLINK_TEST_RUN";

/// A fresh test database name, `wmslink_test_<unix seconds>_[<run>_]<8 hex>`: the creation
/// time in the name lets `wmslink-test-cleanup` drop only what is old, never a database
/// another test run on this machine is using now; the run id lets a run drop its own.
pub fn test_database_name() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0);
    let id = uuid::Uuid::new_v4().simple().to_string();
    match std::env::var(TEST_RUN_ENV) {
        Ok(run) if is_run_id(&run) => format!("{TEST_DATABASE_PREFIX}{now}_{run}_{}", &id[..8]),
        _ => format!("{TEST_DATABASE_PREFIX}{now}_{}", &id[..8]),
    }
}

/// A run id is 1 to 16 lowercase hex digits (it becomes part of database names).
pub fn is_run_id(run: &str) -> bool {
    (1..=16).contains(&run.len()) && run.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A database of its own for one test. Left behind after the test (a service may still hold
/// it while the test ends); `scripts/test` drops its run's databases when the run ends, and
/// `wmslink-test-cleanup` those older than a few hours.
#[derive(Clone)]
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

impl TestDb {
    pub async fn create() -> anyhow::Result<Self> {
        wmslink_platform::install_crypto_provider();
        let name = test_database_name();
        let url = format!("{}/{name}", postgres_server_url());
        let pool = wmslink_platform::db::connect(&Self::config_for(&url)).await?;
        Ok(Self { name, url, pool })
    }

    fn config_for(url: &str) -> DatabaseConfig {
        DatabaseConfig {
            url: url.to_owned(),
            max_connections: 5,
            create_if_missing: true,
            ..DatabaseConfig::default()
        }
    }

    /// A config pointing at this database, for starting a service.
    pub fn config(&self) -> DatabaseConfig {
        Self::config_for(&self.url)
    }
}

/// NATS names of its own for one test: a unique subject and stream prefix.
pub struct TestNats {
    pub prefix: String,
    pub subjects: Subjects,
    pub client: async_nats::Client,
    pub js: async_nats::jetstream::Context,
}

impl TestNats {
    pub async fn create() -> anyhow::Result<Self> {
        let prefix = unique("t");
        let client = async_nats::connect(nats_url()).await?;
        let js = async_nats::jetstream::new(client.clone());
        Ok(Self {
            subjects: Subjects::new(&prefix)?,
            prefix,
            client,
            js,
        })
    }

    pub fn config(&self) -> NatsConfig {
        NatsConfig {
            url: nats_url(),
            prefix: self.prefix.clone(),
            stream_replicas: 1,
            ..NatsConfig::default()
        }
    }

    /// Publishes to JetStream as the services do (a message id when given, a content type) and
    /// waits until the stream stored it.
    pub async fn publish(
        &self,
        subject: String,
        payload: Vec<u8>,
        msg_id: Option<&str>,
        content_type: &str,
    ) {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Content-Type", content_type);
        if let Some(msg_id) = msg_id {
            headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id);
        }
        self.js
            .publish_with_headers(subject, headers, payload.into())
            .await
            .expect("publish")
            .await
            .expect("stored");
    }

    /// Every message stored so far on `subject` (wildcards allowed) of one of the test's
    /// streams, in stream order.
    pub async fn stored(
        &self,
        stream: StreamKind,
        subject: String,
    ) -> Vec<async_nats::jetstream::Message> {
        let stream = self
            .js
            .get_stream(self.subjects.stream_name(stream))
            .await
            .expect("stream exists");
        let consumer = stream
            .create_consumer(pull::Config {
                filter_subject: subject,
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::None,
                inactive_threshold: Duration::from_secs(30),
                ..Default::default()
            })
            .await
            .expect("consumer");
        let pending = consumer.cached_info().num_pending;
        if pending == 0 {
            return Vec::new();
        }
        let mut batch = consumer
            .fetch()
            .max_messages(usize::try_from(pending).unwrap_or(10_000))
            .expires(Duration::from_secs(2))
            .messages()
            .await
            .expect("fetch");
        let mut messages = Vec::new();
        while let Some(message) = batch.next().await {
            messages.push(message.expect("message"));
        }
        messages
    }
}

/// Polls `check` until it returns `Some`, or fails after `deadline`.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_every(Duration::from_millis(20), deadline, what, check).await
}

/// [`eventually`], polling every `every`: for checks that are costly to make (a whole order
/// list), so the polling does not load the system under test.
pub async fn eventually_every<T, F, Fut>(
    every: Duration,
    deadline: Duration,
    what: &str,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for: {what}");
        }
        tokio::time::sleep(every).await;
    }
}

/// Everything logged while installed. Install with [`LogCapture::install`] in a
/// `current_thread` test so every task logs into it.
#[derive(Clone, Default)]
pub struct LogCapture {
    buffer: Arc<Mutex<Vec<u8>>>,
}

pub struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut buffer) = self.0.lock() {
            buffer.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = CaptureWriter;

    fn make_writer(&'a self) -> Self::Writer {
        CaptureWriter(self.buffer.clone())
    }
}

impl LogCapture {
    /// Captures every event at TRACE and above, with span fields, for this thread.
    pub fn install() -> (Self, tracing::subscriber::DefaultGuard) {
        // With a single dispatcher in the process, tracing caches a call site first hit on
        // another test thread as "never enabled" and this capture would miss it. A second,
        // process-wide dispatcher kept alive forces per-event checks.
        static KEEP_INTEREST_DYNAMIC: std::sync::OnceLock<tracing::Dispatch> =
            std::sync::OnceLock::new();
        KEEP_INTEREST_DYNAMIC
            .get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
        let capture = Self::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(capture.clone())
            .with_ansi(false)
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        (capture, guard)
    }

    pub fn contents(&self) -> String {
        self.buffer
            .lock()
            .map(|buffer| String::from_utf8_lossy(&buffer).into_owned())
            .unwrap_or_default()
    }
}

/// A `nats-server` of the test's own (its own port and directory), for tests of the server's
/// configuration (accounts, TLS) that the shared server cannot change. Killed and its
/// directory removed when dropped.
pub struct PrivateNats {
    pub port: u16,
    /// Where the configuration, the files written with it and the JetStream store are.
    pub dir: std::path::PathBuf,
    child: std::process::Child,
}

impl PrivateNats {
    /// Starts `nats-server` with `config` (without `listen` and `jetstream`, which are added:
    /// loopback on a free port, a store in the directory), with `files` (name, contents)
    /// written next to it (for `include ./name` and TLS files) and `env` in its environment.
    /// Returns once the server accepts connections.
    pub async fn start(
        config: &str,
        files: &[(&str, &[u8])],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(unique("wmslink-nats-"));
        std::fs::create_dir_all(&dir)?;
        for (name, contents) in files {
            std::fs::write(dir.join(name), contents)?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let full = format!(
            "listen: \"127.0.0.1:{port}\"\njetstream {{ store_dir: \"{}\" }}\n{config}\n",
            dir.join("js").display()
        );
        let conf = dir.join("server.conf");
        std::fs::write(&conf, full)?;
        let log = std::fs::File::create(dir.join("server.log"))?;
        // Relative paths in the configuration (TLS files) are the directory's.
        let child = std::process::Command::new("nats-server")
            .current_dir(&dir)
            .arg("-c")
            .arg(&conf)
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let mut server = Self { port, dir, child };
        let started = tokio::time::Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Some(status) = server.child.try_wait()? {
                anyhow::bail!("nats-server exited ({status}):\n{}", server.log());
            }
            if started.elapsed() > Duration::from_secs(20) {
                anyhow::bail!("nats-server did not listen within 20 s:\n{}", server.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// What the server logged so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A certificate authority and a server certificate it signed, made for one test (rcgen), for
/// TLS between loopback servers and clients.
pub struct TestCerts {
    /// The authority's certificate (PEM): what a client trusts.
    pub ca_pem: String,
    /// The server's certificate (PEM), for `localhost` and `127.0.0.1`.
    pub server_cert_pem: String,
    /// The server's private key (PEM).
    pub server_key_pem: String,
    /// A client certificate the same authority signed (for mutual TLS), and its key (PEM).
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

impl TestCerts {
    pub fn generate() -> anyhow::Result<Self> {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "wmslink test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let mut server_params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        server_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        server_params.use_authority_key_identifier_extension = true;
        server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate()?;
        let server_cert = server_params.signed_by(&server_key, &issuer)?;

        let mut client_params = CertificateParams::new(Vec::<String>::new())?;
        client_params
            .distinguished_name
            .push(DnType::CommonName, "wmslink test client");
        client_params.use_authority_key_identifier_extension = true;
        client_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_key = KeyPair::generate()?;
        let client_cert = client_params.signed_by(&client_key, &issuer)?;
        Ok(Self {
            ca_pem: ca_cert.pem(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            client_cert_pem: client_cert.pem(),
            client_key_pem: client_key.serialize_pem(),
        })
    }

    /// Writes every PEM into `dir` (`ca.pem`, `server.pem`, `server-key.pem`, `client.pem`,
    /// `client-key.pem`, mode 0600 for the keys) and returns their paths in that order.
    pub fn write_to(&self, dir: &std::path::Path) -> anyhow::Result<CertFiles> {
        std::fs::create_dir_all(dir)?;
        let write = |name: &str, contents: &str| -> anyhow::Result<String> {
            let path = dir.join(name);
            std::fs::write(&path, contents)?;
            #[cfg(unix)]
            if name.ends_with("-key.pem") {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            }
            Ok(path.display().to_string())
        };
        Ok(CertFiles {
            ca: write("ca.pem", &self.ca_pem)?,
            server_cert: write("server.pem", &self.server_cert_pem)?,
            server_key: write("server-key.pem", &self.server_key_pem)?,
            client_cert: write("client.pem", &self.client_cert_pem)?,
            client_key: write("client-key.pem", &self.client_key_pem)?,
        })
    }
}

/// Where [`TestCerts::write_to`] put each PEM file.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub ca: String,
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: String,
    pub client_key: String,
}

/// A PostgreSQL cluster of the test's own (`initdb` + `pg_ctl` on a spare loopback port, trust
/// authentication, user `postgres`), for tests of the server's configuration (TLS) that the
/// shared server cannot change. Stopped and its directory removed when dropped.
pub struct PrivatePostgres {
    pub port: u16,
    dir: std::path::PathBuf,
}

impl PrivatePostgres {
    /// Starts a cluster with `settings` (`-c name=value` each) and `files` (name, contents)
    /// written into its data directory first (for `ssl_cert_file` and the like; owned by the
    /// server's user, mode 0600). Returns once it accepts connections.
    pub async fn start(settings: &[&str], files: &[(&str, &[u8])]) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(unique("wmslink-pg-"));
        let data = dir.join("data");
        std::fs::create_dir_all(&dir)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let server = Self { port, dir };
        let as_root = pg_running_as_root();
        if as_root {
            pg_run(
                std::process::Command::new("chown")
                    .arg("-R")
                    .arg("postgres:postgres")
                    .arg(&server.dir),
                "chown",
            )?;
        }
        pg_run(
            &mut pg_command(
                "initdb",
                &[
                    "-D".as_ref(),
                    data.as_os_str(),
                    "-A".as_ref(),
                    "trust".as_ref(),
                    "-U".as_ref(),
                    "postgres".as_ref(),
                    "--no-sync".as_ref(),
                    "-E".as_ref(),
                    "UTF8".as_ref(),
                ],
            ),
            "initdb",
        )?;
        for (name, contents) in files {
            let path = data.join(name);
            std::fs::write(&path, contents)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            }
            if as_root {
                pg_run(
                    std::process::Command::new("chown")
                        .arg("postgres:postgres")
                        .arg(&path),
                    "chown",
                )?;
            }
        }
        let mut options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            data.display()
        );
        for setting in settings {
            options.push_str(&format!(" -c {setting}"));
        }
        let log = server.dir.join("pg.log");
        pg_run(
            &mut pg_command(
                "pg_ctl",
                &[
                    "-D".as_ref(),
                    data.as_os_str(),
                    "-l".as_ref(),
                    log.as_os_str(),
                    "-o".as_ref(),
                    options.as_ref(),
                    "-w".as_ref(),
                    "-t".as_ref(),
                    "60".as_ref(),
                    "start".as_ref(),
                ],
            ),
            "pg_ctl start",
        )
        .map_err(|err| anyhow::anyhow!("{err}\n{}", server.log()))?;
        Ok(server)
    }

    /// `postgres://postgres@<host>:<port>/<database>`.
    pub fn url(&self, host: &str, database: &str) -> String {
        format!("postgres://postgres@{host}:{}/{database}", self.port)
    }

    /// What the server logged so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pg.log")).unwrap_or_default()
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = pg_command(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        )
        .stdin(std::process::Stdio::null())
        .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn pg_running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `program` (found on PATH, else in Debian's newest `/usr/lib/postgresql/*/bin`), run as the
/// `postgres` user when we are root (PostgreSQL refuses to run as root).
fn pg_command(program: &str, args: &[&std::ffi::OsStr]) -> std::process::Command {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    });
    let path = on_path.unwrap_or_else(|| {
        let mut versions: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .map(|dir| dir.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        versions.sort();
        versions
            .last()
            .map(|v| v.join("bin").join(program))
            .unwrap_or_else(|| program.into())
    });
    let mut command = if pg_running_as_root() {
        let mut command = std::process::Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(path);
        command
    } else {
        std::process::Command::new(path)
    };
    command.args(args);
    command
}

fn pg_run(command: &mut std::process::Command, what: &str) -> anyhow::Result<()> {
    let out = command.stdin(std::process::Stdio::null()).output()?;
    if !out.status.success() {
        anyhow::bail!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
