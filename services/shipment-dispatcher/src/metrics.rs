//! The dispatcher's queue gauges, per shop: how many shipments are `QUEUED` and how long the
//! oldest has waited. The sweep samples the store with one grouped query
//! ([`sample`]) and keeps the values here; the gauges' callbacks only read them, so an export
//! never touches the database.
//!
//! - `wmslink.dispatcher.queue.depth` (gauge, `{shipment}`): `QUEUED` shipments, by `shop`;
//! - `wmslink.dispatcher.queue.oldest_age` (gauge, `s`): age of the oldest `QUEUED` shipment
//!   (0 when none), by `shop`.
//!
//! - `wmslink.dispatcher.anomalies` (counter, `{anomaly}`): WMS answers or search hits that
//!   met a shipment no longer in doubt under their claim (recorded in its history), by `shop`.
//!
//! Values are as of the last sweep (every `sweep_interval_ms`); every replica reports the same
//! database, so aggregate across replicas with max, not sum.

use std::sync::{Arc, Mutex, OnceLock};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Meter, ObservableGauge};
use sqlx::PgPool;

use crate::store;

/// The queue of one shop at the last sample.
#[derive(Debug, Clone, PartialEq)]
pub struct ShopQueue {
    pub shop_id: String,
    /// `QUEUED` shipments.
    pub queued: u64,
    /// Seconds since the oldest of them was queued; 0 when none.
    pub oldest_age_secs: f64,
}

/// The per-shop queue gauges and the last values their callbacks report.
pub struct QueueGauges {
    queues: Arc<Mutex<Vec<ShopQueue>>>,
    _depth: ObservableGauge<u64>,
    _oldest_age: ObservableGauge<f64>,
}

impl QueueGauges {
    /// The gauges on `meter` (a test passes its own provider's meter).
    pub fn new(meter: &Meter) -> Self {
        let queues: Arc<Mutex<Vec<ShopQueue>>> = Arc::default();
        let depth = {
            let queues = queues.clone();
            meter
                .u64_observable_gauge("wmslink.dispatcher.queue.depth")
                .with_description("Shipments QUEUED for the WMS, per shop (as of the last sweep)")
                .with_unit("{shipment}")
                .with_callback(move |observer| {
                    for queue in snapshot(&queues) {
                        observer.observe(queue.queued, &[KeyValue::new("shop", queue.shop_id)]);
                    }
                })
                .build()
        };
        let oldest_age = {
            let queues = queues.clone();
            meter
                .f64_observable_gauge("wmslink.dispatcher.queue.oldest_age")
                .with_description(
                    "Age of the oldest QUEUED shipment, per shop, 0 when none (as of the last sweep)",
                )
                .with_unit("s")
                .with_callback(move |observer| {
                    for queue in snapshot(&queues) {
                        observer.observe(
                            queue.oldest_age_secs,
                            &[KeyValue::new("shop", queue.shop_id)],
                        );
                    }
                })
                .build()
        };
        Self {
            queues,
            _depth: depth,
            _oldest_age: oldest_age,
        }
    }

    /// The process-wide gauges, created on first use from the global meter provider (so after
    /// telemetry is initialised).
    pub fn global() -> &'static Self {
        static GAUGES: OnceLock<QueueGauges> = OnceLock::new();
        GAUGES.get_or_init(|| {
            Self::new(&wmslink_platform::telemetry::meter(
                env!("CARGO_PKG_NAME"),
                env!("CARGO_PKG_VERSION"),
            ))
        })
    }

    /// Replaces the values the gauges report.
    pub fn set(&self, queues: Vec<ShopQueue>) {
        *self.queues.lock().unwrap_or_else(|p| p.into_inner()) = queues;
    }
}

/// Counts one anomaly of `shop_id` (see the module docs).
pub fn anomaly(shop_id: &str) {
    static ANOMALIES: OnceLock<opentelemetry::metrics::Counter<u64>> = OnceLock::new();
    ANOMALIES
        .get_or_init(|| {
            wmslink_platform::telemetry::meter(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
                .u64_counter("wmslink.dispatcher.anomalies")
                .with_description(
                    "WMS answers or search hits that met a shipment no longer in doubt under their claim",
                )
                .with_unit("{anomaly}")
                .build()
        })
        .add(1, &[KeyValue::new("shop", shop_id.to_owned())]);
}

fn snapshot(queues: &Mutex<Vec<ShopQueue>>) -> Vec<ShopQueue> {
    queues.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// The queue of every shop in `shops` (0 for those with nothing queued) and of any other shop
/// with queued shipments, from one grouped query.
pub async fn sample(pool: &PgPool, shops: &[String]) -> Result<Vec<ShopQueue>, sqlx::Error> {
    let mut queues: Vec<ShopQueue> = store::queue_by_shop(pool)
        .await?
        .into_iter()
        .map(|(shop_id, queued, oldest_age_secs)| ShopQueue {
            shop_id,
            queued: u64::try_from(queued).unwrap_or(0),
            oldest_age_secs: oldest_age_secs.max(0.0),
        })
        .collect();
    for shop in shops {
        if !queues.iter().any(|queue| &queue.shop_id == shop) {
            queues.push(ShopQueue {
                shop_id: shop.clone(),
                queued: 0,
                oldest_age_secs: 0.0,
            });
        }
    }
    queues.sort_by(|a, b| a.shop_id.cmp(&b.shop_id));
    Ok(queues)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use wmslink_platform::telemetry::testing::MetricsCapture;

    fn queue(shop: &str, queued: u64, age: f64) -> ShopQueue {
        ShopQueue {
            shop_id: shop.into(),
            queued,
            oldest_age_secs: age,
        }
    }

    #[test]
    fn gauges_report_the_last_sample_per_shop() {
        let capture = MetricsCapture::new();
        let gauges = QueueGauges::new(&capture.meter());
        assert!(capture.points("wmslink.dispatcher.queue.depth").is_empty());

        gauges.set(vec![queue("shop-a", 12, 95.5), queue("shop-b", 0, 0.0)]);
        let depth = |shop: &str| {
            capture
                .point("wmslink.dispatcher.queue.depth", &[("shop", shop)])
                .map(|p| p.value)
        };
        let age = |shop: &str| {
            capture
                .point("wmslink.dispatcher.queue.oldest_age", &[("shop", shop)])
                .map(|p| p.value)
        };
        assert_eq!(depth("shop-a"), Some(12.0));
        assert_eq!(age("shop-a"), Some(95.5));
        assert_eq!(depth("shop-b"), Some(0.0));
        assert_eq!(age("shop-b"), Some(0.0));

        gauges.set(vec![queue("shop-a", 0, 0.0), queue("shop-b", 3, 4.0)]);
        assert_eq!(depth("shop-a"), Some(0.0));
        assert_eq!(depth("shop-b"), Some(3.0));
        assert_eq!(age("shop-b"), Some(4.0));
    }
}
