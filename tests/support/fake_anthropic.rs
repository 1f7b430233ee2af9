//! A fake Anthropic Messages provider speaking the real wire format (shapes from
//! docs.anthropic.com: Messages, streaming, tool use, extended thinking).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::{Value, json};

use super::fake_openai::Recorded;

#[derive(Clone, Debug)]
pub enum Mode {
    /// Text; a tool call when tools are offered; a signed thinking block first when
    /// thinking is enabled.
    Normal,
    /// An error status with an Anthropic error body.
    Status(u16),
    /// Starts streaming, then sends `event: error` (overloaded).
    MidStreamError,
    /// This body, as it is, to every non-streaming request.
    Body(&'static str),
}

#[derive(Clone)]
struct Shared {
    mode: Mode,
    hits: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

pub struct FakeAnthropic {
    /// The host root, as Anthropic SDKs take it (llmux appends /v1/messages).
    pub base_url: String,
    pub hits: Arc<AtomicUsize>,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    /// TCP connections the fake accepted.
    pub connections: Arc<AtomicUsize>,
}

impl FakeAnthropic {
    pub async fn start(mode: Mode) -> Self {
        let shared = Shared {
            mode,
            hits: Arc::default(),
            requests: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/v1/messages", post(messages))
            .route("/v1/models", get(models))
            .with_state(shared.clone());
        let (addr, connections) = super::serve_counting_connections(app).await;
        Self {
            base_url: format!("http://{addr}"),
            hits: shared.hits,
            requests: shared.requests,
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

    pub fn hit_count(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn models() -> impl IntoResponse {
    axum::Json(json!({"data": [
        {"type": "model", "id": "claude-fake-1", "display_name": "Claude Fake 1", "created_at": "2025-01-01T00:00:00Z"}
    ], "has_more": false, "first_id": "claude-fake-1", "last_id": "claude-fake-1"}))
}

fn frame(name: &str, value: Value) -> String {
    format!("event: {name}\ndata: {value}\n\n")
}

fn error_body(status: u16) -> (String, Value) {
    let kind = match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    };
    (
        kind.to_owned(),
        json!({"type": "error", "error": {"type": kind, "message": format!("fake says {status}")},
               "request_id": "req_fake"}),
    )
}

async fn messages(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    shared.hits.fetch_add(1, Ordering::SeqCst);
    let raw = body;
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    shared.requests.lock().unwrap().push(Recorded {
        headers,
        body: body.clone(),
        raw,
    });
    if let Mode::Status(status) = shared.mode {
        let (_, error) = error_body(status);
        return (StatusCode::from_u16(status).unwrap(), axum::Json(error)).into_response();
    }
    if let Mode::Body(body) = &shared.mode {
        return (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            *body,
        )
            .into_response();
    }
    let model = body["model"].as_str().unwrap_or("claude-fake-1").to_owned();
    let stream = body["stream"].as_bool().unwrap_or(false);
    let last_is_user_text = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .map(|m| m["role"] == "user" && !m["content"].to_string().contains("tool_result"))
        == Some(true);
    let tool = body["tools"][0]["name"]
        .as_str()
        .filter(|_| last_is_user_text)
        .map(str::to_owned);
    let thinking = body["thinking"]["type"] == "enabled";

    let mut content = Vec::new();
    if thinking {
        content.push(json!({"type": "thinking", "thinking": "Let me think.", "signature": "sig-from-anthropic"}));
    }
    content.push(json!({"type": "text", "text": "Hello from fake Claude."}));
    if let Some(name) = &tool {
        content.push(json!({"type": "tool_use", "id": "toolu_fake_1", "name": name, "input": {"city": "Paris"}}));
    }
    let stop = if tool.is_some() {
        "tool_use"
    } else {
        "end_turn"
    };
    let usage = json!({"input_tokens": 21, "cache_creation_input_tokens": 3,
                       "cache_read_input_tokens": 100, "output_tokens": 9});
    if !stream {
        return axum::Json(json!({
            "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop, "stop_sequence": null, "usage": usage,
            "container": null
        }))
        .into_response();
    }

    let mut frames = vec![frame(
        "message_start",
        json!({"type": "message_start", "message": {
        "id": "msg_fake", "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": 21, "cache_creation_input_tokens": 3, "cache_read_input_tokens": 100, "output_tokens": 1}}}),
    )];
    frames.push(frame("ping", json!({"type": "ping"})));
    let mut index = 0;
    if thinking {
        frames.push(frame("content_block_start", json!({"type": "content_block_start", "index": index, "content_block": {"type": "thinking", "thinking": ""}})));
        frames.push(frame("content_block_delta", json!({"type": "content_block_delta", "index": index, "delta": {"type": "thinking_delta", "thinking": "Let me think."}})));
        frames.push(frame("content_block_delta", json!({"type": "content_block_delta", "index": index, "delta": {"type": "signature_delta", "signature": "sig-from-anthropic"}})));
        frames.push(frame(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    frames.push(frame("content_block_start", json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}})));
    for piece in ["Hello", " from fake", " Claude."] {
        frames.push(frame("content_block_delta", json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}})));
    }
    if matches!(shared.mode, Mode::MidStreamError) {
        frames.push(frame("error", json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})));
        return sse(frames);
    }
    frames.push(frame(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": index}),
    ));
    index += 1;
    if let Some(name) = &tool {
        frames.push(frame("content_block_start", json!({"type": "content_block_start", "index": index, "content_block": {"type": "tool_use", "id": "toolu_fake_1", "name": name, "input": {}}})));
        for piece in ["", "{\"city\": ", "\"Paris\"}"] {
            frames.push(frame("content_block_delta", json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": piece}})));
        }
        frames.push(frame(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
    }
    frames.push(frame("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": 9}})));
    frames.push(frame("message_stop", json!({"type": "message_stop"})));
    sse(frames)
}

fn sse(frames: Vec<String>) -> Response {
    let stream = futures::stream::iter(
        frames
            .into_iter()
            .map(|f| Ok::<_, std::convert::Infallible>(Bytes::from(f))),
    );
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}
