//! Pure rules of the service: input bounds, revision rules and the R4 lock, the list's
//! request checking and cursor, and the decoding of inbound messages. No I/O here.

pub mod inbound;
pub mod list;
pub mod revision;
pub mod validation;
