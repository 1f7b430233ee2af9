//! A minimal, fast OpenAI-compatible provider for load benchmarks.
//!
//! - `POST /v1/chat/completions`: reads the whole request body, then answers a fixed small
//!   `chat.completion`, or, when the body has `"stream": true`, a 64-chunk SSE stream (role chunk,
//!   64 content chunks of one word each, a finish chunk, a usage chunk when the body asks for
//!   `include_usage`, then `data: [DONE]`), every frame prebuilt and sent as fast as possible.
//!   With `--chunk-interval-ms N` a stream is paced instead: one content chunk every N ms, its
//!   text `" <index>@<send time in Unix µs>"`, for `streams` to check order and frame delay.
//! - `POST /v1/messages`: a fixed small Anthropic message (the shape of the Messages
//!   reference's example), for an Anthropic client of an Anthropic back-end; with
//!   `"stream": true` the same 64 words as Anthropic's streaming events (`message_start`,
//!   `content_block_start`, `ping`, a `content_block_delta` a word, `content_block_stop`,
//!   `message_delta`, `message_stop`), prebuilt and sent at once.
//! - `POST /v1/responses` with a Responses body (an `"input"` member and no `"messages"`): a
//!   fixed small `response` object (the shape of the Responses reference's example); with
//!   `"stream": true` the same 64 words as Responses events (`response.created`,
//!   `response.in_progress`, `response.output_item.added`, `response.content_part.added`, a
//!   `response.output_text.delta` a word, the three `.done` events, `response.completed`),
//!   prebuilt and sent at once. A chat body sent there gets the chat answer: bench/peers.sh
//!   sends the chat body to a peer gateway's Responses pass-through, which forwards it here.
//! - `POST /v1beta/models/{model}:generateContent`: a fixed small Gemini answer;
//!   `:streamGenerateContent` the same 64 words as Gemini's SSE records (`alt=sse`), the
//!   last with the `finishReason`, prebuilt and sent at once. `--chunk-interval-ms` paces
//!   only the chat stream (bench/streams.sh refuses another `FAKE_API`).
//! - `GET /v1/models`: a fixed model list; `GET /health`: 200.
//!
//! Only loopback addresses can be bound. With `--port 0` the OS picks a port; the first line on
//! stdout is always `listening on 127.0.0.1:PORT`.
#![allow(
    clippy::print_stdout,
    reason = "a command-line tool: printing the bound address is its interface"
)]

use std::convert::Infallible;
use std::future::Future as _;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Number of content chunks in a streamed answer.
const STREAM_WORDS: usize = 64;

#[derive(Parser, Debug)]
#[command(about = "Fast fake OpenAI-compatible provider (loopback only)")]
struct Args {
    /// Port to listen on; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Loopback address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Tokio worker threads; 1 runs a single-threaded runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Pace streamed answers: one content chunk every this many milliseconds, each carrying
    /// `" <index>@<send time in Unix microseconds>"` as its text, so a client can check the
    /// order and measure each frame's delay (0: prebuilt words, as fast as possible).
    #[arg(long, default_value_t = 0)]
    chunk_interval_ms: u64,
    /// Serve HTTPS (HTTP/1.1 over TLS) with a certificate for the bound address, made at
    /// start and signed by itself; its PEM goes to this file, for a client to trust.
    #[arg(long)]
    tls_cert_out: Option<std::path::PathBuf>,
}

/// A certificate for `host`, signed by itself, written to `pem_out`; the TLS settings of a
/// server presenting it.
fn self_signed_tls(
    host: IpAddr,
    pem_out: &std::path::Path,
) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let certified = rcgen::generate_simple_self_signed(vec![host.to_string()])?;
    std::fs::write(pem_out, certified.cert.pem())
        .with_context(|| format!("writing {}", pem_out.display()))?;
    let key = rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der())
        .map_err(|e| anyhow::anyhow!("the generated key: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Prebuilt response bodies, shared by all connections.
struct Canned {
    completion: Bytes,
    /// The Anthropic message `/v1/messages` answers.
    message: Bytes,
    models: Bytes,
    /// Stream frames without the usage chunk.
    stream: Arc<[Bytes]>,
    /// Stream frames with the usage chunk before `[DONE]`.
    stream_usage: Arc<[Bytes]>,
    /// The Anthropic stream `/v1/messages` answers a streaming request.
    message_stream: Arc<[Bytes]>,
    /// The Responses object `/v1/responses` answers a Responses request.
    response: Bytes,
    /// The Responses events `/v1/responses` answers a streaming Responses request.
    response_stream: Arc<[Bytes]>,
    /// The Gemini answer of `:generateContent`.
    gemini: Bytes,
    /// The Gemini records of `:streamGenerateContent?alt=sse`.
    gemini_stream: Arc<[Bytes]>,
    /// `--chunk-interval-ms`: zero sends the prebuilt frames at once.
    interval: std::time::Duration,
}

/// One Anthropic streaming event: its name and its JSON.
fn named_event(name: &str, json: &str) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {json}\n\n"))
}

/// The streamed Anthropic message, event by event (the order of Anthropic's streaming
/// reference): the words of the chat stream as one text block.
fn message_stream() -> Vec<Bytes> {
    let mut frames = vec![
        named_event(
            "message_start",
            r#"{"type":"message_start","message":{"id":"msg_fake","type":"message","role":"assistant","content":[],"model":"fake-model","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":512,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}"#,
        ),
        named_event(
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        ),
        named_event("ping", r#"{"type": "ping"}"#),
    ];
    for i in 0..STREAM_WORDS {
        let word = WORDS[i % WORDS.len()];
        let sep = if i == 0 { "" } else { " " };
        frames.push(named_event(
            "content_block_delta",
            &format!(
                r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":"{sep}{word}"}}}}"#
            ),
        ));
    }
    frames.push(named_event(
        "content_block_stop",
        r#"{"type":"content_block_stop","index":0}"#,
    ));
    frames.push(named_event(
        "message_delta",
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":64}}"#,
    ));
    frames.push(named_event("message_stop", r#"{"type":"message_stop"}"#));
    frames
}

/// The Responses object's members around its output, as in the Responses reference's example;
/// `{status}`, `{output}` and `{usage}` are filled in.
const RESPONSE_OBJECT: &str = r#"{"id":"resp_fake","object":"response","created_at":1700000000,"status":"{status}","background":false,"error":null,"incomplete_details":null,"instructions":null,"max_output_tokens":null,"max_tool_calls":null,"model":"fake-model","output":{output},"parallel_tool_calls":true,"previous_response_id":null,"reasoning":{"effort":null,"summary":null},"service_tier":"default","store":false,"temperature":1.0,"text":{"format":{"type":"text"},"verbosity":"medium"},"tool_choice":"auto","tools":[],"top_p":1.0,"truncation":"disabled","usage":{usage},"user":null,"metadata":{}}"#;

fn response_object(status: &str, output: &str, usage: &str) -> String {
    RESPONSE_OBJECT
        .replace("{status}", status)
        .replace("{output}", output)
        .replace("{usage}", usage)
}

fn response_usage(output_tokens: u32) -> String {
    format!(
        r#"{{"input_tokens":512,"input_tokens_details":{{"cached_tokens":0,"cache_write_tokens":0}},"output_tokens":{output_tokens},"output_tokens_details":{{"reasoning_tokens":0}},"total_tokens":{}}}"#,
        512 + output_tokens
    )
}

/// The output message holding `text`, finished.
fn response_message(text: &str) -> String {
    format!(
        r#"{{"id":"msg_fake","type":"message","status":"completed","content":[{{"type":"output_text","annotations":[],"logprobs":[],"text":"{text}"}}],"role":"assistant"}}"#
    )
}

/// The streamed Responses answer, event by event (the order of the Responses streaming
/// reference), each with its `sequence_number`: the words of the chat stream as one message.
fn response_stream() -> Vec<Bytes> {
    let text = stream_text();
    let in_progress = response_object("in_progress", "[]", "null");
    let mut events: Vec<(&str, String)> = vec![
        ("response.created", format!(r#""response":{in_progress}"#)),
        ("response.in_progress", format!(r#""response":{in_progress}"#)),
        (
            "response.output_item.added",
            r#""output_index":0,"item":{"id":"msg_fake","type":"message","status":"in_progress","content":[],"role":"assistant"}"#.to_owned(),
        ),
        (
            "response.content_part.added",
            r#""item_id":"msg_fake","output_index":0,"content_index":0,"part":{"type":"output_text","annotations":[],"logprobs":[],"text":""}"#.to_owned(),
        ),
    ];
    for delta in stream_deltas() {
        events.push((
            "response.output_text.delta",
            format!(
                r#""item_id":"msg_fake","output_index":0,"content_index":0,"delta":"{delta}","logprobs":[]"#
            ),
        ));
    }
    events.push((
        "response.output_text.done",
        format!(
            r#""item_id":"msg_fake","output_index":0,"content_index":0,"text":"{text}","logprobs":[]"#
        ),
    ));
    events.push((
        "response.content_part.done",
        format!(
            r#""item_id":"msg_fake","output_index":0,"content_index":0,"part":{{"type":"output_text","annotations":[],"logprobs":[],"text":"{text}"}}"#
        ),
    ));
    let message = response_message(&text);
    events.push((
        "response.output_item.done",
        format!(r#""output_index":0,"item":{message}"#),
    ));
    let completed = response_object(
        "completed",
        &format!("[{message}]"),
        &response_usage(STREAM_WORDS as u32),
    );
    events.push(("response.completed", format!(r#""response":{completed}"#)));
    events
        .into_iter()
        .enumerate()
        .map(|(sequence, (name, rest))| {
            named_event(
                name,
                &format!(r#"{{"type":"{name}","sequence_number":{sequence},{rest}}}"#),
            )
        })
        .collect()
}

/// One Gemini record of a streamed answer: `text`, the usage so far, and `finishReason` on
/// the last (the shape of the Gemini streaming reference's records).
fn gemini_record(text: &str, finish: Option<&str>, output_tokens: usize) -> String {
    let finish = finish.map_or(String::new(), |f| format!(r#","finishReason":"{f}""#));
    format!(
        r#"{{"candidates":[{{"content":{{"parts":[{{"text":"{text}"}}],"role":"model"}}{finish},"index":0}}],"usageMetadata":{{"promptTokenCount":512,"candidatesTokenCount":{output_tokens},"totalTokenCount":{}}},"modelVersion":"fake-model","responseId":"fake"}}"#,
        512 + output_tokens
    )
}

/// The streamed Gemini answer: a record a word, the last one finished.
fn gemini_stream() -> Vec<Bytes> {
    let deltas = stream_deltas();
    let last = deltas.len() - 1;
    deltas
        .iter()
        .enumerate()
        .map(|(i, delta)| {
            let finish = (i == last).then_some("STOP");
            Bytes::from(format!("data: {}\n\n", gemini_record(delta, finish, i + 1)))
        })
        .collect()
}

/// The 64 words of a streamed answer as its deltas: the first bare, the others after a space.
fn stream_deltas() -> Vec<String> {
    (0..STREAM_WORDS)
        .map(|i| {
            let word = WORDS[i % WORDS.len()];
            if i == 0 {
                word.to_owned()
            } else {
                format!(" {word}")
            }
        })
        .collect()
}

/// The whole text of a streamed answer.
fn stream_text() -> String {
    stream_deltas().concat()
}

/// The streamed answer, a word per chunk: prose that does not repeat itself (llmux's loop
/// detection would rightly cut an answer that loops).
const WORDS: [&str; 64] = [
    "The",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "the",
    "lazy",
    "dog",
    "while",
    "a",
    "proxy",
    "forwards",
    "every",
    "chunk",
    "fast.",
    "Meanwhile,",
    "seven",
    "curious",
    "engineers",
    "measure",
    "latency",
    "across",
    "two",
    "small",
    "cores,",
    "noting",
    "each",
    "spike",
    "before",
    "lunch.",
    "Nobody",
    "expected",
    "those",
    "careful",
    "graphs",
    "to",
    "reveal",
    "so",
    "much",
    "about",
    "buffers,",
    "sockets",
    "and",
    "schedulers",
    "hiding",
    "beneath",
    "ordinary",
    "requests;",
    "still,",
    "patience",
    "turned",
    "noise",
    "into",
    "numbers",
    "worth",
    "trusting",
    "when",
    "deadlines",
    "loomed",
    "near",
    "Friday",
    "evening",
    "again.",
];

fn chunk_frame(delta: &str, finish: &str) -> Bytes {
    Bytes::from(format!(
        "data: {{\"id\":\"chatcmpl-fake\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\
         \"model\":\"fake-model\",\"system_fingerprint\":\"fp_fake\",\"choices\":[{{\"index\":0,\
         \"delta\":{delta},\"logprobs\":null,\"finish_reason\":{finish}}}]}}\n\n"
    ))
}

/// The text of every non-streamed answer.
const FIXED_ANSWER: &str = "Hello! This is a fixed answer from the fake provider.";

impl Canned {
    fn new(interval: std::time::Duration) -> Self {
        let completion = Bytes::from_static(
            br#"{"id":"chatcmpl-fake","object":"chat.completion","created":1700000000,"model":"fake-model","system_fingerprint":"fp_fake","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! This is a fixed answer from the fake provider.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":512,"completion_tokens":12,"total_tokens":524}}"#,
        );
        let message = Bytes::from_static(
            br#"{"id":"msg_fake","type":"message","role":"assistant","model":"fake-model","content":[{"type":"text","text":"Hello! This is a fixed answer from the fake provider."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":512,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":12,"service_tier":"standard"}}"#,
        );
        let models = Bytes::from_static(
            br#"{"object":"list","data":[{"id":"fake-model","object":"model","created":1700000000,"owned_by":"fake"},{"id":"gpt-4o-mini","object":"model","created":1700000000,"owned_by":"fake"}]}"#,
        );
        let mut frames = Vec::with_capacity(STREAM_WORDS + 4);
        frames.push(chunk_frame(
            r#"{"role":"assistant","content":"","refusal":null}"#,
            "null",
        ));
        for i in 0..STREAM_WORDS {
            let word = WORDS[i % WORDS.len()];
            let sep = if i == 0 { "" } else { " " };
            frames.push(chunk_frame(
                &format!(r#"{{"content":"{sep}{word}"}}"#),
                "null",
            ));
        }
        frames.push(chunk_frame("{}", r#""stop""#));
        let done = Bytes::from_static(b"data: [DONE]\n\n");
        let usage = Bytes::from_static(
            br#"data: {"id":"chatcmpl-fake","object":"chat.completion.chunk","created":1700000000,"model":"fake-model","system_fingerprint":"fp_fake","choices":[],"usage":{"prompt_tokens":512,"completion_tokens":64,"total_tokens":576}}

"#,
        );
        let mut with_usage = frames.clone();
        with_usage.push(usage);
        with_usage.push(done.clone());
        frames.push(done);
        Self {
            completion,
            message,
            models,
            stream: frames.into(),
            stream_usage: with_usage.into(),
            message_stream: message_stream().into(),
            response: Bytes::from(response_object(
                "completed",
                &format!("[{}]", response_message(FIXED_ANSWER)),
                &response_usage(12),
            )),
            response_stream: response_stream().into(),
            gemini: Bytes::from(gemini_record(FIXED_ANSWER, Some("STOP"), 12)),
            gemini_stream: gemini_stream().into(),
            interval,
        }
    }
}

/// A response body that yields prebuilt frames one by one, each immediately ready.
struct FramesBody {
    frames: Arc<[Bytes]>,
    next: usize,
}

impl Body for FramesBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let i = self.next;
        match self.frames.get(i).cloned() {
            Some(b) => {
                self.next = i + 1;
                Poll::Ready(Some(Ok(Frame::data(b))))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.next >= self.frames.len()
    }

    fn size_hint(&self) -> SizeHint {
        // Unknown total on purpose: a stream is sent with chunked transfer encoding.
        SizeHint::default()
    }
}

/// A paced stream: the role chunk at once, then one stamped content chunk per interval, then
/// the finish chunk and `[DONE]`.
struct PacedBody {
    interval: std::time::Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    /// Frames sent so far: 0 is the role chunk, 1..=64 the content chunks.
    sent: usize,
}

impl PacedBody {
    fn new(interval: std::time::Duration) -> Self {
        Self {
            interval,
            sleep: Box::pin(tokio::time::sleep(interval)),
            sent: 0,
        }
    }
}

fn unix_micros() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
}

impl Body for PacedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let sent = self.sent;
        let frame = match sent {
            0 => chunk_frame(r#"{"role":"assistant","content":""}"#, "null"),
            n if n <= STREAM_WORDS => {
                if self.sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let next = tokio::time::Instant::now() + self.interval;
                self.sleep.as_mut().reset(next);
                chunk_frame(
                    &format!(r#"{{"content":" {}@{}"}}"#, n - 1, unix_micros()),
                    "null",
                )
            }
            n if n == STREAM_WORDS + 1 => chunk_frame("{}", r#""stop""#),
            n if n == STREAM_WORDS + 2 => Bytes::from_static(b"data: [DONE]\n\n"),
            _ => return Poll::Ready(None),
        };
        self.sent = sent + 1;
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent > STREAM_WORDS + 2
    }
}

/// Either a full body or a stream of frames.
enum Reply {
    Full(Full<Bytes>),
    Frames(FramesBody),
    Paced(PacedBody),
}

impl Body for Reply {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Reply::Full(b) => Pin::new(b).poll_frame(cx),
            Reply::Frames(b) => Pin::new(b).poll_frame(cx),
            Reply::Paced(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Reply::Full(b) => b.is_end_stream(),
            Reply::Frames(b) => b.is_end_stream(),
            Reply::Paced(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Reply::Full(b) => b.size_hint(),
            Reply::Frames(b) => b.size_hint(),
            Reply::Paced(b) => b.size_hint(),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// What follows the first occurrence of `key` (quoted) that a colon follows (whitespace
/// allowed): the member's value and the rest of the body. No parsing.
fn value_after<'a>(body: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let mut rest = body;
    while let Some(pos) = find(rest, key) {
        rest = &rest[pos + key.len()..];
        if let Some(value) = rest.trim_ascii_start().strip_prefix(b":") {
            return Some(value.trim_ascii_start());
        }
    }
    None
}

/// True when the JSON body has `"stream"` followed by `: true` (whitespace allowed). No parsing.
fn wants_stream(body: &[u8]) -> bool {
    value_after(body, b"\"stream\"").is_some_and(|value| value.starts_with(b"true"))
}

fn respond(status: StatusCode, content_type: &'static str, body: Reply) -> Response<Reply> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn error(status: StatusCode, message: &'static str) -> Response<Reply> {
    respond(
        status,
        "application/json",
        Reply::Full(Full::new(Bytes::from(format!(
            r#"{{"error":{{"message":"{message}","type":"invalid_request_error","code":null}}}}"#
        )))),
    )
}

/// A 200 answer of prebuilt JSON.
fn json(body: Bytes) -> Response<Reply> {
    respond(
        StatusCode::OK,
        "application/json",
        Reply::Full(Full::new(body)),
    )
}

/// A Responses request has an `"input"` member; a chat request has `"messages"`. No parsing:
/// a key's quoted name followed by a colon.
fn is_responses_body(body: &[u8]) -> bool {
    value_after(body, b"\"input\"").is_some() && value_after(body, b"\"messages\"").is_none()
}

/// An SSE answer of prebuilt `frames`, sent as fast as they are taken.
fn event_stream(frames: Arc<[Bytes]>) -> Response<Reply> {
    let mut resp = respond(
        StatusCode::OK,
        "text/event-stream",
        Reply::Frames(FramesBody { frames, next: 0 }),
    );
    resp.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-cache"));
    resp
}

async fn handle(
    canned: Arc<Canned>,
    req: Request<Incoming>,
) -> Result<Response<Reply>, Infallible> {
    let full_path = req.uri().path();
    if let Some(model_call) = full_path.strip_prefix("/v1beta/models/") {
        let streams = model_call.ends_with(":streamGenerateContent");
        if req.method() != Method::POST || !(streams || model_call.ends_with(":generateContent")) {
            return Ok(error(StatusCode::NOT_FOUND, "not found"));
        }
        if req.into_body().collect().await.is_err() {
            return Ok(error(StatusCode::BAD_REQUEST, "unreadable body"));
        }
        return Ok(if streams {
            event_stream(canned.gemini_stream.clone())
        } else {
            json(canned.gemini.clone())
        });
    }
    let path = full_path.strip_prefix("/v1").unwrap_or(full_path);
    match (req.method(), path) {
        (&Method::POST, "/chat/completions" | "/responses") => {
            let on_responses = path == "/responses";
            let body = match req.into_body().collect().await {
                Ok(c) => c.to_bytes(),
                Err(_) => return Ok(error(StatusCode::BAD_REQUEST, "unreadable body")),
            };
            // A chat body sent to `/responses` gets the chat answer: bench/peers.sh sends it to
            // a peer gateway's Responses pass-through, which forwards it here untouched.
            if on_responses && is_responses_body(&body) {
                return Ok(if wants_stream(&body) {
                    event_stream(canned.response_stream.clone())
                } else {
                    json(canned.response.clone())
                });
            }
            if wants_stream(&body) && !canned.interval.is_zero() {
                let mut resp = respond(
                    StatusCode::OK,
                    "text/event-stream",
                    Reply::Paced(PacedBody::new(canned.interval)),
                );
                resp.headers_mut()
                    .insert("cache-control", HeaderValue::from_static("no-cache"));
                Ok(resp)
            } else if wants_stream(&body) {
                let frames = if find(&body, b"include_usage").is_some() {
                    canned.stream_usage.clone()
                } else {
                    canned.stream.clone()
                };
                Ok(event_stream(frames))
            } else {
                Ok(json(canned.completion.clone()))
            }
        }
        (&Method::POST, "/messages") => {
            let body = match req.into_body().collect().await {
                Ok(c) => c.to_bytes(),
                Err(_) => return Ok(error(StatusCode::BAD_REQUEST, "unreadable body")),
            };
            if wants_stream(&body) {
                return Ok(event_stream(canned.message_stream.clone()));
            }
            Ok(json(canned.message.clone()))
        }
        (&Method::GET, "/health") => Ok(respond(
            StatusCode::OK,
            "application/json",
            Reply::Full(Full::new(Bytes::from_static(br#"{"status":"ok"}"#))),
        )),
        (&Method::GET, "/models") => Ok(respond(
            StatusCode::OK,
            "application/json",
            Reply::Full(Full::new(canned.models.clone())),
        )),
        _ => Ok(error(StatusCode::NOT_FOUND, "not found")),
    }
}

async fn serve(args: Args) -> anyhow::Result<()> {
    if !args.host.is_loopback() {
        bail!(
            "refusing to bind {}: only loopback addresses are allowed",
            args.host
        );
    }
    let listener = TcpListener::bind(SocketAddr::new(args.host, args.port))
        .await
        .with_context(|| format!("binding {}:{}", args.host, args.port))?;
    let local = listener.local_addr()?;
    let tls = match &args.tls_cert_out {
        Some(path) => Some(self_signed_tls(args.host, path)?),
        None => None,
    };
    println!("listening on {local}");
    let canned = Arc::new(Canned::new(std::time::Duration::from_millis(
        args.chunk_interval_ms,
    )));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let (stream, _) = match accepted {
            Ok(a) => a,
            Err(e) => {
                eprintln!("accept: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let canned = canned.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(canned.clone(), req));
            let server = http1::Builder::new().keep_alive(true).clone();
            let _ = match tls {
                None => server.serve_connection(TokioIo::new(stream), service).await,
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => server.serve_connection(TokioIo::new(stream), service).await,
                    Err(e) => {
                        eprintln!("TLS handshake: {e}");
                        return;
                    }
                },
            };
        });
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    rt.block_on(serve(args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_stream_flag() {
        assert!(wants_stream(br#"{"model":"m","stream":true}"#));
        assert!(wants_stream(br#"{"stream" :  true,"x":1}"#));
        assert!(!wants_stream(br#"{"stream":false}"#));
        assert!(!wants_stream(
            br#"{"stream_options":{"include_usage":true}}"#
        ));
        assert!(!wants_stream(br#"{"model":"m"}"#));
    }

    #[tokio::test]
    async fn paced_streams_stamp_each_chunk_in_order() {
        let mut body = PacedBody::new(std::time::Duration::from_millis(1));
        let mut frames = Vec::new();
        while let Some(frame) = body.frame().await {
            frames.push(
                frame
                    .unwrap_or_else(|e| match e {})
                    .into_data()
                    .unwrap_or_default(),
            );
        }
        // role + 64 stamped chunks + finish + [DONE]
        assert_eq!(frames.len(), STREAM_WORDS + 3);
        let mut last_stamp = 0u128;
        for (i, frame) in frames[1..=STREAM_WORDS].iter().enumerate() {
            let text = String::from_utf8_lossy(frame);
            let marker = format!("\" {i}@");
            let at = text.find(&marker).unwrap_or_else(|| panic!("{text}"));
            let stamp: u128 = text[at + marker.len()..]
                .split('"')
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            assert!(stamp >= last_stamp, "{text}");
            last_stamp = stamp;
        }
        assert_eq!(&frames[STREAM_WORDS + 2][..], b"data: [DONE]\n\n");
    }

    #[test]
    fn stream_has_64_words_usage_and_done() {
        let c = Canned::new(std::time::Duration::ZERO);
        // role + 64 words + finish + usage + [DONE]
        assert_eq!(c.stream_usage.len(), STREAM_WORDS + 4);
        assert_eq!(c.stream.len(), STREAM_WORDS + 3);
        assert!(c.stream_usage.iter().all(|f| f.starts_with(b"data: ")));
        assert_eq!(
            c.stream_usage.last().map(|b| &b[..]),
            Some(&b"data: [DONE]\n\n"[..])
        );
        for f in c
            .stream_usage
            .iter()
            .filter(|f| !f.ends_with(b"[DONE]\n\n"))
        {
            let json = &f[6..f.len() - 2];
            assert!(serde_json::from_slice::<serde_json::Value>(json).is_ok());
        }
        assert!(serde_json::from_slice::<serde_json::Value>(&c.completion).is_ok());
    }

    /// The JSON of an SSE frame's `data:` line.
    fn data_of(frame: &[u8]) -> serde_json::Value {
        let text = std::str::from_utf8(frame).unwrap_or_default();
        let data = text
            .lines()
            .find_map(|line| line.strip_prefix("data: "))
            .unwrap_or_else(|| panic!("no data line in {text}"));
        serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {data}"))
    }

    #[test]
    fn responses_stream_numbers_its_events_and_completes_with_the_words() {
        let c = Canned::new(std::time::Duration::ZERO);
        let events: Vec<_> = c.response_stream.iter().map(|f| data_of(f)).collect();
        // created, in_progress, item added, part added, 64 deltas, 3 done events, completed.
        assert_eq!(events.len(), STREAM_WORDS + 8);
        for (i, (event, frame)) in events.iter().zip(c.response_stream.iter()).enumerate() {
            assert_eq!(event["sequence_number"], i);
            let name = event["type"].as_str().unwrap_or_default();
            assert!(frame.starts_with(format!("event: {name}\n").as_bytes()));
        }
        let deltas: String = events
            .iter()
            .filter(|e| e["type"] == "response.output_text.delta")
            .filter_map(|e| e["delta"].as_str())
            .collect();
        assert_eq!(deltas, stream_text());
        let completed = &events[events.len() - 1];
        assert_eq!(completed["type"], "response.completed");
        assert_eq!(completed["response"]["status"], "completed");
        assert_eq!(
            completed["response"]["output"][0]["content"][0]["text"],
            deltas
        );
        let whole: serde_json::Value = serde_json::from_slice(&c.response).unwrap_or_default();
        assert_eq!(whole["output"][0]["content"][0]["text"], FIXED_ANSWER);
        assert_eq!(whole["usage"]["total_tokens"], 524);
    }

    #[test]
    fn gemini_stream_is_a_record_a_word_the_last_finished() {
        let c = Canned::new(std::time::Duration::ZERO);
        let records: Vec<_> = c.gemini_stream.iter().map(|f| data_of(f)).collect();
        assert_eq!(records.len(), STREAM_WORDS);
        let text: String = records
            .iter()
            .filter_map(|r| r["candidates"][0]["content"]["parts"][0]["text"].as_str())
            .collect();
        assert_eq!(text, stream_text());
        let finished: Vec<_> = records
            .iter()
            .filter(|r| r["candidates"][0].get("finishReason").is_some())
            .collect();
        assert_eq!(finished.len(), 1);
        assert_eq!(finished[0], &records[STREAM_WORDS - 1]);
        let whole: serde_json::Value = serde_json::from_slice(&c.gemini).unwrap_or_default();
        assert_eq!(whole["candidates"][0]["finishReason"], "STOP");
        assert_eq!(
            whole["candidates"][0]["content"]["parts"][0]["text"],
            FIXED_ANSWER
        );
    }

    #[test]
    fn a_responses_body_has_input_and_no_messages() {
        assert!(is_responses_body(br#"{"model":"m","input" : "hi"}"#));
        assert!(!is_responses_body(
            br#"{"model":"m","messages":[{"role":"user","content":"input"}]}"#
        ));
        assert!(!is_responses_body(br#"{"messages":[],"input":"x"}"#));
        assert!(!is_responses_body(
            br#"{"model":"m","text":"\"input\" here"}"#
        ));
    }
}
