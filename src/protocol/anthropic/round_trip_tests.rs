//! The property behind the same-protocol pass-through for Anthropic clients: whenever the
//! decoder says a message round-trips, llmux's own encoding of its events is that message
//! (as JSON, members that are `null` aside). Random messages of every shape the wire
//! allows, and some it does not.

use serde_json::{Map, Value, json};

use super::decode::decode_response_checked;
use super::{JSON_RESPONSE_TOOL, encode_response};
use crate::protocol::round_trip_support::{check_pass_through, pick, rarely};

fn text_block(rng: &mut fastrand::Rng) -> Value {
    let text = if rarely(rng, 12) {
        ""
    } else {
        pick(
            rng,
            &[
                "Hi! My name is Claude.",
                "two\nlines with \"quotes\" and \\ and \u{1F600}",
                "ünïcödé \u{0007} control",
            ],
        )
    };
    let mut block = json!({"type": "text", "text": text});
    if rarely(rng, 10) {
        block["citations"] = json!([{"type": "char_location", "cited_text": "x",
            "document_index": 0, "start_char_index": 0, "end_char_index": 1}]);
    }
    block
}

fn thinking_block(rng: &mut fastrand::Rng) -> Value {
    if rarely(rng, 8) {
        return json!({"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"});
    }
    let mut block = json!({"type": "thinking", "thinking": "Let me work this out."});
    if !rarely(rng, 8) {
        block["signature"] = json!("EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds");
    }
    block
}

fn tool_use_block(rng: &mut fastrand::Rng, n: usize) -> Value {
    let name = if rarely(rng, 15) {
        JSON_RESPONSE_TOOL
    } else {
        pick(rng, &["get_weather", "Bash"])
    };
    let mut block = json!({"type": "tool_use", "id": format!("toolu_0{n}"), "name": name});
    let input = match rng.u8(..12) {
        0 => None,
        1 => Some(json!("not an object")),
        2 => Some(json!({})),
        _ => Some(json!({"location": "San Francisco, CA", "unit": "celsius", "n": 1.5})),
    };
    if let Some(input) = input {
        block["input"] = input;
    }
    block
}

fn server_block(rng: &mut fastrand::Rng) -> Value {
    pick(
        rng,
        &[
            json!({"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search",
                   "input": {"query": "weather"}}),
            json!({"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1",
                   "content": [{"type": "web_search_result", "url": "https://example.com",
                                "title": "Example", "encrypted_content": "abc"}]}),
            json!("not a block"),
        ],
    )
}

fn content(rng: &mut fastrand::Rng) -> Vec<Value> {
    let mut blocks = Vec::new();
    if rng.bool() {
        blocks.push(thinking_block(rng));
    }
    for n in 0..rng.usize(0..4) {
        let block = match rng.u8(..10) {
            0 => server_block(rng),
            1..=3 => tool_use_block(rng, n),
            4 => thinking_block(rng),
            _ => text_block(rng),
        };
        blocks.push(block);
    }
    blocks
}

fn usage(rng: &mut fastrand::Rng) -> Value {
    let mut usage = Map::new();
    usage.insert("input_tokens".into(), json!(rng.u64(..5000)));
    usage.insert("output_tokens".into(), json!(rng.u64(..5000)));
    for key in ["cache_creation_input_tokens", "cache_read_input_tokens"] {
        match rng.u8(..12) {
            0 => {}
            1 => {
                usage.insert(key.into(), Value::Null);
            }
            _ => {
                usage.insert(key.into(), json!(rng.u64(..100)));
            }
        }
    }
    if rng.bool() {
        usage.insert("service_tier".into(), json!("standard"));
    }
    if rng.bool() {
        usage.insert(
            "cache_creation".into(),
            json!({"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}),
        );
    }
    Value::Object(usage)
}

fn message(rng: &mut fastrand::Rng) -> Value {
    let mut body = Map::new();
    let fields = [
        (
            "id",
            json!("msg_013Zva2CMHLNnXjNJJKqJ2EF"),
            json!("chatcmpl-1"),
        ),
        ("type", json!("message"), json!("completion")),
        ("role", json!("assistant"), json!("user")),
        ("model", json!("claude-sonnet-4-20250514"), json!("")),
    ];
    for (key, usual, odd) in fields {
        match rng.u8(..30) {
            0 => {}
            1 => {
                body.insert(key.into(), odd);
            }
            _ => {
                body.insert(key.into(), usual);
            }
        }
    }
    body.insert("content".into(), Value::Array(content(rng)));
    let stop = if rarely(rng, 8) {
        pick(rng, &[Value::Null, json!("a_new_reason")])
    } else {
        pick(
            rng,
            &[
                json!("end_turn"),
                json!("tool_use"),
                json!("max_tokens"),
                json!("stop_sequence"),
                json!("pause_turn"),
                json!("refusal"),
            ],
        )
    };
    if !rarely(rng, 20) {
        body.insert("stop_reason".into(), stop);
    }
    if rng.bool() {
        body.insert(
            "stop_sequence".into(),
            pick(rng, &[Value::Null, json!("END")]),
        );
    }
    if !rarely(rng, 10) {
        body.insert("usage".into(), usage(rng));
    }
    if rarely(rng, 10) {
        body.insert("container".into(), json!({"id": "container_1"}));
    }
    Value::Object(body)
}

#[test]
fn a_message_the_decoder_passes_through_is_what_the_encoder_writes() {
    let tally = check_pass_through(message, decode_response_checked, |response| {
        encode_response(response, 0)
    });
    // Neither side may be empty, or the test proves nothing.
    assert!(
        tally.passed > 500,
        "only {} messages passed through",
        tally.passed
    );
    assert!(
        tally.encoded > 1000,
        "only {} messages were encoded",
        tally.encoded
    );
}

#[test]
fn a_typical_anthropic_answer_passes_through() {
    // The example answer of Anthropic's Messages reference.
    let body = br#"{
      "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
      "type": "message",
      "role": "assistant",
      "model": "claude-sonnet-4-20250514",
      "content": [{"type": "text", "text": "Hi! My name is Claude."}],
      "stop_reason": "end_turn",
      "stop_sequence": null,
      "usage": {"input_tokens": 2095, "output_tokens": 503,
                "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                "service_tier": "standard"}
    }"#;
    let (_, round_trips) = decode_response_checked(body).unwrap();
    assert!(round_trips);
}

#[test]
fn an_answer_through_the_json_tool_is_encoded_as_text() {
    let body = format!(
        r#"{{"id":"msg_1","type":"message","role":"assistant","model":"claude",
        "content":[{{"type":"tool_use","id":"toolu_1","name":"{JSON_RESPONSE_TOOL}",
        "input":{{"a":1}}}}],"stop_reason":"tool_use","stop_sequence":null,
        "usage":{{"input_tokens":1,"output_tokens":1,"cache_creation_input_tokens":0,
        "cache_read_input_tokens":0}}}}"#
    );
    let (_, round_trips) = decode_response_checked(body.as_bytes()).unwrap();
    assert!(!round_trips);
}
