//! The OpenAI Chat Completions front-end: `POST /v1/chat/completions`, `GET /v1/models`.

use axum::Json;
use axum::extract::{Request, State};

use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::json;

use super::common::{StreamEncoder, request_context};
use super::serve::{self, Frontend};
use crate::Error;
use crate::engine::Engine;
use crate::model::{
    ClientBody, Event, Protocol, Request as ModelRequest, Response as ModelResponse,
};
use crate::protocol::openai_chat::{
    ChunkEncoder, ClientOptions, decode_request_checked, encode_response,
};
use crate::protocol::tools_out::Encoded;

const PROTOCOL: Protocol = Protocol::OpenAiChat;

pub fn routes() -> axum::Router<Engine> {
    axum::Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
}

async fn chat_completions(State(engine): State<Engine>, request: Request) -> Response {
    let ctx = request_context(PROTOCOL, &request);
    let (parts, body) = request.into_parts();
    serve::generate::<OpenAiChat>(&engine, ctx, &parts.headers, body, ()).await
}

/// The OpenAI Chat Completions wire.
pub(super) struct OpenAiChat;

impl Frontend for OpenAiChat {
    const PROTOCOL: Protocol = PROTOCOL;
    type Call = ();
    type Options = ClientOptions;
    type Encoder = ChunkEncoder;
    const VERBATIM: bool = true;

    fn decode(body: &Bytes, (): &()) -> Result<(ModelRequest, ClientOptions), Error> {
        let (mut request, options, edits) = decode_request_checked(body)?;
        request.client.original =
            edits.map(|edits| ClientBody::new(PROTOCOL, body.clone(), &request, edits));
        Ok((request, options))
    }

    fn stream_encoder(options: &ClientOptions) -> ChunkEncoder {
        ChunkEncoder::new(options.include_usage)
    }

    fn body(response: &ModelResponse, _options: &ClientOptions) -> Encoded {
        encode_response(response).into()
    }
}

impl StreamEncoder for ChunkEncoder {
    fn push(&mut self, event: Event, out: &mut Vec<Bytes>) {
        ChunkEncoder::push(self, event, out);
    }

    fn finish(&mut self, out: &mut Vec<Bytes>) {
        ChunkEncoder::finish(self, out);
    }

    fn keepalive(&self) -> Option<Bytes> {
        // An SSE comment: every SSE parser skips it.
        Some(Bytes::from_static(b": keep-alive\n\n"))
    }
}

/// `GET /v1/models`. google-genai SDKs call the same path on the `v1` API; they get the
/// Gemini shape.
async fn models(State(engine): State<Engine>, request: Request) -> Response {
    if super::gemini::is_gemini_client(request.headers(), request.uri().query()) {
        return super::gemini::models(State(engine)).await;
    }
    let default = engine.config().default_backend.clone();
    let mut data = Vec::new();
    let listed = engine.models().await;
    for (backend, models) in &listed {
        if *backend == default {
            for model in models {
                data.push(
                    json!({"id": model, "object": "model", "created": 0, "owned_by": backend}),
                );
            }
        }
    }
    for (backend, models) in &listed {
        for model in models {
            data.push(json!({
                "id": format!("{backend}:{model}"),
                "object": "model",
                "created": 0,
                "owned_by": backend,
            }));
        }
    }
    Json(json!({"object": "list", "data": data})).into_response()
}
