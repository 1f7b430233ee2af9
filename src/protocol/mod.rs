//! Wire protocols. Each folder holds one protocol's serde types, its decoder (wire to
//! model), its encoder (model to wire) and its stream framing, shared by the front-end
//! that serves it and every back-end that speaks it. There are no pairwise translators:
//! Anthropic-to-OpenAI is Anthropic decode followed by OpenAI encode.

#[macro_use]
pub(crate) mod one_pass;

pub mod anthropic;
pub mod gemini;
pub mod openai_chat;
pub mod openai_responses;
#[cfg(test)]
mod round_trip_support;
pub mod splice;
pub mod sse;

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
            while let Some(item) = seq.next_element::<Value>()? {
                items.push(item);
            }
            Ok(TextOrList::List(items))
        }
    }
    deserializer.deserialize_any(TextOrListVisitor { expecting, null_ok })
}
