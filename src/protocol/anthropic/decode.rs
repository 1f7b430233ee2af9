//! Anthropic Messages wire -> canonical model.

use std::sync::LazyLock;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::pass_through;
use super::types::{MessagesRequest, MessagesResponse, TextOrBlocks, WireMessage, WireUsage};
use crate::Error;
use crate::model::{
    Edits, Event, Extensions, FinishReason, ImageSource, Message, Part, Protocol, Reasoning,
    Request, Role, Sampling, Shared, Tool, ToolChoice, Usage,
};
use crate::protocol::ChunkError;
use crate::protocol::message_memo::{self, MessageMemo};
use crate::protocol::openai_chat::decode::parse_json;
use crate::protocol::tools_memo::{ReadBlanked, ToolsMemo, ToolsReading};

const PROTOCOL: Protocol = Protocol::Anthropic;

/// Extensions that always carry their source, even when empty: a thinking block's
/// signature is only valid for the provider that made it.
fn anthropic_ext(fields: Map<String, Value>) -> Extensions {
    Extensions {
        source: Some(PROTOCOL),
        fields: fields.into(),
    }
}

/// Parses a Messages request. Errors name the offending field.
pub fn decode_request(body: &[u8]) -> Result<Request, Error> {
    let wire: MessagesRequest = parse_json(body)?;
    request_from_wire(wire, decode_messages, decode_tools)
}

/// The messages of the latest large requests, decoded, with whether each would be written
/// again as it came (see [`super::pass_through`]); requests from
/// [`message_memo::MEMO_FROM`] up are read through it.
pub(super) static MESSAGE_MEMO: LazyLock<MessageMemo> = LazyLock::new(MessageMemo::default);

/// [`decode_request`], and where the body is patched if it is to go to an Anthropic
/// back-end as it came: `None` when the encoder would not write it again as it came (see
/// [`super::pass_through`]).
pub fn decode_request_checked(body: &[u8]) -> Result<(Request, Option<Edits>), Error> {
    // Each memo's path gives `None` only for a request with something wrong, which
    // decoding every message then names.
    let decoded = if body.len() >= message_memo::MEMO_FROM {
        decode_with_memo(body, &MESSAGE_MEMO)
    } else {
        decode_with_tools_memo(body, MESSAGE_MEMO.tools())
    };
    decoded.map_or_else(|| decode_every_message(body), Ok)
}

/// [`decode_request_checked`] for a request below the message memo's size, with its tools
/// read through `memo` (an agent's tools are most of such a request: see
/// [`crate::protocol::tools_memo`]). `None` for a request with anything wrong:
/// [`decode_every_message`] then finds the error and names its field.
pub(super) fn decode_with_tools_memo(
    body: &[u8],
    memo: &ToolsMemo,
) -> Option<(Request, Option<Edits>)> {
    ReadBlanked::retried(|blank| {
        memo.read_blanking(body, blank, |doc, reading| {
            read_with_tools(doc, memo, reading)
        })
    })
}

/// [`decode_with_tools_memo`] of `doc`, the body or a copy with a kept list blanked in it.
fn read_with_tools(
    doc: &[u8],
    memo: &ToolsMemo,
    reading: &mut ToolsReading,
) -> Option<(Request, Option<Edits>)> {
    let wire =
        crate::protocol::json_from_bytes::<MessagesRequest<WireMessage, &RawValue>>(doc).ok()?;
    let edits = if pass_through::fields_round_trip(&wire)
        && pass_through::messages_round_trip(&wire.messages)
    {
        pass_through::edits(doc, &wire)
    } else {
        None
    };
    let tools = |text| reading.read(memo, doc, text, decoded_tools);
    let request = request_from_wire(wire, decode_messages, tools).ok()?;
    Some((request, edits.filter(|_| reading.round_trip)))
}

/// The tools of a request's list, and whether the encoder writes them again as they came
/// (for [`ToolsMemo::tools`]).
fn decoded_tools(list: Vec<Value>) -> Result<(Vec<Tool>, bool), Error> {
    let round_trips = pass_through::tools_round_trip(&list);
    Ok((tools_of(list)?, round_trips))
}

/// [`decode_request_checked`], decoding every message.
pub(super) fn decode_every_message(body: &[u8]) -> Result<(Request, Option<Edits>), Error> {
    let wire: MessagesRequest = parse_json(body)?;
    let edits = if pass_through::request_round_trips(&wire) {
        pass_through::edits(body, &wire)
    } else {
        None
    };
    Ok((
        request_from_wire(wire, decode_messages, decode_tools)?,
        edits,
    ))
}

/// [`decode_request_checked`] with the messages read as their JSON texts and decoded
/// through `memo`, which decodes only those it has not seen. `None` for a request with
/// anything wrong: [`decode_every_message`] then finds the error and names its field, as
/// it always has.
pub(super) fn decode_with_memo(
    body: &[u8],
    memo: &MessageMemo,
) -> Option<(Request, Option<Edits>)> {
    ReadBlanked::retried(|blank| read_with_memo(body, memo, blank))
}

/// [`decode_with_memo`], with a kept list of tools blanked in the memo's document (the same
/// offsets) when `blank` and one is found.
fn read_with_memo(
    body: &[u8],
    memo: &MessageMemo,
    blank: bool,
) -> ReadBlanked<(Request, Option<Edits>)> {
    let mut read = memo.read(body, pass_through::message_round_trips, decode_message);
    let sent = blank.then(|| memo.tools().sent_again(&read.doc)).flatten();
    if let Some(sent) = &sent {
        sent.blank_in(read.doc.to_mut());
    }
    let Ok(wire) =
        crate::protocol::json_from_bytes::<MessagesRequest<&RawValue, &RawValue>>(&read.doc)
    else {
        return ReadBlanked::Decoded(None);
    };
    let edits = read.edits_in_body(if pass_through::fields_round_trip(&wire) {
        pass_through::edits(&read.doc, &wire)
    } else {
        None
    });
    let mut memoized = None;
    let from_texts = |texts: Vec<&RawValue>| {
        let (messages, decoded) = memo.messages(
            read.known.take(),
            &read.doc,
            &texts,
            pass_through::message_round_trips,
            decode_message,
        )?;
        let mut tool_use_ids = Vec::new();
        for (index, message) in messages.iter().enumerate() {
            check_tool_results(message, index, &mut tool_use_ids)?;
        }
        memoized = Some(decoded);
        Ok(messages)
    };
    let mut reading = ToolsReading::new(sent);
    let tools = |text| reading.read(memo.tools(), &read.doc, text, decoded_tools);
    let decoded = request_from_wire(wire, from_texts, tools);
    if reading.mismatched {
        return ReadBlanked::Mismatched;
    }
    let (Ok(mut request), Some(mut memoized)) = (decoded, memoized) else {
        return ReadBlanked::Decoded(None);
    };
    if reading.blanked() {
        // A list blanked before the messages is in the head the conversation keeps.
        memoized.head_from(body);
    }
    // The encoder merges turns of one role that follow each other.
    let alternate = request
        .messages
        .windows(2)
        .all(|pair| pair[0].role != pair[1].role);
    let messages_round_trip = alternate && memoized.all_round_trip();
    request.message_facts = memo.remember(memoized, &request.messages);
    ReadBlanked::Decoded(Some((
        request,
        edits.filter(|_| messages_round_trip && reading.round_trip),
    )))
}

/// The input tokens of a request, as `count_tokens` reports them (an estimate).
pub fn estimate_input_tokens(request: &Request) -> u64 {
    request.estimated_input_tokens()
}

/// The tools of a request's list.
fn decode_tools(tools: Option<Vec<Value>>) -> Result<Shared<Tool>, Error> {
    tools_of(tools.unwrap_or_default()).map(Shared::new)
}

fn tools_of(tools: Vec<Value>) -> Result<Vec<Tool>, Error> {
    tools
        .into_iter()
        .enumerate()
        .map(|(i, tool)| decode_tool(tool, i))
        .collect()
}

/// The request `wire` holds; `decode_messages` decodes its messages and `decode_tools` its
/// tools, whatever they were read as.
fn request_from_wire<M, T>(
    wire: MessagesRequest<'_, M, T>,
    decode_messages: impl FnOnce(Vec<M>) -> Result<Vec<Message>, Error>,
    decode_tools: impl FnOnce(Option<T>) -> Result<Shared<Tool>, Error>,
) -> Result<Request, Error> {
    let MessagesRequest {
        model,
        messages,
        max_tokens,
        system,
        tools,
        tool_choice,
        thinking,
        stop_sequences,
        temperature,
        top_p,
        top_k,
        metadata,
        stream,
        mut extra,
    } = wire;
    let model = model.value;
    if model.is_empty() {
        return Err(Error::invalid_field("model", "model: must not be empty"));
    }
    let Some(max_tokens) = max_tokens else {
        return Err(Error::invalid_field(
            "max_tokens",
            "max_tokens: Field required",
        ));
    };
    let messages = decode_messages(messages)?;
    let mut request = Request::new(model, messages);
    request.system = match system {
        None => Shared::default(),
        Some(TextOrBlocks::Text(text)) => vec![Part::text(text)].into(),
        Some(TextOrBlocks::Blocks(blocks)) => blocks
            .into_iter()
            .enumerate()
            .map(|(i, block)| decode_block(block, &|| format!("system[{i}]"), Role::System))
            .collect::<Result<Vec<_>, _>>()?
            .into(),
    };
    request.tools = decode_tools(tools)?;
    if let Some(choice) = tool_choice {
        let (choice, parallel) = decode_tool_choice(choice)?;
        request.tool_choice = choice;
        request.parallel_tool_calls = parallel;
    }
    if let Some(thinking) = thinking {
        match thinking.get("type").and_then(Value::as_str) {
            Some("enabled") => {
                request.reasoning = Some(Reasoning {
                    effort: None,
                    budget_tokens: thinking.get("budget_tokens").and_then(Value::as_u64),
                });
            }
            Some("disabled") => {
                request.reasoning = Some(Reasoning {
                    effort: Some(crate::model::ReasoningEffort::None),
                    budget_tokens: None,
                });
            }
            // Adaptive thinking and anything newer reach Anthropic back-ends unchanged.
            _ => {
                extra.insert("thinking".into(), thinking);
            }
        }
    }
    request.sampling = Sampling {
        temperature,
        top_p,
        top_k,
        max_tokens: Some(max_tokens),
        stop: stop_sequences.unwrap_or_default(),
        ..Sampling::default()
    };
    if let Some(mut metadata) = metadata {
        if let Some(Value::String(user)) = metadata.remove("user_id") {
            request.client.user = Some(user);
        }
        if !metadata.is_empty() {
            extra.insert("metadata".into(), Value::Object(metadata));
        }
    }
    request.stream = stream.is_some_and(|stream| stream.value);
    request.extensions = Extensions::new(PROTOCOL, extra);
    Ok(request)
}

fn decode_messages(messages: Vec<WireMessage>) -> Result<Vec<Message>, Error> {
    let mut out = Vec::with_capacity(messages.len());
    let mut tool_use_ids: Vec<String> = Vec::new();
    for (i, message) in messages.into_iter().enumerate() {
        let message = decode_message(message, i)?;
        check_tool_results(&message, i, &mut tool_use_ids)?;
        out.push(message);
    }
    Ok(out)
}

/// The `i`th message. A pure function of the message (`i` only names it in an error), so
/// the message memo may reuse what it gave.
fn decode_message(message: WireMessage, i: usize) -> Result<Message, Error> {
    // Where an error is, written only for an error: formatting it for every message and
    // block cost ~450 instructions each (bench/callgrind.sh, a 100 KB agent request).
    let path = || format!("messages[{i}]");
    let role = match message.role.as_str() {
        "user" => Role::User,
        "assistant" => Role::Assistant,
        // Mid-conversation system messages (Claude Code sends them with the
        // `mid-conversation-system-*` beta).
        "system" => Role::System,
        other => {
            let path = path();
            return Err(Error::invalid_field(
                format!("{path}.role"),
                format!(
                    "{path}.role: Input should be 'user', 'assistant' or 'system', not '{other}'"
                ),
            ));
        }
    };
    let (parts, as_parts) = match message.content {
        TextOrBlocks::Text(text) => (vec![Part::text(text)], false),
        TextOrBlocks::Blocks(blocks) => (
            blocks
                .into_iter()
                .enumerate()
                .map(|(j, block)| decode_block(block, &|| format!("{}.content[{j}]", path()), role))
                .collect::<Result<Vec<_>, _>>()?,
            true,
        ),
    };
    Ok(Message {
        role,
        parts: parts.into(),
        name: None,
        content_as_parts: as_parts.then_some(PROTOCOL),
        extensions: Extensions::new(PROTOCOL, message.extra),
    })
}

/// Checks that every tool result of the `i`th message answers a tool call of a message
/// before it: `tool_use_ids` holds their calls, and takes this message's.
fn check_tool_results(
    message: &Message,
    i: usize,
    tool_use_ids: &mut Vec<String>,
) -> Result<(), Error> {
    for (j, part) in message.parts.iter().enumerate() {
        match part {
            Part::ToolCall { id, .. } => tool_use_ids.push(id.clone()),
            Part::ToolResult { call_id, .. } if !tool_use_ids.contains(call_id) => {
                let path = format!("messages[{i}]");
                return Err(Error::invalid_field(
                    format!("{path}.content[{j}].tool_use_id"),
                    format!(
                        "{path}.content[{j}]: unexpected `tool_use_id` found in \
                         `tool_result` blocks: {call_id}. Each `tool_result` block must \
                         have a corresponding `tool_use` block in an earlier message."
                    ),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

fn take_str(
    obj: &mut Map<String, Value>,
    key: &str,
    path: &dyn Fn() -> String,
) -> Result<String, Error> {
    match obj.remove(key) {
        Some(Value::String(s)) => Ok(s),
        _ => {
            let path = path();
            Err(Error::invalid_field(
                format!("{path}.{key}"),
                format!("{path}.{key}: Field required (a string)"),
            ))
        }
    }
}

/// Reads one content block. Blocks of kinds the model does not know are kept whole for
/// Anthropic back-ends; blocks in the wrong role are errors. `path` writes where the block
/// is, for an error.
fn decode_block(block: Value, path: &dyn Fn() -> String, role: Role) -> Result<Part, Error> {
    let Value::Object(mut obj) = block else {
        let path = path();
        return Err(Error::invalid_field(
            &path,
            format!("{path}: Input should be an object with a 'type'"),
        ));
    };
    let Some(Value::String(kind)) = obj.remove("type") else {
        let path = path();
        return Err(Error::invalid_field(
            format!("{path}.type"),
            format!("{path}.type: Field required"),
        ));
    };
    let wrong_role = |allowed: &str| {
        let path = path();
        Error::invalid_field(
            format!("{path}.type"),
            format!("{path}: a '{kind}' block is only allowed in {allowed} messages"),
        )
    };
    match kind.as_str() {
        "text" => {
            let text = take_str(&mut obj, "text", path)?;
            Ok(Part::Text {
                text,
                extensions: Extensions::new(PROTOCOL, obj),
            })
        }
        "image" => match decode_source(&mut obj, path)? {
            Some(source) => Ok(Part::Image {
                source,
                detail: None,
                extensions: Extensions::new(PROTOCOL, obj),
            }),
            // A Files API reference or a newer source kind: kept whole.
            None => {
                obj.insert("type".into(), Value::String(kind));
                Ok(Part::Opaque {
                    protocol: PROTOCOL,
                    value: Value::Object(obj),
                })
            }
        },
        "tool_use" => {
            if role != Role::Assistant {
                return Err(wrong_role("assistant"));
            }
            let id = take_str(&mut obj, "id", path)?;
            let name = take_str(&mut obj, "name", path)?;
            let input = obj.remove("input").unwrap_or(Value::Object(Map::new()));
            Ok(Part::ToolCall {
                id,
                name,
                arguments: input.to_string(),
                extensions: Extensions::new(PROTOCOL, obj),
            })
        }
        "tool_result" => {
            if role != Role::User {
                return Err(wrong_role("user"));
            }
            let call_id = take_str(&mut obj, "tool_use_id", path)?;
            let is_error = obj
                .remove("is_error")
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
            let content = match obj.remove("content") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::String(text)) => vec![Part::text(text)],
                Some(Value::Array(blocks)) => blocks
                    .into_iter()
                    .enumerate()
                    .map(|(i, b)| decode_block(b, &|| format!("{}.content[{i}]", path()), role))
                    .collect::<Result<_, _>>()?,
                Some(_) => {
                    let path = path();
                    return Err(Error::invalid_field(
                        format!("{path}.content"),
                        format!("{path}.content: Input should be a string or a list of blocks"),
                    ));
                }
            };
            Ok(Part::ToolResult {
                call_id,
                content,
                is_error,
                extensions: Extensions::new(PROTOCOL, obj),
            })
        }
        "thinking" => {
            let text = take_str(&mut obj, "thinking", path)?;
            let signature = match obj.remove("signature") {
                Some(Value::String(s)) => Some(s),
                _ => None,
            };
            Ok(Part::Thinking {
                text,
                signature,
                redacted: false,
                extensions: anthropic_ext(obj),
            })
        }
        "redacted_thinking" => {
            let data = take_str(&mut obj, "data", path)?;
            Ok(Part::Thinking {
                text: data,
                signature: None,
                redacted: true,
                extensions: anthropic_ext(obj),
            })
        }
        _ => {
            obj.insert("type".into(), Value::String(kind));
            Ok(Part::Opaque {
                protocol: PROTOCOL,
                value: Value::Object(obj),
            })
        }
    }
}

/// An image source, or `None` for kinds the model has no slot for (left in `obj`).
fn decode_source(
    obj: &mut Map<String, Value>,
    path: &dyn Fn() -> String,
) -> Result<Option<ImageSource>, Error> {
    let Some(Value::Object(mut source)) = obj.remove("source") else {
        let path = path();
        return Err(Error::invalid_field(
            format!("{path}.source"),
            format!("{path}.source: Field required"),
        ));
    };
    let spath = || format!("{}.source", path());
    match source.get("type").and_then(Value::as_str) {
        Some("base64") => Ok(Some(ImageSource::Base64 {
            media_type: take_str(&mut source, "media_type", &spath)?,
            data: take_str(&mut source, "data", &spath)?,
        })),
        Some("url") => Ok(Some(ImageSource::Url(take_str(
            &mut source,
            "url",
            &spath,
        )?))),
        _ => {
            obj.insert("source".into(), Value::Object(source));
            Ok(None)
        }
    }
}

fn decode_tool(tool: Value, index: usize) -> Result<Tool, Error> {
    let path = || format!("tools[{index}]");
    let Value::Object(mut obj) = tool else {
        let path = path();
        return Err(Error::invalid_field(
            &path,
            format!("{path}: Input should be an object"),
        ));
    };
    // Server tools (web search, bash, text editor, ...) have a versioned `type`.
    if obj
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| t != "custom")
    {
        return Ok(Tool::Opaque {
            protocol: PROTOCOL,
            value: Value::Object(obj),
        });
    }
    let name = take_str(&mut obj, "name", &path)?;
    let description = match obj.remove("description") {
        Some(Value::String(d)) => Some(d),
        _ => None,
    };
    let parameters = obj.remove("input_schema");
    if parameters.is_none() {
        let path = path();
        return Err(Error::invalid_field(
            format!("{path}.input_schema"),
            format!("{path}.input_schema: Field required"),
        ));
    }
    Ok(Tool::Function {
        name,
        description,
        parameters,
        strict: None,
        extensions: Extensions::new(PROTOCOL, obj),
    })
}

fn decode_tool_choice(value: Value) -> Result<(Option<ToolChoice>, Option<bool>), Error> {
    let parallel = value
        .get("disable_parallel_tool_use")
        .and_then(Value::as_bool)
        .map(|disabled| !disabled);
    let choice = match value.get("type").and_then(Value::as_str) {
        Some("auto") => ToolChoice::Auto,
        Some("any") => ToolChoice::Required,
        Some("none") => ToolChoice::None,
        Some("tool") => match value.get("name").and_then(Value::as_str) {
            Some(name) => ToolChoice::Tool(name.to_owned()),
            None => {
                return Err(Error::invalid_field(
                    "tool_choice.name",
                    "tool_choice.name: Field required when type is 'tool'",
                ));
            }
        },
        _ => {
            return Err(Error::invalid_field(
                "tool_choice.type",
                "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'",
            ));
        }
    };
    Ok((Some(choice), parallel))
}

/// Maps a wire stop reason to the model's.
pub fn stop_reason(reason: &str) -> FinishReason {
    match reason {
        "end_turn" => FinishReason::EndTurn,
        "max_tokens" => FinishReason::MaxTokens,
        "stop_sequence" => FinishReason::StopSequence,
        "tool_use" => FinishReason::ToolUse,
        "pause_turn" => FinishReason::PauseTurn,
        "refusal" => FinishReason::Refusal,
        "model_context_window_exceeded" => FinishReason::ContextWindowExceeded,
        other => FinishReason::Other(other.to_owned()),
    }
}

/// Anthropic usage -> the model's (input there excludes cache reads and writes).
pub fn usage(value: Value) -> Option<Usage> {
    let Value::Object(raw) = value else {
        return None;
    };
    let wire: WireUsage = serde_json::from_value(Value::Object(raw.clone())).ok()?;
    let read = wire.cache_read_input_tokens.unwrap_or(0);
    let written = wire.cache_creation_input_tokens.unwrap_or(0);
    Some(Usage {
        input_tokens: wire
            .input_tokens
            .saturating_add(read)
            .saturating_add(written),
        output_tokens: wire.output_tokens,
        cached_input_tokens: wire.cache_read_input_tokens,
        cache_creation_input_tokens: wire.cache_creation_input_tokens,
        reasoning_tokens: None,
        extensions: Extensions::new(PROTOCOL, raw),
    })
}

/// The error a provider reported in an `{"type":"error","error":{...}}` body or event.
pub(crate) fn wire_error(value: &Value) -> ChunkError {
    let error = value.get("error").unwrap_or(value);
    let field = |key: &str| error.get(key).and_then(Value::as_str).map(str::to_owned);
    ChunkError::Upstream {
        message: field("message").unwrap_or_else(|| error.to_string()),
        error_type: field("type"),
        code: None,
    }
}

/// Turns one content block of a response into events.
pub(crate) fn block_events(block: Value, index: &mut u32, out: &mut Vec<Event>) {
    let Value::Object(mut obj) = block else {
        return;
    };
    let kind = obj
        .remove("type")
        .and_then(|t| t.as_str().map(str::to_owned))
        .unwrap_or_default();
    let text = |obj: &mut Map<String, Value>, key: &str| match obj.remove(key) {
        Some(Value::String(s)) => s,
        _ => String::new(),
    };
    match kind.as_str() {
        "text" => out.push(Event::TextDelta(text(&mut obj, "text"))),
        "thinking" => {
            let thinking = text(&mut obj, "thinking");
            let signature = match obj.remove("signature") {
                Some(Value::String(s)) => Some(s),
                _ => None,
            };
            out.push(Event::ThinkingDelta {
                text: thinking,
                signature,
            });
        }
        "redacted_thinking" => out.push(Event::RedactedThinking(text(&mut obj, "data"))),
        "tool_use" => {
            let call = *index;
            *index += 1;
            out.push(Event::ToolCallStart {
                index: call,
                id: text(&mut obj, "id"),
                name: text(&mut obj, "name"),
            });
            let input = obj.remove("input").unwrap_or(Value::Object(Map::new()));
            out.push(Event::ToolCallArgsDelta {
                index: call,
                arguments: input.to_string(),
            });
            out.push(Event::ToolCallEnd { index: call });
        }
        _ => {
            // Server tool blocks and newer kinds: kept whole for an Anthropic client.
            obj.insert("type".into(), Value::String(kind));
            let mut fields = Map::new();
            fields.insert("block".into(), Value::Object(obj));
            out.push(Event::Extension(Extensions::new(PROTOCOL, fields)));
        }
    }
}

/// True when folding `content` into model parts and back gives the same blocks: only
/// text, thinking and tool_use blocks without extra fields, and no two text blocks in a
/// row (the fold joins them).
fn content_fits_the_model(content: &[Value]) -> bool {
    let mut previous_text = false;
    content.iter().all(|block| {
        let Some(obj) = block.as_object() else {
            return false;
        };
        let known: &[&str] = match obj.get("type").and_then(Value::as_str) {
            Some("text") => &["type", "text"],
            Some("thinking") => &["type", "thinking", "signature"],
            Some("redacted_thinking") => &["type", "data"],
            Some("tool_use") => &["type", "id", "name", "input"],
            _ => return false,
        };
        let is_text = obj.get("type").and_then(Value::as_str) == Some("text");
        let fits = obj.keys().all(|k| known.contains(&k.as_str())) && !(is_text && previous_text);
        previous_text = is_text;
        fits
    })
}

/// Turns a non-streaming response into the event sequence a stream would give.
pub fn decode_response(body: &[u8]) -> Result<Vec<Event>, ChunkError> {
    decode_response_checked(body).map(|(events, _)| events)
}

/// [`decode_response`], and whether llmux's own encoder gives this body back from those
/// events (the same JSON, members that are `null` aside): when it does, an Anthropic
/// client may get the body as it came (see [`crate::model::VerbatimSlot`]).
pub fn decode_response_checked(body: &[u8]) -> Result<(Vec<Event>, bool), ChunkError> {
    let response: MessagesResponse = crate::protocol::json_from_bytes(body)
        .map_err(|e| ChunkError::Garbage(format!("the response is not a message: {e}")))?;
    if response.extra.get("type").and_then(Value::as_str) == Some("error") {
        return Err(wire_error(&Value::Object(response.extra)));
    }
    let lossless = round_trips(&response);
    let mut top = response.extra;
    for known in ["type", "role"] {
        top.remove(known);
    }
    let mut scoped = Map::new();
    if !top.is_empty() {
        scoped.insert("top".into(), Value::Object(top));
    }
    // Block fields the model has no slot for (citations, server tool blocks in their
    // place, text split into several blocks) would be lost in the fold: keep the content
    // whole for an Anthropic client, which gets it back if nothing changed it.
    if !content_fits_the_model(&response.content) {
        scoped.insert("content".into(), Value::Array(response.content.clone()));
    }
    let mut events = vec![Event::Start {
        id: response.id,
        model: response.model,
        created: None,
        extensions: Extensions::new(PROTOCOL, scoped),
    }];
    let mut index = 0;
    for block in response.content {
        block_events(block, &mut index, &mut events);
    }
    if let Some(u) = response.usage.and_then(usage) {
        events.push(Event::Usage(u));
    }
    events.push(Event::Finish {
        reason: response
            .stop_reason
            .as_deref()
            .map(stop_reason)
            .unwrap_or(FinishReason::EndTurn),
        stop_sequence: response.stop_sequence,
    });
    Ok((super::json_tool::as_text(events), lossless))
}

/// Whether [`super::encode_response`] rebuilds `response` from its events: every member
/// the encoder writes present and in the form it writes it, and content that either comes
/// back from the model's parts or is kept whole (see `content_fits_the_model`). Anything
/// else (a missing cache count, `end_turn` after a tool call, the JSON answer tool, ...)
/// goes through the encoder, which is the reference.
fn round_trips(response: &MessagesResponse) -> bool {
    let member = |key: &str| response.extra.get(key).and_then(Value::as_str);
    let top = response.id.starts_with("msg_")
        && !response.model.is_empty()
        && member("type") == Some("message")
        && member("role") == Some("assistant");
    let content = !response.content.iter().any(is_json_answer_call)
        && (!content_fits_the_model(&response.content)
            || response.content.iter().all(block_rebuilds));
    let called_tools = response
        .content
        .iter()
        .any(|block| block.get("type").and_then(Value::as_str) == Some("tool_use"));
    let stop = response.stop_reason.as_deref().is_some_and(|wire| {
        let finish = stop_reason(wire);
        super::encode::stop_reason(&super::encode::effective_stop(Some(&finish), called_tools))
            == wire
    });
    top && content && stop && response.usage.as_ref().is_some_and(usage_round_trips)
}

/// A call to the tool llmux answers JSON-schema requests through: the client gets text.
fn is_json_answer_call(block: &Value) -> bool {
    block.get("type").and_then(Value::as_str) == Some("tool_use")
        && block.get("name").and_then(Value::as_str) == Some(super::JSON_RESPONSE_TOOL)
}

/// Whether a block the model holds is rebuilt as it came from its part: the encoder drops
/// empty text, makes up a missing signature and writes a tool's input as an object.
fn block_rebuilds(block: &Value) -> bool {
    let string = |key: &str| block.get(key).and_then(Value::as_str);
    match string("type") {
        Some("text") => string("text").is_some_and(|text| !text.is_empty()),
        Some("thinking") => string("thinking").is_some() && string("signature").is_some(),
        Some("redacted_thinking") => string("data").is_some(),
        Some("tool_use") => {
            string("id").is_some()
                && string("name").is_some()
                && block.get("input").is_some_and(Value::is_object)
        }
        _ => false,
    }
}

/// Whether the encoder's usage (every count written, cache counts as 0 when absent) is
/// this one: all four counts present as whole numbers.
fn usage_round_trips(usage: &Value) -> bool {
    [
        "input_tokens",
        "output_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
    ]
    .iter()
    .all(|key| usage.get(key).is_some_and(Value::is_u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(json: &str) -> Result<Request, Error> {
        decode_request(json.as_bytes())
    }

    #[test]
    fn max_tokens_is_required() {
        let err =
            decode(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#).unwrap_err();
        assert_eq!(err.param(), Some("max_tokens"));
    }

    #[test]
    fn tool_results_need_an_earlier_tool_use() {
        let err = decode(
            r#"{"model":"m","max_tokens":10,"messages":[{"role":"user","content":[
                {"type":"tool_result","tool_use_id":"toolu_x","content":"42"}]}]}"#,
        )
        .unwrap_err();
        assert_eq!(err.param(), Some("messages[0].content[0].tool_use_id"));
        assert!(err.to_string().contains("toolu_x"));
    }

    #[test]
    fn blocks_in_the_wrong_role_or_without_a_type_are_rejected() {
        let err = decode(
            r#"{"model":"m","max_tokens":10,"messages":[{"role":"user","content":[
                {"type":"tool_use","id":"t","name":"f","input":{}}]}]}"#,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("only allowed in assistant"),
            "{err}"
        );
        let err = decode(r#"{"model":"m","max_tokens":10,"messages":[{"role":"user","content":[{"text":"x"}]}]}"#)
            .unwrap_err();
        assert_eq!(err.param(), Some("messages[0].content[0].type"));
        let err =
            decode(r#"{"model":"m","max_tokens":10,"messages":[{"role":"user","content":7}]}"#)
                .unwrap_err();
        assert_eq!(err.param(), Some("messages[0].content"));
    }

    #[test]
    fn errors_name_the_field_at_every_depth() {
        let param = |body: &str| decode(body).unwrap_err().param().map(str::to_owned);
        let turns = |last: &str| {
            format!(
                r#"{{"model":"m","max_tokens":10,"messages":[
                {{"role":"user","content":"hi"}},
                {{"role":"assistant","content":[{{"type":"tool_use","id":"t","name":"f","input":{{}}}}]}},
                {{"role":"user","content":[{last}]}}]}}"#
            )
        };
        let nested =
            turns(r#"{"type":"tool_result","tool_use_id":"t","content":[{"type":"text"}]}"#);
        assert_eq!(
            param(&nested).as_deref(),
            Some("messages[2].content[0].content[0].text")
        );
        let image = turns(r#"{"type":"image","source":{"type":"base64","data":"x"}}"#);
        assert_eq!(
            param(&image).as_deref(),
            Some("messages[2].content[0].source.media_type")
        );
        let role = r#"{"model":"m","max_tokens":10,"messages":[{"role":"tool","content":"x"}]}"#;
        assert_eq!(param(role).as_deref(), Some("messages[0].role"));
        let system = r#"{"model":"m","max_tokens":10,"system":[{"type":"text","text":"a"},
            {"type":"text"}],"messages":[{"role":"user","content":"hi"}]}"#;
        assert_eq!(param(system).as_deref(), Some("system[1].text"));
        let tool = r#"{"model":"m","max_tokens":10,"tools":[{"name":"a","input_schema":{}},
            {"name":"b"}],"messages":[{"role":"user","content":"hi"}]}"#;
        assert_eq!(param(tool).as_deref(), Some("tools[1].input_schema"));
    }

    #[test]
    fn thinking_tool_choice_and_metadata_are_read() {
        let request = decode(
            r#"{"model":"m","max_tokens":2000,"thinking":{"type":"enabled","budget_tokens":1500},
                "tool_choice":{"type":"any","disable_parallel_tool_use":true},
                "metadata":{"user_id":"u1"},"stop_sequences":["END"],"top_k":5,
                "messages":[{"role":"user","content":"hi"}]}"#,
        )
        .unwrap();
        assert_eq!(request.reasoning.unwrap().budget_tokens, Some(1500));
        assert_eq!(request.tool_choice, Some(ToolChoice::Required));
        assert_eq!(request.parallel_tool_calls, Some(false));
        assert_eq!(request.client.user.as_deref(), Some("u1"));
        assert_eq!(request.sampling.top_k, Some(5));
        assert_eq!(request.sampling.stop, ["END"]);
    }

    #[test]
    fn usage_counts_cache_reads_and_writes_as_input() {
        let u = usage(
            serde_json::json!({"input_tokens": 10, "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 5, "output_tokens": 7}),
        )
        .unwrap();
        assert_eq!(u.input_tokens, 115);
        assert_eq!(u.cached_input_tokens, Some(100));
        assert_eq!(u.cache_creation_input_tokens, Some(5));
    }
}
