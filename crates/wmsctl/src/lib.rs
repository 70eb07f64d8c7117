//! `wmsctl`: the operator's and support engineer's CLI over wmslink's public gRPC APIs
//! (settings, orders, dispatch and sync runs, anomalies, dead letters). See the README for the
//! commands, the configuration, the `--json` shapes and the exit codes.

pub mod cli;
pub mod client;
mod commands;
pub mod config;
pub mod error;
pub mod output;
mod progress;

use std::io::Read;

use chrono::{FixedOffset, NaiveDate, TimeZone};

use crate::cli::{Cli, Command};
use crate::client::Clients;
use crate::config::Config;
use crate::error::{CliError, exit};
use crate::output::Printer;

/// Japan Standard Time, the cart's and the WMS's zone.
const JST: FixedOffset = match FixedOffset::east_opt(9 * 3600) {
    Some(offset) => offset,
    None => panic!("+09:00 is a valid offset"),
};

pub fn jst() -> FixedOffset {
    JST
}

/// Runs one command; prints results to stdout and errors to stderr (and, with `--json`, the
/// error document to stdout). Returns the exit code.
pub async fn run(cli: Cli) -> i32 {
    wmslink_platform::install_crypto_provider();
    let printer = Printer { json: cli.json };
    match execute(cli, &printer).await {
        Ok(()) => exit::OK,
        Err(err) => {
            eprintln!("{}", err.human());
            if printer.json {
                println!("{}", err.json());
            }
            err.exit_code()
        }
    }
}

async fn execute(cli: Cli, printer: &Printer) -> Result<(), CliError> {
    let config = Config::load(cli.config.as_deref())?;
    let clients = Clients::new(config)?;
    match cli.command {
        Command::Settings(command) => commands::settings::run(&clients, printer, command).await,
        Command::Statuses(command) => {
            commands::settings::statuses(&clients, printer, command).await
        }
        Command::Orders(command) => commands::orders::run(&clients, printer, command).await,
        Command::Dispatch(command) => commands::runs::dispatch(&clients, printer, command).await,
        Command::Sync(command) => commands::runs::sync(&clients, printer, command).await,
        Command::Anomalies(command) => commands::runs::anomalies(&clients, printer, command).await,
        Command::Dlq(command) => commands::dead_letters::run(&clients, printer, command).await,
    }
}

/// An access key from stdin (its first line), never from argv.
pub(crate) fn key_from_stdin() -> Result<String, CliError> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|err| CliError::invalid(format!("reading the access key from stdin: {err}")))?;
    let key = text.lines().next().unwrap_or("").trim().to_owned();
    if key.is_empty() {
        return Err(CliError::Invalid {
            what: "no access key on stdin".into(),
            fields: vec![("access_key".into(), "empty".into())],
        });
    }
    Ok(key)
}

/// `--from`/`--to`: RFC 3339, or a date meaning its midnight in JST.
pub(crate) fn parse_time(flag: &str, text: &str) -> Result<prost_types::Timestamp, CliError> {
    let at = chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .or_else(|| {
            let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
            jst()
                .from_local_datetime(&date.and_hms_opt(0, 0, 0)?)
                .single()
        })
        .ok_or_else(|| CliError::Invalid {
            what: format!("--{flag} '{text}' is not a date"),
            fields: vec![(
                flag.to_owned(),
                "an RFC 3339 time (2026-11-30T09:00:00+09:00) or a date (2026-11-30)".into(),
            )],
        })?;
    Ok(prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    })
}
