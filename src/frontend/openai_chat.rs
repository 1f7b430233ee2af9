//! The OpenAI Chat Completions front-end: `POST /v1/chat/completions`, `GET /v1/models`.

use std::convert::Infallible;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;

use super::common::{RequestLog, error_response, header_string, read_body, request_context};
use crate::backend::EventStream;
use crate::engine::Engine;
use crate::model::{Protocol, ResponseBuilder};
use crate::pipeline::RequestContext;
use crate::protocol::openai_chat::{ChunkEncoder, ClientOptions, decode_request, encode_response};

const PROTOCOL: Protocol = Protocol::OpenAiChat;

pub fn routes() -> axum::Router<Engine> {
    axum::Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
}

async fn chat_completions(State(engine): State<Engine>, request: Request) -> Response {
    let mut ctx = request_context(PROTOCOL, &request);
    let (parts, body) = request.into_parts();
    let decoded = match read_body(body, &parts.headers, engine.config().max_body_bytes).await {
        Ok(body) => decode_request(&body),
        Err(err) => Err(err),
    };
    let (mut chat, options) = match decoded {
        Ok(decoded) => decoded,
        Err(err) => return failed(&ctx, false, &err),
    };
    chat.client.user_agent = ctx.user_agent.clone();
    chat.client.session_id = header_string(&parts.headers, "x-session-id");
    let stream = chat.stream;
    let events = match engine.respond(&mut ctx, chat).await {
        Ok(events) => events,
        Err(err) => return failed(&ctx, stream, &err),
    };
    let log = RequestLog::new(&ctx, stream);
    let mut response = if stream {
        stream_response(events, options, log)
    } else {
        json_response(events, log).await
    };
    with_request_id(&mut response, &ctx);
    response
}

fn with_request_id(response: &mut Response, ctx: &RequestContext) {
    if let Ok(id) = HeaderValue::from_str(&ctx.request_id) {
        response.headers_mut().insert("x-request-id", id);
    }
}

fn failed(ctx: &RequestContext, stream: bool, err: &crate::Error) -> Response {
    RequestLog::new(ctx, stream).fail(err);
    let mut response = error_response(PROTOCOL, err);
    with_request_id(&mut response, ctx);
    response
}

fn stream_response(events: EventStream, options: ClientOptions, log: RequestLog) -> Response {
    let body = async_stream::stream! {
        let mut events = events;
        let mut log = log;
        let mut encoder = ChunkEncoder::new(options.include_usage);
        let mut frames = Vec::with_capacity(2);
        while let Some(event) = events.next().await {
            log.observe(&event);
            encoder.push(event, &mut frames);
            for frame in frames.drain(..) {
                yield Ok::<Bytes, Infallible>(frame);
            }
        }
        encoder.finish(&mut frames);
        for frame in frames.drain(..) {
            yield Ok(frame);
        }
        log.finish();
    };
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

async fn json_response(mut events: EventStream, mut log: RequestLog) -> Response {
    let mut builder = ResponseBuilder::new();
    while let Some(event) = events.next().await {
        log.observe(&event);
        if let Err(err) = builder.push(event) {
            log.fail(&err);
            return error_response(PROTOCOL, &err);
        }
    }
    log.finish();
    Json(encode_response(&builder.finish())).into_response()
}

async fn models(State(engine): State<Engine>) -> Response {
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
