//! Wire protocols. Each folder holds one protocol's serde types, its decoder (wire to
//! model), its encoder (model to wire) and its stream framing, shared by the front-end
//! that serves it and every back-end that speaks it. There are no pairwise translators:
//! Anthropic-to-OpenAI is Anthropic decode followed by OpenAI encode.

#[macro_use]
pub(crate) mod one_pass;

pub mod anthropic;
pub mod gemini;
pub mod json_out;
pub(crate) mod message_memo;
pub mod openai_chat;
pub mod openai_responses;
#[cfg(test)]
pub(crate) mod round_trip_support;
pub(crate) mod same_shape;
pub mod splice;
pub mod sse;
pub(crate) mod strict_value;
pub(crate) mod tools_memo;
pub mod tools_out;

use std::fmt;

use serde::de::{self, SeqAccess, Unexpected, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::model::Event;
pub use splice::Spanned;

/// Why an upstream response could not be read.
#[derive(Debug, Clone, PartialEq)]
pub enum ChunkError {
    /// Not the protocol (bad JSON, wrong shape).
    Garbage(String),
    /// The provider reported an error inside the body or stream.
    Upstream {
        message: String,
        error_type: Option<String>,
        code: Option<String>,
    },
    /// The stream ended before the protocol's end.
    Truncated,
}

/// Reads an upstream SSE stream of one protocol into events, one frame at a time.
pub trait StreamDecoder: Send {
    /// Decodes one SSE frame (`event` is its `event:` name, empty when it has none).
    fn push(&mut self, event: &str, data: &str, out: &mut Vec<Event>) -> Result<(), ChunkError>;
    /// True once the protocol's terminator arrived; nothing more is read after it.
    fn is_done(&self) -> bool;
    /// Called when the body ends: errors if the stream was cut off.
    fn finish(&mut self) -> Result<(), ChunkError>;
}

/// Parses a JSON body: its bytes are checked as UTF-8 once, then read as text. From bytes,
/// serde_json checks every string on its own, which cost ~3 instructions a byte of a 2 KB
/// request against well under one for a single pass over the body (bench/callgrind.sh).
/// A body that is not UTF-8 is parsed from bytes, so the error is serde_json's as before.
pub(crate) fn json_from_bytes<'a, T: Deserialize<'a>>(body: &'a [u8]) -> serde_json::Result<T> {
    match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(body),
    }
}

/// Whether `text` spans lines (holds a raw `\n` or `\r`), which an SSE `data:` line or a
/// JSON Lines record cannot. Found with memchr: `str::contains` with a set of chars decodes
/// every char (~10 instructions a byte; 150k for an agent's 9 KB list of tools).
pub(crate) fn spans_lines(text: &str) -> bool {
    memchr::memchr2(b'\n', b'\r', text.as_bytes()).is_some()
}

/// Reads a JSON array that some servers send as `null` (or leave out) as an empty list.
pub(crate) fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

/// A content part or item as the wire has it: a JSON object whose `type` is a string. Both
/// come back, so the caller can match on the type and deserialize the rest; `path` names
/// the value in the errors.
pub(crate) fn tagged_object(
    value: Value,
    path: &dyn Fn() -> String,
) -> Result<(String, serde_json::Map<String, Value>), crate::Error> {
    let Value::Object(obj) = value else {
        let path = path();
        return Err(crate::Error::invalid_field(
            &path,
            format!("'{path}' must be an object with a 'type'"),
        ));
    };
    match obj.get("type") {
        Some(Value::String(kind)) => Ok((kind.clone(), obj)),
        _ => {
            let path = path();
            Err(crate::Error::invalid_field(
                format!("{path}.type"),
                format!("'{path}.type' must be a string"),
            ))
        }
    }
}

/// A `content` field as the wire has it: a string, a list, or (where allowed) `null`.
pub(crate) enum TextOrList {
    Null,
    Text(String),
    List(Vec<Value>),
}

/// Reads a string-or-array `content`, with an error that says `expecting`. `null` is read
/// only when `null_ok`.
pub(crate) fn text_or_list<'de, D: Deserializer<'de>>(
    deserializer: D,
    expecting: &'static str,
    null_ok: bool,
) -> Result<TextOrList, D::Error> {
    struct TextOrListVisitor {
        expecting: &'static str,
        null_ok: bool,
    }
    impl<'de> Visitor<'de> for TextOrListVisitor {
        type Value = TextOrList;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_unit<E: de::Error>(self) -> Result<TextOrList, E> {
            if self.null_ok {
                Ok(TextOrList::Null)
            } else {
                Err(E::invalid_type(Unexpected::Unit, &self))
            }
        }
        fn visit_none<E: de::Error>(self) -> Result<TextOrList, E> {
            self.visit_unit()
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<TextOrList, E> {
            Ok(TextOrList::Text(v.to_owned()))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<TextOrList, E> {
            Ok(TextOrList::Text(v))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TextOrList, A::Error> {
            let mut items = Vec::new();
            // A member given twice is refused (see `strict_value`).
            while let Some(strict_value::StrictValue(item)) = seq.next_element()? {
                items.push(item);
            }
            Ok(TextOrList::List(items))
        }
    }
    deserializer.deserialize_any(TextOrListVisitor { expecting, null_ok })
}

#[cfg(test)]
mod json_from_bytes_tests {
    use super::json_from_bytes;
    use serde_json::{Value, json};

    #[test]
    fn text_with_escapes_and_non_ascii_reads_as_from_bytes_would() {
        let body = r#"{"a":"caf\u00e9 ☕ \"q\"\n","b":[1,2.5,null],"c":{"d":"日本"}}"#.as_bytes();
        let read: Value = json_from_bytes(body).unwrap();
        assert_eq!(read, serde_json::from_slice::<Value>(body).unwrap());
        assert_eq!(read["a"], json!("café ☕ \"q\"\n"));
    }

    #[test]
    fn a_body_that_is_not_utf8_gets_serde_jsons_error_from_bytes() {
        let body = b"{\"a\":\"\xff\xfe\"}";
        let err = json_from_bytes::<Value>(body).unwrap_err();
        let from_bytes = serde_json::from_slice::<Value>(body).unwrap_err();
        assert_eq!(err.to_string(), from_bytes.to_string());
    }

    #[test]
    fn trailing_bytes_after_the_value_are_an_error() {
        assert!(json_from_bytes::<Value>(b"{} x").is_err());
        assert!(json_from_bytes::<Value>(b"{}\n").is_ok());
    }
}
