//! The property behind the request pass-through for Anthropic clients: whenever the decoder
//! says a Messages request may go as it came, the bytes sent (the client's, patched) are
//! the same JSON as llmux's own encoding of the decoded request (`null` members read as
//! absent ones, numbers by value). Random requests of every shape the wire allows, and
//! some the encoder does not write back, compact and pretty-printed, members in random
//! order.

use serde_json::{Map, Value, json};

use super::decode::decode_request_checked;
use super::encode_request;
use crate::model::Protocol;
use crate::protocol::round_trip_support::{
    MemoTally, assert_memo_worked, body_of, check_request_pass_through, conversation_body,
    maybe_stream, pick, rarely, sent_as_is, sometimes,
};

fn text_block(rng: &mut fastrand::Rng) -> Value {
    let mut block = Map::new();
    block.insert("type".into(), json!("text"));
    let text = if rarely(rng, 15) {
        ""
    } else {
        "Some text, \"quoted\" ü"
    };
    block.insert("text".into(), json!(text));
    if rarely(rng, 5) {
        block.insert("cache_control".into(), json!({"type": "ephemeral"}));
    }
    Value::Object(block)
}

fn user_block(rng: &mut fastrand::Rng, n: usize) -> Value {
    match rng.u8(..24) {
        0 => {
            json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}})
        }
        1 => json!({"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}}),
        2 => {
            json!({"type": "image", "source": {"type": "url", "url": "https://x.test/b.png", "x": 1}})
        }
        3 => json!({"type": "image", "source": {"type": "file", "file_id": "file_1"}}),
        4 => {
            json!({"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc"}})
        }
        5..10 => tool_result(rng, n),
        _ => text_block(rng),
    }
}

fn tool_result(rng: &mut fastrand::Rng, n: usize) -> Value {
    let mut block = Map::new();
    block.insert("type".into(), json!("tool_result"));
    block.insert("tool_use_id".into(), json!(format!("toolu_{n}")));
    let content = match rng.u8(..12) {
        0 => None,
        1 => Some(Value::Null),
        2 => Some(json!("")),
        3 => Some(json!([])),
        4 => Some(json!([{"type": "text", "text": "only"}])),
        5 => Some(json!([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}])),
        6 => Some(json!([{"type": "text", "text": "c", "cache_control": {"type": "ephemeral"}}])),
        _ => Some(json!("file contents\nline 2")),
    };
    if let Some(content) = content {
        block.insert("content".into(), content);
    }
    match rng.u8(..10) {
        0 => {
            block.insert("is_error".into(), json!(true));
        }
        1 => {
            block.insert("is_error".into(), json!(false));
        }
        _ => {}
    }
    Value::Object(block)
}

fn assistant_block(rng: &mut fastrand::Rng, n: usize) -> Value {
    match rng.u8(..20) {
        0..5 => {
            let input = match rng.u8(..10) {
                0 => None,
                1 => Some(json!("not an object")),
                _ => Some(json!({"command": "ls -la", "n": 1.5, "deep": {"k": [1, 2]}})),
            };
            let mut block = Map::new();
            block.insert("type".into(), json!("tool_use"));
            block.insert("id".into(), json!(format!("toolu_{n}")));
            block.insert("name".into(), json!("bash"));
            if let Some(input) = input {
                block.insert("input".into(), input);
            }
            Value::Object(block)
        }
        5 | 6 => {
            let signature = pick(rng, &["EqQBCgIYAhIM", "llmux:unsigned"]);
            json!({"type": "thinking", "thinking": "plan", "signature": signature})
        }
        7 => json!({"type": "thinking", "thinking": "unsigned"}),
        8 => json!({"type": "redacted_thinking", "data": "EmwKAhgB"}),
        9 => {
            json!({"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "q"}})
        }
        _ => text_block(rng),
    }
}

fn message(rng: &mut fastrand::Rng, role: &str, n: usize) -> Value {
    let mut message = Map::new();
    message.insert("role".into(), json!(role));
    let content = if rng.u8(..3) == 0 {
        let text = if rarely(rng, 15) { "" } else { "Say hello." };
        json!(text)
    } else {
        let count = if rarely(rng, 20) { 0 } else { rng.usize(1..4) };
        let blocks: Vec<Value> = (0..count)
            .map(|_| match role {
                "assistant" => assistant_block(rng, n),
                _ => user_block(rng, n.saturating_sub(1)),
            })
            .collect();
        Value::Array(blocks)
    };
    message.insert("content".into(), content);
    if rarely(rng, 12) {
        message.insert("x_note".into(), json!("kept"));
    }
    Value::Object(message)
}

/// Alternating turns, now and then two of one role or a system message.
fn messages(rng: &mut fastrand::Rng) -> Value {
    let count = rng.usize(1..6);
    let mut out = Vec::new();
    let mut calls = Vec::new();
    for n in 0..count {
        let role = match () {
            _ if rarely(rng, 25) => "system",
            _ if rarely(rng, 20) => "user",
            _ if n % 2 == 0 => "user",
            _ => "assistant",
        };
        let mut message = message(rng, role, n);
        answer_known_calls(&mut message, &mut calls);
        out.push(message);
    }
    Value::Array(out)
}

/// Points each tool result at a call made earlier (a result for no call is an error the
/// decoder reports, which would waste the case), or makes it text when there is none, and
/// notes the calls `message` makes.
fn answer_known_calls(message: &mut Value, calls: &mut Vec<Value>) {
    let Some(blocks) = message.get_mut("content").and_then(Value::as_array_mut) else {
        return;
    };
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("tool_use") => calls.push(block["id"].clone()),
            Some("tool_result") => match calls.last() {
                Some(id) => block["tool_use_id"] = id.clone(),
                None => *block = json!({"type": "text", "text": "no call yet"}),
            },
            _ => {}
        }
    }
}

fn tool(rng: &mut fastrand::Rng) -> Value {
    match rng.u8(..12) {
        0 => json!({"type": "web_search_20250305", "name": "web_search", "max_uses": 3}),
        1 => json!({"name": "no_schema"}),
        2 => {
            json!({"name": "bad_description", "description": 7, "input_schema": {"type": "object"}})
        }
        3 => json!({"type": "custom", "name": "c", "input_schema": {"type": "object"}}),
        4 => {
            json!({"name": "cached", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}})
        }
        // Over the tools memo's 1 KiB floor: a list sent again is blanked before parsing.
        5 => json!({"name": "read", "description": "Reads a file. ".repeat(80),
            "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}),
        _ => json!({"name": "bash", "description": "Run a command",
            "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}),
    }
}

fn system(rng: &mut fastrand::Rng) -> Value {
    match rng.u8(..8) {
        0 => json!([{"type": "text", "text": "Be brief."}]),
        1 => json!([]),
        2 => json!([{"type": "image", "source": {"type": "url", "url": "https://x.test/s.png"}}]),
        3 | 4 => json!([{"type": "text", "text": "You are Claude Code."},
            {"type": "text", "text": "Long prompt", "cache_control": {"type": "ephemeral"}}]),
        _ => json!("You are a helpful assistant."),
    }
}

/// The optional top-level members, each present now and then.
fn optional_members(rng: &mut fastrand::Rng, body: &mut Vec<(String, Value)>) {
    maybe_stream(rng, body);
    let value = system(rng);
    sometimes(body, "system", value, rng);
    let thinking = pick(
        rng,
        &[
            json!({"type": "enabled", "budget_tokens": 2048}),
            json!({"type": "enabled", "budget_tokens": 512}),
            json!({"type": "enabled", "budget_tokens": 9000}),
            json!({"type": "disabled"}),
            json!({"type": "adaptive"}),
        ],
    );
    sometimes(body, "thinking", thinking, rng);
    sometimes(body, "temperature", pick(rng, &[json!(0.2), json!(1)]), rng);
    sometimes(body, "top_p", json!(0.9), rng);
    sometimes(body, "top_k", json!(40), rng);
    let stop = pick(rng, &[json!(["END"]), json!([])]);
    sometimes(body, "stop_sequences", stop, rng);
    let count = rng.usize(1..3);
    let tools: Vec<Value> = (0..count).map(|_| tool(rng)).collect();
    sometimes(body, "tools", Value::Array(tools), rng);
    let choice = pick(
        rng,
        &[
            json!({"type": "auto"}),
            json!({"type": "any", "disable_parallel_tool_use": true}),
            json!({"type": "auto", "disable_parallel_tool_use": false}),
            json!({"type": "none", "disable_parallel_tool_use": true}),
            json!({"type": "tool", "name": "bash"}),
            json!({"type": "none"}),
        ],
    );
    sometimes(body, "tool_choice", choice, rng);
    let metadata = pick(
        rng,
        &[
            json!({"user_id": "user_abc"}),
            json!({"user_id": "u", "team": "t"}),
            json!({}),
            json!({"user_id": 5}),
        ],
    );
    sometimes(body, "metadata", metadata, rng);
    sometimes(body, "service_tier", json!("auto"), rng);
    sometimes(body, "container", Value::Null, rng);
}

/// A random Messages request, as bytes: members in random order, compact or pretty.
fn request(rng: &mut fastrand::Rng) -> Vec<u8> {
    let model = json!(pick(rng, &["claude-sonnet-4-5", "alias", "ü/model"]));
    let mut members = vec![
        ("model".to_owned(), model),
        ("messages".to_owned(), messages(rng)),
    ];
    if !rarely(rng, 30) {
        let cap = pick(rng, &[json!(8192), json!(1024)]);
        members.push(("max_tokens".to_owned(), cap));
    }
    optional_members(rng, &mut members);
    body_of(rng, members)
}

#[test]
fn a_request_passed_through_is_what_the_encoder_writes() {
    check_request_pass_through(
        Protocol::Anthropic,
        request,
        decode_request_checked,
        encode_request,
    );
}

#[test]
fn stream_false_leaves_the_body_with_its_comma() {
    let body = br#"{"model": "m", "stream": false, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}"#;
    assert_eq!(
        sent_as_is(Protocol::Anthropic, body, decode_request_checked, "claude"),
        r#"{"model": "claude",  "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}"#
    );
}

/// The property behind the message memo (`decode::MESSAGE_MEMO`): a request read through it
/// decodes to what decoding every message gives (the request and the pass-through's edits),
/// and it is refused exactly when decoding every message is. Random conversations that
/// grow a turn or two a request and share one memo; now and then a turn changes in place,
/// two turns of one role follow each other, a tool result answers no call, or a turn is
/// not one the decoder takes.
#[test]
fn a_request_read_through_the_message_memo_decodes_as_every_message_decoded() {
    use super::decode::{decode_every_message, decode_with_memo};
    use crate::protocol::message_memo::MessageMemo;

    let memo = MessageMemo::default();
    let (mut decoded, mut passed, mut refused, mut sent) = (0, 0, 0, 0);
    let mut with_tools = 0;
    for seed in 0..1500 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut members = vec![
            ("model".to_owned(), json!("claude-sonnet-4-5")),
            ("max_tokens".to_owned(), json!(8192)),
        ];
        optional_members(&mut rng, &mut members);
        rng.shuffle(&mut members);
        let pretty = rng.bool();
        let (mut messages, mut calls) = (Vec::new(), Vec::new());
        for turn in 0..5 {
            for _ in 0..rng.usize(1..3) {
                let n = messages.len();
                let role = match () {
                    _ if rarely(&mut rng, 25) => "system",
                    _ if rarely(&mut rng, 20) => "user",
                    _ if n % 2 == 0 => "user",
                    _ => "assistant",
                };
                let mut next = match rng.u8(..40) {
                    0 => json!({"role": "robot", "content": "beep"}),
                    1 => json!({"role": "user", "content": 5}),
                    _ => message(&mut rng, role, n),
                };
                if !rarely(&mut rng, 30) {
                    answer_known_calls(&mut next, &mut calls);
                }
                messages.push(next);
            }
            if turn > 0 && rarely(&mut rng, 5) {
                let at = rng.usize(..messages.len());
                let role = if at.is_multiple_of(2) {
                    "user"
                } else {
                    "assistant"
                };
                messages[at] = message(&mut rng, role, at);
            }
            let body = conversation_body(&members, &messages, pretty);
            sent += messages.len();
            with_tools += usize::from(members.iter().any(|(name, _)| name == "tools"));
            let text = String::from_utf8_lossy(&body);
            match decode_every_message(&body) {
                Ok(every) => {
                    decoded += 1;
                    passed += usize::from(every.1.is_some());
                    let through_memo = decode_with_memo(&body, &memo);
                    assert_eq!(
                        through_memo.as_ref(),
                        Some(&every),
                        "seed {seed}, turn {turn}: {text}"
                    );
                }
                Err(_) => {
                    refused += 1;
                    let through_memo = decode_with_memo(&body, &memo);
                    assert!(through_memo.is_none(), "seed {seed}, turn {turn}: {text}");
                    // The mistake stays in the conversation: start it again.
                    messages.clear();
                    calls.clear();
                }
            }
        }
    }
    let tally = MemoTally {
        decoded,
        passed,
        refused,
        sent,
        with_tools,
    };
    assert_memo_worked(&memo, &tally);
}

#[test]
fn a_large_request_with_a_tool_result_for_no_call_is_refused_naming_the_field() {
    let mut messages = vec![json!({"role": "user", "content": "Find the bug."})];
    for turn in 0..20 {
        let id = format!("toolu_{turn}");
        messages.push(json!({"role": "assistant", "content": [
            {"type": "tool_use", "id": id, "name": "Bash", "input": {"command": "cat f.rs"}}]}));
        let code = format!("fn f{turn}() {{\n    println!(\"{turn}\\t\");\n}}\n").repeat(60);
        messages.push(json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": id, "content": code}]}));
    }
    let body = |messages: &[Value]| {
        serde_json::to_vec(&json!({"model": "claude", "max_tokens": 1024, "messages": messages}))
            .unwrap()
    };
    let good = body(&messages);
    assert!(
        good.len() >= 32 << 10,
        "{} bytes: below the memo's size",
        good.len()
    );
    let (_, edits) = decode_request_checked(&good).unwrap();
    assert!(edits.is_some(), "the request goes as it came");
    // The same conversation, its fourth turn answering a call no turn made: the earlier
    // turns come from the memo now, and the check across turns still runs.
    messages[4]["content"][0]["tool_use_id"] = json!("toolu_none");
    let err = decode_request_checked(&body(&messages)).unwrap_err();
    assert_eq!(err.status(), 422, "{err}");
    assert_eq!(
        err.param(),
        Some("messages[4].content[0].tool_use_id"),
        "{err}"
    );
}

/// A request below the message memo's size has its tools read through the tools memo: it
/// decodes as decoding it whole does, and is refused exactly when that refuses it, while
/// a list of tools sent before is not decoded again.
#[test]
fn a_request_read_through_the_tools_memo_decodes_as_one_decoded_whole() {
    use super::decode::{decode_every_message, decode_with_tools_memo};

    crate::protocol::round_trip_support::check_tools_memo(
        request,
        decode_every_message,
        decode_with_tools_memo,
    );
}

/// A list of tools sent before is skipped as a blanked string on both paths, and a kept
/// list under a nested `tools` key (a tool call's input, before the request's own list) is
/// not taken for the request's: the body is read again as it came. Each decodes as
/// decoding it whole does.
#[test]
fn a_list_sent_again_is_skipped_and_a_nested_tools_key_is_not_taken_for_it() {
    use super::decode::{decode_every_message, decode_with_memo, decode_with_tools_memo};
    use crate::protocol::message_memo::MessageMemo;
    use crate::protocol::tools_memo::ToolsMemo;

    // Longer than the memo's `BLANK_FROM` (a short list is walked, not looked for).
    let kept = json!([{"name": "read", "description": "Reads a file. ".repeat(80),
                       "input_schema": {"type": "object"}}]);
    let other = json!([{"name": "write", "input_schema": {"type": "object"}}]);
    let hi = json!([{"role": "user", "content": "hi"}]);
    let nested_call = json!([
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "t1", "name": "read", "input": {"tools": kept}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]},
    ]);
    let body = |messages: &Value, tools: &Value| {
        serde_json::to_vec(
            &json!({"model": "m", "max_tokens": 10, "messages": messages, "tools": tools}),
        )
        .unwrap()
    };
    let plain = body(&hi, &kept);
    let nested = body(&nested_call, &other);
    let memo = ToolsMemo::default();
    let whole = |body: &[u8]| decode_every_message(body).unwrap();
    assert_eq!(decode_with_tools_memo(&plain, &memo), Some(whole(&plain)));
    assert_eq!((memo.decoded(), memo.blanked()), (1, 0));
    assert_eq!(decode_with_tools_memo(&plain, &memo), Some(whole(&plain)));
    assert_eq!(
        (memo.decoded(), memo.blanked()),
        (1, 1),
        "sent again: skipped"
    );
    assert_eq!(decode_with_tools_memo(&nested, &memo), Some(whole(&nested)));
    assert_eq!(
        (memo.decoded(), memo.blanked()),
        (2, 2),
        "found nested, read again"
    );

    let turns: Vec<Value> = (0..40)
        .map(|i| {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            json!({"role": role, "content": format!("turn {i}: {}", "text ".repeat(200))})
        })
        .collect();
    let large = body(&Value::Array(turns), &kept);
    let memo = MessageMemo::default();
    let first = decode_with_memo(&large, &memo).unwrap();
    let again = decode_with_memo(&large, &memo).unwrap();
    let every = whole(&large);
    assert_eq!((first, again), (every.clone(), every));
    assert_eq!((memo.tools().decoded(), memo.tools().blanked()), (1, 1));
}

/// A list blanked where it comes before the messages is not part of the conversation's head
/// as the memo keeps it: the conversation's next request, as the client sends it, finds
/// its earlier turns.
#[test]
fn a_list_blanked_before_the_messages_stays_out_of_the_conversations_head() {
    use super::decode::{decode_every_message, decode_with_memo};
    use crate::protocol::message_memo::MessageMemo;

    let kept = json!([{"name": "read", "description": "Reads a file. ".repeat(80),
                       "input_schema": {"type": "object"}}]);
    let body = |model: &str, turns: usize| {
        let turns: Vec<Value> = (0..turns)
            .map(|i| {
                let role = if i % 2 == 0 { "user" } else { "assistant" };
                json!({"role": role, "content": format!("turn {i}: {}", "text ".repeat(200))})
            })
            .collect();
        format!(
            r#"{{"model":"{model}","tools":{kept},"max_tokens":10,"messages":{}}}"#,
            Value::Array(turns)
        )
        .into_bytes()
    };
    let memo = MessageMemo::default();
    let decode = |body: &[u8]| {
        let decoded = decode_with_memo(body, &memo).unwrap();
        assert_eq!(decoded, decode_every_message(body).unwrap());
    };
    decode(&body("first", 41));
    decode(&body("second", 41));
    assert_eq!(memo.tools().blanked(), 1, "the second conversation's list");
    let left_out = memo.left_out();
    decode(&body("second", 43));
    assert!(
        memo.left_out() >= left_out + 40,
        "{} messages left out, {left_out} before",
        memo.left_out()
    );
}

/// A member given twice in a content block is refused, below the message memo's size and
/// above it: the block is read as a value, which would keep one copy for the stages (the
/// prompt redaction among them) while the client's bytes went upstream with both.
#[test]
fn a_member_given_twice_in_a_block_is_refused() {
    let small = r#"{"model":"m","max_tokens":10,"messages":[{"role":"user","content":[{"type":"text","text":"sk-live-1","text":"hi"}]}]}"#;
    let padding = json!({"role": "user", "content": "x".repeat(40 << 10)});
    let answer = json!({"role": "assistant", "content": "ok"});
    let large = small.replace(
        r#""messages":["#,
        &format!(r#""messages":[{padding},{answer},"#),
    );
    assert!(large.len() >= 32 << 10);
    for body in [small, large.as_str()] {
        let err = decode_request_checked(body.as_bytes()).unwrap_err();
        assert_eq!(err.status(), 422, "{err}");
        assert!(err.to_string().contains("duplicate field"), "{err}");
    }
}
