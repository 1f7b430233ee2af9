//! The property behind the Responses answer pass-through: whenever the decoder says a
//! Response round-trips and it echoes every parameter the client's request set, llmux's own
//! encoding of its events for that client is that Response (as JSON, members that are
//! `null` aside, numbers by value). Random Responses of every shape the wire allows, and some it does not,
//! each for a client whose request set a random few of the echoed parameters (8,000 of them).

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::decode::{ClientOptions, decode_response_checked};
use super::encode_response;
use super::pass_through::echo_is_answered;
use crate::model::ResponseBuilder;
use crate::protocol::round_trip_support::{check_pass_through_for, pick, rarely, same_json};

/// The parameters a Response echoes from its request, with a value an upstream might give.
fn echoed(rng: &mut fastrand::Rng) -> Vec<(&'static str, Value)> {
    vec![
        (
            "instructions",
            pick(rng, &[json!("Be brief."), Value::Null]),
        ),
        ("max_output_tokens", pick(rng, &[json!(1024), Value::Null])),
        ("metadata", json!({})),
        ("previous_response_id", Value::Null),
        ("reasoning", json!({"effort": "low", "summary": null})),
        ("store", json!(true)),
        ("temperature", json!(1.0)),
        (
            "text",
            json!({"format": {"type": "text"}, "verbosity": "medium"}),
        ),
        ("top_p", json!(1.0)),
        ("user", Value::Null),
        ("truncation", json!("disabled")),
        ("service_tier", json!("default")),
        ("background", json!(false)),
        ("prompt_cache_key", Value::Null),
        ("safety_identifier", Value::Null),
        ("max_tool_calls", Value::Null),
        ("top_logprobs", json!(0)),
    ]
}

fn output_text(rng: &mut fastrand::Rng) -> Value {
    let mut part = Map::new();
    part.insert("type".into(), json!("output_text"));
    let text = if rarely(rng, 12) {
        ""
    } else {
        pick(rng, &["Hello!", "two\nlines \"quoted\" \u{1F600}"])
    };
    part.insert("text".into(), json!(text));
    if !rarely(rng, 12) {
        let annotations = if rarely(rng, 4) {
            json!([{"type": "url_citation", "url": "https://example.com", "title": "t",
                    "start_index": 0, "end_index": 3}])
        } else {
            json!([])
        };
        part.insert("annotations".into(), annotations);
    }
    if !rarely(rng, 12) {
        let logprobs = if rarely(rng, 6) {
            json!([{"token": "Hel", "logprob": -0.1, "bytes": [72, 101, 108], "top_logprobs": []}])
        } else {
            json!([])
        };
        part.insert("logprobs".into(), logprobs);
    }
    // Members the encoder keeps, and ones named like its own.
    match rng.u8(..30) {
        0 | 1 => drop(part.insert("x_part".into(), json!({"kept": 1}))),
        2 => drop(part.insert("refusal".into(), json!("stray"))),
        3 => drop(part.insert("content_index".into(), json!(0))),
        4 => drop(part.insert("output_index".into(), json!(3))),
        _ => {}
    }
    Value::Object(part)
}

fn content_part(rng: &mut fastrand::Rng) -> Value {
    if rarely(rng, 10) {
        let mut part = json!({"type": "refusal", "refusal": pick(rng, &["I can't.", ""])});
        if rarely(rng, 3) {
            part["annotations"] = json!([]);
        }
        return part;
    }
    if rarely(rng, 20) {
        return json!({"type": "text", "text": "a chat-style part"});
    }
    output_text(rng)
}

fn message(rng: &mut fastrand::Rng, n: usize) -> Value {
    let mut item = Map::new();
    item.insert("type".into(), json!("message"));
    if !rarely(rng, 15) {
        item.insert("id".into(), json!(format!("msg_{n}")));
    }
    let status = if rarely(rng, 15) {
        "incomplete"
    } else {
        "completed"
    };
    item.insert("status".into(), json!(status));
    let role = if rarely(rng, 20) { "user" } else { "assistant" };
    item.insert("role".into(), json!(role));
    let parts = if rarely(rng, 8) { rng.usize(0..=2) } else { 1 };
    let content: Vec<Value> = (0..parts).map(|_| content_part(rng)).collect();
    item.insert("content".into(), Value::Array(content));
    if rarely(rng, 6) {
        item.insert("phase".into(), json!("final_answer"));
    }
    Value::Object(item)
}

fn function_call(rng: &mut fastrand::Rng, n: usize) -> Value {
    let mut item = json!({
        "type": "function_call",
        "id": format!("fc_{n}"),
        "call_id": format!("call_{n}"),
        "name": pick(rng, &["shell", "apply_patch"]),
        "arguments": pick(rng, &["{\"command\":[\"ls\"]}", "", "{\"a\":\"b\\\"c\"}"]),
        "status": "completed",
    });
    if rarely(rng, 12) {
        item.as_object_mut().unwrap().remove("arguments");
    }
    if rarely(rng, 15) {
        item["status"] = json!("in_progress");
    }
    if rarely(rng, 20) {
        item.as_object_mut().unwrap().remove("call_id");
    }
    Value::Object(item.as_object().unwrap().clone())
}

fn reasoning(rng: &mut fastrand::Rng, n: usize) -> Value {
    let summaries = rng.usize(0..=2);
    let summary: Vec<Value> = (0..summaries)
        .map(|_| {
            if rarely(rng, 15) {
                return json!({"type": "summary_text", "text": "x", "x_extra": 1});
            }
            let text = if rarely(rng, 12) {
                ""
            } else {
                pick(rng, &["**Planning**", "Then\n\nmore"])
            };
            json!({"type": "summary_text", "text": text})
        })
        .collect();
    let mut item = Map::new();
    item.insert("type".into(), json!("reasoning"));
    item.insert("id".into(), json!(format!("rs_{n}")));
    item.insert("summary".into(), Value::Array(summary));
    if rng.bool() {
        let encrypted = if rarely(rng, 5) {
            Value::Null
        } else {
            json!("gAAAAB-opaque")
        };
        item.insert("encrypted_content".into(), encrypted);
    }
    if rarely(rng, 10) {
        item.insert("status".into(), json!("completed"));
    }
    if rarely(rng, 10) {
        item.insert(
            "content".into(),
            json!([{"type": "reasoning_text", "text": "raw"}]),
        );
    }
    Value::Object(item)
}

/// An item with, now and then, a member the encoder keeps or one named like its own keys.
fn with_members(rng: &mut fastrand::Rng, mut item: Value) -> Value {
    if let Some(fields) = item.as_object_mut() {
        match rng.u8(..20) {
            0 | 1 => drop(fields.insert("x_vendor".into(), json!({"trace": "t-1"}))),
            2 => drop(fields.insert("output_index".into(), json!(9))),
            _ => {}
        }
    }
    item
}

fn output_item(rng: &mut fastrand::Rng, n: usize) -> Value {
    let item = any_item(rng, n);
    with_members(rng, item)
}

fn any_item(rng: &mut fastrand::Rng, n: usize) -> Value {
    match rng.u8(..20) {
        0..=7 => message(rng, n),
        8..=12 => function_call(rng, n),
        13..=16 => reasoning(rng, n),
        17 | 18 => {
            json!({"type": "web_search_call", "id": format!("ws_{n}"), "status": "completed",
                          "action": {"type": "search", "query": "rust"}})
        }
        _ => pick(rng, &[json!("not an item"), json!({"no": "type"})]),
    }
}

/// The order a reasoning model answers in: reasoning, then a message or calls.
fn typical_output(rng: &mut fastrand::Rng) -> Vec<Value> {
    let mut output = Vec::new();
    if rng.bool() {
        let item = reasoning(rng, output.len());
        output.push(with_members(rng, item));
    }
    if rng.bool() {
        let item = message(rng, output.len());
        output.push(with_members(rng, item));
    }
    for _ in 0..rng.usize(0..=2) {
        let item = function_call(rng, output.len());
        output.push(with_members(rng, item));
    }
    output
}

fn usage(rng: &mut fastrand::Rng) -> Value {
    let mut usage = json!({
        "input_tokens": 36,
        "input_tokens_details": {"cached_tokens": pick(rng, &[0, 12]), "cache_write_tokens": 0},
        "output_tokens": 87,
        "output_tokens_details": {"reasoning_tokens": pick(rng, &[0, 64])},
        "total_tokens": 123,
    });
    if rarely(rng, 8) {
        let details = usage["input_tokens_details"].as_object_mut().unwrap();
        details.remove("cache_write_tokens");
    }
    if rarely(rng, 10) {
        usage["total_tokens"] = json!(124);
    }
    if rarely(rng, 10) {
        usage
            .as_object_mut()
            .unwrap()
            .remove("output_tokens_details");
    }
    if rarely(rng, 12) {
        usage["input_tokens_details"]["cached_tokens"] = json!(1.5);
    }
    if rarely(rng, 10) {
        usage
            .as_object_mut()
            .unwrap()
            .remove("input_tokens_details");
    }
    if rarely(rng, 6) {
        usage["x_billing"] = json!({"tier": "default"});
    }
    if rarely(rng, 12) {
        // Counts that overflow their sum, without a total.
        usage["input_tokens"] = json!(u64::MAX);
        usage.as_object_mut().unwrap().remove("total_tokens");
    }
    usage
}

/// A random Response and the echoed parameters its client's request set.
fn response(rng: &mut fastrand::Rng) -> (Value, Map<String, Value>) {
    let mut body = Map::new();
    let id = if rarely(rng, 12) {
        ""
    } else {
        pick(rng, &["resp_67ccd2bed1ec", "resp_2"])
    };
    body.insert("id".into(), json!(id));
    if !rarely(rng, 15) {
        body.insert("object".into(), json!("response"));
    }
    let created = if rarely(rng, 12) {
        json!(1741476542.0)
    } else if rarely(rng, 15) {
        json!(1741476542.5)
    } else {
        json!(1741476542)
    };
    body.insert("created_at".into(), created);
    let status = if rarely(rng, 10) {
        pick(rng, &["incomplete", "in_progress"])
    } else {
        "completed"
    };
    body.insert("status".into(), json!(status));
    if status == "incomplete" {
        body.insert(
            "incomplete_details".into(),
            json!({"reason": "max_output_tokens"}),
        );
    } else if rng.bool() {
        body.insert("incomplete_details".into(), Value::Null);
    }
    if rng.bool() {
        body.insert("error".into(), Value::Null);
    }
    if !rarely(rng, 20) {
        body.insert("model".into(), json!("gpt-5-2025-08-07"));
    }
    let output: Vec<Value> = if rarely(rng, 3) {
        (0..rng.usize(0..=4)).map(|n| output_item(rng, n)).collect()
    } else {
        typical_output(rng)
    };
    match rng.u8(..30) {
        0 => {}
        1 => drop(body.insert("output".into(), Value::Null)),
        _ => drop(body.insert("output".into(), Value::Array(output))),
    }
    for key in ["parallel_tool_calls", "tool_choice", "tools"] {
        if !rarely(rng, 12) {
            let value = match key {
                "parallel_tool_calls" => json!(true),
                "tool_choice" => json!("auto"),
                _ => {
                    json!([{"type": "function", "name": "shell", "parameters": {}, "strict": false}])
                }
            };
            body.insert(key.into(), value);
        }
    }
    let echoed = echoed(rng);
    let everything = !rarely(rng, 6);
    for (key, value) in &echoed {
        if everything || rng.bool() {
            body.insert((*key).into(), value.clone());
        }
    }
    if rng.bool() {
        body.insert("billing".into(), json!({"payer": "developer"}));
    }
    if !rarely(rng, 12) {
        body.insert("usage".into(), usage(rng));
    }
    // What the client's request set: some of the echoed parameters, with the values it
    // sent, which differ from the upstream's.
    let mut echo = Map::new();
    for (key, _) in &echoed {
        if rarely(rng, 5) {
            echo.insert((*key).into(), json!("as the client sent it"));
        }
    }
    if rng.bool() {
        echo.insert("tools".into(), Value::Null);
    }
    (Value::Object(body), echo)
}

#[test]
fn a_response_the_decoder_passes_through_is_what_the_encoder_writes() {
    let tally = check_pass_through_for(
        8000,
        same_json,
        response,
        |body, echo| {
            let (events, round_trips) = decode_response_checked(body)?;
            let fits = round_trips && echo_is_answered(&events, echo);
            Ok((events, fits))
        },
        |folded, echo| {
            let options = ClientOptions {
                echo,
                tools: Some(Arc::from("[{\"type\":\"function\",\"name\":\"client's\"}]")),
            };
            let written = encode_response(folded, &options).to_vec(1024);
            serde_json::from_slice(&written).unwrap()
        },
    );
    // Neither side may be empty, or the test proves nothing.
    let (passed, encoded) = (tally.passed, tally.encoded);
    assert!(passed > 500, "only {passed} responses passed through");
    assert!(encoded > 1000, "only {encoded} responses were encoded");
}

#[test]
fn a_typical_openai_response_passes_through() {
    // The shape of the example answer in OpenAI's Responses reference (create a model
    // response), with a reasoning item and a call as reasoning models give them.
    let body = br#"{
      "id": "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",
      "object": "response",
      "created_at": 1741476542,
      "status": "completed",
      "error": null,
      "incomplete_details": null,
      "instructions": null,
      "max_output_tokens": null,
      "model": "gpt-4.1-2025-04-14",
      "output": [
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "**Looking**"}]},
        {"type": "message", "id": "msg_67ccd2bf17f0819081ff3bb2cf6508e60bb6a6b452d3795b",
         "status": "completed", "role": "assistant",
         "content": [{"type": "output_text", "text": "In a peaceful grove beneath a silver moon...",
                      "annotations": [], "logprobs": []}]},
        {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "shell",
         "arguments": "{\"command\":[\"ls\"]}", "status": "completed"}
      ],
      "parallel_tool_calls": true,
      "previous_response_id": null,
      "reasoning": {"effort": null, "summary": null},
      "store": true,
      "temperature": 1.0,
      "text": {"format": {"type": "text"}},
      "tool_choice": "auto",
      "tools": [],
      "top_p": 1.0,
      "truncation": "disabled",
      "usage": {"input_tokens": 36, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": 87, "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 123},
      "user": null,
      "metadata": {}
    }"#;
    let (events, round_trips) = decode_response_checked(body).unwrap();
    assert!(round_trips);
    let mut echo = Map::new();
    echo.insert("instructions".into(), json!("Be brief."));
    echo.insert("temperature".into(), json!(0.2));
    assert!(echo_is_answered(&events, &echo));
    echo.insert("prompt_cache_key".into(), json!("conversation-1"));
    assert!(
        !echo_is_answered(&events, &echo),
        "a parameter the answer does not echo comes from the request"
    );
}

#[test]
fn usage_counts_near_the_largest_are_encoded_without_overflow() {
    let body = format!(
        r#"{{"id":"resp_1","object":"response","created_at":1,"status":"completed","model":"m",
        "parallel_tool_calls":true,"tool_choice":"auto","tools":[],
        "output":[{{"id":"msg_1","type":"message","status":"completed","role":"assistant",
          "content":[{{"type":"output_text","text":"hi","annotations":[],"logprobs":[]}}]}}],
        "usage":{{"input_tokens":{max},"input_tokens_details":{{"cached_tokens":0,"cache_write_tokens":0}},
          "output_tokens":1,"output_tokens_details":{{"reasoning_tokens":0}},"total_tokens":0}}}}"#,
        max = u64::MAX
    );
    let (events, round_trips) = decode_response_checked(body.as_bytes()).unwrap();
    assert!(!round_trips, "a total that is not the sum is encoded");
    let mut folded = ResponseBuilder::new();
    for event in events {
        folded.push(event).unwrap();
    }
    let written = encode_response(&folded.finish(), &ClientOptions::default()).to_vec(256);
    let written: Value = serde_json::from_slice(&written).unwrap();
    assert_eq!(
        written["usage"]["total_tokens"],
        json!(u64::MAX),
        "saturates"
    );
}
