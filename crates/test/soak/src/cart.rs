//! The cart of the soak: orders published over NATS as a cart would (proto3 JSON and protobuf
//! mixed, many shops), following scenarios that exercise every path: duplicates with and
//! without `Nats-Msg-Id`, revisions out of order, edits after sending, cancellations at every
//! stage, status changes R4 must refuse, and now and then a message no consumer can take. Every
//! message is recorded so the checks can account for it (I5).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;
use wmslink_platform::nats::Subjects;
use wmslink_platform::shop::ShopId;
use wmslink_proto::orders::v1 as pb;
use wmslink_tools::demo::{self, STATUS_CANCELLED, STATUS_HOLD, STATUS_NEW, STATUS_READY};

/// What the cart does with one order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scenario {
    /// Placed in the target status.
    Plain,
    /// Placed on hold, moved into the target status later.
    HoldThenRelease,
    /// Revision 2 (target status) published before revision 1 (new).
    OutOfOrder,
    /// The same snapshot four times: twice with one `Nats-Msg-Id`, twice without.
    Duplicates,
    /// Edited (a newer revision, same status) a few seconds after it was placed (R1).
    EditAfterSending,
    /// Placed on hold and cancelled: never reaches the WMS.
    CancelBeforeSending,
    /// Cancelled at once: while queued or being sent.
    CancelWhileQueued,
    /// Cancelled a few seconds after it was placed: registered, then cancelled in the WMS.
    CancelAfterSending,
    /// Cancelled later: while the WMS processes it (R4 may refuse) or after it shipped
    /// (CANCEL_REJECTED).
    CancelLate,
    /// A status change while the WMS may be processing it (R4 refuses it then).
    StatusChangeWhileProcessing,
}

impl Scenario {
    pub const ALL: [Scenario; 10] = [
        Scenario::Plain,
        Scenario::HoldThenRelease,
        Scenario::OutOfOrder,
        Scenario::Duplicates,
        Scenario::EditAfterSending,
        Scenario::CancelBeforeSending,
        Scenario::CancelWhileQueued,
        Scenario::CancelAfterSending,
        Scenario::CancelLate,
        Scenario::StatusChangeWhileProcessing,
    ];
}

/// One message the cart published (or gave up publishing).
#[derive(Debug, Clone)]
pub struct Sent {
    pub shop: String,
    pub order_no: String,
    pub revision: i64,
    pub status_code: String,
    pub msg_id: Option<String>,
    pub json: bool,
    /// A message no consumer can take (it must be dead-lettered with a reason).
    pub bad: bool,
    /// JetStream stored it (false: NATS refused it for the whole retry time).
    pub stored: bool,
}

/// An order of the workload.
#[derive(Debug, Clone)]
pub struct CartOrder {
    pub shop: String,
    pub order_no: String,
    pub scenario: Scenario,
}

/// One step of an order's scenario: after `delay` from the order's start, publish `order`.
struct Step {
    delay: Duration,
    order: pb::Order,
    msg_id: Option<String>,
}

#[derive(Clone)]
pub struct Cart {
    js: async_nats::jetstream::Context,
    subjects: Arc<Subjects>,
    pub sent: Arc<Mutex<Vec<Sent>>>,
    json_ratio: f64,
}

fn millis(rng: &mut StdRng, from: u64, to: u64) -> Duration {
    Duration::from_millis(rng.random_range(from..to))
}

fn steps(rng: &mut StdRng, shop: &str, order_no: &str, scenario: Scenario) -> Vec<Step> {
    let payment = if rng.random_bool(0.2) { "cod" } else { "card" };
    let at = |revision: i64, status: &str| demo::order(shop, order_no, revision, status, payment);
    let step = |delay: Duration, order: pb::Order| Step {
        delay,
        order,
        msg_id: None,
    };
    let zero = Duration::ZERO;
    match scenario {
        Scenario::Plain => vec![step(zero, at(1, STATUS_READY))],
        Scenario::HoldThenRelease => vec![
            step(zero, at(1, STATUS_NEW)),
            step(millis(rng, 1_000, 8_000), at(2, STATUS_READY)),
        ],
        Scenario::OutOfOrder => vec![
            step(zero, at(2, STATUS_READY)),
            step(Duration::from_millis(50), at(1, STATUS_NEW)),
        ],
        Scenario::Duplicates => {
            let id = format!("dup-{shop}-{order_no}");
            let with_id = |delay| Step {
                delay,
                order: at(1, STATUS_READY),
                msg_id: Some(id.clone()),
            };
            vec![
                with_id(zero),
                with_id(Duration::from_millis(20)),
                step(Duration::from_millis(40), at(1, STATUS_READY)),
                step(millis(rng, 1_000, 6_000), at(1, STATUS_READY)),
            ]
        }
        Scenario::EditAfterSending => {
            let mut edited = at(2, STATUS_READY);
            edited.note = "gift wrap, please (edited)".into();
            if let Some(shipping) = edited.shipping.as_mut() {
                shipping.address2 = "202".into();
            }
            vec![
                step(zero, at(1, STATUS_READY)),
                step(millis(rng, 2_000, 10_000), edited),
            ]
        }
        Scenario::CancelBeforeSending => vec![
            step(zero, at(1, STATUS_NEW)),
            step(millis(rng, 200, 3_000), at(2, STATUS_CANCELLED)),
        ],
        Scenario::CancelWhileQueued => vec![
            step(zero, at(1, STATUS_READY)),
            step(millis(rng, 0, 400), at(2, STATUS_CANCELLED)),
        ],
        Scenario::CancelAfterSending => vec![
            step(zero, at(1, STATUS_READY)),
            step(millis(rng, 2_000, 6_000), at(2, STATUS_CANCELLED)),
        ],
        Scenario::CancelLate => vec![
            step(zero, at(1, STATUS_READY)),
            step(millis(rng, 6_000, 30_000), at(2, STATUS_CANCELLED)),
        ],
        Scenario::StatusChangeWhileProcessing => vec![
            step(zero, at(1, STATUS_READY)),
            step(millis(rng, 5_000, 14_000), at(2, STATUS_HOLD)),
        ],
    }
}

/// A message no consumer can take, of kind `n % 4`.
fn bad_message(shop: &str, n: usize) -> (Vec<u8>, bool) {
    match n % 4 {
        0 => (vec![0xff, 0xff, 0x01, 0x02, 0x03], false),
        1 => (
            format!(r#"{{"shopId":"{shop}","orderNo":"BAD-{n}","colour":"red"}}"#).into_bytes(),
            true,
        ),
        2 => {
            let mut order = demo::order(shop, &format!("BAD-{n}"), 0, STATUS_READY, "card");
            order.lines.clear();
            (prost::Message::encode_to_vec(&order), false)
        }
        _ => (
            prost::Message::encode_to_vec(&demo::order(
                "some-other-shop",
                &format!("BAD-{n}"),
                1,
                STATUS_READY,
                "card",
            )),
            false,
        ),
    }
}

impl Cart {
    pub fn new(js: async_nats::jetstream::Context, subjects: Subjects, json_ratio: f64) -> Self {
        Self {
            js,
            subjects: Arc::new(subjects),
            sent: Arc::default(),
            json_ratio,
        }
    }

    /// Publishes with JetStream, retrying while NATS is down (as a cart must), for up to a
    /// minute; the same message id on every try.
    async fn publish(
        &self,
        shop: &str,
        payload: Vec<u8>,
        json: bool,
        msg_id: Option<&str>,
    ) -> bool {
        let Ok(shop_id) = ShopId::parse(shop) else {
            return false;
        };
        let subject = self.subjects.cart_order_upserted(&shop_id);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut headers = async_nats::HeaderMap::new();
            if json {
                headers.insert("Content-Type", "application/json");
            }
            if let Some(id) = msg_id {
                headers.insert(async_nats::header::NATS_MESSAGE_ID, id);
            }
            let attempt = self
                .js
                .publish_with_headers(subject.clone(), headers, payload.clone().into())
                .await;
            let stored = match attempt {
                Ok(ack) => ack.await.is_ok(),
                Err(_) => false,
            };
            if stored {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn record(&self, sent: Sent) {
        if let Ok(mut log) = self.sent.lock() {
            log.push(sent);
        }
    }

    /// Runs one order's scenario from `start`.
    pub async fn run_order(&self, order: CartOrder, start: Instant, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let plan = steps(&mut rng, &order.shop, &order.order_no, order.scenario);
        for step in plan {
            tokio::time::sleep_until(start + step.delay).await;
            let json = rng.random_bool(self.json_ratio);
            let payload = if json {
                match wmslink_proto::json::encode("wmslink.orders.v1.Order", &step.order) {
                    Ok(bytes) => bytes,
                    Err(_) => continue,
                }
            } else {
                prost::Message::encode_to_vec(&step.order)
            };
            let stored = self
                .publish(&order.shop, payload, json, step.msg_id.as_deref())
                .await;
            self.record(Sent {
                shop: order.shop.clone(),
                order_no: order.order_no.clone(),
                revision: step.order.revision,
                status_code: step.order.status_code.clone(),
                msg_id: step.msg_id,
                json,
                bad: false,
                stored,
            });
        }
    }

    /// Publishes the `n`-th bad message on `shop`'s subject, with a message id to find its
    /// dead letter by.
    pub async fn send_bad(&self, shop: &str, n: usize) {
        let (payload, json) = bad_message(shop, n);
        let id = format!("bad-{shop}-{n}");
        let stored = self.publish(shop, payload, json, Some(&id)).await;
        self.record(Sent {
            shop: shop.to_owned(),
            order_no: format!("BAD-{n}"),
            revision: 0,
            status_code: String::new(),
            msg_id: Some(id),
            json,
            bad: true,
            stored,
        });
    }
}

/// The workload: `orders` orders over `shops`, scenarios drawn with `seed`.
pub fn plan(shops: &[String], orders: usize, seed: u64) -> Vec<CartOrder> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..orders)
        .map(|i| {
            let scenario = if rng.random_bool(0.3) {
                Scenario::Plain
            } else {
                Scenario::ALL[rng.random_range(0..Scenario::ALL.len())]
            };
            CartOrder {
                shop: shops[i % shops.len()].clone(),
                order_no: format!("SK-{i:06}"),
                scenario,
            }
        })
        .collect()
}
