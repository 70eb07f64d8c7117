//! One module per command group.

pub mod dead_letters;
pub mod orders;
pub mod runs;
pub mod settings;
