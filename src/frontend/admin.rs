//! The admin API over HTTP, behind proxy auth: thin handlers over [`crate::admin`].
//!
//! `GET /admin/api/requests` lists requests newest first, without their bodies, filtered by
//! `q` (full-text over prompt and answer), `session`, `backend`, `model`, `status`,
//! `since` and `until` (Unix seconds), paged by `limit` (default 50, at most 1000) and
//! `offset`.
//! `GET /admin/api/requests/{id}` returns one request with both wire legs.
//! `GET /admin/api/requests/{id}/curl` is that request as a curl command that replays it.
//! `POST /admin/api/requests/{id}/replay` with `{"backend","model"}` sends it again.
//! `GET /admin/api/export` takes the list's filters and answers JSON Lines with the bodies.
//! `GET /admin/api/usage?by=day|backend|model|key|session` totals requests and tokens.
//! `GET /admin/api/timeline?since=&bucket=` totals per time bucket.
//! `DELETE /admin/api/requests/{id}` forgets one request.
//! `GET /admin/api/stats` totals requests, errors and tokens per back-end and model, and
//! counts records dropped because a capture writer fell behind.
//! `GET /admin/api/settings` shows the config with every value's source;
//! `PUT /admin/api/settings` with `{"set": {...}, "remove": [...]}` checks, saves and applies.
//! The capture calls answer 404 in the OpenAI error shape when the store is off; `stats`
//! answers with zeros and `capture_store: false`, and always with the process's open
//! connections, file descriptors and async tasks.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::error_response;
use crate::Error;
use crate::admin::{self, ListParams, ReplayParams, TimelineParams};
use crate::engine::Engine;
use crate::model::Protocol;

/// Admin errors use the OpenAI shape: llmux's own API, read by tools and the inspector.
const PROTOCOL: Protocol = Protocol::OpenAiChat;

pub fn routes() -> axum::Router<Engine> {
    axum::Router::new()
        .route("/admin/api/requests", get(list))
        .route("/admin/api/requests/{id}", get(show).delete(remove))
        .route("/admin/api/requests/{id}/curl", get(curl))
        .route("/admin/api/requests/{id}/replay", post(replay))
        .route("/admin/api/export", get(export))
        .route("/admin/api/usage", get(usage))
        .route("/admin/api/timeline", get(timeline))
        .route("/admin/api/stats", get(stats))
        .route(
            "/admin/api/settings",
            get(show_settings).put(change_settings),
        )
        .route("/admin/api/test", post(test_request))
        .route("/admin/api/clients", get(list_clients))
        .route("/admin/api/clients/{id}", post(change_client))
}

#[derive(Debug, Deserialize)]
struct TestParams {
    model: String,
}

/// Sends a short greeting to a model, for a first check that a provider works.
async fn test_request(
    State(engine): State<Engine>,
    body: Result<Json<TestParams>, JsonRejection>,
) -> Response {
    match body {
        Ok(Json(params)) => answer(super::test_request(&engine, params.model).await),
        Err(rejection) => error_response(
            PROTOCOL,
            &Error::invalid_request(format!(
                "bad test request ({}); send {{\"model\": \"openai:gpt-4o-mini\"}}",
                rejection.body_text()
            )),
        ),
    }
}

async fn list_clients(State(engine): State<Engine>) -> Response {
    answer(admin::clients::clients(&admin::clients::Context::of(&engine)).await)
}

/// Connects or disconnects an agent; `{"dry_run": true}` only answers the diffs.
async fn change_client(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    body: Result<Json<admin::clients::ClientAction>, JsonRejection>,
) -> Response {
    let action = match body {
        Ok(Json(action)) => action,
        Err(rejection) => {
            let err = Error::invalid_request(format!(
                "bad client change ({}); send {{\"dry_run\": true}} or {{\"undo\": true}}",
                rejection.body_text()
            ));
            return error_response(PROTOCOL, &err);
        }
    };
    answer(admin::clients::change(&admin::clients::Context::of(&engine), &id, action).await)
}

async fn show_settings(State(engine): State<Engine>) -> Response {
    answer(admin::settings::settings(&engine).await)
}

/// Saves a change, or answers 400 with every problem and the key each is about, so a form
/// can show them beside its fields.
async fn change_settings(
    State(engine): State<Engine>,
    body: Result<Json<admin::settings::SettingsChange>, JsonRejection>,
) -> Response {
    let change = match body {
        Ok(Json(change)) => change,
        Err(rejection) => {
            let err = Error::invalid_request(format!(
                "bad settings change ({}); send {{\"set\": {{\"proxy.port\": 9000}}, \"remove\": []}}",
                rejection.body_text()
            ));
            return error_response(PROTOCOL, &err);
        }
    };
    match admin::settings::change_settings(&engine, change).await {
        Ok(saved) => Json(saved).into_response(),
        Err(admin::settings::ChangeError::Other(err)) => error_response(PROTOCOL, &err),
        Err(admin::settings::ChangeError::Invalid(problems)) => {
            let message = problems
                .iter()
                .map(|p| p.message.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            let body = json!({"error": {
                "message": format!("the settings were not saved: {message}"),
                "type": "invalid_request_error",
                "code": "invalid_settings",
                "problems": problems,
            }});
            (axum::http::StatusCode::BAD_REQUEST, Json(body)).into_response()
        }
    }
}

/// An admin answer as JSON, or its error in the OpenAI shape.
fn answer<T: serde::Serialize>(result: Result<T, Error>) -> Response {
    match result {
        Ok(value) => Json(value).into_response(),
        Err(err) => error_response(PROTOCOL, &err),
    }
}

/// Query parameters, with a message that says what they should be.
fn params<T: DeserializeOwned>(params: Result<Query<T>, QueryRejection>) -> Result<T, Error> {
    params.map(|Query(p)| p).map_err(|rejection| {
        Error::invalid_request(format!(
            "bad query ({}); limit, offset, status and bucket are non-negative numbers, \
             since and until Unix seconds",
            rejection.body_text()
        ))
    })
}

async fn list(
    State(engine): State<Engine>,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Response {
    let rows = match params(query) {
        Ok(p) => admin::requests(&engine, p, false).await,
        Err(err) => Err(err),
    };
    answer(rows.map(|data| json!({ "object": "list", "data": data })))
}

async fn export(
    State(engine): State<Engine>,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Response {
    let lines = match params(query) {
        Ok(p) => admin::export(&engine, p).await,
        Err(err) => Err(err),
    };
    match lines {
        Ok(lines) => ([(header::CONTENT_TYPE, "application/x-ndjson")], lines).into_response(),
        Err(err) => error_response(PROTOCOL, &err),
    }
}

#[derive(Debug, Deserialize)]
struct UsageParams {
    by: Option<String>,
}

async fn usage(
    State(engine): State<Engine>,
    query: Result<Query<UsageParams>, QueryRejection>,
) -> Response {
    let by = match params(query) {
        Ok(p) => p.by.unwrap_or_else(|| "day".to_owned()),
        Err(err) => return error_response(PROTOCOL, &err),
    };
    let totals = admin::usage(&engine, &by).await;
    answer(totals.map(|data| json!({ "object": "list", "by": by, "data": data })))
}

async fn timeline(
    State(engine): State<Engine>,
    query: Result<Query<TimelineParams>, QueryRejection>,
) -> Response {
    answer(match params(query) {
        Ok(p) => admin::timeline(&engine, p).await,
        Err(err) => Err(err),
    })
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
    match admin::request(&engine, id).await {
        Ok(row) => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            admin::curl_command(&row, &format!("http://{host}")),
        )
            .into_response(),
        Err(err) => error_response(PROTOCOL, &err),
    }
}

async fn replay(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    body: Result<Json<ReplayParams>, JsonRejection>,
) -> Response {
    let target = match body {
        Ok(Json(target)) => target,
        Err(rejection) => {
            let err = Error::invalid_request(format!(
                "bad replay body ({}); send {{\"backend\": \"...\", \"model\": \"...\"}}",
                rejection.body_text()
            ));
            return error_response(PROTOCOL, &err);
        }
    };
    answer(super::replay(&engine, id, target).await)
}

async fn show(State(engine): State<Engine>, Path(id): Path<String>) -> Response {
    answer(admin::request(&engine, id).await)
}

async fn remove(State(engine): State<Engine>, Path(id): Path<String>) -> Response {
    let deleted = admin::delete_request(&engine, id.clone()).await;
    answer(deleted.map(|()| json!({ "id": id, "deleted": true })))
}

async fn stats(State(engine): State<Engine>) -> Response {
    answer(admin::stats(&engine).await)
}
