//! The invariants under fire (I1–I5, `architecture.md`). The soak ([`run`]) runs the built
//! services as OS processes on a PostgreSQL cluster and a NATS server of its own
//! ([`cluster`]), lets a cart ([`cart`]) and faults loose on them, kills and restarts processes,
//! and checks the invariants from the simulator's records and the services' gRPC only
//! ([`checks`]). The bad-input suite lives in `tests/bad_input/`.

pub mod cart;
pub mod checks;
pub mod cluster;
pub mod run;
pub mod sim;
pub mod system;
