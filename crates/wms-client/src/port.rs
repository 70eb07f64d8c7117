//! The WMS port: what wmslink's services need of a WMS, in their own terms.
//!
//! The shipment dispatcher and status-sync speak to the WMS only through [`Wms`]: build a
//! shipment instruction from an order and the shop's mappings, register a batch, cancel, look
//! up by order numbers, list what changed since a time, get one order. An adapter (today only
//! [`commerce_robo`](crate::commerce_robo), chosen by the shop's `wms_kind` in
//! [`connect`](crate::connect)) turns these into its WMS's calls, field names and status ids.
//!
//! What the rules need of a WMS order is expressed as meanings ([`WmsOrder::cancelled`],
//! [`WmsOrder::shipped`], [`WmsOrder::processing`], [`CarrierStatus::is_final`]); the WMS's own
//! status id and name stay as data, to be shown as the WMS names them (O1).
//!
//! Every call goes through the adapter's rate limiter and metrics, and fails with a
//! [`WmsError`] whose classification ([`WmsError::is_retryable`],
//! [`WmsError::may_have_been_applied`], [`WmsError::retry_after`]) is the same for every WMS.

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use wmslink_proto::orders::v1::Order;
use wmslink_proto::settings::v1::DetailSettings;

use crate::commerce_robo::ShipmentInstruction;
use crate::error::WmsError;

/// Guard against a WMS whose paging never ends.
const MAX_PAGES: usize = 10_000;

/// The sizes a WMS's calls take, which callers batch and page by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most instructions in one [`Wms::register`].
    pub register_batch: usize,
    /// Most order numbers in one [`Wms::lookup`].
    pub lookup_batch: usize,
    /// Most orders in one page of [`Wms::lookup`] or [`Wms::changed_since`].
    pub page_size: usize,
}

/// Why an order cannot become a shipment instruction: every problem found, in order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot build the WMS row: {}", .problems.join("; "))]
pub struct BuildError {
    pub problems: Vec<String>,
}

/// A shipment instruction (出荷指示) built by an adapter from an order and the shop's
/// mappings, ready for [`Wms::register`]. Outside this crate only its order number and a
/// one-line summary (for the exchange history, no personal data) are visible.
#[derive(Clone, Debug, PartialEq)]
pub struct Instruction {
    order_no: String,
    summary: String,
    pub(crate) body: InstructionBody,
}

/// The instruction in the WMS's own shape, one variant per adapter.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum InstructionBody {
    CommerceRobo(ShipmentInstruction),
}

impl Instruction {
    pub(crate) fn new(order_no: String, summary: String, body: InstructionBody) -> Self {
        Self {
            order_no,
            summary,
            body,
        }
    }

    /// The cart's order number.
    pub fn order_no(&self) -> &str {
        &self.order_no
    }

    /// What is sent, in one line: the mapped ids, the number of lines, the total, which free
    /// fields are set. No address or name.
    pub fn summary(&self) -> &str {
        &self.summary
    }
}

/// What the WMS said about one instruction of a [`Wms::register`] call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    pub order_no: String,
    pub outcome: RegistrationOutcome,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistrationOutcome {
    /// Registered under the WMS's own id, which cancelling needs.
    Registered { order_id: i64 },
    /// Refused because the WMS already holds a live order with this order number (its
    /// duplicate check, 重複チェック): search for it and adopt it.
    AlreadyRegistered { code: String, message: String },
    /// Refused for this row (a validation error of the WMS); nothing was registered.
    Refused { code: String, message: String },
}

/// The WMS's answer to a cancellation it received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    /// Cancelled (also when it already was). Irreversible.
    Cancelled,
    /// Refused for good: the order is past the point where the WMS cancels (shipped, being
    /// packed). Only this, or a read-back showing it ([`Wms::past_cancel`]), rejects a
    /// cancellation.
    NotCancellable { code: String, message: String },
    /// Refused for now with the WMS's reason (maintenance, busy, order not found, ...): the
    /// cancellation is tried again later.
    Refused { code: String, message: String },
}

/// An order as the WMS holds it, in wmslink's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WmsOrder {
    /// The WMS's own id (`order_id` in the glossary).
    pub order_id: i64,
    /// The cart's order number.
    pub order_no: String,
    /// The WMS's status id, as data: shown, stored and compared, never interpreted outside the
    /// adapter.
    pub status_id: i32,
    /// The WMS's name of the status, as the WMS names it (O1).
    pub status_name: String,
    /// Cancelled in the WMS (irreversible).
    pub cancelled: bool,
    /// Shipped by the warehouse.
    pub shipped: bool,
    /// 処理中: the WMS is processing the order, so the cart may not change its status (R4).
    pub processing: bool,
    /// The carrier's status, once shipped and when the WMS gives one.
    pub carrier: Option<CarrierStatus>,
    /// Tracking code (送り状番号), once shipped.
    pub tracking_code: Option<String>,
    /// Shipping date, once shipped.
    pub shipping_date: Option<NaiveDate>,
    /// When the WMS last changed the order.
    pub updated_at: DateTime<Utc>,
}

/// The carrier's status of a shipped order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CarrierStatus {
    /// The WMS's id of the carrier status, as data.
    pub id: i32,
    /// Its name as the WMS names it; empty when the WMS documents no name for the id.
    pub name: String,
    /// Nothing more will happen to the shipment (delivered, returned, cancelled by the
    /// carrier): no need to watch it any longer.
    pub is_final: bool,
}

/// Where a page of [`Wms::lookup`] or [`Wms::changed_since`] starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageCursor(pub(crate) u32);

impl PageCursor {
    /// The first page.
    pub const FIRST: PageCursor = PageCursor(0);
}

/// One page of orders.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub orders: Vec<WmsOrder>,
    /// Where the next page starts; `None` when this was the last one.
    pub next: Option<PageCursor>,
}

/// A WMS exchange, for the per-order history (named by the adapter in the WMS's own terms, so
/// a person comparing with the WMS's logs recognises it).
#[derive(Clone, Copy, Debug)]
pub enum Exchange<'a> {
    /// A [`Wms::register`] call of `rows` instructions.
    Register { rows: usize },
    /// A [`Wms::cancel`] of one order.
    Cancel { order_id: i64 },
    /// A [`Wms::get`] of one order.
    Get { order_id: i64 },
    /// A [`Wms::find_by_order_nos`] of `order_nos` order numbers.
    Lookup { order_nos: usize },
    /// The cancellation state of an order read back (after a lost cancel answer).
    CancelState(&'a WmsOrder),
}

/// What wmslink needs of a WMS. One value per shop (its endpoint, access key and rate-limit
/// bucket); cheap to share (`Arc<dyn Wms>`).
#[async_trait]
pub trait Wms: Send + Sync + fmt::Debug {
    /// The sizes of this WMS's calls.
    fn limits(&self) -> Limits;

    /// Builds the shipment instruction of `order` with the shop's mappings (S3 ⑥–⑬). Pure:
    /// an order that cannot be built is refused with everything that is missing, before any
    /// call.
    fn build_instruction(
        &self,
        order: &Order,
        mappings: &DetailSettings,
    ) -> Result<Instruction, BuildError>;

    /// Registers 1 to [`Limits::register_batch`] instructions in one call: one
    /// [`Registration`] per instruction, in order. A lost answer is
    /// [`WmsError::UnknownOutcome`]: search before anything is sent again.
    async fn register(&self, batch: &[Instruction]) -> Result<Vec<Registration>, WmsError>;

    /// Cancels one order, irreversibly. A lost answer is [`WmsError::UnknownOutcome`]: read
    /// the order back ([`Wms::get`]) before deciding.
    async fn cancel(&self, order_id: i64) -> Result<CancelOutcome, WmsError>;

    /// One order by the WMS's id.
    async fn get(&self, order_id: i64) -> Result<WmsOrder, WmsError>;

    /// Whether the WMS no longer cancels `order` (shipped, or in a status where it refuses a
    /// cancel): a read-back showing it rejects a cancellation.
    fn past_cancel(&self, order: &WmsOrder) -> bool;

    /// One page of the WMS orders with these order numbers (at most
    /// [`Limits::lookup_batch`]), in one call. An order number registered, cancelled and
    /// registered again appears once per WMS order.
    async fn lookup(&self, order_nos: &[String], page: PageCursor) -> Result<Page, WmsError>;

    /// One page of the WMS orders changed at or after `since`, in one call.
    async fn changed_since(&self, since: DateTime<Utc>, page: PageCursor)
    -> Result<Page, WmsError>;

    /// How the history names an exchange with this WMS.
    fn describe(&self, exchange: Exchange<'_>) -> String;

    /// Every WMS order with these order numbers: [`Wms::lookup`] by
    /// [`Limits::lookup_batch`] order numbers, every page (250 order numbers make 3 calls
    /// when each fits a page).
    async fn find_by_order_nos(&self, order_nos: &[String]) -> Result<Vec<WmsOrder>, WmsError> {
        let mut found = Vec::new();
        for chunk in order_nos.chunks(self.limits().lookup_batch.max(1)) {
            let mut cursor = PageCursor::FIRST;
            let mut pages = 0;
            loop {
                let page = self.lookup(chunk, cursor).await?;
                found.extend(page.orders);
                match page.next {
                    Some(next) => cursor = next,
                    None => break,
                }
                pages += 1;
                if pages >= MAX_PAGES {
                    return Err(WmsError::Malformed(format!(
                        "search paging did not end after {MAX_PAGES} pages"
                    )));
                }
            }
        }
        Ok(found)
    }
}
