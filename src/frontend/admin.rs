//! The admin API: browse the requests recorded in the capture store.
//!
//! `GET /admin/api/requests` lists requests newest first, without their bodies, filtered by
//! `q` (full-text over prompt and answer), `session`, `backend`, `model`, `status`,
//! paged by `limit` (default 50, at most 1000) and `offset`.
//! `GET /admin/api/requests/{id}` returns one request with both wire legs.
//! `DELETE /admin/api/requests/{id}` forgets one request.
//! `GET /admin/api/stats` totals requests, errors and tokens per back-end and model, and
//! counts rows dropped because the writer fell behind.
//! All answer 404 in the OpenAI error shape when the store is off.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use super::error_response;
use crate::Error;
use crate::capture::store::{self, Store};
use crate::engine::Engine;
use crate::model::Protocol;

/// Admin errors use the OpenAI shape: llmux's own API, read by tools and the inspector.
const PROTOCOL: Protocol = Protocol::OpenAiChat;

pub fn routes() -> axum::Router<Engine> {
    axum::Router::new()
        .route("/admin/api/requests", get(list))
        .route("/admin/api/requests/{id}", get(show).delete(remove))
        .route("/admin/api/stats", get(stats))
}

#[derive(Debug, Deserialize)]
struct ListParams {
    q: Option<String>,
    session: Option<String>,
    backend: Option<String>,
    model: Option<String>,
    status: Option<u16>,
    limit: Option<usize>,
    offset: Option<usize>,
}

fn store_of(engine: &Engine) -> Result<Arc<Store>, Error> {
    engine.store().cloned().ok_or_else(|| {
        Error::not_found("the capture store is off; start llmux with --capture-db FILE")
    })
}

/// Runs a store read off the async threads: SQLite calls block.
async fn read<T: Send + 'static>(
    store: Arc<Store>,
    query: impl FnOnce(&Store) -> Result<T, String> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(move || query(&store))
        .await
        .map_err(|e| Error::internal(format!("capture store read failed: {e}")))?
        .map_err(|e| Error::internal(format!("capture store read failed: {e}")))
}

async fn list(
    State(engine): State<Engine>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Response {
    let params = match params {
        Ok(Query(params)) => params,
        Err(rejection) => {
            let err = Error::invalid_request(format!(
                "bad query ({}); limit, offset and status are non-negative integers",
                rejection.body_text()
            ));
            return error_response(PROTOCOL, &err);
        }
    };
    let query = store::Query {
        text: params.q,
        session_id: params.session,
        backend: params.backend,
        model: params.model,
        status: params.status,
        limit: params.limit.unwrap_or(50),
        offset: params.offset.unwrap_or(0),
    };
    let listed = match store_of(&engine) {
        Ok(store) => read(store, move |store| store.list(&query)).await,
        Err(err) => Err(err),
    };
    match listed {
        Ok(rows) => Json(json!({ "object": "list", "data": rows })).into_response(),
        Err(err) => error_response(PROTOCOL, &err),
    }
}

async fn show(State(engine): State<Engine>, Path(id): Path<String>) -> Response {
    let found = match store_of(&engine) {
        Ok(store) => read(store, move |store| store.get(&id)).await,
        Err(err) => Err(err),
    };
    match found {
        Ok(Some(row)) => Json(row).into_response(),
        Ok(None) => error_response(
            PROTOCOL,
            &Error::not_found("no recorded request has this id"),
        ),
        Err(err) => error_response(PROTOCOL, &err),
    }
}

async fn remove(State(engine): State<Engine>, Path(id): Path<String>) -> Response {
    let deleted = match store_of(&engine) {
        Ok(store) => {
            let target = id.clone();
            read(store, move |store| store.delete(&target)).await
        }
        Err(err) => Err(err),
    };
    match deleted {
        Ok(true) => Json(json!({ "id": id, "deleted": true })).into_response(),
        Ok(false) => error_response(
            PROTOCOL,
            &Error::not_found("no recorded request has this id"),
        ),
        Err(err) => error_response(PROTOCOL, &err),
    }
}

async fn stats(State(engine): State<Engine>) -> Response {
    let totals = match store_of(&engine) {
        Ok(store) => read(store, Store::stats).await,
        Err(err) => Err(err),
    };
    match totals {
        Ok(stats) => Json(stats).into_response(),
        Err(err) => error_response(PROTOCOL, &err),
    }
}
