//! The Anthropic Messages front-end, for Claude Code and the Anthropic SDKs.
//!
//! On the main port under `/anthropic/...` and at `/v1/messages`; on the dedicated
//! Anthropic port (main port + 1 by default) the same routes at its root, so
//! `ANTHROPIC_BASE_URL=http://127.0.0.1:8001` works. `?beta=true` is accepted and ignored.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::{Value, json};

use super::common::{StreamEncoder, header_string, read_body, request_context};
use super::serve::{self, Frontend};
use crate::Error;
use crate::engine::Engine;
use crate::model::{
    ClientBody, Event, Protocol, Request as ModelRequest, Response as ModelResponse,
};
use crate::protocol::anthropic::{
    EventEncoder, decode_request, decode_request_checked, encode_response, estimate_input_tokens,
};
use crate::protocol::tools_out::Encoded;

const PROTOCOL: Protocol = Protocol::Anthropic;

/// Headers of the Anthropic protocol that travel to Anthropic back-ends only.
const PROTOCOL_HEADERS: &[&str] = &["anthropic-version", "anthropic-beta"];

/// Routes on the main port.
pub fn routes() -> axum::Router<Engine> {
    axum::Router::new()
        .route("/anthropic/v1/messages", post(messages))
        .route("/v1/messages", post(messages))
        .route("/anthropic/v1/messages/count_tokens", post(count_tokens))
        .route("/v1/messages/count_tokens", post(count_tokens))
        .route("/anthropic/v1/models", get(models))
}

/// Routes that need no key, on the main port.
pub fn public_routes() -> axum::Router<Engine> {
    axum::Router::new()
        .route("/anthropic/health", get(health))
        .route("/anthropic/info", get(info))
}

/// Routes of the dedicated Anthropic port, at its root.
pub fn dedicated_routes() -> axum::Router<Engine> {
    routes().route("/v1/models", get(models))
}

/// Public routes of the dedicated Anthropic port.
pub fn dedicated_public_routes() -> axum::Router<Engine> {
    public_routes()
        .route("/health", get(health))
        .route("/info", get(info))
        .route("/", get(info))
}

impl StreamEncoder for EventEncoder {
    fn push(&mut self, event: Event, out: &mut Vec<Bytes>) {
        EventEncoder::push(self, event, out);
    }

    fn finish(&mut self, out: &mut Vec<Bytes>) {
        EventEncoder::finish(self, out);
    }

    fn keepalive(&self) -> Option<Bytes> {
        Some(crate::protocol::sse::named_frame(
            "ping",
            &json!({"type": "ping"}),
        ))
    }
}

async fn messages(State(engine): State<Engine>, request: Request) -> Response {
    let ctx = request_context(PROTOCOL, &request);
    let (parts, body) = request.into_parts();
    serve::generate::<Messages>(&engine, ctx, &parts.headers, body, ()).await
}

/// The Anthropic Messages wire.
pub(super) struct Messages;

impl Frontend for Messages {
    const PROTOCOL: Protocol = PROTOCOL;
    type Call = ();
    /// The input-token estimate `message_start` and the body report before usage arrives.
    type Options = u64;
    type Encoder = EventEncoder;
    /// The body depends on the estimate only when the answer has no usage, and an answer
    /// without usage never passes through (see `decode_response_checked`).
    const VERBATIM: bool = true;

    fn decode(body: &Bytes, (): &()) -> Result<(ModelRequest, u64), Error> {
        let (mut request, edits) = decode_request_checked(body)?;
        request.client.original =
            edits.map(|edits| ClientBody::new(PROTOCOL, body.clone(), &request, edits));
        let estimated_input = estimate_input_tokens(&request);
        Ok((request, estimated_input))
    }

    fn protocol_headers(headers: &HeaderMap) -> Vec<(String, String)> {
        PROTOCOL_HEADERS
            .iter()
            .filter_map(|name| header_string(headers, name).map(|v| ((*name).to_owned(), v)))
            .collect()
    }

    fn stream_encoder(estimated_input: &u64) -> EventEncoder {
        EventEncoder::new(*estimated_input)
    }

    fn body(response: &ModelResponse, estimated_input: &u64) -> Encoded {
        encode_response(response, *estimated_input).into()
    }
}

/// `count_tokens`: an estimate (four characters a token), never a made-up zero, which
/// would stop Claude Code from compacting its context.
async fn count_tokens(State(engine): State<Engine>, request: Request) -> Response {
    let ctx = request_context(PROTOCOL, &request);
    let (parts, body) = request.into_parts();
    let counted = async {
        let body = read_body(body, &parts.headers, engine.config().max_body_bytes).await?;
        let mut value: Value = crate::protocol::openai_chat::decode::parse_json(&body)?;
        // count_tokens takes a message request without max_tokens.
        if let Value::Object(obj) = &mut value {
            obj.entry("max_tokens").or_insert(Value::from(1));
        }
        let bytes = serde_json::to_vec(&value).map_err(|e| Error::internal(e.to_string()))?;
        let request = decode_request(&bytes)?;
        Ok::<u64, Error>(estimate_input_tokens(&request))
    }
    .await;
    match counted {
        Ok(tokens) => Json(json!({"input_tokens": tokens})).into_response(),
        Err(err) => serve::failed::<Messages>(&engine, &ctx, &err),
    }
}

async fn models(State(engine): State<Engine>) -> Response {
    let default = engine.config().default_backend.clone();
    let mut ids = Vec::new();
    let listed = engine.models().await;
    for (backend, models) in &listed {
        if *backend == default {
            ids.extend(models.iter().cloned());
        }
    }
    for (backend, models) in &listed {
        ids.extend(models.iter().map(|m| format!("{backend}:{m}")));
    }
    let data: Vec<Value> = ids
        .iter()
        .map(|id| {
            json!({"type": "model", "id": id, "display_name": id,
                   "created_at": "1970-01-01T00:00:00Z"})
        })
        .collect();
    Json(json!({
        "data": data,
        "has_more": false,
        "first_id": ids.first(),
        "last_id": ids.last(),
    }))
    .into_response()
}

async fn health(State(engine): State<Engine>) -> impl IntoResponse {
    Json(super::health_of(&engine, Some("anthropic")))
}

async fn info(State(engine): State<Engine>) -> impl IntoResponse {
    Json(json!({
        "name": "llmux",
        "frontend": "anthropic",
        "version": env!("CARGO_PKG_VERSION"),
        "default_backend": engine.config().default_backend,
        "anthropic_port": engine.config().anthropic_port,
        "paths": ["/v1/messages", "/v1/messages/count_tokens", "/v1/models"],
    }))
}
