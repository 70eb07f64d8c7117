//! The rules of the settings service, one file per rule, pure (no I/O) and unit-tested where
//! they live:
//!
//! - [`model`]: the settings, the catalog entries and [`Blocker`];
//! - [`validation`]: what a valid registration is (S1, S3);
//! - [`connection_check`]: check outcomes and whether the last check allows enabling (S2);
//! - [`enable_switch`]: when the integration may be switched on, and what a registration may
//!   not change while it is (S4);
//! - [`catalog`]: the order-status catalog and the changes it may not make.

pub mod catalog;
pub mod connection_check;
pub mod enable_switch;
pub mod model;
pub mod validation;

#[cfg(test)]
mod fixtures;

// The vocabulary, for the store and the gRPC layer; the rules are called by their file's name.
pub use connection_check::{CheckOutcome, CheckRecord};
pub use model::{
    Blocker, DataTargets, Detail, FreeFieldMapping, OrderStatus, PaymentMapping, StatusKind,
    WmsKind,
};
