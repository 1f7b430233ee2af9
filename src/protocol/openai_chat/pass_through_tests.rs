//! The property behind the request pass-through: whenever the decoder says a chat request
//! may go as it came, the bytes sent (the client's, patched) are the same JSON as llmux's
//! own encoding of the decoded request (`null` members read as absent ones, numbers by
//! value: `1` and `1.0` are one temperature). Random requests of every shape the wire
//! allows, and some the encoder does not write back, compact and pretty-printed, with
//! their members in random order.

use serde_json::{Map, Value, json};

use super::decode::decode_request_checked;
use super::encode_request;
use crate::model::{Edits, Protocol, Request};
use crate::protocol::round_trip_support::{
    body_of, check_request_pass_through, pick, rarely, sent_as_is,
};

fn content_part(rng: &mut fastrand::Rng, refusal_ok: bool) -> Value {
    match rng.u8(..30) {
        0 => json!({"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}),
        1 => {
            json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO", "detail": "low"}})
        }
        2 => json!({"type": "image_url", "image_url": "https://x.test/bare.png"}),
        3 => json!({"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}}),
        4 if refusal_ok => json!({"type": "refusal", "refusal": "no"}),
        5 => json!({"type": "text", "text": "cached", "cache_control": {"type": "ephemeral"}}),
        6 => {
            json!({"type": "image_url", "image_url": {"url": "https://x.test/b.png", "detail": 3}})
        }
        7 => json!({"type": "refusal", "refusal": "no", "extra": 1}),
        _ => json!({"type": "text", "text": pick(rng, &["part", "", "ünï \"q\""])}),
    }
}

fn content(rng: &mut fastrand::Rng, refusal_ok: bool) -> Option<Value> {
    match rng.u8(..40) {
        0 => None,
        1 => Some(Value::Null),
        2 => Some(json!([])),
        3..10 => {
            let count = rng.usize(1..4);
            Some(Value::Array(
                (0..count).map(|_| content_part(rng, refusal_ok)).collect(),
            ))
        }
        _ => Some(Value::from(pick(
            rng,
            &["Say hello.", "", "two\nlines \\ \"q\" \u{1F600}", "!/help"],
        ))),
    }
}

fn tool_call(rng: &mut fastrand::Rng, n: usize) -> Value {
    let mut function = Map::new();
    function.insert("name".into(), json!(pick(rng, &["shell", "read_file"])));
    if !rarely(rng, 10) {
        let arguments = pick(rng, &["{\"command\":\"ls\"}", "", "{}"]);
        function.insert("arguments".into(), json!(arguments));
    }
    if rarely(rng, 10) {
        function.insert("call".into(), json!({"x": 1}));
    }
    let mut call = Map::new();
    call.insert("id".into(), json!(format!("call_{n}")));
    if !rarely(rng, 10) {
        call.insert("type".into(), json!("function"));
    }
    call.insert("function".into(), Value::Object(function));
    if rarely(rng, 8) {
        call.insert("index".into(), json!(n));
    }
    Value::Object(call)
}

fn message(rng: &mut fastrand::Rng) -> Value {
    let role = pick(
        rng,
        &[
            "user",
            "user",
            "assistant",
            "assistant",
            "system",
            "developer",
            "tool",
        ],
    );
    let mut message = Map::new();
    message.insert("role".into(), json!(role));
    if let Some(content) = content(rng, role != "assistant") {
        message.insert("content".into(), content);
    }
    if role == "assistant" && rng.bool() {
        let count = if rarely(rng, 10) { 0 } else { rng.usize(1..3) };
        let calls: Vec<Value> = (0..count).map(|n| tool_call(rng, n)).collect();
        message.insert("tool_calls".into(), Value::Array(calls));
    }
    if role == "tool" && !rarely(rng, 20) {
        message.insert("tool_call_id".into(), json!("call_0"));
    }
    if rarely(rng, 6) {
        message.insert("name".into(), json!("alice"));
    }
    if rarely(rng, 12) {
        let field = pick(rng, &["reasoning_content", "reasoning"]);
        message.insert(field.into(), json!("thought"));
    }
    if rarely(rng, 20) {
        message.insert("refusal".into(), json!("declined"));
    }
    if rarely(rng, 10) {
        message.insert("cache_control".into(), json!({"type": "ephemeral"}));
    }
    if rarely(rng, 30) {
        message.insert("tool_call_id".into(), json!("stray"));
    }
    Value::Object(message)
}

fn tool(rng: &mut fastrand::Rng) -> Value {
    match rng.u8(..16) {
        0 => json!({"function": {"name": "untyped"}}),
        1 => json!({"type": "web_search", "search_context_size": "low"}),
        2 => json!({"type": "function", "function": {"name": "f", "parameters": null}}),
        3 => json!({"type": "function", "function": {"name": "f", "description": 7}}),
        4 => json!({"type": "function", "function": {"name": "f", "strict": true}, "cache": 1}),
        _ => json!({"type": "function", "function": {
            "name": "shell", "description": "Run a command",
            "parameters": {"type": "object", "properties": {"command": {"type": "string"}}}}}),
    }
}

fn tool_choice(rng: &mut fastrand::Rng) -> Value {
    pick(
        rng,
        &[
            json!("auto"),
            json!("required"),
            json!("none"),
            json!({"type": "function", "function": {"name": "shell"}}),
            json!({"type": "function", "function": {"name": "shell", "x": 1}}),
            json!({"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}}),
        ],
    )
}

fn response_format(rng: &mut fastrand::Rng) -> Value {
    pick(
        rng,
        &[
            json!({"type": "text"}),
            json!({"type": "json_object"}),
            json!({"type": "json_object", "x": 1}),
            json!({"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}, "strict": true}}),
            json!({"type": "json_schema", "json_schema": {"schema": {"type": "object"}}}),
            json!({"type": "json_schema", "json_schema": {"name": "n", "schema": {}, "extra": 1}}),
        ],
    )
}

/// The optional top-level members, each present now and then.
fn optional_members(rng: &mut fastrand::Rng, body: &mut Vec<(String, Value)>) {
    if rng.bool() {
        let stream = pick(rng, &[json!(true), json!(true), json!(false), Value::Null]);
        body.push(("stream".into(), stream));
    }
    let mut maybe = |key: &str, value: Value, rng: &mut fastrand::Rng| {
        if rng.u8(..4) == 0 {
            body.push((key.into(), value));
        }
    };
    let options = pick(
        rng,
        &[
            json!({"include_usage": true}),
            json!({"include_usage": false}),
            json!({}),
            json!({"include_usage": true, "continuous_usage_stats": true}),
        ],
    );
    maybe("stream_options", options, rng);
    maybe(
        "temperature",
        pick(rng, &[json!(0.7), json!(1), json!(0)]),
        rng,
    );
    maybe("top_p", json!(0.95), rng);
    maybe("max_tokens", json!(1024), rng);
    maybe("max_completion_tokens", json!(2048), rng);
    let stop = pick(
        rng,
        &[json!("END"), json!(["a"]), json!(["a", "b"]), json!([])],
    );
    maybe("stop", stop, rng);
    maybe("seed", json!(-42), rng);
    maybe("presence_penalty", json!(0.5), rng);
    maybe("frequency_penalty", json!(-0.5), rng);
    let count = rng.usize(1..3);
    let tools: Vec<Value> = (0..count).map(|_| tool(rng)).collect();
    maybe("tools", Value::Array(tools), rng);
    let choice = tool_choice(rng);
    maybe("tool_choice", choice, rng);
    maybe("parallel_tool_calls", json!(false), rng);
    let effort = pick(rng, &[json!("high"), json!("minimal"), json!("turbo")]);
    maybe("reasoning_effort", effort, rng);
    let format = response_format(rng);
    maybe("response_format", format, rng);
    maybe("user", json!("user-7"), rng);
    maybe("n", json!(1), rng);
    maybe(
        "metadata",
        json!({"team": "a", "nested": {"k": [1, 2]}}),
        rng,
    );
    maybe("logprobs", json!(true), rng);
    maybe("temperature_note", Value::Null, rng);
}

/// A random chat request, as bytes: members in random order, compact or pretty.
fn request(rng: &mut fastrand::Rng) -> Vec<u8> {
    let count = rng.usize(1..6);
    let messages: Vec<Value> = (0..count).map(|_| message(rng)).collect();
    let mut members = vec![
        (
            "model".to_owned(),
            json!(pick(rng, &["gpt-4o", "alias", "ü/model"])),
        ),
        ("messages".to_owned(), Value::Array(messages)),
    ];
    optional_members(rng, &mut members);
    body_of(rng, members)
}

#[test]
fn a_request_passed_through_is_what_the_encoder_writes() {
    check_request_pass_through(Protocol::OpenAiChat, request, decode, encode_request);
}

#[test]
fn a_key_written_with_escapes_is_encoded_rather_than_patched() {
    let body = br#"{"model":"m","stre\u0061m":false,"messages":[{"role":"user","content":"hi"}]}"#;
    let (_, _, edits) = decode_request_checked(body).unwrap();
    assert_eq!(edits, None);
}

/// `decode_request_checked` as the property test's loop takes it.
fn decode(body: &[u8]) -> Result<(Request, Option<Edits>), crate::Error> {
    decode_request_checked(body).map(|(request, _, edits)| (request, edits))
}

#[test]
fn a_streamed_request_without_options_asks_for_usage() {
    let body =
        br#"{"stream": true, "model": "m", "messages": [{"role": "user", "content": "hi"}]}"#;
    assert_eq!(
        sent_as_is(Protocol::OpenAiChat, body, decode, "gpt"),
        r#"{"stream_options":{"include_usage":true},"stream": true, "model": "gpt", "messages": [{"role": "user", "content": "hi"}]}"#
    );
}

#[test]
fn stream_false_as_the_last_member_leaves_with_the_comma_before_it() {
    let body = b"{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}] ,\n \"stream\" : false\n}";
    assert_eq!(
        sent_as_is(Protocol::OpenAiChat, body, decode, "m"),
        "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}] \n}"
    );
}
