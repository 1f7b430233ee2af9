//! Responses wire -> canonical model.
//!
//! The Responses `input` is a flat list of items; the model is a list of messages. The
//! mapping:
//! - `message` items with role `user`, `system` or `developer` become one message each;
//!   `instructions` becomes [`Request::system`].
//! - Consecutive assistant-side items (`message` with role `assistant`, `reasoning`,
//!   `function_call`, and item types the model does not know) merge into one assistant
//!   message, because Chat wants an assistant's calls in one message and Anthropic wants
//!   no two assistant turns in a row.
//! - A `function_call` becomes [`Part::ToolCall`] whose id is the `call_id` (what results
//!   echo); the item `id` (`fc_…`) stays in the part's extensions.
//! - A `function_call_output` becomes a `tool` message with one [`Part::ToolResult`].
//! - A `reasoning` item becomes one [`Part::Thinking`] per summary (or `reasoning_text`)
//!   part; the last one carries `encrypted_content` as its signature. Every thinking part
//!   of this protocol carries `REASONING_PART` in its extensions, and the first part of
//!   each item carries `ITEM`, so the encoder can rebuild the items exactly.
//!
//! A Response object (non-streaming upstream answer) decodes into the same events a
//! stream gives, through the shared `ItemEvents` helper.

use std::sync::{Arc, LazyLock};

use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::request_pass_through;
use super::types::{
    Content, FunctionCallItem, FunctionCallOutputItem, FunctionTool, InputImagePart, MessageItem,
    ReasoningItem, ResponseError, ResponseObject, ResponsesRequest, TextPart,
};
use crate::Error;
use crate::model::{
    Edits, Event, Extensions, FinishReason, ImageSource, Message, Part, Protocol, Reasoning,
    ReasoningEffort, Request, ResponseFormat, Role, Sampling, Shared, Tool, ToolChoice, Usage,
};
use crate::protocol::json_out;
use crate::protocol::message_memo::{MEMO_FROM, MessageMemo};
use crate::protocol::openai_chat::ChunkError;
use crate::protocol::openai_chat::decode::parse_json;
use crate::protocol::tools_memo::{ReadBlanked, ToolsMemo, ToolsReading};

pub(super) const PROTOCOL: Protocol = Protocol::OpenAiResponses;

/// Part-extension key: the item-level fields (`id`, `status`, `phase`, unknown ones) of the
/// assistant `message` or `reasoning` item that this part opens.
pub(crate) const ITEM: &str = "item";
/// Thinking-part extension key: `"summary"` or `"content"`, the list of the reasoning item
/// the text came from. Its presence also marks the part as this protocol's reasoning.
pub(crate) const REASONING_PART: &str = "reasoning_part";

/// Request parameters the Response object repeats back to the client.
const ECHOED: [&str; 9] = [
    "truncation",
    "service_tier",
    "background",
    "prompt_cache_key",
    "safety_identifier",
    "max_tool_calls",
    "top_logprobs",
    "prompt",
    "conversation",
];

/// What the client asked for that only its own front-end needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientOptions {
    /// Request parameters a Response object echoes (`instructions`, `tools`, `tool_choice`,
    /// `reasoning`, `text`, `store`, `metadata`, ...), as the client sent them; `tools` is
    /// a placeholder (null) for [`ClientOptions::tools`].
    pub echo: Map<String, Value>,
    /// The tools as JSON text, echoed where `echo` holds their place: an agent's tools are
    /// most of its request, and are written back without being parsed or copied.
    pub tools: Option<Arc<str>>,
}

/// The latest conversations of Responses requests (see `message_memo`), and their lists of
/// tools: Codex sends its whole session and its tools with every request. Requests of
/// [`MEMO_FROM`] up have their items read through it; smaller ones only their tools.
static MESSAGE_MEMO: LazyLock<MessageMemo> = LazyLock::new(MessageMemo::default);

/// Parses a request body. Errors name the offending field (`input[2].call_id`).
pub fn decode_request(body: &[u8]) -> Result<(Request, ClientOptions), Error> {
    decode_request_checked(body).map(|(request, options, _)| (request, options))
}

/// [`decode_request`], and where to patch the body when it may go to a Responses back-end as
/// it came (see [`crate::model::ClientBody`]).
pub fn decode_request_checked(
    body: &[u8],
) -> Result<(Request, ClientOptions, Option<Edits>), Error> {
    // Each memo's path gives `None` only for a request with something wrong, which reading
    // the tools as values then names.
    let decoded = if body.len() >= MEMO_FROM {
        super::memo::decode_with_memo(body, &MESSAGE_MEMO)
    } else {
        decode_with_tools_memo(body, MESSAGE_MEMO.tools())
    };
    decoded.map_or_else(|| decode_tools_as_values(body), Ok)
}

/// [`decode_request_checked`] with the tools read through `memo`: a list sent before is the
/// one decoded then, and its text is what the Response object echoes. `None` for a request
/// with anything wrong.
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
    let wire = crate::protocol::json_from_bytes::<ResponsesRequest<&RawValue>>(doc).ok()?;
    let round_trips = request_pass_through::fields_round_trip(&wire)
        && request_pass_through::input_round_trips(wire.input.as_ref());
    let edits = if round_trips {
        request_pass_through::edits(doc, &wire)
    } else {
        None
    };
    let echoed = echoed_tools(reading.kept_text(), wire.tools);
    let tools = |text| reading.read(memo, doc, text, decoded_tools);
    let (request, options) = request_from_wire(wire, messages_of, tools, echoed).ok()?;
    Some((request, options, edits.filter(|_| reading.round_trip)))
}

/// The tools of a request's list, and whether the encoder writes them again as they came
/// (for [`ToolsMemo::tools`]).
pub(super) fn decoded_tools(list: Vec<Value>) -> Result<(Vec<Tool>, bool), Error> {
    let round_trips = request_pass_through::tools_round_trip(&list);
    Ok((tools_of(list)?, round_trips))
}

/// The text the Response object echoes for a request's tools: the kept list's when one was
/// blanked in the body (`kept`), else the text of the `tools` member.
pub(super) fn echoed_tools(kept: Option<&str>, text: Option<&RawValue>) -> Option<Arc<str>> {
    kept.or(text.map(RawValue::get)).map(echoed_text)
}

/// [`decode_request_checked`], every tool decoded from its value.
pub(super) fn decode_tools_as_values(
    body: &[u8],
) -> Result<(Request, ClientOptions, Option<Edits>), Error> {
    let wire: ResponsesRequest = parse_json(body)?;
    let edits = if request_pass_through::request_round_trips(&wire) {
        request_pass_through::edits(body, &wire)
    } else {
        None
    };
    let echoed = wire
        .tools
        .as_ref()
        .map(|list| compact_text(&Value::Array(list.clone()), 0));
    let tools = |list: Option<Vec<Value>>| tools_of(list.unwrap_or_default()).map(Shared::new);
    let (request, options) = request_from_wire(wire, messages_of, tools, echoed)?;
    Ok((request, options, edits))
}

/// A list of tools' text as the Response object echoes it: as the client wrote it, unless it
/// spans lines (an SSE `data:` line cannot), then written again compactly.
fn echoed_text(text: &str) -> Arc<str> {
    if !crate::protocol::spans_lines(text) {
        return text.into();
    }
    match serde_json::from_str::<Value>(text) {
        Ok(value) => compact_text(&value, text.len()),
        Err(_) => text.replace(['\n', '\r'], " ").into(),
    }
}

/// `value` as compact JSON text.
fn compact_text(value: &Value, capacity: usize) -> Arc<str> {
    String::from_utf8_lossy(&json_out::to_vec(value, capacity)).into()
}

pub(super) fn tools_of(list: Vec<Value>) -> Result<Vec<Tool>, Error> {
    list.into_iter()
        .enumerate()
        .map(|(i, t)| tool_from_wire(t, &|| format!("tools[{i}]")))
        .collect()
}

fn echo_fields<T, I>(wire: &ResponsesRequest<'_, T, I>, tools: bool) -> Map<String, Value> {
    let mut echo = Map::new();
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            echo.insert(key.to_owned(), value);
        }
    };
    put("instructions", wire.instructions.clone());
    put("max_output_tokens", wire.max_output_tokens.map(Value::from));
    put("metadata", wire.metadata.clone().map(Value::Object));
    put(
        "parallel_tool_calls",
        wire.parallel_tool_calls.map(Value::from),
    );
    put(
        "previous_response_id",
        wire.previous_response_id.clone().map(Value::from),
    );
    put(
        "reasoning",
        wire.reasoning
            .as_ref()
            .and_then(|r| serde_json::to_value(r).ok()),
    );
    put("store", wire.store.map(Value::from));
    put("temperature", wire.temperature.map(Value::from));
    put(
        "text",
        wire.text
            .as_ref()
            .and_then(|t| serde_json::to_value(t).ok()),
    );
    put("tool_choice", wire.tool_choice.clone());
    // In its place, its text written there (`ClientOptions::tools`).
    put("tools", tools.then_some(Value::Null));
    put("top_p", wire.top_p.map(Value::from));
    put("user", wire.user.clone().map(Value::from));
    for key in ECHOED {
        put(key, wire.extra.get(key).cloned());
    }
    echo
}

/// The request of `wire`, whose tools `read_tools` gives, and what the answer echoes: the
/// tools as `echoed_tools`.
pub(super) fn request_from_wire<T, I>(
    wire: ResponsesRequest<'_, T, I>,
    read_input: impl FnOnce(Option<I>) -> Result<Vec<Message>, Error>,
    read_tools: impl FnOnce(Option<T>) -> Result<Shared<Tool>, Error>,
    echoed_tools: Option<Arc<str>>,
) -> Result<(Request, ClientOptions), Error> {
    let options = ClientOptions {
        echo: echo_fields(&wire, echoed_tools.is_some()),
        tools: echoed_tools,
    };
    let ResponsesRequest {
        model,
        input,
        instructions,
        tools,
        tool_choice,
        parallel_tool_calls,
        temperature,
        top_p,
        max_output_tokens,
        reasoning,
        text,
        stream,
        store,
        previous_response_id,
        include,
        metadata,
        user,
        mut extra,
    } = wire;
    let model = model.value;

    if model.is_empty() {
        return Err(Error::invalid_field("model", "'model' must not be empty"));
    }

    let mut system = Vec::new();
    match instructions {
        Some(Value::String(text)) => system.push(Part::text(text)),
        Some(Value::Null) | None => {}
        // A list of input items (allowed in the Response object): kept for this protocol.
        Some(other) => {
            extra.insert("instructions".into(), other);
        }
    }

    let messages = read_input(input)?;
    let tools = read_tools(tools)?;
    let tool_choice = tool_choice.map(tool_choice_from_wire).transpose()?;

    // An effort the model does not know (a newer one) and `summary` stay for this protocol.
    let mut reasoning_model = None;
    if let Some(config) = reasoning {
        let mut rest = config.extra;
        if let Some(summary) = config.summary {
            rest.insert("summary".into(), Value::from(summary));
        }
        if let Some(effort) = config.effort {
            match ReasoningEffort::parse(&effort) {
                Some(effort) => {
                    reasoning_model = Some(Reasoning {
                        effort: Some(effort),
                        budget_tokens: None,
                    });
                }
                None => {
                    rest.insert("effort".into(), Value::from(effort));
                }
            }
        }
        if !rest.is_empty() {
            extra.insert("reasoning".into(), Value::Object(rest));
        }
    }

    let mut response_format = None;
    if let Some(config) = text {
        let mut rest = config.extra;
        if let Some(verbosity) = config.verbosity {
            rest.insert("verbosity".into(), Value::from(verbosity));
        }
        if let Some(format) = config.format {
            match format_from_wire(&format)? {
                Some(format) => response_format = Some(format),
                // A format type the model does not know travels whole.
                None => {
                    rest.insert("format".into(), format);
                }
            }
        }
        if !rest.is_empty() {
            extra.insert("text".into(), Value::Object(rest));
        }
    }

    // Fields with no slot in the model: only a Responses back-end sends them on.
    if let Some(store) = store {
        extra.insert("store".into(), Value::from(store));
    }
    if let Some(id) = previous_response_id {
        extra.insert("previous_response_id".into(), Value::from(id));
    }
    if let Some(include) = include {
        extra.insert("include".into(), Value::from(include));
    }
    if let Some(metadata) = metadata {
        extra.insert("metadata".into(), Value::Object(metadata));
    }

    let mut request = Request::new(model, messages);
    request.system = system.into();
    request.tools = tools;
    request.tool_choice = tool_choice;
    request.parallel_tool_calls = parallel_tool_calls;
    request.sampling = Sampling {
        temperature,
        top_p,
        max_tokens: max_output_tokens,
        ..Sampling::default()
    };
    request.reasoning = reasoning_model;
    request.response_format = response_format;
    request.stream = stream.is_some_and(|stream| stream.value);
    request.client.user = user;
    request.extensions = Extensions::new(PROTOCOL, extra);
    Ok((request, options))
}

/// The messages of `input` read as values.
pub(super) fn messages_of(input: Option<Content>) -> Result<Vec<Message>, Error> {
    let mut items = InputItems::default();
    match input {
        Some(Content::Text(text)) => items.push(Message::new(Role::User, vec![Part::text(text)])),
        Some(Content::List(list)) => {
            for (i, item) in list.into_iter().enumerate() {
                // Where an error is, written only for an error (as the other decoders do).
                items.item(item, &|| format!("input[{i}]"))?;
            }
        }
        None => {}
    }
    Ok(items.messages)
}

/// The message of the input item `item`, the `index`th, read alone: an assistant-side item
/// is an assistant message of its own, which [`merged`] joins to its neighbours.
pub(super) fn item_message(item: Value, index: usize) -> Result<Message, Error> {
    let path = || format!("input[{index}]");
    let mut items = InputItems::default();
    items.item(item, &path)?;
    // Every item gives one message.
    items
        .messages
        .pop()
        .ok_or_else(|| Error::invalid_field(path(), format!("'{}' gives no message", path())))
}

/// The messages of a request whose items read alone were `items` ([`item_message`]): a run
/// of assistant messages is one, as [`InputItems`] builds it. Beside each, how many items
/// it was made of.
pub(super) fn merged(items: &[Message]) -> (Vec<Message>, Vec<usize>) {
    let mut messages: Vec<Message> = Vec::with_capacity(items.len());
    let mut made_of = Vec::with_capacity(items.len());
    let mut assistant_open = false;
    for item in items {
        let assistant = item.role == Role::Assistant;
        if let (true, true, Some(open), Some(count)) = (
            assistant,
            assistant_open,
            messages.last_mut(),
            made_of.last_mut(),
        ) {
            open.parts.extend(item.parts.iter().cloned());
            *count += 1;
            continue;
        }
        assistant_open = assistant;
        messages.push(item.clone());
        made_of.push(1);
    }
    (messages, made_of)
}

/// Builds messages from input items, merging runs of assistant-side items.
#[derive(Default)]
struct InputItems {
    messages: Vec<Message>,
    /// The last message is an assistant message still taking items.
    assistant_open: bool,
}

impl InputItems {
    fn push(&mut self, message: Message) {
        self.messages.push(message);
        self.assistant_open = false;
    }

    fn push_assistant(&mut self, parts: Vec<Part>) {
        if !self.assistant_open {
            self.messages
                .push(Message::new(Role::Assistant, Vec::new()));
            self.assistant_open = true;
        }
        if let Some(message) = self.messages.last_mut() {
            message.parts.extend(parts);
        }
    }

    fn item(&mut self, value: Value, path: &dyn Fn() -> String) -> Result<(), Error> {
        let Value::Object(mut obj) = value else {
            let path = path();
            return Err(Error::invalid_field(
                &path,
                format!("'{path}' must be an object with a 'type'"),
            ));
        };
        let kind = match obj.get("type") {
            Some(Value::String(kind)) => Some(kind.clone()),
            None if obj.contains_key("role") => None,
            None => {
                let path = path();
                return Err(Error::invalid_field(
                    format!("{path}.type"),
                    format!("'{path}.type' is required (or a 'role' for a message)"),
                ));
            }
            Some(_) => {
                let path = path();
                return Err(Error::invalid_field(
                    format!("{path}.type"),
                    format!("'{path}.type' must be a string"),
                ));
            }
        };
        match kind.as_deref() {
            None | Some("message") => {
                obj.remove("type");
                self.message(typed(obj, path)?, path)
            }
            Some("function_call") => {
                obj.remove("type");
                let call: FunctionCallItem = typed(obj, path)?;
                self.push_assistant(vec![Part::ToolCall {
                    id: call.call_id,
                    name: call.name,
                    arguments: call.arguments,
                    extensions: Extensions::new(PROTOCOL, call.extra),
                }]);
                Ok(())
            }
            Some("function_call_output") => {
                obj.remove("type");
                let output: FunctionCallOutputItem = typed(obj, path)?;
                let (content, as_parts) =
                    content_parts(output.output, &|| format!("{}.output", path()))?;
                let mut message = Message::new(
                    Role::Tool,
                    vec![Part::ToolResult {
                        call_id: output.call_id,
                        content,
                        is_error: false,
                        extensions: Extensions::default(),
                    }],
                );
                message.content_as_parts = as_parts.then_some(PROTOCOL);
                message.extensions = Extensions::new(PROTOCOL, output.extra);
                self.push(message);
                Ok(())
            }
            Some("reasoning") => {
                obj.remove("type");
                let item: ReasoningItem = typed(obj, path)?;
                self.push_assistant(thinking_parts(item));
                Ok(())
            }
            // Items the model has no shape for (custom and built-in tool calls, their
            // outputs, item references, ...) travel whole to a back-end of this protocol.
            Some(kind) => {
                let is_output = kind.ends_with("_output") || kind == "mcp_approval_response";
                let part = Part::Opaque {
                    protocol: PROTOCOL,
                    value: Value::Object(obj),
                };
                if is_output {
                    self.push(Message::new(Role::Tool, vec![part]));
                } else {
                    self.push_assistant(vec![part]);
                }
                Ok(())
            }
        }
    }

    fn message(&mut self, item: MessageItem, path: &dyn Fn() -> String) -> Result<(), Error> {
        let role = match item.role.as_str() {
            "user" => Role::User,
            "system" => Role::System,
            "developer" => Role::Developer,
            "assistant" => Role::Assistant,
            other => {
                let path = path();
                return Err(Error::invalid_field(
                    format!("{path}.role"),
                    format!(
                        "invalid value for '{path}.role': '{other}'; expected one of user, \
                         assistant, system, developer"
                    ),
                ));
            }
        };
        let (mut parts, as_parts) = content_parts(item.content, &|| format!("{}.content", path()))?;
        if role == Role::Assistant {
            // The item's own fields ride on its first text part, which also marks where
            // the item starts inside the merged assistant message.
            if !item.extra.is_empty()
                && let Some(Part::Text { extensions, .. }) =
                    parts.iter_mut().find(|p| matches!(p, Part::Text { .. }))
            {
                extensions
                    .fields
                    .insert(ITEM.into(), Value::Object(item.extra));
                extensions.source = Some(PROTOCOL);
            }
            self.push_assistant(parts);
        } else {
            let mut message = Message::new(role, std::mem::take(&mut parts));
            message.content_as_parts = as_parts.then_some(PROTOCOL);
            message.extensions = Extensions::new(PROTOCOL, item.extra);
            self.push(message);
        }
        Ok(())
    }
}

/// Parses `obj` into `T`, naming the field on failure (`input[2].call_id`).
fn typed<T: DeserializeOwned>(
    obj: Map<String, Value>,
    path: &dyn Fn() -> String,
) -> Result<T, Error> {
    serde_path_to_error::deserialize(Value::Object(obj)).map_err(|err| {
        let path = path();
        let inner_path = err.path().to_string();
        let message = err.into_inner().to_string();
        let field = match crate::protocol::openai_chat::decode::field_of(&inner_path, &message) {
            Some(inner) => format!("{path}.{inner}"),
            None => path.to_owned(),
        };
        Error::invalid_field(
            field.clone(),
            format!("invalid value for '{field}': {message}"),
        )
    })
}

/// A message's content or a call's output: the parts, and whether they came as a list.
fn content_parts(content: Content, path: &dyn Fn() -> String) -> Result<(Vec<Part>, bool), Error> {
    match content {
        Content::Text(text) => Ok((vec![Part::text(text)], false)),
        Content::List(list) => {
            let parts = list
                .into_iter()
                .enumerate()
                .map(|(i, part)| content_part(part, &|| format!("{}[{i}]", path())))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((parts, true))
        }
    }
}

fn content_part(value: Value, path: &dyn Fn() -> String) -> Result<Part, Error> {
    let (kind, mut obj) = crate::protocol::tagged_object(value, path)?;
    match kind.as_str() {
        "input_text" | "output_text" | "text" => {
            obj.remove("type");
            let part: TextPart = typed(obj, path)?;
            Ok(Part::Text {
                text: part.text,
                extensions: Extensions::new(PROTOCOL, part.extra),
            })
        }
        "input_image" if matches!(obj.get("image_url"), Some(Value::String(_))) => {
            obj.remove("type");
            let image: InputImagePart = typed(obj, path)?;
            let url = image.image_url.unwrap_or_default();
            Ok(Part::Image {
                source: ImageSource::from_url(&url),
                detail: image.detail,
                extensions: Extensions::new(PROTOCOL, image.extra),
            })
        }
        "refusal" => {
            obj.remove("type");
            let part: super::types::RefusalPart = typed(obj, path)?;
            Ok(Part::Refusal { text: part.refusal })
        }
        // Images by `file_id`, files, audio: the model has no slot; kept whole.
        _ => Ok(Part::Opaque {
            protocol: PROTOCOL,
            value: Value::Object(obj),
        }),
    }
}

/// One thinking part per summary (or raw reasoning) part; the item's fields on the first,
/// `encrypted_content` as the last one's signature.
fn thinking_parts(item: ReasoningItem) -> Vec<Part> {
    let thinking = |part: TextPart, list: &str| {
        let mut fields = part.extra;
        fields.insert(REASONING_PART.into(), Value::from(list));
        Part::Thinking {
            text: part.text,
            signature: None,
            redacted: false,
            extensions: Extensions::new(PROTOCOL, fields),
        }
    };
    let mut parts: Vec<Part> = item
        .summary
        .into_iter()
        .map(|p| thinking(p, "summary"))
        .chain(item.content.into_iter().map(|p| thinking(p, "content")))
        .collect();
    if parts.is_empty() {
        let empty = TextPart {
            kind: None,
            text: String::new(),
            extra: Map::new(),
        };
        parts.push(thinking(empty, "summary"));
    }
    if let Some(Part::Thinking { extensions, .. }) = parts.first_mut() {
        extensions
            .fields
            .insert(ITEM.into(), Value::Object(item.extra));
    }
    if let Some(Part::Thinking { signature, .. }) = parts.last_mut() {
        *signature = item.encrypted_content;
    }
    parts
}

fn tool_from_wire(value: Value, path: &dyn Fn() -> String) -> Result<Tool, Error> {
    let Value::Object(mut obj) = value else {
        let path = path();
        return Err(Error::invalid_field(
            &path,
            format!("'{path}' must be an object"),
        ));
    };
    if obj.get("type").and_then(Value::as_str) != Some("function") {
        return Ok(Tool::Opaque {
            protocol: PROTOCOL,
            value: Value::Object(obj),
        });
    }
    obj.remove("type");
    let tool: FunctionTool = typed(obj, path)?;
    // The tool keeps its `type` in its extensions: that marks it as a Responses tool, whose
    // omitted `strict` means "normalize to strict" (see `encode_tool`).
    let mut fields = Map::new();
    fields.insert("type".into(), Value::from("function"));
    fields.extend(tool.extra);
    Ok(Tool::Function {
        name: tool.name,
        description: tool.description,
        parameters: tool.parameters.filter(|p| !p.is_null()),
        strict: tool.strict,
        extensions: Extensions::new(PROTOCOL, fields),
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
                     or an object naming a tool"
                ),
            )),
        },
        Value::Object(obj) => match (
            obj.get("type").and_then(Value::as_str),
            obj.get("name").and_then(Value::as_str),
        ) {
            (Some("function"), Some(name)) if obj.len() == 2 => {
                Ok(ToolChoice::Tool(name.to_owned()))
            }
            // Built-in tools, `allowed_tools`, MCP and custom tool choices.
            _ => Ok(ToolChoice::Opaque {
                protocol: PROTOCOL,
                value,
            }),
        },
        _ => Err(Error::invalid_field(
            "tool_choice",
            "'tool_choice' must be a string or an object",
        )),
    }
}

/// `text.format`; `None` for a format type the model does not know.
fn format_from_wire(value: &Value) -> Result<Option<ResponseFormat>, Error> {
    let Value::Object(obj) = value else {
        return Err(Error::invalid_field(
            "text.format",
            "'text.format' must be an object with a 'type'",
        ));
    };
    let kind = match obj.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        _ => {
            return Err(Error::invalid_field(
                "text.format.type",
                "'text.format.type' must be a string",
            ));
        }
    };
    match kind {
        "text" if obj.len() == 1 => Ok(Some(ResponseFormat::Text)),
        "json_object" if obj.len() == 1 => Ok(Some(ResponseFormat::JsonObject)),
        "json_schema" => {
            let name = match obj.get("name") {
                Some(Value::String(name)) => name.clone(),
                _ => {
                    return Err(Error::invalid_field(
                        "text.format.name",
                        "'text.format.name' is required when type is 'json_schema'",
                    ));
                }
            };
            let schema = match obj.get("schema") {
                Some(schema @ Value::Object(_)) => schema.clone(),
                _ => {
                    return Err(Error::invalid_field(
                        "text.format.schema",
                        "'text.format.schema' must be a JSON Schema object",
                    ));
                }
            };
            let known = ["type", "name", "schema", "strict", "description"];
            if obj.keys().any(|k| !known.contains(&k.as_str())) {
                return Ok(None);
            }
            Ok(Some(ResponseFormat::JsonSchema {
                name,
                schema,
                strict: obj.get("strict").and_then(Value::as_bool),
                description: obj
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            }))
        }
        _ => Ok(None),
    }
}

// ---------------------------------------------------------------------------------------
// Responses -> events

/// Keys of the Response object the model has slots for; every other top-level field
/// travels as the `top` extension.
const MODELLED: [&str; 9] = [
    "id",
    "object",
    "created_at",
    "status",
    "model",
    "output",
    "usage",
    "error",
    "incomplete_details",
];

/// The `Start` event of a Response object whose other top-level fields are `top` (the
/// `top` extension scope).
pub(crate) fn start_event(response: &ResponseObject, top: Map<String, Value>) -> Event {
    Event::Start {
        id: response.id.clone(),
        model: response.model.clone(),
        created: response.created_at.map(|t| t as u64),
        extensions: scoped("top", top),
    }
}

/// The Response object's top-level fields the model has no slot for, taken out of it (moved,
/// not copied: a Response echoes the whole request, instructions and tools included).
pub(crate) fn take_top_fields(response: &mut ResponseObject) -> Map<String, Value> {
    let mut top = std::mem::take(&mut response.extra);
    top.retain(|k, _| !MODELLED.contains(&k.as_str()));
    top
}

/// `fields` under `scope` as Responses extensions (empty when `fields` is).
pub(crate) fn scoped(scope: &str, fields: Map<String, Value>) -> Extensions {
    if fields.is_empty() {
        return Extensions::default();
    }
    let mut scoped = Map::new();
    scoped.insert(scope.into(), Value::Object(fields));
    Extensions::new(PROTOCOL, scoped)
}

/// An `item` extension: the fields of the output item at `output_index` that the events
/// cannot say (its `id`, `phase`, unknown fields), for the next item of that `type`.
pub(crate) fn item_extension(
    output_index: u32,
    kind: &str,
    fields: Map<String, Value>,
) -> Extensions {
    let mut item = Map::new();
    item.insert("output_index".into(), Value::from(output_index));
    item.insert("type".into(), Value::from(kind));
    item.extend(fields);
    scoped("item", item)
}

/// A `part` extension: a content part's fields beyond its text (annotations, logprobs).
pub(crate) fn part_extension(
    output_index: u32,
    content_index: u32,
    fields: Map<String, Value>,
) -> Option<Event> {
    if fields.is_empty() {
        return None;
    }
    let mut part = Map::new();
    part.insert("output_index".into(), Value::from(output_index));
    part.insert("content_index".into(), Value::from(content_index));
    part.extend(fields);
    Some(Event::Extension(scoped("part", part)))
}

/// An output item of a type the model does not know (built-in tool calls, ...), whole:
/// as it starts (`added`, so a client can show it running) or as it is done.
pub(crate) fn opaque_item_extension(output_index: u32, item: Value, added: bool) -> Event {
    let mut opaque = Map::new();
    opaque.insert("output_index".into(), Value::from(output_index));
    opaque.insert("item".into(), item);
    if added {
        opaque.insert("added".into(), Value::Bool(true));
    }
    Event::Extension(scoped("opaque_item", opaque))
}

/// The fields of an `output_text` part beyond its text, without empty annotation and
/// logprob lists (the encoder always sends those).
pub(crate) fn part_fields(mut part: Map<String, Value>) -> Map<String, Value> {
    for key in ["type", "text", "refusal"] {
        part.remove(key);
    }
    part.retain(|k, v| {
        !((k == "annotations" || k == "logprobs") && v.as_array().is_some_and(Vec::is_empty))
    });
    part
}

/// Removes the keys an item's events already say, leaving `id` and the unknown fields.
pub(crate) fn item_fields(mut item: Map<String, Value>, said: &[&str]) -> Map<String, Value> {
    for key in said {
        item.remove(*key);
    }
    item.remove("type");
    item.remove("status");
    item
}

/// What separates two summary parts in the one thinking text the model keeps per item.
pub(crate) const SUMMARY_SEPARATOR: &str = "\n\n";

/// Ends a summary part after `said` bytes of the item's thinking text: a `summary_part`
/// extension (where the next part starts, so an encoder of this protocol can split the
/// parts again) and the separator every other encoder shows. Returns the bytes added.
pub(crate) fn summary_break(output_index: u32, said: usize, out: &mut Vec<Event>) -> usize {
    let at = said + SUMMARY_SEPARATOR.len();
    let mut fields = Map::new();
    fields.insert("output_index".into(), Value::from(output_index));
    fields.insert("at".into(), Value::from(at));
    out.push(Event::Extension(scoped("summary_part", fields)));
    out.push(Event::ThinkingDelta {
        text: SUMMARY_SEPARATOR.into(),
        signature: None,
    });
    SUMMARY_SEPARATOR.len()
}

/// Turns whole output items into events, numbering tool calls as they come.
#[derive(Debug, Default, Clone)]
pub(crate) struct ItemEvents {
    pub(crate) tool_calls: u32,
}

impl ItemEvents {
    pub(crate) fn push(&mut self, output_index: u32, item: Value, out: &mut Vec<Event>) {
        let Value::Object(mut obj) = item else {
            return;
        };
        let kind = obj
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        match kind.as_str() {
            "message" => {
                let content = obj.remove("content");
                out.push(Event::Extension(item_extension(
                    output_index,
                    "message",
                    item_fields(obj, &["role"]),
                )));
                let parts = match content {
                    Some(Value::Array(parts)) => parts,
                    _ => Vec::new(),
                };
                for (content_index, part) in parts.into_iter().enumerate() {
                    let Value::Object(part) = part else { continue };
                    let text = |key: &str| {
                        part.get(key)
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned()
                    };
                    match part.get("type").and_then(Value::as_str) {
                        Some("refusal") => {
                            let refusal = text("refusal");
                            if !refusal.is_empty() {
                                out.push(Event::RefusalDelta(refusal));
                            }
                        }
                        _ => {
                            let text = text("text");
                            if !text.is_empty() {
                                out.push(Event::TextDelta(text));
                            }
                        }
                    }
                    out.extend(part_extension(
                        output_index,
                        content_index as u32,
                        part_fields(part),
                    ));
                }
            }
            "function_call" => {
                let Ok(call) = serde_json::from_value::<FunctionCallItem>(Value::Object(obj))
                else {
                    return;
                };
                let index = self.tool_calls;
                self.tool_calls += 1;
                out.push(Event::Extension(item_extension(
                    output_index,
                    "function_call",
                    item_fields(call.extra, &[]),
                )));
                out.push(Event::ToolCallStart {
                    index,
                    id: call.call_id,
                    name: call.name,
                });
                if !call.arguments.is_empty() {
                    out.push(Event::ToolCallArgsDelta {
                        index,
                        arguments: call.arguments,
                    });
                }
                out.push(Event::ToolCallEnd { index });
            }
            "reasoning" => {
                let Ok(item) = serde_json::from_value::<ReasoningItem>(Value::Object(obj)) else {
                    return;
                };
                out.push(Event::Extension(item_extension(
                    output_index,
                    "reasoning",
                    item_fields(item.extra, &[]),
                )));
                // Summaries when there are any, else the raw reasoning text.
                let parts = if item.summary.is_empty() {
                    item.content
                } else {
                    item.summary
                };
                let mut said = 0;
                for part in parts.into_iter().filter(|p| !p.text.is_empty()) {
                    if said > 0 {
                        said += summary_break(output_index, said, out);
                    }
                    said += part.text.len();
                    out.push(Event::ThinkingDelta {
                        text: part.text,
                        signature: None,
                    });
                }
                if item.encrypted_content.is_some() || said == 0 {
                    out.push(Event::ThinkingDelta {
                        text: String::new(),
                        signature: item.encrypted_content,
                    });
                }
            }
            _ => out.push(opaque_item_extension(
                output_index,
                Value::Object(obj),
                false,
            )),
        }
    }
}

/// Reads a Responses usage object, keeping it whole for a same-protocol client. A count of
/// the wrong type makes the whole object unreadable, as it does to the SDK; absent counts are
/// zero. Read from the object's members where they are (a serde pass over a copy of it cost
/// 3 % of a same-protocol request, bench/callgrind.sh).
pub fn usage(value: Value) -> Option<Usage> {
    let Value::Object(raw) = value else {
        return None;
    };
    let count = |key: &str| match raw.get(key) {
        None => Some(0),
        Some(value) => value.as_u64(),
    };
    let details = |key: &str| match raw.get(key) {
        None | Some(Value::Null) => Some(None),
        Some(Value::Object(details)) => Some(Some(details)),
        Some(_) => None,
    };
    let (input_tokens, output_tokens) = (count("input_tokens")?, count("output_tokens")?);
    count("total_tokens")?;
    let (input_details, output_details) = (
        details("input_tokens_details")?,
        details("output_tokens_details")?,
    );
    let detail = |details: Option<&Map<String, Value>>, key: &str| {
        details.and_then(|d| d.get(key)).and_then(Value::as_u64)
    };
    Some(Usage {
        input_tokens,
        output_tokens,
        cached_input_tokens: detail(input_details, "cached_tokens"),
        cache_creation_input_tokens: detail(input_details, "cache_write_tokens"),
        reasoning_tokens: detail(output_details, "reasoning_tokens"),
        extensions: Extensions::new(PROTOCOL, raw),
    })
}

/// The finish reason a finished Response implies. A response has no finish reason of its
/// own: a call is a `function_call` item in a completed response, and running out of
/// tokens is `incomplete` with a reason.
pub(crate) fn finish_reason(response: &ResponseObject, called_tools: bool) -> FinishReason {
    match response.status.as_deref() {
        Some("incomplete") => {
            match response
                .incomplete_details
                .as_ref()
                .and_then(|d| d.reason.as_deref())
            {
                Some("max_output_tokens") | None => FinishReason::MaxTokens,
                Some("content_filter") => FinishReason::ContentFilter,
                Some(other) => FinishReason::Other(other.to_owned()),
            }
        }
        _ if called_tools => FinishReason::ToolUse,
        _ => FinishReason::EndTurn,
    }
}

/// The error of a failed response or an `error` event.
pub(crate) fn response_error(error: Option<&Value>, fallback: &str) -> ChunkError {
    let parsed: ResponseError = error
        .and_then(|e| serde_json::from_value(e.clone()).ok())
        .unwrap_or_default();
    let code = parsed.code.and_then(|c| match c {
        Value::String(s) => Some(s),
        Value::Null => None,
        other => Some(other.to_string()),
    });
    // Responses errors carry a code but rarely a type; the OpenAI error envelope wants both.
    let error_type = parsed
        .kind
        .or_else(|| code.as_deref().map(|c| error_type_for(c).to_owned()));
    ChunkError::Upstream {
        message: parsed.message.unwrap_or_else(|| fallback.to_owned()),
        error_type,
        code,
    }
}

/// The OpenAI error `type` that goes with a Responses error `code`.
fn error_type_for(code: &str) -> &'static str {
    match code {
        "rate_limit_exceeded" => "rate_limit_error",
        "insufficient_quota" => "insufficient_quota",
        "server_error" | "vector_store_timeout" => "server_error",
        _ => "invalid_request_error",
    }
}

/// Turns a non-streaming upstream Response into the event sequence a stream would give.
pub fn decode_response(body: &[u8]) -> Result<Vec<Event>, ChunkError> {
    decode_whole(body, false).map(|(events, _)| events)
}

/// [`decode_response`], and whether llmux's own encoder gives this body back from those
/// events (the same JSON, members that are `null` aside), given that the upstream echoed
/// what the client asked ([`super::pass_through`]): when it does, a client of this protocol
/// may get the body as it came (see [`crate::model::VerbatimSlot`]).
pub fn decode_response_checked(body: &[u8]) -> Result<(Vec<Event>, bool), ChunkError> {
    decode_whole(body, true)
}

/// The events of a whole Response and, when `check`, whether it round-trips (else false):
/// a client of another protocol has no use for the answer.
fn decode_whole(body: &[u8], check: bool) -> Result<(Vec<Event>, bool), ChunkError> {
    let mut response: ResponseObject = crate::protocol::json_from_bytes(body)
        .map_err(|e| ChunkError::Garbage(format!("the response is not a Response object: {e}")))?;
    if response.status.as_deref() == Some("failed")
        || response.error.as_ref().is_some_and(|e| !e.is_null())
    {
        return Err(response_error(
            response.error.as_ref(),
            "the upstream response failed",
        ));
    }
    let lossless = check && super::pass_through::answer_round_trips(&response);
    let mut events = Vec::with_capacity(8);
    let top = take_top_fields(&mut response);
    events.push(start_event(&response, top));
    let mut items = ItemEvents::default();
    for (i, item) in std::mem::take(&mut response.output).into_iter().enumerate() {
        items.push(i as u32, item, &mut events);
    }
    if let Some(u) = response.usage.take().and_then(usage) {
        events.push(Event::Usage(u));
    }
    events.push(Event::Finish {
        reason: finish_reason(&response, items.tool_calls > 0),
        stop_sequence: None,
    });
    Ok((events, lossless))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A usage member: absent, or a value of one of the types an upstream might send.
    fn usage_member(rng: &mut fastrand::Rng, count: bool) -> Option<Value> {
        let options = [
            None,
            Some(Value::Null),
            Some(json!(7)),
            Some(json!(u64::MAX)),
            Some(json!(-1)),
            Some(json!(1.5)),
            Some(json!("12")),
            Some(json!({"cached_tokens": 3, "cache_write_tokens": 1, "reasoning_tokens": 2})),
            Some(json!({"cached_tokens": "x"})),
            Some(json!([])),
        ];
        // Counts are mostly numbers and details mostly objects, so most objects read.
        let pick = if rng.bool() {
            if count { 2 } else { 7 }
        } else {
            rng.usize(..options.len())
        };
        options[pick].clone()
    }

    #[test]
    fn usage_reads_what_serde_read_from_a_copy() {
        let keys = [
            "input_tokens",
            "output_tokens",
            "total_tokens",
            "input_tokens_details",
            "output_tokens_details",
        ];
        let mut read = 0;
        for seed in 0..4000 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut raw = Map::new();
            for key in keys {
                if let Some(value) = usage_member(&mut rng, !key.ends_with("details")) {
                    raw.insert(key.into(), value);
                }
            }
            if rng.bool() {
                raw.insert("extra".into(), json!({"kept": true}));
            }
            let expected = serde_json::from_value::<super::super::types::ResponsesUsage>(
                Value::Object(raw.clone()),
            )
            .ok()
            .map(|wire| {
                let detail = |d: &Option<Map<String, Value>>, key: &str| {
                    d.as_ref().and_then(|d| d.get(key)).and_then(Value::as_u64)
                };
                (
                    wire.input_tokens,
                    wire.output_tokens,
                    detail(&wire.input_tokens_details, "cached_tokens"),
                    detail(&wire.input_tokens_details, "cache_write_tokens"),
                    detail(&wire.output_tokens_details, "reasoning_tokens"),
                )
            });
            let got = usage(Value::Object(raw.clone())).map(|u| {
                assert_eq!(
                    u.extensions.for_protocol(PROTOCOL),
                    Some(&raw),
                    "kept whole"
                );
                (
                    u.input_tokens,
                    u.output_tokens,
                    u.cached_input_tokens,
                    u.cache_creation_input_tokens,
                    u.reasoning_tokens,
                )
            });
            assert_eq!(got, expected, "seed {seed}: {raw:?}");
            read += usize::from(got.is_some());
        }
        assert!(read > 500, "only {read} usage objects were readable");
    }

    fn decode(body: serde_json::Value) -> Result<Request, Error> {
        decode_request(body.to_string().as_bytes()).map(|(r, _)| r)
    }

    /// Read through the tools memo, a request decodes as reading its tools as values does,
    /// its echoed tools are the same values, and one sent again decodes no list; a request
    /// the memo's path refuses is one the other refuses.
    #[test]
    fn a_request_read_through_the_tools_memo_decodes_as_with_its_tools_as_values() {
        let function = serde_json::json!({"type": "function", "name": "f",
            "description": "Runs é \"it\"", "parameters": {"type": "object"}, "x": 1.50});
        let lists = [
            serde_json::json!(null),
            serde_json::json!([]),
            serde_json::json!([function]),
            serde_json::json!([function, {"type": "web_search", "filters": {"a": [1, 2]}}]),
            serde_json::json!([{"type": "function", "name": "g", "strict": true}]),
            // Over the memo's 1 KiB floor: sent again, it is blanked before parsing.
            serde_json::json!([function, {"type": "function", "name": "read",
                "description": "Reads a file. ".repeat(80)}]),
            serde_json::json!(5),
            serde_json::json!([{"type": "function"}]),
            serde_json::json!([function, 7]),
        ];
        let memo = ToolsMemo::default();
        let (mut decoded, mut refused) = (0, 0);
        for list in lists {
            let input = serde_json::json!([{"type": "message", "role": "user", "content": "hi"}]);
            let body = serde_json::json!({"model": "m", "input": input, "tools": list});
            for text in [
                body.to_string(),
                serde_json::to_string_pretty(&body).unwrap(),
            ] {
                let values = decode_tools_as_values(text.as_bytes());
                let Ok((request, options, edits)) = values else {
                    assert!(
                        decode_with_tools_memo(text.as_bytes(), &memo).is_none(),
                        "{text}"
                    );
                    refused += 1;
                    continue;
                };
                decoded += 1;
                let echoed = |options: &ClientOptions| {
                    options.tools.as_deref().map(|text| {
                        assert!(!text.contains('\n'), "{text}");
                        serde_json::from_str::<Value>(text).unwrap()
                    })
                };
                for time in ["first", "again"] {
                    let lists_decoded = memo.decoded();
                    let (through_memo, memo_options, memo_edits) =
                        decode_with_tools_memo(text.as_bytes(), &memo).unwrap();
                    assert_eq!(through_memo, request, "{time}: {text}");
                    // The pass-through's verdict on the tools is the one kept with them.
                    assert_eq!(memo_edits, edits, "{time}: {text}");
                    assert_eq!(memo_options.echo, options.echo, "{time}: {text}");
                    assert_eq!(echoed(&memo_options), echoed(&options), "{time}: {text}");
                    if time == "again" {
                        assert_eq!(memo.decoded(), lists_decoded, "{text}");
                    }
                }
            }
        }
        assert_eq!((decoded, refused), (12, 6));
        assert!(memo.blanked() >= 2, "{} lists blanked", memo.blanked());
    }

    #[test]
    fn a_string_input_is_one_user_message() {
        let request =
            decode(serde_json::json!({"model": "m", "input": "hi", "instructions": "be brief"}))
                .unwrap();
        assert_eq!(request.messages.len(), 1);
        assert_eq!(request.messages[0].role, Role::User);
        assert_eq!(request.last_user_text().as_deref(), Some("hi"));
        assert_eq!(request.system, vec![Part::text("be brief")]);
    }

    #[test]
    fn assistant_side_items_merge_into_one_message() {
        let request = decode(serde_json::json!({"model": "m", "input": [
            {"role": "user", "content": "weather?"},
            {"type": "reasoning", "summary": [], "encrypted_content": "enc"},
            {"type": "function_call", "call_id": "call_A", "name": "f", "arguments": "{}"},
            {"type": "function_call", "call_id": "call_B", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_A", "output": "1"},
            {"type": "function_call_output", "call_id": "call_B", "output": "2"},
        ]}))
        .unwrap();
        let roles: Vec<Role> = request.messages.iter().map(|m| m.role).collect();
        assert_eq!(roles, [Role::User, Role::Assistant, Role::Tool, Role::Tool]);
        assert_eq!(request.messages[1].parts.len(), 3);
        assert!(matches!(
            &request.messages[1].parts[0],
            Part::Thinking { signature: Some(s), .. } if s == "enc"
        ));
    }

    #[test]
    fn bad_items_name_the_field() {
        let cases = [
            (
                serde_json::json!({"model": "m", "input": [{"type": "function_call_output", "output": "x"}]}),
                "input[0].call_id",
            ),
            (
                serde_json::json!({"model": "m", "input": [{"role": "user", "content": "a"}, 7]}),
                "input[1]",
            ),
            (
                serde_json::json!({"model": "m", "input": [{"type": 3}]}),
                "input[0].type",
            ),
            (
                serde_json::json!({"model": "m", "input": [{"content": "x"}]}),
                "input[0].type",
            ),
            (
                serde_json::json!({"model": "m", "input": [{"role": "robot", "content": "x"}]}),
                "input[0].role",
            ),
            (
                serde_json::json!({"model": "m", "input": [{"role": "user", "content": 5}]}),
                "input[0].content",
            ),
            (
                serde_json::json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_text"}]}]}),
                "input[0].content[0].text",
            ),
            (
                serde_json::json!({"model": "m", "input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}]}),
                "input[0].arguments",
            ),
            (
                serde_json::json!({"model": "m", "input": "x", "tools": [{"type": "function"}]}),
                "tools[0].name",
            ),
            (
                serde_json::json!({"model": "m", "input": "x", "tool_choice": "sometimes"}),
                "tool_choice",
            ),
            (
                serde_json::json!({"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "schema": {}}}}),
                "text.format.name",
            ),
            (
                serde_json::json!({"model": "m", "input": "x", "temperature": "warm"}),
                "temperature",
            ),
            (serde_json::json!({"model": "m", "input": 5}), "input"),
            (
                serde_json::json!({"model": "m", "input": [
                    {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                    {"type": "function_call_output", "call_id": "c", "output": [{"type": "input_text"}]}]}),
                "input[1].output[0].text",
            ),
            (
                serde_json::json!({"model": "m", "input": [{"role": "user", "content": [
                    {"type": "input_text", "text": "a"}, 7]}]}),
                "input[0].content[1]",
            ),
            (
                serde_json::json!({"model": "m", "input": "x", "tools": [
                    {"type": "function", "name": "f"}, 7]}),
                "tools[1]",
            ),
        ];
        for (body, param) in cases {
            let err = decode(body.clone()).unwrap_err();
            assert_eq!(err.status(), 422, "{body}");
            assert_eq!(err.param(), Some(param), "{body}: {err}");
            assert!(err.to_string().contains(param), "{body}: {err}");
        }
    }

    #[test]
    fn invalid_json_and_a_missing_model_are_invalid_requests() {
        let err = decode_request(b"{\"model\": \"m\", \"input\": [").unwrap_err();
        assert!(err.to_string().contains("not valid JSON"), "{err}");
        let err = decode_request(br#"{"input": "hi"}"#).unwrap_err();
        assert!(err.to_string().contains("model"), "{err}");
        let err = decode_request(br#"{"model": "", "input": "hi"}"#).unwrap_err();
        assert_eq!(err.param(), Some("model"));
    }

    #[test]
    fn unknown_item_and_part_types_travel_whole() {
        let request = decode(serde_json::json!({"model": "m", "input": [
            {"type": "custom_tool_call", "call_id": "c1", "name": "apply_patch", "input": "*** Begin Patch"},
            {"type": "custom_tool_call_output", "call_id": "c1", "output": "ok"},
            {"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]},
        ]}))
        .unwrap();
        assert_eq!(request.messages[0].role, Role::Assistant);
        assert_eq!(request.messages[1].role, Role::Tool);
        assert!(matches!(
            &request.messages[2].parts[0],
            Part::Opaque { value, .. } if value["file_id"] == "file-1"
        ));
    }

    #[test]
    fn a_failed_response_is_an_upstream_error() {
        let err = decode_response(
            br#"{"id":"resp_1","status":"failed","model":"m","output":[],
                "error":{"code":"rate_limit_exceeded","message":"slow down"}}"#,
        )
        .unwrap_err();
        assert_eq!(
            err,
            ChunkError::Upstream {
                message: "slow down".into(),
                error_type: Some("rate_limit_error".into()),
                code: Some("rate_limit_exceeded".into()),
            }
        );
    }

    /// The members of a Response object that the model has no slot for travel in the
    /// `top` scope of the start event in their order, `null` ones too (a client of this
    /// protocol gets `"instructions": null` back); `object` and the modelled ones do not.
    #[test]
    fn a_responses_unmodelled_members_travel_in_order_nulls_included() {
        let body = br#"{"id":"resp_1","object":"response","created_at":7,"status":"completed",
            "instructions":null,"model":"m","output":[],"usage":null,"zeta":{"a":[1]},
            "alpha":"x","error":null,"incomplete_details":null,"metadata":{}}"#;
        let events = decode_response(body).unwrap();
        let Event::Start { id, extensions, .. } = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(id, "resp_1");
        let top = &extensions.for_protocol(PROTOCOL).unwrap()["top"];
        let keys: Vec<&str> = top
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["instructions", "zeta", "alpha", "metadata"]);
        assert_eq!(top["instructions"], Value::Null);
        assert_eq!(top["zeta"], serde_json::json!({"a": [1]}));
        // A key given twice is refused, as serde's derive refuses it.
        let twice = decode_response(br#"{"id":"a","id":"b","output":[]}"#);
        assert!(format!("{:?}", twice.unwrap_err()).contains("duplicate field `id`"));
    }
}
