//! Helpers of the pass-through property tests (each protocol's `round_trip_tests`): random
//! choices and the comparison that treats a `null` member as an absent one.

use serde_json::{Value, json};

use bytes::Bytes;

use crate::model::{ClientBody, Edits, Event, Protocol, Request, Response, ResponseBuilder};
use crate::protocol::ChunkError;

/// One of `options`, at random.
pub fn pick<T: Clone>(rng: &mut fastrand::Rng, options: &[T]) -> T {
    options[rng.usize(..options.len())].clone()
}

/// Now and then: the shapes the encoder does not write come one time in `n`, so most
/// bodies are ones it does.
pub fn rarely(rng: &mut fastrand::Rng, n: u8) -> bool {
    rng.u8(..n) == 0
}

/// A random request's `stream` member, half the time: mostly true, now and then false or
/// null.
pub fn maybe_stream(rng: &mut fastrand::Rng, body: &mut Vec<(String, Value)>) {
    if rng.bool() {
        let stream = pick(rng, &[json!(true), json!(true), json!(false), Value::Null]);
        body.push(("stream".into(), stream));
    }
}

/// `key: value` in a random request's `body`, one time in four.
pub fn sometimes(
    body: &mut Vec<(String, Value)>,
    key: &str,
    value: Value,
    rng: &mut fastrand::Rng,
) {
    if rng.u8(..4) == 0 {
        body.push((key.into(), value));
    }
}

/// What a message memo's property test saw: requests decoded (of them, to go as they came)
/// and refused, the messages sent, and the requests that offered tools.
pub struct MemoTally {
    pub decoded: usize,
    pub passed: usize,
    pub refused: usize,
    pub sent: usize,
    pub with_tools: usize,
}

/// That a message memo's property test tried both ways often (most requests decoded, many
/// to go as they came, some refused), and that the memo kept conversations, spared the
/// parser a third of the messages sent, and decoded a list of tools for under a third of
/// the requests that offered one (a conversation's requests send the same).
pub fn assert_memo_worked(memo: &crate::protocol::message_memo::MessageMemo, tally: &MemoTally) {
    let MemoTally {
        decoded,
        passed,
        refused,
        sent,
        with_tools,
    } = *tally;
    assert!(
        decoded > 3000 && passed > 500 && refused > 300,
        "{decoded} decoded ({passed} to go as they came), {refused} refused"
    );
    assert!(memo.kept().0 > 0, "the memo kept conversations");
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

/// `value` with every `null` member of every object removed.
pub fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

/// `value` with every number as an `f64`, so `1` and `1.0` compare equal.
fn numbers_by_value(value: Value) -> Value {
    match value {
        Value::Number(n) => n.as_f64().map_or(Value::Null, Value::from),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k, numbers_by_value(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(numbers_by_value).collect()),
        other => other,
    }
}

/// `value` as the request pass-through compares it with the encoder's: `null` members
/// absent, numbers by value.
pub fn same_json(value: Value) -> Value {
    numbers_by_value(without_nulls(value))
}

/// How many of the random bodies passed through and how many were encoded.
pub struct Tally {
    pub passed: usize,
    pub encoded: usize,
}

/// Sends 3,000 bodies from `generate` through `decode` (a `decode_response_checked`) and,
/// for every body it says round-trips, asserts that `encode` of the folded events is that
/// body (`null` members aside).
pub fn check_pass_through(
    generate: impl Fn(&mut fastrand::Rng) -> Value,
    decode: impl Fn(&[u8]) -> Result<(Vec<Event>, bool), ChunkError>,
    encode: impl Fn(&Response) -> Value,
) -> Tally {
    check_pass_through_for(
        3000,
        without_nulls,
        |rng| (generate(rng), ()),
        |body, ()| decode(body),
        |response, ()| encode(response),
    )
}

/// [`check_pass_through`] over `bodies` bodies, each generated with what its client asked
/// (`C`, which `decode` and `encode` see too), compared in the form `same` gives.
pub fn check_pass_through_for<C>(
    bodies: u64,
    same: fn(Value) -> Value,
    generate: impl Fn(&mut fastrand::Rng) -> (Value, C),
    decode: impl Fn(&[u8], &C) -> Result<(Vec<Event>, bool), ChunkError>,
    encode: impl Fn(&Response, C) -> Value,
) -> Tally {
    let mut tally = Tally {
        passed: 0,
        encoded: 0,
    };
    for seed in 0..bodies {
        let mut rng = fastrand::Rng::with_seed(seed);
        let (upstream, client) = generate(&mut rng);
        let body = serde_json::to_vec(&upstream).unwrap();
        let Ok((events, round_trips)) = decode(&body, &client) else {
            continue;
        };
        if !round_trips {
            tally.encoded += 1;
            continue;
        }
        tally.passed += 1;
        let mut folded = ResponseBuilder::new();
        for event in events {
            folded.push(event).unwrap();
        }
        assert_eq!(
            same(encode(&folded.finish(), client)),
            same(upstream.clone()),
            "seed {seed}: the pass-through would differ from the encoder for {upstream}"
        );
    }
    tally
}

/// How many of 4,000 random requests went as they came, how many of those streamed, and
/// how many were encoded.
#[derive(Debug)]
struct RequestTally {
    passed: usize,
    streamed: usize,
    encoded: usize,
}

/// The model the requests are routed to: one that needs escaping in JSON.
const ROUTED: &str = "routed/model \"v2\"";

/// A request body of these top-level members, in random order, compact or pretty-printed.
pub fn body_of(rng: &mut fastrand::Rng, mut members: Vec<(String, Value)>) -> Vec<u8> {
    rng.shuffle(&mut members);
    let body = Value::Object(members.into_iter().collect());
    if rng.bool() {
        serde_json::to_vec_pretty(&body).unwrap()
    } else {
        serde_json::to_vec(&body).unwrap()
    }
}

/// A request body of these top-level members in this order, with `messages` last, pretty
/// or compact: one conversation's requests, written the same way each time, as a client
/// writes them.
pub fn conversation_body(members: &[(String, Value)], messages: &[Value], pretty: bool) -> Vec<u8> {
    let mut body: serde_json::Map<String, Value> = members.iter().cloned().collect();
    body.insert("messages".into(), Value::Array(messages.to_vec()));
    let body = Value::Object(body);
    if pretty {
        serde_json::to_vec_pretty(&body).unwrap()
    } else {
        serde_json::to_vec(&body).unwrap()
    }
}

/// The body a back-end of `protocol` sends for `body` going to `model`, as text, when
/// `decode` (of `body`) says it goes as it came.
pub fn sent_as_is(
    protocol: Protocol,
    body: &'static [u8],
    decode: impl Fn(&[u8]) -> Result<(Request, Option<Edits>), crate::Error>,
    model: &str,
) -> String {
    let (request, edits) = decode(body).unwrap();
    let client = ClientBody::new(protocol, Bytes::from_static(body), &request, edits.unwrap());
    let sent = client.body_for(protocol, &request, model).unwrap();
    String::from_utf8(sent.to_vec()).unwrap()
}

/// Sends 4,000 request bodies from `generate` through `decode` (a protocol's
/// `decode_request_checked`) and, for every body it gives edits for, asserts that the body
/// sent as it came ([`ClientBody::body_for`]) is the same JSON as `encode` of the decoded
/// request ([`same_json`]); and that both paths were taken often, streams included.
pub fn check_request_pass_through(
    protocol: Protocol,
    generate: impl Fn(&mut fastrand::Rng) -> Vec<u8>,
    decode: impl Fn(&[u8]) -> Result<(Request, Option<Edits>), crate::Error>,
    encode: impl Fn(&Request, &str) -> Value,
) {
    check_request_pass_through_as(protocol, generate, decode, encode, |sent| sent);
}

/// [`check_request_pass_through`] for a protocol whose pass-through may send what its API
/// reads as the encoder's body: `as_encoded` writes the body sent in the encoder's words.
pub fn check_request_pass_through_as(
    protocol: Protocol,
    generate: impl Fn(&mut fastrand::Rng) -> Vec<u8>,
    decode: impl Fn(&[u8]) -> Result<(Request, Option<Edits>), crate::Error>,
    encode: impl Fn(&Request, &str) -> Value,
    as_encoded: impl Fn(Value) -> Value,
) {
    let mut tally = RequestTally {
        passed: 0,
        streamed: 0,
        encoded: 0,
    };
    for seed in 0..4000 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let body = Bytes::from(generate(&mut rng));
        let Ok((request, edits)) = decode(&body) else {
            continue;
        };
        let Some(edits) = edits else {
            tally.encoded += 1;
            continue;
        };
        tally.passed += 1;
        tally.streamed += usize::from(request.stream);
        let client = ClientBody::new(protocol, body.clone(), &request, edits);
        let sent = client
            .body_for(protocol, &request, ROUTED)
            .expect("an unchanged request");
        let sent: Value = serde_json::from_slice(&sent).unwrap_or_else(|err| {
            panic!(
                "seed {seed}: the patched body is not JSON ({err}): {}",
                String::from_utf8_lossy(&sent)
            )
        });
        assert_eq!(
            same_json(as_encoded(sent)),
            same_json(encode(&request, ROUTED)),
            "seed {seed}: the pass-through would differ from the encoder for {}",
            String::from_utf8_lossy(&body)
        );
    }
    assert!(tally.passed > 800, "{tally:?}");
    assert!(tally.encoded > 800, "{tally:?}");
    assert!(tally.streamed > 100, "{tally:?}");
}

/// Sends 3,000 request bodies from `generate` through `through_memo` (a protocol's
/// `decode_with_tools_memo`, with one memo for all) and asserts that each decodes as
/// `every` (its `decode_every_message`) decodes it, or is refused when that refuses it;
/// that a body sent again decodes no list of tools; and that lists were reused, long ones
/// blanked.
pub fn check_tools_memo<T: PartialEq + std::fmt::Debug>(
    generate: impl Fn(&mut fastrand::Rng) -> Vec<u8>,
    every: impl Fn(&[u8]) -> Result<T, crate::Error>,
    through_memo: impl Fn(&[u8], &crate::protocol::tools_memo::ToolsMemo) -> Option<T>,
) {
    let memo = crate::protocol::tools_memo::ToolsMemo::default();
    let (mut decoded, mut refused, mut with_tools) = (0, 0, 0);
    for seed in 0..3000 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let body = generate(&mut rng);
        let text = String::from_utf8_lossy(&body);
        let first = through_memo(&body, &memo);
        match every(&body) {
            Ok(every) => {
                decoded += 1;
                let value: Value = serde_json::from_slice(&body).unwrap();
                with_tools += usize::from(value.get("tools").is_some_and(|t| !t.is_null()));
                assert_eq!(first.as_ref(), Some(&every), "seed {seed}: {text}");
                // Sent again, its tools are the list decoded the first time.
                let lists = memo.decoded();
                assert_eq!(through_memo(&body, &memo), first);
                assert_eq!(memo.decoded(), lists, "seed {seed}: {text}");
            }
            Err(_) => {
                refused += 1;
                assert!(first.is_none(), "seed {seed}: {text}");
            }
        }
    }
    assert!(
        decoded > 2000 && refused > 20,
        "{decoded} decoded, {refused} refused"
    );
    assert!(
        memo.decoded() < with_tools && with_tools > 500,
        "{} lists of tools decoded for {with_tools} requests with tools",
        memo.decoded()
    );
    // Long lists sent again were skipped before parsing, not only found after it.
    assert!(
        memo.blanked() > 50,
        "{} lists blanked for {with_tools} requests with tools",
        memo.blanked()
    );
}
