//! Operator tools for wmslink: `wmslink-healthcheck` (a container health probe) and
//! `wmslink-demo` (sets up a demo shop against the WMS simulator and feeds it orders), and the
//! shop set-up sequence they share with the test suites.

pub mod demo;
pub mod shop_setup;
