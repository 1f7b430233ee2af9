#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Fixture tests for the OpenAI Chat Completions protocol (`src/protocol/openai_chat`).
//!
//! Every folder under `tests/fixtures/openai_chat/` is one case (see the README there).
//! One test walks them all and proves that a same-protocol round trip loses nothing:
//! - `request.json` -> `decode_request` -> `encode_request` == `upstream_request.json`
//! - `response.json` -> `decode_response` -> `ResponseBuilder` -> `encode_response`
//!   == `expected_response.json`
//! - `upstream.sse` -> `ChunkDecoder` -> `ChunkEncoder` == `expected.sse`
//!
//! Values are compared as JSON (key order does not matter); a failure names the case and
//! lists each differing path, then prints the whole actual value for a diff tool.
//!
//! The other tests re-chunk upstream streams at arbitrary points (tool-call arguments
//! split anywhere, parallel calls interleaved, text split inside multi-byte characters'
//! neighbours) and check that the folded result does not depend on the chunking.

use std::fmt::Write as _;
use std::path::Path;

use llmux::model::{Event, FinishReason, Part, Response, ResponseBuilder};
use llmux::protocol::openai_chat::{
    ChunkDecoder, ChunkEncoder, decode_request, decode_response, encode_request, encode_response,
};
use serde_json::{Value, json};

#[path = "support/fixtures.rs"]
mod fixtures;
#[path = "support/json_diff.rs"]
mod json_diff;
use fixtures::{check_cases, read_json, read_sse_data, require};
use json_diff::{compare_json, diff};

/// The fixture set under tests/fixtures.
const FIXTURES: &str = "openai_chat";

// ---------------------------------------------------------------------------------------
// Diff-friendly comparison

/// One stream frame: a JSON value, or a literal like `[DONE]`.
#[derive(Debug, PartialEq)]
enum Frame {
    Json(Value),
    Literal(String),
}

impl Frame {
    fn parse(payload: &str) -> Frame {
        match serde_json::from_str(payload) {
            Ok(value) => Frame::Json(value),
            Err(_) => Frame::Literal(payload.to_owned()),
        }
    }

    fn show(&self) -> String {
        match self {
            Frame::Json(value) => format!("data: {value}"),
            Frame::Literal(text) => format!("data: {text}"),
        }
    }
}

fn compare_frames(expected: &[Frame], actual: &[Frame]) -> Result<(), String> {
    let mut differences = Vec::new();
    for (i, (e, a)) in expected.iter().zip(actual).enumerate() {
        match (e, a) {
            (Frame::Json(e), Frame::Json(a)) => {
                diff(&format!("frame[{i}]"), e, a, &mut differences)
            }
            _ if e != a => differences.push(format!(
                "frame[{i}]: expected {}, got {}",
                e.show(),
                a.show()
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
    let mut text = format!(
        "stream differs:\n  {}\nactual stream:\n",
        differences.join("\n  ")
    );
    for frame in actual {
        let _ = writeln!(text, "{}\n", frame.show());
    }
    Err(text)
}

// ---------------------------------------------------------------------------------------
// The three round trips

fn check_request(case: &Path) -> Result<bool, String> {
    let Some(request) = read_json(&case.join("request.json"))? else {
        return Ok(false);
    };
    let expected = require(case, "upstream_request.json")?;
    let body = serde_json::to_vec(&request).unwrap();
    let (decoded, _options) =
        decode_request(&body).map_err(|e| format!("decode_request failed: {e}"))?;
    let model = request["model"]
        .as_str()
        .ok_or("request.json has no model")?;
    let actual = encode_request(&decoded, model);
    compare_json("upstream request", &expected, &actual)?;
    Ok(true)
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

fn check_response(case: &Path) -> Result<bool, String> {
    let Some(response) = read_json(&case.join("response.json"))? else {
        return Ok(false);
    };
    let expected = require(case, "expected_response.json")?;
    let body = serde_json::to_vec(&response).unwrap();
    let events = decode_response(&body).map_err(|e| format!("decode_response failed: {e:?}"))?;
    let actual = encode_response(&fold(events)?);
    compare_json("client response", &expected, &actual)?;
    Ok(true)
}

/// Whether the client asked for the usage chunk (`stream_options.include_usage`).
fn include_usage(case: &Path) -> Result<bool, String> {
    Ok(read_json(&case.join("request.json"))?
        .and_then(|r| r.pointer("/stream_options/include_usage").cloned())
        .and_then(|v| v.as_bool())
        .unwrap_or(false))
}

/// Decodes upstream payloads and re-encodes them for the client, as the proxy does.
fn relay(payloads: &[String], include_usage: bool) -> Result<(Vec<Event>, Vec<Frame>), String> {
    let mut decoder = ChunkDecoder::new();
    let mut encoder = ChunkEncoder::new(include_usage);
    let mut all_events = Vec::new();
    let mut out = Vec::new();
    for (i, payload) in payloads.iter().enumerate() {
        let mut events = Vec::new();
        decoder
            .push(payload, &mut events)
            .map_err(|e| format!("ChunkDecoder rejected upstream frame {i}: {e:?}"))?;
        for event in events {
            all_events.push(event.clone());
            encoder.push(event, &mut out);
        }
    }
    decoder
        .finish()
        .map_err(|e| format!("ChunkDecoder::finish: {e:?}"))?;
    encoder.finish(&mut out);
    let frames = out
        .iter()
        .map(|bytes| {
            let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
            let payload = text
                .strip_prefix("data: ")
                .and_then(|t| t.strip_suffix("\n\n"))
                .ok_or_else(|| format!("not a `data: ...\\n\\n` frame: {text:?}"))?;
            Ok(Frame::parse(payload))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok((all_events, frames))
}

fn check_stream(case: &Path) -> Result<bool, String> {
    let Some(upstream) = read_sse_data(&case.join("upstream.sse"))? else {
        return Ok(false);
    };
    let expected: Vec<Frame> = read_sse_data(&case.join("expected.sse"))?
        .ok_or("missing expected.sse")?
        .iter()
        .map(|p| Frame::parse(p))
        .collect();
    let include_usage = include_usage(case)?;
    let (events, actual) = relay(&upstream, include_usage)?;
    compare_frames(&expected, &actual)?;

    // What the client got must fold to what upstream said.
    let client_payloads: Vec<String> = actual
        .iter()
        .map(|f| match f {
            Frame::Json(v) => v.to_string(),
            Frame::Literal(t) => t.clone(),
        })
        .collect();
    let (client_events, _) = relay(&client_payloads, include_usage)?;
    let upstream_folded = fold(events)?;
    let client_folded = fold(client_events)?;
    same_response(&upstream_folded, &client_folded, include_usage)
        .map_err(|e| format!("the client stream folds to a different response: {e}"))?;
    Ok(true)
}

fn same_response(a: &Response, b: &Response, with_usage: bool) -> Result<(), String> {
    let check = |what: &str, same: bool| {
        if same {
            Ok(())
        } else {
            Err(format!("{what} differs:\n{a:#?}\nvs\n{b:#?}"))
        }
    };
    check("id", a.id == b.id)?;
    check("model", a.model == b.model)?;
    check("created", a.created == b.created)?;
    check("parts", a.parts == b.parts)?;
    check("finish", a.finish == b.finish)?;
    if with_usage {
        check("usage", a.usage == b.usage)?;
    }
    Ok(())
}

#[test]
fn fixture_cases_round_trip() {
    check_cases(
        FIXTURES,
        10,
        &[
            ("request", check_request),
            ("response", check_response),
            ("stream", check_stream),
        ],
    );
}

// ---------------------------------------------------------------------------------------
// Re-chunking robustness

fn chunk(delta: Value, finish_reason: Option<&str>) -> String {
    json!({
        "id": "chatcmpl-rechunk",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-4.1",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    })
    .to_string()
}

/// Splits `text` into 1..=max_pieces pieces at random char boundaries.
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

struct Call {
    id: &'static str,
    name: &'static str,
    arguments: &'static str,
}

const CALLS: [Call; 3] = [
    Call {
        id: "call_paris",
        name: "get_weather",
        arguments: r#"{"location":"Paris, France","units":"celsius"}"#,
    },
    Call {
        id: "call_bogota",
        name: "get_weather",
        arguments: r#"{"location":"Bogotá, Colombia","note":"quote \" and \\ and \n newline"}"#,
    },
    Call {
        id: "call_mail",
        name: "send_email",
        arguments: r#"{"to":"bob@example.com","body":"Grüße 👋, see {\"a\":[1,2]}"}"#,
    },
];

const TEXT: &str = "Let me check the weather — für Paris, Bogotá 🌦 and mail Bob.";

/// A stream of `TEXT` then `CALLS`, with every string split at random points, the
/// calls' fragments interleaved at random, and several fragments sometimes in one chunk.
fn random_stream(rng: &mut fastrand::Rng) -> Vec<String> {
    let mut payloads = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
    for piece in split_anywhere(rng, TEXT, 8) {
        payloads.push(chunk(json!({ "content": piece }), None));
    }
    // Per call: the opening fragment (id, type, name, maybe some arguments), then the rest.
    let mut queues: Vec<Vec<Value>> = CALLS
        .iter()
        .enumerate()
        .map(|(index, call)| {
            let mut pieces = split_anywhere(rng, call.arguments, 12);
            let first = if rng.bool() {
                String::new()
            } else {
                pieces.remove(0)
            };
            let mut fragments = vec![json!({
                "index": index,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": first},
            })];
            fragments.extend(
                pieces
                    .into_iter()
                    .map(|p| json!({"index": index, "function": {"arguments": p}})),
            );
            fragments.reverse();
            fragments
        })
        .collect();
    // Calls open in index order (a call's opening fragment comes before the next call
    // opens); after that, fragments of open calls interleave.
    let mut opened = 0;
    while queues.iter().any(|q| !q.is_empty()) {
        let mut entries = Vec::new();
        let all_open_done = queues[..opened].iter().all(Vec::is_empty);
        if opened < queues.len() && (opened == 0 || all_open_done || rng.u8(..4) == 0) {
            entries.push(queues[opened].pop().unwrap());
            opened += 1;
        }
        for _ in 0..rng.usize(0..=2) {
            let live: Vec<usize> = (0..opened).filter(|i| !queues[*i].is_empty()).collect();
            if live.is_empty() {
                break;
            }
            let pick = live[rng.usize(..live.len())];
            entries.push(queues[pick].pop().unwrap());
        }
        if !entries.is_empty() {
            payloads.push(chunk(json!({ "tool_calls": entries }), None));
        }
    }
    payloads.push(chunk(json!({}), Some("tool_calls")));
    payloads.push("[DONE]".to_owned());
    payloads
}

fn assert_folds_to_the_original(response: &Response, seed: u64, side: &str) {
    assert_eq!(response.text(), TEXT, "seed {seed}, {side}: text");
    let calls: Vec<(&str, &str, &str)> = response
        .parts
        .iter()
        .filter_map(|p| match p {
            Part::ToolCall {
                id,
                name,
                arguments,
                ..
            } => Some((id.as_str(), name.as_str(), arguments.as_str())),
            _ => None,
        })
        .collect();
    let expected: Vec<(&str, &str, &str)> =
        CALLS.iter().map(|c| (c.id, c.name, c.arguments)).collect();
    assert_eq!(calls, expected, "seed {seed}, {side}: tool calls");
    assert_eq!(
        response.finish,
        Some(FinishReason::ToolUse),
        "seed {seed}, {side}: finish"
    );
}

#[test]
fn split_and_interleaved_tool_call_fragments_fold_to_the_same_calls() {
    for seed in 0..300 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let payloads = random_stream(&mut rng);
        let (events, frames) = relay(&payloads, false)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}\nstream: {payloads:#?}"));
        assert_folds_to_the_original(&fold(events).unwrap(), seed, "upstream");

        // The client stream, read back, says the same; and its own fragments keep each
        // call's arguments under the call's index.
        let client: Vec<String> = frames
            .iter()
            .map(|f| match f {
                Frame::Json(v) => v.to_string(),
                Frame::Literal(t) => t.clone(),
            })
            .collect();
        assert_eq!(client.last().map(String::as_str), Some("[DONE]"));
        let (client_events, _) = relay(&client, false).unwrap();
        assert_folds_to_the_original(&fold(client_events).unwrap(), seed, "client");
        let mut per_index = vec![String::new(); CALLS.len()];
        for frame in &frames {
            let Frame::Json(frame) = frame else { continue };
            for call in frame
                .pointer("/choices/0/delta/tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let index = call["index"].as_u64().unwrap() as usize;
                per_index[index].push_str(call["function"]["arguments"].as_str().unwrap());
            }
        }
        let expected: Vec<&str> = CALLS.iter().map(|c| c.arguments).collect();
        assert_eq!(
            per_index, expected,
            "seed {seed}: client arguments by index"
        );
    }
}

#[test]
fn text_split_at_every_boundary_folds_to_the_same_text() {
    let text = "héllo 🌍 — ok";
    let boundaries: Vec<usize> = (1..text.len())
        .filter(|i| text.is_char_boundary(*i))
        .collect();
    for &cut in &boundaries {
        let payloads = vec![
            chunk(json!({"role": "assistant", "content": ""}), None),
            chunk(json!({"content": &text[..cut]}), None),
            chunk(json!({"content": &text[cut..]}), None),
            chunk(json!({}), Some("stop")),
            "[DONE]".to_owned(),
        ];
        let (events, frames) = relay(&payloads, false).unwrap();
        let response = fold(events).unwrap();
        assert_eq!(response.text(), text, "cut at {cut}");
        assert_eq!(response.finish, Some(FinishReason::EndTurn));
        assert_eq!(
            frames.len(),
            5,
            "cut at {cut}: one frame per upstream chunk"
        );
    }
}

#[test]
fn a_whole_stream_in_one_chunk_still_opens_and_closes() {
    // Some OpenAI-compatible servers send everything at once: role, text, a complete
    // tool call and the finish reason in the same chunk.
    let payload = json!({
        "id": "chatcmpl-one", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": {
            "role": "assistant", "content": "Checking.",
            "tool_calls": [{"index": 0, "id": "call_A", "type": "function",
                            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]
        }, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
    })
    .to_string();
    let (events, frames) = relay(&[payload, "[DONE]".to_owned()], true).unwrap();
    let response = fold(events).unwrap();
    assert_eq!(response.text(), "Checking.");
    assert!(response.has_tool_calls());
    assert_eq!(response.usage.as_ref().map(|u| u.total_tokens()), Some(12));
    let last_two: Vec<&Frame> = frames.iter().rev().take(2).collect();
    assert_eq!(last_two[0], &Frame::Literal("[DONE]".into()));
    let Frame::Json(usage_chunk) = last_two[1] else {
        panic!("expected the usage chunk before [DONE]")
    };
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["total_tokens"], json!(12));
}
