//! A fake OpenAI Chat Completions provider speaking the real wire format (shapes from
//! OpenAI's API reference), with failure modes for the tests.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::{Value, json};

/// How the fake answers chat requests.
#[derive(Clone, Debug)]
pub enum Mode {
    /// Text (split in chunks when streaming); calls the first tool when tools are offered.
    Normal,
    /// Reasoning (`reasoning_content`) before the text.
    Reasoning,
    /// An error status with an OpenAI error body (and Retry-After for 429).
    Status(u16),
    /// Waits before sending the response headers.
    SlowFirstByte(Duration),
    /// Sends two chunks, then nothing, forever.
    StallMidStream,
    /// Sends two chunks, then breaks the connection.
    DropMidStream,
    /// Sends frames that are not JSON.
    Garbage,
    /// Streams normally, then keeps the body open after `[DONE]` (until the client goes
    /// away): the end of the body never comes.
    HoldAfterDone,
    /// Streams normally and ends the body this long after `[DONE]`.
    EndAfterDone(Duration),
    /// Sends a chunk every 50 ms, forever (until the client goes away).
    Endless,
    /// Streams the same sentence again and again (a model in a loop), a chunk every 2 ms,
    /// until the client goes away (at most 3,000 chunks); unstreamed, the sentence 200 times.
    /// Never calls a tool.
    Looping,
    /// Answers chat requests with this text (in one piece).
    Answer(&'static str),
    /// A model that writes instead of calling: answers with this text even when tools are
    /// offered, streamed in pieces of 5 bytes.
    Write(&'static str),
    /// An error status with a Retry-After header of this many seconds.
    StatusRetryAfter(u16, u64),
    /// 429 with Retry-After: 30 for requests with these bearer keys, normal answers for
    /// other keys.
    LimitKeys(Vec<&'static str>),
    /// Calls the first offered tool with these JSON arguments (streamed in three pieces),
    /// on every request, tool results or not.
    CallWith(&'static str),
    /// Answers non-streaming chat requests with exactly these bytes, as JSON.
    Body(&'static str),
    /// Answers streaming chat requests with exactly these bytes as the event stream, in
    /// one write.
    SseBody(Bytes),
    /// A fault script: the Nth chat request is answered as the Nth mode, every request
    /// after the script normally.
    Script(Vec<Mode>),
}

#[derive(Clone, Debug)]
pub struct Recorded {
    pub headers: HeaderMap,
    pub body: Value,
    /// The body's bytes as they came.
    pub raw: Bytes,
}

#[derive(Clone)]
struct Shared {
    mode: Mode,
    model_list_hits: Arc<AtomicUsize>,
    hits: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<Recorded>>>,
    disconnected: Arc<AtomicBool>,
    uris: Arc<Mutex<Vec<String>>>,
}

pub struct FakeOpenAi {
    pub base_url: String,
    /// Requests to `GET /v1/models`.
    pub model_list_hits: Arc<AtomicUsize>,
    /// Requests to `POST /v1/chat/completions`.
    pub hits: Arc<AtomicUsize>,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    /// Set when a client dropped a stream before it ended.
    pub disconnected: Arc<AtomicBool>,
    /// The request targets of the chat requests, as sent: an absolute URI means the
    /// request came through this fake acting as an HTTP proxy.
    pub uris: Arc<Mutex<Vec<String>>>,
    /// TCP connections the fake accepted.
    pub connections: Arc<AtomicUsize>,
}

impl FakeOpenAi {
    pub async fn start(mode: Mode) -> Self {
        Self::start_on(mode, None).await
    }

    /// The fake at an `https://` URL, presenting the certificate of `tls`.
    pub async fn start_tls(mode: Mode, tls: std::sync::Arc<rustls::ServerConfig>) -> Self {
        Self::start_on(mode, Some(tls)).await
    }

    async fn start_on(mode: Mode, tls: Option<std::sync::Arc<rustls::ServerConfig>>) -> Self {
        let shared = Shared {
            mode,
            model_list_hits: Arc::default(),
            hits: Arc::default(),
            requests: Arc::default(),
            disconnected: Arc::default(),
            uris: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/responses", post(responses))
            .route("/v1/models", get(models))
            .with_state(shared.clone());
        let (scheme, (addr, connections)) = match tls {
            None => ("http", super::serve_counting_connections(app).await),
            Some(tls) => (
                "https",
                super::serve_tls_counting_connections(app, tls).await,
            ),
        };
        Self {
            base_url: format!("{scheme}://{addr}/v1"),
            model_list_hits: shared.model_list_hits,
            hits: shared.hits,
            requests: shared.requests,
            disconnected: shared.disconnected,
            uris: shared.uris,
            connections,
        }
    }

    pub fn last_request(&self) -> Recorded {
        self.requests
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("no request reached the fake")
    }

    /// Every chat request that reached the fake, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    pub fn hit_count(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn models(State(shared): State<Shared>) -> impl IntoResponse {
    shared.model_list_hits.fetch_add(1, Ordering::SeqCst);
    axum::Json(json!({
        "object": "list",
        "data": [
            {"id": "fake-small", "object": "model", "created": 1700000000, "owned_by": "fake"},
            {"id": "fake-large", "object": "model", "created": 1700000000, "owned_by": "fake"},
        ]
    }))
}

fn chunk(model: &str, delta: Value, finish: Option<&str>) -> String {
    let frame = json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
    });
    format!("data: {frame}\n\n")
}

/// What a model in a loop says, again and again (`Mode::Looping`).
const LOOPING_SENTENCE: &str = "I should read the configuration file again to be completely sure. ";

/// The arguments of the fake's tool call.
fn call_arguments(mode: &Mode) -> &'static str {
    match mode {
        Mode::CallWith(arguments) => arguments,
        _ => "{\"city\":\"Paris\"}",
    }
}

fn first_tool(body: &Value) -> Option<String> {
    body["tools"][0]["function"]["name"]
        .as_str()
        .map(str::to_owned)
}

struct DropFlag(Arc<AtomicBool>, bool);
impl Drop for DropFlag {
    fn drop(&mut self) {
        if !self.1 {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

fn sse(
    stream: impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
) -> Response {
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

async fn chat(
    State(mut shared): State<Shared>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.uris.lock().unwrap().push(uri.to_string());
    let hit = shared.hits.fetch_add(1, Ordering::SeqCst);
    if let Mode::Script(steps) = &shared.mode {
        shared.mode = steps.get(hit).cloned().unwrap_or(Mode::Normal);
    }
    if let Mode::LimitKeys(limited) = &shared.mode {
        let key = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        shared.mode = if limited.contains(&key) {
            Mode::StatusRetryAfter(429, 30)
        } else {
            Mode::Normal
        };
    }
    let raw = body;
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    shared.requests.lock().unwrap().push(Recorded {
        headers: headers.clone(),
        body: body.clone(),
        raw,
    });
    let model = body["model"].as_str().unwrap_or("fake").to_owned();
    let stream = body["stream"].as_bool().unwrap_or(false);
    // Calls the first offered tool until the conversation holds a tool result.
    // (CallWith calls it every time: a model that insists.)
    let tool = first_tool(&body).filter(|_| {
        !matches!(shared.mode, Mode::Write(_) | Mode::Looping)
            && (matches!(shared.mode, Mode::CallWith(_))
                || body["messages"]
                    .as_array()
                    .is_some_and(|m| !m.iter().any(|m| m["role"] == "tool")))
    });

    match shared.mode.clone() {
        Mode::StatusRetryAfter(status, seconds) => {
            let body = json!({"error": {"message": format!("fake says {status}"),
                "type": "requests", "param": null, "code": "rate_limit_exceeded"}});
            let mut response =
                (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
            response
                .headers_mut()
                .insert("retry-after", seconds.to_string().parse().unwrap());
            return response;
        }
        Mode::Status(status) => {
            let (kind, code) = match status {
                401 => ("invalid_request_error", "invalid_api_key"),
                429 => ("requests", "rate_limit_exceeded"),
                400 => ("invalid_request_error", "invalid_value"),
                _ => ("server_error", "server_error"),
            };
            let body = json!({"error": {
                "message": format!("fake says {status}"),
                "type": kind, "param": null, "code": code}});
            let mut response =
                (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
            if status == 429 {
                response
                    .headers_mut()
                    .insert("retry-after", "7".parse().unwrap());
            }
            return response;
        }
        Mode::SlowFirstByte(wait) => tokio::time::sleep(wait).await,
        Mode::Body(bytes) if !stream => {
            return (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                bytes,
            )
                .into_response();
        }
        _ => {}
    }

    let reasoning = matches!(shared.mode, Mode::Reasoning);
    let answer = match shared.mode {
        Mode::Answer(text) | Mode::Write(text) => text.to_owned(),
        Mode::Looping => LOOPING_SENTENCE.repeat(200),
        _ => "Hello from fake.".to_owned(),
    };
    if !stream {
        let mut message =
            json!({"role": "assistant", "content": answer, "refusal": null, "annotations": []});
        if reasoning {
            message["reasoning_content"] = json!("Thinking it over.");
        }
        let mut finish = "stop";
        if let Some(name) = &tool {
            message["content"] = Value::Null;
            message["tool_calls"] = json!([{"id": "call_fake_1", "type": "function",
                "function": {"name": name, "arguments": call_arguments(&shared.mode)}}]);
            finish = "tool_calls";
        }
        return axum::Json(json!({
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 1700000000,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16,
                      "prompt_tokens_details": {"cached_tokens": 0},
                      "completion_tokens_details": {"reasoning_tokens": 0}},
        }))
        .into_response();
    }

    let mut frames = vec![chunk(
        &model,
        json!({"role": "assistant", "content": ""}),
        None,
    )];
    match shared.mode {
        Mode::Garbage => {
            return sse(futures::stream::iter(vec![Ok(Bytes::from(
                "data: this is not json\n\n",
            ))]));
        }
        Mode::SseBody(ref body) => {
            return sse(futures::stream::iter(vec![Ok(body.clone())]));
        }
        Mode::StallMidStream | Mode::DropMidStream => {
            frames.push(chunk(&model, json!({"content": "Hel"}), None));
            let stall = matches!(shared.mode, Mode::StallMidStream);
            let flag = DropFlag(shared.disconnected.clone(), false);
            let stream = async_stream::stream! {
                let _flag = flag;
                for frame in frames {
                    yield Ok::<_, std::io::Error>(Bytes::from(frame));
                }
                if stall {
                    futures::future::pending::<()>().await;
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    yield Err(std::io::Error::other("connection dropped by the fake"));
                }
            };
            return sse(stream);
        }
        Mode::Looping => {
            let flag = DropFlag(shared.disconnected.clone(), false);
            let stream = async_stream::stream! {
                let _flag = flag;
                for frame in frames {
                    yield Ok::<_, std::io::Error>(Bytes::from(frame));
                }
                for _ in 0..3_000 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    let text = LOOPING_SENTENCE;
                    yield Ok(Bytes::from(chunk(&model, json!({"content": text}), None)));
                }
            };
            return sse(stream);
        }
        Mode::Endless => {
            let flag = DropFlag(shared.disconnected.clone(), false);
            let stream = async_stream::stream! {
                let _flag = flag;
                for frame in frames {
                    yield Ok::<_, std::io::Error>(Bytes::from(frame));
                }
                // Bounded so a broken test cannot run forever: 10 minutes at most.
                for _ in 0..12_000 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    yield Ok(Bytes::from(chunk(&model, json!({"content": "."}), None)));
                }
            };
            return sse(stream);
        }
        _ => {}
    }
    if reasoning {
        frames.push(chunk(
            &model,
            json!({"reasoning_content": "Thinking"}),
            None,
        ));
        frames.push(chunk(
            &model,
            json!({"reasoning_content": " it over."}),
            None,
        ));
    }
    let finish = match &tool {
        Some(name) => {
            // Text, then the call whose first chunk already carries an argument fragment:
            // the transition where other gateways lose data.
            frames.push(chunk(&model, json!({"content": "Let me check."}), None));
            let arguments = call_arguments(&shared.mode);
            let cut = |at: usize| {
                (0..=at.min(arguments.len()))
                    .rev()
                    .find(|i| arguments.is_char_boundary(*i))
                    .unwrap_or(0)
            };
            let (one, two) = (cut(4), cut(arguments.len() * 2 / 3).max(cut(4)));
            frames.push(chunk(
                &model,
                json!({"tool_calls": [{"index": 0, "id": "call_fake_1", "type": "function",
                "function": {"name": name, "arguments": &arguments[..one]}}]}),
                None,
            ));
            for piece in [&arguments[one..two], &arguments[two..]] {
                frames.push(chunk(
                    &model,
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                    None,
                ));
            }
            "tool_calls"
        }
        None => {
            if let Mode::Answer(text) = shared.mode {
                frames.push(chunk(&model, json!({"content": text}), None));
            } else if let Mode::Write(text) = shared.mode {
                let mut rest = text;
                while !rest.is_empty() {
                    let cut = (5..=rest.len())
                        .find(|i| rest.is_char_boundary(*i))
                        .unwrap_or(rest.len());
                    frames.push(chunk(&model, json!({"content": &rest[..cut]}), None));
                    rest = &rest[cut..];
                }
            } else {
                for piece in ["Hello", " from", " fake."] {
                    frames.push(chunk(&model, json!({"content": piece}), None));
                }
            }
            "stop"
        }
    };
    frames.push(chunk(&model, json!({}), Some(finish)));
    if body["stream_options"]["include_usage"] == true {
        let usage = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1700000000,
            "model": model, "choices": [],
            "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}});
        frames.push(format!("data: {usage}\n\n"));
    }
    frames.push("data: [DONE]\n\n".into());
    let hold = matches!(shared.mode, Mode::HoldAfterDone);
    let end_after = match shared.mode {
        Mode::EndAfterDone(wait) => wait,
        _ => Duration::ZERO,
    };
    let flag = DropFlag(shared.disconnected.clone(), !hold);
    let stream = async_stream::stream! {
        let _flag = flag;
        for frame in frames {
            yield Ok::<_, Infallible>(Bytes::from(frame));
        }
        if hold {
            futures::future::pending::<()>().await;
        }
        if !end_after.is_zero() {
            tokio::time::sleep(end_after).await;
        }
    };
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// The Responses API (`POST /v1/responses`): text, or a function call when tools are
/// offered and the input holds no function_call_output yet; `Mode::Body`'s body when it
/// does not stream.
async fn responses(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    shared.hits.fetch_add(1, Ordering::SeqCst);
    let raw = body;
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    shared.requests.lock().unwrap().push(Recorded {
        headers,
        body: body.clone(),
        raw,
    });
    if let (Mode::Body(bytes), false) = (&shared.mode, body["stream"] == true) {
        return (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            *bytes,
        )
            .into_response();
    }
    let model = body["model"].as_str().unwrap_or("fake").to_owned();
    let answered = body["input"].to_string().contains("function_call_output");
    let tool = body["tools"][0]["name"]
        .as_str()
        .filter(|_| !answered)
        .map(str::to_owned);
    let item = match &tool {
        Some(name) => json!({"type": "function_call", "id": "fc_fake_1", "call_id": "call_fake_1",
            "name": name, "arguments": "{\"city\":\"Paris\"}", "status": "completed"}),
        None => {
            json!({"type": "message", "id": "msg_fake_1", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": "Hello from fake Responses.", "annotations": []}]})
        }
    };
    let usage = json!({"input_tokens": 12, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 17});
    let done = json!({"id": "resp_fake", "object": "response", "created_at": 1700000000, "status": "completed",
        "model": model, "output": [item.clone()], "usage": usage});
    if body["stream"] != true {
        return axum::Json(done).into_response();
    }
    let mut started = done.clone();
    started["status"] = json!("in_progress");
    started["output"] = json!([]);
    started["usage"] = Value::Null;
    let mut events = vec![
        json!({"type": "response.created", "sequence_number": 0, "response": started.clone()}),
        json!({"type": "response.in_progress", "sequence_number": 1, "response": started}),
    ];
    let mut seq = 2;
    let mut push = |mut event: Value, events: &mut Vec<Value>| {
        event["sequence_number"] = json!(seq);
        seq += 1;
        events.push(event);
    };
    match &tool {
        Some(_) => {
            let mut added = item.clone();
            added["arguments"] = json!("");
            added["status"] = json!("in_progress");
            push(
                json!({"type": "response.output_item.added", "output_index": 0, "item": added}),
                &mut events,
            );
            for piece in ["{\"city\":", "\"Paris\"}"] {
                push(
                    json!({"type": "response.function_call_arguments.delta", "item_id": "fc_fake_1",
                    "output_index": 0, "delta": piece}),
                    &mut events,
                );
            }
            push(
                json!({"type": "response.function_call_arguments.done", "item_id": "fc_fake_1",
                "output_index": 0, "arguments": "{\"city\":\"Paris\"}"}),
                &mut events,
            );
        }
        None => {
            push(
                json!({"type": "response.output_item.added", "output_index": 0, "item":
                {"type": "message", "id": "msg_fake_1", "status": "in_progress", "role": "assistant", "content": []}}),
                &mut events,
            );
            push(
                json!({"type": "response.content_part.added", "item_id": "msg_fake_1", "output_index": 0,
                "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
                &mut events,
            );
            for piece in ["Hello", " from fake", " Responses."] {
                push(
                    json!({"type": "response.output_text.delta", "item_id": "msg_fake_1", "output_index": 0,
                    "content_index": 0, "delta": piece}),
                    &mut events,
                );
            }
            push(
                json!({"type": "response.output_text.done", "item_id": "msg_fake_1", "output_index": 0,
                "content_index": 0, "text": "Hello from fake Responses."}),
                &mut events,
            );
            push(
                json!({"type": "response.content_part.done", "item_id": "msg_fake_1", "output_index": 0,
                "content_index": 0, "part": {"type": "output_text", "text": "Hello from fake Responses.", "annotations": []}}),
                &mut events,
            );
        }
    }
    push(
        json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
        &mut events,
    );
    push(
        json!({"type": "response.completed", "response": done}),
        &mut events,
    );
    let frames: Vec<Result<Bytes, Infallible>> = events
        .into_iter()
        .map(|e| {
            Ok(Bytes::from(format!(
                "event: {}\ndata: {e}\n\n",
                e["type"].as_str().unwrap_or("")
            )))
        })
        .collect();
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(futures::stream::iter(frames)))
        .unwrap()
}
