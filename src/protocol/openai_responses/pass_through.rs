//! When a whole Response from a Responses back-end may go to a Responses client as it came
//! (see [`crate::model::VerbatimSlot`]): when [`super::encode_response`] of the events it
//! decodes to writes that same JSON back (members that are `null` aside, numbers by value:
//! a `created_at` of `1741476542.0` is written `1741476542`).
//!
//! The encoder writes every member the upstream had: the top-level ones travel as the `top`
//! extension, an item's `id` and unknown fields as the `item` extension, a part's
//! annotations and logprobs as the `part` extension, and items of types the model does not
//! know whole. What it derives instead, the body must already say the same way:
//! - `object: "response"`, a non-empty `output`, a `completed` status without `incomplete_details` (an incomplete
//!   one is rare and its details are read as a reason only), a whole `created_at`, a model,
//!   an id;
//! - `parallel_tool_calls`, `tool_choice` and `tools`, which the encoder fills in when absent;
//! - a usage object whose counts are whole numbers where the encoder writes them, and whose
//!   `total_tokens` is their sum;
//! - items of the shapes the encoder writes: a message with one non-empty `output_text`
//!   (annotations and logprobs listed) or `refusal` part; a `function_call` with its
//!   arguments; a `reasoning` item with a non-empty summary text per part, no status and no
//!   raw `content`; none with a member named like the extensions' own keys (`output_index`,
//!   `content_index`). Two messages (or two reasoning items) next to each other, or with only
//!   items of other types between them, would fold into one, so they are encoded.
//!
//! What the client asked to be echoed (`instructions`, `temperature`, ...) the encoder takes
//! from the upstream's top-level members when they are there, else from the client's
//! request: [`echo_is_answered`] checks, per request, that the upstream said each of them.
//!
//! `round_trip_tests.rs` checks all of this over thousands of random Responses.

use serde_json::{Map, Value};

use super::types::ResponseObject;
use crate::model::Event;

/// Top-level members the encoder writes with a default when the upstream has none.
const DEFAULTED: [&str; 3] = ["parallel_tool_calls", "tool_choice", "tools"];

/// Whether the encoder writes `response` (its members as read, before any is taken out of
/// it) back as the same JSON.
pub(crate) fn answer_round_trips(response: &ResponseObject) -> bool {
    let whole_seconds = response
        .created_at
        .is_some_and(|t| t >= 0.0 && t.fract() == 0.0 && t < 9_007_199_254_740_992.0);
    response.extra.get("object").and_then(Value::as_str) == Some("response")
        && response.status.as_deref() == Some("completed")
        && response.incomplete_details.is_none()
        && whole_seconds
        && !response.id.is_empty()
        && !response.model.is_empty()
        && DEFAULTED
            .iter()
            .all(|key| response.extra.contains_key(*key))
        && response.usage.as_ref().is_some_and(usage_round_trips)
        // Absent, `null` and `[]` all read as no items; the encoder writes `[]`.
        && !response.output.is_empty()
        && output_round_trips(&response.output)
}

/// Whether every member the client's request asked to be echoed (`echo`, its keys) is a
/// top-level member of the answer whose events are `answer`: then the encoder writes the
/// upstream's, as the body has them.
pub(crate) fn echo_is_answered(answer: &[Event], echo: &Map<String, Value>) -> bool {
    if echo.is_empty() {
        return true;
    }
    let top = answer.iter().find_map(|event| match event {
        Event::Start { extensions, .. } => extensions
            .for_protocol(super::decode::PROTOCOL)
            .and_then(|scopes| scopes.get("top"))
            .and_then(Value::as_object),
        _ => None,
    });
    top.is_some_and(|top| echo.keys().all(|key| top.contains_key(key)))
}

fn whole(value: Option<&Value>) -> Option<u64> {
    value.and_then(Value::as_u64)
}

/// The counts the encoder writes from the model's usage (the SDK types each as required),
/// as whole numbers, and a total that is their sum.
fn usage_round_trips(usage: &Value) -> bool {
    let Some(usage) = usage.as_object() else {
        return false;
    };
    let details = |key: &str| usage.get(key).and_then(Value::as_object);
    let (Some(input), Some(output)) = (
        whole(usage.get("input_tokens")),
        whole(usage.get("output_tokens")),
    ) else {
        return false;
    };
    let (Some(input_details), Some(output_details)) = (
        details("input_tokens_details"),
        details("output_tokens_details"),
    ) else {
        return false;
    };
    whole(input_details.get("cached_tokens")).is_some()
        && whole(input_details.get("cache_write_tokens")).is_some()
        && whole(output_details.get("reasoning_tokens")).is_some()
        && input
            .checked_add(output)
            .is_some_and(|sum| whole(usage.get("total_tokens")) == Some(sum))
}

/// The kinds of output items the model has a shape for; the rest travel whole.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Message,
    Call,
    Reasoning,
    Whole,
}

fn output_round_trips(output: &[Value]) -> bool {
    let mut last = None;
    for item in output {
        let Some(kind) = item.as_object().and_then(item_kind) else {
            return false;
        };
        if kind == Kind::Whole {
            continue;
        }
        // Parts of one kind next to each other fold into one.
        if last == Some(kind) && kind != Kind::Call {
            return false;
        }
        last = Some(kind);
    }
    true
}

/// The item's kind, when the encoder writes it back as it is.
fn item_kind(item: &Map<String, Value>) -> Option<Kind> {
    let str_of = |key: &str| item.get(key).and_then(Value::as_str);
    let kind = match str_of("type") {
        Some("message") => Kind::Message,
        Some("function_call") => Kind::Call,
        Some("reasoning") => Kind::Reasoning,
        _ => return Some(Kind::Whole),
    };
    // The item's `id` comes from the upstream; `output_index` is the extension's own key.
    if !item.contains_key("id") || item.contains_key("output_index") {
        return None;
    }
    let fits = match kind {
        Kind::Message => {
            str_of("status") == Some("completed")
                && str_of("role") == Some("assistant")
                && matches!(item.get("content"), Some(Value::Array(parts))
                    if parts.len() == 1 && parts[0].as_object().is_some_and(content_part_fits))
        }
        Kind::Call => {
            str_of("status") == Some("completed")
                && str_of("call_id").is_some()
                && str_of("name").is_some()
                && str_of("arguments").is_some()
        }
        Kind::Reasoning => {
            item.get("status").is_none_or(Value::is_null)
                && item.get("content").is_none_or(Value::is_null)
                && item
                    .get("encrypted_content")
                    .is_none_or(|e| e.is_null() || e.is_string())
                && matches!(item.get("summary"), Some(Value::Array(parts))
                    if parts.iter().all(summary_part_fits))
        }
        Kind::Whole => true,
    };
    fits.then_some(kind)
}

/// An `output_text` part with text and its annotation and logprob lists, or a refusal
/// without empty lists (which the encoder would not write back); neither with the other's
/// member or the `part` extension's own keys.
fn content_part_fits(part: &Map<String, Value>) -> bool {
    if ["output_index", "content_index"]
        .iter()
        .any(|key| part.contains_key(*key))
    {
        return false;
    }
    let non_empty = |key: &str| {
        part.get(key)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    let listed = |key: &str| part.get(key).is_some_and(Value::is_array);
    let empty_list = |key: &str| {
        part.get(key)
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty)
    };
    match part.get("type").and_then(Value::as_str) {
        Some("output_text") => {
            non_empty("text")
                && !part.contains_key("refusal")
                && listed("annotations")
                && listed("logprobs")
        }
        Some("refusal") => {
            non_empty("refusal")
                && !part.contains_key("text")
                && !empty_list("annotations")
                && !empty_list("logprobs")
        }
        _ => false,
    }
}

/// A summary part as the encoder writes one: `summary_text` and its non-empty text only.
fn summary_part_fits(part: &Value) -> bool {
    let Some(part) = part.as_object() else {
        return false;
    };
    part.len() == 2
        && part.get("type").and_then(Value::as_str) == Some("summary_text")
        && part
            .get("text")
            .and_then(Value::as_str)
            .is_some_and(|text| !text.is_empty())
}
