//! End to end: the cart's order goes through order-events, the dispatcher registers it in the
//! WMS (simulator), status-sync brings the WMS's progress back, and the order list shows both
//! levels, with the R4 lock while the WMS is processing.

#![allow(clippy::unwrap_used)]

mod flaky;
mod flows;
mod migrations;
