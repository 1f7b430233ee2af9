//! The OpenAI Chat Completions front-end: `POST /v1/chat/completions`, `GET /v1/models`.

use axum::Json;
use axum::extract::{Request, State};

use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::json;

use super::common::{
    RequestLog, StreamEncoder, error_response, failed, fold_response, header_string, read_body,
    rejected, request_context, stream_response, with_request_id,
};
use crate::backend::EventStream;
use crate::engine::Engine;
use crate::model::{Event, Protocol};
use crate::protocol::openai_chat::{ChunkEncoder, decode_request, encode_response};

const PROTOCOL: Protocol = Protocol::OpenAiChat;

pub fn routes() -> axum::Router<Engine> {
    axum::Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
}

async fn chat_completions(State(engine): State<Engine>, request: Request) -> Response {
    let mut ctx = request_context(PROTOCOL, &request);
    let (parts, body) = request.into_parts();
    let body = match read_body(body, &parts.headers, engine.config().max_body_bytes).await {
        Ok(body) => body,
        Err(err) => return rejected(&engine, PROTOCOL, &mut ctx, &parts.headers, b"", &err),
    };
    let (mut chat, options) = match decode_request(&body) {
        Ok(decoded) => decoded,
        Err(err) => return rejected(&engine, PROTOCOL, &mut ctx, &parts.headers, &body, &err),
    };
    chat.client.user_agent = ctx.user_agent.clone();
    chat.client.session_id = header_string(&parts.headers, "x-session-id");
    engine.begin_capture(&mut ctx, &parts.headers, &body, &chat);
    let stream = chat.stream;
    let events = match engine.respond(&mut ctx, chat).await {
        Ok(events) => events,
        Err(err) => return failed(PROTOCOL, &ctx, stream, &err),
    };
    let log = RequestLog::new(&ctx, stream);
    let mut response = if stream {
        stream_response(events, ChunkEncoder::new(options.include_usage), log)
    } else {
        json_response(events, log).await
    };
    with_request_id(&mut response, &ctx);
    response
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

async fn json_response(events: EventStream, log: RequestLog) -> Response {
    match fold_response(events, log).await {
        Ok(response) => Json(encode_response(&response)).into_response(),
        Err(err) => error_response(PROTOCOL, &err),
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
