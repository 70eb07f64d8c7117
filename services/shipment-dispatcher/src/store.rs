//! The dispatcher's tables: `shipments` (one row per shop and order number) and
//! `shipment_history`. Every write goes through [`persist`], which saves the row, appends its
//! history and, for changes others must see, the `ShipmentUpdated` outbox event — all in the
//! caller's transaction. A transaction that changes many shipments saves each with
//! [`Appends::save`] and inserts their history and events together ([`Appends::flush`]), and
//! locks them together first ([`Locked`]).

use std::collections::HashMap;

use chrono::{DateTime, SubsecRound as _, Utc};
use sqlx::{PgConnection, PgExecutor};
use wmslink_platform::nats::Subjects;
use wmslink_platform::outbox::{self, OutboxMessage};

use crate::events;
use crate::state_machine::{Input, Refused, Status, transition};

impl TryFrom<String> for Status {
    type Error = UnknownStatus;
    fn try_from(raw: String) -> Result<Self, UnknownStatus> {
        Status::parse(&raw).ok_or(UnknownStatus(raw))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown shipping status '{0}' in the database")]
pub struct UnknownStatus(String);

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ShipmentRow {
    pub shop_id: String,
    pub order_no: String,
    #[sqlx(try_from = "String")]
    pub status: Status,
    pub order_revision: i64,
    pub order_snapshot: Vec<u8>,
    pub order_status_code: String,
    pub order_date: Option<DateTime<Utc>>,
    pub content_fingerprint: String,
    pub sent_revision: Option<i64>,
    pub sent_fingerprint: Option<String>,
    pub wms_order_id: Option<i64>,
    pub wms_status_id: Option<i32>,
    pub wms_status_name: Option<String>,
    pub wms_updated_at: Option<DateTime<Utc>>,
    pub tracking_code: Option<String>,
    pub shipped_date: Option<String>,
    pub edited_after_sending: bool,
    pub edited_revision: Option<i64>,
    pub cancelled_in_wms_unrequested: bool,
    pub cancel_pending: bool,
    pub cancel_rejected: bool,
    pub last_error: Option<String>,
    pub queued_at: Option<DateTime<Utc>>,
    /// Sent with an unknown outcome and never found since: may exist in the WMS.
    pub possibly_in_wms: bool,
    /// Searches since the last claim that found nothing.
    pub doubt_searches: i32,
    /// Not searched before this (the WMS may still apply what it received).
    pub search_after: Option<DateTime<Utc>>,
    /// Bumped by every claim: the fence of the settle step.
    pub claim_token: i64,
    /// Failed cancel attempts in a row.
    pub cancel_attempts: i32,
    /// The cancel is not tried again before this.
    pub cancel_after: Option<DateTime<Utc>>,
    /// Cancelled in the cart, the cancel not sent (cancellations are not a data target).
    pub cancel_not_sent: bool,
    /// R5: adopted after the WMS refused it as a duplicate: registered outside wmslink.
    pub registered_outside_wmslink: bool,
    /// The W3C traceparent of the event that last stored the snapshot (the registration
    /// continues its trace).
    pub trace_context: Option<String>,
    pub sequence: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Built by [`ShipmentRow::new`] and not inserted yet.
    #[sqlx(skip)]
    pub unsaved: bool,
}

impl ShipmentRow {
    /// A row not yet in the database.
    pub fn new(shop_id: &str, order_no: &str) -> Self {
        // Microseconds, as PostgreSQL keeps it: a row kept in memory after its insert
        // ([`Locked::put_back`]) equals the row read back.
        let now = Utc::now().trunc_subsecs(6);
        Self {
            shop_id: shop_id.to_owned(),
            order_no: order_no.to_owned(),
            status: Status::NotSent,
            order_revision: 0,
            order_snapshot: Vec::new(),
            order_status_code: String::new(),
            order_date: None,
            content_fingerprint: String::new(),
            sent_revision: None,
            sent_fingerprint: None,
            wms_order_id: None,
            wms_status_id: None,
            wms_status_name: None,
            wms_updated_at: None,
            tracking_code: None,
            shipped_date: None,
            edited_after_sending: false,
            edited_revision: None,
            cancelled_in_wms_unrequested: false,
            cancel_pending: false,
            cancel_rejected: false,
            last_error: None,
            queued_at: None,
            possibly_in_wms: false,
            doubt_searches: 0,
            search_after: None,
            claim_token: 0,
            cancel_attempts: 0,
            cancel_after: None,
            cancel_not_sent: false,
            registered_outside_wmslink: false,
            trace_context: None,
            sequence: 0,
            created_at: now,
            updated_at: now,
            unsaved: true,
        }
    }

    /// Applies `input` through the state machine and returns the history line for it.
    pub fn apply(&mut self, input: Input, reason: impl Into<String>) -> Result<History, Refused> {
        let from = self.status;
        let to = transition(from, input)?;
        self.status = to;
        if to == Status::Queued {
            self.queued_at = Some(Utc::now());
        }
        Ok(History::state_change(from, to, reason))
    }
}

/// One history line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    pub kind: &'static str,
    pub from_status: String,
    pub to_status: String,
    pub reason: String,
    pub request_summary: String,
    pub response_summary: String,
    pub error: String,
}

impl History {
    pub const STATE_CHANGE: &'static str = "state_change";
    pub const WMS_CALL: &'static str = "wms_call";
    pub const NOTE: &'static str = "note";

    pub fn state_change(from: Status, to: Status, reason: impl Into<String>) -> Self {
        Self {
            kind: Self::STATE_CHANGE,
            from_status: from.as_str().to_owned(),
            to_status: to.as_str().to_owned(),
            reason: reason.into(),
            ..Self::default()
        }
    }

    pub fn wms_call(
        request: impl Into<String>,
        response: impl Into<String>,
        error: impl Into<String>,
    ) -> Self {
        Self {
            kind: Self::WMS_CALL,
            request_summary: request.into(),
            response_summary: response.into(),
            error: error.into(),
            ..Self::default()
        }
    }

    pub fn note(reason: impl Into<String>) -> Self {
        Self {
            kind: Self::NOTE,
            reason: reason.into(),
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct HistoryRow {
    pub at: DateTime<Utc>,
    pub kind: String,
    pub from_status: String,
    pub to_status: String,
    pub reason: String,
    pub request_summary: String,
    pub response_summary: String,
    pub error: String,
}

// sqlx 0.9 takes `&'static str` queries: the column list is spelled out in each.
macro_rules! select_shipments {
    ($rest:literal) => {
        concat!(
            "SELECT shop_id, order_no, status, order_revision, order_snapshot, order_status_code, \
             order_date, content_fingerprint, sent_revision, sent_fingerprint, wms_order_id, wms_status_id, \
             wms_status_name, wms_updated_at, tracking_code, shipped_date, edited_after_sending, \
             edited_revision, cancelled_in_wms_unrequested, cancel_pending, cancel_rejected, last_error, \
             queued_at, possibly_in_wms, doubt_searches, search_after, claim_token, \
             cancel_attempts, cancel_after, cancel_not_sent, trace_context, sequence, created_at, updated_at, \
             registered_outside_wmslink \
             FROM shipments ",
            $rest
        )
    };
}

/// One shipment, unlocked.
pub async fn get<'e>(
    executor: impl PgExecutor<'e>,
    shop_id: &str,
    order_no: &str,
) -> Result<Option<ShipmentRow>, sqlx::Error> {
    sqlx::query_as(select_shipments!("WHERE shop_id = $1 AND order_no = $2"))
        .bind(shop_id)
        .bind(order_no)
        .fetch_optional(executor)
        .await
}

/// One shipment, locked for the rest of the transaction.
pub async fn lock(
    conn: &mut PgConnection,
    shop_id: &str,
    order_no: &str,
) -> Result<Option<ShipmentRow>, sqlx::Error> {
    sqlx::query_as(select_shipments!(
        "WHERE shop_id = $1 AND order_no = $2 FOR UPDATE"
    ))
    .bind(shop_id)
    .bind(order_no)
    .fetch_optional(conn)
    .await
}

/// Shipments a transaction locked together up front ([`Locked::lock_all`], one statement for
/// all of them, in key order), then handed out and put back as it changes them; one it did not
/// lock up front is locked when taken.
#[derive(Debug, Default)]
pub struct Locked {
    rows: HashMap<(String, String), Option<ShipmentRow>>,
}

impl Locked {
    /// Locks the shipments of `keys` (shop, order number) that exist, in key order (as every
    /// writer does, so writers never deadlock), and remembers the ones that do not.
    pub async fn lock_all(
        conn: &mut PgConnection,
        keys: &[(&str, &str)],
    ) -> Result<Self, sqlx::Error> {
        let shops: Vec<&str> = keys.iter().map(|(shop, _)| *shop).collect();
        let order_nos: Vec<&str> = keys.iter().map(|(_, order_no)| *order_no).collect();
        let found: Vec<ShipmentRow> = sqlx::query_as(select_shipments!(
            "WHERE (shop_id, order_no) IN (SELECT * FROM UNNEST($1::text[], $2::text[]))
             ORDER BY shop_id, order_no FOR UPDATE"
        ))
        .bind(&shops)
        .bind(&order_nos)
        .fetch_all(conn)
        .await?;
        let mut rows: HashMap<(String, String), Option<ShipmentRow>> = keys
            .iter()
            .map(|(shop, order_no)| (((*shop).to_owned(), (*order_no).to_owned()), None))
            .collect();
        for row in found {
            rows.insert((row.shop_id.clone(), row.order_no.clone()), Some(row));
        }
        Ok(Self { rows })
    }

    /// The shipment as this transaction last left it (`None`: not stored), locked.
    pub async fn take(
        &mut self,
        conn: &mut PgConnection,
        shop_id: &str,
        order_no: &str,
    ) -> Result<Option<ShipmentRow>, sqlx::Error> {
        match self.rows.remove(&(shop_id.to_owned(), order_no.to_owned())) {
            Some(known) => Ok(known),
            None => lock(conn, shop_id, order_no).await,
        }
    }

    /// Gives back a shipment this transaction saved ([`Appends::save`]), for the next message of the
    /// same order. One not given back (a message refused half-way) is read again when taken.
    pub fn put_back(&mut self, row: ShipmentRow) {
        self.rows
            .insert((row.shop_id.clone(), row.order_no.clone()), Some(row));
    }
}

/// The oldest queued shipments of a shop, locked (others skip them).
pub async fn lock_queued(
    conn: &mut PgConnection,
    shop_id: &str,
    limit: i64,
) -> Result<Vec<ShipmentRow>, sqlx::Error> {
    sqlx::query_as(select_shipments!(
        "WHERE shop_id = $1 AND status = 'QUEUED' ORDER BY queued_at, order_no LIMIT $2 FOR UPDATE SKIP LOCKED"
    ))
    .bind(shop_id)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Shipments of a shop in `status`, oldest change first (unlocked: the sender owns them).
pub async fn in_status<'e>(
    executor: impl PgExecutor<'e>,
    shop_id: &str,
    status: Status,
    limit: i64,
) -> Result<Vec<ShipmentRow>, sqlx::Error> {
    sqlx::query_as(select_shipments!(
        "WHERE shop_id = $1 AND status = $2 ORDER BY updated_at, order_no LIMIT $3"
    ))
    .bind(shop_id)
    .bind(status.as_str())
    .bind(limit)
    .fetch_all(executor)
    .await
}

/// The order numbers and claim tokens of a shop's shipments in `status` whose search is due
/// (`search_after` passed or unset), the longest waiting first (unlocked: the sender owns
/// them). Only the keys: a snapshot (up to 1 MiB) is not read just to be dropped.
pub async fn search_due<'e>(
    executor: impl PgExecutor<'e>,
    shop_id: &str,
    status: Status,
    limit: i64,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT order_no, claim_token FROM shipments
          WHERE shop_id = $1 AND status = $2 AND (search_after IS NULL OR search_after <= now())
          ORDER BY search_after NULLS FIRST, order_no LIMIT $3",
    )
    .bind(shop_id)
    .bind(status.as_str())
    .bind(limit)
    .fetch_all(executor)
    .await
}

/// The order numbers and WMS order ids of a shop's `CANCEL_REQUESTED` shipments whose next
/// step is due: a known WMS order whose cancel back-off is over, or an order possibly in the
/// WMS whose search is due; the longest waiting first (unlocked: the sender owns them). Only
/// the keys: a snapshot is not read just to be dropped.
pub async fn cancels_due<'e>(
    executor: impl PgExecutor<'e>,
    shop_id: &str,
    limit: i64,
) -> Result<Vec<(String, Option<i64>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT order_no, wms_order_id FROM shipments
          WHERE shop_id = $1 AND status = 'CANCEL_REQUESTED'
            AND COALESCE(CASE WHEN wms_order_id IS NULL THEN search_after ELSE cancel_after END,
                         '-infinity') <= now()
          ORDER BY updated_at, order_no LIMIT $2",
    )
    .bind(shop_id)
    .bind(limit)
    .fetch_all(executor)
    .await
}

/// When the shop's next search of a shipment in doubt (`SENDING`, or `CANCEL_REQUESTED`
/// without a WMS order id) or next cancel attempt is due, if one is still waiting.
pub async fn next_search<'e>(
    executor: impl PgExecutor<'e>,
    shop_id: &str,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT min(at) FROM (
           SELECT search_after AS at FROM shipments WHERE shop_id = $1
              AND (status = 'SENDING' OR (status = 'CANCEL_REQUESTED' AND wms_order_id IS NULL))
           UNION ALL
           SELECT cancel_after FROM shipments WHERE shop_id = $1 AND status = 'CANCEL_REQUESTED'
              AND wms_order_id IS NOT NULL
         ) due WHERE at > now()",
    )
    .bind(shop_id)
    .fetch_one(executor)
    .await
}

/// Locks the given shipments of a shop, in a stable order (no deadlocks between writers).
pub async fn lock_many(
    conn: &mut PgConnection,
    shop_id: &str,
    order_nos: &[String],
) -> Result<Vec<ShipmentRow>, sqlx::Error> {
    sqlx::query_as(select_shipments!(
        "WHERE shop_id = $1 AND order_no = ANY($2) ORDER BY order_no FOR UPDATE"
    ))
    .bind(shop_id)
    .bind(order_nos)
    .fetch_all(conn)
    .await
}

/// E1/E2: up to `limit` never-sent shipments of a shop whose order is in one of
/// `status_codes` and whose order date is at or after `since`, locked.
pub async fn lock_not_sent_due(
    conn: &mut PgConnection,
    shop_id: &str,
    status_codes: &[String],
    since: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<ShipmentRow>, sqlx::Error> {
    sqlx::query_as(select_shipments!(
        "WHERE shop_id = $1 AND status = 'NOT_SENT' AND order_status_code = ANY($2)
           AND order_date >= $3 ORDER BY order_date, order_no LIMIT $4 FOR UPDATE SKIP LOCKED"
    ))
    .bind(shop_id)
    .bind(status_codes)
    .bind(since)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Shipments of a shop that were not cancelled though their stored cart status is one of
/// `cancel_codes` (an event handled under an older catalog, or lost), locked; at most
/// `limit`, skipping rows others hold. Rows whose cancel was recorded as not sent are left.
pub async fn lock_cancelled_in_cart(
    conn: &mut PgConnection,
    shop_id: &str,
    cancel_codes: &[String],
    limit: i64,
) -> Result<Vec<ShipmentRow>, sqlx::Error> {
    sqlx::query_as(select_shipments!(
        "WHERE shop_id = $1 AND status IN ('QUEUED', 'ERROR', 'SENT', 'SHIPPED')
           AND order_status_code = ANY($2) AND NOT cancel_not_sent
         ORDER BY order_no LIMIT $3 FOR UPDATE SKIP LOCKED"
    ))
    .bind(shop_id)
    .bind(cancel_codes)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Up to `limit` `ERROR` shipments of a shop, locked (others skip them).
pub async fn lock_errors(
    conn: &mut PgConnection,
    shop_id: &str,
    limit: i64,
) -> Result<Vec<ShipmentRow>, sqlx::Error> {
    sqlx::query_as(select_shipments!(
        "WHERE shop_id = $1 AND status = 'ERROR' ORDER BY order_no LIMIT $2 FOR UPDATE SKIP LOCKED"
    ))
    .bind(shop_id)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Every shop with work for the sender (queued, in doubt, cancel requested), from the
/// partial indexes (never a scan of every shipment).
pub async fn shops_with_work<'e>(
    executor: impl PgExecutor<'e>,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT shop_id FROM shipments WHERE status = 'QUEUED'
         UNION
         SELECT shop_id FROM shipments WHERE status IN ('SENDING', 'CANCEL_REQUESTED')
         ORDER BY shop_id",
    )
    .fetch_all(executor)
    .await
}

/// What the rebuild sweep compares of a shipment with order-events' list (no snapshot).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KnownOrder {
    pub order_no: String,
    #[sqlx(try_from = "String")]
    pub status: Status,
    pub order_revision: i64,
    pub order_status_code: String,
    pub content_fingerprint: String,
    pub cancel_pending: bool,
    pub sent_fingerprint: Option<String>,
    pub edited_revision: Option<i64>,
    pub possibly_in_wms: bool,
    pub cancel_not_sent: bool,
}

/// The given shipments of a shop, without their snapshots.
pub async fn known_orders<'e>(
    executor: impl PgExecutor<'e>,
    shop_id: &str,
    order_nos: &[String],
) -> Result<Vec<KnownOrder>, sqlx::Error> {
    sqlx::query_as(
        "SELECT order_no, status, order_revision, order_status_code, content_fingerprint,
                cancel_pending, sent_fingerprint, edited_revision, possibly_in_wms, cancel_not_sent
           FROM shipments WHERE shop_id = $1 AND order_no = ANY($2)",
    )
    .bind(shop_id)
    .bind(order_nos)
    .fetch_all(executor)
    .await
}

/// Statuses of the given shipments of a shop.
pub async fn statuses_of<'e>(
    executor: impl PgExecutor<'e>,
    shop_id: &str,
    order_nos: &[String],
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT order_no, status FROM shipments WHERE shop_id = $1 AND order_no = ANY($2)",
    )
    .bind(shop_id)
    .bind(order_nos)
    .fetch_all(executor)
    .await
}

/// A shop's shipments that may be in the WMS without proof either way (`SENDING`, or marked
/// possibly in the WMS), and its cancellations not settled (`CANCEL_REQUESTED`).
pub async fn in_flight<'e>(
    executor: impl PgExecutor<'e>,
    shop_id: &str,
) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'SENDING' OR possibly_in_wms),
                count(*) FILTER (WHERE status = 'CANCEL_REQUESTED')
           FROM shipments
          WHERE shop_id = $1 AND (status IN ('SENDING', 'CANCEL_REQUESTED') OR possibly_in_wms)",
    )
    .bind(shop_id)
    .fetch_one(executor)
    .await
}

/// Order numbers of a shop's shipments in `status`.
pub async fn order_nos_in<'e>(
    executor: impl PgExecutor<'e>,
    shop_id: &str,
    status: Status,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT order_no FROM shipments WHERE shop_id = $1 AND status = $2")
        .bind(shop_id)
        .bind(status.as_str())
        .fetch_all(executor)
        .await
}

/// Every shop with `QUEUED` shipments: how many, and the age in seconds of the oldest
/// `queued_at`. One grouped scan of the `shipments_queued` partial index.
pub async fn queue_by_shop<'e>(
    executor: impl PgExecutor<'e>,
) -> Result<Vec<(String, i64, f64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT shop_id, count(*),
                COALESCE(EXTRACT(EPOCH FROM (now() - min(queued_at)))::float8, 0)
           FROM shipments WHERE status = 'QUEUED' GROUP BY shop_id",
    )
    .fetch_all(executor)
    .await
}

/// Whether a shop has work for the sender (queued, in doubt, cancel requested).
pub async fn has_work<'e>(
    executor: impl PgExecutor<'e>,
    shop_id: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM shipments WHERE shop_id = $1
           AND status IN ('QUEUED', 'SENDING', 'CANCEL_REQUESTED'))",
    )
    .bind(shop_id)
    .fetch_one(executor)
    .await
}

pub async fn history<'e>(
    executor: impl PgExecutor<'e>,
    shop_id: &str,
    order_no: &str,
) -> Result<Vec<HistoryRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT at, kind, from_status, to_status, reason, request_summary, response_summary, error
           FROM shipment_history WHERE shop_id = $1 AND order_no = $2 ORDER BY id",
    )
    .bind(shop_id)
    .bind(order_no)
    .fetch_all(executor)
    .await
}

/// Saves `row` (inserting it when new, failing if someone inserted it meanwhile), appends
/// `history`, and when `publish` is set bumps the row's sequence and writes
/// `ShipmentUpdated` to the outbox. All in the caller's transaction.
pub async fn persist(
    conn: &mut PgConnection,
    subjects: &Subjects,
    row: &mut ShipmentRow,
    history: &[History],
    publish: bool,
) -> Result<(), sqlx::Error> {
    let mut appends = Appends::new(subjects);
    appends.save(&mut *conn, row, history, publish).await?;
    appends.flush(conn).await
}

/// The writes of a transaction that changes several shipments: each row is saved at once
/// ([`Appends::save`]), their history lines and `ShipmentUpdated` events wait and are inserted
/// by [`Appends::flush`] in two statements however many shipments it changed. Flush before the
/// commit, or commit with [`Appends::commit`].
#[derive(Debug)]
pub struct Appends<'a> {
    subjects: &'a Subjects,
    history: Vec<(String, String, History)>,
    events: Vec<OutboxMessage>,
}

impl<'a> Appends<'a> {
    pub fn new(subjects: &'a Subjects) -> Self {
        Self {
            subjects,
            history: Vec::new(),
            events: Vec::new(),
        }
    }

    /// As [`persist`], but the history and the event wait for the flush.
    pub async fn save(
        &mut self,
        conn: &mut PgConnection,
        row: &mut ShipmentRow,
        history: &[History],
        publish: bool,
    ) -> Result<(), sqlx::Error> {
        write_row(conn, row, publish).await?;
        self.history.extend(
            history
                .iter()
                .map(|line| (row.shop_id.clone(), row.order_no.clone(), line.clone())),
        );
        if publish {
            let message = events::shipment_updated(self.subjects, row).map_err(|err| {
                sqlx::Error::InvalidArgument(format!("shop id '{}': {err}", row.shop_id))
            })?;
            self.events.push(message);
        }
        Ok(())
    }

    /// Inserts what was appended, in the order it was (history ids and outbox ids keep it).
    pub async fn flush(&mut self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        if !self.history.is_empty() {
            insert_history(&mut *conn, &self.history).await?;
            self.history.clear();
        }
        if !self.events.is_empty() {
            outbox::enqueue_many(conn, &self.events).await?;
            self.events.clear();
        }
        Ok(())
    }

    /// Flushes, then commits `tx`.
    pub async fn commit(
        mut self,
        mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    ) -> Result<(), sqlx::Error> {
        self.flush(&mut tx).await?;
        tx.commit().await
    }
}

/// Saves `row` alone (see [`persist`]): its sequence bumped when `publish` is set.
async fn write_row(
    conn: &mut PgConnection,
    row: &mut ShipmentRow,
    publish: bool,
) -> Result<(), sqlx::Error> {
    if publish {
        row.sequence += 1;
    }
    row.updated_at = Utc::now();
    if let Some(error) = row.last_error.as_mut() {
        cap(error, MAX_ERROR_CHARS);
    }
    let insert = concat!(
        "INSERT INTO shipments (",
        "shop_id, order_no, status, order_revision, order_snapshot, order_status_code, \
         order_date, content_fingerprint, sent_revision, sent_fingerprint, wms_order_id, wms_status_id, \
         wms_status_name, wms_updated_at, tracking_code, shipped_date, edited_after_sending, \
         edited_revision, cancelled_in_wms_unrequested, cancel_pending, cancel_rejected, last_error, \
         queued_at, sequence, created_at, updated_at, possibly_in_wms, doubt_searches, \
         search_after, claim_token, cancel_attempts, cancel_after, cancel_not_sent, trace_context, \
         registered_outside_wmslink",
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
                   $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, $34,
                   $35)"
    );
    // $25 (created_at) is not changed by an update.
    let update = "UPDATE shipments SET
            status = $3, order_revision = $4, order_snapshot = $5, order_status_code = $6,
            order_date = $7, content_fingerprint = $8, sent_revision = $9, sent_fingerprint = $10,
            wms_order_id = $11, wms_status_id = $12, wms_status_name = $13, wms_updated_at = $14,
            tracking_code = $15, shipped_date = $16, edited_after_sending = $17,
            edited_revision = $18, cancelled_in_wms_unrequested = $19, cancel_pending = $20,
            cancel_rejected = $21, last_error = $22, queued_at = $23, sequence = $24,
            updated_at = $26, possibly_in_wms = $27, doubt_searches = $28, search_after = $29,
            claim_token = $30, cancel_attempts = $31, cancel_after = $32, cancel_not_sent = $33,
            trace_context = $34, registered_outside_wmslink = $35
          WHERE shop_id = $1 AND order_no = $2 AND created_at = $25";
    // A new row is inserted, never upserted: two first events of one order racing each
    // other make the later one fail (and be redelivered to see the row), so neither can
    // overwrite the other's snapshot.
    let query = if row.unsaved { insert } else { update };
    let done = sqlx::query(query)
        .bind(&row.shop_id)
        .bind(&row.order_no)
        .bind(row.status.as_str())
        .bind(row.order_revision)
        .bind(&row.order_snapshot)
        .bind(&row.order_status_code)
        .bind(row.order_date)
        .bind(&row.content_fingerprint)
        .bind(row.sent_revision)
        .bind(&row.sent_fingerprint)
        .bind(row.wms_order_id)
        .bind(row.wms_status_id)
        .bind(&row.wms_status_name)
        .bind(row.wms_updated_at)
        .bind(&row.tracking_code)
        .bind(&row.shipped_date)
        .bind(row.edited_after_sending)
        .bind(row.edited_revision)
        .bind(row.cancelled_in_wms_unrequested)
        .bind(row.cancel_pending)
        .bind(row.cancel_rejected)
        .bind(&row.last_error)
        .bind(row.queued_at)
        .bind(row.sequence)
        .bind(row.created_at)
        .bind(row.updated_at)
        .bind(row.possibly_in_wms)
        .bind(row.doubt_searches)
        .bind(row.search_after)
        .bind(row.claim_token)
        .bind(row.cancel_attempts)
        .bind(row.cancel_after)
        .bind(row.cancel_not_sent)
        .bind(&row.trace_context)
        .bind(row.registered_outside_wmslink)
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() != 1 {
        return Err(sqlx::Error::RowNotFound);
    }
    row.unsaved = false;
    Ok(())
}

/// Longest `last_error` kept (consumers of `ShipmentUpdated` bound their text fields).
pub const MAX_ERROR_CHARS: usize = 1_000;
/// Longest text of a history field.
pub const MAX_HISTORY_CHARS: usize = 4_000;

/// Cuts `text` to `max` characters, marking the cut.
pub fn cap(text: &mut String, max: usize) {
    if let Some((index, _)) = text.char_indices().nth(max) {
        text.truncate(index);
        text.push('…');
    }
}

/// Inserts history lines of any shipments, in their order.
async fn insert_history(
    conn: &mut PgConnection,
    lines: &[(String, String, History)],
) -> Result<(), sqlx::Error> {
    let column = |f: fn(&History) -> &String| {
        lines
            .iter()
            .map(|(_, _, line)| {
                let mut text = f(line).clone();
                cap(&mut text, MAX_HISTORY_CHARS);
                text
            })
            .collect::<Vec<_>>()
    };
    let shops: Vec<&str> = lines.iter().map(|(shop, _, _)| shop.as_str()).collect();
    let order_nos: Vec<&str> = lines
        .iter()
        .map(|(_, order_no, _)| order_no.as_str())
        .collect();
    let kinds: Vec<&str> = lines.iter().map(|(_, _, line)| line.kind).collect();
    sqlx::query(
        "INSERT INTO shipment_history
            (shop_id, order_no, kind, from_status, to_status, reason, request_summary, response_summary, error)
         SELECT s, o, k, f, t, r, q, p, e
           FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                       $7::text[], $8::text[], $9::text[])
             WITH ORDINALITY AS h(s, o, k, f, t, r, q, p, e, n)
          ORDER BY n",
    )
    .bind(&shops)
    .bind(&order_nos)
    .bind(&kinds)
    .bind(column(|h| &h.from_status))
    .bind(column(|h| &h.to_status))
    .bind(column(|h| &h.reason))
    .bind(column(|h| &h.request_summary))
    .bind(column(|h| &h.response_summary))
    .bind(column(|h| &h.error))
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_cuts_on_characters_and_marks_the_cut() {
        let mut short = "エラー".to_owned();
        cap(&mut short, 3);
        assert_eq!(short, "エラー");
        let mut long = "エラーです".to_owned();
        cap(&mut long, 3);
        assert_eq!(long, "エラー…");
    }
}
