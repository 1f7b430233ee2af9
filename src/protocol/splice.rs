//! Finding and changing members of a JSON body in place, for the same-protocol request
//! pass-through (see [`crate::model::ClientBody`]): where a member sits, read in the one
//! decoding pass ([`Spanned`]), and the splices that take members out of their object.

use std::ops::Range;

use serde::de;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::model::{Edits, Splice};

/// A member read as `T` that also keeps the JSON text it was read from, a slice of the
/// body: where the member sits is what the same-protocol request pass-through patches (see
/// [`crate::model::ClientBody`]). Read in the one pass that decodes the body.
#[derive(Debug, Clone)]
pub struct Spanned<'a, T> {
    pub value: T,
    pub raw: &'a RawValue,
}

impl<'de: 'a, 'a, T: Deserialize<'de>> Deserialize<'de> for Spanned<'a, T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <&RawValue>::deserialize(deserializer)?;
        let value = T::deserialize(raw).map_err(|err| {
            // The text alone: a position would be one inside the member, not the body.
            let message = err.to_string();
            let message = message.split(" at line ").next().unwrap_or_default();
            de::Error::custom(message)
        })?;
        Ok(Self { value, raw })
    }
}

/// Where `raw`, read from `body` (as a [`Spanned`] member), sits in it.
pub fn span_in(body: &[u8], raw: &RawValue) -> Option<Range<usize>> {
    let start = (raw.get().as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
    let end = start + raw.get().len();
    (end <= body.len()).then_some(start..end)
}

/// The splices that remove the top-level members `(key, value)` (absent ones aside) from
/// `body`. `None` when a member is not where plain JSON puts it (a key written with
/// escapes).
pub fn removing(body: &[u8], members: &[(&str, Option<&RawValue>)]) -> Option<Vec<Splice>> {
    let mut spans = Vec::new();
    for (key, value) in members {
        if let Some(value) = value {
            spans.push(member(body, key, span_in(body, value)?)?);
        }
    }
    let splices = removals(body, spans)?
        .into_iter()
        .map(|at| Splice { at, with: "" })
        .collect();
    Some(splices)
}

/// The edits of a body whose encoder writes it back but for its model and a
/// `"stream": false` (left out): the model's value at `model`, and that member removed.
/// `None` when a member is not where plain JSON puts it (a key written with escapes).
pub fn model_and_no_false_stream(
    body: &[u8],
    model: &RawValue,
    stream: Option<&Spanned<'_, bool>>,
) -> Option<Edits> {
    let model = span_in(body, model)?;
    let stream = stream.filter(|stream| !stream.value);
    let splices = removing(body, &[("stream", stream.map(|s| s.raw))])?;
    Some(Edits { model, splices })
}

fn is_space(b: &u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The bytes of the member `"key": value` whose value is at `value`.
fn member(body: &[u8], key: &str, value: Range<usize>) -> Option<Range<usize>> {
    let before = &body[..value.start];
    let colon = before.len() - before.iter().rev().take_while(|b| is_space(b)).count();
    (body.get(colon.checked_sub(1)?) == Some(&b':')).then_some(())?;
    let before = &body[..colon - 1];
    let key_end = before.len() - before.iter().rev().take_while(|b| is_space(b)).count();
    let quoted = format!("\"{key}\"");
    let key_start = key_end.checked_sub(quoted.len())?;
    (body.get(key_start..key_end)? == quoted.as_bytes()).then_some(())?;
    Some(key_start..value.end)
}

/// The ranges that remove `members` from their object with the commas that part them
/// from the rest: members next to each other go as one block, which takes the comma after
/// it, or, when it ends the object, the one before it.
fn removals(body: &[u8], mut members: Vec<Range<usize>>) -> Option<Vec<Range<usize>>> {
    members.sort_unstable_by_key(|member| member.start);
    let mut blocks: Vec<Range<usize>> = Vec::new();
    for member in members {
        if let Some(last) = blocks.last_mut()
            && body[last.end..member.start]
                .iter()
                .filter(|b| !is_space(b))
                .eq([&b','])
        {
            last.end = member.end;
            continue;
        }
        blocks.push(member);
    }
    blocks
        .into_iter()
        .map(|block| {
            let after = block.end + body[block.end..].iter().take_while(|b| is_space(b)).count();
            if body.get(after) == Some(&b',') {
                return Some(block.start..after + 1);
            }
            let before = &body[..block.start];
            let comma = before.len() - before.iter().rev().take_while(|b| is_space(b)).count();
            (body.get(comma.checked_sub(1)?) == Some(&b',')).then(|| comma - 1..block.end)
        })
        .collect()
}
