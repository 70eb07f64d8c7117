//! Pure rules of the service, one file per rule: input bounds ([`validation`]), the revision
//! rules ([`revision`]), the R4 processing lock ([`status_lock`]), the list's request checking
//! and cursor ([`list`]), and the checks of inbound shipment updates ([`inbound`]). No I/O here.

pub mod inbound;
pub mod list;
pub mod revision;
pub mod status_lock;
pub mod validation;
