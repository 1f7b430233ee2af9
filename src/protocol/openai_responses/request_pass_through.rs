//! Whether a Responses request may go to a Responses back-end as the client's own bytes (see
//! [`crate::model::ClientBody`]): [`request_round_trips`] holds when
//! [`super::encode_request`] would write the decoded request back as the same JSON (its
//! model and a `"stream": false` aside, `null` members read as absent ones, numbers by
//! value), or as one the API reads the same: a message item may leave out its `type` (an
//! `EasyInputMessage`, `message` by default) and an assistant's may say its text as a
//! string, which the encoder writes as the one `output_text` part it stands for
//! (openai-python, `types/responses/easy_input_message_param.py`). [`edits`] finds the
//! bytes to patch.
//!
//! The decoder folds a run of assistant-side items into one assistant message and the
//! encoder unfolds it, so most of what is checked is that each item comes back as it went:
//! - `input` is a list (a string becomes a message item), every item but a message names
//!   its `type`;
//! - a user, system or developer message has content, and a list of it holds `input_text`
//!   parts, images with a `detail`, and parts the model keeps whole, no refusal;
//! - an assistant message has text, or a list of `output_text` and plain `refusal` parts,
//!   and starts with text when it has members of its own (an `id`, a `status`): they ride
//!   on its first text part. One without members of its own right after another assistant
//!   message would join it;
//! - a `function_call` has its `arguments`; a `reasoning` item lists `summary` (possibly
//!   empty), each summary or raw-reasoning part non-empty text of its own type;
//! - no text part has a member named like the decoder's own extension keys (`item`,
//!   `reasoning_part`);
//! - `reasoning` and `text` say something (the decoder reads an empty one as none), a JSON
//!   schema format's `strict` and `description` are of their types, `stream_options` only
//!   with a stream, and `tools` is not an empty list.
//!
//! What the encoder writes differently is encoded, as before: the check only has to be
//! right when it says yes, and `request_pass_through_tests` holds it to the encoder on
//! random requests.

use serde_json::{Map, Value};

use super::decode::{ITEM, REASONING_PART};
use super::types::{Content, ReasoningConfig, ResponsesRequest, TextConfig};
use crate::model::{Edits, Message, Part, Protocol, Role};
use crate::protocol::splice::model_and_no_false_stream;

/// Whether the encoder writes `wire` again as it came.
pub(super) fn request_round_trips(wire: &ResponsesRequest) -> bool {
    fields_round_trip(wire)
        && input_round_trips(wire.input.as_ref())
        && wire.tools.as_deref().is_none_or(tools_round_trip)
}

/// Whether the encoder writes `tools` again as it came: every tool it reads it writes back
/// (a function tool member for member, any other whole), but an empty list not at all.
pub(super) fn tools_round_trip(tools: &[Value]) -> bool {
    !tools.is_empty()
}

/// [`request_round_trips`] for all but the input and the tools, whatever they were read as.
pub(super) fn fields_round_trip<T, I>(wire: &ResponsesRequest<'_, T, I>) -> bool {
    let streamed = wire.stream.as_ref().is_some_and(|stream| stream.value);
    let stream_options = streamed || wire.extra.get("stream_options").is_none_or(Value::is_null);
    stream_options
        && wire.reasoning.as_ref().is_none_or(reasoning_round_trips)
        && wire.text.as_ref().is_none_or(text_round_trips)
}

/// An input the encoder writes back: a list (a string becomes a message item) of items
/// that each come back as they went.
pub(super) fn input_round_trips(input: Option<&Content>) -> bool {
    match input {
        Some(Content::List(items)) => items_round_trip(items),
        Some(Content::Text(_)) | None => false,
    }
}

/// `reasoning` with anything in it: the decoder drops an empty one. Any `effort` comes back
/// as it was, known (the model's) or not (kept whole).
fn reasoning_round_trips(config: &ReasoningConfig) -> bool {
    config.effort.is_some() || config.summary.is_some() || !config.extra.is_empty()
}

/// `text` with anything in it, and a format the encoder writes back member for member.
fn text_round_trips(config: &TextConfig) -> bool {
    let said = config.format.is_some() || config.verbosity.is_some() || !config.extra.is_empty();
    said && config.format.as_ref().is_none_or(format_round_trips)
}

/// A JSON schema format is rebuilt from its known members, reading `strict` as a bool and
/// `description` as a string (others of any type are dropped); the rest are kept whole.
fn format_round_trips(format: &Value) -> bool {
    let Some(fields) = format.as_object() else {
        return false;
    };
    if fields.get("type").and_then(Value::as_str) != Some("json_schema") {
        return true;
    }
    let strict = fields
        .get("strict")
        .is_none_or(|s| s.is_null() || s.is_boolean());
    let description = fields
        .get("description")
        .is_none_or(|d| d.is_null() || d.is_string());
    strict && description
}

/// Every item of `input` comes back as it went: see the module's notes.
fn items_round_trip(items: &[Value]) -> bool {
    let mut after_assistant_message = false;
    items.iter().all(|item| {
        let Some(fields) = item.as_object() else {
            return false;
        };
        let round_trips = item_round_trips(fields, after_assistant_message);
        after_assistant_message = is_assistant_message(fields);
        round_trips
    })
}

fn is_assistant_message(fields: &Map<String, Value>) -> bool {
    is_message(fields) && fields.get("role").and_then(Value::as_str) == Some("assistant")
}

/// A `message` item, its type named or left out.
fn is_message(fields: &Map<String, Value>) -> bool {
    match fields.get("type") {
        Some(kind) => kind.as_str() == Some("message"),
        None => fields.contains_key("role"),
    }
}

/// Whether the encoder writes the item `item` back as it came, read alone (the message
/// memo's check; [`items_stay_apart`] checks the items beside each other).
pub(super) fn item_alone_round_trips(item: &Value) -> bool {
    item.as_object()
        .is_some_and(|fields| item_round_trips(fields, false))
}

/// Whether no item of `items`, each read alone ([`super::decode::item_message`]), would
/// join the one before it: an assistant message without members of its own (its first
/// part carries no `item` extension) after another assistant message.
pub(super) fn items_stay_apart(items: &[Message]) -> bool {
    items.windows(2).all(|pair| {
        let joins = is_assistant_text(&pair[1]) && !first_part_starts_an_item(&pair[1]);
        !(is_assistant_text(&pair[0]) && joins)
    })
}

/// An assistant message item read alone: its parts are text or refusals (other assistant-side
/// items give a call, reasoning or a part kept whole).
fn is_assistant_text(message: &Message) -> bool {
    message.role == Role::Assistant
        && matches!(
            message.parts.first(),
            Some(Part::Text { .. } | Part::Refusal { .. })
        )
}

fn first_part_starts_an_item(message: &Message) -> bool {
    match message.parts.first() {
        Some(Part::Text { extensions, .. }) => extensions
            .for_protocol(Protocol::OpenAiResponses)
            .is_some_and(|fields| fields.contains_key(ITEM)),
        _ => false,
    }
}

fn item_round_trips(fields: &Map<String, Value>, after_assistant_message: bool) -> bool {
    let string = |key: &str| fields.get(key).is_some_and(Value::is_string);
    if is_message(fields) {
        return message_round_trips(fields, after_assistant_message);
    }
    match fields.get("type").and_then(Value::as_str) {
        Some("function_call") => string("call_id") && string("name") && string("arguments"),
        Some("function_call_output") => {
            string("call_id")
                && match fields.get("output") {
                    Some(Value::String(_)) => true,
                    Some(Value::Array(parts)) => parts.iter().all(user_part_round_trips),
                    _ => false,
                }
        }
        Some("reasoning") => reasoning_item_round_trips(fields),
        // An item the model has no shape for travels whole.
        Some(_) => true,
        // Not an item the decoder takes.
        None => false,
    }
}

fn message_round_trips(fields: &Map<String, Value>, after_assistant_message: bool) -> bool {
    let content = fields.get("content");
    match fields.get("role").and_then(Value::as_str) {
        Some("user" | "system" | "developer") => match content {
            Some(Value::String(_)) => true,
            Some(Value::Array(parts)) => {
                !parts.is_empty() && parts.iter().all(user_part_round_trips)
            }
            _ => false,
        },
        Some("assistant") => {
            let (starts_with_text, parts_round_trip) = match content {
                // One `output_text` part, said the short way.
                Some(Value::String(_)) => (true, true),
                // An empty list would leave no item.
                Some(Value::Array(parts)) if !parts.is_empty() => (
                    is_output_text(&parts[0]),
                    parts
                        .iter()
                        .all(|part| is_output_text(part) || is_plain_refusal(part)),
                ),
                _ => return false,
            };
            let own_members = fields
                .keys()
                .any(|key| !matches!(key.as_str(), "type" | "role" | "content"));
            let where_it_starts = if own_members {
                starts_with_text
            } else {
                !after_assistant_message
            };
            parts_round_trip && where_it_starts
        }
        _ => false,
    }
}

/// An `output_text` part, written back with its members (annotations, logprobs).
fn is_output_text(part: &Value) -> bool {
    part.as_object()
        .is_some_and(|fields| text_part_round_trips(fields, "output_text"))
}

/// A refusal is rebuilt from its text alone.
fn is_plain_refusal(part: &Value) -> bool {
    part.as_object().is_some_and(|fields| {
        fields.len() == 2
            && fields.get("type").and_then(Value::as_str) == Some("refusal")
            && fields.get("refusal").is_some_and(Value::is_string)
    })
}

/// A part of a user-side message or of a call's output: the encoder writes text as
/// `input_text`, an image with a `detail` (`auto` when it had none), drops refusals and
/// keeps parts the model has no shape for whole.
fn user_part_round_trips(part: &Value) -> bool {
    let Some(fields) = part.as_object() else {
        return false;
    };
    match fields.get("type").and_then(Value::as_str) {
        Some("input_image") => match fields.get("image_url") {
            Some(Value::String(_)) => fields.get("detail").is_some_and(Value::is_string),
            // By `file_id`: kept whole.
            _ => true,
        },
        Some("input_text") => text_part_round_trips(fields, "input_text"),
        Some("output_text" | "text" | "refusal") | None => false,
        Some(_) => true,
    }
}

/// A text part of type `kind` with none of the members the decoder uses as its own keys.
fn text_part_round_trips(fields: &Map<String, Value>, kind: &str) -> bool {
    fields.get("type").and_then(Value::as_str) == Some(kind)
        && fields.get("text").is_some_and(Value::is_string)
        && !fields.contains_key(ITEM)
        && !fields.contains_key(REASONING_PART)
}

/// A reasoning item: `summary` listed (the encoder always writes it), raw `content` absent or
/// not empty, every part non-empty text of its list's type (an empty one is dropped).
fn reasoning_item_round_trips(fields: &Map<String, Value>) -> bool {
    let parts_of = |parts: &[Value], kind: &str| {
        parts.iter().all(|part| {
            part.as_object().is_some_and(|part| {
                text_part_round_trips(part, kind)
                    && part.get("text").and_then(Value::as_str) != Some("")
            })
        })
    };
    let summary = match fields.get("summary") {
        Some(Value::Array(parts)) => parts_of(parts, "summary_text"),
        _ => false,
    };
    let content = match fields.get("content") {
        None | Some(Value::Null) => true,
        Some(Value::Array(parts)) => !parts.is_empty() && parts_of(parts, "reasoning_text"),
        Some(_) => false,
    };
    summary && content
}

/// Where `body`, which decoded to `wire`, is patched (the encoder leaves out a
/// `"stream": false`).
pub(super) fn edits<T, I>(body: &[u8], wire: &ResponsesRequest<'_, T, I>) -> Option<Edits> {
    model_and_no_false_stream(body, wire.model.raw, wire.stream.as_ref())
}
