//! A PostgreSQL server of the test's own (its own data directory, on a spare port), started
//! and stopped by the test: for tests that need PostgreSQL down, without touching the shared
//! server. `initdb`/`pg_ctl` run as user `postgres` when the test runs as root.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct PrivatePostgres {
    pub port: u16,
    root: PathBuf,
    bin: PathBuf,
    started: bool,
}

/// The newest `/usr/lib/postgresql/<version>/bin` (or `WMSLINK_TEST_PG_BIN`).
fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("WMSLINK_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL binaries in /usr/lib/postgresql (or set WMSLINK_TEST_PG_BIN)")
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort();
    versions.pop().expect("a PostgreSQL version").1
}

fn spare_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a spare port")
        .port()
}

fn as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// Runs a PostgreSQL tool, as `postgres` when we are root.
fn run(tool: &Path, args: &[&str]) {
    let mut command = if as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(tool);
        command
    } else {
        Command::new(tool)
    };
    let output = command.args(args).output().expect("runs");
    assert!(
        output.status.success(),
        "{} {args:?}: {}{}",
        tool.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl PrivatePostgres {
    /// A fresh cluster (initdb), not started yet.
    pub fn init() -> Self {
        let root = std::env::temp_dir().join(wmslink_testkit::unique("wmslink-test-pg-"));
        std::fs::create_dir_all(&root).expect("data directory");
        if as_root() {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&root)
                .status()
                .expect("chown");
            assert!(status.success(), "chown {}", root.display());
        }
        let bin = bin_dir();
        let data = root.join("data");
        run(
            &bin.join("initdb"),
            &[
                "-D",
                data.to_str().expect("path"),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        Self {
            port: spare_port(),
            root,
            bin,
            started: false,
        }
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&mut self) {
        let data = self.root.join("data");
        let log = self.root.join("log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.root.display()
        );
        run(
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                data.to_str().expect("path"),
                "-o",
                &options,
                "-l",
                log.to_str().expect("path"),
                "-w",
                "start",
            ],
        );
        self.started = true;
    }

    /// A URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.started {
            let data = self.root.join("data");
            let stop = if as_root() {
                Command::new("runuser")
                    .args(["-u", "postgres", "--"])
                    .arg(self.bin.join("pg_ctl"))
                    .args(["-D"])
                    .arg(&data)
                    .args(["-m", "immediate", "-w", "stop"])
                    .output()
            } else {
                Command::new(self.bin.join("pg_ctl"))
                    .args(["-D"])
                    .arg(&data)
                    .args(["-m", "immediate", "-w", "stop"])
                    .output()
            };
            if let Err(err) = stop {
                eprintln!("stopping the test's PostgreSQL: {err}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
