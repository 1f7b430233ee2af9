#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Fixture tests for the OpenAI Responses protocol (`src/protocol/openai_responses`), and
//! golden cross-protocol tests between Responses and Chat Completions.
//!
//! `tests/fixtures/openai_responses/<case>/` holds a Responses client's exchanges (see the
//! README there). Each optional file pair is one check:
//! - `request.json` -> `decode_request` -> `encode_request` == `upstream_request.json`
//!   (Responses back-end) and -> `openai_chat::encode_request` == `chat_upstream_request.json`
//! - `response.json` (Responses upstream) -> fold -> `encode_response` == `expected_response.json`;
//!   `chat_response.json` (Chat upstream) -> fold -> `encode_response` == `expected_from_chat_response.json`
//! - `upstream.sse` -> `EventDecoder` -> `EventEncoder` == `expected.sse`;
//!   `chat_upstream.sse` -> `openai_chat::ChunkDecoder` -> `EventEncoder` == `expected_from_chat.sse`
//!
//! `tests/fixtures/openai_chat_to_responses/<case>/` holds a Chat client's exchanges with a
//! Responses back-end:
//! - `request.json` (Chat) -> `openai_chat::decode_request` -> `encode_request` == `upstream_request.json`
//! - `response.json` (Responses) -> fold -> `openai_chat::encode_response` == `expected_response.json`
//! - `upstream.sse` (Responses) -> `EventDecoder` -> `openai_chat::ChunkEncoder` == `expected.sse`
//!
//! JSON is compared as values; a failure names the case and each differing path. Every
//! Responses stream a client gets is also checked against the rules the official SDK and
//! Codex CLI rely on (`check_client_stream`), and read back: it must fold to what the
//! upstream said.
//!
//! `LLMUX_BLESS=1 cargo test --test protocol_openai_responses` writes missing or differing
//! expected files from the actual output, for review with `git diff`.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use llmux::Error;
use llmux::backend::http::decode_frames;
use llmux::backend::openai::{ChatWire, ResponsesWire};
use llmux::error::ErrorKind;
use llmux::model::{Event, FinishReason, Part, Response, ResponseBuilder};
use llmux::protocol::openai_chat;
use llmux::protocol::openai_responses::{
    ClientOptions, EventEncoder, decode_request, decode_response, encode_request, encode_response,
};
use serde_json::{Value, json};

#[path = "support/fixtures.rs"]
mod fixtures;
#[path = "support/json_diff.rs"]
mod json_diff;
use fixtures::{check_cases, fixtures_dir, read_json, read_text};
use json_diff::diff;

fn bless() -> bool {
    std::env::var_os("LLMUX_BLESS").is_some()
}

// ---------------------------------------------------------------------------------------
// SSE

/// One SSE frame: its `event:` name (if any) and its `data:` payload.
#[derive(Debug, Clone, PartialEq)]
struct Frame {
    event: Option<String>,
    data: Data,
}

#[derive(Debug, Clone, PartialEq)]
enum Data {
    Json(Value),
    Literal(String),
}

impl Frame {
    fn show(&self) -> String {
        let data = match &self.data {
            Data::Json(value) => value.to_string(),
            Data::Literal(text) => text.clone(),
        };
        match &self.event {
            Some(event) => format!("event: {event}\ndata: {data}\n"),
            None => format!("data: {data}\n"),
        }
    }

    fn payload(&self) -> String {
        match &self.data {
            Data::Json(value) => value.to_string(),
            Data::Literal(text) => text.clone(),
        }
    }

    fn json(&self) -> &Value {
        match &self.data {
            Data::Json(value) => value,
            Data::Literal(_) => &Value::Null,
        }
    }
}

/// Parses SSE text: frames end at a blank line; comment lines (`:`) are skipped.
fn parse_sse(text: &str) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut event = None;
    let mut data: Option<String> = None;
    let mut flush = |event: &mut Option<String>, data: &mut Option<String>| {
        if let Some(payload) = data.take() {
            let data = match serde_json::from_str(&payload) {
                Ok(value) => Data::Json(value),
                Err(_) => Data::Literal(payload),
            };
            frames.push(Frame {
                event: event.take(),
                data,
            });
        }
        *event = None;
    };
    for line in text.lines() {
        if line.is_empty() {
            flush(&mut event, &mut data);
        } else if let Some(name) = line.strip_prefix("event:") {
            event = Some(name.trim().to_owned());
        } else if let Some(payload) = line.strip_prefix("data:") {
            let payload = payload.trim();
            match &mut data {
                Some(so_far) => {
                    so_far.push('\n');
                    so_far.push_str(payload);
                }
                None => data = Some(payload.to_owned()),
            }
        }
    }
    flush(&mut event, &mut data);
    frames
}

fn read_sse(path: &Path) -> Result<Option<Vec<Frame>>, String> {
    Ok(read_text(path)?.map(|text| parse_sse(&text)))
}

fn frames_of(out: &[bytes::Bytes]) -> Vec<Frame> {
    let text: String = out
        .iter()
        .map(|b| std::str::from_utf8(b).unwrap().to_owned())
        .collect();
    for chunk in &text.split_inclusive("\n\n").collect::<Vec<_>>() {
        assert!(
            chunk.ends_with("\n\n"),
            "frame not ended by a blank line: {chunk:?}"
        );
    }
    parse_sse(&text)
}

fn sse_text(frames: &[Frame]) -> String {
    frames.iter().map(|f| format!("{}\n", f.show())).collect()
}

// ---------------------------------------------------------------------------------------
// Diff-friendly comparison

/// Compares `actual` with the JSON in `file`; in bless mode, writes it there instead.
fn check_json(case: &Path, file: &str, actual: &Value) -> Result<(), String> {
    let path = case.join(file);
    let expected = read_json(&path)?;
    if let Some(expected) = &expected {
        let mut differences = Vec::new();
        diff("$", expected, actual, &mut differences);
        if differences.is_empty() {
            return Ok(());
        }
        if !bless() {
            return Err(format!(
                "{file} differs:\n  {}\nactual:\n{}",
                differences.join("\n  "),
                serde_json::to_string_pretty(actual).unwrap()
            ));
        }
    } else if !bless() {
        return Err(format!("missing {file}"));
    }
    fs::write(&path, serde_json::to_string_pretty(actual).unwrap() + "\n").unwrap();
    Ok(())
}

fn check_frames(case: &Path, file: &str, actual: &[Frame]) -> Result<(), String> {
    let path = case.join(file);
    let expected = read_sse(&path)?;
    if let Some(expected) = &expected {
        let mut differences = Vec::new();
        for (i, (e, a)) in expected.iter().zip(actual).enumerate() {
            if e.event != a.event {
                differences.push(format!(
                    "frame[{i}]: expected event {:?}, got {:?}",
                    e.event, a.event
                ));
            }
            match (&e.data, &a.data) {
                (Data::Json(e), Data::Json(a)) => {
                    diff(&format!("frame[{i}]"), e, a, &mut differences)
                }
                (e, a) if e != a => {
                    differences.push(format!("frame[{i}]: expected {e:?}, got {a:?}"))
                }
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
        if !bless() {
            return Err(format!(
                "{file} differs:\n  {}\nactual stream:\n{}",
                differences.join("\n  "),
                sse_text(actual)
            ));
        }
    } else if !bless() {
        return Err(format!("missing {file}"));
    }
    fs::write(&path, sse_text(actual)).unwrap();
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Relays: upstream frames -> events -> client frames, as the proxy does

/// Upstream frames as `(event, data)`, the way the back-end's SSE reader gives them.
fn wire_frames(frames: &[Frame]) -> Vec<(String, String)> {
    frames
        .iter()
        .map(|f| (f.event.clone().unwrap_or_default(), f.payload()))
        .collect()
}

/// Upstream Responses frames as the Responses back-end decodes them (its decoder, its
/// error mapping, its stop at the terminator).
fn responses_upstream(frames: &[Frame]) -> Vec<Event> {
    decode_frames(&ResponsesWire, "upstream", &wire_frames(frames))
}

/// Upstream chat frames as the OpenAI chat back-end decodes them.
fn chat_upstream(frames: &[Frame]) -> Vec<Event> {
    decode_frames(&ChatWire, "upstream", &wire_frames(frames))
}

fn to_responses_client(events: &[Event], options: &ClientOptions) -> Vec<Frame> {
    let mut encoder = EventEncoder::new(options.clone());
    let mut out = Vec::new();
    for event in events {
        encoder.push(event.clone(), &mut out);
    }
    encoder.finish(&mut out);
    frames_of(&out)
}

fn to_chat_client(events: &[Event], include_usage: bool) -> Vec<Frame> {
    let mut encoder = openai_chat::ChunkEncoder::new(include_usage);
    let mut out = Vec::new();
    for event in events {
        encoder.push(event.clone(), &mut out);
    }
    encoder.finish(&mut out);
    frames_of(&out)
}

fn fold(events: &[Event]) -> Result<Response, Error> {
    let mut builder = ResponseBuilder::new();
    for event in events {
        builder.push(event.clone())?;
    }
    Ok(builder.finish())
}

// ---------------------------------------------------------------------------------------
// What SDK and Codex clients rely on in a Responses stream

/// What a client learned of one output item from the events so far.
#[derive(Default)]
struct StreamItem {
    id: String,
    kind: String,
    done: bool,
    parts: HashMap<u64, String>,
    summaries: HashMap<u64, String>,
    arguments: String,
}

const TERMINAL: [&str; 3] = [
    "response.completed",
    "response.incomplete",
    "response.failed",
];

/// Checks the event order and fields the OpenAI SDK's stream accumulator and Codex CLI
/// need (PROTOCOLS.md §1.4, §4.2).
fn check_client_stream(frames: &[Frame]) -> Result<(), String> {
    let mut items: HashMap<u64, StreamItem> = HashMap::new();
    let mut done_items: Vec<(u64, Value)> = Vec::new();
    let fail = |i: usize, why: String| Err(format!("client frame {i}: {why}"));
    let Some(last) = frames.last() else {
        return Err("empty client stream".into());
    };
    let last_type = last.json()["type"].as_str().unwrap_or_default();
    if !TERMINAL.contains(&last_type) {
        return Err(format!(
            "the stream ends with {last_type}, not a terminal event"
        ));
    }
    for (i, frame) in frames.iter().enumerate() {
        let data = frame.json();
        let kind = data["type"].as_str().unwrap_or_default();
        if frame.event.as_deref() != Some(kind) {
            return fail(i, format!("`event: {:?}` but type {kind}", frame.event));
        }
        if data["sequence_number"] != json!(i) {
            return fail(i, format!("sequence_number {}", data["sequence_number"]));
        }
        // The SDK raises on a frame with a top-level `error` key.
        if data.get("error").is_some_and(|e| !e.is_null()) {
            return fail(i, "a top-level `error` key".into());
        }
        if TERMINAL.contains(&kind) && i + 1 != frames.len() {
            return fail(i, format!("{kind} before the end"));
        }
        // The SDK's stream helper needs `response.created` first.
        match (i, kind) {
            (0, "response.created") | (1, "response.in_progress") => {
                if data["response"]["status"] != "in_progress" {
                    return fail(i, "the first responses must be in_progress".into());
                }
                continue;
            }
            (0 | 1, _) => return fail(i, format!("{kind} before created/in_progress")),
            _ => {}
        }
        if kind == "response.failed" {
            let before = frames
                .get(i.wrapping_sub(1))
                .map(|f| f.json()["type"].clone());
            if before != Some(json!("error")) {
                return fail(i, "response.failed without an error event before it".into());
            }
            let error = &data["response"]["error"];
            if !error["code"].is_string() || !error["message"].is_string() {
                return fail(i, format!("response.error is {error}"));
            }
            continue;
        }
        if kind == "error" {
            if !data["message"].is_string() {
                return fail(i, "error without a message".into());
            }
            continue;
        }
        let output_index = data["output_index"].as_u64();
        if kind == "response.output_item.added" {
            let index = output_index.ok_or("added without output_index")?;
            if index != items.len() as u64 {
                return fail(
                    i,
                    format!("item added at {index}, expected {}", items.len()),
                );
            }
            // Items come one after another, as the API sends them.
            if let Some(open) = items.values().find(|x| !x.done) {
                return fail(i, format!("item added while {} is still open", open.id));
            }
            let item = &data["item"];
            let id = item["id"].as_str().unwrap_or_default();
            if id.is_empty() {
                return fail(i, "an item without an id".into());
            }
            items.insert(
                index,
                StreamItem {
                    id: id.to_owned(),
                    kind: item["type"].as_str().unwrap_or_default().to_owned(),
                    ..StreamItem::default()
                },
            );
            continue;
        }
        if TERMINAL.contains(&kind) {
            let open: Vec<&String> = items.values().filter(|x| !x.done).map(|x| &x.id).collect();
            if !open.is_empty() {
                return fail(i, format!("items still open at the end: {open:?}"));
            }
            let response = &data["response"];
            done_items.sort_by_key(|(index, _)| *index);
            let output: Vec<Value> = done_items.iter().map(|(_, item)| item.clone()).collect();
            if response["output"] != json!(output) {
                return fail(i, "response.output is not the items that were done".into());
            }
            let usage = &response["usage"];
            if !usage["input_tokens_details"].is_object()
                || !usage["output_tokens_details"].is_object()
                || !usage["total_tokens"].is_u64()
            {
                return fail(i, format!("usage is {usage}"));
            }
            let status = response["status"].as_str().unwrap_or_default();
            let expected = if kind == "response.incomplete" {
                "incomplete"
            } else {
                "completed"
            };
            if status != expected {
                return fail(i, format!("{kind} with status {status}"));
            }
            continue;
        }
        let Some(index) = output_index else {
            continue;
        };
        let Some(item) = items.get_mut(&index) else {
            return fail(
                i,
                format!("{kind} for output_index {index} before it was added"),
            );
        };
        if item.done {
            return fail(i, format!("{kind} after output_item.done"));
        }
        if kind != "response.output_item.done" && data["item_id"] != json!(item.id) {
            return fail(i, format!("item_id {} is not {}", data["item_id"], item.id));
        }
        let content_index = data["content_index"].as_u64().unwrap_or(0);
        let summary_index = data["summary_index"].as_u64().unwrap_or(0);
        let delta = data["delta"].as_str().unwrap_or_default();
        let text_of = |map: &HashMap<u64, String>, index: u64| map.get(&index).cloned();
        let problem: Option<String> = match kind {
            "response.content_part.added" => item
                .parts
                .insert(content_index, String::new())
                .map(|_| "content part added twice".into()),
            "response.output_text.delta" | "response.refusal.delta" => {
                match item.parts.get_mut(&content_index) {
                    None => Some(format!("{kind} before content_part.added")),
                    Some(text) => {
                        text.push_str(delta);
                        (kind == "response.output_text.delta" && !data["logprobs"].is_array())
                            .then(|| "output_text.delta without logprobs".into())
                    }
                }
            }
            "response.output_text.done" => (text_of(&item.parts, content_index).as_deref()
                != data["text"].as_str())
            .then(|| format!("{kind} text is not the deltas")),
            "response.refusal.done" => (text_of(&item.parts, content_index).as_deref()
                != data["refusal"].as_str())
            .then(|| format!("{kind} text is not the deltas")),
            "response.reasoning_summary_part.added" => {
                item.summaries.insert(summary_index, String::new());
                (item.kind != "reasoning").then(|| "a summary part on a non-reasoning item".into())
            }
            "response.reasoning_summary_text.delta" => {
                match item.summaries.get_mut(&summary_index) {
                    None => Some("summary delta before reasoning_summary_part.added".into()),
                    Some(text) => {
                        text.push_str(delta);
                        None
                    }
                }
            }
            "response.reasoning_summary_text.done" => {
                (text_of(&item.summaries, summary_index).as_deref() != data["text"].as_str())
                    .then(|| "summary text is not the deltas".into())
            }
            "response.function_call_arguments.delta" => {
                item.arguments.push_str(delta);
                None
            }
            "response.function_call_arguments.done" => (data["arguments"].as_str()
                != Some(item.arguments.as_str()))
            .then(|| "arguments.done is not the deltas".into()),
            "response.output_item.done" => {
                item.done = true;
                let done = &data["item"];
                done_items.push((index, done.clone()));
                item_done_problem(item, done)
            }
            _ => None,
        };
        if let Some(problem) = problem {
            return fail(i, problem);
        }
    }
    Ok(())
}

/// What is wrong with a finished item, given what its events said.
fn item_done_problem(item: &StreamItem, done: &Value) -> Option<String> {
    if done["id"] != json!(item.id) || done["type"] != json!(item.kind) {
        return Some("output_item.done names another item".into());
    }
    let complete = match item.kind.as_str() {
        "message" => done["content"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
            .all(|(index, part)| {
                let text = part["text"].as_str().or(part["refusal"].as_str());
                text == item.parts.get(&(index as u64)).map(String::as_str)
            }),
        "function_call" => {
            done["arguments"].as_str() == Some(item.arguments.as_str())
                && done["call_id"].is_string()
                && done["name"].is_string()
        }
        "reasoning" => done["summary"].is_array(),
        _ => true,
    };
    (!complete).then(|| {
        format!(
            "the finished {} item is not what its events said",
            item.kind
        )
    })
}

fn same_response(upstream: &Response, client: &Response) -> Result<(), String> {
    let check = |what: &str, same: bool| {
        if same {
            Ok(())
        } else {
            Err(format!(
                "the client stream folds to a different {what}:\n{upstream:#?}\nvs\n{client:#?}"
            ))
        }
    };
    check("id", upstream.id == client.id)?;
    check("model", upstream.model == client.model)?;
    check("text", upstream.text() == client.text())?;
    let calls = |r: &Response| -> Vec<(String, String, String)> {
        r.parts
            .iter()
            .filter_map(|p| match p {
                Part::ToolCall {
                    id,
                    name,
                    arguments,
                    ..
                } => Some((id.clone(), name.clone(), arguments.clone())),
                _ => None,
            })
            .collect()
    };
    check("tool calls", calls(upstream) == calls(client))?;
    let thinking = |r: &Response| -> Vec<(String, Option<String>)> {
        r.parts
            .iter()
            .filter_map(|p| match p {
                Part::Thinking {
                    text, signature, ..
                } => Some((text.clone(), signature.clone())),
                _ => None,
            })
            .collect()
    };
    check("thinking", thinking(upstream) == thinking(client))?;
    let finish = |r: &Response| match r.finish.clone() {
        // Responses says tool use through the items, and stop sequences not at all.
        Some(FinishReason::StopSequence | FinishReason::PauseTurn) | None => {
            Some(FinishReason::EndTurn)
        }
        other => other,
    };
    check("finish", finish(upstream) == finish(client))?;
    let usage = |r: &Response| {
        r.usage.as_ref().map(|u| {
            (
                u.input_tokens,
                u.output_tokens,
                u.reasoning_tokens.unwrap_or(0),
            )
        })
    };
    check(
        "usage",
        usage(upstream) == usage(client) || upstream.usage.is_none(),
    )
}

/// A Responses client stream checked, then read back and folded.
fn check_responses_client(
    case: &Path,
    file: &str,
    events: &[Event],
    options: &ClientOptions,
) -> Result<(), String> {
    let frames = to_responses_client(events, options);
    check_frames(case, file, &frames)?;
    check_client_stream(&frames)?;
    let failed = events.iter().any(|e| matches!(e, Event::Error(_)));
    let client_events = responses_upstream(&frames);
    if failed {
        let error = client_events.iter().any(|e| matches!(e, Event::Error(_)));
        return if error {
            Ok(())
        } else {
            Err("an upstream failure reads back as a success".into())
        };
    }
    let upstream = fold(events).map_err(|e| format!("fold: {e}"))?;
    let client = fold(&client_events).map_err(|e| format!("client stream fold: {e}"))?;
    same_response(&upstream, &client)
}

// ---------------------------------------------------------------------------------------
// The checks of a Responses client's case

fn client_request(case: &Path) -> Result<Option<(llmux::model::Request, ClientOptions)>, String> {
    let Some(request) = read_json(&case.join("request.json"))? else {
        return Ok(None);
    };
    let body = serde_json::to_vec(&request).unwrap();
    decode_request(&body)
        .map(Some)
        .map_err(|e| format!("decode_request failed: {e}"))
}

fn options(case: &Path) -> Result<ClientOptions, String> {
    Ok(client_request(case)?.map(|(_, o)| o).unwrap_or_default())
}

fn responses_case(case: &Path) -> Result<usize, String> {
    let mut checked = 0;
    if let Some((request, _)) = client_request(case)? {
        check_json(
            case,
            "upstream_request.json",
            &encode_request(&request, &request.model),
        )?;
        checked += 1;
        if case.join("chat_upstream_request.json").exists() || bless() {
            check_json(
                case,
                "chat_upstream_request.json",
                &openai_chat::encode_request(&request, &request.model),
            )?;
            checked += 1;
        }
    }
    let options = options(case)?;
    if let Some(response) = read_json(&case.join("response.json"))? {
        let events = decode_response(&serde_json::to_vec(&response).unwrap())
            .map_err(|e| format!("decode_response failed: {e:?}"))?;
        let folded = fold(&events).map_err(|e| format!("fold: {e}"))?;
        check_json(
            case,
            "expected_response.json",
            &encode_response(&folded, &options).to_value(),
        )?;
        checked += 1;
    }
    if let Some(response) = read_json(&case.join("chat_response.json"))? {
        let events = openai_chat::decode_response(&serde_json::to_vec(&response).unwrap())
            .map_err(|e| format!("openai_chat::decode_response failed: {e:?}"))?;
        let folded = fold(&events).map_err(|e| format!("fold: {e}"))?;
        check_json(
            case,
            "expected_from_chat_response.json",
            &encode_response(&folded, &options).to_value(),
        )?;
        checked += 1;
    }
    if let Some(upstream) = read_sse(&case.join("upstream.sse"))? {
        let events = responses_upstream(&upstream);
        check_responses_client(case, "expected.sse", &events, &options)?;
        checked += 1;
    }
    if let Some(upstream) = read_sse(&case.join("chat_upstream.sse"))? {
        let events = chat_upstream(&upstream);
        check_responses_client(case, "expected_from_chat.sse", &events, &options)?;
        checked += 1;
    }
    Ok(checked)
}

// ---------------------------------------------------------------------------------------
// The checks of a Chat client's case with a Responses back-end

fn chat_to_responses_case(case: &Path) -> Result<usize, String> {
    let mut checked = 0;
    let mut include_usage = false;
    if let Some(request) = read_json(&case.join("request.json"))? {
        let body = serde_json::to_vec(&request).unwrap();
        let (decoded, options) = openai_chat::decode_request(&body)
            .map_err(|e| format!("openai_chat::decode_request failed: {e}"))?;
        include_usage = options.include_usage;
        check_json(
            case,
            "upstream_request.json",
            &encode_request(&decoded, &decoded.model),
        )?;
        checked += 1;
    }
    if let Some(response) = read_json(&case.join("response.json"))? {
        let events = decode_response(&serde_json::to_vec(&response).unwrap())
            .map_err(|e| format!("decode_response failed: {e:?}"))?;
        let folded = fold(&events).map_err(|e| format!("fold: {e}"))?;
        check_json(
            case,
            "expected_response.json",
            &openai_chat::encode_response(&folded),
        )?;
        checked += 1;
    }
    if let Some(upstream) = read_sse(&case.join("upstream.sse"))? {
        let events = responses_upstream(&upstream);
        let frames = to_chat_client(&events, include_usage);
        check_frames(case, "expected.sse", &frames)?;
        if frames.iter().any(|f| f.event.is_some()) {
            return Err("a chat stream has `event:` lines".into());
        }
        checked += 1;
    }
    Ok(checked)
}

#[test]
fn responses_client_cases() {
    check_cases(
        "openai_responses",
        10,
        &[("all", |case| {
            responses_case(case).map(|checked| checked > 0)
        })],
    );
}

#[test]
fn chat_client_to_responses_backend_cases() {
    check_cases(
        "openai_chat_to_responses",
        5,
        &[("all", |case| {
            chat_to_responses_case(case).map(|checked| checked > 0)
        })],
    );
}

// ---------------------------------------------------------------------------------------
// Bad input

#[test]
fn bad_requests_name_the_field() {
    let cases = [
        (
            json!({"model": "m", "input": [{"type": "function_call_output", "output": "42"}]}),
            "input[0].call_id",
        ),
        (
            json!({"model": "m", "input": [
                {"role": "user", "content": "hi"},
                {"type": "function_call", "name": "f", "arguments": "{}"}
            ]}),
            "input[1].call_id",
        ),
        (
            json!({"model": "m", "input": [{"type": ["message"], "role": "user", "content": "x"}]}),
            "input[0].type",
        ),
        (json!({"model": "m", "input": ["hello"]}), "input[0]"),
        (
            json!({"model": "m", "input": [{"role": "tool", "content": "x"}]}),
            "input[0].role",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_text", "text": 7}]}]}),
            "input[0].content[0].text",
        ),
        (
            json!({"model": "m", "input": [{"type": "reasoning", "summary": "thinking"}]}),
            "input[0].summary",
        ),
        (
            json!({"model": "m", "input": [{"type": "function_call_output", "call_id": "c", "output": 5}]}),
            "input[0].output",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "function", "name": 3}]}),
            "tools[0].name",
        ),
        (
            json!({"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "name": "n", "schema": "{}"}}}),
            "text.format.schema",
        ),
        (
            json!({"model": "m", "input": "x", "reasoning": {"effort": 3}}),
            "reasoning.effort",
        ),
        (
            json!({"model": "m", "input": "x", "stream": "yes"}),
            "stream",
        ),
        (json!({"model": "", "input": "x"}), "model"),
    ];
    for (body, param) in cases {
        let err = decode_request(body.to_string().as_bytes()).unwrap_err();
        assert_eq!(err.status(), 422, "{body}");
        assert_eq!(err.param(), Some(param), "{body}: {err}");
        assert!(err.to_string().contains(param), "{body}: {err}");
        // Responses clients get the OpenAI error envelope, naming the field.
        let envelope = llmux::protocol::openai_responses::error_body(&err);
        assert_eq!(envelope["error"]["param"], param, "{envelope}");
        assert_eq!(envelope["error"]["type"], "invalid_request_error");
    }
}

#[test]
fn invalid_json_is_an_invalid_request() {
    // A body that cannot be read is a 400; a missing field a 422 naming it (the seed's codes).
    let cases: [(&[u8], &str, u16); 4] = [
        (b"{\"model\": \"m\", \"input\": [", "not valid JSON", 400),
        (b"", "not valid JSON", 400),
        (b"[]", "invalid request", 400),
        (b"{\"input\": \"hi\"}", "missing field `model`", 422),
    ];
    for (body, says, status) in cases {
        let err = decode_request(body).unwrap_err();
        assert_eq!(err.status(), status, "{err}");
        assert!(err.to_string().contains(says), "{err}");
    }
}

#[test]
fn garbage_from_a_responses_upstream_is_an_error_not_a_success() {
    let frames = parse_sse(
        "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"r\",\"model\":\"m\"}}\n\n\
         data: {not json}\n\n",
    );
    let events = responses_upstream(&frames);
    assert!(matches!(events.last(), Some(Event::Error(_))), "{events:?}");
    let client = to_responses_client(&events, &ClientOptions::default());
    check_client_stream(&client).unwrap();
    assert_eq!(client.last().unwrap().json()["type"], "response.failed");
}

// ---------------------------------------------------------------------------------------
// The stream checker itself: it must catch what clients trip on

fn fixture_client_stream(case: &str) -> Vec<Frame> {
    read_sse(
        &fixtures_dir("openai_responses")
            .join(case)
            .join("expected.sse"),
    )
    .unwrap()
    .unwrap()
}

fn renumber(frames: &mut [Frame]) {
    for (i, frame) in frames.iter_mut().enumerate() {
        if let Data::Json(value) = &mut frame.data {
            value["sequence_number"] = json!(i);
        }
    }
}

#[test]
fn the_stream_checker_catches_broken_streams() {
    let good = fixture_client_stream("function_calling_stream");
    check_client_stream(&good).unwrap();

    let mut no_terminal = good.clone();
    no_terminal.pop();
    assert!(check_client_stream(&no_terminal).is_err());

    let mut with_done = good.clone();
    with_done.push(Frame {
        event: None,
        data: Data::Literal("[DONE]".into()),
    });
    assert!(check_client_stream(&with_done).is_err());

    let mut gap = good.clone();
    gap.remove(4);
    assert!(check_client_stream(&gap).is_err(), "sequence gap");

    // A delta before its item is announced.
    let mut early = good.clone();
    let added = early
        .iter()
        .position(|f| f.json()["type"] == "response.output_item.added")
        .unwrap();
    let frame = early.remove(added);
    early.insert(added + 2, frame);
    renumber(&mut early);
    assert!(check_client_stream(&early).is_err(), "delta before added");

    // A function call whose finished arguments differ from its deltas.
    let mut wrong = good.clone();
    let done = wrong
        .iter()
        .rposition(|f| f.json()["type"] == "response.function_call_arguments.done")
        .unwrap();
    if let Data::Json(value) = &mut wrong[done].data {
        value["arguments"] = json!("{}");
    }
    assert!(check_client_stream(&wrong).is_err(), "arguments mismatch");

    // The event name must match the payload's type.
    let mut renamed = good.clone();
    renamed[3].event = Some("response.output_text.delta".into());
    assert!(check_client_stream(&renamed).is_err(), "event name");

    // response.completed must list what was done.
    let mut lost = good;
    let last = lost.len() - 1;
    if let Data::Json(value) = &mut lost[last].data {
        value["response"]["output"] = json!([]);
    }
    assert!(check_client_stream(&lost).is_err(), "output missing");
}

// ---------------------------------------------------------------------------------------
// Upstream robustness

fn event(kind: &str, fields: Value) -> Frame {
    let mut data = json!({"type": kind});
    data.as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    Frame {
        event: Some(kind.to_owned()),
        data: Data::Json(data),
    }
}

fn created(id: &str) -> Frame {
    event(
        "response.created",
        json!({"response": {"id": id, "object": "response", "created_at": 1, "status": "in_progress", "model": "m", "output": []}}),
    )
}

fn completed(id: &str, output: Value) -> Frame {
    event(
        "response.completed",
        json!({"response": {"id": id, "object": "response", "created_at": 1, "status": "completed", "model": "m", "output": output,
               "usage": {"input_tokens": 5, "output_tokens": 7, "total_tokens": 12}}}),
    )
}

/// Streams `text` and `calls` the way the Responses API does, every string split at random
/// points.
fn random_responses_stream(
    rng: &mut fastrand::Rng,
    text: &str,
    calls: &[(&str, &str, &str)],
) -> Vec<Frame> {
    let mut frames = vec![created("resp_r")];
    let mut output = Vec::new();
    let msg = json!({"id": "msg_r", "type": "message", "role": "assistant", "status": "completed",
                     "content": [{"type": "output_text", "text": text, "annotations": []}]});
    frames.push(event(
        "response.output_item.added",
        json!({"output_index": 0, "item": {"id": "msg_r", "type": "message", "role": "assistant", "status": "in_progress", "content": []}}),
    ));
    frames.push(event(
        "response.content_part.added",
        json!({"item_id": "msg_r", "output_index": 0, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
    ));
    for piece in split_anywhere(rng, text, 8) {
        frames.push(event(
            "response.output_text.delta",
            json!({"item_id": "msg_r", "output_index": 0, "content_index": 0, "delta": piece}),
        ));
    }
    frames.push(event(
        "response.output_item.done",
        json!({"output_index": 0, "item": msg}),
    ));
    output.push(msg);
    for (i, (call_id, name, arguments)) in calls.iter().enumerate() {
        let index = i + 1;
        let id = format!("fc_r{index}");
        frames.push(event(
            "response.output_item.added",
            json!({"output_index": index, "item": {"id": id, "type": "function_call", "status": "in_progress", "call_id": call_id, "name": name, "arguments": ""}}),
        ));
        for piece in split_anywhere(rng, arguments, 10) {
            frames.push(event(
                "response.function_call_arguments.delta",
                json!({"item_id": id, "output_index": index, "delta": piece}),
            ));
        }
        let item = json!({"id": id, "type": "function_call", "status": "completed", "call_id": call_id, "name": name, "arguments": arguments});
        frames.push(event(
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        ));
        output.push(item);
    }
    frames.push(completed("resp_r", Value::Array(output)));
    frames
}

fn split_anywhere(rng: &mut fastrand::Rng, text: &str, max_pieces: usize) -> Vec<String> {
    let boundaries: Vec<usize> = (1..text.len())
        .filter(|i| text.is_char_boundary(*i))
        .collect();
    let mut cuts: Vec<usize> = if boundaries.is_empty() {
        Vec::new()
    } else {
        (0..rng.usize(0..max_pieces))
            .map(|_| boundaries[rng.usize(..boundaries.len())])
            .collect()
    };
    cuts.sort_unstable();
    cuts.dedup();
    let mut pieces = Vec::new();
    let mut start = 0;
    for cut in cuts {
        pieces.push(text[start..cut].to_owned());
        start = cut;
    }
    pieces.push(text[start..].to_owned());
    pieces
}

const TEXT: &str = "Vérifions la météo — Paris, Bogotá 🌦, puis un courriel.";
const CALLS: [(&str, &str, &str); 2] = [
    (
        "call_paris",
        "get_weather",
        r#"{"location":"Paris, France","note":"quote \" and \\ and \n newline"}"#,
    ),
    (
        "call_mail",
        "send_email",
        r#"{"to":"bob@example.com","body":"Grüße 👋 {\"a\":[1,2]}"}"#,
    ),
];

fn calls_of(response: &Response) -> Vec<(String, String, String)> {
    response
        .parts
        .iter()
        .filter_map(|p| match p {
            Part::ToolCall {
                id,
                name,
                arguments,
                ..
            } => Some((id.clone(), name.clone(), arguments.clone())),
            _ => None,
        })
        .collect()
}

fn expected_calls() -> Vec<(String, String, String)> {
    CALLS
        .iter()
        .map(|(id, name, args)| (id.to_string(), name.to_string(), args.to_string()))
        .collect()
}

#[test]
fn split_responses_deltas_fold_to_the_same_answer_for_every_client() {
    for seed in 0..200 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let frames = random_responses_stream(&mut rng, TEXT, &CALLS);
        let events = responses_upstream(&frames);
        let folded = fold(&events).unwrap();
        assert_eq!(folded.text(), TEXT, "seed {seed}");
        assert_eq!(calls_of(&folded), expected_calls(), "seed {seed}");
        assert_eq!(folded.finish, Some(FinishReason::ToolUse), "seed {seed}");

        // A Responses client gets a valid stream that reads back the same.
        let client = to_responses_client(&events, &ClientOptions::default());
        check_client_stream(&client).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let again = fold(&responses_upstream(&client)).unwrap();
        same_response(&folded, &again).unwrap();

        // A Chat client gets the same calls, each under its own index.
        let chat = to_chat_client(&events, true);
        let mut decoder = openai_chat::ChunkDecoder::new();
        let mut chat_events = Vec::new();
        for frame in &chat {
            decoder.push(&frame.payload(), &mut chat_events).unwrap();
        }
        decoder.finish().unwrap();
        let chat_folded = fold(&chat_events).unwrap();
        assert_eq!(chat_folded.text(), TEXT, "seed {seed}");
        assert_eq!(calls_of(&chat_folded), expected_calls(), "seed {seed}");
        assert_eq!(chat_folded.usage.unwrap().total_tokens(), 12);
    }
}

/// Chat chunks for `TEXT` then `CALLS`, fragments interleaved at random.
fn random_chat_stream(rng: &mut fastrand::Rng) -> Vec<Frame> {
    let chunk = |delta: Value, finish: Option<&str>| Frame {
        event: None,
        data: Data::Json(json!({
            "id": "chatcmpl-r", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })),
    };
    let mut frames = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
    for piece in split_anywhere(rng, TEXT, 6) {
        frames.push(chunk(json!({ "content": piece }), None));
    }
    let mut queues: Vec<Vec<Value>> = CALLS
        .iter()
        .enumerate()
        .map(|(index, (id, name, arguments))| {
            let mut fragments = vec![json!({"index": index, "id": id, "type": "function",
                                              "function": {"name": name, "arguments": ""}})];
            fragments.extend(
                split_anywhere(rng, arguments, 10)
                    .into_iter()
                    .map(|piece| json!({"index": index, "function": {"arguments": piece}})),
            );
            fragments
        })
        .collect();
    while queues.iter().any(|q| !q.is_empty()) {
        let open: Vec<usize> = (0..queues.len())
            .filter(|i| !queues[*i].is_empty())
            .collect();
        let pick = open[rng.usize(..open.len())];
        let fragment = queues[pick].remove(0);
        frames.push(chunk(json!({ "tool_calls": [fragment] }), None));
    }
    frames.push(chunk(json!({}), Some("tool_calls")));
    frames.push(Frame {
        event: None,
        data: Data::Literal("[DONE]".into()),
    });
    frames
}

#[test]
fn interleaved_chat_tool_calls_reach_a_responses_client_one_after_another() {
    for seed in 0..200 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let frames = random_chat_stream(&mut rng);
        let events = chat_upstream(&frames);
        let upstream = fold(&events).unwrap();
        let mut calls = calls_of(&upstream);
        calls.sort();
        let mut expected = expected_calls();
        expected.sort();
        assert_eq!(calls, expected, "seed {seed}");

        let client = to_responses_client(&events, &ClientOptions::default());
        check_client_stream(&client).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let again = fold(&responses_upstream(&client)).unwrap();
        assert_eq!(calls_of(&again), calls_of(&upstream), "seed {seed}");
        assert_eq!(again.text(), TEXT, "seed {seed}");
    }
}

#[test]
fn a_lax_upstream_that_skips_deltas_or_items_says_everything_once() {
    let msg = json!({"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
                     "content": [{"type": "output_text", "text": "Hello there", "annotations": []}]});
    let call = json!({"id": "fc_1", "type": "function_call", "status": "completed",
                      "call_id": "call_1", "name": "f", "arguments": "{\"a\":1}"});
    // Only finished items, no deltas.
    let only_done = vec![
        created("resp_1"),
        event(
            "response.output_item.done",
            json!({"output_index": 0, "item": msg}),
        ),
        event(
            "response.output_item.done",
            json!({"output_index": 1, "item": call}),
        ),
        completed("resp_1", json!([msg, call])),
    ];
    // Deltas for an item never announced, then its finished form.
    let unannounced = vec![
        created("resp_1"),
        event(
            "response.output_text.delta",
            json!({"item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "Hello "}),
        ),
        event(
            "response.output_text.delta",
            json!({"item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "there"}),
        ),
        event(
            "response.output_item.done",
            json!({"output_index": 0, "item": msg}),
        ),
        event(
            "response.output_item.done",
            json!({"output_index": 1, "item": call}),
        ),
        completed("resp_1", json!([msg, call])),
    ];
    // Nothing streamed at all: everything is in the final response, which some servers
    // send as `response.done`, followed by a `[DONE]` line.
    let mut only_final = vec![created("resp_1"), completed("resp_1", json!([msg, call]))];
    if let Data::Json(value) = &mut only_final[1].data {
        value["type"] = json!("response.done");
    }
    only_final.push(Frame {
        event: None,
        data: Data::Literal("[DONE]".into()),
    });
    for (what, frames) in [
        ("only done", only_done),
        ("unannounced", unannounced),
        ("only final", only_final),
    ] {
        let events = responses_upstream(&frames);
        let folded = fold(&events).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(folded.text(), "Hello there", "{what}");
        assert_eq!(
            calls_of(&folded),
            vec![("call_1".into(), "f".into(), "{\"a\":1}".into())],
            "{what}"
        );
        assert_eq!(folded.finish, Some(FinishReason::ToolUse), "{what}");
        let client = to_responses_client(&events, &ClientOptions::default());
        check_client_stream(&client).unwrap_or_else(|e| panic!("{what}: {e}"));
    }
}

#[test]
fn an_error_before_anything_else_still_ends_with_response_failed() {
    let error: Error = ErrorKind::Upstream {
        backend: "openai".into(),
        status: 400,
        message: "maximum context length exceeded".into(),
        error_type: Some("invalid_request_error".into()),
        code: Some("context_length_exceeded".into()),
        retry_after: None,
    }
    .into();
    let client = to_responses_client(&[Event::Error(error)], &ClientOptions::default());
    check_client_stream(&client).unwrap();
    let names: Vec<&str> = client
        .iter()
        .map(|f| f.json()["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "error",
            "response.failed"
        ]
    );
    let failed = &client[3].json()["response"];
    // Codex reads this code to tell a full context window from other failures.
    assert_eq!(failed["error"]["code"], "context_length_exceeded");
    assert!(failed["id"].as_str().unwrap().starts_with("resp_"));
}

#[test]
fn text_after_a_chat_tool_call_ends_the_call_first() {
    let chunk = |delta: Value, finish: Option<&str>| Frame {
        event: None,
        data: Data::Json(json!({
            "id": "chatcmpl-t", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })),
    };
    let frames = vec![
        chunk(json!({"role": "assistant", "content": "Calling."}), None),
        chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                      "function": {"name": "f", "arguments": "{\"a\":1}"}}]}),
            None,
        ),
        chunk(json!({"content": " Done."}), None),
        chunk(json!({}), Some("tool_calls")),
    ];
    let events = chat_upstream(&frames);
    let client = to_responses_client(&events, &ClientOptions::default());
    check_client_stream(&client).unwrap();
    let done: Vec<String> = client
        .iter()
        .filter(|f| f.json()["type"] == "response.output_item.done")
        .map(|f| f.json()["item"]["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(done, ["message", "function_call", "message"]);
}

/// Events as an Anthropic back-end gives them: signed thinking, redacted thinking, text,
/// then calls that each end before the next starts.
#[test]
fn signed_and_redacted_thinking_reach_a_responses_client_as_reasoning_items() {
    let events = vec![
        Event::Start {
            id: "msg_01A".into(),
            model: "claude-sonnet-4-5".into(),
            created: Some(1),
            extensions: Default::default(),
        },
        Event::ThinkingDelta {
            text: "Let me think.".into(),
            signature: None,
        },
        Event::ThinkingDelta {
            text: String::new(),
            signature: Some("EqQBCkgIARABGAIiQL".into()),
        },
        Event::RedactedThinking("EmwKAhgBEgy3va".into()),
        Event::TextDelta("Checking.".into()),
        Event::ToolCallStart {
            index: 0,
            id: "toolu_01".into(),
            name: "get_weather".into(),
        },
        Event::ToolCallArgsDelta {
            index: 0,
            arguments: "{\"city\":\"Paris\"}".into(),
        },
        Event::ToolCallEnd { index: 0 },
        Event::Usage(llmux::model::Usage {
            input_tokens: 10,
            output_tokens: 20,
            cache_creation_input_tokens: Some(4),
            ..Default::default()
        }),
        Event::Finish {
            reason: FinishReason::ToolUse,
            stop_sequence: None,
        },
    ];
    let client = to_responses_client(&events, &ClientOptions::default());
    check_client_stream(&client).unwrap();
    let completed = &client.last().unwrap().json()["response"];
    let output = completed["output"].as_array().unwrap();
    assert_eq!(output.len(), 4);
    assert_eq!(output[0]["type"], "reasoning");
    assert_eq!(output[0]["summary"][0]["text"], "Let me think.");
    assert_eq!(output[0]["encrypted_content"], "EqQBCkgIARABGAIiQL");
    assert_eq!(output[1]["encrypted_content"], "EmwKAhgBEgy3va");
    assert_eq!(output[1]["summary"], json!([]));
    assert_eq!(output[3]["call_id"], "toolu_01");
    assert_eq!(output[3]["id"], "fc_msg_01A_3");
    assert_eq!(
        completed["usage"]["input_tokens_details"]["cache_write_tokens"],
        4
    );

    // Codex sends the items back next turn; the signature returns as the thinking part's.
    let replay = json!({"model": "m", "input": [
        {"role": "user", "content": "weather?"},
        output[0].clone(), output[2].clone(), output[3].clone(),
        {"type": "function_call_output", "call_id": "toolu_01", "output": "sunny"},
    ]});
    let (request, _) = decode_request(replay.to_string().as_bytes()).unwrap();
    assert!(matches!(
        &request.messages[1].parts[0],
        Part::Thinking { text, signature: Some(s), .. } if text == "Let me think." && s == "EqQBCkgIARABGAIiQL"
    ));
    let folded = fold(&events).unwrap();
    let body = encode_response(&folded, &ClientOptions::default()).to_value();
    assert_eq!(body["output"], completed["output"]);
}

/// The client's tools are echoed as it sent them (written from their text), unless a
/// Responses upstream answered with its own `tools`, which then win, as every other echoed
/// field the upstream repeats does.
#[test]
fn an_upstreams_own_tools_replace_the_client_tools_echoed() {
    let client_tools = json!([{"type": "function", "name": "client_tool", "parameters": {}}]);
    let body = json!({"model": "m", "input": "hi", "tools": client_tools});
    let (_, options) = decode_request(body.to_string().as_bytes()).unwrap();
    let response = |tools: Option<Value>| {
        let mut upstream = json!({"id": "resp_1", "object": "response", "created_at": 1,
            "status": "completed", "model": "m", "output": [{"type": "message", "id": "msg_1",
            "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": "hi", "annotations": []}]}]});
        if let Some(tools) = tools {
            upstream["tools"] = tools;
        }
        let events = decode_response(upstream.to_string().as_bytes()).unwrap();
        encode_response(&fold(&events).unwrap(), &options).to_value()
    };
    assert_eq!(response(None)["tools"], client_tools);
    let upstream_tools = json!([{"type": "function", "name": "upstream_tool"}]);
    assert_eq!(
        response(Some(upstream_tools.clone()))["tools"],
        upstream_tools
    );
}
