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
    body_of, check_request_pass_through, conversation_body, maybe_stream, pick, rarely, sent_as_is,
    sometimes,
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
        // Over the tools memo's 1 KiB floor: a list sent again is blanked before parsing.
        5 => json!({"type": "function", "function": {
            "name": "read", "description": "Reads a file. ".repeat(80),
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}),
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
    maybe_stream(rng, body);
    let options = pick(
        rng,
        &[
            json!({"include_usage": true}),
            json!({"include_usage": false}),
            json!({}),
            json!({"include_usage": true, "continuous_usage_stats": true}),
        ],
    );
    sometimes(body, "stream_options", options, rng);
    sometimes(
        body,
        "temperature",
        pick(rng, &[json!(0.7), json!(1), json!(0)]),
        rng,
    );
    sometimes(body, "top_p", json!(0.95), rng);
    sometimes(body, "max_tokens", json!(1024), rng);
    sometimes(body, "max_completion_tokens", json!(2048), rng);
    let stop = pick(
        rng,
        &[json!("END"), json!(["a"]), json!(["a", "b"]), json!([])],
    );
    sometimes(body, "stop", stop, rng);
    sometimes(body, "seed", json!(-42), rng);
    sometimes(body, "presence_penalty", json!(0.5), rng);
    sometimes(body, "frequency_penalty", json!(-0.5), rng);
    let count = rng.usize(1..3);
    let tools: Vec<Value> = (0..count).map(|_| tool(rng)).collect();
    sometimes(body, "tools", Value::Array(tools), rng);
    let choice = tool_choice(rng);
    sometimes(body, "tool_choice", choice, rng);
    sometimes(body, "parallel_tool_calls", json!(false), rng);
    let effort = pick(rng, &[json!("high"), json!("minimal"), json!("turbo")]);
    sometimes(body, "reasoning_effort", effort, rng);
    let format = response_format(rng);
    sometimes(body, "response_format", format, rng);
    sometimes(body, "user", json!("user-7"), rng);
    sometimes(body, "n", json!(1), rng);
    sometimes(
        body,
        "metadata",
        json!({"team": "a", "nested": {"k": [1, 2]}}),
        rng,
    );
    sometimes(body, "logprobs", json!(true), rng);
    sometimes(body, "temperature_note", Value::Null, rng);
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

/// A message the decoder refuses, now and then: a conversation with one is an error.
fn message_or_mistake(rng: &mut fastrand::Rng) -> Value {
    match rng.u8(..40) {
        0 => json!({"role": "robot", "content": "beep"}),
        1 => json!({"role": "user", "content": 5}),
        2 => json!({"content": "no role"}),
        3 => json!("not an object"),
        _ => message(rng),
    }
}

/// The property behind the message memo (`decode::MESSAGE_MEMO`): a request read through it
/// decodes to what decoding every message gives (the request, the client's options, the
/// pass-through's edits), and it is refused exactly when decoding every message is. Random
/// conversations that grow a message or two a request (now and then one changes in place)
/// and share one memo, as an agent and its sub-agents do, formatted one way for a whole
/// conversation, as a client does.
#[test]
fn a_request_read_through_the_message_memo_decodes_as_every_message_decoded() {
    use super::decode::{decode_every_message, decode_with_memo};
    use crate::protocol::message_memo::MessageMemo;

    let memo = MessageMemo::default();
    let (mut decoded, mut passed, mut refused, mut sent) = (0, 0, 0, 0);
    let mut with_tools = 0;
    for seed in 0..1500 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut members = vec![("model".to_owned(), json!("gpt-4o"))];
        optional_members(&mut rng, &mut members);
        rng.shuffle(&mut members);
        let pretty = rng.bool();
        let mut messages: Vec<Value> = vec![json!({"role": "system", "content": "You code."})];
        for turn in 0..5 {
            let grow = rng.usize(1..3);
            messages.extend((0..grow).map(|_| message_or_mistake(&mut rng)));
            if turn > 0 && rarely(&mut rng, 5) {
                let at = rng.usize(1..messages.len());
                messages[at] = message(&mut rng);
            }
            let body = conversation_body(&members, &messages, pretty);
            let every = decode_every_message(&body);
            let through_memo = decode_with_memo(&body, &memo);
            sent += messages.len();
            with_tools += usize::from(members.iter().any(|(name, _)| name == "tools"));
            let text = String::from_utf8_lossy(&body);
            match every {
                Ok(every) => {
                    decoded += 1;
                    passed += usize::from(every.2.is_some());
                    assert_eq!(
                        through_memo.as_ref(),
                        Some(&every),
                        "seed {seed}, turn {turn}: {text}"
                    );
                }
                Err(_) => {
                    refused += 1;
                    assert!(through_memo.is_none(), "seed {seed}, turn {turn}: {text}");
                    // The mistake stays in the conversation: start it again.
                    messages.truncate(1);
                }
            }
        }
    }
    assert!(
        decoded > 3000 && passed > 500 && refused > 300,
        "{decoded} decoded ({passed} to go as they came), {refused} refused"
    );
    assert!(
        memo.fresh() * 2 < sent,
        "{} of {sent} messages decoded afresh: the conversations' earlier turns are reused",
        memo.fresh()
    );
    assert!(
        memo.left_out() * 3 > sent,
        "{} of {sent} messages left out of the bodies before they were parsed",
        memo.left_out()
    );
    assert!(
        memo.tools().decoded() * 3 < with_tools,
        "{} lists of tools decoded for {with_tools} requests with tools: a conversation's \
         requests send the same",
        memo.tools().decoded()
    );
}

/// A request as large as an agent's: a system prompt, then `turns` turns of a shell call
/// and its result (code, with the escapes tool results are full of).
fn agent_request(turns: usize) -> Vec<u8> {
    let mut messages = vec![
        json!({"role": "system", "content": "You are a coding agent."}),
        json!({"role": "user", "content": "Find the bug in src/."}),
    ];
    for turn in 0..turns {
        let call = format!("call_{turn}");
        messages.push(json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": call, "type": "function",
             "function": {"name": "shell", "arguments": format!("{{\"command\":\"cat src/f{turn}.rs\"}}")}}]}));
        let code = format!("fn f{turn}() {{\n    println!(\"{turn}\\t\");\n}}\n").repeat(60);
        messages.push(json!({"role": "tool", "tool_call_id": call, "content": code}));
    }
    serde_json::to_vec(&json!({"model": "gpt-4o", "messages": messages, "stream": false})).unwrap()
}

#[test]
fn an_agents_growing_requests_decode_as_before_and_only_their_new_turns_afresh() {
    use super::decode::{decode_every_message, decode_with_memo};
    use crate::protocol::message_memo::MessageMemo;

    let memo = MessageMemo::default();
    // Messages decoded afresh: all 42 at first, then each request's new turn (a call and
    // its result), then none for a request sent again.
    for (turns, fresh) in [(20, 42), (21, 44), (22, 46), (22, 46)] {
        let body = agent_request(turns);
        assert!(
            body.len() >= 32 << 10,
            "{} bytes: below the memo's size",
            body.len()
        );
        let got = decode_with_memo(&body, &memo).unwrap();
        assert_eq!(got, decode_every_message(&body).unwrap());
        assert!(got.2.is_some(), "the request goes as it came");
        assert_eq!(memo.fresh(), fresh, "{turns} turns");
    }
    // And through the decoder's own memo, from this size up.
    let body = agent_request(23);
    assert_eq!(
        decode_request_checked(&body).unwrap(),
        decode_every_message(&body).unwrap()
    );
}

/// A body that starts as a conversation's last request did is parsed without the messages
/// it repeats; one that breaks right after them (a comma and the list's end, two messages
/// without a comma between them) is refused as decoding every message refuses it.
#[test]
fn a_body_is_parsed_without_the_messages_it_repeats_and_refused_if_broken_after_them() {
    use super::decode::{decode_every_message, decode_with_memo};
    use crate::protocol::message_memo::MessageMemo;

    let memo = MessageMemo::default();
    let first = agent_request(20);
    decode_with_memo(&first, &memo).unwrap();
    assert_eq!(memo.left_out(), 0);
    // The keys in order: "model", "messages", "stream"; the list ends at the seam.
    let seam = first
        .windows(10)
        .rposition(|w| w == b"],\"stream\"")
        .unwrap();
    let grown = agent_request(21);
    assert_eq!(grown[seam], b',');
    let got = decode_with_memo(&grown, &memo).unwrap();
    assert_eq!(got, decode_every_message(&grown).unwrap());
    assert_eq!(memo.left_out(), 42, "the 42 messages of the first request");
    assert_eq!(memo.fresh(), 44, "42, then the new call and its result");
    // Sent again: every message left out, none decoded.
    let again = decode_with_memo(&grown, &memo).unwrap();
    assert_eq!(again, got);
    assert_eq!((memo.left_out(), memo.fresh()), (42 + 44, 44));

    // Broken at the seam of what the memo knows (`grown`, which it holds now) and before
    // it, and broken among the messages read where they are, after it.
    let mut trailing_comma = first.clone();
    trailing_comma.insert(seam, b',');
    let mut no_comma = grown.clone();
    no_comma.remove(seam);
    let longer = agent_request(22);
    let end = longer
        .windows(10)
        .rposition(|w| w == b"],\"stream\"")
        .unwrap();
    let mut new_then_trailing_comma = longer.clone();
    new_then_trailing_comma.insert(end, b',');
    let between_new = longer
        .windows(40)
        .position(|w| w == b",{\"role\":\"tool\",\"tool_call_id\":\"call_21\"")
        .unwrap();
    let mut new_without_comma = longer.clone();
    new_without_comma.remove(between_new);
    for broken in [
        trailing_comma,
        no_comma,
        new_then_trailing_comma,
        new_without_comma,
    ] {
        let left_out = memo.left_out();
        assert!(decode_every_message(&broken).is_err());
        assert!(decode_with_memo(&broken, &memo).is_none());
        assert_eq!(memo.left_out(), left_out, "nothing read from a broken body");
    }
    // The same two, unbroken, are read after the 44 messages the memo holds.
    assert_eq!(
        decode_with_memo(&longer, &memo).unwrap(),
        decode_every_message(&longer).unwrap()
    );
    assert_eq!(memo.left_out(), 42 + 44 + 44);
}

/// A list of tools sent before is found in the body and skipped as a blanked string, on the
/// small path and the message memo's; a kept list under a nested `tools` key (in a JSON
/// schema, before the request's own list) is not taken for the request's: the body is then
/// read again as it came. Each decodes as decoding it whole does.
#[test]
fn a_list_sent_again_is_skipped_and_a_nested_tools_key_is_not_taken_for_it() {
    use super::decode::{decode_every_message, decode_with_memo, decode_with_tools_memo};
    use crate::protocol::message_memo::MessageMemo;
    use crate::protocol::tools_memo::ToolsMemo;

    // Longer than the memo's `BLANK_FROM` (a short list is walked, not looked for).
    let kept = format!(
        r#"[{{"type":"function","function":{{"name":"read","description":"{}","parameters":{{"type":"object"}}}}}}]"#,
        "Reads a file. ".repeat(80)
    );
    let other = r#"[{"type":"function","function":{"name":"write"}}]"#;
    let plain = format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}],"tools" : {kept}}}"#
    );
    let nested = format!(
        r#"{{"model":"m","response_format":{{"type":"json_schema","json_schema":{{"name":"s","schema":{{"tools":{kept}}}}}}},"messages":[{{"role":"user","content":"hi"}}],"tools":{other}}}"#
    );
    let memo = ToolsMemo::default();
    let decode = |body: &str| {
        let body = body.as_bytes();
        decode_with_tools_memo(body, &memo)
            .map_or_else(|| decode_every_message(body), Ok)
            .unwrap()
    };
    let whole = |body: &str| decode_every_message(body.as_bytes()).unwrap();
    assert_eq!(decode(&plain), whole(&plain));
    assert_eq!((memo.decoded(), memo.blanked()), (1, 0));
    assert_eq!(decode(&plain), whole(&plain));
    assert_eq!(
        (memo.decoded(), memo.blanked()),
        (1, 1),
        "sent again: skipped"
    );
    // The nested key is found first and blanked; the request's own list is not there, so
    // the body is read again as it came (its list decoded and kept).
    assert_eq!(
        decode_with_tools_memo(nested.as_bytes(), &memo),
        Some(whole(&nested)),
        "the nested key is not the request's"
    );
    assert_eq!((memo.decoded(), memo.blanked()), (2, 2));

    let mut large = agent_request(20);
    large.truncate(large.len() - 1);
    large.extend_from_slice(format!(",\"tools\":{kept}}}").as_bytes());
    let memo = MessageMemo::default();
    let first = decode_with_memo(&large, &memo).unwrap();
    let again = decode_with_memo(&large, &memo).unwrap();
    let every = decode_every_message(&large).unwrap();
    assert_eq!((first, again), (every.clone(), every));
    assert_eq!((memo.tools().decoded(), memo.tools().blanked()), (1, 1));
}

/// A kept list of tools blanked before the messages (a client that writes `tools` first)
/// is not kept in the conversation's head: the conversation's next request, which starts
/// with the same bytes, is found by them and its repeated messages are left out.
#[test]
fn a_list_blanked_before_the_messages_stays_out_of_the_conversations_head() {
    use super::decode::{decode_every_message, decode_with_memo};
    use crate::protocol::message_memo::MessageMemo;

    let kept = format!(
        r#"[{{"type":"function","function":{{"name":"shell","description":"{}"}}}}]"#,
        "Runs a command. ".repeat(80)
    );
    // `agent_request`'s body with its model named and the tools written first.
    let body = |model: &str, turns: usize| {
        let body = String::from_utf8(agent_request(turns)).unwrap();
        let rest = body.strip_prefix(r#"{"model":"gpt-4o","#).unwrap();
        format!(r#"{{"model":"{model}","tools":{kept},{rest}"#).into_bytes()
    };
    let memo = MessageMemo::default();
    let decode = |body: &[u8]| {
        let decoded = decode_with_memo(body, &memo).unwrap();
        assert_eq!(decoded, decode_every_message(body).unwrap());
    };
    decode(&body("first", 20));
    decode(&body("second", 20));
    assert_eq!(memo.tools().blanked(), 1, "the second conversation's list");
    let left_out = memo.left_out();
    decode(&body("second", 21));
    assert!(
        memo.left_out() >= left_out + 42,
        "{} messages left out, {left_out} before",
        memo.left_out()
    );
}

/// serde_json refuses a body nested more than 128 deep. A message read alone is read as
/// deep as it sits in the body, so the memo refuses what decoding every message refuses.
#[test]
fn a_message_nested_to_the_limit_is_refused_as_it_was_in_the_body() {
    use super::decode::{decode_every_message, decode_with_memo};
    use crate::protocol::message_memo::MessageMemo;

    let (mut accepted, mut refused) = (0, 0);
    for depth in 115..135 {
        let memo = MessageMemo::default();
        let mut body: Value = serde_json::from_slice(&agent_request(20)).unwrap();
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        body["messages"][1]["x_nested"] = serde_json::from_str(&nested).unwrap_or(Value::Null);
        let mut text = serde_json::to_string(&body).unwrap();
        text = text.replace("\"x_nested\":null", &format!("\"x_nested\":{nested}"));
        assert!(text.contains(&nested), "depth {depth}");
        let every = decode_every_message(text.as_bytes());
        let through_memo = decode_with_memo(text.as_bytes(), &memo);
        assert_eq!(through_memo.is_some(), every.is_ok(), "depth {depth}");
        // And read where it is in the body, the memo knowing where the list starts from
        // the conversation's last request.
        let primed = MessageMemo::default();
        decode_with_memo(&agent_request(20), &primed).unwrap();
        let read_in_place = decode_with_memo(text.as_bytes(), &primed);
        // Read past the system prompt when accepted; a refused one goes to the parser.
        assert_eq!(
            primed.left_out(),
            usize::from(every.is_ok()),
            "depth {depth}"
        );
        assert_eq!(read_in_place.is_some(), every.is_ok(), "depth {depth}");
        if every.is_ok() {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    assert!(
        accepted > 0 && refused > 0,
        "{accepted} accepted, {refused} refused"
    );
}

#[test]
fn a_large_request_with_a_bad_message_is_refused_naming_the_field() {
    let mut body: Value = serde_json::from_slice(&agent_request(20)).unwrap();
    body["messages"][7]["content"] = json!(5);
    let body = serde_json::to_vec(&body).unwrap();
    // Twice: the first time with the earlier messages decoded afresh, then remembered.
    for _ in 0..2 {
        let err = decode_request_checked(&body).unwrap_err();
        assert_eq!(err.status(), 422, "{err}");
        assert_eq!(err.param(), Some("messages[7].content"), "{err}");
    }
}

/// A large request's tools are read through the memo: the same list is decoded once, a
/// changed one again, and a broken one refused as decoding every message refuses it, each
/// time.
#[test]
fn an_agents_tools_are_decoded_once_and_broken_ones_refused_each_time() {
    use super::decode::{decode_every_message, decode_request_checked, decode_with_memo};
    use crate::protocol::message_memo::MessageMemo;

    let with_tools = |tools: Value| {
        let mut body: Value = serde_json::from_slice(&agent_request(20)).unwrap();
        body["tools"] = tools;
        serde_json::to_vec(&body).unwrap()
    };
    let shell = json!([{"type": "function", "function": {"name": "shell",
        "parameters": {"type": "object", "properties": {"command": {"type": "string"}}}}}]);
    let memo = MessageMemo::default();
    let body = with_tools(shell.clone());
    for _ in 0..3 {
        assert_eq!(
            decode_with_memo(&body, &memo).unwrap(),
            decode_every_message(&body).unwrap()
        );
    }
    assert_eq!(memo.tools().decoded(), 1);
    let mut changed = shell.clone();
    changed[0]["function"]["description"] = json!("Run a command");
    let body = with_tools(changed);
    assert_eq!(
        decode_with_memo(&body, &memo).unwrap(),
        decode_every_message(&body).unwrap()
    );
    assert_eq!(memo.tools().decoded(), 2);

    for broken in [
        json!([{"type": "function"}]),
        json!([{"type": "function", "function": {"name": 7}}]),
        json!({"shell": {}}),
        json!(["shell"]),
    ] {
        let body = with_tools(broken.clone());
        for _ in 0..2 {
            assert!(decode_with_memo(&body, &memo).is_none(), "{broken}");
            let every = decode_every_message(&body).unwrap_err().to_string();
            let checked = decode_request_checked(&body).unwrap_err().to_string();
            assert_eq!(checked, every);
            assert!(every.contains("tools"), "{every}");
        }
    }
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

/// serde_json refuses a body nested more than 128 deep. A list of tools is read alone as
/// deep as it sits in the body, so the tools memo refuses what decoding the body whole
/// refuses, for small requests and large ones.
#[test]
fn tools_nested_to_the_limit_are_refused_as_they_were_in_the_body() {
    use super::decode::{decode_every_message, decode_with_memo, decode_with_tools_memo};
    use crate::protocol::message_memo::MessageMemo;
    use crate::protocol::tools_memo::ToolsMemo;

    let (mut accepted, mut refused) = (0, 0);
    for depth in 115..135 {
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let tools = format!(
            r#"[{{"type":"function","function":{{"name":"f","parameters":{{"x":{nested}}}}}}}]"#
        );
        let small = format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}],"tools":{tools}}}"#
        );
        let mut large = agent_request(20);
        large.truncate(large.len() - 1);
        large.extend_from_slice(format!(",\"tools\":{tools}}}").as_bytes());
        for body in [small.as_bytes(), &large] {
            let every = decode_every_message(body);
            let small_path = decode_with_tools_memo(body, &ToolsMemo::default());
            let large_path = decode_with_memo(body, &MessageMemo::default());
            assert_eq!(small_path.is_some(), every.is_ok(), "depth {depth}");
            assert_eq!(large_path.is_some(), every.is_ok(), "depth {depth}");
            if every.is_ok() {
                accepted += 1;
            } else {
                refused += 1;
            }
        }
    }
    assert!(
        accepted > 0 && refused > 0,
        "{accepted} accepted, {refused} refused"
    );
}
