//! Chat Completions wire -> canonical model.

use std::sync::LazyLock;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::pass_through;
use super::stream::{ChunkError, upstream_error};
use super::types::{ChatCompletion, ChatMessage, ChatRequest, Content};
use crate::Error;
use crate::model::{
    Edits, Event, Extensions, FinishReason, ImageSource, Message, Part, Protocol, Reasoning,
    ReasoningEffort, Request, ResponseFormat, Role, Sampling, Shared, Tool, ToolChoice, Usage,
};
use crate::protocol::Spanned;
use crate::protocol::message_memo::{self, MessageMemo};
use crate::protocol::tools_memo::{ReadBlanked, ToolsMemo, ToolsReading};

const PROTOCOL: Protocol = Protocol::OpenAiChat;

/// Extension key under which a thinking part remembers the field it came in
/// (`reasoning_content` or `reasoning`), so the same protocol sends it back the same way.
pub(crate) const REASONING_FIELD: &str = "reasoning_field";

/// What the client asked for that only its own front-end needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientOptions {
    /// `stream_options.include_usage`: send a final usage chunk.
    pub include_usage: bool,
}

/// Parses a request body. Errors name the offending field.
pub fn decode_request(body: &[u8]) -> Result<(Request, ClientOptions), Error> {
    let wire: ChatRequest = parse_json(body)?;
    request_from_wire(wire, messages_from_wire, tools_from_wire)
}

/// The messages of the latest large requests, decoded, with whether each would be written
/// again as it came (see [`super::pass_through`]); requests from
/// [`message_memo::MEMO_FROM`] up are read through it.
pub(super) static MESSAGE_MEMO: LazyLock<MessageMemo> = LazyLock::new(MessageMemo::default);

/// [`decode_request`], and where the body is patched if it is to go to an OpenAI-chat
/// back-end as it came: `None` when the encoder would not write it again as it came (see
/// [`super::pass_through`]).
pub fn decode_request_checked(
    body: &[u8],
) -> Result<(Request, ClientOptions, Option<Edits>), Error> {
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
) -> Option<(Request, ClientOptions, Option<Edits>)> {
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
) -> Option<(Request, ClientOptions, Option<Edits>)> {
    let wire = crate::protocol::json_from_bytes::<ChatRequest<ChatMessage, &RawValue>>(doc).ok()?;
    let edits = if pass_through::fields_round_trip(&wire)
        && wire.messages.iter().all(pass_through::message_round_trips)
    {
        pass_through::edits(doc, &wire)
    } else {
        None
    };
    let tools = |text| reading.read(memo, doc, text, decoded_tools);
    let (request, options) = request_from_wire(wire, messages_from_wire, tools).ok()?;
    Some((request, options, edits.filter(|_| reading.round_trip)))
}

/// The tools of a request's list, and whether the encoder writes them again as they came
/// (for [`ToolsMemo::tools`]).
fn decoded_tools(list: Vec<Value>) -> Result<(Vec<Tool>, bool), Error> {
    let round_trips = pass_through::tools_round_trip(&list);
    Ok((tools_of(list)?, round_trips))
}

/// [`decode_request_checked`], decoding every message.
pub(super) fn decode_every_message(
    body: &[u8],
) -> Result<(Request, ClientOptions, Option<Edits>), Error> {
    let wire: ChatRequest = parse_json(body)?;
    let edits = if pass_through::request_round_trips(&wire) {
        pass_through::edits(body, &wire)
    } else {
        None
    };
    let (request, options) = request_from_wire(wire, messages_from_wire, tools_from_wire)?;
    Ok((request, options, edits))
}

/// [`decode_request_checked`] with the messages read as their JSON texts and decoded
/// through `memo`, which decodes only those it has not seen. `None` for a request with
/// anything wrong: [`decode_every_message`] then finds the error and names its field, as
/// it always has.
pub(super) fn decode_with_memo(
    body: &[u8],
    memo: &MessageMemo,
) -> Option<(Request, ClientOptions, Option<Edits>)> {
    ReadBlanked::retried(|blank| read_with_memo(body, memo, blank))
}

/// [`decode_with_memo`], with a kept list of tools blanked in the memo's document (the same
/// offsets) when `blank` and one is found.
fn read_with_memo(
    body: &[u8],
    memo: &MessageMemo,
    blank: bool,
) -> ReadBlanked<(Request, ClientOptions, Option<Edits>)> {
    let mut read = memo.read(body, pass_through::message_round_trips, message_from_wire);
    let sent = if blank {
        memo.tools().sent_again(&read.doc)
    } else {
        None
    };
    if let Some(sent) = &sent {
        sent.blank_in(read.doc.to_mut());
    }
    let Ok(wire) = crate::protocol::json_from_bytes::<ChatRequest<&RawValue, &RawValue>>(&read.doc)
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
            message_from_wire,
        )?;
        memoized = Some(decoded);
        Ok(messages)
    };
    let mut reading = ToolsReading::new(sent);
    let tools = |text| reading.read(memo.tools(), &read.doc, text, decoded_tools);
    let decoded = request_from_wire(wire, from_texts, tools);
    if reading.mismatched {
        return ReadBlanked::Mismatched;
    }
    let (Ok((mut request, options)), Some(mut memoized)) = (decoded, memoized) else {
        return ReadBlanked::Decoded(None);
    };
    if reading.blanked() {
        // A list blanked before the messages is in the head the conversation keeps.
        memoized.head_from(body);
    }
    let messages_round_trip = memoized.all_round_trip();
    request.message_facts = memo.remember(memoized, &request.messages);
    ReadBlanked::Decoded(Some((
        request,
        options,
        edits.filter(|_| messages_round_trip && reading.round_trip),
    )))
}

fn messages_from_wire(messages: Vec<ChatMessage>) -> Result<Vec<Message>, Error> {
    messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| message_from_wire(m, i))
        .collect()
}

/// Parses JSON into `T`: a body that is not JSON (or not an object) is a 400, a field that
/// is missing or of the wrong type a 422 naming the field.
pub(crate) fn parse_json<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, Error> {
    // Tracking the path of every value cost a third of decoding a 2 KB request
    // (bench/callgrind.sh), so the path is found only for a body that fails: it is decoded
    // a second time, with the tracking on, to name the field.
    if let Ok(value) = crate::protocol::json_from_bytes(body) {
        return Ok(value);
    }
    parse_json_naming_the_field(body)
}

/// [`parse_json`] with the path of every value tracked, for the error that names the field.
#[cold]
fn parse_json_naming_the_field<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                Error::invalid_request(format!("request body is not valid JSON: {inner}"))
            }
            _ => match field_of(&path, &inner.to_string()) {
                Some(field) => Error::invalid_field(
                    field.clone(),
                    format!("invalid value for '{field}': {inner}"),
                ),
                None => Error::invalid_request(format!("invalid request: {inner}")),
            },
        }
    })?;
    de.end()
        .map_err(|err| Error::invalid_request(format!("request body is not valid JSON: {err}")))?;
    Ok(value)
}

/// The field a serde error is about: its path, or, for a missing field (which serde reports
/// on the object holding it), that path and the field's name. `None` for the body itself.
pub(crate) fn field_of(path: &str, message: &str) -> Option<String> {
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    match (path, missing) {
        ("." | "", Some(name)) => Some(name.to_owned()),
        ("." | "", None) => None,
        (path, Some(name)) => Some(format!("{path}.{name}")),
        (path, None) => Some(path.to_owned()),
    }
}

/// The tools of a request's list.
fn tools_from_wire(tools: Option<Vec<Value>>) -> Result<Shared<Tool>, Error> {
    tools_of(tools.unwrap_or_default()).map(Shared::new)
}

fn tools_of(tools: Vec<Value>) -> Result<Vec<Tool>, Error> {
    tools
        .into_iter()
        .enumerate()
        .map(|(i, t)| tool_from_wire(t, i))
        .collect()
}

/// The request `wire` holds; `messages_from_wire` decodes its messages and
/// `tools_from_wire` its tools, whatever they were read as.
fn request_from_wire<M, T>(
    wire: ChatRequest<'_, M, T>,
    messages_from_wire: impl FnOnce(Vec<M>) -> Result<Vec<Message>, Error>,
    tools_from_wire: impl FnOnce(Option<T>) -> Result<Shared<Tool>, Error>,
) -> Result<(Request, ClientOptions), Error> {
    let ChatRequest {
        model,
        messages,
        stream,
        stream_options,
        temperature,
        top_p,
        max_tokens,
        max_completion_tokens,
        stop,
        seed,
        presence_penalty,
        frequency_penalty,
        tools,
        tool_choice,
        parallel_tool_calls,
        reasoning_effort,
        response_format,
        user,
        mut extra,
    } = wire;

    let model = model.value;
    if model.is_empty() {
        return Err(Error::invalid_field("model", "'model' must not be empty"));
    }
    if messages.is_empty() {
        return Err(Error::invalid_field(
            "messages",
            "'messages' must hold at least one message",
        ));
    }

    let mut options = ClientOptions::default();
    if let Some(Spanned { value: so, .. }) = stream_options {
        options.include_usage = so.include_usage.unwrap_or(false);
        if !so.extra.is_empty() {
            extra.insert("stream_options".into(), Value::Object(so.extra));
        }
    }
    // The canonical model has one output cap; remember which name the client used.
    if let Some(cap) = max_completion_tokens {
        extra.insert("max_completion_tokens".into(), Value::from(cap));
    }

    let messages = messages_from_wire(messages)?;
    let tools = tools_from_wire(tools)?;
    let tool_choice = tool_choice.map(tool_choice_from_wire).transpose()?;
    let response_format = response_format.map(response_format_from_wire).transpose()?;
    // An effort level the model does not know (a newer one) still reaches a back-end of
    // this protocol, which decides whether it is valid.
    let reasoning = match reasoning_effort {
        Some(effort) => match ReasoningEffort::parse(&effort) {
            Some(effort) => Some(Reasoning {
                effort: Some(effort),
                budget_tokens: None,
            }),
            None => {
                extra.insert("reasoning_effort".into(), Value::String(effort));
                None
            }
        },
        None => None,
    };

    let mut request = Request::new(model, messages);
    request.tools = tools;
    request.tool_choice = tool_choice;
    request.parallel_tool_calls = parallel_tool_calls;
    request.sampling = Sampling {
        temperature,
        top_p,
        top_k: None,
        max_tokens: max_completion_tokens.or(max_tokens),
        stop: stop.map(|s| s.into_vec()).unwrap_or_default(),
        seed,
        presence_penalty,
        frequency_penalty,
    };
    request.reasoning = reasoning;
    request.response_format = response_format;
    request.stream = stream.is_some_and(|stream| stream.value);
    request.client.user = user;
    request.extensions = Extensions::new(PROTOCOL, extra);
    Ok((request, options))
}

fn message_from_wire(wire: ChatMessage, index: usize) -> Result<Message, Error> {
    // Paths are written only for an error: formatting them for every message cost 2 % of
    // a request (bench/callgrind.sh).
    let path = || format!("messages[{index}]");
    let role = match wire.role.as_str() {
        "system" => Role::System,
        "developer" => Role::Developer,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" => Role::Tool,
        other => {
            let path = path();
            return Err(Error::invalid_field(
                format!("{path}.role"),
                format!(
                    "invalid value for '{path}.role': '{other}'; expected one of system, \
                     developer, user, assistant, tool"
                ),
            ));
        }
    };
    let content_as_parts = matches!(wire.content, Content::Parts(_)).then_some(PROTOCOL);
    let mut parts = Vec::new();

    if role == Role::Assistant {
        let (text, field) = match (wire.reasoning_content, wire.reasoning) {
            (Some(text), _) => (Some(text), "reasoning_content"),
            (None, Some(text)) => (Some(text), "reasoning"),
            (None, None) => (None, ""),
        };
        if let Some(text) = text {
            let mut hint = Map::new();
            hint.insert(REASONING_FIELD.into(), Value::from(field));
            parts.push(Part::Thinking {
                text,
                signature: None,
                redacted: false,
                extensions: Extensions::new(PROTOCOL, hint),
            });
        }
    }

    let content = content_parts(wire.content, &|| format!("{}.content", path()))?;
    if role == Role::Tool {
        let call_id = wire.tool_call_id.ok_or_else(|| {
            Error::invalid_field(
                format!("{}.tool_call_id", path()),
                format!(
                    "'{}.tool_call_id' is required for a message with role 'tool'",
                    path()
                ),
            )
        })?;
        parts.push(Part::ToolResult {
            call_id,
            content,
            is_error: false,
            extensions: Extensions::default(),
        });
    } else {
        parts.extend(content);
    }

    if let Some(refusal) = wire.refusal {
        parts.push(Part::Refusal { text: refusal });
    }
    for call in wire.tool_calls.unwrap_or_default() {
        let mut fields = call.function.extra;
        if !call.extra.is_empty() {
            fields.insert("call".into(), Value::Object(call.extra));
        }
        parts.push(Part::ToolCall {
            id: call.id,
            name: call.function.name,
            arguments: call.function.arguments,
            extensions: Extensions::new(PROTOCOL, fields),
        });
    }

    Ok(Message {
        role,
        parts: parts.into(),
        name: wire.name,
        content_as_parts,
        extensions: Extensions::new(PROTOCOL, wire.extra),
    })
}

/// `path` writes where the content is, for an error.
fn content_parts(content: Content, path: &dyn Fn() -> String) -> Result<Vec<Part>, Error> {
    match content {
        Content::Absent | Content::Null => Ok(Vec::new()),
        Content::Text(text) => Ok(vec![Part::text(text)]),
        Content::Parts(parts) => parts
            .into_iter()
            .enumerate()
            .map(|(i, part)| content_part(part, &|| format!("{}[{i}]", path())))
            .collect(),
    }
}

fn content_part(value: Value, path: &dyn Fn() -> String) -> Result<Part, Error> {
    let (kind, mut obj) = crate::protocol::tagged_object(value, path)?;
    match kind.as_str() {
        "text" => {
            obj.remove("type");
            let text = take_string(&mut obj, "text", path)?;
            Ok(Part::Text {
                text,
                extensions: Extensions::new(PROTOCOL, obj),
            })
        }
        "image_url" => {
            obj.remove("type");
            let image = match obj.remove("image_url") {
                // Some clients send the URL as a bare string.
                Some(Value::String(url)) => {
                    let mut image = Map::new();
                    image.insert("url".into(), Value::String(url));
                    image
                }
                Some(Value::Object(image)) => image,
                _ => {
                    return Err(Error::invalid_field(
                        format!("{}.image_url", path()),
                        format!("'{}.image_url' must be an object with a 'url'", path()),
                    ));
                }
            };
            let mut image = image;
            let url = take_string(&mut image, "url", &|| format!("{}.image_url", path()))?;
            let detail = match image.remove("detail") {
                Some(Value::String(detail)) => Some(detail),
                _ => None,
            };
            if !image.is_empty() {
                obj.insert("image_url".into(), Value::Object(image));
            }
            Ok(Part::Image {
                source: ImageSource::from_url(&url),
                detail,
                extensions: Extensions::new(PROTOCOL, obj),
            })
        }
        "refusal" => {
            let text = take_string(&mut obj, "refusal", path)?;
            Ok(Part::Refusal { text })
        }
        _ => Ok(Part::Opaque {
            protocol: PROTOCOL,
            value: Value::Object(obj),
        }),
    }
}

fn take_string(
    obj: &mut Map<String, Value>,
    key: &str,
    path: &dyn Fn() -> String,
) -> Result<String, Error> {
    match obj.remove(key) {
        Some(Value::String(s)) => Ok(s),
        _ => Err(Error::invalid_field(
            format!("{}.{key}", path()),
            format!("'{}.{key}' must be a string", path()),
        )),
    }
}

fn tool_from_wire(value: Value, index: usize) -> Result<Tool, Error> {
    let path = || format!("tools[{index}]");
    let Value::Object(mut obj) = value else {
        return Err(Error::invalid_field(
            path(),
            format!("'{}' must be an object", path()),
        ));
    };
    if obj
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("function")
        != "function"
    {
        return Ok(Tool::Opaque {
            protocol: PROTOCOL,
            value: Value::Object(obj),
        });
    }
    obj.remove("type");
    let Some(Value::Object(mut function)) = obj.remove("function") else {
        return Err(Error::invalid_field(
            format!("{}.function", path()),
            format!("'{}.function' must be an object with a 'name'", path()),
        ));
    };
    let name = take_string(&mut function, "name", &|| format!("{}.function", path()))?;
    let description = match function.remove("description") {
        Some(Value::String(d)) => Some(d),
        _ => None,
    };
    let parameters = function.remove("parameters").filter(|p| !p.is_null());
    let strict = function.remove("strict").and_then(|s| s.as_bool());
    if !obj.is_empty() {
        function.insert("tool".into(), Value::Object(obj));
    }
    Ok(Tool::Function {
        name,
        description,
        parameters,
        strict,
        extensions: Extensions::new(PROTOCOL, function),
    })
}

fn tool_choice_from_wire(value: Value) -> Result<ToolChoice, Error> {
    match &value {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Required),
            other => Err(Error::invalid_field(
                "tool_choice",
                format!(
                    "invalid value for 'tool_choice': '{other}'; expected auto, none, required \
                     or an object naming a function"
                ),
            )),
        },
        Value::Object(obj) => {
            let name = obj
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str);
            match (obj.get("type").and_then(Value::as_str), name) {
                (Some("function"), Some(name)) if obj.len() == 2 => {
                    Ok(ToolChoice::Tool(name.to_owned()))
                }
                _ => Ok(ToolChoice::Opaque {
                    protocol: PROTOCOL,
                    value,
                }),
            }
        }
        _ => Err(Error::invalid_field(
            "tool_choice",
            "'tool_choice' must be a string or an object",
        )),
    }
}

fn response_format_from_wire(value: Value) -> Result<ResponseFormat, Error> {
    let kind = value.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "text" => Ok(ResponseFormat::Text),
        "json_object" => Ok(ResponseFormat::JsonObject),
        "json_schema" => {
            let spec = value.get("json_schema").ok_or_else(|| {
                Error::invalid_field(
                    "response_format.json_schema",
                    "'response_format.json_schema' is required when type is 'json_schema'",
                )
            })?;
            Ok(ResponseFormat::JsonSchema {
                name: spec
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("response")
                    .to_owned(),
                schema: spec
                    .get("schema")
                    .cloned()
                    .unwrap_or(Value::Object(Map::new())),
                strict: spec.get("strict").and_then(Value::as_bool),
                description: spec
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            })
        }
        other => Err(Error::invalid_field(
            "response_format.type",
            format!(
                "invalid value for 'response_format.type': '{other}'; expected text, \
                 json_object or json_schema"
            ),
        )),
    }
}

/// Maps a wire finish reason to the model's.
pub fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "stop" => FinishReason::EndTurn,
        "length" => FinishReason::MaxTokens,
        "tool_calls" | "function_call" => FinishReason::ToolUse,
        "content_filter" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

/// Reads a wire usage object, keeping it whole for a same-protocol client.
pub fn usage(value: Value) -> Option<Usage> {
    let Value::Object(raw) = value else {
        return None;
    };
    let mut usage = usage_fields(&raw)?;
    usage.extensions = Extensions::new(PROTOCOL, raw);
    Some(usage)
}

/// The counts of a wire usage object (without its extensions), read in place; `None` when
/// a token count is not a whole number or a details member is not an object.
fn usage_fields(raw: &Map<String, Value>) -> Option<Usage> {
    let count = |key: &str| match member(raw, key) {
        None => Some(0),
        Some(value) => value.as_u64(),
    };
    let detail = |key: &str, field: &str| match member(raw, key) {
        None | Some(Value::Null) => Some(None),
        Some(Value::Object(details)) => Some(member(details, field).and_then(Value::as_u64)),
        Some(_) => None,
    };
    Some(Usage {
        input_tokens: count("prompt_tokens")?,
        output_tokens: count("completion_tokens")?,
        cached_input_tokens: detail("prompt_tokens_details", "cached_tokens")?,
        cache_creation_input_tokens: None,
        reasoning_tokens: detail("completion_tokens_details", "reasoning_tokens")?,
        extensions: Extensions::default(),
    })
}

/// `map[key]`, found by comparing keys in order: the maps read per answer (usage, a
/// completion's extra members) hold a handful of keys, and hashing each key asked for with
/// SipHash cost more than comparing them (~3,400 instructions a request, bench/callgrind.sh).
fn member<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.iter().find_map(|(k, v)| (k == key).then_some(v))
}

/// Turns a non-streaming upstream response into the event sequence a stream would give.
pub fn decode_response(body: &[u8]) -> Result<Vec<Event>, ChunkError> {
    decode_response_checked(body).map(|(events, _)| events)
}

/// [`decode_response`], and whether llmux's own encoder gives this body back from those
/// events (the same JSON, members that are `null` aside): when it does, a client of this
/// protocol may get the body as it came (see [`crate::model::VerbatimSlot`]).
pub fn decode_response_checked(body: &[u8]) -> Result<(Vec<Event>, bool), ChunkError> {
    let completion: ChatCompletion = crate::protocol::json_from_bytes(body)
        .map_err(|e| ChunkError::Garbage(format!("the response is not a chat completion: {e}")))?;
    if let Some(error) = member(&completion.extra, "error") {
        return Err(upstream_error(error));
    }
    let lossless = round_trips(&completion);
    let mut events = Vec::with_capacity(8);
    events.push(Event::Start {
        id: completion.id,
        model: completion.model,
        created: completion.created,
        extensions: scoped_extensions("top", completion.extra),
    });
    let mut finish = None;
    if let Some(choice) = completion.choices.into_iter().next() {
        let message = choice.message;
        let mut scoped = Map::new();
        if !choice.extra.is_empty() {
            scoped.insert("choice".into(), Value::Object(choice.extra));
        }
        if !message.extra.is_empty() {
            scoped.insert("message".into(), Value::Object(message.extra));
        }
        if !scoped.is_empty() {
            events.push(Event::Extension(Extensions::new(PROTOCOL, scoped)));
        }
        if let Some(text) = message.reasoning_content.or(message.reasoning) {
            events.push(Event::ThinkingDelta {
                text,
                signature: None,
            });
        }
        match message.content {
            Content::Text(text) if !text.is_empty() => events.push(Event::TextDelta(text)),
            Content::Parts(parts) => {
                let text: String = parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect();
                if !text.is_empty() {
                    events.push(Event::TextDelta(text));
                }
            }
            _ => {}
        }
        if let Some(refusal) = message.refusal {
            events.push(Event::RefusalDelta(refusal));
        }
        for (index, call) in message
            .tool_calls
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let index = index as u32;
            events.push(Event::ToolCallStart {
                index,
                id: call.id,
                name: call.function.name,
            });
            if !call.function.arguments.is_empty() {
                events.push(Event::ToolCallArgsDelta {
                    index,
                    arguments: call.function.arguments,
                });
            }
            events.push(Event::ToolCallEnd { index });
        }
        finish = choice.finish_reason.as_deref().map(finish_reason);
    }
    if let Some(usage) = completion.usage.and_then(usage) {
        events.push(Event::Usage(usage));
    }
    events.push(Event::Finish {
        reason: finish.unwrap_or(FinishReason::EndTurn),
        stop_sequence: None,
    });
    Ok((events, lossless))
}

/// Whether [`super::encode_response`] rebuilds `completion` from its events: one choice,
/// every field the encoder writes present and in the form it writes it. Anything else (a
/// second choice, OpenRouter's `reasoning`, content as parts, a total that is not the
/// sum, ...) goes through the encoder, which is the reference.
fn round_trips(completion: &ChatCompletion) -> bool {
    let [choice] = completion.choices.as_slice() else {
        return false;
    };
    let top = !completion.id.is_empty()
        && !completion.model.is_empty()
        && completion.created.is_some()
        && completion.object.as_ref().and_then(Value::as_str) == Some("chat.completion");
    let usage = match &completion.usage {
        None | Some(Value::Null) => true,
        Some(usage) => usage_round_trips(usage),
    };
    top && usage && choice.index == 0 && choice_round_trips(choice)
}

fn choice_round_trips(choice: &super::types::ResponseChoice) -> bool {
    let message = &choice.message;
    let calls = message.tool_calls.as_deref().unwrap_or_default();
    let has_refusal = message.refusal.is_some();
    let content = match &message.content {
        Content::Text(text) => !text.is_empty() || (calls.is_empty() && !has_refusal),
        Content::Null => !calls.is_empty() || has_refusal,
        Content::Absent | Content::Parts(_) => false,
    };
    let finish = choice
        .finish_reason
        .as_deref()
        .is_some_and(|reason| super::encode::finish_reason(&finish_reason(reason)) == reason);
    let calls_plain = calls.iter().all(|call| {
        call.kind.as_deref() == Some("function")
            && call.extra.is_empty()
            && call.function.extra.is_empty()
    });
    message.role == "assistant"
        && message.name.is_none()
        && message.tool_call_id.is_none()
        && message.reasoning.is_none()
        && message
            .tool_calls
            .as_ref()
            .is_none_or(|calls| !calls.is_empty())
        && message.reasoning_content.as_deref() != Some("")
        && content
        && finish
        && calls_plain
}

/// The encoder writes all three counts, `total_tokens` as the sum.
fn usage_round_trips(raw: &Value) -> bool {
    let Value::Object(fields) = raw else {
        return false;
    };
    let count = |key: &str| member(fields, key).and_then(Value::as_u64);
    let (Some(prompt), Some(completion)) = (count("prompt_tokens"), count("completion_tokens"))
    else {
        return false;
    };
    prompt
        .checked_add(completion)
        .is_some_and(|sum| count("total_tokens") == Some(sum))
        && usage_fields(fields).is_some()
}

/// Wraps `fields` under `scope` (`top`, `choice`, `message`) as chat extensions.
pub(crate) fn scoped_extensions(scope: &str, fields: Map<String, Value>) -> Extensions {
    if fields.is_empty() {
        return Extensions::default();
    }
    let mut scoped = Map::new();
    scoped.insert(scope.into(), Value::Object(fields));
    Extensions::new(PROTOCOL, scoped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_near_the_largest_do_not_overflow() {
        // A provider's garbage counts: read, not passed through, no panic.
        let body = format!(
            r#"{{"id":"c","object":"chat.completion","created":1,"model":"m",
            "choices":[{{"index":0,"message":{{"role":"assistant","content":"hi"}},"finish_reason":"stop"}}],
            "usage":{{"prompt_tokens":{max},"completion_tokens":1,"total_tokens":0}}}}"#,
            max = u64::MAX
        );
        let (events, verbatim) = decode_response_checked(body.as_bytes()).unwrap();
        assert!(!verbatim, "a total that is not the sum is re-encoded");
        let usage = events.iter().find_map(|e| match e {
            Event::Usage(u) => Some(u),
            _ => None,
        });
        assert_eq!(usage.map(Usage::total_tokens), Some(u64::MAX), "saturates");

        // Without a total, a sum that overflows is not the total either.
        let without_total = body.replace(r#","total_tokens":0"#, "");
        let (_, verbatim) = decode_response_checked(without_total.as_bytes()).unwrap();
        assert!(
            !verbatim,
            "an overflowing sum without a total is re-encoded"
        );
    }

    #[test]
    fn wrong_types_name_the_field() {
        let err = decode_request(
            br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":"hot"}"#,
        )
        .unwrap_err();
        assert_eq!(err.status(), 422);
        assert_eq!(err.param(), Some("temperature"));
        assert!(err.to_string().contains("temperature"), "{err}");

        let err = decode_request(br#"{"model":"m","messages":[{"role":"user","content":5}]}"#)
            .unwrap_err();
        assert_eq!(err.param(), Some("messages[0].content"));

        let err = decode_request(br#"{"model":"m","messages":[{"role":"robot","content":"x"}]}"#)
            .unwrap_err();
        assert_eq!(err.param(), Some("messages[0].role"));
    }

    #[test]
    fn a_missing_required_member_is_named_with_its_path() {
        let cases: [(&[u8], &str); 4] = [
            (br#"{"model":"m","messages":[{"content":"hi"}]}"#, "messages[0].role"),
            (
                br#"{"model":"m","messages":[{"role":"assistant","tool_calls":[{"type":"function","function":{"name":"f","arguments":"{}"}}]}]}"#,
                "messages[0].tool_calls[0].id",
            ),
            (
                br#"{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function"}]}]}"#,
                "messages[0].tool_calls[0].function",
            ),
            (
                br#"{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c","function":{"arguments":"{}"}}]}]}"#,
                "messages[0].tool_calls[0].function.name",
            ),
        ];
        for (body, field) in cases {
            let err = decode_request(body).unwrap_err();
            assert_eq!((err.status(), err.param()), (422, Some(field)), "{err}");
            assert!(err.to_string().contains("missing field"), "{err}");
        }
    }

    #[test]
    fn a_member_given_twice_is_refused_as_serde_refuses_it() {
        // The client's own bytes may go upstream as they came: a member read twice would be
        // checked with one value here and sent with both.
        let bodies: [&[u8]; 4] = [
            br#"{"model":"m","messages":[{"role":"user","content":"A","content":"B"}]}"#,
            // Inside a content part too, which is read as a value.
            br#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"sk-live-1","text":"B"}]}]}"#,
            br#"{"model":"m","messages":[{"role":"user","role":"system","content":"A"}]}"#,
            br#"{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"a","id":"b","type":"function","function":{"name":"f"}}]}]}"#,
        ];
        for body in bodies {
            let err = decode_request(body).unwrap_err();
            assert_eq!(err.status(), 422, "{err}");
            assert!(err.to_string().contains("duplicate field"), "{err}");
        }
        let answer = br#"{"id":"c","model":"m","choices":[{"index":0,"index":1,"message":{"role":"assistant","content":"hi"}}]}"#;
        let err = decode_response_checked(answer).unwrap_err();
        assert!(
            format!("{err:?}").contains("duplicate field `index`"),
            "{err:?}"
        );
    }

    #[test]
    fn a_null_error_is_no_error_and_an_odd_object_is_no_reason_to_fail() {
        let answer = |extra: &str| {
            format!(
                r#"{{"id":"c","created":1,"model":"m",{extra}"choices":[{{"index":0,"message":{{"role":"assistant","content":"hi"}},"finish_reason":"stop"}}]}}"#
            )
        };
        let (events, verbatim) = decode_response_checked(
            answer(r#""object":"chat.completion","error":null,"#).as_bytes(),
        )
        .unwrap();
        assert!(verbatim, "{events:?}");
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::TextDelta(t) if t == "hi"))
        );
        let (events, verbatim) =
            decode_response_checked(answer(r#""object":7,"#).as_bytes()).unwrap();
        assert!(
            !verbatim,
            "an answer that says it is something else is re-encoded"
        );
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::TextDelta(t) if t == "hi"))
        );
    }

    #[test]
    fn an_answer_keeps_its_unknown_members_but_not_their_nulls_and_needs_its_message() {
        let body = br#"{"id":"c","object":"chat.completion","created":1,"model":"m","system_fingerprint":"fp","service_tier":null,
            "choices":[{"index":0,"message":{"role":"assistant","content":"hi","annotations":[]},"logprobs":null,"finish_reason":"stop"}],
            "usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
        let (events, _) = decode_response_checked(body).unwrap();
        let Event::Start { extensions, .. } = &events[0] else {
            panic!("{events:?}")
        };
        let top = &extensions.fields["top"];
        assert_eq!(top, &serde_json::json!({"system_fingerprint": "fp"}));
        let scoped = events.iter().find_map(|event| match event {
            Event::Extension(extensions) => Some(&extensions.fields),
            _ => None,
        });
        assert_eq!(
            scoped.map(|fields| serde_json::Value::Object((**fields).clone())),
            Some(serde_json::json!({"message": {"annotations": []}})),
            "the choice's null logprobs are not kept"
        );
        let err = decode_response_checked(
            br#"{"id":"c","choices":[{"index":0,"finish_reason":"stop"}]}"#,
        )
        .unwrap_err();
        assert!(
            format!("{err:?}").contains("missing field `message`"),
            "{err:?}"
        );
    }

    #[test]
    fn the_members_read_with_their_place_name_themselves_when_wrong() {
        let cases: [(&[u8], &str, &str); 4] = [
            (
                br#"{"model":5,"messages":[{"role":"user","content":"hi"}]}"#,
                "model",
                "string",
            ),
            (
                br#"{"model":"m","stream":"yes","messages":[]}"#,
                "stream",
                "boolean",
            ),
            (
                br#"{"model":"m","messages":[],"stream_options":{"include_usage":3}}"#,
                "stream_options",
                "boolean",
            ),
            (
                br#"{"model":"m","messages":[],"stream_options":[]}"#,
                "stream_options",
                "struct",
            ),
        ];
        for (body, field, expected) in cases {
            let err = decode_request(body).unwrap_err();
            assert_eq!(err.status(), 422, "{err}");
            assert_eq!(err.param(), Some(field), "{err}");
            let message = err.to_string();
            assert!(message.contains(expected), "{message}");
            // One position, the body's (not the member's as well).
            assert!(message.matches(" at line ").count() <= 1, "{message}");
        }
    }

    #[test]
    fn malformed_json_and_missing_fields_are_invalid_requests() {
        let err = decode_request(b"{not json").unwrap_err();
        assert!(err.to_string().contains("not valid JSON"), "{err}");
        let err = decode_request(br#"{"messages":[]}"#).unwrap_err();
        assert!(err.to_string().contains("model"), "{err}");
        let err = decode_request(br#"{"model":"m","messages":[]}"#).unwrap_err();
        assert_eq!(err.param(), Some("messages"));
    }

    #[test]
    fn an_unknown_reasoning_effort_passes_through_for_this_protocol() {
        let (request, _) = decode_request(
            br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"reasoning_effort":"ultra"}"#,
        )
        .unwrap();
        assert!(request.reasoning.is_none());
        let upstream = crate::protocol::openai_chat::encode_request(&request, "m");
        assert_eq!(upstream["reasoning_effort"], "ultra");
    }

    #[test]
    fn tool_messages_need_their_call_id() {
        let err = decode_request(br#"{"model":"m","messages":[{"role":"tool","content":"42"}]}"#)
            .unwrap_err();
        assert_eq!(err.param(), Some("messages[0].tool_call_id"));
    }

    #[test]
    fn stream_options_and_max_completion_tokens_are_read() {
        let (request, options) = decode_request(
            br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,
                "stream_options":{"include_usage":true},"max_completion_tokens":50}"#,
        )
        .unwrap();
        assert!(request.stream);
        assert!(options.include_usage);
        assert_eq!(request.sampling.max_tokens, Some(50));
    }
}
