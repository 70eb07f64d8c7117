//! In-memory state: accounts (one per access key), their orders, faults and counters.
//!
//! Everything lives in memory and is lost when the process stops. Each account has its own
//! mutex, never held across an `.await`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use chrono::{DateTime, FixedOffset, NaiveDate, Timelike, Utc};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use crate::config::{SimConfig, SimRateLimit};

/// The JST offset the WMS uses.
/// Now, in milliseconds since the Unix epoch.
pub(crate) fn unix_millis() -> i64 {
    Utc::now().timestamp_millis()
}

pub fn jst() -> FixedOffset {
    FixedOffset::east_opt(9 * 3600).expect("+09:00 is a valid offset")
}

/// Now in JST, whole seconds (the WMS's precision).
pub fn now_jst() -> DateTime<FixedOffset> {
    let now = Utc::now().with_timezone(&jst());
    now.with_nanosecond(0).unwrap_or(now)
}

/// Documented `status_id` names.
pub fn status_name(status_id: i32) -> &'static str {
    match status_id {
        5 => "同梱済",
        20 => "処理中",
        30 => "要確認",
        31 => "入金確認",
        32 => "住所不備",
        33 => "備考確認",
        34 => "後払いデータ",
        40 => "入荷待ち",
        50 => "出荷待ち",
        55 => "引当前戻し後出荷待ち",
        60 => "在庫確保",
        80 => "未引当",
        90 => "出荷準備中/出荷作業中",
        95 => "出荷準備中(梱包待ち)",
        100 => "出荷検品済",
        _ => "",
    }
}

/// Whether `status_id` is a documented status.
pub fn is_known_status(status_id: i32) -> bool {
    !status_name(status_id).is_empty()
}

/// Statuses in which cancel and update are refused.
pub fn is_late_status(status_id: i32) -> bool {
    matches!(status_id, 90 | 95 | 100)
}

/// The WMS endpoints, for faults and counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `GET /order/search`
    Search,
    /// `GET /order/{id}`
    Get,
    /// `POST /order/`
    Register,
    /// `PUT /order/`
    Update,
    /// `GET /order_cancel/{id}`
    Cancel,
}

impl Endpoint {
    /// The name used in counters and fault filters.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Search => "search",
            Self::Get => "get",
            Self::Register => "register",
            Self::Update => "update",
            Self::Cancel => "cancel",
        }
    }
}

/// Faults injected for one key. Ratios are applied deterministically: with ratio `r`, the
/// n-th matching request (n = 1, 2, …) is hit when `floor(n·r) > floor((n-1)·r)`, so 0.5 hits
/// every second request and 1.0 every request. Each request gets at most one fault, tried in
/// the order of the fields below (after `latency_ms`, which is always added).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Share of requests answered `500` with an `NG` envelope, not applied.
    pub error_500_ratio: f64,
    /// Share of requests answered `200` with `result: "NG"` for the whole call, not applied
    /// (a transient refusal: maintenance, busy).
    pub ng_ratio: f64,
    /// The error code of those `NG` answers. Default `E_SIM_FAULT`.
    pub ng_code: String,
    /// Latency added before handling, milliseconds.
    pub latency_ms: u64,
    /// Apply-then-500: share of requests that are applied, then answered `500` with an `NG`
    /// envelope (`E_SIM_INTERNAL`), as a server failing after its work was done.
    pub apply_then_500_ratio: f64,
    /// Apply-then-timeout: the request is applied, then the answer is held back this many
    /// milliseconds (set it above the client's timeout). 0 = off.
    pub apply_then_delay_ms: u64,
    /// Share of requests that get `apply_then_delay_ms`. Default 1.0.
    pub apply_then_delay_ratio: f64,
    /// Apply after the client gave up: the request is applied this many milliseconds after it
    /// arrived, in the background, whether or not the client is still waiting; the answer
    /// (if anyone still listens) comes after. Set it above the client's timeout: the client
    /// times out, a search right after finds nothing, and the request takes effect later.
    /// 0 = off.
    pub apply_late_ms: u64,
    /// Share of requests that get `apply_late_ms`. Default 1.0.
    pub apply_late_ratio: f64,
    /// A proxy's body limit in front of the WMS: a registration or update whose body is
    /// larger than this many bytes is refused with `413` and an HTML page (no `NG`
    /// envelope), before the WMS sees it (no rate-limit token, no request counted,
    /// `faults_413` counted). Applies whatever `endpoints` says. 0 = off.
    pub body_limit_bytes: u64,
    /// Endpoints the faults apply to; empty = all.
    pub endpoints: Vec<Endpoint>,
    /// Answer searches in `update_date` order (then `order_id`) instead of `order_id` order:
    /// the WMS documents no order, and offset paging over a moving `update_date` search skips
    /// orders only under this one. Not a fault: applies whatever `endpoints` says.
    pub sort_by_update_date: bool,
    /// Orders changing during a pass: after the n-th search answered since these faults were
    /// set (n = this value; 0 = off), the first `touch_count` orders of that answer are
    /// updated (`update_date` moves past every other order's, so they move to the end of an
    /// `update_date`-ordered answer). Applies whatever `endpoints` says.
    pub touch_after_search: u64,
    /// How many orders of that answer are updated. Default 1.
    pub touch_count: usize,
}

/// The error code of injected `NG` answers unless [`Faults::ng_code`] says otherwise.
pub const DEFAULT_NG_CODE: &str = "E_SIM_FAULT";

impl Default for Faults {
    fn default() -> Self {
        Self {
            error_500_ratio: 0.0,
            ng_ratio: 0.0,
            ng_code: DEFAULT_NG_CODE.to_owned(),
            latency_ms: 0,
            apply_then_500_ratio: 0.0,
            apply_then_delay_ms: 0,
            apply_then_delay_ratio: 1.0,
            apply_late_ms: 0,
            apply_late_ratio: 1.0,
            body_limit_bytes: 0,
            endpoints: Vec::new(),
            sort_by_update_date: false,
            touch_after_search: 0,
            touch_count: 1,
        }
    }
}

/// Per-key counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counters {
    /// Rows registered (an `order_id` handed out).
    pub registrations_accepted: u64,
    /// Rows refused with `E_DUPLICATE`.
    pub duplicates_refused: u64,
    /// Rows refused by validation.
    pub rows_invalid: u64,
    /// Rows updated by `PUT /order/`.
    pub updates_accepted: u64,
    /// Rows of `PUT /order/` refused.
    pub updates_refused: u64,
    /// Orders cancelled (first cancel only).
    pub cancels: u64,
    /// Cancels of an already cancelled order (answered OK).
    pub cancels_repeated: u64,
    /// Cancels refused (`E_NOT_CANCELLABLE`).
    pub cancels_refused: u64,
    /// 429 answers sent.
    pub rate_limited: u64,
    /// Injected 500 answers.
    pub faults_500: u64,
    /// Injected NG answers.
    pub faults_ng: u64,
    /// Answers held back by apply-then-timeout.
    pub faults_delayed: u64,
    /// Requests applied, then answered 500 (apply-then-500).
    pub faults_applied_500: u64,
    /// Requests applied late, after the client may have given up (apply-late).
    pub faults_applied_late: u64,
    /// Bodies refused with 413 by the simulated proxy.
    pub faults_413: u64,
    /// Requests received with this key, by endpoint (`search`, `get`, `register`, `update`,
    /// `cancel`), 429s included.
    pub requests: BTreeMap<String, u64>,
}

/// What the WMS received for one `order_no` in registrations (`POST /order/`), so tests can
/// count what was **sent**, not only what was accepted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OrderNoCounters {
    /// Registration rows carrying this `order_no` that reached the WMS: every row of every
    /// registration request past the key check and the rate limit, whatever happened next
    /// (accepted, refused, a 500 or `NG` fault, applied late). A 429 or a proxy's 413 is
    /// refused before the WMS reads the body: not counted.
    pub received: u64,
    /// Rows registered (an `order_id` handed out).
    pub accepted: u64,
    /// Rows refused by the duplicate check (`E_DUPLICATE`).
    pub duplicates_refused: u64,
    /// When the first row with this `order_no` was registered (an `order_id` handed out), in
    /// milliseconds since the Unix epoch on the simulator's clock; `None` until then. A
    /// benchmark on the same machine takes latency from the cart's message to here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_accepted_unix_ms: Option<i64>,
}

/// An order as the WMS returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimOrder {
    /// The WMS id.
    pub order_id: i64,
    /// The cart's order number.
    pub order_no: String,
    /// Status.
    pub status_id: i32,
    /// Status name.
    pub status_name: String,
    /// 1 when cancelled.
    pub cancel_flag: u8,
    /// 1 when shipped.
    pub shipped_flag: u8,
    /// Carrier status.
    pub shipping_status_id: Option<i32>,
    /// Tracking number.
    pub tracking_code: Option<String>,
    /// Shipping date.
    pub shipping_date: Option<NaiveDate>,
    /// Last change (JST, whole seconds).
    pub update_date: DateTime<FixedOffset>,
}

impl SimOrder {
    fn set_status(&mut self, status_id: i32) {
        self.status_id = status_id;
        self.status_name = status_name(status_id).to_owned();
    }

    fn ship(&mut self) {
        self.shipped_flag = 1;
        self.tracking_code = Some(format!("SIM{:010}", self.order_id));
        self.shipping_date = Some(now_jst().date_naive());
        self.shipping_status_id = Some(5);
    }

    /// Neither cancelled nor shipped.
    pub fn is_open(&self) -> bool {
        self.cancel_flag == 0 && self.shipped_flag == 0
    }
}

/// Fields a control call may set on an order (`PATCH /_sim/keys/{key}/orders/{id}`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OrderPatch {
    /// New status.
    pub status_id: Option<i32>,
    /// 0 or 1.
    pub cancel_flag: Option<u8>,
    /// 0 or 1. Setting 1 without tracking code/date fills them in.
    pub shipped_flag: Option<u8>,
    /// Carrier status.
    pub shipping_status_id: Option<i32>,
    /// Tracking number.
    pub tracking_code: Option<String>,
    /// Shipping date.
    pub shipping_date: Option<NaiveDate>,
}

/// Options of a key added at runtime.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KeyOptions {
    /// Rate limit of this key; `None` = the configured default.
    pub rate_limit: Option<SimRateLimit>,
}

/// One key in `GET /_sim/keys`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeySummary {
    /// The key with all but its first 4 characters masked.
    pub key_hint: String,
    /// Orders held.
    pub orders: usize,
    /// Its rate limit.
    pub rate_limit: SimRateLimit,
}

/// Why a control call failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ControlError {
    /// No such key.
    #[error("unknown access key")]
    UnknownKey,
    /// No such order for this key.
    #[error("order {0} not found for this key")]
    UnknownOrder(i64),
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
}

pub(crate) struct OrderRecord {
    pub(crate) order: SimOrder,
    pub(crate) row: Value,
    next_step_at: Option<Instant>,
}

pub(crate) struct Account {
    data: Mutex<AccountData>,
}

pub(crate) struct AccountData {
    pub(crate) orders: BTreeMap<i64, OrderRecord>,
    pub(crate) by_no: HashMap<String, Vec<i64>>,
    schedule: BinaryHeap<Reverse<(Instant, i64)>>,
    faults: Faults,
    fault_seq: [u64; FAULT_KINDS],
    /// Searches answered since the faults were set (for `Faults::touch_after_search`).
    searches_answered: u64,
    pub(crate) counters: Counters,
    pub(crate) by_order_no: HashMap<String, OrderNoCounters>,
    limiter: Option<DefaultDirectRateLimiter>,
    rate_limit: SimRateLimit,
}

/// Faults drawn per request, each with its own sequence: 500, NG, apply-then-500,
/// apply-then-timeout, apply-late.
const FAULT_KINDS: usize = 5;

fn make_limiter(rl: &SimRateLimit) -> Result<Option<DefaultDirectRateLimiter>, ControlError> {
    if !rl.enabled {
        return Ok(None);
    }
    if !(rl.per_second.is_finite() && rl.per_second > 0.0) {
        return Err(ControlError::Invalid(
            "rate_limit.per_second must be > 0".to_owned(),
        ));
    }
    let burst = NonZeroU32::new(rl.burst)
        .ok_or_else(|| ControlError::Invalid("rate_limit.burst must be ≥ 1".to_owned()))?;
    let period = Duration::try_from_secs_f64(1.0 / rl.per_second)
        .map_err(|_| ControlError::Invalid("rate_limit.per_second out of range".to_owned()))?;
    let quota = Quota::with_period(period)
        .ok_or_else(|| ControlError::Invalid("rate_limit.per_second too large".to_owned()))?
        .allow_burst(burst);
    Ok(Some(DefaultDirectRateLimiter::direct(quota)))
}

impl AccountData {
    /// Whether searches are answered in `update_date` order ([`Faults::sort_by_update_date`]).
    pub(crate) fn sorts_by_update_date(&self) -> bool {
        self.faults.sort_by_update_date
    }

    /// Counts one answered search whose page held `page` (order ids, in answer order) and,
    /// when it is the one [`Faults::touch_after_search`] names, updates the first
    /// `touch_count` of them: each `update_date` moves past every other order's.
    pub(crate) fn search_answered(&mut self, page: &[i64]) {
        self.searches_answered += 1;
        if self.faults.touch_after_search == 0
            || self.searches_answered != self.faults.touch_after_search
        {
            return;
        }
        let latest = self
            .orders
            .values()
            .map(|rec| rec.order.update_date)
            .max()
            .unwrap_or_else(now_jst);
        let moved = now_jst().max(latest + chrono::Duration::seconds(1));
        for id in page.iter().take(self.faults.touch_count) {
            if let Some(rec) = self.orders.get_mut(id) {
                rec.order.update_date = moved;
            }
        }
    }

    fn new(rate_limit: SimRateLimit) -> Result<Self, ControlError> {
        Ok(Self {
            orders: BTreeMap::new(),
            by_no: HashMap::new(),
            schedule: BinaryHeap::new(),
            faults: Faults::default(),
            fault_seq: [0; FAULT_KINDS],
            searches_answered: 0,
            counters: Counters::default(),
            by_order_no: HashMap::new(),
            limiter: make_limiter(&rate_limit)?,
            rate_limit,
        })
    }

    fn clear(&mut self) {
        self.orders.clear();
        self.by_no.clear();
        self.schedule.clear();
        self.faults = Faults::default();
        self.fault_seq = [0; FAULT_KINDS];
        self.counters = Counters::default();
        self.by_order_no.clear();
        // A fresh bucket too.
        self.limiter = make_limiter(&self.rate_limit).unwrap_or(None);
    }

    /// The counters of one `order_no`.
    pub(crate) fn order_no_counters(&mut self, order_no: &str) -> &mut OrderNoCounters {
        self.by_order_no.entry(order_no.to_owned()).or_default()
    }

    /// The open (not cancelled) order with this `order_no`, if any.
    pub(crate) fn live_order_id(&self, order_no: &str) -> Option<i64> {
        self.by_no.get(order_no).and_then(|ids| {
            ids.iter().copied().find(|id| {
                self.orders
                    .get(id)
                    .is_some_and(|r| r.order.cancel_flag == 0)
            })
        })
    }
}

impl Account {
    pub(crate) fn lock(&self) -> MutexGuard<'_, AccountData> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the fault settings decided for one request.
#[derive(Debug, Default, Clone)]
pub(crate) struct FaultPlan {
    pub(crate) latency: Duration,
    pub(crate) fail_500: bool,
    /// An `NG` answer with this code, nothing applied.
    pub(crate) ng: Option<String>,
    pub(crate) fail_500_after_apply: bool,
    pub(crate) delay_after_apply: Option<Duration>,
    pub(crate) apply_late: Option<Duration>,
}

/// Why a request was not admitted.
pub(crate) enum Refusal {
    Unauthorized,
    RateLimited(Duration),
}

fn hit(seq: &mut u64, ratio: f64) -> bool {
    if ratio <= 0.0 {
        return false;
    }
    let ratio = ratio.min(1.0);
    *seq += 1;
    let n = *seq as f64;
    (n * ratio).floor() > ((n - 1.0) * ratio).floor()
}

/// The simulator's shared state. Obtain it with
/// [`Simulator::state`](crate::Simulator::state) or [`RunningSimulator::state`](crate::RunningSimulator::state);
/// every method here is also reachable over `/_sim/…`.
pub struct SimState {
    accounts: RwLock<HashMap<String, Arc<Account>>>,
    next_order_id: AtomicI64,
    unauthorized: AtomicU64,
    pub(crate) config: SimConfig,
}

impl SimState {
    pub(crate) fn new(config: SimConfig) -> anyhow::Result<Self> {
        let state = Self {
            accounts: RwLock::new(HashMap::new()),
            next_order_id: AtomicI64::new(config.first_order_id),
            unauthorized: AtomicU64::new(0),
            config,
        };
        for key in state.config.access_keys.clone() {
            state
                .add_key(&key, KeyOptions::default())
                .map_err(|e| anyhow::anyhow!("configured access key: {e}"))?;
        }
        Ok(state)
    }

    fn accounts(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Account>>> {
        self.accounts.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn account(&self, key: &str) -> Option<Arc<Account>> {
        self.accounts().get(key).cloned()
    }

    fn account_or_err(&self, key: &str) -> Result<Arc<Account>, ControlError> {
        self.account(key).ok_or(ControlError::UnknownKey)
    }

    /// Add an access key (its own account). Returns `true` when new; for an existing key only
    /// its rate limit is updated (orders kept).
    pub fn add_key(&self, key: &str, options: KeyOptions) -> Result<bool, ControlError> {
        if key.trim().is_empty() || key.chars().any(|c| c.is_control()) {
            return Err(ControlError::Invalid(
                "an access key must be non-empty printable text".to_owned(),
            ));
        }
        let rate_limit = options.rate_limit.unwrap_or(self.config.rate_limit);
        if let Some(existing) = self.account(key) {
            let mut data = existing.lock();
            data.limiter = make_limiter(&rate_limit)?;
            data.rate_limit = rate_limit;
            return Ok(false);
        }
        let account = Arc::new(Account {
            data: Mutex::new(AccountData::new(rate_limit)?),
        });
        let mut map = self.accounts.write().unwrap_or_else(|e| e.into_inner());
        Ok(map.insert(key.to_owned(), account).is_none())
    }

    /// Issue `new_key` for the account of `key` (a key rotation at the WMS: both keys reach the
    /// same orders, counters and faults until the old one is removed with
    /// [`remove_key`](Self::remove_key)). Returns `true` when `new_key` is new.
    pub fn issue_key(&self, key: &str, new_key: &str) -> Result<bool, ControlError> {
        if new_key.trim().is_empty() || new_key.chars().any(|c| c.is_control()) {
            return Err(ControlError::Invalid(
                "an access key must be non-empty printable text".to_owned(),
            ));
        }
        let account = self.account_or_err(key)?;
        let mut map = self.accounts.write().unwrap_or_else(|e| e.into_inner());
        Ok(map.insert(new_key.to_owned(), account).is_none())
    }

    /// Remove a key (refused from then on) and, unless another key was issued for its account
    /// ([`issue_key`](Self::issue_key)), its orders. Returns whether it existed.
    pub fn remove_key(&self, key: &str) -> bool {
        let mut map = self.accounts.write().unwrap_or_else(|e| e.into_inner());
        map.remove(key).is_some()
    }

    /// Every key (masked) with its order count and rate limit.
    pub fn keys(&self) -> Vec<KeySummary> {
        let mut out: Vec<KeySummary> = self
            .accounts()
            .iter()
            .map(|(key, account)| {
                let data = account.lock();
                let hint: String = key.chars().take(4).collect();
                KeySummary {
                    key_hint: format!("{hint}…"),
                    orders: data.orders.len(),
                    rate_limit: data.rate_limit,
                }
            })
            .collect();
        out.sort_by(|a, b| a.key_hint.cmp(&b.key_hint));
        out
    }

    /// Replace the faults of a key.
    pub fn set_faults(&self, key: &str, faults: Faults) -> Result<(), ControlError> {
        for (name, r) in [
            ("error_500_ratio", faults.error_500_ratio),
            ("ng_ratio", faults.ng_ratio),
            ("apply_then_500_ratio", faults.apply_then_500_ratio),
            ("apply_then_delay_ratio", faults.apply_then_delay_ratio),
            ("apply_late_ratio", faults.apply_late_ratio),
        ] {
            if !(0.0..=1.0).contains(&r) {
                return Err(ControlError::Invalid(format!(
                    "{name} must be within 0..=1"
                )));
            }
        }
        if faults.ng_code.trim().is_empty() {
            return Err(ControlError::Invalid(
                "ng_code must not be empty".to_owned(),
            ));
        }
        let account = self.account_or_err(key)?;
        let mut data = account.lock();
        data.faults = faults;
        data.fault_seq = [0; FAULT_KINDS];
        data.searches_answered = 0;
        Ok(())
    }

    /// The faults of a key.
    pub fn faults(&self, key: &str) -> Result<Faults, ControlError> {
        Ok(self.account_or_err(key)?.lock().faults.clone())
    }

    /// The counters of a key.
    pub fn counters(&self, key: &str) -> Result<Counters, ControlError> {
        Ok(self.account_or_err(key)?.lock().counters.clone())
    }

    /// What the WMS received, accepted and refused as duplicates per `order_no` in
    /// registrations (only order numbers it received).
    pub fn order_no_counters(
        &self,
        key: &str,
    ) -> Result<BTreeMap<String, OrderNoCounters>, ControlError> {
        Ok(self
            .account_or_err(key)?
            .lock()
            .by_order_no
            .iter()
            .map(|(no, c)| (no.clone(), c.clone()))
            .collect())
    }

    /// The counters of one `order_no` (all zero when it was never received).
    pub fn order_no_counter(
        &self,
        key: &str,
        order_no: &str,
    ) -> Result<OrderNoCounters, ControlError> {
        Ok(self
            .account_or_err(key)?
            .lock()
            .by_order_no
            .get(order_no)
            .cloned()
            .unwrap_or_default())
    }

    /// Requests refused with 401 (any key).
    pub fn unauthorized_count(&self) -> u64 {
        self.unauthorized.load(Ordering::Relaxed)
    }

    /// Every order of a key, by `order_id`.
    pub fn orders(&self, key: &str) -> Result<Vec<SimOrder>, ControlError> {
        Ok(self
            .account_or_err(key)?
            .lock()
            .orders
            .values()
            .map(|r| r.order.clone())
            .collect())
    }

    /// One order of a key.
    pub fn order(&self, key: &str, order_id: i64) -> Result<SimOrder, ControlError> {
        self.account_or_err(key)?
            .lock()
            .orders
            .get(&order_id)
            .map(|r| r.order.clone())
            .ok_or(ControlError::UnknownOrder(order_id))
    }

    /// The registered row (as received, with updates merged) of an order.
    pub fn order_row(&self, key: &str, order_id: i64) -> Result<Value, ControlError> {
        self.account_or_err(key)?
            .lock()
            .orders
            .get(&order_id)
            .map(|r| r.row.clone())
            .ok_or(ControlError::UnknownOrder(order_id))
    }

    /// Set an order's status and flags; `update_date` becomes now. A status of the flow
    /// keeps moving on (when the warehouse runs); any other status stops it there.
    pub fn patch_order(
        &self,
        key: &str,
        order_id: i64,
        patch: OrderPatch,
    ) -> Result<SimOrder, ControlError> {
        if let Some(s) = patch.status_id
            && !is_known_status(s)
        {
            return Err(ControlError::Invalid(format!("unknown status_id {s}")));
        }
        for (name, flag) in [
            ("cancel_flag", patch.cancel_flag),
            ("shipped_flag", patch.shipped_flag),
        ] {
            if flag.is_some_and(|f| f > 1) {
                return Err(ControlError::Invalid(format!("{name} must be 0 or 1")));
            }
        }
        let account = self.account_or_err(key)?;
        let mut data = account.lock();
        let step = self.step_interval();
        let rec = data
            .orders
            .get_mut(&order_id)
            .ok_or(ControlError::UnknownOrder(order_id))?;
        let o = &mut rec.order;
        if let Some(s) = patch.status_id {
            o.set_status(s);
        }
        if let Some(f) = patch.cancel_flag {
            o.cancel_flag = f;
        }
        if let Some(f) = patch.shipped_flag {
            o.shipped_flag = f;
            if f == 1 {
                if o.tracking_code.is_none() {
                    o.tracking_code = Some(format!("SIM{:010}", o.order_id));
                }
                if o.shipping_date.is_none() {
                    o.shipping_date = Some(now_jst().date_naive());
                }
            }
        }
        if let Some(s) = patch.shipping_status_id {
            o.shipping_status_id = Some(s);
        }
        if let Some(t) = patch.tracking_code {
            o.tracking_code = Some(t);
        }
        if let Some(d) = patch.shipping_date {
            o.shipping_date = Some(d);
        }
        o.update_date = now_jst();
        let order = o.clone();
        let next = self.next_step_for(&order, step);
        rec.next_step_at = next;
        if let Some(at) = next {
            data.schedule.push(Reverse((at, order_id)));
        }
        Ok(order)
    }

    /// Clear orders, faults and counters of one key (keys and rate limits stay).
    pub fn reset_key(&self, key: &str) -> Result<(), ControlError> {
        self.account_or_err(key)?.lock().clear();
        Ok(())
    }

    /// Clear orders, faults and counters of every key.
    pub fn reset(&self) {
        for account in self.accounts().values() {
            account.lock().clear();
        }
        self.unauthorized.store(0, Ordering::Relaxed);
    }

    fn step_interval(&self) -> Duration {
        Duration::from_millis(self.config.warehouse.step_interval_ms.max(1))
    }

    /// When an order moves on next by itself, if it does.
    fn next_step_for(&self, order: &SimOrder, step: Duration) -> Option<Instant> {
        let flow = &self.config.warehouse.flow;
        if !self.config.warehouse.enabled || !order.is_open() {
            return None;
        }
        let idx = flow.iter().position(|s| *s == order.status_id)?;
        (idx + 1 < flow.len()).then(|| Instant::now() + step)
    }

    /// Move one order one step along the flow. Returns whether it moved.
    fn advance(&self, rec: &mut OrderRecord) -> bool {
        let flow = &self.config.warehouse.flow;
        rec.next_step_at = None;
        if !rec.order.is_open() {
            return false;
        }
        let Some(idx) = flow.iter().position(|s| *s == rec.order.status_id) else {
            return false;
        };
        let Some(&next) = flow.get(idx + 1) else {
            return false;
        };
        rec.order.set_status(next);
        if idx + 2 == flow.len() {
            rec.order.ship();
        }
        rec.order.update_date = now_jst();
        rec.next_step_at = self.next_step_for(&rec.order, self.step_interval());
        true
    }

    /// Move every open order of one key (or of all keys) one step along the flow now,
    /// whatever the pace. Returns how many moved.
    pub fn tick_warehouse(&self, key: Option<&str>) -> Result<usize, ControlError> {
        let accounts: Vec<Arc<Account>> = match key {
            Some(k) => vec![self.account_or_err(k)?],
            None => self.accounts().values().cloned().collect(),
        };
        let mut moved = 0;
        for account in accounts {
            let mut data = account.lock();
            let data = &mut *data;
            for (id, rec) in data.orders.iter_mut() {
                if self.advance(rec) {
                    moved += 1;
                    if let Some(at) = rec.next_step_at {
                        data.schedule.push(Reverse((at, *id)));
                    }
                }
            }
        }
        Ok(moved)
    }

    /// Move the orders whose time has come (the background warehouse calls this).
    pub(crate) fn run_due_steps(&self) -> usize {
        let now = Instant::now();
        let accounts: Vec<Arc<Account>> = self.accounts().values().cloned().collect();
        let mut moved = 0;
        for account in accounts {
            let mut data = account.lock();
            let data = &mut *data;
            while let Some(Reverse((at, id))) = data.schedule.peek().copied() {
                if at > now {
                    break;
                }
                data.schedule.pop();
                let Some(rec) = data.orders.get_mut(&id) else {
                    continue;
                };
                if rec.next_step_at != Some(at) {
                    continue; // stale entry
                }
                if self.advance(rec) {
                    moved += 1;
                    if let Some(next) = rec.next_step_at {
                        data.schedule.push(Reverse((next, id)));
                    }
                }
            }
        }
        moved
    }

    /// Admit a WMS request: key check, rate limit, request counter, fault plan.
    pub(crate) fn admit(
        &self,
        key: Option<&str>,
        endpoint: Endpoint,
    ) -> Result<(Arc<Account>, FaultPlan), Refusal> {
        let Some(account) = key.and_then(|k| self.account(k)) else {
            self.unauthorized.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::Unauthorized);
        };
        let plan = {
            let mut data = account.lock();
            let data = &mut *data;
            *data
                .counters
                .requests
                .entry(endpoint.as_str().to_owned())
                .or_insert(0) += 1;
            if let Some(limiter) = &data.limiter
                && let Err(not_until) = limiter.check()
            {
                data.counters.rate_limited += 1;
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                return Err(Refusal::RateLimited(wait));
            }
            let f = data.faults.clone();
            if f.endpoints.is_empty() || f.endpoints.contains(&endpoint) {
                let mut plan = FaultPlan {
                    latency: Duration::from_millis(f.latency_ms),
                    ..FaultPlan::default()
                };
                let seq = &mut data.fault_seq;
                let counters = &mut data.counters;
                if hit(&mut seq[0], f.error_500_ratio) {
                    plan.fail_500 = true;
                    counters.faults_500 += 1;
                } else if hit(&mut seq[1], f.ng_ratio) {
                    plan.ng = Some(f.ng_code.clone());
                    counters.faults_ng += 1;
                } else if hit(&mut seq[2], f.apply_then_500_ratio) {
                    plan.fail_500_after_apply = true;
                    counters.faults_applied_500 += 1;
                } else if f.apply_then_delay_ms > 0 && hit(&mut seq[3], f.apply_then_delay_ratio) {
                    plan.delay_after_apply = Some(Duration::from_millis(f.apply_then_delay_ms));
                    counters.faults_delayed += 1;
                } else if f.apply_late_ms > 0 && hit(&mut seq[4], f.apply_late_ratio) {
                    plan.apply_late = Some(Duration::from_millis(f.apply_late_ms));
                    counters.faults_applied_late += 1;
                }
                plan
            } else {
                FaultPlan::default()
            }
        };
        Ok((account, plan))
    }

    /// The simulated proxy's body limit: `true` (and `faults_413` counted) when a body of
    /// `len` bytes sent with `key` is too large. Unknown keys pass (the WMS answers 401).
    pub(crate) fn body_too_large(&self, key: Option<&str>, len: usize) -> bool {
        let Some(account) = key.and_then(|k| self.account(k)) else {
            return false;
        };
        let mut data = account.lock();
        let limit = data.faults.body_limit_bytes;
        if limit > 0 && u64::try_from(len).unwrap_or(u64::MAX) > limit {
            data.counters.faults_413 += 1;
            return true;
        }
        false
    }

    pub(crate) fn next_order_id(&self) -> i64 {
        self.next_order_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Create a new order record (the registration handler holds the account lock).
    pub(crate) fn insert_order(&self, data: &mut AccountData, order_no: &str, row: Value) -> i64 {
        let order_id = self.next_order_id();
        let initial = self.config.warehouse.flow.first().copied().unwrap_or(50);
        let mut order = SimOrder {
            order_id,
            order_no: order_no.to_owned(),
            status_id: initial,
            status_name: String::new(),
            cancel_flag: 0,
            shipped_flag: 0,
            shipping_status_id: None,
            tracking_code: None,
            shipping_date: None,
            update_date: now_jst(),
        };
        order.set_status(initial);
        let next = self.next_step_for(&order, self.step_interval());
        if let Some(at) = next {
            data.schedule.push(Reverse((at, order_id)));
        }
        data.orders.insert(
            order_id,
            OrderRecord {
                order,
                row,
                next_step_at: next,
            },
        );
        data.by_no
            .entry(order_no.to_owned())
            .or_default()
            .push(order_id);
        order_id
    }

    /// Cancel: the rules of `wms-api.md`.
    pub(crate) fn cancel(
        &self,
        data: &mut AccountData,
        order_id: i64,
    ) -> Result<SimOrder, CancelRefusal> {
        let rec = data
            .orders
            .get_mut(&order_id)
            .ok_or(CancelRefusal::NotFound)?;
        if rec.order.cancel_flag == 1 {
            data.counters.cancels_repeated += 1;
            return Ok(rec.order.clone());
        }
        if rec.order.shipped_flag == 1 || is_late_status(rec.order.status_id) {
            data.counters.cancels_refused += 1;
            return Err(CancelRefusal::NotCancellable(
                rec.order.status_id,
                rec.order.shipped_flag,
            ));
        }
        rec.order.cancel_flag = 1;
        rec.order.update_date = now_jst();
        rec.next_step_at = None;
        data.counters.cancels += 1;
        Ok(rec.order.clone())
    }
}

pub(crate) enum CancelRefusal {
    NotFound,
    NotCancellable(i32, u8),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_deterministic() {
        let mut seq = 0;
        let hits: Vec<bool> = (0..6).map(|_| hit(&mut seq, 0.5)).collect();
        assert_eq!(hits, [false, true, false, true, false, true]);
        let mut seq = 0;
        assert_eq!((0..10).filter(|_| hit(&mut seq, 0.3)).count(), 3);
        let mut seq = 0;
        assert!((0..5).all(|_| hit(&mut seq, 1.0)));
        let mut seq = 0;
        assert!(!(0..5).any(|_| hit(&mut seq, 0.0)));
    }
}
