//! Every client request among the protocol fixtures (`tests/fixtures/<protocol>/*/request.json`),
//! whole and streamed, through the whole app in process (`Router::oneshot`: a socket adds
//! nothing here), to the built-in mock back-end, which calls the first tool when a request
//! offers tools. Each answer must be one its client can read: a 200 that the protocol's own
//! decoder (the one llmux's back-ends use) reads to the end without an error, or a 4xx in the
//! protocol's error shape. The protocol tests check the exact bytes; this checks that every
//! kind of request the fixtures hold makes it through decoding, the pipeline and encoding.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/fixtures.rs"]
mod fixtures;
mod support;

use std::net::SocketAddr;

use axum::body::Body;
use fixtures::{case_dirs, read_json};
use http_body_util::BodyExt;
use llmux::backend::http::decode_frames;
use llmux::backend::{anthropic::AnthropicWire, gemini::GeminiWire, openai};
use llmux::frontend::ClientAddr;
use llmux::model::{Event, ResponseBuilder};
use llmux::protocol;
use serde_json::{Value, json};
use tower::ServiceExt;

const PROTOCOLS: [&str; 4] = ["openai_chat", "openai_responses", "anthropic", "gemini"];

/// The request of `protocol` for `body`: its path, and the body as sent (the model set to
/// the mock's, streaming as asked).
fn request_for(protocol: &str, mut body: Value, stream: bool) -> (String, Value) {
    let model = "mock:mock-model";
    if protocol == "gemini" {
        let path = if stream {
            format!("/v1beta/models/{model}:streamGenerateContent?alt=sse")
        } else {
            format!("/v1beta/models/{model}:generateContent")
        };
        return (path, body);
    }
    body["model"] = json!(model);
    body["stream"] = json!(stream);
    let path = match protocol {
        "openai_responses" => "/v1/responses",
        "anthropic" => "/v1/messages",
        _ => "/v1/chat/completions",
    };
    (path.to_owned(), body)
}

/// SSE text as `(event, data)` frames.
fn frames(text: &str) -> Vec<(String, String)> {
    text.split("\n\n")
        .filter_map(|block| {
            let mut event = String::new();
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event:") {
                    event = name.trim().to_owned();
                } else if let Some(payload) = line.strip_prefix("data:") {
                    data.push(payload.trim_start().to_owned());
                }
            }
            (!data.is_empty()).then(|| (event, data.join("\n")))
        })
        .collect()
}

/// The events a client of `protocol` reads from a 200 answer, or why it cannot.
fn read_answer(protocol: &str, stream: bool, body: &[u8]) -> Result<Vec<Event>, String> {
    let text = String::from_utf8_lossy(body);
    let events = if stream {
        let frames = frames(&text);
        match protocol {
            "openai_responses" => decode_frames(&openai::ResponsesWire, "llmux", &frames),
            "anthropic" => decode_frames(&AnthropicWire, "llmux", &frames),
            "gemini" => decode_frames(&GeminiWire, "llmux", &frames),
            _ => decode_frames(&openai::ChatWire, "llmux", &frames),
        }
    } else {
        match protocol {
            "openai_responses" => protocol::openai_responses::decode_response(body),
            "anthropic" => protocol::anthropic::decode_response(body),
            "gemini" => protocol::gemini::decode_response(body),
            _ => protocol::openai_chat::decode_response(body),
        }
        .map_err(|e| format!("does not decode: {e:?}\n{text}"))?
    };
    let mut folded = ResponseBuilder::new();
    for event in &events {
        folded
            .push(event.clone())
            .map_err(|e| format!("reads as an error: {e}\n{text}"))?;
    }
    let said_something = events.iter().any(|e| {
        matches!(e, Event::TextDelta(t) if !t.is_empty())
            || matches!(e, Event::ToolCallStart { .. })
    });
    if !said_something {
        return Err(format!("holds neither text nor a tool call\n{text}"));
    }
    Ok(events)
}

/// Whether `body` is an error in `protocol`'s shape.
fn is_error_shape(protocol: &str, body: &Value) -> bool {
    let message = |error: &Value| error["message"].as_str().is_some_and(|m| !m.is_empty());
    match protocol {
        "anthropic" => body["type"] == "error" && message(&body["error"]),
        "gemini" => message(&body["error"]) && body["error"]["code"].is_u64(),
        _ => message(&body["error"]),
    }
}

#[tokio::test]
async fn every_fixture_request_is_answered_in_its_own_protocol() {
    let config = support::config("default_backend = \"mock\"\n", &[]);
    let engine =
        llmux::Engine::new(config, &llmux::credentials::EnvSecrets::new(|_| None)).unwrap();
    let (app, _) = llmux::frontend::apps(&engine);
    let mut failures = Vec::new();
    let mut answered = 0;
    for protocol in PROTOCOLS {
        for case in case_dirs(protocol) {
            let Some(body) = read_json(&case.join("request.json")).unwrap() else {
                continue;
            };
            let name = format!("{protocol}/{}", case.file_name().unwrap().to_string_lossy());
            for stream in [false, true] {
                let (path, body) = request_for(protocol, body.clone(), stream);
                let mut request = axum::http::Request::post(&path)
                    .header("host", "localhost")
                    .header("content-type", "application/json")
                    .body(Body::from(body.to_string()))
                    .unwrap();
                let peer = SocketAddr::from(([127, 0, 0, 1], 40000));
                request.extensions_mut().insert(ClientAddr(peer));
                let response = app.clone().oneshot(request).await.unwrap();
                let status = response.status().as_u16();
                let bytes = response.into_body().collect().await.unwrap().to_bytes();
                let outcome = if status == 200 {
                    read_answer(protocol, stream, &bytes).map(|_| ())
                } else {
                    let error: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                    if (400..500).contains(&status) && is_error_shape(protocol, &error) {
                        Ok(())
                    } else {
                        Err(format!("{status} {}", String::from_utf8_lossy(&bytes)))
                    }
                };
                answered += 1;
                if let Err(why) = outcome {
                    failures.push(format!("{name} stream={stream}: {why}"));
                }
            }
        }
    }
    assert!(answered >= 80, "only {answered} fixture requests found");
    assert!(
        failures.is_empty(),
        "{} of {answered} answers a client could not read:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
