#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Fixture and golden tests for the Anthropic Messages protocol (`src/protocol/anthropic`).
//!
//! 1. Every folder under `tests/fixtures/anthropic/` is one case (see the README there).
//!    One test walks them all and proves that a same-protocol round trip loses nothing:
//!    - `request.json` -> `decode_request` -> `encode_request` == `upstream_request.json`
//!    - `response.json` -> `decode_response` -> `ResponseBuilder` -> `encode_response`
//!      == `expected_response.json`
//!    - `upstream.sse` -> `EventDecoder` -> `EventEncoder` == `expected.sse`, and the client
//!      stream read back folds to the same response as the upstream stream.
//! 2. A golden matrix Anthropic <-> OpenAI Chat at the protocol level, with the exact JSON
//!    each direction must produce (requests, non-streaming bodies and streams).
//! 3. One named test per failure mode other gateways hit (PROTOCOLS.md §5).
//! 4. Re-chunking: any split of an upstream SSE byte stream (multi-byte UTF-8 included)
//!    gives the same client bytes, read through `sse_parse` as the back-ends do.
//!
//! JSON is compared as values (key order does not matter). A failure names the case, lists
//! each differing path and prints the whole actual value or stream for a diff tool.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use bytes::Bytes;
use futures::StreamExt;
use llmux::backend::anthropic::AnthropicWire;
use llmux::backend::http::decode_frames;
use llmux::backend::openai::ChatWire;
use llmux::model::{Event, FinishReason, Part, Response, ResponseBuilder};
use llmux::protocol::ChunkError;
use llmux::protocol::anthropic::{self, EventEncoder, SYNTHETIC_SIGNATURE};
use llmux::protocol::openai_chat::{self, ChunkEncoder};
use serde_json::{Value, json};

#[path = "support/fixtures.rs"]
mod fixtures;
#[path = "support/json_diff.rs"]
mod json_diff;
use fixtures::{case_dirs, check_cases, fixtures_dir, read_json, require};
use json_diff::{compare_json, diff};

/// The fixture set under tests/fixtures.
const FIXTURES: &str = "anthropic";

// =======================================================================================
// SSE plumbing, the way `src/backend/http.rs` reads upstream bodies

/// One SSE frame: its event name (`message` when it has none) and its data.
#[derive(Debug, Clone, PartialEq)]
struct Frame {
    event: String,
    data: Data,
}

/// A frame's data: JSON, or a literal such as `[DONE]`.
#[derive(Debug, Clone, PartialEq)]
enum Data {
    Json(Value),
    Literal(String),
}

impl Frame {
    fn parse(event: &str, data: &str) -> Frame {
        let data = match serde_json::from_str(data) {
            Ok(value) => Data::Json(value),
            Err(_) => Data::Literal(data.to_owned()),
        };
        Frame {
            event: event.to_owned(),
            data,
        }
    }

    fn json(&self) -> &Value {
        match &self.data {
            Data::Json(value) => value,
            Data::Literal(text) => panic!("frame `{text}` is not JSON"),
        }
    }

    fn show(&self) -> String {
        let data = match &self.data {
            Data::Json(value) => value.to_string(),
            Data::Literal(text) => text.clone(),
        };
        if self.event == "message" {
            format!("data: {data}\n")
        } else {
            format!("event: {}\ndata: {data}\n", self.event)
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// Raw `(event, data)` frames of a byte stream delivered in `chunks`, parsed by
/// `sse_parse` exactly as the HTTP back-end does.
fn sse_frames(chunks: Vec<Vec<u8>>) -> Vec<(String, String)> {
    let stream = futures::stream::iter(
        chunks
            .into_iter()
            .map(|c| Ok::<Bytes, Infallible>(Bytes::from(c))),
    );
    runtime().block_on(
        sse_parse::EventStream::new(stream)
            .map(|frame| {
                let frame = frame.unwrap();
                (frame.event, frame.data)
            })
            .collect(),
    )
}

fn parse_sse(bytes: &[u8]) -> Vec<Frame> {
    sse_frames(vec![bytes.to_vec()])
        .iter()
        .map(|(event, data)| Frame::parse(event, data))
        .collect()
}

fn show_stream(frames: &[Frame]) -> String {
    frames
        .iter()
        .map(Frame::show)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Upstream Anthropic frames as the Anthropic back-end decodes them (its decoder, its
/// error statuses, its stop at `message_stop`).
fn decode_anthropic(frames: &[(String, String)]) -> Vec<Event> {
    decode_frames(&AnthropicWire, "anthropic", frames)
}

/// Upstream OpenAI chat frames as the OpenAI back-end decodes them.
fn decode_openai(frames: &[(String, String)]) -> Vec<Event> {
    decode_frames(&ChatWire, "openai", frames)
}

/// The client's Anthropic stream, as bytes.
fn encode_anthropic(events: Vec<Event>, estimated_input: u64) -> Vec<u8> {
    let mut encoder = EventEncoder::new(estimated_input);
    let mut out = Vec::new();
    for event in events {
        encoder.push(event, &mut out);
    }
    encoder.finish(&mut out);
    out.concat()
}

/// The client's OpenAI chat stream, as bytes.
fn encode_openai(events: Vec<Event>, include_usage: bool) -> Vec<u8> {
    let mut encoder = ChunkEncoder::new(include_usage);
    let mut out = Vec::new();
    for event in events {
        encoder.push(event, &mut out);
    }
    encoder.finish(&mut out);
    out.concat()
}

fn raw(frames: &[Frame]) -> Vec<(String, String)> {
    frames
        .iter()
        .map(|f| {
            let data = match &f.data {
                Data::Json(value) => value.to_string(),
                Data::Literal(text) => text.clone(),
            };
            (f.event.clone(), data)
        })
        .collect()
}

fn fold(events: Vec<Event>) -> Result<Response, String> {
    let mut builder = ResponseBuilder::new();
    for event in events {
        builder
            .push(event)
            .map_err(|e| format!("fold failed: {e}"))?;
    }
    Ok(builder.finish())
}

// =======================================================================================
// Diff-friendly comparison

fn compare_frames(what: &str, expected: &[Frame], actual: &[Frame]) -> Result<(), String> {
    let mut differences = Vec::new();
    for (i, (e, a)) in expected.iter().zip(actual).enumerate() {
        if e.event != a.event {
            differences.push(format!(
                "frame[{i}]: expected event `{}`, got `{}`",
                e.event, a.event
            ));
        }
        match (&e.data, &a.data) {
            (Data::Json(ev), Data::Json(av)) => diff(
                &format!("frame[{i}]({})", a.event),
                ev,
                av,
                &mut differences,
            ),
            (ed, ad) if ed != ad => differences.push(format!(
                "frame[{i}]: expected {}, got {}",
                e.show().trim(),
                a.show().trim()
            )),
            _ => {}
        }
    }
    if expected.len() != actual.len() {
        differences.push(format!(
            "expected {} frames, got {}",
            expected.len(),
            actual.len()
        ));
    }
    if differences.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{what} differs:\n  {}\nactual {what}:\n{}",
        differences.join("\n  "),
        show_stream(actual)
    ))
}

#[track_caller]
fn assert_json(what: &str, expected: Value, actual: &Value) {
    if let Err(e) = compare_json(what, &expected, actual) {
        panic!("{e}");
    }
}

#[track_caller]
fn assert_stream(what: &str, expected: &[(&str, Value)], actual: &[Frame]) {
    let expected: Vec<Frame> = expected
        .iter()
        .map(|(event, value)| match value {
            Value::String(text) if text == "[DONE]" => Frame {
                event: (*event).to_owned(),
                data: Data::Literal(text.clone()),
            },
            _ => Frame {
                event: (*event).to_owned(),
                data: Data::Json(value.clone()),
            },
        })
        .collect();
    if let Err(e) = compare_frames(what, &expected, actual) {
        panic!("{e}");
    }
}

// =======================================================================================
// Anthropic stream invariants (https://docs.anthropic.com/en/api/messages-streaming)

/// Checks what every Anthropic client stream must satisfy: the event name equals the
/// data's `type`; one `message_start` first; blocks open, get deltas and close one at a
/// time with consecutive indices; thinking blocks carry a signature before they close;
/// `message_delta` with a stop reason, then `message_stop` last (unless an error ended it).
fn check_anthropic_stream(frames: &[Frame]) -> Result<(), String> {
    let mut errors = Vec::new();
    let mut open: Option<(u64, String)> = None;
    let mut signed = false;
    let mut next_index = 0;
    let mut starts = 0;
    let mut saw_delta = false;
    for (i, frame) in frames.iter().enumerate() {
        let Data::Json(data) = &frame.data else {
            errors.push(format!("frame[{i}] is not JSON"));
            continue;
        };
        let kind = data["type"].as_str().unwrap_or("");
        if kind != frame.event {
            errors.push(format!(
                "frame[{i}]: event `{}` but type `{kind}`",
                frame.event
            ));
        }
        if i == 0 && kind != "message_start" && kind != "error" {
            errors.push(format!("frame[0] is `{kind}`, not message_start"));
        }
        match kind {
            "message_start" => starts += 1,
            "content_block_start" => {
                let index = data["index"].as_u64().unwrap_or(u64::MAX);
                if let Some((open_index, _)) = &open {
                    errors.push(format!(
                        "frame[{i}]: block {index} opens while block {open_index} is open"
                    ));
                }
                if index != next_index {
                    errors.push(format!(
                        "frame[{i}]: block index {index}, expected {next_index}"
                    ));
                }
                next_index = index + 1;
                let block_type = data["content_block"]["type"].as_str().unwrap_or("");
                open = Some((index, block_type.to_owned()));
                signed = false;
            }
            "content_block_delta" => {
                let index = data["index"].as_u64().unwrap_or(u64::MAX);
                match &open {
                    Some((open_index, block_type)) if *open_index == index => {
                        let delta_type = data["delta"]["type"].as_str().unwrap_or("");
                        let fits = match delta_type {
                            "text_delta" | "citations_delta" => block_type == "text",
                            "thinking_delta" => block_type == "thinking",
                            "signature_delta" => {
                                signed = true;
                                block_type == "thinking"
                            }
                            "input_json_delta" => {
                                block_type == "tool_use" || block_type == "server_tool_use"
                            }
                            _ => true,
                        };
                        if !fits {
                            errors.push(format!(
                                "frame[{i}]: {delta_type} inside a {block_type} block"
                            ));
                        }
                        if delta_type == "thinking_delta" && data["delta"].get("thinking").is_none()
                        {
                            errors.push(format!("frame[{i}]: thinking_delta without `thinking`"));
                        }
                    }
                    _ => errors.push(format!("frame[{i}]: delta for block {index}, not open")),
                }
            }
            "content_block_stop" => {
                let index = data["index"].as_u64().unwrap_or(u64::MAX);
                match open.take() {
                    Some((open_index, block_type)) if open_index == index => {
                        if block_type == "thinking" && !signed {
                            errors.push(format!(
                                "frame[{i}]: thinking block {index} closes without a signature"
                            ));
                        }
                    }
                    _ => errors.push(format!("frame[{i}]: stop for block {index}, not open")),
                }
            }
            "message_delta" => {
                saw_delta = true;
                if let Some((index, _)) = &open {
                    errors.push(format!(
                        "frame[{i}]: message_delta while block {index} is open"
                    ));
                }
                if !data["delta"]["stop_reason"].is_string() {
                    errors.push(format!("frame[{i}]: message_delta without a stop_reason"));
                }
                if !data["usage"]["output_tokens"].is_u64() {
                    errors.push(format!(
                        "frame[{i}]: message_delta without usage.output_tokens"
                    ));
                }
            }
            "message_stop" => {
                if !saw_delta {
                    errors.push(format!("frame[{i}]: message_stop without message_delta"));
                }
                if i + 1 != frames.len() {
                    errors.push(format!("frame[{i}]: message_stop is not last"));
                }
            }
            "error" => {
                if i + 1 != frames.len() {
                    errors.push(format!("frame[{i}]: error is not last"));
                }
            }
            "ping" => {}
            other => errors.push(format!("frame[{i}]: unexpected event type `{other}`")),
        }
    }
    if starts != 1 {
        errors.push(format!(
            "{starts} message_start events, expected exactly one"
        ));
    }
    let ended = frames
        .last()
        .map(|f| f.event == "message_stop" || f.event == "error");
    if ended != Some(true) {
        errors.push("the stream does not end with message_stop or error".into());
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the client stream breaks the Anthropic event grammar:\n  {}\nstream:\n{}",
            errors.join("\n  "),
            show_stream(frames)
        ))
    }
}

// =======================================================================================
// Fixture cases

fn read_bytes(path: &Path) -> Result<Option<Vec<u8>>, String> {
    if !path.exists() {
        return Ok(None);
    }
    fs::read(path)
        .map(Some)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// What the front-end passes the encoders: the request's input-token estimate.
fn estimated_input(case: &Path) -> Result<u64, String> {
    let Some(request) = read_json(&case.join("request.json"))? else {
        return Ok(1);
    };
    let request = anthropic::decode_request(&serde_json::to_vec(&request).unwrap())
        .map_err(|e| format!("decode_request failed: {e}"))?;
    Ok(anthropic::estimate_input_tokens(&request))
}

fn check_request(case: &Path) -> Result<bool, String> {
    let Some(request) = read_json(&case.join("request.json"))? else {
        return Ok(false);
    };
    let expected = require(case, "upstream_request.json")?;
    let decoded = anthropic::decode_request(&serde_json::to_vec(&request).unwrap())
        .map_err(|e| format!("decode_request failed: {e}"))?;
    let model = request["model"]
        .as_str()
        .ok_or("request.json has no model")?;
    let actual = anthropic::encode_request(&decoded, model);
    compare_json("upstream request", &expected, &actual)?;
    Ok(true)
}

fn check_response(case: &Path) -> Result<bool, String> {
    let Some(response) = read_json(&case.join("response.json"))? else {
        return Ok(false);
    };
    let expected = require(case, "expected_response.json")?;
    let events = anthropic::decode_response(&serde_json::to_vec(&response).unwrap())
        .map_err(|e| format!("decode_response failed: {e:?}"))?;
    let actual = anthropic::encode_response(&fold(events)?, estimated_input(case)?);
    compare_json("client response", &expected, &actual)?;
    Ok(true)
}

fn check_stream(case: &Path) -> Result<bool, String> {
    let Some(upstream) = read_bytes(&case.join("upstream.sse"))? else {
        return Ok(false);
    };
    let expected =
        parse_sse(&read_bytes(&case.join("expected.sse"))?.ok_or("missing expected.sse")?);
    let events = decode_anthropic(&sse_frames(vec![upstream]));
    let client = parse_sse(&encode_anthropic(events.clone(), estimated_input(case)?));
    compare_frames("client stream", &expected, &client)?;
    check_anthropic_stream(&client)?;

    // What the client got must fold to what upstream said.
    let client_events = decode_anthropic(&raw(&client));
    match (fold(events), fold(client_events)) {
        (Ok(upstream), Ok(client)) => same_response(&upstream, &client)
            .map_err(|e| format!("the client stream folds to a different response: {e}"))?,
        // The client's error event carries the upstream's message (wrapped once more when
        // read back here, as a second proxy would).
        (Err(upstream), Err(client))
            if client.ends_with(upstream.trim_start_matches("fold failed: ")) => {}
        (upstream, client) => {
            return Err(format!(
                "upstream and client streams end differently:\n{upstream:?}\nvs\n{client:?}"
            ));
        }
    }
    Ok(true)
}

fn same_response(a: &Response, b: &Response) -> Result<(), String> {
    let check = |what: &str, same: bool| {
        if same {
            Ok(())
        } else {
            Err(format!("{what} differs:\n{a:#?}\nvs\n{b:#?}"))
        }
    };
    check("id", a.id == b.id)?;
    check("model", a.model == b.model)?;
    check("parts", a.parts == b.parts)?;
    check("finish", a.finish == b.finish)?;
    check("stop_sequence", a.stop_sequence == b.stop_sequence)?;
    // Compared as the wire carries it: an absent cache count and a zero are the same.
    let wire_usage = |r: &Response| {
        r.usage.as_ref().map(|u| {
            (
                u.input_tokens,
                u.output_tokens,
                u.cached_input_tokens.unwrap_or(0),
                u.cache_creation_input_tokens.unwrap_or(0),
            )
        })
    };
    check("usage", wire_usage(a) == wire_usage(b))?;
    Ok(())
}

#[test]
fn fixture_cases_round_trip() {
    check_cases(
        FIXTURES,
        20,
        &[
            ("request", check_request),
            ("response", check_response),
            ("stream", check_stream),
        ],
    );
}

// =======================================================================================
// Builders for the golden matrix

const CREATED: u64 = 1_741_000_000;

/// One OpenAI chat chunk with one choice.
fn oai_chunk(delta: Value, finish_reason: Option<&str>) -> Value {
    json!({
        "id": "chatcmpl-golden",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": "gpt-4.1-2025-04-14",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
    })
}

/// The usage chunk OpenAI sends last when asked (`choices: []`).
fn oai_usage_chunk(usage: Value) -> Value {
    json!({
        "id": "chatcmpl-golden",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": "gpt-4.1-2025-04-14",
        "choices": [],
        "usage": usage,
    })
}

/// An OpenAI chat SSE body: one `data:` frame per chunk, then `[DONE]`.
fn oai_sse(chunks: &[Value]) -> Vec<u8> {
    let mut body = String::new();
    for chunk in chunks {
        let _ = write!(body, "data: {chunk}\n\n");
    }
    body.push_str("data: [DONE]\n\n");
    body.into_bytes()
}

/// An Anthropic SSE body: `event: <type>` + `data:` per event.
fn anthropic_sse(events: &[Value]) -> Vec<u8> {
    let mut body = String::new();
    for event in events {
        let _ = write!(
            body,
            "event: {}\ndata: {event}\n\n",
            event["type"].as_str().unwrap()
        );
    }
    body.into_bytes()
}

fn message_start(id: &str, usage: Value) -> Value {
    json!({"type": "message_start", "message": {
        "id": id, "type": "message", "role": "assistant", "content": [],
        "model": "claude-sonnet-4-5-20250929", "stop_reason": null, "stop_sequence": null,
        "usage": usage,
    }})
}

fn block_start(index: u32, block: Value) -> Value {
    json!({"type": "content_block_start", "index": index, "content_block": block})
}

fn block_delta(index: u32, delta: Value) -> Value {
    json!({"type": "content_block_delta", "index": index, "delta": delta})
}

fn block_stop(index: u32) -> Value {
    json!({"type": "content_block_stop", "index": index})
}

fn message_delta(stop_reason: &str, usage: Value) -> Value {
    json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null}, "usage": usage})
}

fn message_stop() -> Value {
    json!({"type": "message_stop"})
}

/// OpenAI upstream stream -> Anthropic client stream (checked against the event grammar).
fn openai_to_anthropic(body: Vec<u8>, estimated_input: u64) -> Vec<Frame> {
    let events = decode_openai(&sse_frames(vec![body]));
    let frames = parse_sse(&encode_anthropic(events, estimated_input));
    if let Err(e) = check_anthropic_stream(&frames) {
        panic!("{e}");
    }
    frames
}

/// Anthropic upstream stream -> OpenAI client stream. `created` is the proxy's clock when
/// the upstream has none (Anthropic never sends one): checked, then pinned to 0.
fn anthropic_to_openai(body: Vec<u8>, include_usage: bool) -> Vec<Frame> {
    let events = decode_anthropic(&sse_frames(vec![body]));
    let mut frames = parse_sse(&encode_openai(events, include_usage));
    for frame in &mut frames {
        if let Data::Json(Value::Object(obj)) = &mut frame.data
            && let Some(created) = obj.get_mut("created")
        {
            assert!(
                created.as_u64().unwrap() > 1_700_000_000,
                "created: {created}"
            );
            *created = json!(0);
        }
    }
    frames
}

/// Expected Anthropic frames: the event name is each value's `type`.
#[track_caller]
fn assert_anthropic_frames(what: &str, expected: &[Value], actual: &[Frame]) {
    let expected: Vec<(&str, Value)> = expected
        .iter()
        .map(|v| (v["type"].as_str().unwrap(), v.clone()))
        .collect();
    assert_stream(what, &expected, actual);
}

/// Expected OpenAI frames (`"[DONE]"` for the literal).
#[track_caller]
fn assert_openai_frames(what: &str, expected: &[Value], actual: &[Frame]) {
    let expected: Vec<(&str, Value)> = expected.iter().map(|v| ("message", v.clone())).collect();
    assert_stream(what, &expected, actual);
}

fn anthropic_request(body: Value) -> llmux::model::Request {
    anthropic::decode_request(&serde_json::to_vec(&body).unwrap()).unwrap()
}

fn openai_request(body: Value) -> llmux::model::Request {
    openai_chat::decode_request(&serde_json::to_vec(&body).unwrap())
        .unwrap()
        .0
}

/// The client's body for a non-streaming upstream body.
fn fold_body(events: Result<Vec<Event>, ChunkError>) -> Response {
    fold(events.unwrap()).unwrap()
}

// =======================================================================================
// Golden matrix: requests, Anthropic client -> OpenAI chat back-end

#[test]
fn golden_anthropic_request_to_openai_plain_system_stop_and_sampling() {
    let request = anthropic_request(json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "stream": true,
        "system": [
            {"type": "text", "text": "You are a terse assistant."},
            {"type": "text", "text": "Answer in English.", "cache_control": {"type": "ephemeral"}}
        ],
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
        "stop_sequences": ["###"],
        "metadata": {"user_id": "user-7f3a"},
        "messages": [
            {"role": "user", "content": "Hello."},
            {"role": "assistant", "content": [{"type": "text", "text": "Hi."}]},
            {"role": "user", "content": [{"type": "text", "text": "Name a colour.", "cache_control": {"type": "ephemeral"}}]}
        ]
    }));
    // System blocks flatten to one string; cache_control and top_k have no OpenAI
    // equivalent; metadata.user_id becomes `user`; usage is always asked for upstream.
    assert_json(
        "OpenAI request",
        json!({
            "model": "gpt-4.1",
            "messages": [
                {"role": "system", "content": "You are a terse assistant.\n\nAnswer in English."},
                {"role": "user", "content": "Hello."},
                {"role": "assistant", "content": "Hi."},
                {"role": "user", "content": "Name a colour."}
            ],
            "temperature": 0.5,
            "top_p": 0.9,
            "max_tokens": 1024,
            "stop": "###",
            "user": "user-7f3a",
            "stream": true,
            "stream_options": {"include_usage": true}
        }),
        &openai_chat::encode_request(&request, "gpt-4.1"),
    );
}

#[test]
fn golden_anthropic_request_to_openai_tools_and_results_keep_ids() {
    let request = anthropic_request(json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "tools": [
            {"name": "get_weather", "description": "Get the weather.", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}, "cache_control": {"type": "ephemeral"}},
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": false},
        "messages": [
            {"role": "user", "content": "Weather in Paris and Bogotá?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking both."},
                {"type": "tool_use", "id": "toolu_01Paris", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_02Bogota", "name": "get_weather", "input": {"city": "Bogotá"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01Paris", "content": "15 °C"},
                {"type": "tool_result", "tool_use_id": "toolu_02Bogota", "content": [{"type": "text", "text": "upstream timed out"}], "is_error": true},
                {"type": "text", "text": "Retry Bogotá once."}
            ]}
        ]
    }));
    // Tool ids travel unchanged; each tool_result becomes a `tool` message before the
    // user's text; the server tool (web search) has no OpenAI equivalent and is dropped;
    // OpenAI has no is_error, the error text is the content.
    assert_json(
        "OpenAI request",
        json!({
            "model": "gpt-4.1",
            "messages": [
                {"role": "user", "content": "Weather in Paris and Bogotá?"},
                {"role": "assistant", "content": "Checking both.", "tool_calls": [
                    {"id": "toolu_01Paris", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "toolu_02Bogota", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Bogotá\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "toolu_01Paris", "content": "15 °C"},
                {"role": "tool", "tool_call_id": "toolu_02Bogota", "content": "upstream timed out"},
                {"role": "user", "content": "Retry Bogotá once."}
            ],
            "max_tokens": 1024,
            "tools": [
                {"type": "function", "function": {"name": "get_weather", "description": "Get the weather.", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
            ],
            "tool_choice": "required",
            "parallel_tool_calls": true
        }),
        &openai_chat::encode_request(&request, "gpt-4.1"),
    );

    // A named tool and no parallel calls.
    let request = anthropic_request(json!({
        "model": "claude-sonnet-4-5", "max_tokens": 100,
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true},
        "messages": [{"role": "user", "content": "Paris?"}]
    }));
    let upstream = openai_chat::encode_request(&request, "gpt-4.1");
    assert_json(
        "tool_choice",
        json!({"type": "function", "function": {"name": "get_weather"}}),
        &upstream["tool_choice"],
    );
    assert_json(
        "parallel_tool_calls",
        json!(false),
        &upstream["parallel_tool_calls"],
    );
}

#[test]
fn golden_anthropic_thinking_to_openai_reasoning_effort() {
    // budget -> effort through model::Reasoning::effective_effort.
    for (thinking, effort) in [
        (
            json!({"type": "enabled", "budget_tokens": 1024}),
            json!("low"),
        ),
        (
            json!({"type": "enabled", "budget_tokens": 4096}),
            json!("medium"),
        ),
        (
            json!({"type": "enabled", "budget_tokens": 10000}),
            json!("high"),
        ),
        (json!({"type": "disabled"}), json!("none")),
    ] {
        let request = anthropic_request(json!({
            "model": "claude-sonnet-4-5", "max_tokens": 16000, "thinking": thinking,
            "messages": [{"role": "user", "content": "2+2?"}]
        }));
        let upstream = openai_chat::encode_request(&request, "o4-mini");
        assert_json(
            &format!("reasoning_effort for {thinking}"),
            effort,
            &upstream["reasoning_effort"],
        );
    }

    // Anthropic-signed thinking (and redacted thinking) in the history is dropped: OpenAI
    // cannot check it; the tool round trip stays whole.
    let request = anthropic_request(json!({
        "model": "claude-sonnet-4-5", "max_tokens": 16000,
        "thinking": {"type": "enabled", "budget_tokens": 10000},
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "I should call the tool.", "signature": "EqQBCgIYAhIMsigned=="},
                {"type": "redacted_thinking", "data": "EmwKAhgBEgyredacted=="},
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}
            ]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "15 °C"}]}
        ]
    }));
    assert_json(
        "OpenAI request",
        json!({
            "model": "o4-mini",
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "toolu_01", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "toolu_01", "content": "15 °C"}
            ],
            "max_tokens": 16000,
            "reasoning_effort": "high"
        }),
        &openai_chat::encode_request(&request, "o4-mini"),
    );
}

// =======================================================================================
// Golden matrix: requests, OpenAI chat client -> Anthropic back-end

#[test]
fn golden_openai_request_to_anthropic_plain_system_stop_and_sampling() {
    let request = openai_request(json!({
        "model": "gpt-4.1",
        "messages": [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "developer", "content": "Answer in English."},
            {"role": "user", "content": "Hello."},
            {"role": "assistant", "content": "Hi."},
            {"role": "user", "content": [{"type": "text", "text": "Name a colour."}]}
        ],
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": ["###", "END"],
        "seed": 7,
        "presence_penalty": 0.1,
        "user": "user-7f3a",
        "stream": true,
        "stream_options": {"include_usage": true}
    }));
    // System and developer messages become `system` blocks; Anthropic needs max_tokens;
    // seed and penalties have no Anthropic equivalent.
    assert_json(
        "Anthropic request",
        json!({
            "model": "claude-sonnet-4-5",
            "system": [
                {"type": "text", "text": "You are a terse assistant."},
                {"type": "text", "text": "Answer in English."}
            ],
            "messages": [
                {"role": "user", "content": "Hello."},
                {"role": "assistant", "content": "Hi."},
                {"role": "user", "content": "Name a colour."}
            ],
            "max_tokens": 8192,
            "temperature": 0.5,
            "top_p": 0.9,
            "stop_sequences": ["###", "END"],
            "metadata": {"user_id": "user-7f3a"},
            "stream": true
        }),
        &anthropic::encode_request(&request, "claude-sonnet-4-5"),
    );
}

#[test]
fn golden_openai_request_to_anthropic_tools_and_results_keep_ids() {
    let request = openai_request(json!({
        "model": "gpt-4.1",
        "max_tokens": 500,
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "description": "Get the weather.", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}, "strict": true}}
        ],
        "tool_choice": "required",
        "parallel_tool_calls": false,
        "messages": [
            {"role": "user", "content": "Weather in Paris and Bogotá?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_A1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_B2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Bogotá\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_A1", "content": "15 °C"},
            {"role": "tool", "tool_call_id": "call_B2", "content": [{"type": "text", "text": "22 °C"}]},
            {"role": "user", "content": "Thanks. Which is warmer?"}
        ]
    }));
    // Consecutive `tool` messages and the next user message merge into one user turn that
    // starts with the tool_result blocks (PROTOCOLS.md §2.3, pitfall 20); ids unchanged.
    assert_json(
        "Anthropic request",
        json!({
            "model": "claude-sonnet-4-5",
            "messages": [
                {"role": "user", "content": "Weather in Paris and Bogotá?"},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "call_A1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "call_B2", "name": "get_weather", "input": {"city": "Bogotá"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_A1", "content": "15 °C"},
                    {"type": "tool_result", "tool_use_id": "call_B2", "content": "22 °C"},
                    {"type": "text", "text": "Thanks. Which is warmer?"}
                ]}
            ],
            "max_tokens": 500,
            "tools": [
                {"name": "get_weather", "description": "Get the weather.", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
            ],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true}
        }),
        &anthropic::encode_request(&request, "claude-sonnet-4-5"),
    );

    // A named function.
    let request = openai_request(json!({
        "model": "gpt-4.1",
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "messages": [{"role": "user", "content": "Paris?"}]
    }));
    let upstream = anthropic::encode_request(&request, "claude-sonnet-4-5");
    assert_json(
        "tool_choice",
        json!({"type": "tool", "name": "get_weather"}),
        &upstream["tool_choice"],
    );
}

#[test]
fn golden_openai_reasoning_effort_to_anthropic_thinking_budget() {
    // effort -> budget through model::Reasoning::effective_budget. max_tokens grows to
    // budget + 8192 when it leaves no room above the budget; temperature is dropped while
    // thinking is on.
    for (effort, thinking, max_tokens, temperature) in [
        (
            "minimal",
            json!({"type": "enabled", "budget_tokens": 1024}),
            2000,
            json!(null),
        ),
        (
            "low",
            json!({"type": "enabled", "budget_tokens": 1024}),
            2000,
            json!(null),
        ),
        (
            "medium",
            json!({"type": "enabled", "budget_tokens": 2048}),
            2048 + 8192,
            json!(null),
        ),
        (
            "high",
            json!({"type": "enabled", "budget_tokens": 4096}),
            4096 + 8192,
            json!(null),
        ),
        (
            "xhigh",
            json!({"type": "enabled", "budget_tokens": 16384}),
            16384 + 8192,
            json!(null),
        ),
        ("none", json!({"type": "disabled"}), 2000, json!(0.2)),
    ] {
        let request = openai_request(json!({
            "model": "o4-mini", "reasoning_effort": effort, "max_completion_tokens": 2000,
            "temperature": 0.2,
            "messages": [{"role": "user", "content": "2+2?"}]
        }));
        let upstream = anthropic::encode_request(&request, "claude-sonnet-4-5");
        assert_json(
            &format!("thinking for {effort}"),
            thinking,
            &upstream["thinking"],
        );
        assert_json(
            &format!("max_tokens for {effort}"),
            json!(max_tokens),
            &upstream["max_tokens"],
        );
        assert_json(
            &format!("temperature for {effort}"),
            temperature,
            &upstream["temperature"],
        );
    }

    // OpenAI-style reasoning in the history is never sent to Anthropic: it has no
    // Anthropic signature.
    let request = openai_request(json!({
        "model": "deepseek-reasoner", "reasoning_effort": "high",
        "messages": [
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4", "reasoning_content": "Two plus two is four."},
            {"role": "user", "content": "And 3+3?"}
        ]
    }));
    assert_json(
        "Anthropic request",
        json!({
            "model": "claude-sonnet-4-5",
            "messages": [
                {"role": "user", "content": "2+2?"},
                {"role": "assistant", "content": "4"},
                {"role": "user", "content": "And 3+3?"}
            ],
            "thinking": {"type": "enabled", "budget_tokens": 4096},
            "max_tokens": 8192
        }),
        &anthropic::encode_request(&request, "claude-sonnet-4-5"),
    );
}

#[test]
fn golden_synthetic_signatures_never_reach_anthropic() {
    // An Anthropic client sends back the thinking block llmux made from an OpenAI
    // upstream's reasoning: it carries the synthetic signature, which Anthropic would reject.
    let request = anthropic_request(json!({
        "model": "claude-sonnet-4-5", "max_tokens": 16000,
        "thinking": {"type": "enabled", "budget_tokens": 10000},
        "messages": [
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "From an OpenAI upstream.", "signature": SYNTHETIC_SIGNATURE},
                {"type": "text", "text": "4"}
            ]},
            {"role": "user", "content": "And 3+3?"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Signed by Anthropic.", "signature": "EqQBCgIYAhIMreal=="},
                {"type": "text", "text": "6"}
            ]},
            {"role": "user", "content": "And 4+4?"}
        ]
    }));
    let upstream = anthropic::encode_request(&request, "claude-sonnet-4-5");
    assert_json(
        "Anthropic messages",
        json!([
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": [{"type": "text", "text": "4"}]},
            {"role": "user", "content": "And 3+3?"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Signed by Anthropic.", "signature": "EqQBCgIYAhIMreal=="},
                {"type": "text", "text": "6"}
            ]},
            {"role": "user", "content": "And 4+4?"}
        ]),
        &upstream["messages"],
    );
    assert!(!upstream.to_string().contains(SYNTHETIC_SIGNATURE));
    let openai = openai_chat::encode_request(&request, "gpt-4.1");
    assert!(!openai.to_string().contains(SYNTHETIC_SIGNATURE));
}

// =======================================================================================
// Golden matrix: non-streaming bodies

#[test]
fn golden_anthropic_body_to_openai_client() {
    let upstream = json!({
        "id": "msg_01GoldenBody",
        "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
        "content": [
            {"type": "thinking", "thinking": "Two cities, two calls.", "signature": "EqQBCgIYAhIMsig=="},
            {"type": "text", "text": "Checking both."},
            {"type": "tool_use", "id": "toolu_01Paris", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_02Bogota", "name": "get_weather", "input": {"city": "Bogotá"}}
        ],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 10, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 100, "output_tokens": 42}
    });
    let response = fold_body(anthropic::decode_response(
        &serde_json::to_vec(&upstream).unwrap(),
    ));
    let mut body = openai_chat::encode_response(&response);
    body["created"] = json!(0);
    // prompt_tokens = input + cache reads + cache writes; cached_tokens = cache reads.
    assert_json(
        "OpenAI body",
        json!({
            "id": "msg_01GoldenBody",
            "object": "chat.completion",
            "created": 0,
            "model": "claude-sonnet-4-5-20250929",
            "choices": [{
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Checking both.",
                    "reasoning_content": "Two cities, two calls.",
                    "tool_calls": [
                        {"id": "toolu_01Paris", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                        {"id": "toolu_02Bogota", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Bogotá\"}"}}
                    ]
                },
                "logprobs": null,
                "finish_reason": "tool_calls"
            }],
            "usage": {"prompt_tokens": 115, "completion_tokens": 42, "total_tokens": 157, "prompt_tokens_details": {"cached_tokens": 100}}
        }),
        &body,
    );
}

#[test]
fn golden_openai_body_to_anthropic_client() {
    let upstream = json!({
        "id": "chatcmpl-GoldenBody", "object": "chat.completion", "created": CREATED,
        "model": "deepseek-reasoner",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": null, "message": {
            "role": "assistant", "content": "Checking both.", "reasoning_content": "Two cities, two calls.",
            "tool_calls": [
                {"id": "call_A1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_B2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Bogotá\"}"}}
            ]
        }}],
        "usage": {"prompt_tokens": 120, "completion_tokens": 42, "total_tokens": 162,
                  "prompt_tokens_details": {"cached_tokens": 100},
                  "completion_tokens_details": {"reasoning_tokens": 12}}
    });
    let response = fold_body(openai_chat::decode_response(
        &serde_json::to_vec(&upstream).unwrap(),
    ));
    // Reasoning becomes a thinking block with the synthetic signature; input_tokens =
    // prompt_tokens - cached_tokens; cache_read_input_tokens = cached_tokens.
    assert_json(
        "Anthropic body",
        json!({
            "id": "msg_chatcmpl-GoldenBody",
            "type": "message",
            "role": "assistant",
            "model": "deepseek-reasoner",
            "content": [
                {"type": "thinking", "thinking": "Two cities, two calls.", "signature": SYNTHETIC_SIGNATURE},
                {"type": "text", "text": "Checking both."},
                {"type": "tool_use", "id": "call_A1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_B2", "name": "get_weather", "input": {"city": "Bogotá"}}
            ],
            "stop_reason": "tool_use",
            "stop_sequence": null,
            "usage": {"input_tokens": 20, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 100, "output_tokens": 42}
        }),
        &anthropic::encode_response(&response, 99),
    );
}

// =======================================================================================
// Golden matrix: streams, OpenAI chat back-end -> Anthropic client

/// The `message_start` llmux sends for the OpenAI upstream of these tests.
fn start_from_openai(estimated_input: u64) -> Value {
    json!({"type": "message_start", "message": {
        "id": "msg_chatcmpl-golden", "type": "message", "role": "assistant",
        "model": "gpt-4.1-2025-04-14", "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": estimated_input, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 1}
    }})
}

fn ping() -> Value {
    json!({"type": "ping"})
}

#[test]
fn golden_openai_stream_to_anthropic_text_and_usage() {
    let body = oai_sse(&[
        oai_chunk(json!({"role": "assistant", "content": ""}), None),
        oai_chunk(json!({"content": "Hello"}), None),
        oai_chunk(json!({"content": " there."}), None),
        oai_chunk(json!({}), Some("stop")),
        oai_usage_chunk(
            json!({"prompt_tokens": 120, "completion_tokens": 3, "total_tokens": 123,
                               "prompt_tokens_details": {"cached_tokens": 100}}),
        ),
    ]);
    // message_start carries the estimate (31); the final usage comes in message_delta.
    assert_anthropic_frames(
        "Anthropic stream",
        &[
            start_from_openai(31),
            ping(),
            block_start(0, json!({"type": "text", "text": ""})),
            block_delta(0, json!({"type": "text_delta", "text": "Hello"})),
            block_delta(0, json!({"type": "text_delta", "text": " there."})),
            block_stop(0),
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                   "usage": {"input_tokens": 20, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 100, "output_tokens": 3}}),
            message_stop(),
        ],
        &openai_to_anthropic(body, 31),
    );
}

fn oai_call(index: u32, id: Option<&str>, name: Option<&str>, arguments: &str) -> Value {
    let mut call = json!({"index": index, "function": {"arguments": arguments}});
    if let Some(id) = id {
        call["id"] = json!(id);
        call["type"] = json!("function");
    }
    if let Some(name) = name {
        call["function"]["name"] = json!(name);
    }
    call
}

#[test]
fn golden_openai_stream_to_anthropic_parallel_tool_calls() {
    let body = oai_sse(&[
        oai_chunk(json!({"role": "assistant", "content": null}), None),
        oai_chunk(
            json!({"tool_calls": [oai_call(0, Some("call_A1"), Some("get_weather"), "")]}),
            None,
        ),
        oai_chunk(
            json!({"tool_calls": [oai_call(0, None, None, "{\"city\":")]}),
            None,
        ),
        oai_chunk(
            json!({"tool_calls": [oai_call(1, Some("call_B2"), Some("get_time"), "{\"tz\":")]}),
            None,
        ),
        oai_chunk(
            json!({"tool_calls": [oai_call(1, None, None, "\"Europe/Paris\"}"), oai_call(0, None, None, "\"Paris\"}")]}),
            None,
        ),
        oai_chunk(json!({}), Some("tool_calls")),
        oai_usage_chunk(json!({"prompt_tokens": 80, "completion_tokens": 30, "total_tokens": 110})),
    ]);
    // The second call waits until the first block closes, then arrives whole.
    assert_anthropic_frames(
        "Anthropic stream",
        &[
            start_from_openai(20),
            ping(),
            block_start(
                0,
                json!({"type": "tool_use", "id": "call_A1", "name": "get_weather", "input": {}}),
            ),
            block_delta(
                0,
                json!({"type": "input_json_delta", "partial_json": "{\"city\":"}),
            ),
            block_delta(
                0,
                json!({"type": "input_json_delta", "partial_json": "\"Paris\"}"}),
            ),
            block_stop(0),
            block_start(
                1,
                json!({"type": "tool_use", "id": "call_B2", "name": "get_time", "input": {}}),
            ),
            block_delta(
                1,
                json!({"type": "input_json_delta", "partial_json": "{\"tz\":\"Europe/Paris\"}"}),
            ),
            block_stop(1),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                   "usage": {"input_tokens": 80, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 30}}),
            message_stop(),
        ],
        &openai_to_anthropic(body, 20),
    );
}

#[test]
fn golden_openai_reasoning_stream_to_anthropic_thinking_blocks() {
    let body = oai_sse(&[
        oai_chunk(json!({"role": "assistant", "content": ""}), None),
        oai_chunk(json!({"reasoning_content": "Two plus two"}), None),
        oai_chunk(json!({"reasoning_content": " is four."}), None),
        oai_chunk(json!({"content": "4"}), None),
        oai_chunk(json!({}), Some("stop")),
        oai_usage_chunk(
            json!({"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21,
                               "completion_tokens_details": {"reasoning_tokens": 10}}),
        ),
    ]);
    // The thinking block closes with a signature_delta (the synthetic one) before the text.
    assert_anthropic_frames(
        "Anthropic stream",
        &[
            start_from_openai(5),
            ping(),
            block_start(0, json!({"type": "thinking", "thinking": ""})),
            block_delta(
                0,
                json!({"type": "thinking_delta", "thinking": "Two plus two"}),
            ),
            block_delta(
                0,
                json!({"type": "thinking_delta", "thinking": " is four."}),
            ),
            block_delta(
                0,
                json!({"type": "signature_delta", "signature": SYNTHETIC_SIGNATURE}),
            ),
            block_stop(0),
            block_start(1, json!({"type": "text", "text": ""})),
            block_delta(1, json!({"type": "text_delta", "text": "4"})),
            block_stop(1),
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                   "usage": {"input_tokens": 9, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 12}}),
            message_stop(),
        ],
        &openai_to_anthropic(body, 5),
    );
}

// =======================================================================================
// Golden matrix: streams, Anthropic back-end -> OpenAI chat client

/// One OpenAI chunk as llmux sends it for the Anthropic upstream of these tests.
fn chunk_from_anthropic(id: &str, delta: Value, finish_reason: Option<&str>, usage: bool) -> Value {
    let mut chunk = json!({
        "id": id, "object": "chat.completion.chunk", "created": 0,
        "model": "claude-sonnet-4-5-20250929",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    });
    if usage {
        chunk["usage"] = Value::Null;
    }
    chunk
}

#[test]
fn golden_anthropic_stream_to_openai_text_and_cache_usage() {
    let body = anthropic_sse(&[
        message_start(
            "msg_01Golden",
            json!({"input_tokens": 10, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 100, "output_tokens": 1}),
        ),
        block_start(0, json!({"type": "text", "text": ""})),
        ping(),
        block_delta(0, json!({"type": "text_delta", "text": "Hello"})),
        block_delta(0, json!({"type": "text_delta", "text": " there."})),
        block_stop(0),
        message_delta("end_turn", json!({"output_tokens": 3})),
        message_stop(),
    ]);
    let id = "msg_01Golden";
    assert_openai_frames(
        "OpenAI stream",
        &[
            chunk_from_anthropic(id, json!({"role": "assistant", "content": ""}), None, true),
            chunk_from_anthropic(id, json!({"content": "Hello"}), None, true),
            chunk_from_anthropic(id, json!({"content": " there."}), None, true),
            chunk_from_anthropic(id, json!({}), Some("stop"), true),
            json!({"id": id, "object": "chat.completion.chunk", "created": 0, "model": "claude-sonnet-4-5-20250929",
                   "choices": [], "usage": {"prompt_tokens": 115, "completion_tokens": 3, "total_tokens": 118, "prompt_tokens_details": {"cached_tokens": 100}}}),
            json!("[DONE]"),
        ],
        &anthropic_to_openai(body, true),
    );
}

#[test]
fn golden_anthropic_stream_to_openai_tool_calls() {
    let body = anthropic_sse(&[
        message_start(
            "msg_01GoldenTools",
            json!({"input_tokens": 50, "output_tokens": 1}),
        ),
        block_start(0, json!({"type": "text", "text": ""})),
        block_delta(0, json!({"type": "text_delta", "text": "Checking."})),
        block_stop(0),
        block_start(
            1,
            json!({"type": "tool_use", "id": "toolu_01Paris", "name": "get_weather", "input": {}}),
        ),
        block_delta(1, json!({"type": "input_json_delta", "partial_json": ""})),
        block_delta(
            1,
            json!({"type": "input_json_delta", "partial_json": "{\"city\": \"Pa"}),
        ),
        block_delta(
            1,
            json!({"type": "input_json_delta", "partial_json": "ris\"}"}),
        ),
        block_stop(1),
        block_start(
            2,
            json!({"type": "tool_use", "id": "toolu_02Time", "name": "get_time", "input": {}}),
        ),
        block_delta(
            2,
            json!({"type": "input_json_delta", "partial_json": "{\"tz\": \"Europe/Paris\"}"}),
        ),
        block_stop(2),
        message_delta("tool_use", json!({"output_tokens": 60})),
        message_stop(),
    ]);
    let id = "msg_01GoldenTools";
    // Block indices 1 and 2 become tool-call indices 0 and 1; fragments pass verbatim.
    assert_openai_frames(
        "OpenAI stream",
        &[
            chunk_from_anthropic(id, json!({"role": "assistant", "content": ""}), None, false),
            chunk_from_anthropic(id, json!({"content": "Checking."}), None, false),
            chunk_from_anthropic(
                id,
                json!({"tool_calls": [{"index": 0, "id": "toolu_01Paris", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
                None,
                false,
            ),
            chunk_from_anthropic(
                id,
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\": \"Pa"}}]}),
                None,
                false,
            ),
            chunk_from_anthropic(
                id,
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "ris\"}"}}]}),
                None,
                false,
            ),
            chunk_from_anthropic(
                id,
                json!({"tool_calls": [{"index": 1, "id": "toolu_02Time", "type": "function", "function": {"name": "get_time", "arguments": ""}}]}),
                None,
                false,
            ),
            chunk_from_anthropic(
                id,
                json!({"tool_calls": [{"index": 1, "function": {"arguments": "{\"tz\": \"Europe/Paris\"}"}}]}),
                None,
                false,
            ),
            chunk_from_anthropic(id, json!({}), Some("tool_calls"), false),
            json!("[DONE]"),
        ],
        &anthropic_to_openai(body, false),
    );
}

#[test]
fn golden_anthropic_thinking_stream_to_openai_reasoning() {
    let body = anthropic_sse(&[
        message_start(
            "msg_01GoldenThink",
            json!({"input_tokens": 9, "output_tokens": 1}),
        ),
        block_start(0, json!({"type": "thinking", "thinking": ""})),
        block_delta(
            0,
            json!({"type": "thinking_delta", "thinking": "Two plus two"}),
        ),
        block_delta(
            0,
            json!({"type": "thinking_delta", "thinking": " is four."}),
        ),
        block_delta(
            0,
            json!({"type": "signature_delta", "signature": "EqQBCgIYAhIMsig=="}),
        ),
        block_stop(0),
        block_start(
            1,
            json!({"type": "redacted_thinking", "data": "EmwKAhgBEgyredacted=="}),
        ),
        block_stop(1),
        block_start(2, json!({"type": "text", "text": ""})),
        block_delta(2, json!({"type": "text_delta", "text": "4"})),
        block_stop(2),
        message_delta("end_turn", json!({"output_tokens": 12})),
        message_stop(),
    ]);
    let id = "msg_01GoldenThink";
    // Thinking text becomes reasoning_content; signatures and redacted blocks, which only
    // Anthropic can read, are not sent.
    assert_openai_frames(
        "OpenAI stream",
        &[
            chunk_from_anthropic(id, json!({"role": "assistant", "content": ""}), None, false),
            chunk_from_anthropic(
                id,
                json!({"reasoning_content": "Two plus two"}),
                None,
                false,
            ),
            chunk_from_anthropic(id, json!({"reasoning_content": " is four."}), None, false),
            chunk_from_anthropic(id, json!({"content": "4"}), None, false),
            chunk_from_anthropic(id, json!({}), Some("stop"), false),
            json!("[DONE]"),
        ],
        &anthropic_to_openai(body, false),
    );
}

#[test]
fn golden_finish_reasons_both_directions() {
    // OpenAI upstream finish_reason -> Anthropic client stop_reason.
    for (finish, stop) in [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("content_filter", "refusal"),
        ("tool_calls", "tool_use"),
    ] {
        let mut chunks = vec![oai_chunk(
            json!({"role": "assistant", "content": "Hi"}),
            None,
        )];
        if finish == "tool_calls" {
            chunks.push(oai_chunk(
                json!({"tool_calls": [oai_call(0, Some("call_1"), Some("f"), "{}")]}),
                None,
            ));
        }
        chunks.push(oai_chunk(json!({}), Some(finish)));
        let frames = openai_to_anthropic(oai_sse(&chunks), 3);
        let delta = frames.iter().find(|f| f.event == "message_delta").unwrap();
        assert_json(
            &format!("stop for finish_reason {finish}"),
            json!({"stop_reason": stop, "stop_sequence": null}),
            &delta.json()["delta"],
        );
    }

    // Anthropic upstream stop_reason -> OpenAI client finish_reason, streamed and not.
    for (stop, finish) in [
        ("end_turn", "stop"),
        ("max_tokens", "length"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("refusal", "content_filter"),
        ("model_context_window_exceeded", "length"),
    ] {
        let body = anthropic_sse(&[
            message_start(
                "msg_01Finish",
                json!({"input_tokens": 3, "output_tokens": 1}),
            ),
            block_start(0, json!({"type": "text", "text": ""})),
            block_delta(0, json!({"type": "text_delta", "text": "Hi"})),
            block_stop(0),
            message_delta(stop, json!({"output_tokens": 2})),
            message_stop(),
        ]);
        let frames = anthropic_to_openai(body, false);
        let last = &frames[frames.len() - 2];
        assert_json(
            &format!("finish_reason for {stop}"),
            json!(finish),
            &last.json()["choices"][0]["finish_reason"],
        );

        let upstream = json!({"id": "msg_01Finish", "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-5", "content": [{"type": "text", "text": "Hi"}],
            "stop_reason": stop, "stop_sequence": if stop == "stop_sequence" { json!("###") } else { json!(null) },
            "usage": {"input_tokens": 3, "output_tokens": 2}});
        let response = fold_body(anthropic::decode_response(
            &serde_json::to_vec(&upstream).unwrap(),
        ));
        assert_json(
            &format!("non-streamed finish_reason for {stop}"),
            json!(finish),
            &openai_chat::encode_response(&response)["choices"][0]["finish_reason"],
        );
    }

    // OpenAI says only "stop": which stop sequence matched is unknown, so an Anthropic
    // client sees end_turn without a stop_sequence.
    let upstream = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": CREATED, "model": "gpt-4.1",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Red"}, "finish_reason": "stop"}]});
    let response = fold_body(openai_chat::decode_response(
        &serde_json::to_vec(&upstream).unwrap(),
    ));
    let body = anthropic::encode_response(&response, 7);
    assert_json("stop_reason", json!("end_turn"), &body["stop_reason"]);
    assert_json("stop_sequence", json!(null), &body["stop_sequence"]);
    // No usage upstream: the estimate, never a made-up zero input.
    assert_json(
        "usage",
        json!({"input_tokens": 7, "output_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}),
        &body["usage"],
    );
}

// =======================================================================================
// Failure modes other gateways hit (PROTOCOLS.md §4.1 and §5)

/// The tool calls an Anthropic client stream folds to: (id, name, input as JSON).
fn client_tool_calls(frames: &[Frame]) -> Vec<(String, String, Value)> {
    let response = fold(decode_anthropic(&raw(frames))).unwrap();
    response
        .parts
        .iter()
        .filter_map(|p| match p {
            Part::ToolCall {
                id,
                name,
                arguments,
                ..
            } => Some((
                id.clone(),
                name.clone(),
                serde_json::from_str(arguments).unwrap_or(Value::Null),
            )),
            _ => None,
        })
        .collect()
}

/// The `type` of each content block the client saw, in order.
fn block_types(frames: &[Frame]) -> Vec<String> {
    frames
        .iter()
        .filter(|f| f.event == "content_block_start")
        .map(|f| {
            f.json()["content_block"]["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn tool_use_input_survives_text_and_a_whole_tool_call_in_one_upstream_chunk() {
    // litellm #25321/#25561: the chunk that switched text -> tool_use was dropped, so the
    // tool's only argument fragment was lost and Claude Code got `input: {}`.
    let arguments = r#"{"command":"ls -la","description":"List files"}"#;
    let one_chunk = oai_sse(&[
        oai_chunk(
            json!({"role": "assistant", "content": "Let me look."}),
            None,
        ),
        oai_chunk(
            json!({"content": " Running it now.", "tool_calls": [oai_call(0, Some("call_bash"), Some("Bash"), arguments)]}),
            None,
        ),
        oai_chunk(json!({}), Some("tool_calls")),
    ]);
    // And everything (role, text, whole call, finish) in a single chunk.
    let everything = oai_sse(&[oai_chunk(
        json!({"role": "assistant", "content": "Let me look. Running it now.",
               "tool_calls": [oai_call(0, Some("call_bash"), Some("Bash"), arguments)]}),
        Some("tool_calls"),
    )]);
    for body in [one_chunk, everything] {
        let frames = openai_to_anthropic(body, 10);
        assert_eq!(block_types(&frames), ["text", "tool_use"]);
        let fragments: String = frames
            .iter()
            .filter(|f| f.json()["delta"]["type"] == "input_json_delta")
            .map(|f| {
                f.json()["delta"]["partial_json"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(fragments, arguments);
        assert_eq!(
            client_tool_calls(&frames),
            [(
                "call_bash".to_owned(),
                "Bash".to_owned(),
                json!({"command": "ls -la", "description": "List files"})
            )]
        );
        let response = fold(decode_anthropic(&raw(&frames))).unwrap();
        assert_eq!(response.text(), "Let me look. Running it now.");
    }
}

#[test]
fn stop_reason_is_tool_use_when_an_openai_upstream_says_stop_after_a_tool_call() {
    // litellm #34692 (ollama): finish_reason "stop" after a call became end_turn, and the
    // agent thought the turn was over.
    let body = oai_sse(&[
        oai_chunk(json!({"role": "assistant", "content": ""}), None),
        oai_chunk(
            json!({"tool_calls": [oai_call(0, Some("call_1"), Some("Read"), "{\"path\":\"a.txt\"}")]}),
            None,
        ),
        oai_chunk(json!({}), Some("stop")),
    ]);
    let frames = openai_to_anthropic(body, 10);
    let delta = frames.iter().find(|f| f.event == "message_delta").unwrap();
    assert_eq!(delta.json()["delta"]["stop_reason"], "tool_use");

    // The same for a non-streamed body.
    let upstream = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": CREATED, "model": "llama3",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "Read", "arguments": "{\"path\":\"a.txt\"}"}}]}}]});
    let response = fold_body(openai_chat::decode_response(
        &serde_json::to_vec(&upstream).unwrap(),
    ));
    let body = anthropic::encode_response(&response, 10);
    assert_eq!(body["stop_reason"], "tool_use");
    assert_json(
        "content",
        json!([{"type": "tool_use", "id": "call_1", "name": "Read", "input": {"path": "a.txt"}}]),
        &body["content"],
    );
}

#[test]
fn no_empty_text_block_before_tool_use() {
    // litellm #34692/#25561: OpenAI-style servers open with `content: ""` (or null) and the
    // translator opened an empty text block before the tool_use.
    for first in [json!(""), json!(null)] {
        let body = oai_sse(&[
            oai_chunk(json!({"role": "assistant", "content": first}), None),
            oai_chunk(json!({"content": ""}), None),
            oai_chunk(
                json!({"tool_calls": [oai_call(0, Some("call_1"), Some("Glob"), "{\"pattern\":\"*.rs\"}")]}),
                None,
            ),
            oai_chunk(json!({}), Some("tool_calls")),
        ]);
        let frames = openai_to_anthropic(body, 10);
        assert_eq!(block_types(&frames), ["tool_use"]);
        let start = frames
            .iter()
            .find(|f| f.event == "content_block_start")
            .unwrap();
        assert_eq!(start.json()["index"], 0);
    }
}

#[test]
fn thinking_deltas_never_land_in_a_text_block() {
    // litellm #32357: reasoning and text went into one `text` block at index 0, and a
    // second message_start was sent; Claude Code showed an empty turn.
    let body = oai_sse(&[
        oai_chunk(
            json!({"role": "assistant", "content": "", "reasoning_content": "First, "}),
            None,
        ),
        oai_chunk(
            json!({"reasoning_content": "think.", "content": "Answer"}),
            None,
        ),
        oai_chunk(json!({"content": " part one."}), None),
        oai_chunk(json!({"reasoning": "More thought."}), None),
        oai_chunk(json!({"content": "Part two."}), None),
        oai_chunk(json!({}), Some("stop")),
    ]);
    let frames = openai_to_anthropic(body, 10);
    // check_anthropic_stream (inside openai_to_anthropic) already rejects thinking_delta in
    // a text block, a thinking block without signature, and a second message_start.
    assert_eq!(
        block_types(&frames),
        ["thinking", "text", "thinking", "text"]
    );
    let thinking: String = frames
        .iter()
        .filter(|f| f.json()["delta"]["type"] == "thinking_delta")
        .map(|f| f.json()["delta"]["thinking"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(thinking, "First, think.More thought.");
    let text: String = frames
        .iter()
        .filter(|f| f.json()["delta"]["type"] == "text_delta")
        .map(|f| f.json()["delta"]["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(text, "Answer part one.Part two.");
    let signatures = frames
        .iter()
        .filter(|f| f.json()["delta"]["type"] == "signature_delta")
        .count();
    assert_eq!(signatures, 2);

    // An upstream that repeats message_start still gives the client exactly one.
    let body = anthropic_sse(&[
        message_start(
            "msg_01Twice",
            json!({"input_tokens": 3, "output_tokens": 1}),
        ),
        message_start(
            "msg_01Twice",
            json!({"input_tokens": 3, "output_tokens": 1}),
        ),
        block_start(0, json!({"type": "text", "text": ""})),
        block_delta(0, json!({"type": "text_delta", "text": "Hi"})),
        block_stop(0),
        message_delta("end_turn", json!({"output_tokens": 2})),
        message_stop(),
    ]);
    let frames = parse_sse(&encode_anthropic(
        decode_anthropic(&sse_frames(vec![body])),
        3,
    ));
    check_anthropic_stream(&frames).unwrap();
}

#[test]
fn message_start_usage_is_an_estimate_when_upstream_counts_at_the_end() {
    // litellm #24176: zeros in message_start.usage broke Claude Code 2.1.79.
    let request = anthropic_request(json!({
        "model": "claude-sonnet-4-5", "max_tokens": 100, "stream": true,
        "system": "You are a helpful assistant that answers briefly.",
        "messages": [{"role": "user", "content": "Explain what an HTTP proxy does in two sentences."}]
    }));
    let estimate = anthropic::estimate_input_tokens(&request);
    assert!(estimate > 10, "estimate {estimate}");

    // An OpenAI upstream reports usage only in its last chunk.
    let body = oai_sse(&[
        oai_chunk(
            json!({"role": "assistant", "content": "It forwards requests."}),
            None,
        ),
        oai_chunk(json!({}), Some("stop")),
        oai_usage_chunk(json!({"prompt_tokens": 31, "completion_tokens": 5, "total_tokens": 36})),
    ]);
    let frames = openai_to_anthropic(body, estimate);
    assert_eq!(
        frames[0].json()["message"]["usage"]["input_tokens"],
        estimate
    );
    let delta = frames.iter().find(|f| f.event == "message_delta").unwrap();
    assert_eq!(delta.json()["usage"]["input_tokens"], 31);
    assert_eq!(delta.json()["usage"]["output_tokens"], 5);

    // An upstream that sends no usage at all still ends with a usage object.
    let body = oai_sse(&[
        oai_chunk(json!({"role": "assistant", "content": "Hi"}), None),
        oai_chunk(json!({}), Some("stop")),
    ]);
    let frames = openai_to_anthropic(body, estimate);
    assert_eq!(
        frames[0].json()["message"]["usage"]["input_tokens"],
        estimate
    );
    let delta = frames.iter().find(|f| f.event == "message_delta").unwrap();
    assert_json("usage", json!({"output_tokens": 0}), &delta.json()["usage"]);

    // An Anthropic-compatible upstream that sends zeros in message_start.
    let body = anthropic_sse(&[
        message_start(
            "msg_01Zero",
            json!({"input_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 0}),
        ),
        block_start(0, json!({"type": "text", "text": ""})),
        block_delta(0, json!({"type": "text_delta", "text": "Hi"})),
        block_stop(0),
        message_delta("end_turn", json!({"input_tokens": 31, "output_tokens": 2})),
        message_stop(),
    ]);
    let frames = parse_sse(&encode_anthropic(
        decode_anthropic(&sse_frames(vec![body])),
        estimate,
    ));
    assert_json(
        "message_start usage",
        json!({"input_tokens": estimate, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 0}),
        &frames[0].json()["message"]["usage"],
    );
    let delta = frames.iter().find(|f| f.event == "message_delta").unwrap();
    assert_eq!(delta.json()["usage"]["input_tokens"], 31);
    // Real counts pass through untouched.
    let body = anthropic_sse(&[
        message_start(
            "msg_01Real",
            json!({"input_tokens": 0, "cache_read_input_tokens": 900, "output_tokens": 1}),
        ),
        block_start(0, json!({"type": "text", "text": ""})),
        block_delta(0, json!({"type": "text_delta", "text": "Hi"})),
        block_stop(0),
        message_delta("end_turn", json!({"output_tokens": 2})),
        message_stop(),
    ]);
    let frames = parse_sse(&encode_anthropic(
        decode_anthropic(&sse_frames(vec![body])),
        estimate,
    ));
    assert_json(
        "message_start usage",
        json!({"input_tokens": 0, "cache_read_input_tokens": 900, "output_tokens": 1}),
        &frames[0].json()["message"]["usage"],
    );
}

#[test]
fn interleaved_parallel_tool_call_deltas_become_sequential_blocks() {
    // PROTOCOLS.md §1.3(c) and pitfall 16: OpenAI interleaves parallel calls by index;
    // Anthropic blocks never interleave and each keeps its own arguments.
    let calls = [
        (
            "call_a",
            "get_weather",
            r#"{"city":"Paris","unit":"celsius"}"#,
        ),
        ("call_b", "get_time", r#"{"tz":"America/Bogota"}"#),
        (
            "call_c",
            "send_email",
            r#"{"to":"bob@example.com","body":"Grüße 👋"}"#,
        ),
    ];
    // Round robin: one fragment of each call per chunk, several fragments per chunk too.
    let mut chunks = vec![oai_chunk(
        json!({"role": "assistant", "content": null}),
        None,
    )];
    let pieces: Vec<Vec<String>> = calls
        .iter()
        .map(|(_, _, args)| {
            let chars: Vec<char> = args.chars().collect();
            chars.chunks(5).map(|c| c.iter().collect()).collect()
        })
        .collect();
    for (index, (id, name, _)) in calls.iter().enumerate() {
        chunks.push(oai_chunk(
            json!({"tool_calls": [oai_call(index as u32, Some(id), Some(name), "")]}),
            None,
        ));
    }
    let longest = pieces.iter().map(Vec::len).max().unwrap();
    for round in 0..longest {
        let fragments: Vec<Value> = pieces
            .iter()
            .enumerate()
            .rev()
            .filter_map(|(index, p)| {
                p.get(round)
                    .map(|piece| oai_call(index as u32, None, None, piece))
            })
            .collect();
        chunks.push(oai_chunk(json!({"tool_calls": fragments}), None));
    }
    chunks.push(oai_chunk(json!({}), Some("tool_calls")));
    let frames = openai_to_anthropic(oai_sse(&chunks), 10);
    assert_eq!(block_types(&frames), ["tool_use", "tool_use", "tool_use"]);

    // Fragments of each block, by the block's own index.
    let mut per_block = vec![String::new(); calls.len()];
    for frame in &frames {
        if frame.json()["delta"]["type"] == "input_json_delta" {
            let index = frame.json()["index"].as_u64().unwrap() as usize;
            per_block[index].push_str(frame.json()["delta"]["partial_json"].as_str().unwrap());
        }
    }
    let expected: Vec<&str> = calls.iter().map(|(_, _, args)| *args).collect();
    assert_eq!(per_block, expected);
    let folded = client_tool_calls(&frames);
    for ((id, name, args), (got_id, got_name, got_args)) in calls.iter().zip(&folded) {
        assert_eq!((id, name), (&got_id.as_str(), &got_name.as_str()));
        assert_eq!(&serde_json::from_str::<Value>(args).unwrap(), got_args);
    }
}

#[test]
fn tool_result_images_reach_openai_outside_the_tool_message() {
    // Zoo-Code #1705, PROTOCOLS.md §2.3: tool results may carry images (screenshots).
    let request = anthropic_request(json!({
        "model": "claude-sonnet-4-5", "max_tokens": 1024,
        "messages": [
            {"role": "user", "content": "Take a screenshot."},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_shot", "name": "screenshot", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_shot", "content": [
                {"type": "text", "text": "Screenshot taken."},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
            ]}]}
        ]
    }));
    let upstream = openai_chat::encode_request(&request, "gpt-4.1");
    let messages = upstream["messages"].as_array().unwrap();
    let tool = messages.iter().find(|m| m["role"] == "tool").unwrap();
    assert_eq!(tool["tool_call_id"], "toolu_shot");
    // The tool message holds only text...
    let text_only = match &tool["content"] {
        Value::String(_) => true,
        Value::Array(parts) => parts.iter().all(|p| p["type"] == "text"),
        _ => false,
    };
    assert!(text_only, "tool message content: {}", tool["content"]);
    assert!(tool["content"].to_string().contains("Screenshot taken."));
    // ...and the image still reaches the model, after the tool messages.
    let after: Vec<&Value> = messages
        .iter()
        .skip_while(|m| m["role"] != "tool")
        .collect();
    assert!(
        after.iter().any(|m| m["role"] == "user"
            && m["content"]
                .to_string()
                .contains("data:image/png;base64,iVBORw0KGgo=")),
        "messages: {}",
        upstream["messages"]
    );
}

#[test]
fn tool_result_images_are_not_lost_on_the_way_to_openai() {
    // What holds today (see the ignored test above for the shape OpenAI needs): the image
    // and the text of a tool_result reach the OpenAI request with the call id.
    let request = anthropic_request(json!({
        "model": "claude-sonnet-4-5", "max_tokens": 1024,
        "messages": [
            {"role": "user", "content": "Take a screenshot."},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_shot", "name": "screenshot", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_shot", "content": [
                {"type": "text", "text": "Screenshot taken."},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
            ]}]}
        ]
    }));
    let upstream = openai_chat::encode_request(&request, "gpt-4.1");
    let text = upstream["messages"].to_string();
    assert!(text.contains("toolu_shot"));
    assert!(text.contains("Screenshot taken."));
    assert!(text.contains("data:image/png;base64,iVBORw0KGgo="));
}

#[test]
fn an_openai_error_frame_mid_stream_becomes_an_anthropic_error_event() {
    // Pitfall 14: an error frame must not read as an empty success, and the client must
    // not get a clean message_stop after it.
    let mut body = oai_sse(&[oai_chunk(
        json!({"role": "assistant", "content": "Hel"}),
        None,
    )]);
    body.truncate(body.len() - "data: [DONE]\n\n".len());
    body.extend_from_slice(
        b"data: {\"error\":{\"message\":\"upstream overloaded\",\"type\":\"server_error\",\"code\":null}}\n\n",
    );
    let frames = openai_to_anthropic(body, 3);
    let last = frames.last().unwrap();
    assert_eq!(last.event, "error");
    assert_eq!(last.json()["type"], "error");
    assert!(last.json()["error"]["type"].is_string());
    assert!(
        last.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("upstream overloaded")
    );
    assert!(!frames.iter().any(|f| f.event == "message_stop"));
}

#[test]
fn an_anthropic_error_event_becomes_an_openai_error_frame_without_done() {
    let body = anthropic_sse(&[
        message_start("msg_01Err", json!({"input_tokens": 3, "output_tokens": 1})),
        block_start(0, json!({"type": "text", "text": ""})),
        block_delta(0, json!({"type": "text_delta", "text": "Hel"})),
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    ]);
    let frames = anthropic_to_openai(body, false);
    let last = frames.last().unwrap().json();
    assert_eq!(last["error"]["type"], "overloaded_error");
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Overloaded")
    );
    assert!(
        !frames
            .iter()
            .any(|f| f.data == Data::Literal("[DONE]".into()))
    );
}

#[test]
fn a_cut_off_upstream_stream_ends_with_an_error_not_message_stop() {
    // Pitfall 15: the upstream body ends without message_delta/message_stop.
    let body = anthropic_sse(&[
        message_start("msg_01Cut", json!({"input_tokens": 3, "output_tokens": 1})),
        block_start(0, json!({"type": "text", "text": ""})),
        block_delta(0, json!({"type": "text_delta", "text": "Hel"})),
    ]);
    let frames = parse_sse(&encode_anthropic(
        decode_anthropic(&sse_frames(vec![body])),
        3,
    ));
    check_anthropic_stream(&frames).unwrap();
    assert_eq!(frames.last().unwrap().event, "error");
    assert!(!frames.iter().any(|f| f.event == "message_stop"));
}

// =======================================================================================
// Re-chunking: any split of the upstream bytes gives the same client output

/// Splits `bytes` at random byte offsets (inside multi-byte characters too) into 1..=max
/// chunks; sometimes one chunk per byte.
fn split_bytes(rng: &mut fastrand::Rng, bytes: &[u8], max_chunks: usize) -> Vec<Vec<u8>> {
    if rng.u8(..20) == 0 {
        return bytes.iter().map(|b| vec![*b]).collect();
    }
    let mut cuts: Vec<usize> = (0..rng.usize(0..max_chunks))
        .map(|_| rng.usize(1..bytes.len()))
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut chunks = Vec::new();
    let mut start = 0;
    for cut in cuts {
        chunks.push(bytes[start..cut].to_vec());
        start = cut;
    }
    chunks.push(bytes[start..].to_vec());
    chunks
}

/// Client output for upstream bytes delivered in `chunks`, as comparable frames:
/// (Anthropic client stream bytes, OpenAI client frames with `created` pinned).
type ClientOutputs = (Vec<u8>, Vec<Frame>);

fn relay_anthropic_chunks(chunks: Vec<Vec<u8>>) -> ClientOutputs {
    let events = decode_anthropic(&sse_frames(chunks));
    let anthropic = encode_anthropic(events.clone(), 42);
    let mut openai = parse_sse(&encode_openai(events, true));
    for frame in &mut openai {
        if let Data::Json(Value::Object(obj)) = &mut frame.data
            && obj.contains_key("created")
        {
            obj.insert("created".into(), json!(0));
        }
    }
    (anthropic, openai)
}

fn relay_openai_chunks(chunks: Vec<Vec<u8>>) -> ClientOutputs {
    let events = decode_openai(&sse_frames(chunks));
    let anthropic = encode_anthropic(events.clone(), 42);
    let openai = parse_sse(&encode_openai(events, true));
    (anthropic, openai)
}

/// An Anthropic stream with multi-byte text everywhere: thinking, text, tool input split
/// inside strings and escapes, a server tool block, a citation, usage.
fn rich_anthropic_stream() -> Vec<u8> {
    anthropic_sse(&[
        message_start(
            "msg_01Rechunk",
            json!({"input_tokens": 120, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 4000, "output_tokens": 1}),
        ),
        block_start(0, json!({"type": "thinking", "thinking": ""})),
        block_delta(
            0,
            json!({"type": "thinking_delta", "thinking": "Überlegung: 2×2 = 4 🤔, "}),
        ),
        block_delta(
            0,
            json!({"type": "thinking_delta", "thinking": "日本語でも考える。"}),
        ),
        block_delta(
            0,
            json!({"type": "signature_delta", "signature": "EqQBCgIYAhIM+/=="}),
        ),
        block_stop(0),
        json!({"type": "ping"}),
        block_start(1, json!({"type": "text", "text": ""})),
        block_delta(
            1,
            json!({"type": "text_delta", "text": "Grüße aus Köln — "}),
        ),
        block_delta(
            1,
            json!({"type": "text_delta", "text": "👋🏽 naïve café, Ελληνικά."}),
        ),
        block_stop(1),
        block_start(
            2,
            json!({"type": "server_tool_use", "id": "srvtoolu_01", "name": "web_search", "input": {}}),
        ),
        block_delta(
            2,
            json!({"type": "input_json_delta", "partial_json": "{\"query\": \"Bogotá 天気\"}"}),
        ),
        block_stop(2),
        block_start(3, json!({"type": "text", "text": ""})),
        block_delta(
            3,
            json!({"type": "citations_delta", "citation": {"type": "web_search_result_location", "url": "https://example.com/é", "title": "Météo", "encrypted_index": "Eo8=", "cited_text": "Soleil ☀"}}),
        ),
        block_delta(
            3,
            json!({"type": "text_delta", "text": "Sunny ☀ in Bogotá."}),
        ),
        block_stop(3),
        block_start(
            4,
            json!({"type": "tool_use", "id": "toolu_01Mail", "name": "send_email", "input": {}}),
        ),
        block_delta(4, json!({"type": "input_json_delta", "partial_json": ""})),
        block_delta(
            4,
            json!({"type": "input_json_delta", "partial_json": "{\"to\": \"zoë@example.com\", \"body\": \"Grüße 👋"}),
        ),
        block_delta(
            4,
            json!({"type": "input_json_delta", "partial_json": " \\\"quoted\\\" \\n line\"}"}),
        ),
        block_stop(4),
        message_delta("tool_use", json!({"output_tokens": 321})),
        message_stop(),
    ])
}

/// An OpenAI stream with multi-byte text, reasoning, and two interleaved tool calls.
fn rich_openai_stream() -> Vec<u8> {
    oai_sse(&[
        oai_chunk(json!({"role": "assistant", "content": ""}), None),
        oai_chunk(json!({"reasoning_content": "Überlegung 🤔 "}), None),
        oai_chunk(json!({"reasoning_content": "日本語。"}), None),
        oai_chunk(json!({"content": "Grüße — 👋🏽 naïve café."}), None),
        oai_chunk(
            json!({"tool_calls": [oai_call(0, Some("call_a"), Some("get_weather"), "{\"city\":\"Bogo")]}),
            None,
        ),
        oai_chunk(
            json!({"tool_calls": [oai_call(1, Some("call_b"), Some("send_email"), "{\"body\":\"Grüße ")]}),
            None,
        ),
        oai_chunk(
            json!({"tool_calls": [oai_call(0, None, None, "tá ☀\"}"), oai_call(1, None, None, "👋 \\\"q\\\"\"}")]}),
            None,
        ),
        oai_chunk(json!({}), Some("tool_calls")),
        oai_usage_chunk(
            json!({"prompt_tokens": 200, "completion_tokens": 50, "total_tokens": 250,
                               "prompt_tokens_details": {"cached_tokens": 150}}),
        ),
    ])
}

fn assert_split_invariant(name: &str, upstream: &[u8], relay: fn(Vec<Vec<u8>>) -> ClientOutputs) {
    let reference = relay(vec![upstream.to_vec()]);
    assert!(
        reference.0.len() > 500 && reference.1.len() > 5,
        "{name}: the reference output is suspiciously small"
    );
    check_anthropic_stream(&parse_sse(&reference.0)).unwrap();
    // CRLF line endings mean the same stream.
    let crlf = String::from_utf8(upstream.to_vec())
        .unwrap()
        .replace('\n', "\r\n")
        .into_bytes();
    let with_crlf = relay(vec![crlf]);
    assert!(
        with_crlf == reference,
        "{name}: CRLF line endings change the output"
    );
    for seed in 0..300 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let chunks = split_bytes(&mut rng, upstream, 40);
        let sizes: Vec<usize> = chunks.iter().map(Vec::len).collect();
        let (anthropic, openai) = relay(chunks);
        if anthropic != reference.0 {
            panic!(
                "{name}, seed {seed} (chunk sizes {sizes:?}): the Anthropic client stream differs:\n{}\nvs the unsplit stream:\n{}",
                String::from_utf8_lossy(&anthropic),
                String::from_utf8_lossy(&reference.0)
            );
        }
        if let Err(e) = compare_frames("OpenAI client stream", &reference.1, &openai) {
            panic!("{name}, seed {seed} (chunk sizes {sizes:?}): {e}");
        }
    }
}

#[test]
fn any_split_of_an_anthropic_upstream_stream_gives_the_same_client_output() {
    let upstream = rich_anthropic_stream();
    assert_split_invariant("anthropic upstream", &upstream, relay_anthropic_chunks);
    // The fixture streams too.
    for case in case_dirs(FIXTURES) {
        if let Some(upstream) = read_bytes(&case.join("upstream.sse")).unwrap() {
            let name = case.file_name().unwrap().to_string_lossy().into_owned();
            let reference = relay_anthropic_chunks(vec![upstream.clone()]);
            for seed in 0..40 {
                let mut rng = fastrand::Rng::with_seed(seed);
                let chunks = split_bytes(&mut rng, &upstream, 30);
                assert!(
                    relay_anthropic_chunks(chunks) == reference,
                    "{name}, seed {seed}"
                );
            }
        }
    }
}

#[test]
fn any_split_of_an_openai_upstream_stream_gives_the_same_client_output() {
    let upstream = rich_openai_stream();
    assert_split_invariant("openai upstream", &upstream, relay_openai_chunks);
}

#[test]
fn the_rich_streams_fold_to_what_upstream_said() {
    // The re-chunking references above are themselves right, not merely stable.
    let frames = parse_sse(&relay_anthropic_chunks(vec![rich_anthropic_stream()]).0);
    let response = fold(decode_anthropic(&raw(&frames))).unwrap();
    assert_eq!(
        response.text(),
        "Grüße aus Köln — 👋🏽 naïve café, Ελληνικά.Sunny ☀ in Bogotá."
    );
    assert_eq!(
        client_tool_calls(&frames),
        [(
            "toolu_01Mail".to_owned(),
            "send_email".to_owned(),
            json!({"to": "zoë@example.com", "body": "Grüße 👋 \"quoted\" \n line"})
        )]
    );
    assert_eq!(
        block_types(&frames),
        ["thinking", "text", "server_tool_use", "text", "tool_use"]
    );

    let frames = parse_sse(&relay_openai_chunks(vec![rich_openai_stream()]).0);
    let response = fold(decode_anthropic(&raw(&frames))).unwrap();
    assert_eq!(response.text(), "Grüße — 👋🏽 naïve café.");
    assert_eq!(
        client_tool_calls(&frames),
        [
            (
                "call_a".to_owned(),
                "get_weather".to_owned(),
                json!({"city": "Bogotá ☀"})
            ),
            (
                "call_b".to_owned(),
                "send_email".to_owned(),
                json!({"body": "Grüße 👋 \"q\""})
            ),
        ]
    );
    assert!(matches!(response.finish, Some(FinishReason::ToolUse)));
}

#[test]
fn a_changed_response_is_never_replaced_by_the_upstream_original() {
    // decode_response keeps the upstream content for a same-protocol client; if a pipeline
    // stage changed what the model sees (here: redaction of one text), the client gets the
    // changed parts, never the original text.
    let upstream = read_json(&fixtures_dir(FIXTURES).join("web_search/response.json"))
        .unwrap()
        .unwrap();
    let events = anthropic::decode_response(&serde_json::to_vec(&upstream).unwrap()).unwrap();
    let unchanged = anthropic::encode_response(&fold(events.clone()).unwrap(), 1);
    assert_json(
        "content",
        upstream["content"].clone(),
        &unchanged["content"],
    );

    let redacted: Vec<Event> = events
        .into_iter()
        .map(|event| match event {
            Event::TextDelta(text) if text.contains("15 May 2015") => {
                Event::TextDelta(text.replace("15 May 2015", "[REDACTED]"))
            }
            other => other,
        })
        .collect();
    let body = anthropic::encode_response(&fold(redacted).unwrap(), 1);
    let text = body["content"].to_string();
    assert!(text.contains("[REDACTED]"), "{text}");
    assert!(!text.contains("15 May 2015"), "{text}");
    // Server tool blocks are still there, after the text.
    assert_eq!(
        body["content"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["type"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["text", "server_tool_use", "web_search_tool_result"]
    );
}

#[test]
fn a_thinking_budget_near_the_largest_count_sets_the_cap_without_overflow() {
    // A Gemini or Anthropic client's budget can be any u64; the cap above it saturates.
    let mut request = anthropic_request(json!({
        "model": "claude-sonnet-4-5", "max_tokens": 1024,
        "thinking": {"type": "enabled", "budget_tokens": 10000},
        "messages": [{"role": "user", "content": "2+2?"}]
    }));
    request.reasoning = Some(llmux::model::Reasoning {
        effort: None,
        budget_tokens: Some(u64::MAX),
    });
    let upstream = anthropic::encode_request(&request, "claude-sonnet-4-5");
    assert_eq!(upstream["max_tokens"], json!(u64::MAX));
    assert_eq!(upstream["thinking"]["budget_tokens"], json!(u64::MAX));
}
