//! The COMMERCE ROBO adapter: the WMS HTTP API of `wms-api.md` ([`WmsClient`], its wire types
//! and status tables), the shipment-instruction row built from an order and the shop's
//! mappings ([`build_row`]), and [`WmsClient`] as the [`Wms`](crate::port::Wms) port
//! (`adapter`). The only module that knows COMMERCE ROBO's paths, field names and status ids.

mod adapter;
mod client;
mod rows;
mod types;

pub use client::{
    ConnectionReport, ConnectionStatus, FailedBatch, MAX_RETRY_AFTER, RegisterReport, WmsClient,
    check_connection, check_connection_within,
};
pub use rows::{build_row, summarize};
pub use types::{
    DEFAULT_SEARCH_LIMIT, Detail, FreeFields, MAX_IN_VALUES, MAX_ROWS_PER_REGISTRATION,
    MAX_SEARCH_LIMIT, Orderer, RowOutcome, RowResult, SHIPPING_STATUSES, STATUSES, SearchColumn,
    SearchFilter, SearchOp, SearchPage, SearchQuery, ShipmentInstruction, Shipping, WmsOrder,
    is_cancel_refused_status, jst, normalize_text, shipping_status_name, status_name,
};
