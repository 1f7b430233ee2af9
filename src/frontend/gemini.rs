//! The Gemini front-end, for the google-genai SDKs and Gemini CLI
//! (`GOOGLE_GEMINI_BASE_URL=http://127.0.0.1:8000`): `GET /v1beta/models`,
//! `GET /v1beta/models/{model}`, `POST /v1beta/models/{model}:generateContent`,
//! `:streamGenerateContent` (`?alt=sse` for SSE, else the streamed JSON array) and
//! `:countTokens`; the same under `/v1/` (except the model list: `GET /v1/models` is the
//! OpenAI front-end's).
//!
//! The model sits in the URL path. A `backend:model` there works
//! (`/v1beta/models/openai:gpt-4o:generateContent`), but Gemini clients rarely let a user
//! type one, so they usually reach a back-end through the default back-end, model aliases
//! or `!/backend(...)`.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde_json::{Value, json};

use super::common::{
    RequestLog, StreamEncoder, fold_response, header_string, read_body, rejected, request_context,
    stream_response, with_request_id,
};
use crate::Error;
use crate::engine::Engine;
use crate::model::{Event, Protocol};
use crate::pipeline::RequestContext;
use crate::protocol::gemini::{
    ChunkEncoder, StreamFormat, decode_count_tokens_request, decode_request,
    encode_count_tokens_response, encode_response,
};

const PROTOCOL: Protocol = Protocol::Gemini;

pub fn routes() -> axum::Router<Engine> {
    // `GET /v1/models` belongs to the OpenAI front-end; Gemini clients list models under
    // /v1beta, which is what the SDKs and Gemini CLI use.
    axum::Router::new()
        .route("/v1beta/models", get(models))
        .route("/v1beta/models/{target}", get(model).post(generate))
        .route("/v1/models/{target}", get(model).post(generate))
}

impl StreamEncoder for ChunkEncoder {
    fn push(&mut self, event: Event, out: &mut Vec<Bytes>) {
        ChunkEncoder::push(self, event, out);
    }

    fn finish(&mut self, out: &mut Vec<Bytes>) {
        ChunkEncoder::finish(self, out);
    }

    fn content_type(&self) -> &'static str {
        self.format().content_type()
    }
}

/// An error response with Google's HTTP status for its status name (Anthropic's 529
/// becomes 503 `UNAVAILABLE`, as the body says).
fn google_status(mut response: Response, err: &Error) -> Response {
    let status = crate::protocol::gemini::http_status(err);
    if status != response.status().as_u16()
        && let Ok(status) = axum::http::StatusCode::from_u16(status)
    {
        *response.status_mut() = status;
    }
    response
}

fn failed(protocol: Protocol, ctx: &RequestContext, stream: bool, err: &Error) -> Response {
    google_status(super::common::failed(protocol, ctx, stream, err), err)
}

fn error_response(protocol: Protocol, err: &Error) -> Response {
    google_status(super::common::error_response(protocol, err), err)
}

/// `model:action` from the last path segment (the model may hold colons itself).
fn split_target(target: &str) -> Result<(&str, &str), Error> {
    target.rsplit_once(':').ok_or_else(|| {
        Error::not_found(format!(
            "unknown method on models/{target}: expected :generateContent, \
             :streamGenerateContent or :countTokens"
        ))
    })
}

async fn generate(
    State(engine): State<Engine>,
    Path(target): Path<String>,
    request: Request,
) -> Response {
    let mut ctx = request_context(PROTOCOL, &request);
    let alt = request
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("alt=")))
        .map(str::to_owned);
    let (parts, body) = request.into_parts();
    let (model, action) = match split_target(&target) {
        Ok(split) => split,
        Err(err) => return failed(PROTOCOL, &ctx, false, &err),
    };
    let stream = match action {
        "generateContent" => false,
        "streamGenerateContent" => true,
        "countTokens" => {
            let counted =
                match read_body(body, &parts.headers, engine.config().max_body_bytes).await {
                    Ok(body) => decode_count_tokens_request(&body, model),
                    Err(err) => Err(err),
                };
            return match counted {
                Ok(request) => Json(encode_count_tokens_response(
                    request.estimated_input_tokens(),
                ))
                .into_response(),
                Err(err) => failed(PROTOCOL, &ctx, false, &err),
            };
        }
        other => {
            let err = Error::not_found(format!(
                "unknown method :{other}; expected :generateContent, :streamGenerateContent or :countTokens"
            ));
            return failed(PROTOCOL, &ctx, false, &err);
        }
    };
    let body = match read_body(body, &parts.headers, engine.config().max_body_bytes).await {
        Ok(body) => body,
        Err(err) => return rejected(&engine, PROTOCOL, &mut ctx, &parts.headers, b"", &err),
    };
    let mut generate = match decode_request(&body, model) {
        Ok(request) => request,
        Err(err) => return rejected(&engine, PROTOCOL, &mut ctx, &parts.headers, &body, &err),
    };
    generate.stream = stream;
    engine.begin_capture(&mut ctx, &parts.headers, &body, &generate);
    generate.client.user_agent = ctx.user_agent.clone();
    generate.client.session_id = header_string(&parts.headers, "x-session-id");
    let events = match engine.respond(&mut ctx, generate).await {
        Ok(events) => events,
        Err(err) => return failed(PROTOCOL, &ctx, stream, &err),
    };
    let log = RequestLog::new(&ctx, stream);
    let mut response = if stream {
        let format = StreamFormat::from_alt(alt.as_deref());
        stream_response(events, ChunkEncoder::new(format), log)
    } else {
        match fold_response(events, log).await {
            Ok(folded) => Json(encode_response(&folded)).into_response(),
            Err(err) => error_response(PROTOCOL, &err),
        }
    };
    with_request_id(&mut response, &ctx);
    response
}

fn model_entry(id: &str) -> Value {
    json!({
        "name": format!("models/{id}"),
        "baseModelId": id,
        "version": "llmux",
        "displayName": id,
        "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"],
    })
}

/// Whether a request on a path both protocols use (`GET /v1/models`: google-genai 2 and
/// later default to the `v1` API) comes from a Gemini client: it names a Google client
/// library in `x-goog-api-client`, or presents its key as `x-goog-api-key` or `?key=`,
/// and sends no `Authorization` header.
pub fn is_gemini_client(headers: &axum::http::HeaderMap, query: Option<&str>) -> bool {
    if headers.contains_key(axum::http::header::AUTHORIZATION) {
        return false;
    }
    headers.contains_key("x-goog-api-client")
        || headers.contains_key("x-goog-api-key")
        || query.is_some_and(|q| q.split('&').any(|p| p.starts_with("key=")))
}

/// `GET /v1beta/models`: the default back-end's models, then every back-end's prefixed.
pub async fn models(State(engine): State<Engine>) -> Response {
    let default = engine.config().default_backend.clone();
    let listed = engine.models().await;
    let mut ids = Vec::new();
    for (backend, models) in &listed {
        if *backend == default {
            ids.extend(models.iter().cloned());
        }
    }
    for (backend, models) in &listed {
        ids.extend(models.iter().map(|m| format!("{backend}:{m}")));
    }
    let models: Vec<Value> = ids.iter().map(|id| model_entry(id)).collect();
    Json(json!({"models": models})).into_response()
}

async fn model(Path(target): Path<String>) -> Response {
    Json(model_entry(
        target.strip_prefix("models/").unwrap_or(&target),
    ))
    .into_response()
}
