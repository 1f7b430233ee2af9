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

use super::common::{StreamEncoder, read_body, request_context};
use super::serve::{self, Frontend};
use crate::Error;
use crate::engine::Engine;
use crate::model::{Event, Protocol, Request as ModelRequest, Response as ModelResponse};
use crate::protocol::gemini::{
    ChunkEncoder, StreamFormat, decode_count_tokens_request, decode_request,
    encode_count_tokens_response, encode_response,
};
use crate::protocol::tools_out::Encoded;

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
    let ctx = request_context(PROTOCOL, &request);
    let alt = request
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("alt=")))
        .map(str::to_owned);
    let (parts, body) = request.into_parts();
    let (model, action) = match split_target(&target) {
        Ok(split) => split,
        Err(err) => return serve::failed::<Gemini>(&engine, &ctx, &err),
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
                Err(err) => serve::failed::<Gemini>(&engine, &ctx, &err),
            };
        }
        other => {
            let err = Error::not_found(format!(
                "unknown method :{other}; expected :generateContent, :streamGenerateContent or :countTokens"
            ));
            return serve::failed::<Gemini>(&engine, &ctx, &err);
        }
    };
    let call = Call {
        model: model.to_owned(),
        stream,
        format: StreamFormat::from_alt(alt.as_deref()),
    };
    serve::generate::<Gemini>(&engine, ctx, &parts.headers, body, call).await
}

/// The Gemini wire.
pub(super) struct Gemini;

/// What the URL says: the model, and whether and how to stream.
pub(super) struct Call {
    model: String,
    stream: bool,
    format: StreamFormat,
}

impl Call {
    /// `:generateContent` on `model`: one answer, no stream.
    pub(super) fn generate(model: &str) -> Self {
        Self {
            model: model.to_owned(),
            stream: false,
            format: StreamFormat::from_alt(None),
        }
    }
}

impl Frontend for Gemini {
    const PROTOCOL: Protocol = PROTOCOL;
    type Call = Call;
    type Options = StreamFormat;
    type Encoder = ChunkEncoder;

    fn decode(body: &Bytes, call: &Call) -> Result<(ModelRequest, StreamFormat), Error> {
        let mut request = decode_request(body, &call.model)?;
        request.stream = call.stream;
        Ok((request, call.format))
    }

    fn stream_encoder(format: &StreamFormat) -> ChunkEncoder {
        ChunkEncoder::new(*format)
    }

    fn body(response: &ModelResponse, _format: &StreamFormat) -> Encoded {
        encode_response(response).into()
    }

    /// Google's HTTP status for its status name (Anthropic's 529 becomes 503 `UNAVAILABLE`,
    /// as the body says).
    fn error(err: &Error) -> Response {
        google_status(super::common::error_response(PROTOCOL, err), err)
    }
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
