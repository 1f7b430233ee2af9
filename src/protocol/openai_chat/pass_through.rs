//! Whether a chat request may go to an OpenAI-chat back-end as the client's own bytes (see
//! [`crate::model::ClientBody`]): [`request_round_trips`] holds when [`super::encode_request`]
//! would write the decoded request back as the same JSON (its model, `stream` and
//! `stream_options` aside, `null` members read as absent ones, numbers by value), and
//! [`edits`] finds the bytes to patch. Anything the encoder would write differently (a tool
//! without a `type`, `stop` as a one-element list, content left out of a user message,
//! both output caps, ...) is encoded, as before: the check only has to be right when it
//! says yes, and `pass_through_tests` holds it to the encoder on random requests.

use serde_json::Value;

use super::types::{ChatMessage, ChatRequest, Content, Stop};
use crate::model::{Edits, Splice};
use crate::protocol::splice::{removing, span_in};

/// Whether the encoder writes `wire` again as it came.
pub(super) fn request_round_trips(wire: &ChatRequest) -> bool {
    fields_round_trip(wire)
        && wire.tools.as_deref().is_none_or(tools_round_trip)
        && wire.messages.iter().all(message_round_trips)
}

/// Whether the encoder writes every tool of `tools` again as it came.
pub(super) fn tools_round_trip(tools: &[Value]) -> bool {
    tools.iter().all(tool_round_trips)
}

/// [`request_round_trips`] for all but the messages and the tools, whatever they were read
/// as.
pub(super) fn fields_round_trip<M, T>(wire: &ChatRequest<'_, M, T>) -> bool {
    let stop = !matches!(&wire.stop, Some(Stop::Many(list)) if list.len() < 2);
    let one_cap = wire.max_tokens.is_none() || wire.max_completion_tokens.is_none();
    // A streamed request asks for usage (the encoder adds it); its other stream options
    // would be kept, so only the flag itself may be missing or already true.
    let stream = wire.stream.as_ref().is_some_and(|stream| stream.value);
    let stream_options = match (&wire.stream_options, stream) {
        (Some(options), true) => options.value.include_usage == Some(true),
        _ => true,
    };
    stop && one_cap
        && stream_options
        && wire
            .tool_choice
            .as_ref()
            .is_none_or(tool_choice_round_trips)
        && wire
            .response_format
            .as_ref()
            .is_none_or(response_format_round_trips)
}

/// Whether the encoder writes `message` again as it came.
pub(super) fn message_round_trips(message: &ChatMessage) -> bool {
    let calls = message.tool_calls.as_deref();
    let has_calls = calls.is_some_and(|calls| !calls.is_empty());
    match message.role.as_str() {
        "system" | "developer" | "user" => {
            plain_extras(message)
                && message.refusal.is_none()
                && message.tool_call_id.is_none()
                && content_round_trips(&message.content, true)
        }
        "tool" => {
            plain_extras(message)
                && message.refusal.is_none()
                && message.tool_call_id.is_some()
                && content_round_trips(&message.content, true)
        }
        "assistant" => {
            let content = match &message.content {
                // Left out or `null`: the encoder writes `null` beside calls, else "".
                Content::Absent | Content::Null => has_calls,
                content => content_round_trips(content, false),
            };
            message.tool_call_id.is_none()
                && !(message.reasoning_content.is_some() && message.reasoning.is_some())
                && calls.is_none_or(|calls| has_calls && calls.iter().all(call_round_trips))
                && content
        }
        _ => false,
    }
}

/// Fields only an assistant message carries, absent from one that is not.
fn plain_extras(message: &ChatMessage) -> bool {
    message.tool_calls.is_none()
        && message.reasoning_content.is_none()
        && message.reasoning.is_none()
}

fn call_round_trips(call: &super::types::ChatToolCall) -> bool {
    // The decoder keeps a call's own unknown members under `call` among the function's,
    // and an absent `arguments` reads as "" (which the encoder then writes).
    call.kind.as_deref() == Some("function")
        && !call.function.extra.contains_key("call")
        && !call.function.arguments.is_empty()
}

/// `content` of a message that is not an assistant's (`refusal_parts`: refusal parts stay
/// in the content; an assistant's move to its `refusal` member).
fn content_round_trips(content: &Content, refusal_parts: bool) -> bool {
    match content {
        Content::Absent | Content::Null => false,
        Content::Text(_) => true,
        Content::Parts(parts) => {
            !parts.is_empty()
                && parts
                    .iter()
                    .all(|part| part_round_trips(part, refusal_parts))
        }
    }
}

fn part_round_trips(part: &Value, refusal_parts: bool) -> bool {
    let Some(fields) = part.as_object() else {
        return false;
    };
    match fields.get("type").and_then(Value::as_str) {
        Some("text") => fields.get("text").is_some_and(Value::is_string),
        Some("image_url") => {
            let Some(image) = fields.get("image_url").and_then(Value::as_object) else {
                return false;
            };
            image.get("url").is_some_and(Value::is_string)
                && image.get("detail").is_none_or(Value::is_string)
        }
        Some("refusal") => {
            refusal_parts
                && fields.len() == 2
                && fields.get("refusal").is_some_and(Value::is_string)
        }
        Some(_) => true,
        None => false,
    }
}

fn tool_round_trips(tool: &Value) -> bool {
    let Some(fields) = tool.as_object() else {
        return false;
    };
    match fields.get("type").and_then(Value::as_str) {
        Some("function") => {}
        // Kept whole.
        Some(_) => return true,
        None => return false,
    }
    let Some(function) = fields.get("function").and_then(Value::as_object) else {
        return false;
    };
    function.get("name").is_some_and(Value::is_string)
        && function.get("description").is_none_or(Value::is_string)
        && function.get("parameters").is_none_or(|p| !p.is_null())
        && function.get("strict").is_none_or(Value::is_boolean)
        && !function.contains_key("tool")
}

fn tool_choice_round_trips(choice: &Value) -> bool {
    match choice {
        Value::String(choice) => matches!(choice.as_str(), "auto" | "none" | "required"),
        // `{"type": "function", "function": {"name": ...}}` is rebuilt from the name alone;
        // any other object is kept whole.
        Value::Object(fields) => fields
            .get("function")
            .and_then(Value::as_object)
            .is_none_or(|function| function.len() == 1 || fields.len() != 2),
        _ => false,
    }
}

fn response_format_round_trips(format: &Value) -> bool {
    let Some(fields) = format.as_object() else {
        return false;
    };
    match fields.get("type").and_then(Value::as_str) {
        Some("text" | "json_object") => fields.len() == 1,
        Some("json_schema") => {
            let Some(spec) = fields.get("json_schema").and_then(Value::as_object) else {
                return false;
            };
            fields.len() == 2
                && spec.get("name").is_some_and(Value::is_string)
                && spec.contains_key("schema")
                && spec.get("strict").is_none_or(Value::is_boolean)
                && spec.get("description").is_none_or(Value::is_string)
                && spec
                    .keys()
                    .all(|key| matches!(key.as_str(), "name" | "schema" | "strict" | "description"))
        }
        _ => false,
    }
}

/// Where `body`, which decoded to `wire`, is patched: the model's value; for a request
/// that does not stream, its `stream` and `stream_options` members removed (the encoder
/// leaves them out); for one that streams without stream options,
/// `"stream_options":{"include_usage":true}` added. `None` when a member is not where plain
/// JSON puts it (a key written with escapes).
pub(super) fn edits<M, T>(body: &[u8], wire: &ChatRequest<'_, M, T>) -> Option<Edits> {
    let model = span_in(body, wire.model.raw)?;
    let stream = wire.stream.as_ref();
    let mut splices = Vec::new();
    if stream.is_some_and(|stream| stream.value) {
        if wire.stream_options.is_none() {
            let open = body.iter().position(|&b| b == b'{')?;
            splices.push(Splice {
                at: open + 1..open + 1,
                with: "\"stream_options\":{\"include_usage\":true},",
            });
        }
    } else {
        let members = [
            ("stream", stream.map(|s| s.raw)),
            (
                "stream_options",
                wire.stream_options.as_ref().map(|s| s.raw),
            ),
        ];
        splices = removing(body, &members)?;
    }
    Some(Edits { model, splices })
}
