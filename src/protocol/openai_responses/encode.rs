//! Canonical model -> Responses wire: the upstream request for a Responses back-end, and
//! the Response object for a Responses client that did not stream.

use std::borrow::Borrow;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::decode::{ClientOptions, ITEM, REASONING_PART, SUMMARY_SEPARATOR};
use crate::Error;
use crate::error::ErrorKind;
use crate::model::{
    Extensions, FinishReason, Message, Part, Protocol, Request, Response, ResponseFormat, Role,
    Tool, ToolChoice, Usage,
};
use crate::protocol::tools_out::{Encoded, ToolsOut, encoded, put_tools};

const PROTOCOL: Protocol = Protocol::OpenAiResponses;

/// Request extension keys merged into objects the encoder builds, not copied whole.
const MERGED: [&str; 4] = ["reasoning", "text", "stream", "stream_options"];

/// Builds the upstream request body for `model`.
///
/// Chat-only sampling fields have no Responses equivalent and are not sent: `stop`,
/// `seed`, `presence_penalty`, `frequency_penalty` (and `top_k`).
pub fn encode_request(request: &Request, model: &str) -> Value {
    encode(request, model, None).body
}

/// The tools this encoder wrote lately (see `tools_out`).
static TOOLS_OUT: ToolsOut = ToolsOut::new();

/// [`encode_request`], with the tools written as the text written for the same shared
/// list before: the body to send.
pub fn encode_request_body(request: &Request, model: &str) -> Encoded {
    encode(request, model, Some(&TOOLS_OUT))
}

fn encode(request: &Request, model: &str, tools_out: Option<&ToolsOut>) -> Encoded {
    let mut body = Map::new();
    let ext = request.extensions.for_protocol(PROTOCOL);
    // Unknown fields first, so every field set below wins over them.
    if let Some(ext) = ext {
        for (key, value) in ext {
            if !MERGED.contains(&key.as_str()) {
                body.insert(key.clone(), value.clone());
            }
        }
    }
    body.insert("model".into(), Value::from(model));
    let system: Vec<&str> = request.system.iter().filter_map(Part::as_text).collect();
    if !system.is_empty() {
        body.insert("instructions".into(), Value::from(system.join("\n\n")));
    }
    body.insert("input".into(), Value::Array(encode_input(request)));

    let tools = put_tools(&mut body, &request.tools, tools_out, encode_tool);
    if let Some(choice) = request.tool_choice.as_ref().and_then(encode_tool_choice) {
        body.insert("tool_choice".into(), choice);
    }
    if let Some(parallel) = request.parallel_tool_calls {
        body.insert("parallel_tool_calls".into(), Value::Bool(parallel));
    }
    let sampling = &request.sampling;
    if let Some(t) = sampling.temperature {
        body.insert("temperature".into(), Value::from(t));
    }
    if let Some(p) = sampling.top_p {
        body.insert("top_p".into(), Value::from(p));
    }
    if let Some(cap) = sampling.max_tokens {
        body.insert("max_output_tokens".into(), Value::from(cap));
    }

    let mut reasoning = merged_object(ext, "reasoning");
    if let Some(effort) = request.reasoning.as_ref().and_then(|r| r.effort) {
        reasoning.insert("effort".into(), Value::from(effort.as_str()));
    }
    if !reasoning.is_empty() {
        body.insert("reasoning".into(), Value::Object(reasoning));
    }
    let mut text = merged_object(ext, "text");
    if let Some(format) = &request.response_format {
        text.insert("format".into(), encode_format(format));
    }
    if !text.is_empty() {
        body.insert("text".into(), Value::Object(text));
    }
    if let Some(user) = &request.client.user {
        body.insert("user".into(), Value::from(user.as_str()));
    }
    if request.stream {
        body.insert("stream".into(), Value::Bool(true));
        if let Some(options) = ext.and_then(|e| e.get("stream_options")) {
            body.insert("stream_options".into(), options.clone());
        }
    }
    encoded(body, tools)
}

fn merged_object(ext: Option<&Map<String, Value>>, key: &str) -> Map<String, Value> {
    match ext.and_then(|e| e.get(key)) {
        Some(Value::Object(obj)) => obj.clone(),
        _ => Map::new(),
    }
}

fn ext_or_empty(extensions: &Extensions) -> Map<String, Value> {
    extensions
        .for_protocol(PROTOCOL)
        .cloned()
        .unwrap_or_default()
}

fn encode_input(request: &Request) -> Vec<Value> {
    let mut items = Vec::with_capacity(request.messages.len());
    for message in &request.messages {
        match message.role {
            Role::Assistant => encode_assistant(message, &mut items),
            _ => encode_message(message, &mut items),
        }
    }
    items
}

/// A user, system, developer or tool message: tool results become `function_call_output`
/// items (first, whatever message carried them), the rest one `message` item.
fn encode_message(message: &Message, items: &mut Vec<Value>) {
    let own_tool = message.role == Role::Tool;
    let mut content = Vec::new();
    for part in &message.parts {
        match part {
            Part::ToolResult {
                call_id,
                content: result,
                ..
            } => {
                let mut item = if own_tool {
                    ext_or_empty(&message.extensions)
                } else {
                    Map::new()
                };
                item.insert("type".into(), Value::from("function_call_output"));
                item.insert("call_id".into(), Value::from(call_id.as_str()));
                let as_parts = own_tool && message.content_as_parts == Some(PROTOCOL);
                item.insert("output".into(), encode_content(result, as_parts, false));
                items.push(Value::Object(item));
            }
            // In a tool message, an opaque part is a whole item (`custom_tool_call_output`).
            Part::Opaque { protocol, value } if own_tool && *protocol == PROTOCOL => {
                items.push(value.clone());
            }
            _ => content.push(part),
        }
    }
    if own_tool || content.is_empty() {
        return;
    }
    let role = match message.role {
        Role::System => "system",
        Role::Developer => "developer",
        _ => "user",
    };
    let mut item = Map::new();
    item.insert("type".into(), Value::from("message"));
    item.insert("role".into(), Value::from(role));
    item.insert(
        "content".into(),
        encode_content(&content, message.content_as_parts == Some(PROTOCOL), false),
    );
    item.extend(ext_or_empty(&message.extensions));
    items.push(Value::Object(item));
}

/// Content as a string when it is only plain text and the client did not send a list. The
/// parts are owned or borrowed: a message's are borrowed rather than cloned (its text is
/// often a request's largest).
fn encode_content<P: Borrow<Part>>(parts: &[P], as_parts: bool, assistant: bool) -> Value {
    let plain = parts.iter().map(Borrow::borrow).all(|p| match p {
        Part::Text { extensions, .. } => extensions.for_protocol(PROTOCOL).is_none(),
        _ => false,
    });
    if plain && !as_parts && !assistant {
        let text: String = parts.iter().filter_map(|p| p.borrow().as_text()).collect();
        return Value::from(text);
    }
    Value::Array(
        parts
            .iter()
            .filter_map(|p| encode_part(p.borrow(), assistant))
            .collect(),
    )
}

fn encode_part(part: &Part, assistant: bool) -> Option<Value> {
    match part {
        Part::Text { text, extensions } => {
            let mut obj = Map::new();
            let kind = if assistant {
                "output_text"
            } else {
                "input_text"
            };
            obj.insert("type".into(), Value::from(kind));
            obj.insert("text".into(), Value::from(text.as_str()));
            let mut ext = ext_or_empty(extensions);
            ext.remove(ITEM);
            obj.extend(ext);
            Some(Value::Object(obj))
        }
        Part::Image {
            source,
            detail,
            extensions,
        } => {
            let mut obj = Map::new();
            obj.insert("type".into(), Value::from("input_image"));
            obj.insert("image_url".into(), Value::from(source.to_url()));
            // `detail` is required on input images; `auto` is the documented default.
            obj.insert(
                "detail".into(),
                Value::from(detail.as_deref().unwrap_or("auto")),
            );
            obj.extend(ext_or_empty(extensions));
            Some(Value::Object(obj))
        }
        Part::Refusal { text } if assistant => Some(json!({"type": "refusal", "refusal": text})),
        Part::Opaque { protocol, value } if *protocol == PROTOCOL => Some(value.clone()),
        _ => None,
    }
}

/// The assistant item being rebuilt from a run of parts.
enum Pending {
    Message {
        fields: Map<String, Value>,
        content: Vec<Value>,
    },
    Reasoning {
        fields: Map<String, Value>,
        summary: Vec<Value>,
        content: Vec<Value>,
        encrypted: Option<String>,
    },
}

impl Pending {
    fn into_item(self) -> Value {
        match self {
            Pending::Message { fields, content } => {
                let mut item = Map::new();
                item.insert("type".into(), Value::from("message"));
                item.insert("role".into(), Value::from("assistant"));
                item.insert("content".into(), Value::Array(content));
                item.extend(fields);
                Value::Object(item)
            }
            Pending::Reasoning {
                fields,
                summary,
                content,
                encrypted,
            } => {
                let mut item = Map::new();
                item.insert("type".into(), Value::from("reasoning"));
                item.extend(fields);
                item.insert("summary".into(), Value::Array(summary));
                if !content.is_empty() {
                    item.insert("content".into(), Value::Array(content));
                }
                if let Some(encrypted) = encrypted {
                    item.insert("encrypted_content".into(), Value::from(encrypted));
                }
                Value::Object(item)
            }
        }
    }
}

/// An assistant message becomes its items again: text and refusals as `message` items,
/// calls as `function_call` items, this protocol's reasoning as `reasoning` items. Foreign
/// reasoning is dropped: a Responses back-end cannot verify it.
fn encode_assistant(message: &Message, items: &mut Vec<Value>) {
    let mut pending: Option<Pending> = None;
    let flush = |pending: &mut Option<Pending>, items: &mut Vec<Value>| {
        if let Some(p) = pending.take() {
            items.push(p.into_item());
        }
    };
    for part in &message.parts {
        match part {
            Part::Text { .. } | Part::Refusal { .. } => {
                let starts = extensions_of(part).and_then(|e| e.get(ITEM));
                if starts.is_some() || !matches!(pending, Some(Pending::Message { .. })) {
                    flush(&mut pending, items);
                    let fields = match starts {
                        Some(Value::Object(fields)) => fields.clone(),
                        _ => Map::new(),
                    };
                    pending = Some(Pending::Message {
                        fields,
                        content: Vec::new(),
                    });
                }
                if let (Some(Pending::Message { content, .. }), Some(value)) =
                    (pending.as_mut(), encode_part(part, true))
                {
                    content.push(value);
                }
            }
            Part::Thinking {
                text,
                signature,
                extensions,
                ..
            } => {
                let Some(ext) = extensions.for_protocol(PROTOCOL) else {
                    continue;
                };
                let starts = ext.get(ITEM);
                let continues = matches!(
                    &pending,
                    Some(Pending::Reasoning {
                        encrypted: None,
                        ..
                    })
                );
                if starts.is_some() || !continues {
                    flush(&mut pending, items);
                    let fields = match starts {
                        Some(Value::Object(fields)) => fields.clone(),
                        _ => Map::new(),
                    };
                    pending = Some(Pending::Reasoning {
                        fields,
                        summary: Vec::new(),
                        content: Vec::new(),
                        encrypted: None,
                    });
                }
                if let Some(Pending::Reasoning {
                    summary,
                    content,
                    encrypted,
                    ..
                }) = pending.as_mut()
                {
                    let raw = ext.get(REASONING_PART).and_then(Value::as_str) == Some("content");
                    if !text.is_empty() {
                        let mut obj = Map::new();
                        let kind = if raw {
                            "reasoning_text"
                        } else {
                            "summary_text"
                        };
                        obj.insert("type".into(), Value::from(kind));
                        obj.insert("text".into(), Value::from(text.as_str()));
                        for (k, v) in ext {
                            if k != ITEM && k != REASONING_PART {
                                obj.insert(k.clone(), v.clone());
                            }
                        }
                        if raw {
                            content.push(Value::Object(obj));
                        } else {
                            summary.push(Value::Object(obj));
                        }
                    }
                    if signature.is_some() {
                        encrypted.clone_from(signature);
                    }
                }
            }
            Part::ToolCall {
                id,
                name,
                arguments,
                extensions,
            } => {
                flush(&mut pending, items);
                let mut item = Map::new();
                item.insert("type".into(), Value::from("function_call"));
                item.extend(ext_or_empty(extensions));
                item.insert("call_id".into(), Value::from(id.as_str()));
                item.insert("name".into(), Value::from(name.as_str()));
                item.insert("arguments".into(), Value::from(arguments.as_str()));
                items.push(Value::Object(item));
            }
            Part::ToolResult { .. } => {
                flush(&mut pending, items);
                encode_message(&Message::new(Role::User, vec![part.clone()]), &mut *items);
            }
            Part::Opaque { protocol, value } if *protocol == PROTOCOL => {
                flush(&mut pending, items);
                items.push(value.clone());
            }
            Part::Image { .. } | Part::Opaque { .. } => {}
        }
    }
    flush(&mut pending, items);
}

fn extensions_of(part: &Part) -> Option<&Map<String, Value>> {
    match part {
        Part::Text { extensions, .. } => extensions.for_protocol(PROTOCOL),
        _ => None,
    }
}

fn encode_tool(tool: &Tool) -> Option<Value> {
    match tool {
        Tool::Function {
            name,
            description,
            parameters,
            strict,
            extensions,
        } => {
            let native = extensions.for_protocol(PROTOCOL);
            let mut obj = native.cloned().unwrap_or_default();
            obj.insert("type".into(), Value::from("function"));
            obj.insert("name".into(), Value::from(name.as_str()));
            if let Some(description) = description {
                obj.insert("description".into(), Value::from(description.as_str()));
            }
            if let Some(parameters) = parameters {
                obj.insert("parameters".into(), parameters.clone());
            }
            match strict {
                Some(strict) => {
                    obj.insert("strict".into(), Value::Bool(*strict));
                }
                // Responses turns strict mode on when `strict` is omitted; a tool from
                // another protocol meant the opposite.
                None if native.is_none() => {
                    obj.insert("strict".into(), Value::Bool(false));
                }
                None => {}
            }
            Some(Value::Object(obj))
        }
        Tool::Opaque { protocol, value } if *protocol == PROTOCOL => Some(value.clone()),
        Tool::Opaque { .. } => None,
    }
}

fn encode_tool_choice(choice: &ToolChoice) -> Option<Value> {
    Some(match choice {
        ToolChoice::Auto => Value::from("auto"),
        ToolChoice::None => Value::from("none"),
        ToolChoice::Required => Value::from("required"),
        ToolChoice::Tool(name) => json!({"type": "function", "name": name}),
        ToolChoice::Opaque { protocol, value } if *protocol == PROTOCOL => value.clone(),
        ToolChoice::Opaque { .. } => return None,
    })
}

fn encode_format(format: &ResponseFormat) -> Value {
    match format {
        ResponseFormat::Text => json!({"type": "text"}),
        ResponseFormat::JsonObject => json!({"type": "json_object"}),
        ResponseFormat::JsonSchema {
            name,
            schema,
            strict,
            description,
        } => {
            let mut obj = Map::new();
            obj.insert("type".into(), Value::from("json_schema"));
            obj.insert("name".into(), Value::from(name.as_str()));
            if let Some(description) = description {
                obj.insert("description".into(), Value::from(description.as_str()));
            }
            obj.insert("schema".into(), schema.clone());
            if let Some(strict) = strict {
                obj.insert("strict".into(), Value::Bool(*strict));
            }
            Value::Object(obj)
        }
    }
}

// ---------------------------------------------------------------------------------------
// The Response object

/// How a finish reason shows in a Response: its `status` and `incomplete_details.reason`.
pub(crate) fn status(reason: Option<&FinishReason>) -> (&'static str, Option<&'static str>) {
    match reason {
        Some(FinishReason::MaxTokens | FinishReason::ContextWindowExceeded) => {
            ("incomplete", Some("max_output_tokens"))
        }
        Some(FinishReason::ContentFilter | FinishReason::Refusal) => {
            ("incomplete", Some("content_filter"))
        }
        Some(FinishReason::Other(reason)) if reason == FinishReason::SCHEMA_MISMATCH => {
            ("incomplete", Some(FinishReason::SCHEMA_MISMATCH))
        }
        _ => ("completed", None),
    }
}

/// Usage in the Responses shape; a same-protocol usage object keeps its extra details.
/// The detail objects are always present: the SDK types them as required.
pub fn usage(usage: &Usage) -> Value {
    let mut obj = ext_or_empty(&usage.extensions);
    obj.insert("input_tokens".into(), Value::from(usage.input_tokens));
    let mut input_details = match obj.remove("input_tokens_details") {
        Some(Value::Object(d)) => d,
        _ => Map::new(),
    };
    input_details.insert(
        "cached_tokens".into(),
        Value::from(usage.cached_input_tokens.unwrap_or(0)),
    );
    input_details.insert(
        "cache_write_tokens".into(),
        Value::from(usage.cache_creation_input_tokens.unwrap_or(0)),
    );
    obj.insert("input_tokens_details".into(), Value::Object(input_details));
    obj.insert("output_tokens".into(), Value::from(usage.output_tokens));
    let mut output_details = match obj.remove("output_tokens_details") {
        Some(Value::Object(d)) => d,
        _ => Map::new(),
    };
    output_details.insert(
        "reasoning_tokens".into(),
        Value::from(usage.reasoning_tokens.unwrap_or(0)),
    );
    obj.insert(
        "output_tokens_details".into(),
        Value::Object(output_details),
    );
    obj.insert("total_tokens".into(), Value::from(usage.total_tokens()));
    Value::Object(obj)
}

/// A deterministic item id: the same response always gets the same ids, and each starts
/// with the prefix its type needs (`msg_`, `fc_`, `rs_`), which OpenAI checks on replay.
pub(crate) fn item_id(prefix: &str, response_id: &str, output_index: usize) -> String {
    let base = response_id.strip_prefix("resp_").unwrap_or(response_id);
    format!("{prefix}_{base}_{output_index}")
}

/// The response's id, or a fresh one when the upstream gave none (some compatible servers
/// do not): clients key their state on it, and item ids derive from it.
pub(crate) fn response_id(id: &str) -> String {
    if id.is_empty() {
        format!("resp_{:016x}{:08x}", fastrand::u64(..), fastrand::u32(..))
    } else {
        id.to_owned()
    }
}

/// The top-level fields of a Response object at some point of its life.
pub(crate) struct Snapshot<'a> {
    pub id: &'a str,
    pub created_at: u64,
    pub model: &'a str,
    pub status: &'a str,
    pub incomplete_reason: Option<&'a str>,
    pub error: Option<Value>,
    pub output: Vec<Value>,
    pub usage: Option<Value>,
    /// The client's echoed request parameters.
    pub echo: &'a Map<String, Value>,
    /// The client's tools as text, written where `echo` holds their place.
    pub tools: Option<&'a Arc<str>>,
    /// The upstream Response's own fields, when the upstream speaks this protocol.
    pub top: &'a Map<String, Value>,
}

impl Snapshot<'_> {
    /// The Response object, with the client's tools as their text (unless the upstream's
    /// own `tools` replaced them).
    pub(crate) fn into_encoded(self) -> Encoded {
        let tools = self
            .tools
            .filter(|_| !self.top.contains_key("tools"))
            .map(|text| Arc::<[u8]>::from(Arc::clone(text)));
        encoded(self.into_members(), tools)
    }

    fn into_members(self) -> Map<String, Value> {
        let mut obj = Map::new();
        obj.insert("id".into(), Value::from(self.id));
        obj.insert("object".into(), Value::from("response"));
        obj.insert("created_at".into(), Value::from(self.created_at));
        obj.insert("status".into(), Value::from(self.status));
        obj.insert("error".into(), Value::Null);
        obj.insert("incomplete_details".into(), Value::Null);
        for (key, value) in self.echo.iter().chain(self.top) {
            obj.insert(key.clone(), value.clone());
        }
        obj.insert("model".into(), Value::from(self.model));
        obj.insert("output".into(), Value::Array(self.output));
        // Fields the SDK's Response type requires, when nobody said.
        obj.entry("parallel_tool_calls")
            .or_insert(Value::Bool(true));
        obj.entry("tool_choice").or_insert(Value::from("auto"));
        obj.entry("tools").or_insert(Value::Array(Vec::new()));
        obj.insert("usage".into(), self.usage.unwrap_or(Value::Null));
        if let Some(error) = self.error {
            obj.insert("error".into(), error);
        }
        if let Some(reason) = self.incomplete_reason {
            obj.insert("incomplete_details".into(), json!({ "reason": reason }));
        }
        obj
    }
}

/// What the upstream's same-protocol extensions say about the output: per-item fields,
/// per-part fields, and whole items the model has no shape for.
#[derive(Debug, Default)]
pub(crate) struct Layout {
    pub top: Map<String, Value>,
    /// `(output_index, type, fields)`.
    pub items: Vec<(usize, String, Map<String, Value>)>,
    /// `(output_index, content_index, fields)`.
    pub parts: Vec<(usize, usize, Map<String, Value>)>,
    /// `(output_index, item)`, in order.
    pub opaque: Vec<(usize, Value)>,
    /// `(output_index, at)`: a reasoning item's next summary part starts at byte `at` of
    /// its thinking text, after a separator.
    pub summary_breaks: Vec<(usize, usize)>,
}

fn index_of(obj: &mut Map<String, Value>, key: &str) -> usize {
    obj.remove(key).and_then(|v| v.as_u64()).unwrap_or(0) as usize
}

impl Layout {
    pub(crate) fn read(&mut self, extensions: &Extensions) {
        let Some(fields) = extensions.for_protocol(PROTOCOL) else {
            return;
        };
        for (scope, value) in fields {
            let Value::Object(value) = value else {
                continue;
            };
            let mut value = value.clone();
            match scope.as_str() {
                "top" => self.top.extend(value),
                "item" => {
                    let index = index_of(&mut value, "output_index");
                    let kind = match value.remove("type") {
                        Some(Value::String(kind)) => kind,
                        _ => String::new(),
                    };
                    self.items.push((index, kind, value));
                }
                "part" => {
                    let index = index_of(&mut value, "output_index");
                    let content = index_of(&mut value, "content_index");
                    self.parts.push((index, content, value));
                }
                // The finished item; its announcement carries nothing more.
                "opaque_item" if value.get("added").is_none() => {
                    let index = index_of(&mut value, "output_index");
                    if let Some(item) = value.remove("item") {
                        self.opaque.push((index, item));
                    }
                }
                "summary_part" => {
                    let index = index_of(&mut value, "output_index");
                    let at = index_of(&mut value, "at");
                    self.summary_breaks.push((index, at));
                }
                _ => {}
            }
        }
    }

    fn item_fields(&self, index: usize, kind: &str) -> Option<&Map<String, Value>> {
        self.items
            .iter()
            .rev()
            .find(|(i, k, _)| *i == index && k == kind)
            .map(|(_, _, f)| f)
    }

    /// A reasoning item's thinking text split into its summary parts again (one part when
    /// the text no longer has the separators where the upstream put them).
    fn summary_parts<'t>(&self, index: usize, text: &'t str) -> Vec<&'t str> {
        let mut breaks: Vec<usize> = self
            .summary_breaks
            .iter()
            .filter(|(i, _)| *i == index)
            .map(|(_, at)| *at)
            .collect();
        breaks.sort_unstable();
        let separator = SUMMARY_SEPARATOR.len();
        let mut parts = Vec::new();
        let mut start = 0;
        for at in breaks {
            let Some(end) = at.checked_sub(separator) else {
                continue;
            };
            if end >= start && text.get(end..at) == Some(SUMMARY_SEPARATOR) {
                parts.push(&text[start..end]);
                start = at;
            }
        }
        parts.push(&text[start..]);
        parts.retain(|p| !p.is_empty());
        parts
    }

    fn part_fields(&self, index: usize, content_index: usize) -> Option<&Map<String, Value>> {
        self.parts
            .iter()
            .rev()
            .find(|(i, c, _)| *i == index && *c == content_index)
            .map(|(_, _, f)| f)
    }
}

/// One output item before its id and status are known.
enum Derived {
    Message(Vec<Value>),
    Reasoning {
        text: String,
        encrypted: Option<String>,
    },
    Call {
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// Output items from a folded response's parts: each thinking part one `reasoning` item,
/// each run of text and refusals one `message` item, each call one `function_call` item.
fn derive_items(parts: &[Part]) -> Vec<Derived> {
    let mut items: Vec<Derived> = Vec::new();
    for part in parts {
        match part {
            Part::Text { text, .. } => {
                let value =
                    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
                match items.last_mut() {
                    Some(Derived::Message(content)) => content.push(value),
                    _ => items.push(Derived::Message(vec![value])),
                }
            }
            Part::Refusal { text } => {
                let value = json!({"type": "refusal", "refusal": text});
                match items.last_mut() {
                    Some(Derived::Message(content)) => content.push(value),
                    _ => items.push(Derived::Message(vec![value])),
                }
            }
            Part::Thinking {
                text,
                signature,
                redacted,
                ..
            } => items.push(if *redacted {
                // An opaque block travels as encrypted content with no summary.
                Derived::Reasoning {
                    text: String::new(),
                    encrypted: Some(text.clone()),
                }
            } else {
                Derived::Reasoning {
                    text: text.clone(),
                    encrypted: signature.clone(),
                }
            }),
            Part::ToolCall {
                id,
                name,
                arguments,
                ..
            } => items.push(Derived::Call {
                call_id: id.clone(),
                name: name.clone(),
                arguments: arguments.clone(),
            }),
            _ => {}
        }
    }
    items
}

/// Builds a non-streaming Response object for a client of this protocol.
pub fn encode_response(response: &Response, options: &ClientOptions) -> Encoded {
    let id = response_id(&response.id);
    let mut layout = Layout::default();
    for ext in &response.extensions {
        layout.read(ext);
    }
    let (status, incomplete_reason) = status(response.finish.as_ref());
    let item_status = if status == "incomplete" {
        "incomplete"
    } else {
        "completed"
    };

    let mut derived = derive_items(&response.parts).into_iter();
    let mut opaque = layout.opaque.iter().peekable();
    let mut output = Vec::new();
    loop {
        let index = output.len();
        if let Some((_, item)) = opaque.next_if(|(i, _)| *i <= index) {
            output.push(item.clone());
            continue;
        }
        let Some(item) = derived.next() else {
            output.extend(opaque.map(|(_, item)| item.clone()));
            break;
        };
        let (kind, prefix) = match &item {
            Derived::Message(_) => ("message", "msg"),
            Derived::Reasoning { .. } => ("reasoning", "rs"),
            Derived::Call { .. } => ("function_call", "fc"),
        };
        let mut obj = Map::new();
        obj.insert("id".into(), Value::from(item_id(prefix, &id, index)));
        obj.insert("type".into(), Value::from(kind));
        if let Some(fields) = layout.item_fields(index, kind) {
            obj.extend(fields.clone());
        }
        match item {
            Derived::Message(mut content) => {
                for (content_index, part) in content.iter_mut().enumerate() {
                    if let (Some(fields), Value::Object(part)) =
                        (layout.part_fields(index, content_index), part)
                    {
                        part.extend(fields.clone());
                    }
                }
                obj.insert("status".into(), Value::from(item_status));
                obj.insert("role".into(), Value::from("assistant"));
                obj.insert("content".into(), Value::Array(content));
            }
            Derived::Reasoning { text, encrypted } => {
                let summary: Vec<Value> = layout
                    .summary_parts(index, &text)
                    .into_iter()
                    .map(|text| json!({"type": "summary_text", "text": text}))
                    .collect();
                obj.insert("summary".into(), Value::Array(summary));
                if let Some(encrypted) = encrypted {
                    obj.insert("encrypted_content".into(), Value::from(encrypted));
                }
            }
            Derived::Call {
                call_id,
                name,
                arguments,
            } => {
                obj.insert("status".into(), Value::from(item_status));
                obj.insert("arguments".into(), Value::from(arguments));
                obj.insert("call_id".into(), Value::from(call_id));
                obj.insert("name".into(), Value::from(name));
            }
        }
        output.push(Value::Object(obj));
    }

    Snapshot {
        id: &id,
        created_at: response
            .created
            .unwrap_or_else(crate::protocol::openai_chat::stream::unix_now),
        model: &response.model,
        status,
        incomplete_reason,
        error: None,
        output,
        usage: Some(
            response
                .usage
                .as_ref()
                .map(usage)
                .unwrap_or_else(|| usage(&Usage::default())),
        ),
        echo: &options.echo,
        tools: options.tools.as_ref(),
        top: &layout.top,
    }
    .into_encoded()
}

/// The error body Responses clients expect: the same envelope as Chat,
/// `{"error":{message,type,param,code}}`.
pub fn error_body(error: &Error) -> Value {
    crate::protocol::openai_chat::error_body(error)
}

/// The `code` and `message` of an error inside a stream (`error` event, `response.failed`).
/// Codex reads `code` to tell context-window, quota and rate-limit failures apart.
pub(crate) fn stream_error(error: &Error) -> (String, String) {
    let code = match error.kind() {
        ErrorKind::Upstream {
            code: Some(code), ..
        } => code.clone(),
        _ => match error.status() {
            429 => "rate_limit_exceeded".to_owned(),
            400 | 404 | 413 | 422 => "invalid_request_error".to_owned(),
            401 | 403 => "invalid_api_key".to_owned(),
            _ => "server_error".to_owned(),
        },
    };
    (code, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Message, Part};

    #[test]
    fn finish_reasons_map_to_status_and_incomplete_reason() {
        assert_eq!(status(Some(&FinishReason::EndTurn)), ("completed", None));
        assert_eq!(status(Some(&FinishReason::ToolUse)), ("completed", None));
        assert_eq!(status(None), ("completed", None));
        assert_eq!(
            status(Some(&FinishReason::MaxTokens)),
            ("incomplete", Some("max_output_tokens"))
        );
        assert_eq!(
            status(Some(&FinishReason::ContextWindowExceeded)),
            ("incomplete", Some("max_output_tokens"))
        );
        assert_eq!(
            status(Some(&FinishReason::Refusal)),
            ("incomplete", Some("content_filter"))
        );
    }

    #[test]
    fn usage_always_has_both_detail_objects() {
        let wire = usage(&Usage {
            input_tokens: 10,
            output_tokens: 5,
            reasoning_tokens: Some(3),
            ..Usage::default()
        });
        assert_eq!(
            wire,
            json!({
                "input_tokens": 10,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": 5,
                "output_tokens_details": {"reasoning_tokens": 3},
                "total_tokens": 15,
            })
        );
    }

    #[test]
    fn item_ids_are_deterministic_and_prefixed() {
        assert_eq!(item_id("fc", "resp_abc", 2), "fc_abc_2");
        assert_eq!(item_id("msg", "chatcmpl-1", 0), "msg_chatcmpl-1_0");
        assert!(response_id("").starts_with("resp_"));
        assert_eq!(response_id("resp_x"), "resp_x");
    }

    #[test]
    fn summary_parts_split_only_where_the_separator_still_is() {
        let mut layout = Layout::default();
        layout.summary_breaks.push((0, 3));
        assert_eq!(layout.summary_parts(0, "A\n\nB"), ["A", "B"]);
        // A stage changed the text: the break no longer falls on a separator.
        assert_eq!(layout.summary_parts(0, "AB\n\nC"), ["AB\n\nC"]);
        assert_eq!(layout.summary_parts(1, "A\n\nB"), ["A\n\nB"]);
    }

    #[test]
    fn foreign_reasoning_is_not_sent_and_foreign_tools_are_not_strict() {
        let mut request = Request::new(
            "m",
            vec![Message::new(
                Role::Assistant,
                vec![
                    Part::Thinking {
                        text: "from another provider".into(),
                        signature: Some("sig".into()),
                        redacted: false,
                        extensions: Extensions::default(),
                    },
                    Part::text("Hi"),
                ],
            )],
        );
        request.tools.push(Tool::Function {
            name: "f".into(),
            description: None,
            parameters: None,
            strict: None,
            extensions: Extensions::default(),
        });
        let body = encode_request(&request, "m");
        assert_eq!(
            body["input"],
            json!([{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi"}]}])
        );
        assert_eq!(
            body["tools"],
            json!([{"type": "function", "name": "f", "strict": false}])
        );
    }
}
