//! The OpenAI Responses front-end: `POST /v1/responses`, `GET` and `DELETE
//! /v1/responses/{id}`, for Codex CLI and newer OpenAI SDK code. Streams end with
//! `response.completed` (or `response.failed` / `response.incomplete`), never `[DONE]`.
//!
//! Answers are stored (bounded, see `[responses]`; not when the request says
//! `store: false`), so `previous_response_id` continues a conversation on any back-end:
//! llmux puts the stored turn back in front of the new input.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;

use super::common::{StreamEncoder, error_response, request_context};
use super::serve::{self, Frontend};
use crate::Error;
use crate::backend::EventStream;
use crate::engine::Engine;
use crate::model::{Event, Message, Protocol, Request as ModelRequest, ResponseBuilder, Role};
use crate::protocol::openai_responses::{
    ClientOptions, EventEncoder, decode_request, encode_response,
};
use crate::state::responses::StoredResponse;

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

/// What encoding a Responses answer and storing it need.
pub(super) struct Options {
    client: ClientOptions,
    /// The conversation so far (the stored turn put back in front), kept with the answer
    /// for the next `previous_response_id`.
    system: Vec<crate::model::Part>,
    messages: Vec<Message>,
}

impl Frontend for Responses {
    const PROTOCOL: Protocol = PROTOCOL;
    type Call = ();
    type Options = Options;
    type Encoder = EventEncoder;

    fn decode(body: &[u8], (): &()) -> Result<(ModelRequest, Options), Error> {
        let (request, client) = decode_request(body)?;
        let options = Options {
            client,
            system: Vec::new(),
            messages: Vec::new(),
        };
        Ok((request, options))
    }

    fn before(
        engine: &Engine,
        request: &mut ModelRequest,
        options: &mut Options,
    ) -> Result<(), Error> {
        continue_previous(engine, request)?;
        options.system = request.system.clone();
        options.messages = request.messages.clone();
        Ok(())
    }

    fn events(engine: &Engine, options: &Options, events: EventStream) -> EventStream {
        record(
            engine.clone(),
            events,
            options.system.clone(),
            options.messages.clone(),
            options.client.clone(),
        )
    }

    fn stream_encoder(options: &Options) -> EventEncoder {
        EventEncoder::new(options.client.clone())
    }

    fn body(response: &crate::model::Response, options: &Options) -> serde_json::Value {
        encode_response(response, &options.client)
    }
}

/// Puts the stored turn named by `previous_response_id` in front of the new input.
fn continue_previous(engine: &Engine, request: &mut ModelRequest) -> Result<(), Error> {
    let Some(fields) = request
        .extensions
        .fields
        .get("previous_response_id")
        .filter(|_| request.extensions.source == Some(PROTOCOL))
    else {
        return Ok(());
    };
    let Some(id) = fields.as_str().map(str::to_owned) else {
        return Err(Error::invalid_field(
            "previous_response_id",
            "'previous_response_id' must be a string",
        ));
    };
    let stored = engine.responses().get(&id).ok_or_else(|| {
        Error::not_found(format!(
            "previous response '{id}' is not stored by llmux (answers are kept for \
             [responses] retention_seconds, max_stored of them)"
        ))
    })?;
    request.extensions.fields.remove("previous_response_id");
    let mut messages = stored.messages;
    messages.push(Message::new(Role::Assistant, stored.response.parts));
    messages.append(&mut request.messages);
    request.messages = messages;
    if request.system.is_empty() {
        request.system = stored.system;
    }
    Ok(())
}

/// A fresh `resp_` id for answers from back-ends that do not speak Responses.
fn fresh_id() -> String {
    format!("resp_{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// Passes the events on, giving the answer a Responses id and storing it when it ends.
fn record(
    engine: Engine,
    events: EventStream,
    system: Vec<crate::model::Part>,
    messages: Vec<Message>,
    options: ClientOptions,
) -> EventStream {
    Box::pin(async_stream::stream! {
        let mut events = events;
        let mut builder = ResponseBuilder::new();
        let mut failed = false;
        while let Some(event) = events.next().await {
            let event = match event {
                Event::Start { id, model, created, extensions } if !id.starts_with("resp_") => {
                    Event::Start { id: fresh_id(), model, created, extensions }
                }
                other => other,
            };
            if builder.push(event.clone()).is_err() {
                failed = true;
            }
            yield event;
        }
        // `store: false` (what Codex sends) means the client keeps the state itself.
        let store = options.echo.get("store") != Some(&serde_json::Value::Bool(false));
        if !failed && store {
            let response = builder.finish();
            let id = response.id.clone();
            engine.responses().put(
                &id,
                StoredResponse { system, messages, response, echo: options.echo },
            );
        }
    })
}

async fn retrieve(State(engine): State<Engine>, Path(id): Path<String>) -> Response {
    match engine.responses().get(&id) {
        Some(stored) => {
            let options = ClientOptions { echo: stored.echo };
            Json(encode_response(&stored.response, &options)).into_response()
        }
        None => not_stored(&id),
    }
}

async fn delete(State(engine): State<Engine>, Path(id): Path<String>) -> Response {
    if engine.responses().remove(&id) {
        Json(json!({"id": id, "object": "response", "deleted": true})).into_response()
    } else {
        not_stored(&id)
    }
}

fn not_stored(id: &str) -> Response {
    let err = Error::not_found(format!("no stored response with id '{id}'"));
    error_response(PROTOCOL, &err)
}
