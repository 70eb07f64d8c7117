//! Integration tests of the shipment dispatcher: the real application in-process against real
//! PostgreSQL and NATS JetStream, with the real settings service and the WMS simulator (and
//! wiremock where a fault must be exact).

mod api;
mod batch;
mod cancel;
mod cancel_judged;
mod catalog;
mod dead_letters;
mod endpoint_change;
mod exactly_once;
mod helpers;
mod in_doubt;
mod key_rotation;
mod logs;
mod mappings;
mod metrics;
mod observations;
mod order_no;
mod parallel;
mod private_postgres;
mod rate_limit;
mod rebuild;
mod rules;
mod sending;
mod settings_outage;
mod startup;
mod starvation;
