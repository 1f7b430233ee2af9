//! The property behind the same-protocol pass-through: whenever the decoder says a
//! chat completion round-trips, llmux's own encoding of its events is that completion
//! (as JSON, members that are `null` aside: OpenAI's optional fields read the same absent
//! or null). Random completions of every shape the wire allows, and some it does not.

use serde_json::{Map, Value, json};

use super::decode::decode_response_checked;
use super::encode_response;
use crate::protocol::round_trip_support::{check_pass_through, pick, rarely};

fn text(rng: &mut fastrand::Rng) -> Value {
    Value::from(pick(
        rng,
        &[
            "",
            "Hello!",
            "two\nlines with \"quotes\" and \\ and \u{1F600}",
            "<think>maybe</think> then text",
            "ünïcödé \u{0007} control",
        ],
    ))
}

fn tool_call(rng: &mut fastrand::Rng, n: usize) -> Value {
    let mut call = Map::new();
    call.insert("id".into(), Value::from(format!("call_{n}")));
    if rng.bool() {
        let kind = if rarely(rng, 10) {
            "custom"
        } else {
            "function"
        };
        call.insert("type".into(), json!(kind));
    }
    let mut function = Map::new();
    function.insert(
        "name".into(),
        pick(rng, &[json!("shell"), json!("read_file")]),
    );
    let arguments = pick(
        rng,
        &[
            json!(""),
            json!("{\"command\":\"ls -la\"}"),
            json!("{\"path\":\"a\\\"b\"}"),
        ],
    );
    function.insert("arguments".into(), arguments);
    if rarely(rng, 10) {
        function.insert("extra".into(), json!(1));
    }
    call.insert("function".into(), Value::Object(function));
    if rarely(rng, 10) {
        call.insert("index".into(), json!(n));
    }
    Value::Object(call)
}

fn message(rng: &mut fastrand::Rng) -> Value {
    let mut message = Map::new();
    let role = if rarely(rng, 20) { "user" } else { "assistant" };
    message.insert("role".into(), json!(role));
    let mut calls = Vec::new();
    if rng.bool() {
        let count = if rarely(rng, 10) { 0 } else { rng.usize(1..3) };
        calls = (0..count).map(|n| tool_call(rng, n)).collect();
    }
    let refusal = rarely(rng, 6);
    let content = match rng.u8(..20) {
        0 => None,
        1 => Some(json!([{"type": "text", "text": "part"}])),
        _ if (!calls.is_empty() || refusal) && rng.bool() => Some(Value::Null),
        2 => Some(Value::Null),
        _ => Some(text(rng)),
    };
    if let Some(content) = content {
        message.insert("content".into(), content);
    }
    let refusal = if refusal {
        json!("I can't.")
    } else {
        Value::Null
    };
    if rng.bool() || !refusal.is_null() {
        message.insert("refusal".into(), refusal);
    }
    if rng.bool() {
        message.insert("annotations".into(), json!([]));
    }
    if rng.bool() {
        let reasoning = if rarely(rng, 10) { "" } else { "Let me think." };
        message.insert("reasoning_content".into(), json!(reasoning));
    }
    if rarely(rng, 10) {
        message.insert("reasoning".into(), json!("OpenRouter's field"));
    }
    if rarely(rng, 20) {
        message.insert("name".into(), json!("bot"));
    }
    if !calls.is_empty() || rarely(rng, 10) {
        message.insert("tool_calls".into(), Value::Array(calls));
    }
    Value::Object(message)
}

fn choice(rng: &mut fastrand::Rng, index: usize) -> Value {
    let mut choice = Map::new();
    choice.insert("index".into(), json!(index));
    choice.insert("message".into(), message(rng));
    let finish = if rarely(rng, 8) {
        pick(
            rng,
            &[json!("function_call"), Value::Null, json!("end_turn")],
        )
    } else {
        pick(
            rng,
            &[
                json!("stop"),
                json!("length"),
                json!("tool_calls"),
                json!("content_filter"),
            ],
        )
    };
    if !rarely(rng, 20) {
        choice.insert("finish_reason".into(), finish);
    }
    if rng.bool() {
        let logprobs = pick(
            rng,
            &[
                Value::Null,
                json!({"content": [{"token": "Hi", "logprob": -0.1}]}),
            ],
        );
        choice.insert("logprobs".into(), logprobs);
    }
    Value::Object(choice)
}

fn usage(rng: &mut fastrand::Rng) -> Value {
    let (prompt, completion) = (rng.u64(..5000), rng.u64(..5000));
    let mut usage = Map::new();
    if !rarely(rng, 10) {
        usage.insert("prompt_tokens".into(), json!(prompt));
    }
    usage.insert("completion_tokens".into(), json!(completion));
    let total = if rarely(rng, 10) {
        prompt + 1
    } else {
        prompt + completion
    };
    usage.insert("total_tokens".into(), json!(total));
    if rng.bool() {
        let details = pick(
            rng,
            &[json!({"cached_tokens": 3, "audio_tokens": 0}), Value::Null],
        );
        usage.insert("prompt_tokens_details".into(), details);
    }
    if rng.bool() {
        let details = json!({"reasoning_tokens": 7, "accepted_prediction_tokens": 0});
        usage.insert("completion_tokens_details".into(), details);
    }
    Value::Object(usage)
}

fn completion(rng: &mut fastrand::Rng) -> Value {
    let mut body = Map::new();
    let fields = [
        ("id", json!("chatcmpl-123"), json!("")),
        ("object", json!("chat.completion"), json!("list")),
        ("created", json!(1_741_569_952), Value::Null),
        ("model", json!("gpt-4o-2024-08-06"), json!("")),
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
    let choices = if rarely(rng, 10) {
        pick(rng, &[0, 2])
    } else {
        1
    };
    body.insert(
        "choices".into(),
        Value::Array((0..choices).map(|i| choice(rng, i)).collect()),
    );
    if rng.u8(..4) != 0 {
        let usage = if rarely(rng, 10) {
            Value::Null
        } else {
            usage(rng)
        };
        body.insert("usage".into(), usage);
    }
    if rng.bool() {
        body.insert(
            "system_fingerprint".into(),
            pick(rng, &[json!("fp_1"), Value::Null]),
        );
    }
    if rng.bool() {
        body.insert("service_tier".into(), json!("default"));
    }
    Value::Object(body)
}

#[test]
fn a_completion_the_decoder_passes_through_is_what_the_encoder_writes() {
    let tally = check_pass_through(completion, decode_response_checked, encode_response);
    // Neither side may be empty, or the test proves nothing.
    assert!(
        tally.passed > 500,
        "only {} completions passed through",
        tally.passed
    );
    assert!(
        tally.encoded > 1500,
        "only {} completions were encoded",
        tally.encoded
    );
}

#[test]
fn a_typical_openai_answer_passes_through() {
    // The example answer of OpenAI's Chat Completions reference.
    let body = br#"{
      "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
      "object": "chat.completion",
      "created": 1741569952,
      "model": "gpt-4.1-2025-04-14",
      "choices": [{
        "index": 0,
        "message": {"role": "assistant", "content": "Hello! How can I assist you today?",
                    "refusal": null, "annotations": []},
        "logprobs": null,
        "finish_reason": "stop"
      }],
      "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
      "service_tier": "default"
    }"#;
    let (_, round_trips) = decode_response_checked(body).unwrap();
    assert!(round_trips);
}
