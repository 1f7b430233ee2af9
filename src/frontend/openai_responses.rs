//! The OpenAI Responses front-end: `POST /v1/responses`, for Codex CLI and newer OpenAI SDK
//! code. Streams end with `response.completed` (or `response.failed` /
//! `response.incomplete`), never `[DONE]`.

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;

use super::common::{
    RequestLog, StreamEncoder, error_response, failed, fold_response, header_string, read_body,
    request_context, stream_response, with_request_id,
};
use crate::engine::Engine;
use crate::model::{Event, Protocol};
use crate::protocol::openai_responses::{EventEncoder, decode_request, encode_response};

const PROTOCOL: Protocol = Protocol::OpenAiResponses;

pub fn routes() -> axum::Router<Engine> {
    axum::Router::new().route("/v1/responses", post(create))
}

impl StreamEncoder for EventEncoder {
    fn push(&mut self, event: Event, out: &mut Vec<Bytes>) {
        EventEncoder::push(self, event, out);
    }

    fn finish(&mut self, out: &mut Vec<Bytes>) {
        EventEncoder::finish(self, out);
    }

    fn keepalive(&self) -> Option<Bytes> {
        Some(Bytes::from_static(b": keep-alive\n\n"))
    }
}

async fn create(State(engine): State<Engine>, request: Request) -> Response {
    let mut ctx = request_context(PROTOCOL, &request);
    let (parts, body) = request.into_parts();
    let decoded = match read_body(body, &parts.headers, engine.config().max_body_bytes).await {
        Ok(body) => decode_request(&body),
        Err(err) => Err(err),
    };
    let (mut responses, options) = match decoded {
        Ok(decoded) => decoded,
        Err(err) => return failed(PROTOCOL, &ctx, false, &err),
    };
    responses.client.user_agent = ctx.user_agent.clone();
    responses.client.session_id = header_string(&parts.headers, "x-session-id");
    let stream = responses.stream;
    let events = match engine.respond(&mut ctx, responses).await {
        Ok(events) => events,
        Err(err) => return failed(PROTOCOL, &ctx, stream, &err),
    };
    let log = RequestLog::new(&ctx, stream);
    let mut response = if stream {
        stream_response(events, EventEncoder::new(options), log)
    } else {
        match fold_response(events, log).await {
            Ok(folded) => Json(encode_response(&folded, &options)).into_response(),
            Err(err) => error_response(PROTOCOL, &err),
        }
    };
    with_request_id(&mut response, &ctx);
    response
}
