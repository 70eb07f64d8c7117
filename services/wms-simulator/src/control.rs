//! Control endpoints under `/_sim` (no API key needed). See the README.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use crate::state::{ControlError, Faults, KeyOptions, OrderPatch, SimState};

pub(crate) fn routes() -> Router<Arc<SimState>> {
    Router::new()
        .route(
            "/_sim/health",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/_sim/keys", get(list_keys).post(add_key))
        .route("/_sim/keys/{key}", axum::routing::delete(remove_key))
        .route(
            "/_sim/keys/{key}/faults",
            get(get_faults).put(put_faults).delete(clear_faults),
        )
        .route("/_sim/keys/{key}/counters", get(counters))
        .route("/_sim/keys/{key}/order_nos", get(order_nos))
        .route("/_sim/keys/{key}/order_nos/{order_no}", get(order_no))
        .route("/_sim/keys/{key}/orders", get(orders))
        .route(
            "/_sim/keys/{key}/orders/{order_id}",
            get(order).patch(patch_order),
        )
        .route("/_sim/keys/{key}/reset", post(reset_key))
        .route("/_sim/keys/{key}/warehouse/tick", post(tick_key))
        .route("/_sim/warehouse/tick", post(tick_all))
        .route("/_sim/reset", post(reset_all))
        .route("/_sim/counters", get(global_counters))
}

fn error(err: ControlError) -> Response {
    let status = match err {
        ControlError::UnknownKey | ControlError::UnknownOrder(_) => StatusCode::NOT_FOUND,
        ControlError::Invalid(_) => StatusCode::BAD_REQUEST,
    };
    (status, Json(json!({ "error": err.to_string() }))).into_response()
}

fn reply<T: serde::Serialize>(r: Result<T, ControlError>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(e),
    }
}

fn bad_json(e: impl std::fmt::Display) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": format!("invalid JSON body: {e}") })),
    )
        .into_response()
}

#[derive(Deserialize)]
struct NewKey {
    key: String,
    #[serde(flatten)]
    options: KeyOptions,
}

async fn list_keys(State(app): State<Arc<SimState>>) -> Response {
    Json(json!({ "keys": app.keys() })).into_response()
}

async fn add_key(State(app): State<Arc<SimState>>, body: axum::body::Bytes) -> Response {
    let new: NewKey = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => return bad_json(e),
    };
    match app.add_key(&new.key, new.options) {
        Ok(true) => (StatusCode::CREATED, Json(json!({ "created": true }))).into_response(),
        Ok(false) => Json(json!({ "created": false })).into_response(),
        Err(e) => error(e),
    }
}

async fn remove_key(State(app): State<Arc<SimState>>, Path(key): Path<String>) -> Response {
    if app.remove_key(&key) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(ControlError::UnknownKey)
    }
}

async fn get_faults(State(app): State<Arc<SimState>>, Path(key): Path<String>) -> Response {
    reply(app.faults(&key))
}

async fn put_faults(
    State(app): State<Arc<SimState>>,
    Path(key): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let faults: Faults = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => return bad_json(e),
    };
    reply(app.set_faults(&key, faults).and_then(|()| app.faults(&key)))
}

async fn clear_faults(State(app): State<Arc<SimState>>, Path(key): Path<String>) -> Response {
    reply(
        app.set_faults(&key, Faults::default())
            .and_then(|()| app.faults(&key)),
    )
}

async fn counters(State(app): State<Arc<SimState>>, Path(key): Path<String>) -> Response {
    reply(app.counters(&key))
}

async fn order_nos(State(app): State<Arc<SimState>>, Path(key): Path<String>) -> Response {
    reply(
        app.order_no_counters(&key)
            .map(|order_nos| json!({ "order_nos": order_nos })),
    )
}

async fn order_no(
    State(app): State<Arc<SimState>>,
    Path((key, order_no)): Path<(String, String)>,
) -> Response {
    reply(app.order_no_counter(&key, &order_no))
}

async fn orders(State(app): State<Arc<SimState>>, Path(key): Path<String>) -> Response {
    reply(app.orders(&key).map(|orders| json!({ "orders": orders })))
}

async fn order(
    State(app): State<Arc<SimState>>,
    Path((key, order_id)): Path<(String, i64)>,
) -> Response {
    reply(app.order(&key, order_id).and_then(|order| {
        let row = app.order_row(&key, order_id)?;
        Ok(json!({ "order": order, "row": row }))
    }))
}

async fn patch_order(
    State(app): State<Arc<SimState>>,
    Path((key, order_id)): Path<(String, i64)>,
    body: axum::body::Bytes,
) -> Response {
    let patch: OrderPatch = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return bad_json(e),
    };
    reply(app.patch_order(&key, order_id, patch))
}

async fn reset_key(State(app): State<Arc<SimState>>, Path(key): Path<String>) -> Response {
    reply(app.reset_key(&key).map(|()| json!({ "reset": true })))
}

async fn reset_all(State(app): State<Arc<SimState>>) -> Response {
    app.reset();
    Json(json!({ "reset": true })).into_response()
}

async fn tick_key(State(app): State<Arc<SimState>>, Path(key): Path<String>) -> Response {
    reply(
        app.tick_warehouse(Some(&key))
            .map(|moved| json!({ "moved": moved })),
    )
}

async fn tick_all(State(app): State<Arc<SimState>>) -> Response {
    reply(
        app.tick_warehouse(None)
            .map(|moved| json!({ "moved": moved })),
    )
}

async fn global_counters(State(app): State<Arc<SimState>>) -> Response {
    Json(json!({ "unauthorized": app.unauthorized_count() })).into_response()
}
