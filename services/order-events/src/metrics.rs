//! Counters of notable outcomes. Each is kept twice: an OpenTelemetry counter (exported over
//! OTLP when telemetry has an endpoint; a no-op otherwise) and an in-process total per
//! [`crate::Application`] (for tests and debugging).
//!
//! - `wmslink.orders.stale_revisions` (`{snapshot}`, by `shop`): older revisions ignored;
//! - `wmslink.orders.status_changes_refused` (`{change}`, by `shop`, `path` = grpc|nats): R4;
//! - `wmslink.orders.revision_conflicts` (`{snapshot}`, by `shop`): same revision, other content;
//! - `wmslink.orders.shipment_updates_ignored` (`{update}`, by `shop`): not newer than stored.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Meter};

struct Instruments {
    stale: Counter<u64>,
    refused: Counter<u64>,
    conflicts: Counter<u64>,
    ignored: Counter<u64>,
}

impl Instruments {
    fn new(meter: &Meter) -> Self {
        let counter = |name: &'static str, description: &'static str, unit: &'static str| {
            meter
                .u64_counter(name)
                .with_description(description)
                .with_unit(unit)
                .build()
        };
        Self {
            stale: counter(
                "wmslink.orders.stale_revisions",
                "Order snapshots ignored because a newer revision is stored",
                "{snapshot}",
            ),
            refused: counter(
                "wmslink.orders.status_changes_refused",
                "Status changes refused while the WMS processes the order (R4)",
                "{change}",
            ),
            conflicts: counter(
                "wmslink.orders.revision_conflicts",
                "Snapshots refused: the same revision is stored with other content",
                "{snapshot}",
            ),
            ignored: counter(
                "wmslink.orders.shipment_updates_ignored",
                "Shipment updates not newer than the projection's (repeated or reordered)",
                "{update}",
            ),
        }
    }

    /// Created on first use from the global meter provider (after telemetry is initialised).
    fn global() -> &'static Self {
        static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
        INSTRUMENTS.get_or_init(|| {
            Self::new(&wmslink_platform::telemetry::meter(
                env!("CARGO_PKG_NAME"),
                env!("CARGO_PKG_VERSION"),
            ))
        })
    }
}

/// Where a refused status change came from.
#[derive(Debug, Clone, Copy)]
pub enum Path {
    Grpc,
    Nats,
}

/// The in-process totals.
#[derive(Debug, Default)]
pub struct Metrics {
    pub stale_ignored: AtomicU64,
    pub status_changes_refused: AtomicU64,
    pub revision_conflicts: AtomicU64,
    pub shipment_updates_ignored: AtomicU64,
}

fn shop(shop: &str) -> KeyValue {
    KeyValue::new("shop", shop.to_owned())
}

impl Metrics {
    pub fn stale_revision(&self, shop_id: &str) {
        self.stale_ignored.fetch_add(1, Ordering::Relaxed);
        Instruments::global().stale.add(1, &[shop(shop_id)]);
    }

    pub fn status_change_refused(&self, shop_id: &str, path: Path) {
        self.status_changes_refused.fetch_add(1, Ordering::Relaxed);
        let path = match path {
            Path::Grpc => "grpc",
            Path::Nats => "nats",
        };
        Instruments::global()
            .refused
            .add(1, &[shop(shop_id), KeyValue::new("path", path)]);
    }

    pub fn revision_conflict(&self, shop_id: &str) {
        self.revision_conflicts.fetch_add(1, Ordering::Relaxed);
        Instruments::global().conflicts.add(1, &[shop(shop_id)]);
    }

    pub fn shipment_update_ignored(&self, shop_id: &str) {
        self.shipment_updates_ignored
            .fetch_add(1, Ordering::Relaxed);
        Instruments::global().ignored.add(1, &[shop(shop_id)]);
    }
}
