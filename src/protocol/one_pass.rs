//! `Deserialize` for wire structs that keep the fields they do not know (`extra`), in one
//! pass over the object. `#[serde(flatten)]` does the same by first buffering the whole
//! object in serde's generic `Content` tree and then reading the fields back out of it,
//! once per nested level: for a stream chunk (chunk, choice, delta) that was about a third
//! of llmux's instructions per streamed answer. A struct that uses this derives `Default`;
//! a field it names is optional on the wire unless it is read as `required`. As with
//! serde's derive, a named key given twice is an error: a proxy that took the last of two
//! values while the client's own bytes go upstream (the pass-through) would check one
//! value and send the other to a provider that reads the first.

use std::borrow::Cow;

use serde::de::{Deserializer, Visitor};

/// An object key, borrowed from the input when it has no escapes.
pub(crate) struct Key<'de>(pub Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(key)))
            }
            fn visit_str<E>(self, key: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key.to_owned())))
            }
            fn visit_string<E>(self, key: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// `impl Deserialize for Name` reading each `"key" => field: how` (`value`: the field's
/// own type; `required`: the same, and an object without it is an error, as serde's
/// derive has it; `list`: a list that may be `null` or absent) and every other key into
/// `extra`, unless its value is `null`. Objects only, as the wire sends them. A field may
/// have other names (`"key" | "other_key" => field: how`, serde's `alias`); two of its
/// names in one object are a key given twice.
///
/// A stream chunk's unknown fields become extension events without their nulls, and most
/// chunks carry one (`"logprobs": null`): keeping it cost a map, a key and a value for
/// every chunk, only to drop them.
macro_rules! deserialize_in_one_pass {
    ($name:ident { $($key:literal $(| $alias:literal)* => $field:ident: $how:ident),* $(,)? }) => {
        deserialize_in_one_pass!(@impl $name, keep, { $($key $(| $alias)* => $field: $how),* });
    };
    // Every other key is kept, `null` too: for an object whose unknown members travel to a
    // client of the same protocol as they came (a Responses object's `"instructions": null`).
    ($name:ident, nulls kept { $($key:literal $(| $alias:literal)* => $field:ident: $how:ident),* $(,)? }) => {
        deserialize_in_one_pass!(@impl $name, keep_nulls, { $($key $(| $alias)* => $field: $how),* });
    };
    // Every other key is skipped without building its value: for a struct that needs
    // only the fields it names (and has no `extra`).
    ($name:ident, others skipped { $($key:literal $(| $alias:literal)* => $field:ident: $how:ident),* $(,)? }) => {
        deserialize_in_one_pass!(@impl $name, skip, { $($key $(| $alias)* => $field: $how),* });
    };
    (@impl $name:ident, $others:ident, { $($key:literal $(| $alias:literal)* => $field:ident: $how:ident),* }) => {
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct OnePass;
                impl<'de> serde::de::Visitor<'de> for OnePass {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str(concat!("a ", stringify!($name), " object"))
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> Result<$name, A::Error> {
                        // Which named keys were read: a flag per field, named as the field.
                        #[derive(Default)]
                        #[allow(non_snake_case)]
                        struct Seen { $($field: bool),* }
                        let mut seen = Seen::default();
                        let mut out = $name::default();
                        while let Some(key) = map.next_key::<$crate::protocol::one_pass::Key<'de>>()? {
                            match key.0.as_ref() {
                                $($key $(| $alias)* => {
                                    if seen.$field {
                                        return Err(<A::Error as serde::de::Error>::duplicate_field($key));
                                    }
                                    out.$field = deserialize_in_one_pass!(@read $how, map);
                                    seen.$field = true;
                                })*
                                _ => deserialize_in_one_pass!(@other $others, map, out, key),
                            }
                        }
                        $(deserialize_in_one_pass!(@check $how, seen, $field, $key);)*
                        Ok(out)
                    }
                }
                deserializer.deserialize_map(OnePass)
            }
        }
    };
    (@other keep, $map:ident, $out:ident, $key:ident) => {{
        if let Some(value) = $map.next_value::<Option<serde_json::Value>>()? {
            $out.extra.insert($key.0.into_owned(), value);
        }
    }};
    (@other keep_nulls, $map:ident, $out:ident, $key:ident) => {{
        let value = $map.next_value::<serde_json::Value>()?;
        $out.extra.insert($key.0.into_owned(), value);
    }};
    (@other skip, $map:ident, $out:ident, $key:ident) => {{
        let _ = &$key;
        $map.next_value::<serde::de::IgnoredAny>()?;
    }};
    (@read value, $map:ident) => { $map.next_value()? };
    (@read required, $map:ident) => { $map.next_value()? };
    (@read list, $map:ident) => { $map.next_value::<Option<Vec<_>>>()?.unwrap_or_default() };
    (@check required, $seen:ident, $field:ident, $key:literal) => {
        if !$seen.$field {
            return Err(<A::Error as serde::de::Error>::missing_field($key));
        }
    };
    (@check $how:ident, $seen:ident, $field:ident, $key:literal) => {};
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::protocol::openai_chat::types::ChatChunk;

    #[test]
    fn known_fields_are_read_and_every_other_key_is_kept_at_its_level() {
        let chunk: ChatChunk = serde_json::from_value(json!({
            "id": "c1", "created": 7, "model": "m", "system_fingerprint": "fp",
            "choices": [{"index": 0, "logprobs": null, "finish_reason": null,
                "delta": {"con\u{74}ent": "Hi", "tool_calls": null, "annotations": []}}],
            "usage": null
        }))
        .unwrap();
        assert_eq!(
            (chunk.id.as_str(), chunk.created, chunk.model.as_str()),
            ("c1", Some(7), "m")
        );
        assert_eq!(chunk.extra["system_fingerprint"], "fp");
        assert!(
            !chunk.extra.contains_key("usage"),
            "a known field is not extra"
        );
        let choice = &chunk.choices[0];
        assert!(
            choice.extra.is_empty(),
            "nulls are not kept: {:?}",
            choice.extra
        );
        let delta = choice.delta.as_ref().unwrap();
        assert_eq!(delta.content.as_deref(), Some("Hi"));
        assert!(delta.tool_calls.is_empty(), "null reads as none");
        assert_eq!(delta.extra["annotations"], json!([]));
        assert_eq!(delta.extra.len(), 1);
        // An escaped key is the same key.
        let escaped: ChatChunk = serde_json::from_str(r#"{"\u0069d": "c2"}"#).unwrap();
        assert_eq!(escaped.id, "c2");
    }

    #[test]
    fn a_field_of_the_wrong_type_or_a_chunk_that_is_not_an_object_is_an_error() {
        let wrong = serde_json::from_value::<ChatChunk>(json!({"choices": [{"index": "zero"}]}));
        assert!(wrong.unwrap_err().to_string().contains("invalid type"));
        let array = serde_json::from_value::<ChatChunk>(json!([1, 2]));
        assert!(array.unwrap_err().to_string().contains("ChatChunk object"));
    }

    #[test]
    fn a_field_reads_under_each_of_its_names_but_only_once() {
        use crate::protocol::gemini::types::{Candidate, Part};
        let camel: Part = serde_json::from_value(json!({
            "functionCall": {"name": "f", "args": {"a": 1}, "later": null},
            "thoughtSignature": "sig", "videoMetadata": {"fps": 1}, "partMetadata": null
        }))
        .unwrap();
        let snake: Part = serde_json::from_value(json!({
            "function_call": {"name": "f", "args": {"a": 1}},
            "thought_signature": "sig", "videoMetadata": {"fps": 1}
        }))
        .unwrap();
        for part in [&camel, &snake] {
            let call = part.function_call.as_ref().unwrap();
            assert_eq!(
                (call.name.as_str(), &call.args),
                ("f", &Some(json!({"a": 1})))
            );
            assert!(
                call.extra.is_empty(),
                "nulls are not kept: {:?}",
                call.extra
            );
            assert_eq!(part.thought_signature.as_deref(), Some("sig"));
            assert_eq!(part.extra.len(), 1, "{:?}", part.extra);
            assert_eq!(part.extra["videoMetadata"], json!({"fps": 1}));
        }
        let twice = serde_json::from_str::<Candidate>(
            r#"{"finishReason": "STOP", "finish_reason": "MAX_TOKENS"}"#,
        );
        assert!(
            twice
                .unwrap_err()
                .to_string()
                .contains("duplicate field `finishReason`"),
            "two names of one field are one key given twice"
        );
    }
}
