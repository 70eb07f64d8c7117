//! `wmsctl` (the real binary) against the whole system running in-process: real PostgreSQL,
//! NATS JetStream, gRPC over loopback and the WMS simulator. Checks the human and `--json`
//! output, and the exit codes scripts rely on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod commands;
mod errors;

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use wmslink_e2e::{OPERATOR_TOKEN, System};

pub const WAIT: Duration = Duration::from_secs(30);

/// What one run of `wmsctl` gave.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The single JSON document printed.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|err| panic!("not one JSON document ({err}): {self:?}"))
    }

    /// Every JSON line printed (`--all`).
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "wmsctl failed: {self:?}");
        self
    }
}

/// How to reach the system.
pub struct Ctl {
    pub urls: Vec<(&'static str, String)>,
    pub token: Option<String>,
    home: tempfile::TempDir,
}

impl Ctl {
    pub fn for_system(system: &System) -> Self {
        let url = |addr: std::net::SocketAddr| format!("http://{addr}");
        Self {
            urls: vec![
                ("WMSCTL_SETTINGS_URL", url(system.settings_addr())),
                ("WMSCTL_ORDERS_URL", url(system.orders_addr())),
                ("WMSCTL_DISPATCH_URL", url(system.dispatch_addr())),
                ("WMSCTL_SYNC_URL", url(system.sync_addr())),
                // Any consuming service answers for the shared dead letters.
                ("WMSCTL_DEAD_LETTERS_URL", url(system.dispatch_addr())),
            ],
            token: Some(OPERATOR_TOKEN.to_owned()),
            home: tempfile::tempdir().unwrap(),
        }
    }

    pub fn with_token(mut self, token: Option<&str>) -> Self {
        self.token = token.map(str::to_owned);
        self
    }

    pub fn dir(&self) -> &std::path::Path {
        self.home.path()
    }

    /// Writes `text` to a file in a scratch directory and returns its path.
    pub fn file(&self, name: &str, text: &str) -> String {
        let path = self.home.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    pub async fn run(&self, args: &[&str]) -> Run {
        self.run_with_stdin(args, None).await
    }

    pub async fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_wmsctl"));
        command
            .args(args)
            .env_clear()
            .env("HOME", self.home.path())
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in &self.urls {
            command.env(name, value);
        }
        if let Some(token) = &self.token {
            command.env("WMSLINK_TOKEN", token);
        }
        let mut child = command.spawn().unwrap();
        if let Some(text) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(text.as_bytes()).await.unwrap();
            drop(pipe);
        }
        let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
            .await
            .expect("wmsctl finished in time")
            .unwrap();
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}
