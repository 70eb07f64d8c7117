//! Integration tests of the settings service: the real application in-process against real
//! PostgreSQL and NATS JetStream, and a real HTTP server (the WMS simulator or wiremock)
//! standing in for the WMS.

mod auth;
mod catalog;
mod check;
mod enable;
mod events;
mod helpers;
mod key_lure;
mod logs;
mod register;
mod secrets;
mod shops;
mod tenancy;
mod transport;
mod validation;
