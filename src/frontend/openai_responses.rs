//! The OpenAI Responses front-end: `POST /v1/responses`, `GET` and `DELETE
//! /v1/responses/{id}`, for Codex CLI and newer OpenAI SDK code. Streams end with
//! `response.completed` (or `response.failed` / `response.incomplete`), never `[DONE]`.
//!
//! Answers are stored (bounded, see `[responses]`; not when the request says
//! `store: false`), so `previous_response_id` continues a conversation on any back-end:
//! the pipeline's responses-store stage puts the stored turn back in front of the new
//! input. This front-end serves the stored answers.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::json;

use super::common::{StreamEncoder, error_response, request_context};
use super::serve::{self, Frontend};
use crate::Error;
use crate::engine::Engine;
use crate::model::{ClientBody, Event, Protocol, Request as ModelRequest};
use crate::pipeline::AnswerEcho;
use crate::pipeline::RequestContext;
use crate::protocol::openai_responses::{
    ClientOptions, EventEncoder, decode_request_checked, echo_is_answered, encode_response,
};
use crate::protocol::tools_out::Encoded;

const PROTOCOL: Protocol = Protocol::OpenAiResponses;

pub fn routes() -> axum::Router<Engine> {
    axum::Router::new()
        .route("/v1/responses", post(create))
        .route("/v1/responses/{id}", get(retrieve).delete(delete))
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
    let ctx = request_context(PROTOCOL, &request);
    let (parts, body) = request.into_parts();
    serve::generate::<Responses>(&engine, ctx, &parts.headers, body, ()).await
}

/// The OpenAI Responses wire.
pub(super) struct Responses;

/// What encoding a Responses answer needs.
pub(super) struct Options {
    client: ClientOptions,
}

impl Frontend for Responses {
    const PROTOCOL: Protocol = PROTOCOL;
    type Call = ();
    type Options = Options;
    type Encoder = EventEncoder;
    /// The answer names every parameter it echoes (see `verbatim_fits`).
    const VERBATIM: bool = true;

    fn decode(body: &Bytes, (): &()) -> Result<(ModelRequest, Options), Error> {
        let (mut request, client, edits) = decode_request_checked(body)?;
        request.client.original =
            edits.map(|edits| ClientBody::new(PROTOCOL, body.clone(), &request, edits));
        Ok((request, Options { client }))
    }

    fn annotate(ctx: &mut RequestContext, options: &Options) {
        ctx.answer_echo = Some(std::sync::Arc::new(AnswerEcho {
            fields: options.client.echo.clone(),
            tools: options.client.tools.clone(),
        }));
    }

    fn verbatim_fits(answer: &[Event], options: &Options) -> bool {
        echo_is_answered(answer, &options.client.echo)
    }

    fn stream_encoder(options: &Options) -> EventEncoder {
        EventEncoder::new(options.client.clone())
    }

    fn body(response: &crate::model::Response, options: &Options) -> Encoded {
        encode_response(response, &options.client)
    }
}

async fn retrieve(State(engine): State<Engine>, Path(id): Path<String>) -> Response {
    match engine.responses().fetch(&id).await {
        Some(stored) => {
            let options = ClientOptions {
                echo: stored.echo,
                tools: None,
            };
            serve::json_answer(&encode_response(&stored.response, &options))
        }
        None => not_stored(&id),
    }
}

async fn delete(State(engine): State<Engine>, Path(id): Path<String>) -> Response {
    if engine.responses().forget(&id).await {
        Json(json!({"id": id, "object": "response", "deleted": true})).into_response()
    } else {
        not_stored(&id)
    }
}

fn not_stored(id: &str) -> Response {
    let err = Error::not_found(format!("no stored response with id '{id}'"));
    error_response(PROTOCOL, &err)
}
