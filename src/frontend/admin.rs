//! The admin API: browse the requests recorded in the capture store.
//!
//! `GET /admin/api/requests` lists requests newest first, without their bodies, filtered by
//! `q` (full-text over prompt and answer), `session`, `backend`, `model`, `status`,
//! `since` and `until` (Unix seconds),
//! paged by `limit` (default 50, at most 1000) and `offset`.
//! `GET /admin/api/requests/{id}` returns one request with both wire legs.
//! `GET /admin/api/requests/{id}/curl` is that request as a curl command that replays it.
//! `GET /admin/api/export` takes the list's filters and answers JSON Lines with the bodies.
//! `GET /admin/api/usage?by=day|backend|model|key|session` totals requests and tokens.
//! `DELETE /admin/api/requests/{id}` forgets one request.
//! `GET /admin/api/stats` totals requests, errors and tokens per back-end and model, and
//! counts rows dropped because the writer fell behind.
//! All answer 404 in the OpenAI error shape when the store is off.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
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
        .route("/admin/api/requests/{id}/curl", get(curl))
        .route("/admin/api/export", get(export))
        .route("/admin/api/usage", get(usage))
        .route("/admin/api/stats", get(stats))
}

#[derive(Debug, Deserialize)]
struct ListParams {
    q: Option<String>,
    session: Option<String>,
    backend: Option<String>,
    model: Option<String>,
    status: Option<u16>,
    since: Option<f64>,
    until: Option<f64>,
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

/// The store query the parameters ask for.
fn store_query(
    params: Result<Query<ListParams>, QueryRejection>,
    with_bodies: bool,
) -> Result<store::Query, Error> {
    let Query(params) = params.map_err(|rejection| {
        Error::invalid_request(format!(
            "bad query ({}); limit, offset and status are non-negative integers, since and \
             until Unix seconds",
            rejection.body_text()
        ))
    })?;
    Ok(store::Query {
        text: params.q,
        session_id: params.session,
        backend: params.backend,
        model: params.model,
        status: params.status,
        since: params.since,
        until: params.until,
        limit: params.limit.unwrap_or(50),
        offset: params.offset.unwrap_or(0),
        with_bodies,
    })
}

async fn matching_rows(
    engine: &Engine,
    params: Result<Query<ListParams>, QueryRejection>,
    with_bodies: bool,
) -> Result<Vec<store::RequestRow>, Error> {
    let query = store_query(params, with_bodies)?;
    read(store_of(engine)?, move |store| store.list(&query)).await
}

async fn list(
    State(engine): State<Engine>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Response {
    match matching_rows(&engine, params, false).await {
        Ok(rows) => Json(json!({ "object": "list", "data": rows })).into_response(),
        Err(err) => error_response(PROTOCOL, &err),
    }
}

/// The matching requests with their bodies, one JSON object per line.
async fn export(
    State(engine): State<Engine>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Response {
    match matching_rows(&engine, params, true).await {
        Ok(rows) => {
            let mut lines = String::new();
            for row in &rows {
                lines.push_str(&serde_json::to_string(row).unwrap_or_default());
                lines.push('\n');
            }
            ([(header::CONTENT_TYPE, "application/x-ndjson")], lines).into_response()
        }
        Err(err) => error_response(PROTOCOL, &err),
    }
}

#[derive(Debug, Deserialize)]
struct UsageParams {
    by: Option<String>,
}

async fn usage(State(engine): State<Engine>, Query(params): Query<UsageParams>) -> Response {
    let by = params.by.as_deref().unwrap_or("day");
    let Some(group) = store::UsageBy::parse(by) else {
        let err = Error::invalid_request(format!(
            "unknown usage grouping {by:?}; use day, backend, model, key or session"
        ));
        return error_response(PROTOCOL, &err);
    };
    let totals = match store_of(&engine) {
        Ok(store) => read(store, move |store| store.usage(group)).await,
        Err(err) => Err(err),
    };
    match totals {
        Ok(rows) => Json(json!({ "object": "list", "by": by, "data": rows })).into_response(),
        Err(err) => error_response(PROTOCOL, &err),
    }
}

/// The path a client of this front-end posted to.
fn client_path(row: &store::RequestRow) -> String {
    match row.frontend.as_str() {
        "openai_responses" => "/v1/responses".to_owned(),
        "anthropic" => "/v1/messages".to_owned(),
        "gemini" if row.stream => format!(
            "/v1beta/models/{}:streamGenerateContent?alt=sse",
            row.model_requested
        ),
        "gemini" => format!("/v1beta/models/{}:generateContent", row.model_requested),
        _ => "/v1/chat/completions".to_owned(),
    }
}

/// A shell command that sends the captured client request to llmux again. The proxy key is
/// read from `$LLMUX_API_KEY`, never written out.
fn replay_command(row: &store::RequestRow, base_url: &str) -> String {
    let url = format!("{base_url}{}", client_path(row));
    format!(
        "curl -sS '{url}' \\\n  -H 'content-type: application/json' \\\n  \
         -H \"authorization: Bearer ${{LLMUX_API_KEY:-none}}\" \\\n  \
         --data-binary @- <<'LLMUX_REQUEST'\n{}\nLLMUX_REQUEST\n",
        row.client_request
    )
}

/// One stored request with its bodies; 404 when there is none with this id.
async fn find(engine: &Engine, id: String) -> Result<store::RequestRow, Error> {
    read(store_of(engine)?, move |store| store.get(&id))
        .await?
        .ok_or_else(|| Error::not_found("no recorded request has this id"))
}

async fn curl(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1:8000");
    match find(&engine, id).await {
        Ok(row) => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            replay_command(&row, &format!("http://{host}")),
        )
            .into_response(),
        Err(err) => error_response(PROTOCOL, &err),
    }
}

async fn show(State(engine): State<Engine>, Path(id): Path<String>) -> Response {
    match find(&engine, id).await {
        Ok(row) => Json(row).into_response(),
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
