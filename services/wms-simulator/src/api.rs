//! The WMS endpoints of `wms-api.md`.
// Handlers return an early `Response` as the error of their helpers; boxing it buys nothing.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::search;
use crate::state::{
    Account, CancelRefusal, Endpoint, FaultPlan, Refusal, SimOrder, SimState, is_late_status,
};
use crate::validate::{self, RowError};

/// Most rows in one registration or update.
const MAX_ROWS: usize = 200;

pub(crate) fn routes() -> Router<Arc<SimState>> {
    Router::new()
        .route("/order/search", get(search_orders))
        .route("/order/{order_id}", get(get_order))
        .route("/order/", post(register).put(update))
        .route("/order", post(register).put(update))
        .route("/order_cancel/{order_id}", get(cancel))
}

/// A JSON answer in the envelope.
pub(crate) fn envelope(status: StatusCode, ok: bool, data: Value, errors: Value) -> Response {
    let body = json!({
        "result": if ok { "OK" } else { "NG" },
        "data": data,
        "error": errors,
    });
    (status, axum::Json(body)).into_response()
}

pub(crate) fn ng(status: StatusCode, code: &str, message: &str) -> Response {
    envelope(
        status,
        false,
        Value::Null,
        json!([{ "code": code, "message": message }]),
    )
}

fn ok(data: Value) -> Response {
    envelope(StatusCode::OK, true, data, json!([]))
}

fn api_key(headers: &HeaderMap) -> Option<&str> {
    headers.get("x-api-key").and_then(|v| v.to_str().ok())
}

/// Key check and rate limit (401, 429); the request is counted and its faults drawn.
fn admit_key(
    app: &SimState,
    headers: &HeaderMap,
    endpoint: Endpoint,
) -> Result<(Arc<Account>, FaultPlan), Response> {
    match app.admit(api_key(headers), endpoint) {
        Err(Refusal::Unauthorized) => Err(ng(
            StatusCode::UNAUTHORIZED,
            "E_UNAUTHORIZED",
            "invalid API key or IP address not allowed",
        )),
        Err(Refusal::RateLimited(wait)) => {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let mut resp = ng(
                StatusCode::TOO_MANY_REQUESTS,
                "E_RATE_LIMIT",
                "too many requests for this API key",
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            Err(resp)
        }
        Ok(admitted) => Ok(admitted),
    }
}

/// The faults that come before handling: the added latency, then a 500 or an `NG` answer
/// (nothing applied).
async fn faults_before(plan: &FaultPlan) -> Result<(), Response> {
    if !plan.latency.is_zero() {
        tokio::time::sleep(plan.latency).await;
    }
    if plan.fail_500 {
        return Err(ng(
            StatusCode::INTERNAL_SERVER_ERROR,
            "E_SIM_INTERNAL",
            "simulated server error",
        ));
    }
    if let Some(code) = &plan.ng {
        return Err(ng(StatusCode::OK, code, "simulated NG answer"));
    }
    Ok(())
}

/// Key check, rate limit, then the faults that come before handling.
async fn admit(
    app: &SimState,
    headers: &HeaderMap,
    endpoint: Endpoint,
) -> Result<(Arc<Account>, FaultPlan), Response> {
    let (account, plan) = admit_key(app, headers, endpoint)?;
    faults_before(&plan).await?;
    Ok((account, plan))
}

/// Does the request's work (`work` applies it and builds the answer) with the faults that
/// come with or after applying: apply-late (the work runs in the background after a delay,
/// so a client that hung up does not stop it), apply-then-500, apply-then-timeout.
async fn apply(plan: FaultPlan, work: impl FnOnce() -> Response + Send + 'static) -> Response {
    let response = match plan.apply_late {
        Some(delay) => {
            let task = tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                work()
            });
            match task.await {
                Ok(response) => response,
                Err(_) => ng(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "E_SIM_INTERNAL",
                    "the late application failed",
                ),
            }
        }
        None => work(),
    };
    if plan.fail_500_after_apply {
        return ng(
            StatusCode::INTERNAL_SERVER_ERROR,
            "E_SIM_INTERNAL",
            "simulated server error after the request was applied",
        );
    }
    if let Some(delay) = plan.delay_after_apply {
        tokio::time::sleep(delay).await;
    }
    response
}

/// What a proxy in front of the WMS answers to a body over its limit: no envelope.
fn proxy_413() -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        [(header::CONTENT_TYPE, "text/html")],
        "<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n\
         <center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>nginx</center>\r\n\
         </body>\r\n</html>\r\n",
    )
        .into_response()
}

fn parse_id(raw: &str) -> Result<i64, Response> {
    raw.trim()
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| {
            ng(
                StatusCode::BAD_REQUEST,
                "E_INVALID_PARAM",
                "order_id must be a positive integer",
            )
        })
}

fn not_found(order_id: i64) -> Response {
    ng(
        StatusCode::NOT_FOUND,
        "E_NOT_FOUND",
        &format!("order {order_id} not found"),
    )
}

async fn search_orders(
    State(app): State<Arc<SimState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let (account, plan) = match admit(&app, &headers, Endpoint::Search).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let query = match search::parse(raw.as_deref().unwrap_or("")) {
        Ok(q) => q,
        Err(msg) => return ng(StatusCode::BAD_REQUEST, "E_INVALID_PARAM", &msg),
    };
    let (page, total) = {
        let mut data = account.lock();
        let mut matched: Vec<&SimOrder> = match query.order_no_candidates() {
            Some(nos) => {
                let mut ids: Vec<i64> = nos
                    .iter()
                    .filter_map(|no| data.by_no.get(*no))
                    .flatten()
                    .copied()
                    .collect();
                ids.sort_unstable();
                ids.dedup();
                ids.iter()
                    .filter_map(|id| data.orders.get(id))
                    .map(|r| &r.order)
                    .filter(|o| query.matches(o))
                    .collect()
            }
            None => data
                .orders
                .values()
                .map(|r| &r.order)
                .filter(|o| query.matches(o))
                .collect(),
        };
        if data.sorts_by_update_date() {
            matched.sort_by_key(|o| (o.update_date, o.order_id));
        }
        let total = matched.len();
        let page: Vec<SimOrder> = matched
            .drain(..)
            .skip(query.offset)
            .take(query.limit)
            .cloned()
            .collect();
        let ids: Vec<i64> = page.iter().map(|o| o.order_id).collect();
        data.search_answered(&ids);
        (page, total)
    };
    #[derive(serde::Serialize)]
    struct SearchAnswer {
        result: &'static str,
        data: Vec<SimOrder>,
        total: usize,
        error: [(); 0],
    }
    let body = SearchAnswer {
        result: "OK",
        data: page,
        total,
        error: [],
    };
    let response = (StatusCode::OK, axum::Json(body)).into_response();
    apply(plan, move || response).await
}

async fn get_order(
    State(app): State<Arc<SimState>>,
    headers: HeaderMap,
    Path(raw_id): Path<String>,
) -> Response {
    let (account, plan) = match admit(&app, &headers, Endpoint::Get).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let order_id = match parse_id(&raw_id) {
        Ok(id) => id,
        Err(resp) => return resp,
    };
    let found = account
        .lock()
        .orders
        .get(&order_id)
        .map(|r| r.order.clone());
    let resp = match found {
        Some(order) => ok(serde_json::to_value(order).unwrap_or(Value::Null)),
        None => not_found(order_id),
    };
    apply(plan, move || resp).await
}

fn data_rows(body: &[u8]) -> Result<Vec<Value>, Response> {
    let bad = |msg: &str| ng(StatusCode::BAD_REQUEST, "E_INVALID_REQUEST", msg);
    let value: Value =
        serde_json::from_slice(body).map_err(|_| bad("the body is not valid JSON"))?;
    let rows = match value {
        Value::Object(mut map) => match map.remove("data") {
            Some(Value::Array(rows)) => rows,
            _ => return Err(bad("the body must be {\"data\": [ … ]}")),
        },
        _ => return Err(bad("the body must be {\"data\": [ … ]}")),
    };
    if rows.is_empty() || rows.len() > MAX_ROWS {
        return Err(bad(&format!(
            "data must hold 1 to {MAX_ROWS} rows, got {}",
            rows.len()
        )));
    }
    Ok(rows)
}

fn row_errors_json(errors: &[RowError], order_no: Option<&str>) -> Value {
    Value::Array(
        errors
            .iter()
            .map(|e| match order_no {
                Some(no) => json!({ "code": e.code, "message": e.message, "order_no": no }),
                None => json!({ "code": e.code, "message": e.message }),
            })
            .collect(),
    )
}

/// A write the WMS received runs to its end even when the client hangs up meanwhile (during a
/// latency fault, say): a WMS does not stop applying a request because its caller left, and
/// the `received` counters promise that what was received was handled.
async fn run_to_end(
    work: impl std::future::Future<Output = Response> + Send + 'static,
) -> Response {
    tokio::spawn(work).await.unwrap_or_else(|_| {
        ng(
            StatusCode::INTERNAL_SERVER_ERROR,
            "E_SIM_INTERNAL",
            "the request failed",
        )
    })
}

async fn register(State(app): State<Arc<SimState>>, headers: HeaderMap, body: Bytes) -> Response {
    run_to_end(register_received(app, headers, body)).await
}

async fn register_received(app: Arc<SimState>, headers: HeaderMap, body: Bytes) -> Response {
    if app.body_too_large(api_key(&headers), body.len()) {
        return proxy_413();
    }
    let (account, plan) = match admit_key(&app, &headers, Endpoint::Register) {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let rows = match data_rows(&body) {
        Ok(rows) => rows,
        Err(resp) => return resp,
    };
    {
        // What was sent, whatever happens next.
        let mut data = account.lock();
        for row in &rows {
            if let Some(no) = validate::order_no_of(row) {
                data.order_no_counters(no).received += 1;
            }
        }
    }
    if let Err(resp) = faults_before(&plan).await {
        return resp;
    }
    // Validate outside the lock.
    let checked: Vec<(Option<String>, Vec<RowError>, Value)> = rows
        .into_iter()
        .map(|row| {
            let errors = validate::validate_row(&row);
            let no = validate::order_no_of(&row).map(str::to_owned);
            (no, errors, row)
        })
        .collect();
    apply(plan, move || register_rows(&app, &account, checked)).await
}

/// Registers validated rows (the duplicate check under the account's lock) and answers.
fn register_rows(
    app: &SimState,
    account: &Account,
    checked: Vec<(Option<String>, Vec<RowError>, Value)>,
) -> Response {
    let mut results = Vec::with_capacity(checked.len());
    let mut all_errors = Vec::new();
    {
        let mut data = account.lock();
        for (order_no, errors, row) in checked {
            let no_json = order_no.clone().map(Value::String).unwrap_or(Value::Null);
            if !errors.is_empty() {
                data.counters.rows_invalid += 1;
                let errs = row_errors_json(&errors, order_no.as_deref());
                all_errors.extend(errs.as_array().cloned().unwrap_or_default());
                results.push(json!({ "order_no": no_json, "result": "NG", "error": errs }));
                continue;
            }
            let order_no = order_no.unwrap_or_default();
            if let Some(existing) = data.live_order_id(&order_no) {
                data.counters.duplicates_refused += 1;
                data.order_no_counters(&order_no).duplicates_refused += 1;
                let err = json!({
                    "code": "E_DUPLICATE",
                    "message": format!("order_no {order_no} is already registered (order_id {existing}); 重複チェックにより登録できません"),
                    "order_no": order_no,
                });
                all_errors.push(err.clone());
                results.push(json!({ "order_no": order_no, "result": "NG", "error": [err] }));
                continue;
            }
            let order_id = app.insert_order(&mut data, &order_no, row);
            data.counters.registrations_accepted += 1;
            let counters = data.order_no_counters(&order_no);
            counters.accepted += 1;
            counters
                .first_accepted_unix_ms
                .get_or_insert_with(crate::state::unix_millis);
            results.push(json!({ "order_no": order_no, "result": "OK", "order_id": order_id }));
        }
    }
    let all_ok = all_errors.is_empty();
    envelope(
        StatusCode::OK,
        all_ok,
        Value::Array(results),
        Value::Array(all_errors),
    )
}

async fn update(State(app): State<Arc<SimState>>, headers: HeaderMap, body: Bytes) -> Response {
    run_to_end(update_received(app, headers, body)).await
}

async fn update_received(app: Arc<SimState>, headers: HeaderMap, body: Bytes) -> Response {
    if app.body_too_large(api_key(&headers), body.len()) {
        return proxy_413();
    }
    let (account, plan) = match admit(&app, &headers, Endpoint::Update).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let rows = match data_rows(&body) {
        Ok(rows) => rows,
        Err(resp) => return resp,
    };
    apply(plan, move || update_rows(&account, rows)).await
}

/// Applies the changes of `PUT /order/` and answers.
fn update_rows(account: &Account, rows: Vec<Value>) -> Response {
    let mut results = Vec::with_capacity(rows.len());
    let mut all_errors = Vec::new();
    {
        let mut data = account.lock();
        for change in rows {
            let fail = |code: &str, message: String, order_id: Value| {
                let err = json!({ "code": code, "message": message });
                (
                    json!({ "order_id": order_id, "result": "NG", "error": [err.clone()] }),
                    err,
                )
            };
            let order_id = change
                .get("order_id")
                .and_then(Value::as_i64)
                .filter(|id| *id > 0);
            let Some(order_id) = order_id else {
                let (r, e) = fail("E_REQUIRED", "order_id is required".to_owned(), Value::Null);
                data.counters.updates_refused += 1;
                results.push(r);
                all_errors.push(e);
                continue;
            };
            let Some(rec) = data.orders.get(&order_id) else {
                let (r, e) = fail(
                    "E_NOT_FOUND",
                    format!("order {order_id} not found"),
                    json!(order_id),
                );
                data.counters.updates_refused += 1;
                results.push(r);
                all_errors.push(e);
                continue;
            };
            let o = &rec.order;
            if o.cancel_flag == 1 || o.shipped_flag == 1 || is_late_status(o.status_id) {
                let (r, e) = fail(
                    "E_NOT_UPDATABLE",
                    "更新不可のステータスです".to_owned(),
                    json!(order_id),
                );
                data.counters.updates_refused += 1;
                results.push(r);
                all_errors.push(e);
                continue;
            }
            if let Some(no) = change.get("order_no")
                && no.as_str() != Some(o.order_no.as_str())
            {
                let (r, e) = fail(
                    "E_INVALID",
                    "order_no cannot be changed".to_owned(),
                    json!(order_id),
                );
                data.counters.updates_refused += 1;
                results.push(r);
                all_errors.push(e);
                continue;
            }
            let mut merged = rec.row.clone();
            if let (Some(target), Some(src)) = (merged.as_object_mut(), change.as_object()) {
                for (k, v) in src {
                    if k != "order_id" {
                        target.insert(k.clone(), v.clone());
                    }
                }
            }
            let errors = validate::validate_row(&merged);
            if !errors.is_empty() {
                data.counters.updates_refused += 1;
                let errs = row_errors_json(&errors, None);
                all_errors.extend(errs.as_array().cloned().unwrap_or_default());
                results.push(json!({ "order_id": order_id, "result": "NG", "error": errs }));
                continue;
            }
            if let Some(rec) = data.orders.get_mut(&order_id) {
                rec.row = merged;
                rec.order.update_date = crate::state::now_jst();
            }
            data.counters.updates_accepted += 1;
            results.push(json!({ "order_id": order_id, "result": "OK" }));
        }
    }
    let all_ok = all_errors.is_empty();
    envelope(
        StatusCode::OK,
        all_ok,
        Value::Array(results),
        Value::Array(all_errors),
    )
}

async fn cancel(
    State(app): State<Arc<SimState>>,
    headers: HeaderMap,
    Path(raw_id): Path<String>,
) -> Response {
    run_to_end(cancel_received(app, headers, raw_id)).await
}

async fn cancel_received(app: Arc<SimState>, headers: HeaderMap, raw_id: String) -> Response {
    let (account, plan) = match admit(&app, &headers, Endpoint::Cancel).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let order_id = match parse_id(&raw_id) {
        Ok(id) => id,
        Err(resp) => return resp,
    };
    apply(plan, move || cancel_order(&app, &account, order_id)).await
}

/// Cancels one order (the rules of `wms-api.md`) and answers.
fn cancel_order(app: &SimState, account: &Account, order_id: i64) -> Response {
    let outcome = {
        let mut data = account.lock();
        app.cancel(&mut data, order_id)
    };
    match outcome {
        Ok(order) => ok(serde_json::to_value(order).unwrap_or(Value::Null)),
        Err(CancelRefusal::NotFound) => not_found(order_id),
        Err(CancelRefusal::NotCancellable(status, shipped)) => {
            let why = if shipped == 1 {
                "the order is already shipped (出荷済み)".to_owned()
            } else {
                format!(
                    "the order is in status {status} {} and can no longer be cancelled",
                    crate::state::status_name(status)
                )
            };
            envelope(
                StatusCode::OK,
                false,
                Value::Null,
                json!([{ "code": "E_NOT_CANCELLABLE", "message": format!("キャンセルできません: {why}") }]),
            )
        }
    }
}
