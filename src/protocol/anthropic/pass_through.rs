//! Whether a Messages request may go to an Anthropic back-end as the client's own bytes (see
//! [`crate::model::ClientBody`]): [`request_round_trips`] holds when
//! [`super::encode_request`] would write the decoded request back as the same JSON (its
//! model and a `"stream": false` aside, `null` members read as absent ones, numbers by
//! value), and [`edits`] finds the bytes to patch. What the encoder writes differently (two
//! turns of one role merged, tool results moved to the front of their turn, one plain system
//! block sent as a string, a thinking budget raised to 1,024, ...) is encoded, as before:
//! the check only has to be right when it says yes, and `pass_through_tests` holds it to the
//! encoder on random requests.

use serde_json::{Map, Value};

use super::SYNTHETIC_SIGNATURE;
use super::types::{MessagesRequest, TextOrBlocks, WireMessage};
use crate::model::Edits;
use crate::protocol::splice::model_and_no_false_stream;

/// Whether the encoder writes `wire` again as it came.
pub(super) fn request_round_trips(wire: &MessagesRequest) -> bool {
    fields_round_trip(wire)
        && wire.tools.as_deref().is_none_or(tools_round_trip)
        && messages_round_trip(&wire.messages)
}

/// Whether the encoder writes every tool of `tools` again as it came.
pub(super) fn tools_round_trip(tools: &[Value]) -> bool {
    tools.iter().all(tool_round_trips)
}

/// [`request_round_trips`] for all but the messages and the tools, whatever they were read
/// as.
pub(super) fn fields_round_trip<M, T>(wire: &MessagesRequest<'_, M, T>) -> bool {
    let Some(max_tokens) = wire.max_tokens else {
        return false;
    };
    let thinking = wire
        .thinking
        .as_ref()
        .is_none_or(|thinking| thinking_round_trips(thinking, max_tokens, wire));
    let system = match &wire.system {
        None | Some(TextOrBlocks::Text(_)) => true,
        Some(TextOrBlocks::Blocks(blocks)) => system_round_trips(blocks),
    };
    let metadata = wire.metadata.as_ref().is_none_or(|metadata| {
        !metadata.is_empty() && metadata.get("user_id").is_none_or(Value::is_string)
    });
    thinking
        && system
        && metadata
        && wire
            .stop_sequences
            .as_ref()
            .is_none_or(|stop| !stop.is_empty())
        && wire
            .tool_choice
            .as_ref()
            .is_none_or(tool_choice_round_trips)
}

/// `thinking` as the encoder writes it back: a budget of at least 1,024 under the output
/// cap, with no temperature or top_k beside it (the encoder drops both), or "disabled".
/// Other kinds are kept whole.
fn thinking_round_trips<M, T>(
    thinking: &Value,
    max_tokens: u64,
    wire: &MessagesRequest<'_, M, T>,
) -> bool {
    let Some(fields) = thinking.as_object() else {
        return true;
    };
    match fields.get("type").and_then(Value::as_str) {
        Some("enabled") => {
            let budget = fields.get("budget_tokens").and_then(Value::as_u64);
            fields.len() == 2
                && budget.is_some_and(|budget| budget >= 1024 && max_tokens > budget)
                && wire.temperature.is_none()
                && wire.top_k.is_none()
        }
        Some("disabled") => fields.len() == 1,
        _ => true,
    }
}

/// System blocks: text only, and not one plain block (the encoder sends that as a string).
fn system_round_trips(blocks: &[Value]) -> bool {
    let text = |block: &Value| {
        block.get("type").and_then(Value::as_str) == Some("text")
            && block.get("text").is_some_and(Value::is_string)
    };
    let one_plain = matches!(blocks, [block] if block.as_object().is_some_and(|b| b.len() == 2));
    !blocks.is_empty() && !one_plain && blocks.iter().all(text)
}

/// Turns of alternating roles (the encoder merges neighbours of one role), user or
/// assistant (system messages move to `system`), none of which the encoder would drop.
pub(super) fn messages_round_trip(messages: &[WireMessage]) -> bool {
    let alternate = messages.windows(2).all(|pair| pair[0].role != pair[1].role);
    alternate && messages.iter().all(message_round_trips)
}

/// [`messages_round_trip`] for one message: what the encoder writes of it alone.
pub(super) fn message_round_trips(message: &WireMessage) -> bool {
    let user = match message.role.as_str() {
        "user" => true,
        "assistant" => false,
        _ => return false,
    };
    match &message.content {
        TextOrBlocks::Text(text) => !text.is_empty(),
        TextOrBlocks::Blocks(blocks) => {
            !blocks.is_empty()
                && blocks.iter().all(|block| block_round_trips(block, user))
                && (!user || tool_results_lead(blocks))
        }
    }
}

/// A user turn's tool results come before its other blocks (the encoder moves them there).
fn tool_results_lead(blocks: &[Value]) -> bool {
    let is_result =
        |block: &Value| block.get("type").and_then(Value::as_str) == Some("tool_result");
    let first_other = blocks
        .iter()
        .position(|b| !is_result(b))
        .unwrap_or(blocks.len());
    blocks[first_other..].iter().all(|b| !is_result(b))
}

fn block_round_trips(block: &Value, user: bool) -> bool {
    let Some(fields) = block.as_object() else {
        return false;
    };
    let string = |key: &str| fields.get(key).is_some_and(Value::is_string);
    match fields.get("type").and_then(Value::as_str) {
        Some("text") => fields
            .get("text")
            .and_then(Value::as_str)
            .is_some_and(|text| !text.is_empty()),
        Some("image") => fields
            .get("source")
            .and_then(Value::as_object)
            .is_some_and(source_round_trips),
        Some("tool_use") => {
            !user
                && string("id")
                && string("name")
                && fields.get("input").is_some_and(Value::is_object)
        }
        Some("tool_result") => user && string("tool_use_id") && tool_result_round_trips(fields),
        Some("thinking") => {
            string("thinking")
                && fields
                    .get("signature")
                    .and_then(Value::as_str)
                    .is_some_and(|signature| signature != SYNTHETIC_SIGNATURE)
        }
        Some("redacted_thinking") => string("data"),
        Some(_) => true,
        None => false,
    }
}

/// An image source the encoder rebuilds member for member; other kinds are kept whole.
fn source_round_trips(source: &Map<String, Value>) -> bool {
    let string = |key: &str| source.get(key).is_some_and(Value::is_string);
    match source.get("type").and_then(Value::as_str) {
        Some("base64") => source.len() == 3 && string("media_type") && string("data"),
        Some("url") => source.len() == 2 && string("url"),
        _ => true,
    }
}

/// `is_error` only when true; content a non-empty string, or blocks that are not one plain
/// text block (the encoder sends that as a string).
fn tool_result_round_trips(fields: &Map<String, Value>) -> bool {
    let is_error = fields
        .get("is_error")
        .is_none_or(|e| *e == Value::Bool(true));
    let content = match fields.get("content") {
        None | Some(Value::Null) => true,
        Some(Value::String(text)) => !text.is_empty(),
        Some(Value::Array(blocks)) => {
            let one_plain = matches!(blocks.as_slice(), [block]
                if block.get("type").and_then(Value::as_str) == Some("text")
                    && block.as_object().is_some_and(|b| b.len() == 2));
            !blocks.is_empty() && !one_plain && blocks.iter().all(|b| block_round_trips(b, true))
        }
        Some(_) => false,
    };
    is_error && content
}

fn tool_round_trips(tool: &Value) -> bool {
    let Some(fields) = tool.as_object() else {
        return false;
    };
    match fields.get("type") {
        // A server tool: kept whole.
        Some(Value::String(kind)) if kind != "custom" => true,
        _ => {
            fields.get("name").is_some_and(Value::is_string)
                && fields.get("description").is_none_or(Value::is_string)
                && fields.contains_key("input_schema")
        }
    }
}

/// The members the encoder writes back: `type`, a `name` for `tool`, and
/// `disable_parallel_tool_use` only when true and the type is not `none`.
fn tool_choice_round_trips(choice: &Value) -> bool {
    let Some(fields) = choice.as_object() else {
        return false;
    };
    let kind = fields.get("type").and_then(Value::as_str);
    let parallel = match fields.get("disable_parallel_tool_use") {
        None => true,
        Some(disabled) => *disabled == Value::Bool(true) && kind != Some("none"),
    };
    let named = kind != Some("tool") || fields.get("name").is_some_and(Value::is_string);
    let known = fields.keys().all(|key| match key.as_str() {
        "type" | "disable_parallel_tool_use" => true,
        "name" => kind == Some("tool"),
        _ => false,
    });
    matches!(kind, Some("auto" | "any" | "none" | "tool")) && named && known && parallel
}

/// Where `body`, which decoded to `wire`, is patched (the encoder leaves out a
/// `"stream": false`).
pub(super) fn edits<M, T>(body: &[u8], wire: &MessagesRequest<'_, M, T>) -> Option<Edits> {
    model_and_no_false_stream(body, wire.model.raw, wire.stream.as_ref())
}
