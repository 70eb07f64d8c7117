//! The servers the soak owns: a PostgreSQL cluster (`initdb` + `pg_ctl`, as the `postgres` user
//! when run as root) and a NATS server with JetStream, each on a spare port with a data
//! directory of its own under the run's directory, and the service processes. The soak may kill
//! and restart any of them without touching the machine's shared servers; it ends only the
//! processes it started, by their pid.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A free loopback port (bound, then released for the server to take).
pub fn spare_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a spare port")?;
    Ok(listener.local_addr()?.port())
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Finds a PostgreSQL server program (`initdb`, `pg_ctl`) on PATH or in Debian's directories.
fn pg_program(name: &str) -> PathBuf {
    let on_path = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    if let Some(path) = on_path {
        return path;
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| dir.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    versions.sort();
    versions
        .last()
        .map(|v| v.join("bin").join(name))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Runs `program args` as the `postgres` user when we are root (PostgreSQL refuses root).
fn pg_command(program: &str, args: &[&str]) -> Command {
    let program = pg_program(program);
    if running_as_root() {
        let mut command = Command::new("runuser");
        command
            .arg("-u")
            .arg("postgres")
            .arg("--")
            .arg(program)
            .args(args);
        command
    } else {
        let mut command = Command::new(program);
        command.args(args);
        command
    }
}

fn run_ok(mut command: Command, what: &str) -> anyhow::Result<()> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Waits until something listens on `port`.
pub fn wait_for_port(port: u16, within: Duration, what: &str) -> anyhow::Result<()> {
    let start = Instant::now();
    while start.elapsed() < within {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{what} did not listen on port {port} within {within:?}")
}

/// A PostgreSQL cluster of the soak's own.
pub struct Postgres {
    pub port: u16,
    data: PathBuf,
    log: PathBuf,
    fsync: bool,
}

impl Postgres {
    /// `initdb` into `dir/pg` (trust auth, user `postgres`) and start it on a spare port, with
    /// `fsync=off` (see [`Postgres::start`]).
    pub fn create(dir: &Path) -> anyhow::Result<Self> {
        Self::create_with(dir, false)
    }

    /// As [`Postgres::create`], but durable as in production (`fsync=on`): what a benchmark
    /// measures.
    pub fn create_durable(dir: &Path) -> anyhow::Result<Self> {
        Self::create_with(dir, true)
    }

    fn create_with(dir: &Path, fsync: bool) -> anyhow::Result<Self> {
        let data = dir.join("pg");
        std::fs::create_dir_all(&data)?;
        if running_as_root() {
            run_ok(
                {
                    let mut c = Command::new("chown");
                    c.arg("-R").arg("postgres:postgres").arg(dir);
                    c
                },
                "chown of the run directory",
            )?;
        }
        let data_arg = data.to_string_lossy().into_owned();
        run_ok(
            pg_command(
                "initdb",
                &[
                    "-D",
                    &data_arg,
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "--no-sync",
                    "-E",
                    "UTF8",
                ],
            ),
            "initdb",
        )?;
        let postgres = Self {
            port: spare_port()?,
            log: dir.join("pg.log"),
            data,
            fsync,
        };
        postgres.start()?;
        Ok(postgres)
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// The postmaster's pid, from `postmaster.pid`, while it runs.
    pub fn pid(&self) -> Option<u32> {
        let file = std::fs::read_to_string(self.data.join("postmaster.pid")).ok()?;
        file.lines().next()?.trim().parse().ok()
    }

    /// Starts the cluster. `fsync=off` unless durable (the OS keeps what was written when
    /// PostgreSQL is killed); never `synchronous_commit=off`, which loses acknowledged commits
    /// on the immediate stop the long variant does (the soak then blamed the services for it).
    pub fn start(&self) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync={} -c max_connections=400 \
             -c shared_buffers=64MB",
            self.port,
            self.data.to_string_lossy(),
            if self.fsync { "on" } else { "off" },
        );
        run_ok(
            pg_command(
                "pg_ctl",
                &[
                    "-D",
                    &self.data.to_string_lossy(),
                    "-l",
                    &self.log.to_string_lossy(),
                    "-o",
                    &options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
            ),
            "pg_ctl start",
        )
    }

    /// Stops the cluster at once (`immediate`: like a crash, recovery on the next start).
    pub fn stop(&self) -> anyhow::Result<()> {
        run_ok(
            pg_command(
                "pg_ctl",
                &[
                    "-D",
                    &self.data.to_string_lossy(),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
            ),
            "pg_ctl stop",
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// A NATS server with JetStream of the soak's own.
pub struct Nats {
    pub port: u16,
    store: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Nats {
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        let mut nats = Self {
            port: spare_port()?,
            store: dir.join("nats"),
            log: dir.join("nats.log"),
            child: None,
        };
        nats.restart()?;
        Ok(nats)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the server (again) on its port and store.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let log = File::options().create(true).append(true).open(&self.log)?;
        let child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.store)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting nats-server")?;
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(20), "nats-server")
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One service process: its binary, its environment and its log file.
pub struct ServiceProcess {
    pub name: String,
    binary: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
    pub starts: u32,
    pub kills: u32,
}

impl ServiceProcess {
    pub fn new(name: &str, binary: PathBuf, env: Vec<(String, String)>, dir: &Path) -> Self {
        Self {
            name: name.to_owned(),
            log: dir.join(format!("{name}.log")),
            binary,
            env,
            child: None,
            starts: 0,
            kills: 0,
        }
    }

    pub fn start(&mut self) -> anyhow::Result<()> {
        let log = File::options().create(true).append(true).open(&self.log)?;
        let child = Command::new(&self.binary)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} ({:?})", self.name, self.binary))?;
        self.child = Some(child);
        self.starts += 1;
        Ok(())
    }

    /// SIGKILL, whatever it is doing.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.kills += 1;
        }
    }

    /// Whether it exited on its own (a crash the soak did not cause).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops it gracefully: SIGTERM by pid, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let start = Instant::now();
            while start.elapsed() < grace {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
