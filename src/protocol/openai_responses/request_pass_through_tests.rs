//! The property behind the request pass-through for Responses clients: whenever the decoder
//! says a Responses request may go as it came, the bytes sent (the client's, patched) are
//! the same JSON as llmux's own encoding of the decoded request (`null` members read as
//! absent ones, numbers by value), a message item's `type` left out and an assistant's text
//! said as a string aside (the API reads both as the encoder writes them). Random requests
//! of the shapes Codex and the SDKs send, and some the encoder does not write back, compact
//! and pretty-printed, members in random order.

use serde_json::{Map, Value, json};

use super::decode::{decode_request_checked, decode_tools_as_values};
use super::encode_request;
use crate::model::Protocol;
use crate::protocol::round_trip_support::{
    MemoTally, assert_memo_worked, body_of, check_request_pass_through_as, maybe_stream, pick,
    rarely, sent_as_is, sometimes,
};

/// `value` with the members of `extra` added.
fn with(mut value: Value, extra: &[(&str, Value)]) -> Value {
    if let Value::Object(fields) = &mut value {
        for (key, member) in extra {
            fields.insert((*key).to_owned(), member.clone());
        }
    }
    value
}

fn input_text(rng: &mut fastrand::Rng) -> Value {
    let text = json!({"type": "input_text", "text": "Fix the \"bug\" ü"});
    match rng.u8(..30) {
        0 => json!({"type": "output_text", "text": "as output"}),
        1 => json!({"type": "text", "text": "plain"}),
        2 => with(text, &[("item", json!({"id": "x"}))]),
        3 | 4 => with(text, &[("cache_hint", json!(1))]),
        _ => text,
    }
}

fn user_part(rng: &mut fastrand::Rng) -> Value {
    match rng.u8(..20) {
        0 => json!({"type": "input_image", "image_url": "https://x.test/a.png", "detail": "high"}),
        1 => {
            json!({"type": "input_image", "image_url": "data:image/png;base64,iVBO", "detail": "auto"})
        }
        2 => json!({"type": "input_image", "image_url": "https://x.test/b.png"}),
        3 => json!({"type": "input_image", "file_id": "file_1", "detail": "low"}),
        4 => json!({"type": "input_file", "file_id": "file_2"}),
        5 if rarely(rng, 4) => json!({"type": "refusal", "refusal": "no"}),
        _ => input_text(rng),
    }
}

fn user_content(rng: &mut fastrand::Rng) -> Value {
    match rng.u8(..12) {
        0 if rarely(rng, 3) => json!([]),
        0..4 => json!("Run the tests"),
        4 => json!(""),
        _ => {
            let count = rng.usize(1..4);
            Value::Array((0..count).map(|_| user_part(rng)).collect())
        }
    }
}

fn user_message(rng: &mut fastrand::Rng) -> Value {
    let role = pick(rng, &["user", "user", "user", "developer", "system"]);
    let mut item = json!({"type": "message", "role": role, "content": user_content(rng)});
    if rarely(rng, 6) {
        item = with(item, &[("id", json!("msg_u1"))]);
    }
    if rng.u8(..4) == 0 {
        item.as_object_mut().unwrap().remove("type");
    }
    item
}

fn output_text(rng: &mut fastrand::Rng) -> Value {
    let text = json!({"type": "output_text", "text": "Done. ü"});
    match rng.u8(..20) {
        0 => json!({"type": "refusal", "refusal": "I can't"}),
        1 => json!({"type": "refusal", "refusal": "I can't", "x": 1}),
        2 => json!({"type": "input_text", "text": "wrong side"}),
        3 => with(text, &[("item", json!({"id": "x"}))]),
        4..8 => with(text, &[("annotations", json!([])), ("logprobs", json!([]))]),
        _ => text,
    }
}

fn assistant_message(rng: &mut fastrand::Rng) -> Value {
    let content = match rng.u8(..20) {
        0..4 => json!("said as a string"),
        4 => json!(""),
        5 => json!([]),
        _ => {
            let count = rng.usize(1..3);
            Value::Array((0..count).map(|_| output_text(rng)).collect())
        }
    };
    let mut item = json!({"type": "message", "role": "assistant", "content": content});
    if rng.u8(..4) == 0 {
        item.as_object_mut().unwrap().remove("type");
    }
    match rng.u8(..4) {
        0 => item,
        1 => with(
            item,
            &[("id", json!("msg_a1")), ("status", json!("completed"))],
        ),
        _ => with(item, &[("id", json!("msg_a2"))]),
    }
}

fn function_call(rng: &mut fastrand::Rng, n: usize) -> Value {
    let mut item = json!({"type": "function_call", "call_id": format!("call_{n}"),
        "name": "shell", "arguments": "{\"command\":[\"ls\"]}"});
    if rng.bool() {
        item = with(
            item,
            &[
                ("id", json!(format!("fc_{n}"))),
                ("status", json!("completed")),
            ],
        );
    }
    if rarely(rng, 20) {
        item.as_object_mut().unwrap().remove("arguments");
    }
    item
}

fn function_call_output(rng: &mut fastrand::Rng, n: usize) -> Value {
    let output = match rng.u8(..8) {
        0 => json!(""),
        1 => json!([{"type": "input_text", "text": "listing"}]),
        2 => json!([]),
        3 => json!([{"type": "output_text", "text": "listing"}]),
        _ => json!("file_a\nfile_b"),
    };
    let item =
        json!({"type": "function_call_output", "call_id": format!("call_{n}"), "output": output});
    if rarely(rng, 5) {
        return with(item, &[("id", json!("fco_1"))]);
    }
    item
}

fn summary_part(rng: &mut fastrand::Rng) -> Value {
    match rng.u8(..20) {
        0 => json!({"type": "summary_text", "text": ""}),
        1 => json!({"type": "text", "text": "Thinking"}),
        _ => json!({"type": "summary_text", "text": "**Planning** the change"}),
    }
}

fn reasoning(rng: &mut fastrand::Rng) -> Value {
    let mut item = Map::new();
    item.insert("type".into(), json!("reasoning"));
    if rng.bool() {
        item.insert("id".into(), json!("rs_1"));
    }
    match rng.u8(..12) {
        0 => {}
        1 => {
            item.insert("summary".into(), Value::Null);
        }
        2..5 => {
            item.insert("summary".into(), json!([]));
        }
        _ => {
            let count = rng.usize(1..3);
            let parts = (0..count).map(|_| summary_part(rng)).collect();
            item.insert("summary".into(), Value::Array(parts));
        }
    }
    match rng.u8(..10) {
        0 => {
            item.insert("content".into(), json!([]));
        }
        1 => {
            item.insert(
                "content".into(),
                json!([{"type": "reasoning_text", "text": "raw"}]),
            );
        }
        2 => {
            item.insert("content".into(), Value::Null);
        }
        _ => {}
    }
    match rng.u8(..3) {
        0 => {}
        1 => {
            item.insert("encrypted_content".into(), json!("gAAAAB..."));
        }
        _ => {
            item.insert("encrypted_content".into(), Value::Null);
        }
    }
    Value::Object(item)
}

/// Items the model has no shape for: they travel whole.
fn opaque_item(rng: &mut fastrand::Rng, n: usize) -> Value {
    pick(
        rng,
        &[
            json!({"type": "custom_tool_call", "call_id": format!("call_{n}"), "name": "apply_patch", "input": "*** Begin Patch"}),
            json!({"type": "custom_tool_call_output", "call_id": format!("call_{n}"), "output": "ok"}),
            json!({"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search", "query": "rust"}}),
            json!({"type": "item_reference", "id": "msg_0"}),
        ],
    )
}

fn item(rng: &mut fastrand::Rng, n: usize) -> Value {
    match rng.u8(..14) {
        0..4 => user_message(rng),
        4..7 => assistant_message(rng),
        7 | 8 => function_call(rng, n),
        9 | 10 => function_call_output(rng, n),
        11 | 12 => reasoning(rng),
        _ => opaque_item(rng, n),
    }
}

fn input(rng: &mut fastrand::Rng) -> Option<Value> {
    match rng.u8(..40) {
        0 => None,
        1 => Some(Value::Null),
        2 => Some(json!("Hello")),
        _ => {
            let count = rng.usize(1..6);
            Some(Value::Array((0..count).map(|n| item(rng, n)).collect()))
        }
    }
}

fn tool(rng: &mut fastrand::Rng) -> Value {
    match rng.u8(..8) {
        0 => json!({"type": "web_search"}),
        1 => json!({"type": "custom", "name": "apply_patch", "format": {"type": "grammar"}}),
        2 => json!({"type": "function", "name": "noop", "parameters": null, "strict": null}),
        3 => json!({"type": "function", "name": "read", "description": "Reads a file. ".repeat(80),
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}),
        _ => json!({"type": "function", "name": "shell", "description": "Runs a command",
            "strict": false,
            "parameters": {"type": "object", "properties": {"command": {"type": "array"}}}}),
    }
}

fn text_config(rng: &mut fastrand::Rng) -> Value {
    pick(
        rng,
        &[
            json!({"verbosity": "low"}),
            json!({"format": {"type": "text"}}),
            json!({"format": {"type": "json_object"}}),
            json!({"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": true}}),
            json!({"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": "yes"}}),
            json!({"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "description": 3}}),
            json!({"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "extra": 1}}),
            json!({}),
            json!({"verbosity": null}),
        ],
    )
}

/// The optional top-level members, each present now and then.
fn optional_members(rng: &mut fastrand::Rng, body: &mut Vec<(String, Value)>) {
    maybe_stream(rng, body);
    let instructions = pick(
        rng,
        &[
            json!("You are Codex."),
            json!(""),
            Value::Null,
            json!([{"type": "message", "role": "system", "content": "x"}]),
        ],
    );
    sometimes(body, "instructions", instructions, rng);
    let count = rng.usize(0..3);
    let tools: Vec<Value> = (0..count).map(|_| tool(rng)).collect();
    sometimes(body, "tools", Value::Array(tools), rng);
    let choice = pick(
        rng,
        &[
            json!("auto"),
            json!("required"),
            json!("none"),
            json!({"type": "function", "name": "shell"}),
            json!({"type": "web_search"}),
        ],
    );
    sometimes(body, "tool_choice", choice, rng);
    sometimes(body, "parallel_tool_calls", json!(rng.bool()), rng);
    sometimes(body, "temperature", pick(rng, &[json!(0.2), json!(1)]), rng);
    sometimes(body, "top_p", json!(0.9), rng);
    sometimes(body, "max_output_tokens", json!(4096), rng);
    let reasoning = pick(
        rng,
        &[
            json!({"effort": "medium", "summary": "auto"}),
            json!({"effort": "xhigh"}),
            json!({"effort": "ultra"}),
            json!({"summary": "detailed"}),
            json!({}),
            json!({"effort": null}),
        ],
    );
    sometimes(body, "reasoning", reasoning, rng);
    let text = text_config(rng);
    sometimes(body, "text", text, rng);
    sometimes(body, "store", json!(false), rng);
    sometimes(body, "include", json!(["reasoning.encrypted_content"]), rng);
    sometimes(body, "previous_response_id", json!("resp_0"), rng);
    sometimes(body, "metadata", json!({"session": "s1"}), rng);
    sometimes(body, "user", json!("dev@example.com"), rng);
    sometimes(body, "prompt_cache_key", json!("conv-1"), rng);
    sometimes(body, "service_tier", json!("auto"), rng);
    sometimes(
        body,
        "stream_options",
        json!({"include_obfuscation": false}),
        rng,
    );
}

/// A random Responses request, as bytes: members in random order, compact or pretty.
pub(crate) fn request(rng: &mut fastrand::Rng) -> Vec<u8> {
    let model = json!(pick(rng, &["gpt-5-codex", "alias", "ü/model"]));
    let mut members = vec![("model".to_owned(), model)];
    if let Some(input) = input(rng) {
        members.push(("input".to_owned(), input));
    }
    optional_members(rng, &mut members);
    body_of(rng, members)
}

/// The request and the pass-through's edits as the front-end decodes them
/// (`decode_request_checked`: these bodies are below the message memo's size, so their tools
/// go through the tools memo; the message memo has its own test below).
fn decoded_checked(
    body: &[u8],
) -> Result<(crate::model::Request, Option<crate::model::Edits>), crate::Error> {
    decode_request_checked(body).map(|(request, _, edits)| (request, edits))
}

/// The same, every tool read from its value.
fn tools_as_values(
    body: &[u8],
) -> Result<(crate::model::Request, Option<crate::model::Edits>), crate::Error> {
    decode_tools_as_values(body).map(|(request, _, edits)| (request, edits))
}

/// `body` in the encoder's words: a message item's `type` named, an assistant's text as
/// its one `output_text` part.
pub(crate) fn as_encoded(mut body: Value) -> Value {
    let items = body.get_mut("input").and_then(Value::as_array_mut);
    for item in items.into_iter().flatten() {
        let Some(fields) = item.as_object_mut() else {
            continue;
        };
        if !fields.contains_key("type") && fields.contains_key("role") {
            fields.insert("type".into(), json!("message"));
        }
        let assistant = fields.get("role") == Some(&json!("assistant"));
        if let (true, Some(Value::String(text))) = (assistant, fields.get("content")) {
            let part = json!([{"type": "output_text", "text": text}]);
            fields.insert("content".into(), part);
        }
    }
    body
}

#[test]
fn a_request_passed_through_is_what_the_encoder_writes() {
    check_request_pass_through_as(
        Protocol::OpenAiResponses,
        request,
        decoded_checked,
        encode_request,
        as_encoded,
    );
}

#[test]
fn a_request_whose_tools_are_read_as_values_passes_through_the_same_way() {
    check_request_pass_through_as(
        Protocol::OpenAiResponses,
        request,
        tools_as_values,
        encode_request,
        as_encoded,
    );
}

#[test]
fn stream_false_leaves_the_body_with_its_comma() {
    let body = br#"{"model": "m", "stream": false, "input": [{"type": "message", "role": "user", "content": "hi"}]}"#;
    assert_eq!(
        sent_as_is(Protocol::OpenAiResponses, body, decoded_checked, "gpt-5"),
        r#"{"model": "gpt-5",  "input": [{"type": "message", "role": "user", "content": "hi"}]}"#
    );
}

/// What Codex CLI sends (its `ResponsesApiRequest`: instructions, input items with
/// reasoning carried back encrypted, tools, `store: false`, the reasoning include) goes as
/// it came.
#[test]
fn a_codex_request_goes_as_it_came() {
    let body = br#"{"model":"gpt-5-codex","instructions":"You are Codex.","input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"list files"}]},{"type":"reasoning","summary":[{"type":"summary_text","text":"**Listing**"}],"encrypted_content":"gAAA"},{"type":"function_call","name":"shell","arguments":"{\"command\":[\"ls\"]}","call_id":"call_1"},{"type":"function_call_output","call_id":"call_1","output":"a\nb"},{"type":"message","role":"assistant","content":[{"type":"output_text","text":"Two files."}]}],"tools":[{"type":"function","name":"shell","description":"Runs a command","strict":false,"parameters":{"type":"object","properties":{"command":{"type":"array","items":{"type":"string"}}},"required":["command"]}}],"tool_choice":"auto","parallel_tool_calls":false,"reasoning":{"effort":"medium","summary":"auto"},"store":false,"stream":true,"include":["reasoning.encrypted_content"],"prompt_cache_key":"0199"}"#;
    let sent = sent_as_is(Protocol::OpenAiResponses, body, decoded_checked, "gpt-5");
    let expected = String::from_utf8_lossy(body).replace("gpt-5-codex", "gpt-5");
    assert_eq!(sent, expected);
}

/// Requests the encoder writes differently are encoded: a string input (a message item),
/// two assistant messages with no members of their own (one item), an empty list of tools
/// (left out), an empty `reasoning` (dropped).
#[test]
fn requests_the_encoder_changes_are_encoded() {
    let encoded = [
        r#"{"model":"m","input":"hi"}"#,
        r#"{"model":"m","input":[{"type":"message","role":"assistant","content":[{"type":"output_text","text":"a"}]},{"type":"message","role":"assistant","content":[{"type":"output_text","text":"b"}]}]}"#,
        r#"{"model":"m","input":[],"tools":[]}"#,
        r#"{"model":"m","input":[],"reasoning":{}}"#,
    ];
    for body in encoded {
        let (_, edits) = decoded_checked(body.as_bytes()).unwrap();
        assert!(edits.is_none(), "{body}");
        let (_, edits) = tools_as_values(body.as_bytes()).unwrap();
        assert!(edits.is_none(), "{body}");
    }
}

/// The SDKs' short messages (`EasyInputMessage`: no `type`, an assistant's text as a
/// string) go as they came: the API reads them as the items the encoder would write.
#[test]
fn easy_input_messages_go_as_they_came() {
    let body = br#"{"model":"m","instructions":"Be brief.","input":[{"role":"user","content":"Question?"},{"role":"assistant","content":"Answer."},{"role":"user","content":"And then?"}],"temperature":0.2,"max_output_tokens":512,"user":"u1","store":false,"stream":true}"#;
    let sent = sent_as_is(Protocol::OpenAiResponses, body, decoded_checked, "m");
    assert_eq!(sent.as_bytes(), body);
}

/// A body of `members` with `items` as its input at `at`: one conversation's requests,
/// written the same way each time, as a client writes them.
fn conversation_body(
    members: &[(String, Value)],
    at: usize,
    items: &[Value],
    pretty: bool,
) -> Vec<u8> {
    let mut members = members.to_vec();
    members.insert(
        at.min(members.len()),
        ("input".into(), Value::Array(items.to_vec())),
    );
    let body = Value::Object(members.into_iter().collect());
    if pretty {
        serde_json::to_vec_pretty(&body).unwrap()
    } else {
        serde_json::to_vec(&body).unwrap()
    }
}

/// The property behind the message memo for Responses requests (`memo.rs`): a request read
/// through it decodes to what reading the input as values gives (the request, what its
/// answer echoes, and the pass-through's edits), and it is refused exactly when that is.
/// Random conversations that grow an item or two a request and share one memo; now and
/// then an item changes in place, or one is not an item the decoder takes.
#[test]
fn a_request_read_through_the_message_memo_decodes_as_its_input_read_as_values() {
    use super::memo::decode_with_memo;
    use crate::protocol::message_memo::MessageMemo;

    let memo = MessageMemo::default();
    let (mut decoded, mut passed, mut refused, mut sent) = (0, 0, 0, 0);
    let mut with_tools = 0;
    for seed in 0..1500 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut members = vec![("model".to_owned(), json!("gpt-5-codex"))];
        optional_members(&mut rng, &mut members);
        rng.shuffle(&mut members);
        let at = rng.usize(..=members.len());
        let pretty = rng.bool();
        let mut items: Vec<Value> = Vec::new();
        for turn in 0..5 {
            for _ in 0..rng.usize(1..3) {
                let n = items.len();
                let next = match rng.u8(..60) {
                    0 => json!({"type": "message", "role": "robot", "content": "beep"}),
                    1 => json!({"type": "function_call", "name": "shell"}),
                    2 => json!(5),
                    _ => item(&mut rng, n),
                };
                items.push(next);
            }
            if turn > 0 && rarely(&mut rng, 5) {
                let at = rng.usize(..items.len());
                items[at] = item(&mut rng, at);
            }
            let body = conversation_body(&members, at, &items, pretty);
            sent += items.len();
            with_tools += usize::from(members.iter().any(|(name, _)| name == "tools"));
            let text = String::from_utf8_lossy(&body);
            let through_memo = decode_with_memo(&body, &memo);
            match decode_tools_as_values(&body) {
                Ok((request, options, edits)) => {
                    decoded += 1;
                    passed += usize::from(edits.is_some());
                    let (memo_request, memo_options, memo_edits) =
                        through_memo.unwrap_or_else(|| panic!("seed {seed}, turn {turn}: {text}"));
                    assert_eq!(memo_request, request, "seed {seed}, turn {turn}: {text}");
                    assert_eq!(memo_edits, edits, "seed {seed}, turn {turn}: {text}");
                    assert_eq!(memo_options.echo, options.echo, "seed {seed}, turn {turn}");
                    let tools = |options: &super::ClientOptions| {
                        options
                            .tools
                            .as_deref()
                            .map(|t| serde_json::from_str::<Value>(t).unwrap())
                    };
                    assert_eq!(
                        tools(&memo_options),
                        tools(&options),
                        "seed {seed}, turn {turn}"
                    );
                }
                Err(_) => {
                    refused += 1;
                    assert!(through_memo.is_none(), "seed {seed}, turn {turn}: {text}");
                    // The mistake stays in the conversation: start it again.
                    items.clear();
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
    assert!(
        memo.tools().blanked() * 20 > with_tools,
        "{} lists of tools blanked before parsing, of {with_tools}",
        memo.tools().blanked()
    );
}

/// A message made of one item keeps the facts found for it in the conversation's last
/// request (a tool's output examined once, not once a turn); a run of assistant-side items
/// joined into one message gets facts of its own.
#[test]
fn a_repeated_items_facts_come_with_it() {
    use super::memo::decode_with_memo;
    use crate::protocol::message_memo::MessageMemo;

    let memo = MessageMemo::default();
    let mut items = vec![
        json!({"type": "message", "role": "user", "content": "Run the tests"}),
        json!({"type": "reasoning", "summary": [], "encrypted_content": "gAAA"}),
        json!({"type": "function_call", "call_id": "call_1", "name": "shell", "arguments": "{}"}),
        json!({"type": "function_call_output", "call_id": "call_1", "output": "1 passed"}),
    ];
    let body =
        |items: &[Value]| conversation_body(&[("model".into(), json!("m"))], 1, items, false);
    let (first, _, _) = decode_with_memo(&body(&items), &memo).unwrap();
    // user, the reasoning and the call joined into one assistant message, the output.
    assert_eq!(first.messages.len(), 3);
    let facts = first
        .message_facts
        .of(&first.messages)
        .expect("facts for the messages");
    facts[1].pytest_output.set(true).unwrap();
    facts[2].pytest_output.set(true).unwrap();

    items.push(json!({"type": "message", "role": "assistant", "content": "Done."}));
    let (next, _, _) = decode_with_memo(&body(&items), &memo).unwrap();
    assert_eq!(next.messages.len(), 4);
    let facts = next
        .message_facts
        .of(&next.messages)
        .expect("facts for the messages");
    assert_eq!(
        facts[2].pytest_output.get(),
        Some(&true),
        "the output's fact came with it"
    );
    assert_eq!(
        facts[1].pytest_output.get(),
        None,
        "a joined message's facts are its own"
    );
    assert_eq!(facts[3].pytest_output.get(), None);
}

/// A member given twice in an item or a part is refused, below the message memo's size and
/// above it: read with one copy, the item would be checked by the stages (the prompt
/// redaction among them) with that copy and sent upstream as it came, with both.
#[test]
fn a_member_given_twice_in_an_item_is_refused() {
    let small = [
        r#"{"model":"m","input":[{"type":"message","role":"user","content":"sk-live-1","content":"hi"}]}"#,
        r#"{"model":"m","input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"sk-live-1","text":"hi"}]}]}"#,
        r#"{"model":"m","input":[{"type":"function_call_output","call_id":"c","output":"a","output":"b"}]}"#,
    ];
    let padding = json!({"type": "message", "role": "user", "content": "x".repeat(40 << 10)});
    for body in small {
        let err = decode_request_checked(body.as_bytes()).unwrap_err();
        assert_eq!(err.status(), 422, "{err}");
        assert!(err.to_string().contains("duplicate field"), "{body}: {err}");
        // The same above the memo's size: its path refuses too, and the error is the same.
        let large = body.replace(r#""input":["#, &format!(r#""input":[{padding},"#));
        assert!(large.len() >= 32 << 10);
        let err = decode_request_checked(large.as_bytes()).unwrap_err();
        assert_eq!(err.status(), 422, "{err}");
        assert!(
            err.to_string().contains("duplicate field"),
            "{large:.200}: {err}"
        );
    }
}
