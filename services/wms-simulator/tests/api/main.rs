//! Protocol tests of the simulator over real HTTP (in-process server on port 0).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod control;
mod helpers;
mod protocol;
mod rate_and_faults;
mod warehouse;
