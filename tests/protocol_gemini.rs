#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Fixture and golden tests for the Gemini protocol (`src/protocol/gemini`).
//!
//! Every folder under `tests/fixtures/gemini/` is one case (see the README there). One test
//! walks them all and proves that a same-protocol round trip loses nothing:
//! - `request.json` -> `decode_request` -> `encode_request` == `upstream_request.json`
//! - `response.json` -> `decode_response` -> `ResponseBuilder` -> `encode_response`
//!   == `expected_response.json`
//! - `upstream.sse` -> `ChunkDecoder` -> `ChunkEncoder` (SSE) == `expected.sse`; the same
//!   events as a streamed JSON array give the same records and valid JSON; what the client
//!   gets folds to what upstream said.
//!
//! The golden tests translate at the protocol level, Gemini <-> OpenAI chat, through the
//! canonical model only, and assert the exact JSON each side gets.

use std::fmt::Write as _;
use std::path::Path;

use bytes::Bytes;
use llmux::model::{Event, FinishReason, Part, Response, ResponseBuilder};
use llmux::protocol::gemini::{
    self, ChunkDecoder, ChunkEncoder, JsonArraySplitter, StreamFormat, decode_request,
    decode_response, encode_request, encode_response,
};
use llmux::protocol::openai_chat;
use serde_json::{Value, json};

#[path = "support/fixtures.rs"]
mod fixtures;
#[path = "support/json_diff.rs"]
mod json_diff;
use fixtures::{check_cases, fixtures_dir, read_json, read_sse_data, require};
use json_diff::{compare_json, diff};

/// The fixture set under tests/fixtures.
const FIXTURES: &str = "gemini";

/// The model every fixture request is decoded and encoded for.
const MODEL: &str = "gemini-2.5-flash";

// ---------------------------------------------------------------------------------------
// Diff-friendly comparison

fn compare_records(what: &str, expected: &[Value], actual: &[Value]) -> Result<(), String> {
    let mut differences = Vec::new();
    for (i, (e, a)) in expected.iter().zip(actual).enumerate() {
        diff(&format!("record[{i}]"), e, a, &mut differences);
    }
    if expected.len() != actual.len() {
        differences.push(format!(
            "expected {} records, got {}",
            expected.len(),
            actual.len()
        ));
    }
    if differences.is_empty() {
        return Ok(());
    }
    let mut text = format!("{what} differs:\n  {}\nactual:\n", differences.join("\n  "));
    for record in actual {
        let _ = writeln!(text, "data: {record}\n");
    }
    Err(text)
}

#[track_caller]
fn assert_json(what: &str, expected: &Value, actual: &Value) {
    if let Err(e) = compare_json(what, expected, actual) {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------------------------
// Stream helpers

fn fold(events: Vec<Event>) -> Result<Response, String> {
    let mut builder = ResponseBuilder::new();
    for event in events {
        builder
            .push(event)
            .map_err(|e| format!("fold failed: {e}"))?;
    }
    Ok(builder.finish())
}

/// Decodes upstream Gemini payloads into events.
fn decode_stream(payloads: &[String]) -> Result<Vec<Event>, String> {
    let mut decoder = ChunkDecoder::new();
    let mut events = Vec::new();
    for (i, payload) in payloads.iter().enumerate() {
        decoder
            .push(payload, &mut events)
            .map_err(|e| format!("ChunkDecoder rejected record {i}: {e:?}"))?;
    }
    decoder
        .finish()
        .map_err(|e| format!("ChunkDecoder::finish: {e:?}"))?;
    Ok(events)
}

/// Encodes events for a Gemini client in `format`; returns the raw frames.
fn encode_stream(events: &[Event], format: StreamFormat) -> Vec<Bytes> {
    let mut encoder = ChunkEncoder::new(format);
    let mut out = Vec::new();
    for event in events {
        encoder.push(event.clone(), &mut out);
    }
    encoder.finish(&mut out);
    out
}

/// The JSON records of SSE frames (each must be exactly `data: ...\n\n`).
fn sse_records(frames: &[Bytes]) -> Result<Vec<Value>, String> {
    frames
        .iter()
        .map(|bytes| {
            let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
            let payload = text
                .strip_prefix("data: ")
                .and_then(|t| t.strip_suffix("\n\n"))
                .ok_or_else(|| format!("not a `data: ...\\n\\n` frame: {text:?}"))?;
            serde_json::from_str(payload).map_err(|e| format!("{e}: {payload}"))
        })
        .collect()
}

/// The records of a streamed JSON array, which must be valid JSON once complete.
fn array_records(frames: &[Bytes]) -> Result<Vec<Value>, String> {
    let body: Vec<u8> = frames.iter().flat_map(|b| b.to_vec()).collect();
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(records)) => Ok(records),
        Ok(other) => Err(format!("the array stream is not an array: {other}")),
        Err(e) => Err(format!(
            "the array stream is not valid JSON ({e}):\n{}",
            String::from_utf8_lossy(&body)
        )),
    }
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
    check("usage", a.usage == b.usage)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The three round trips

fn check_request(case: &Path) -> Result<bool, String> {
    let Some(request) = read_json(&case.join("request.json"))? else {
        return Ok(false);
    };
    let expected = require(case, "upstream_request.json")?;
    let body = serde_json::to_vec(&request).unwrap();
    let decoded = decode_request(&body, MODEL).map_err(|e| format!("decode_request: {e}"))?;
    let actual = encode_request(&decoded, MODEL).map_err(|e| format!("encode_request: {e}"))?;
    compare_json("upstream request", &expected, &actual)?;
    Ok(true)
}

fn check_response(case: &Path) -> Result<bool, String> {
    let Some(response) = read_json(&case.join("response.json"))? else {
        return Ok(false);
    };
    let expected = require(case, "expected_response.json")?;
    let body = serde_json::to_vec(&response).unwrap();
    let events = decode_response(&body).map_err(|e| format!("decode_response: {e:?}"))?;
    let actual = encode_response(&fold(events)?);
    compare_json("client response", &expected, &actual)?;
    Ok(true)
}

fn check_stream(case: &Path) -> Result<bool, String> {
    let Some(upstream) = read_sse_data(&case.join("upstream.sse"))? else {
        return Ok(false);
    };
    let expected: Vec<Value> = read_sse_data(&case.join("expected.sse"))?
        .ok_or("missing expected.sse")?
        .iter()
        .map(|p| serde_json::from_str(p).map_err(|e| format!("expected.sse: {e}")))
        .collect::<Result<_, _>>()?;
    let events = decode_stream(&upstream)?;
    let sse = sse_records(&encode_stream(&events, StreamFormat::Sse))?;
    compare_records("SSE stream", &expected, &sse)?;
    let array = array_records(&encode_stream(&events, StreamFormat::JsonArray))?;
    compare_records("JSON-array stream", &expected, &array)?;

    // What the client got must fold to what upstream said.
    let client: Vec<String> = sse.iter().map(Value::to_string).collect();
    let client_events = decode_stream(&client)?;
    same_response(&fold(events)?, &fold(client_events)?)
        .map_err(|e| format!("the client stream folds to a different response: {e}"))?;
    Ok(true)
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
// Re-chunking: the streamed JSON array read back in arbitrary pieces

#[test]
fn array_streams_split_anywhere_fold_to_the_same_response() {
    for case in [
        "thinking_stream",
        "function_calling_stream",
        "unknown_fields_stream",
    ] {
        let upstream = read_sse_data(&fixtures_dir(FIXTURES).join(case).join("upstream.sse"))
            .unwrap()
            .unwrap();
        let events = decode_stream(&upstream).unwrap();
        let body: Vec<u8> = encode_stream(&events, StreamFormat::JsonArray)
            .iter()
            .flat_map(|b| b.to_vec())
            .collect();
        let expected = fold(events).unwrap();
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..50 {
            let mut splitter = JsonArraySplitter::new();
            let mut records = Vec::new();
            let mut rest = &body[..];
            while !rest.is_empty() {
                let take = rng.usize(1..=rest.len().min(40));
                splitter.push(&rest[..take], &mut records).unwrap();
                rest = &rest[take..];
            }
            splitter.finish().unwrap();
            let client = fold(decode_stream(&records).unwrap()).unwrap();
            same_response(&expected, &client).unwrap_or_else(|e| panic!("{case}: {e}"));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Golden cross-protocol tests: Gemini <-> OpenAI chat through the model

fn gemini_to_chat(gemini_body: Value, chat_model: &str) -> Value {
    let request = decode_request(gemini_body.to_string().as_bytes(), "gemini-2.5-flash").unwrap();
    openai_chat::encode_request(&request, chat_model)
}

fn chat_to_gemini(chat_body: Value, gemini_model: &str) -> Value {
    let (request, _) = openai_chat::decode_request(chat_body.to_string().as_bytes()).unwrap();
    encode_request(&request, gemini_model).unwrap()
}

#[test]
fn golden_plain_text_gemini_to_chat() {
    let chat = gemini_to_chat(
        json!({
            "systemInstruction": {"parts": [{"text": "You are a cat."}, {"text": "Answer in one line."}]},
            "contents": [
                {"role": "user", "parts": [{"text": "Hello"}]},
                {"role": "model", "parts": [{"text": "Meow."}]},
                {"role": "user", "parts": [{"text": "What is your name?"}]},
            ],
            "generationConfig": {"temperature": 0.5, "topP": 0.9, "topK": 40, "maxOutputTokens": 100,
                                 "stopSequences": ["END"], "candidateCount": 1},
            "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        }),
        "gpt-4.1",
    );
    assert_json(
        "chat request",
        &json!({
            "model": "gpt-4.1",
            "messages": [
                {"role": "system", "content": "You are a cat.\n\nAnswer in one line."},
                {"role": "user", "content": "Hello"},
                {"role": "assistant", "content": "Meow."},
                {"role": "user", "content": "What is your name?"},
            ],
            "temperature": 0.5,
            "top_p": 0.9,
            "max_tokens": 100,
            "stop": "END",
        }),
        &chat,
    );
}

#[test]
fn golden_plain_text_chat_to_gemini() {
    let gemini = chat_to_gemini(
        json!({
            "model": "gpt-4.1",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "developer", "content": "Use British spelling."},
                {"role": "user", "content": [{"type": "text", "text": "What colour is the sky?"}]},
            ],
            "temperature": 0.2,
            "max_completion_tokens": 50,
            "stop": ["\n\n"],
            "seed": 7,
            "logit_bias": {"50256": -100},
            "user": "user-1234",
        }),
        "gemini-2.5-flash",
    );
    assert_json(
        "gemini request",
        &json!({
            "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Use British spelling."}]},
            "contents": [
                {"role": "user", "parts": [{"text": "Hi"}]},
                {"role": "model", "parts": [{"text": "Hello!"}]},
                {"role": "user", "parts": [{"text": "What colour is the sky?"}]},
            ],
            "generationConfig": {"temperature": 0.2, "maxOutputTokens": 50, "stopSequences": ["\n\n"], "seed": 7},
        }),
        &gemini,
    );
}

#[test]
fn golden_tools_and_results_gemini_to_chat() {
    let chat = gemini_to_chat(
        json!({
            "contents": [
                {"role": "user", "parts": [{"text": "Weather in Paris and Rome?"}]},
                {"role": "model", "parts": [
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2ln"},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Rome", "units": "celsius"}}},
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"output": "18C, cloudy"}}},
                    {"functionResponse": {"name": "get_weather", "response": {"temp": 24, "sky": "clear"}}},
                ]},
            ],
            "tools": [
                {"functionDeclarations": [{
                    "name": "get_weather",
                    "description": "Current weather for a city.",
                    "parameters": {"type": "OBJECT", "properties": {
                        "city": {"type": "STRING"},
                        "units": {"type": "STRING", "enum": ["celsius", "fahrenheit"], "nullable": true},
                    }, "required": ["city"]},
                }]},
                {"googleSearch": {}},
            ],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
        }),
        "gpt-4.1",
    );
    assert_json(
        "chat request",
        &json!({
            "model": "gpt-4.1",
            "messages": [
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "gemini_call_1_0", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "gemini_call_1_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\",\"units\":\"celsius\"}"}},
                ]},
                {"role": "tool", "tool_call_id": "gemini_call_1_0", "content": "18C, cloudy"},
                {"role": "tool", "tool_call_id": "gemini_call_1_1", "content": "{\"temp\":24,\"sky\":\"clear\"}"},
            ],
            "tools": [{"type": "function", "function": {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "parameters": {"type": "object", "properties": {
                    "city": {"type": "string"},
                    "units": {"type": ["string", "null"], "enum": ["celsius", "fahrenheit", null]},
                }, "required": ["city"]},
            }}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        }),
        &chat,
    );
}

#[test]
fn golden_tools_and_results_chat_to_gemini() {
    let chat = json!({
        "model": "gpt-4.1",
        "messages": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "call_A", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_B", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}},
            ]},
            {"role": "tool", "tool_call_id": "call_A", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_B", "content": "{\"temp\":24}"},
            {"role": "user", "content": "Which is warmer?"},
        ],
        "tools": [{"type": "function", "function": {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "strict": true,
            "parameters": {
                "$schema": "http://json-schema.org/draft-07/schema#",
                "type": "object",
                "$defs": {"unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                "properties": {
                    "city": {"type": "string", "minLength": 1},
                    "units": {"anyOf": [{"$ref": "#/$defs/unit"}, {"type": "null"}]},
                    "days": {"type": "integer", "exclusiveMinimum": 0, "default": 1},
                },
                "required": ["city", "units", "days"],
                "additionalProperties": false,
            },
        }}],
        "tool_choice": "required",
        "parallel_tool_calls": true,
    });
    let expected_contents = json!([
        {"role": "user", "parts": [{"text": "Weather in Paris and Rome?"}]},
        {"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
            {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
        ]},
        {"role": "user", "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"output": "18C"}}},
            {"functionResponse": {"name": "get_weather", "response": {"temp": 24}}},
            {"text": "Which is warmer?"},
        ]},
    ]);
    let tools = json!([{"functionDeclarations": [{
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "minLength": 1},
                "units": {"type": "string", "enum": ["celsius", "fahrenheit"], "nullable": true},
                "days": {"type": "integer", "minimum": 1},
            },
            "required": ["city", "units", "days"],
        },
    }]}]);
    assert_json(
        "gemini request",
        &json!({
            "contents": expected_contents,
            "tools": tools,
            "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
        }),
        &chat_to_gemini(chat.clone(), "gemini-2.5-flash"),
    );

    // Gemini 3 validates thought signatures: the first call of the turn gets the
    // documented placeholder, since these calls were not made by Gemini.
    let gemini_3 = chat_to_gemini(chat.clone(), "gemini-3-pro-preview");
    assert_json(
        "gemini 3 model turn",
        &json!({"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
             "thoughtSignature": "skip_thought_signature_validator"},
            {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
        ]}),
        &gemini_3["contents"][1],
    );

    // With parametersJsonSchema the client's schema goes as it is.
    let (request, _) = openai_chat::decode_request(chat.to_string().as_bytes()).unwrap();
    let options = gemini::EncodeOptions {
        schema: gemini::SchemaMode::JsonSchema,
    };
    let body = gemini::encode_request_with(&request, "gemini-2.5-flash", options).unwrap();
    assert_eq!(
        body["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"],
        chat["tools"][0]["function"]["parameters"]
    );
}

#[test]
fn golden_images_both_ways() {
    let chat = gemini_to_chat(
        json!({"contents": [{"role": "user", "parts": [
            {"text": "What is in these images?"},
            {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
            {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.jpg"}},
            {"fileData": {"mimeType": "video/mp4", "fileUri": "https://www.youtube.com/watch?v=x"}},
        ]}]}),
        "gpt-4.1",
    );
    assert_json(
        "chat request",
        &json!({"model": "gpt-4.1", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is in these images?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        ]}]}),
        &chat,
    );

    let gemini = chat_to_gemini(
        json!({"model": "gpt-4.1", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Compare them."},
            {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ", "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/dog.webp?size=large"}},
        ]}]}),
        "gemini-2.5-flash",
    );
    assert_json(
        "gemini request",
        &json!({"contents": [{"role": "user", "parts": [
            {"text": "Compare them."},
            {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}},
            {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/dog.webp?size=large"}},
        ]}]}),
        &gemini,
    );
}

#[test]
fn golden_reasoning_both_ways() {
    let chat = gemini_to_chat(
        json!({
            "contents": [
                {"role": "user", "parts": [{"text": "2+2?"}]},
                {"role": "model", "parts": [
                    {"text": "Simple arithmetic.", "thought": true, "thoughtSignature": "c2lnMQ=="},
                    {"text": "4"},
                ]},
                {"role": "user", "parts": [{"text": "Times 3?"}]},
            ],
            "generationConfig": {"thinkingConfig": {"thinkingBudget": 4096, "includeThoughts": true}},
        }),
        "o4-mini",
    );
    assert_json(
        "chat request",
        &json!({
            "model": "o4-mini",
            "messages": [
                {"role": "user", "content": "2+2?"},
                {"role": "assistant", "content": "4"},
                {"role": "user", "content": "Times 3?"},
            ],
            "reasoning_effort": "medium",
        }),
        &chat,
    );

    let chat_request = json!({
        "model": "deepseek-reasoner",
        "messages": [
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4", "reasoning_content": "Simple arithmetic."},
            {"role": "user", "content": "Times 3?"},
        ],
        "reasoning_effort": "medium",
    });
    let contents = json!([
        {"role": "user", "parts": [{"text": "2+2?"}]},
        {"role": "model", "parts": [{"text": "4"}]},
        {"role": "user", "parts": [{"text": "Times 3?"}]},
    ]);
    assert_json(
        "gemini 2.5 request",
        &json!({"contents": contents, "generationConfig": {
            "thinkingConfig": {"thinkingBudget": 8192, "includeThoughts": true}}}),
        &chat_to_gemini(chat_request.clone(), "gemini-2.5-flash"),
    );
    assert_json(
        "gemini 3 request",
        &json!({"contents": contents, "generationConfig": {
            "thinkingConfig": {"thinkingLevel": "high", "includeThoughts": true}}}),
        &chat_to_gemini(chat_request, "gemini-3-pro-preview"),
    );
}

/// Relays upstream chat payloads to a Gemini client.
fn chat_upstream_to_gemini_client(payloads: &[&str]) -> Vec<Value> {
    let mut decoder = openai_chat::ChunkDecoder::new();
    let mut encoder = ChunkEncoder::new(StreamFormat::Sse);
    let mut frames = Vec::new();
    for payload in payloads {
        let mut events = Vec::new();
        decoder.push(payload, &mut events).unwrap();
        for event in events {
            encoder.push(event, &mut frames);
        }
    }
    decoder.finish().unwrap();
    encoder.finish(&mut frames);
    sse_records(&frames).unwrap()
}

#[test]
fn golden_chat_upstream_stream_to_gemini_client() {
    let head = r#""id":"chatcmpl-9","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4.1-2025-04-14""#;
    let chunk = |rest: &str| format!("{{{head},{rest}}}");
    let payloads = [
        chunk(
            r#""choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]"#,
        ),
        chunk(
            r#""choices":[{"index":0,"delta":{"reasoning_content":"Two cities, two calls."},"finish_reason":null}]"#,
        ),
        chunk(r#""choices":[{"index":0,"delta":{"content":"Checking."},"finish_reason":null}]"#),
        chunk(
            r#""choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_A","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]"#,
        ),
        chunk(
            r#""choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_B","type":"function","function":{"name":"get_weather","arguments":"{\"city\":"}}]},"finish_reason":null}]"#,
        ),
        chunk(
            r#""choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":\"Paris\"}"}}]},"finish_reason":null}]"#,
        ),
        chunk(
            r#""choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"\"Rome\"}"}}]},"finish_reason":null}]"#,
        ),
        chunk(r#""choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]"#),
        chunk(
            r#""choices":[],"usage":{"prompt_tokens":50,"completion_tokens":30,"total_tokens":80,"prompt_tokens_details":{"cached_tokens":10},"completion_tokens_details":{"reasoning_tokens":12}}"#,
        ),
        "[DONE]".to_owned(),
    ];
    let payloads: Vec<&str> = payloads.iter().map(String::as_str).collect();
    let records = chat_upstream_to_gemini_client(&payloads);
    let record = |parts: Value| {
        json!({"candidates": [{"content": {"parts": parts, "role": "model"}, "index": 0}],
               "modelVersion": "gpt-4.1-2025-04-14", "responseId": "chatcmpl-9"})
    };
    let mut last = record(json!([{"text": ""}]));
    last["candidates"][0]["finishReason"] = json!("STOP");
    last["usageMetadata"] = json!({"promptTokenCount": 50, "candidatesTokenCount": 18,
        "thoughtsTokenCount": 12, "cachedContentTokenCount": 10, "totalTokenCount": 80});
    compare_records(
        "gemini client stream",
        &[
            record(json!([{"text": "Two cities, two calls.", "thought": true}])),
            record(json!([{"text": "Checking."}])),
            record(json!([{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_A"}}])),
            record(json!([{"functionCall": {"name": "get_weather", "args": {"city": "Rome"}, "id": "call_B"}}])),
            last,
        ],
        &records,
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn golden_gemini_upstream_stream_to_chat_client() {
    let payloads = [
        r#"{"candidates":[{"content":{"parts":[{"text":"The user wants Paris weather.","thought":true}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":30,"thoughtsTokenCount":20,"totalTokenCount":50},"modelVersion":"gemini-2.5-flash","responseId":"r9"}"#,
        r#"{"candidates":[{"content":{"parts":[{"text":"Let me check."}],"role":"model"},"index":0}],"modelVersion":"gemini-2.5-flash","responseId":"r9"}"#,
        r#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"get_weather","args":{"city":"Paris"}},"thoughtSignature":"c2ln"}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":30,"candidatesTokenCount":8,"thoughtsTokenCount":20,"totalTokenCount":58,"cachedContentTokenCount":5},"modelVersion":"gemini-2.5-flash","responseId":"r9"}"#,
    ];
    let mut decoder = ChunkDecoder::new();
    let mut encoder = openai_chat::ChunkEncoder::new(true);
    let mut frames = Vec::new();
    for payload in payloads {
        let mut events = Vec::new();
        decoder.push(payload, &mut events).unwrap();
        for event in events {
            encoder.push(event, &mut frames);
        }
    }
    decoder.finish().unwrap();
    encoder.finish(&mut frames);
    let texts: Vec<String> = frames
        .iter()
        .map(|f| String::from_utf8(f.to_vec()).unwrap())
        .collect();
    assert_eq!(texts.last().map(String::as_str), Some("data: [DONE]\n\n"));
    let records = sse_records(&frames[..frames.len() - 1]).unwrap();
    // Gemini sends no creation time; the chat encoder stamps the current one.
    let created = records[0]["created"].clone();
    assert!(created.as_u64().unwrap() > 1_700_000_000);
    let chunk = |choices: Value| {
        json!({"id": "r9", "object": "chat.completion.chunk", "created": created,
               "model": "gemini-2.5-flash", "choices": choices, "usage": null})
    };
    let delta = |delta: Value| chunk(json!([{"index": 0, "delta": delta, "finish_reason": null}]));
    let mut usage = chunk(json!([]));
    usage["usage"] = json!({"prompt_tokens": 30, "completion_tokens": 28, "total_tokens": 58,
        "prompt_tokens_details": {"cached_tokens": 5},
        "completion_tokens_details": {"reasoning_tokens": 20}});
    compare_records(
        "chat client stream",
        &[
            delta(json!({"role": "assistant", "content": ""})),
            delta(json!({"reasoning_content": "The user wants Paris weather."})),
            delta(json!({"content": "Let me check."})),
            delta(json!({"tool_calls": [{"index": 0, "id": "gemini_call_r9_0", "type": "function",
                                         "function": {"name": "get_weather", "arguments": ""}}]})),
            delta(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":\"Paris\"}"}}]})),
            chunk(json!([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}])),
            usage,
        ],
        &records,
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn golden_gemini_response_folds_into_a_chat_completion() {
    let events = decode_response(
        json!({
            "candidates": [{"content": {"parts": [
                {"text": "Thinking about it.", "thought": true},
                {"text": "It is 4."},
            ], "role": "model"}, "finishReason": "MAX_TOKENS", "index": 0,
              "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}]}],
            "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 3, "thoughtsTokenCount": 9, "totalTokenCount": 17},
            "modelVersion": "gemini-2.5-flash",
            "responseId": "resp-1",
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let mut body = openai_chat::encode_response(&fold(events).unwrap());
    body["created"] = json!(0);
    assert_json(
        "chat completion",
        &json!({
            "id": "resp-1", "object": "chat.completion", "created": 0, "model": "gemini-2.5-flash",
            "choices": [{"index": 0, "logprobs": null, "finish_reason": "length",
                         "message": {"role": "assistant", "content": "It is 4.",
                                     "reasoning_content": "Thinking about it."}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 12, "total_tokens": 17,
                      "completion_tokens_details": {"reasoning_tokens": 9}},
        }),
        &body,
    );
}

// ---------------------------------------------------------------------------------------
// Bad input: clear errors naming the field

fn decode_err(body: Value) -> llmux::Error {
    decode_request(body.to_string().as_bytes(), MODEL).unwrap_err()
}

#[test]
fn bad_input_names_the_field() {
    let err = decode_err(json!({"contents": [{"role": "user", "parts": [
        {"text": "hi"},
        {"image_url": {"url": "https://example.com/a.png"}},
    ]}]}));
    assert_eq!(err.status(), 422);
    assert_eq!(err.param(), Some("contents[0].parts[1]"));
    assert!(err.to_string().contains("not a part llmux knows"), "{err}");

    let err = decode_err(json!({"contents": [
        {"role": "user", "parts": [{"text": "hi"}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"output": "18C"}}}]},
    ]}));
    assert_eq!(err.param(), Some("contents[1].parts[0].functionResponse"));
    assert!(err.to_string().contains("get_weather"), "{err}");

    let err = decode_err(json!({"contents": [{"parts": [{"text": "hi"}]}],
        "tools": [{"functionDeclarations": [{"name": "f", "parameters": "an object please"}]}]}));
    assert_eq!(
        err.param(),
        Some("tools[0].functionDeclarations[0].parameters")
    );

    let err = decode_err(json!({"contents": [{"parts": [{"text": "hi"}]}],
        "tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "object"},
                                             "parametersJsonSchema": {"type": "object"}}]}]}));
    assert_eq!(
        err.param(),
        Some("tools[0].functionDeclarations[0].parametersJsonSchema")
    );

    let err = decode_err(
        json!({"contents": [{"parts": [{"functionCall": {"name": "f", "args": [1, 2]}}]}]}),
    );
    assert_eq!(err.param(), Some("contents[0].parts[0].functionCall.args"));

    let err = decode_err(json!({"contents": [{"parts": [{"text": 5}]}]}));
    assert_eq!(err.param(), Some("contents[0].parts[0].text"));

    // An error body in Google's shape names the field too.
    let body = gemini::error_body(&err);
    assert_eq!(body["error"]["code"], 422);
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(
        body["error"]["details"][0]["fieldViolations"][0]["field"],
        "contents[0].parts[0].text"
    );
}

#[test]
fn an_invalid_schema_is_a_400_naming_the_schema_path() {
    let (request, _) = openai_chat::decode_request(
        json!({
            "model": "gpt-4.1",
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [
                {"type": "function", "function": {"name": "ok", "parameters": {"type": "object", "properties": {}}}},
                {"type": "function", "function": {"name": "tree", "parameters": {
                    "type": "object",
                    "$defs": {"node": {"type": "object", "properties": {
                        "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}},
                    "properties": {"root": {"$ref": "#/$defs/node"}},
                }}},
            ],
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let err = encode_request(&request, "gemini-2.5-flash").unwrap_err();
    assert_eq!(err.status(), 422);
    assert_eq!(
        err.param(),
        Some("tools[1].parameters.properties.root.properties.children.items.$ref")
    );
    assert!(err.to_string().contains("tool 'tree'"), "{err}");
    assert!(err.to_string().contains("recursion"), "{err}");

    // The same schema is fine as parametersJsonSchema.
    let options = gemini::EncodeOptions {
        schema: gemini::SchemaMode::JsonSchema,
    };
    let body = gemini::encode_request_with(&request, "gemini-2.5-flash", options).unwrap();
    // A function without arguments sends no parameters at all.
    assert_json(
        "declarations",
        &json!({"name": "ok", "parametersJsonSchema": {"type": "object", "properties": {}}}),
        &body["tools"][0]["functionDeclarations"][0],
    );
    let body = encode_request(
        &openai_chat::decode_request(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                   "tools": [{"type": "function", "function": {"name": "ok",
                              "parameters": {"type": "object", "properties": {}}}}]})
            .to_string()
            .as_bytes(),
        )
        .unwrap()
        .0,
        "gemini-2.5-flash",
    )
    .unwrap();
    assert_json(
        "declaration without arguments",
        &json!({"name": "ok"}),
        &body["tools"][0]["functionDeclarations"][0],
    );
}

#[test]
fn a_truncated_upstream_stream_reaches_the_client_as_an_error_not_a_finish() {
    let mut decoder = ChunkDecoder::new();
    let mut events = Vec::new();
    decoder
        .push(
            r#"{"candidates":[{"content":{"parts":[{"text":"Half an ans"}],"role":"model"},"index":0}],"responseId":"r"}"#,
            &mut events,
        )
        .unwrap();
    assert!(decoder.finish().is_err());
    // The front-end sees the stream end without a Finish event: the client gets an error
    // record, never a finish reason.
    for format in [StreamFormat::Sse, StreamFormat::JsonArray] {
        let frames = encode_stream(&events, format);
        let records = match format {
            StreamFormat::Sse => sse_records(&frames).unwrap(),
            StreamFormat::JsonArray => array_records(&frames).unwrap(),
        };
        let last = records.last().unwrap();
        assert_eq!(last["error"]["status"], "INTERNAL", "{last}");
        assert!(
            records
                .iter()
                .all(|r| r.pointer("/candidates/0/finishReason").is_none())
        );
    }
}

#[test]
fn every_fixture_response_keeps_its_finish_reason() {
    // A spot check that the fold keeps what the client must see.
    let response = |case: &str| {
        let body = read_json(&fixtures_dir(FIXTURES).join(case).join("response.json"))
            .unwrap()
            .unwrap();
        fold(decode_response(body.to_string().as_bytes()).unwrap()).unwrap()
    };
    assert_eq!(
        response("function_calling").finish,
        Some(FinishReason::ToolUse)
    );
    assert_eq!(
        response("safety_block").finish,
        Some(FinishReason::ContentFilter)
    );
    assert_eq!(response("usage").finish, Some(FinishReason::MaxTokens));
    let thinking = response("thinking");
    assert!(matches!(
        &thinking.parts[0],
        Part::Thinking {
            signature: Some(_),
            ..
        }
    ));
}
