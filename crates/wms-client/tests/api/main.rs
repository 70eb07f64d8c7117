//! Integration tests of the WMS client: against the real simulator (in-process, port 0),
//! against wiremock for exact faults, and against PostgreSQL for the shared limiter.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod batching;
mod connection;
mod errors;
mod helpers;
mod limiter;
mod logs;
mod metrics;
mod port;
mod sim_calls;
