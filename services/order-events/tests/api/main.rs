//! Integration tests against real PostgreSQL and NATS JetStream: every test starts the real
//! Application on port 0 with its own database and NATS prefix.

mod anomalies;
mod auth;
mod bad_input;
mod batch;
mod helpers;
mod list;
mod nats_inbound;
mod order_no;
mod outage;
mod outbox;
mod projection;
mod r4;
mod runtime;
mod settings_lookup;
mod tenancy;
mod upsert;
