//! [`StrictValue`]: a JSON value read with every object's members distinct.
//!
//! serde refuses a typed struct's field given twice, but serde_json's `Value` keeps the last
//! copy of a repeated member and says nothing. Content parts, content blocks and Responses
//! input items are read as values, and the client's own bytes may go upstream as they came
//! (the same-protocol pass-through, `model::ClientBody`): a part read with one copy of a
//! member would be checked by the stages (the prompt redaction among them) with that copy and
//! sent with both, `{"type":"text","text":"sk-live-…","text":"hello"}` reaching the provider
//! with the key. So a member given twice is refused wherever such a value is read, as a
//! typed field given twice is.

use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

/// A JSON value whose objects, at every depth, name each member once.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StrictValue(pub Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Strict).map(StrictValue)
    }
}

/// Builds a `Value` as serde_json's own visitor does, refusing a repeated member.
struct Strict;

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        // As serde_json: a number it cannot hold is null.
        Ok(Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        StrictValue::deserialize(deserializer).map(|value| value.0)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            match members.entry(key) {
                Entry::Occupied(taken) => {
                    return Err(de::Error::custom(format_args!(
                        "duplicate field `{}`",
                        taken.key()
                    )));
                }
                Entry::Vacant(place) => {
                    let StrictValue(value) = map.next_value()?;
                    place.insert(value);
                }
            }
        }
        Ok(Value::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_a_value_reads() {
        let texts = [
            r#"{"a":[1,-2,3.5,1e400,true,null,"é\n"],"b":{"c":{}},"d":[]}"#,
            r#"[{"type":"text","text":"x"},18446744073709551615,-9223372036854775808]"#,
            "\"plain\"",
            "0",
        ];
        for text in texts {
            let strict: Result<StrictValue, _> = serde_json::from_str(text);
            let value: Result<Value, _> = serde_json::from_str(text);
            match (strict, value) {
                (Ok(strict), Ok(value)) => assert_eq!(strict.0, value, "{text}"),
                (strict, value) => assert_eq!(strict.is_err(), value.is_err(), "{text}"),
            }
        }
    }

    #[test]
    fn a_member_given_twice_is_refused_at_any_depth() {
        for text in [
            r#"{"text":"sk-live-1","text":"hello"}"#,
            r#"[{"type":"text"},{"type":"text","type":"image"}]"#,
            r#"{"content":[{"parts":{"a":1,"b":2,"a":3}}]}"#,
        ] {
            let err = serde_json::from_str::<StrictValue>(text).unwrap_err();
            assert!(err.to_string().contains("duplicate field"), "{text}: {err}");
        }
        // The same key in different objects is not a repeat.
        let ok = r#"[{"text":"a"},{"text":"b","n":{"text":"c"}}]"#;
        assert!(serde_json::from_str::<StrictValue>(ok).is_ok());
    }
}
