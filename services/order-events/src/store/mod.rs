//! PostgreSQL access, one file per table: static SQL only (runtime `query`/`query_as` with
//! `FromRow`). The functions taking a connection run inside the caller's transaction.

mod list;
mod order_anomalies;
mod order_integration;
mod orders;
mod rejected_changes;
mod shops;

pub use list::{BROAD_PREFIX_BUDGET, Page, explain_list, list_orders, list_orders_with};
pub use order_anomalies::{OrderAnomaly, record_anomaly};
pub use order_integration::apply_shipment;
pub use orders::{
    StoredOrder, count_stale, insert_order, load_order, load_orders, lock_order, lock_orders,
    record_wmslink_change, update_order,
};
pub use rejected_changes::{RejectedChange, insert_rejected_change};
pub use shops::{change_implies_registered, load_shop, load_shops, shop_versions, upsert_shop};

/// The migrations of this service (after the platform's own tables).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub(crate) use wmslink_proto::to_timestamp as timestamp;
