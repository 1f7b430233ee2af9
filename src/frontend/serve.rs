//! One handler skeleton for the four client protocols.
//!
//! Every protocol's generate call is the same sequence: read the body, decode it, stamp what
//! the client is (user agent, session, protocol headers), start the capture row, run the
//! engine, then stream the events in the protocol's frames or fold them into one body, with
//! the request's id. A [`Frontend`] says only what differs: how its wire decodes and
//! encodes, what the pipeline should know from its options, and its error answer. Failures
//! at any step answer in the client's protocol; the engine logs and records every request
//! once (the pipeline's `on_complete` phase), however it ends.

use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::common::{
    StreamEncoder, collect_answer, error_response, fold_answer, header_string, read_body,
    stream_response, with_request_id,
};
use crate::Error;
use crate::engine::Engine;
use crate::model::{Protocol, Request, Response as ModelResponse, VerbatimSlot};
use crate::pipeline::RequestContext;
use crate::protocol::tools_out::Encoded;

/// A client protocol's part of a generate call.
pub trait Frontend {
    const PROTOCOL: Protocol;
    /// What the route adds to the body (Gemini: the model and method in the URL).
    type Call: Send;
    /// What the client asked for that the answer's encoding needs (OpenAI: `include_usage`).
    type Options: Send + 'static;
    type Encoder: StreamEncoder;

    /// Whether a whole answer from a back-end of this protocol may go to the client as the
    /// provider's own bytes when nothing changed it: true when [`Frontend::body`] depends
    /// on the answer alone, or on what [`Frontend::verbatim_fits`] checks (see
    /// [`VerbatimSlot`]).
    const VERBATIM: bool = false;

    /// Whether [`Frontend::body`] of the answer whose events are `answer` depends on the
    /// answer alone with these options (the Responses API: the answer echoes every
    /// parameter the client's request set, so none is taken from the request).
    fn verbatim_fits(_answer: &[crate::model::Event], _options: &Self::Options) -> bool {
        true
    }

    /// The body, decoded into the canonical request and the encoding options. A protocol
    /// whose back-ends may get the body as it came puts it on the request
    /// (`client.original`, see [`crate::model::ClientBody`]).
    fn decode(body: &Bytes, call: &Self::Call) -> Result<(Request, Self::Options), Error>;

    /// Headers of this protocol that travel to back-ends of the same protocol only.
    fn protocol_headers(_headers: &HeaderMap) -> Vec<(String, String)> {
        Vec::new()
    }

    /// What the pipeline's stages should know from this protocol's options (the Responses
    /// API: what a stored answer echoes).
    fn annotate(_ctx: &mut RequestContext, _options: &Self::Options) {}

    fn stream_encoder(options: &Self::Options) -> Self::Encoder;

    /// The whole answer as this protocol's JSON body.
    fn body(response: &ModelResponse, options: &Self::Options) -> Encoded;

    /// An error as this protocol's answer.
    fn error(err: &Error) -> Response {
        error_response(Self::PROTOCOL, err)
    }
}

/// Serves one generate call of protocol `F`: `ctx` from the connection, the request's
/// headers and body, and what its route added.
pub async fn generate<F: Frontend>(
    engine: &Engine,
    mut ctx: RequestContext,
    headers: &HeaderMap,
    body: axum::body::Body,
    call: F::Call,
) -> Response {
    let body = match read_body(body, headers, engine.config().max_body_bytes).await {
        Ok(body) => body,
        Err(err) => return rejected::<F>(engine, &mut ctx, headers, &Bytes::new(), &err),
    };
    let (mut request, options) = match F::decode(&body, &call) {
        Ok(decoded) => decoded,
        Err(err) => return rejected::<F>(engine, &mut ctx, headers, &body, &err),
    };
    engine.record_request(&mut ctx, headers, &body);
    request.client.user_agent = ctx.user_agent.clone();
    request.client.session_id = header_string(headers, "x-session-id");
    let protocol_headers = F::protocol_headers(headers);
    if !protocol_headers.is_empty() {
        request.client.protocol_headers = Some((F::PROTOCOL, protocol_headers));
    }
    F::annotate(&mut ctx, &options);
    let stream = request.stream;
    let verbatim = (F::VERBATIM && !stream).then(|| VerbatimSlot::new(F::PROTOCOL));
    request.client.verbatim.clone_from(&verbatim);
    let events = match engine.respond(&mut ctx, request).await {
        Ok(events) => events,
        Err(err) => return answer_error::<F>(&ctx, &err),
    };
    let mut response = if stream {
        stream_response(events, F::stream_encoder(&options))
    } else {
        whole_answer::<F>(events, verbatim.as_ref(), &options).await
    };
    with_request_id(&mut response, &ctx);
    response
}

/// A non-streamed answer: the provider's own body when the events the client gets are the
/// ones it decoded to, else the events folded and encoded in the client's protocol.
async fn whole_answer<F: Frontend>(
    events: crate::backend::EventStream,
    verbatim: Option<&VerbatimSlot>,
    options: &F::Options,
) -> Response {
    let answer = match collect_answer(events).await {
        Ok(answer) => answer,
        Err(err) => return F::error(&err),
    };
    let verbatim = verbatim.filter(|_| F::verbatim_fits(&answer, options));
    if let Some(body) = verbatim.and_then(|slot| slot.take_if_same(&answer)) {
        let json = axum::http::HeaderValue::from_static("application/json");
        return ([(axum::http::header::CONTENT_TYPE, json)], body).into_response();
    }
    match fold_answer(answer) {
        Ok(folded) => json_answer(&F::body(&folded, options)),
        Err(err) => F::error(&err),
    }
}

/// A JSON body as the answer, written by `json_out` (serde_json's bytes, for less work).
pub(super) fn json_answer(body: &Encoded) -> Response {
    let json = axum::http::HeaderValue::from_static("application/json");
    let bytes = bytes::Bytes::from(body.to_vec(1024));
    ([(axum::http::header::CONTENT_TYPE, json)], bytes).into_response()
}

/// Ends a request that failed before the engine took it, and answers with its error.
pub fn failed<F: Frontend>(engine: &Engine, ctx: &RequestContext, err: &Error) -> Response {
    engine.fail(ctx, err);
    answer_error::<F>(ctx, err)
}

/// The error answer, with the request's id.
fn answer_error<F: Frontend>(ctx: &RequestContext, err: &Error) -> Response {
    let mut response = F::error(err);
    with_request_id(&mut response, ctx);
    response
}

/// The answer to a request llmux could not read or decode, recorded in the capture store
/// (when it is on) with the body as far as it was read.
fn rejected<F: Frontend>(
    engine: &Engine,
    ctx: &mut RequestContext,
    headers: &HeaderMap,
    body: &Bytes,
    err: &Error,
) -> Response {
    engine.record_request(ctx, headers, body);
    failed::<F>(engine, ctx, err)
}
