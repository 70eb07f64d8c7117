//! status-sync against the real settings service, a WMS simulator, PostgreSQL and NATS.

mod anomalies;
mod consumers;
mod discovery;
mod efficiency;
mod helpers;
mod migrations;
mod observations;
mod paging;
mod runs;
mod tenancy;
