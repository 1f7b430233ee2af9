//! Canonical model -> Anthropic Messages wire.

use serde_json::{Map, Value, json};

use super::SYNTHETIC_SIGNATURE;
use super::json_tool::JSON_RESPONSE_TOOL;
use crate::Error;
use crate::model::{
    Extensions, FinishReason, ImageSource, Message, Part, Protocol, Request, Response,
    ResponseBuilder, ResponseFormat, Role, Tool, ToolChoice, Usage,
};
use crate::protocol::tools_out::{Encoded, ToolsOut, encoded, put_tools};

const PROTOCOL: Protocol = Protocol::Anthropic;

/// The output cap sent when the client named none: Anthropic requires one.
pub const DEFAULT_MAX_TOKENS: u64 = 8192;

fn ext_or_empty(extensions: &Extensions) -> Map<String, Value> {
    extensions
        .for_protocol(PROTOCOL)
        .cloned()
        .unwrap_or_default()
}

/// The tools this encoder wrote lately (see `tools_out`).
static TOOLS_OUT: ToolsOut = ToolsOut::new();

/// Builds the upstream request body for `model`.
pub fn encode_request(request: &Request, model: &str) -> Value {
    encode(request, model, None).body
}

/// [`encode_request`], with the tools written as the text written for the same shared
/// list before: the body to send.
pub fn encode_request_body(request: &Request, model: &str) -> Encoded {
    encode(request, model, Some(&TOOLS_OUT))
}

fn encode(request: &Request, model: &str, tools_out: Option<&ToolsOut>) -> Encoded {
    let mut body = ext_or_empty(&request.extensions);
    body.insert("model".into(), Value::from(model));

    let system = encode_system(request);
    if !system.is_empty() {
        let plain = system.len() == 1 && system[0].as_object().is_some_and(|b| b.len() == 2);
        let value = if plain {
            system[0]["text"].clone()
        } else {
            Value::Array(system)
        };
        body.insert("system".into(), value);
    }
    body.insert("messages".into(), Value::Array(encode_messages(request)));

    let budget = request
        .reasoning
        .as_ref()
        .and_then(|r| r.effective_budget())
        .filter(|b| *b > 0);
    let mut max_tokens = request.sampling.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
    if let Some(budget) = budget {
        // Anthropic wants at least 1,024 thinking tokens and a cap above the budget.
        let budget = budget.max(1024);
        if max_tokens <= budget {
            max_tokens = budget.saturating_add(DEFAULT_MAX_TOKENS);
        }
        body.insert(
            "thinking".into(),
            json!({"type": "enabled", "budget_tokens": budget}),
        );
    } else if request
        .reasoning
        .as_ref()
        .is_some_and(|r| r.effective_budget() == Some(0))
    {
        body.insert("thinking".into(), json!({"type": "disabled"}));
    }
    body.insert("max_tokens".into(), Value::from(max_tokens));

    let sampling = &request.sampling;
    // With thinking on, Anthropic accepts neither a temperature other than 1 nor top_k.
    if budget.is_none() {
        if let Some(t) = sampling.temperature {
            body.insert("temperature".into(), Value::from(t));
        }
        if let Some(k) = sampling.top_k {
            body.insert("top_k".into(), Value::from(k));
        }
    }
    if let Some(p) = sampling.top_p {
        body.insert("top_p".into(), Value::from(p));
    }
    if !sampling.stop.is_empty() {
        body.insert("stop_sequences".into(), Value::from(sampling.stop.clone()));
    }

    let mut tool_choice = encode_tool_choice(request);
    let mut tools_text = None;
    // Anthropic has no response schema: a JSON answer is asked for as a call to a tool
    // whose input schema is the requested one (structured output turns the call back into
    // text). Thinking forbids forcing a tool, so then the tool is only offered.
    if let Some(ResponseFormat::JsonSchema {
        schema,
        description,
        ..
    }) = &request.response_format
    {
        let mut tools: Vec<Value> = request.tools.iter().filter_map(encode_tool).collect();
        tools.push(json!({
            "name": JSON_RESPONSE_TOOL,
            "description": description.clone().unwrap_or_else(|| {
                "Give the final answer as this tool's input.".to_owned()
            }),
            "input_schema": schema,
        }));
        tool_choice = Some(if budget.is_some() {
            json!({"type": "auto"})
        } else {
            json!({"type": "tool", "name": JSON_RESPONSE_TOOL})
        });
        body.insert("tools".into(), Value::Array(tools));
    } else {
        tools_text = put_tools(&mut body, &request.tools, tools_out, encode_tool);
    }
    if let Some(choice) = tool_choice {
        body.insert("tool_choice".into(), choice);
    }
    if let Some(user) = &request.client.user {
        let metadata = body
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(metadata) = metadata {
            metadata.insert("user_id".into(), Value::from(user.as_str()));
        }
    }
    if request.stream {
        body.insert("stream".into(), Value::Bool(true));
    } else {
        body.remove("stream");
    }
    encoded(body, tools_text)
}

/// Whether the client opted into system messages in the middle of the conversation
/// (Claude Code's `mid-conversation-system-*` beta); without it Anthropic accepts system
/// text only in `system`.
fn keeps_system_messages(request: &Request) -> bool {
    match &request.client.protocol_headers {
        Some((PROTOCOL, headers)) => headers.iter().any(|(name, value)| {
            name == "anthropic-beta"
                && value
                    .split(',')
                    .any(|beta| beta.trim().starts_with("mid-conversation-system"))
        }),
        _ => false,
    }
}

/// System text from the request's system parts and any system or developer messages
/// (Anthropic has one system slot, so messages in the middle move to the front unless the
/// client opted into keeping them in place).
fn encode_system(request: &Request) -> Vec<Value> {
    let hoist = !keeps_system_messages(request);
    let parts = request.system.iter().chain(
        request
            .messages
            .iter()
            .filter(|m| hoist && matches!(m.role, Role::System | Role::Developer))
            .flat_map(|m| m.parts.iter()),
    );
    parts
        .filter_map(|part| match part {
            Part::Text { text, extensions } => {
                let mut block = ext_or_empty(extensions);
                block.insert("type".into(), Value::from("text"));
                block.insert("text".into(), Value::from(text.as_str()));
                Some(Value::Object(block))
            }
            _ => None,
        })
        .collect()
}

/// One wire message being assembled: consecutive turns of a role merge into one.
struct Turn {
    role: Role,
    blocks: Vec<Value>,
    fields: Map<String, Value>,
    /// Plain text may go out as a string (the client did not send blocks).
    as_string: bool,
}

impl Turn {
    fn into_wire(mut self) -> Value {
        if self.role == Role::User {
            // Anthropic wants every tool_use answered at the start of the next user turn.
            self.blocks
                .sort_by_key(|b| b.get("type") != Some(&Value::from("tool_result")));
        }
        let only_plain_text = self.blocks.len() == 1
            && self.blocks[0].get("type") == Some(&Value::from("text"))
            && self.blocks[0].as_object().is_some_and(|b| b.len() == 2);
        let role = match self.role {
            Role::User => "user",
            Role::System => "system",
            _ => "assistant",
        };
        self.fields.insert("role".into(), Value::from(role));
        let content = if self.as_string && only_plain_text {
            self.blocks[0]["text"].clone()
        } else {
            Value::Array(self.blocks)
        };
        self.fields.insert("content".into(), content);
        Value::Object(self.fields)
    }
}

fn encode_messages(request: &Request) -> Vec<Value> {
    let keep_system = keeps_system_messages(request);
    let mut turns: Vec<Turn> = Vec::new();
    for message in &request.messages {
        let role = match message.role {
            Role::System | Role::Developer if keep_system => Role::System,
            Role::System | Role::Developer => continue,
            Role::User | Role::Tool => Role::User,
            Role::Assistant => Role::Assistant,
        };
        let blocks = encode_blocks(message);
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some(last) if last.role == role => last.blocks.extend(blocks),
            _ => turns.push(Turn {
                role,
                blocks,
                fields: ext_or_empty(&message.extensions),
                as_string: message.content_as_parts != Some(PROTOCOL) && message.role != Role::Tool,
            }),
        }
    }
    turns.into_iter().map(Turn::into_wire).collect()
}

fn encode_blocks(message: &Message) -> Vec<Value> {
    message.parts.iter().filter_map(encode_block).collect()
}

fn encode_block(part: &Part) -> Option<Value> {
    let block = match part {
        Part::Text { text, extensions } => {
            if text.is_empty() {
                return None;
            }
            let mut block = ext_or_empty(extensions);
            block.insert("type".into(), Value::from("text"));
            block.insert("text".into(), Value::from(text.as_str()));
            block
        }
        Part::Image {
            source, extensions, ..
        } => {
            let mut block = ext_or_empty(extensions);
            block.insert("type".into(), Value::from("image"));
            block.insert("source".into(), encode_source(source));
            block
        }
        Part::ToolCall {
            id,
            name,
            arguments,
            extensions,
        } => {
            let mut block = ext_or_empty(extensions);
            block.insert("type".into(), Value::from("tool_use"));
            block.insert("id".into(), Value::from(id.as_str()));
            block.insert("name".into(), Value::from(name.as_str()));
            block.insert("input".into(), arguments_object(arguments));
            block
        }
        Part::ToolResult {
            call_id,
            content,
            is_error,
            extensions,
        } => {
            let mut block = ext_or_empty(extensions);
            block.insert("type".into(), Value::from("tool_result"));
            block.insert("tool_use_id".into(), Value::from(call_id.as_str()));
            let mut inner: Vec<Value> = content.iter().filter_map(encode_block).collect();
            // One plain text block is sent as a string; several stay blocks, so their
            // boundaries survive. No content at all stays absent.
            let plain_text = inner.len() == 1
                && inner[0].get("type") == Some(&Value::from("text"))
                && inner[0].as_object().is_some_and(|b| b.len() == 2);
            if plain_text {
                block.insert("content".into(), inner.remove(0)["text"].take());
            } else if !inner.is_empty() {
                block.insert("content".into(), Value::Array(inner));
            }
            if *is_error {
                block.insert("is_error".into(), Value::Bool(true));
            }
            block
        }
        Part::Thinking {
            text,
            signature,
            redacted,
            extensions,
        } => {
            // Anthropic checks signatures: only send back thinking it signed itself.
            if extensions.source != Some(PROTOCOL) {
                return None;
            }
            let mut block = ext_or_empty(extensions);
            if *redacted {
                block.insert("type".into(), Value::from("redacted_thinking"));
                block.insert("data".into(), Value::from(text.as_str()));
            } else {
                let signature = signature.as_deref()?;
                if signature == SYNTHETIC_SIGNATURE {
                    return None;
                }
                block.insert("type".into(), Value::from("thinking"));
                block.insert("thinking".into(), Value::from(text.as_str()));
                block.insert("signature".into(), Value::from(signature));
            }
            block
        }
        Part::Refusal { text } => {
            let mut block = Map::new();
            block.insert("type".into(), Value::from("text"));
            block.insert("text".into(), Value::from(text.as_str()));
            block
        }
        Part::Opaque { protocol, value } if *protocol == PROTOCOL => return Some(value.clone()),
        Part::Opaque { .. } => return None,
    };
    Some(Value::Object(block))
}

fn encode_source(source: &ImageSource) -> Value {
    match source {
        ImageSource::Url(url) => json!({"type": "url", "url": url}),
        ImageSource::Base64 { media_type, data } => {
            json!({"type": "base64", "media_type": media_type, "data": data})
        }
    }
}

/// Tool-call arguments as the object Anthropic wants. Arguments that are not a JSON
/// object (models sometimes emit broken JSON) are wrapped so nothing is lost silently.
fn arguments_object(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return Value::Object(Map::new());
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(obj)) => Value::Object(obj),
        Ok(other) => json!({"value": other}),
        Err(_) => json!({"_raw_arguments": arguments}),
    }
}

fn encode_tool(tool: &Tool) -> Option<Value> {
    match tool {
        Tool::Function {
            name,
            description,
            parameters,
            extensions,
            ..
        } => {
            let mut obj = ext_or_empty(extensions);
            obj.insert("name".into(), Value::from(name.as_str()));
            if let Some(description) = description {
                obj.insert("description".into(), Value::from(description.as_str()));
            }
            let schema = parameters
                .clone()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
            obj.insert("input_schema".into(), schema);
            Some(Value::Object(obj))
        }
        Tool::Opaque { protocol, value } if *protocol == PROTOCOL => Some(value.clone()),
        Tool::Opaque { .. } => None,
    }
}

fn encode_tool_choice(request: &Request) -> Option<Value> {
    let mut choice = match request.tool_choice.as_ref() {
        Some(ToolChoice::Auto) => json!({"type": "auto"}),
        Some(ToolChoice::Required) => json!({"type": "any"}),
        Some(ToolChoice::None) => json!({"type": "none"}),
        Some(ToolChoice::Tool(name)) => json!({"type": "tool", "name": name}),
        Some(ToolChoice::Opaque { protocol, value }) if *protocol == PROTOCOL => value.clone(),
        Some(ToolChoice::Opaque { .. }) => return None,
        None if request.parallel_tool_calls == Some(false) && !request.tools.is_empty() => {
            json!({"type": "auto"})
        }
        None => return None,
    };
    if request.parallel_tool_calls == Some(false)
        && let Value::Object(obj) = &mut choice
        && obj.get("type") != Some(&Value::from("none"))
    {
        obj.insert("disable_parallel_tool_use".into(), Value::Bool(true));
    }
    Some(choice)
}

/// The wire name of a stop reason.
pub fn stop_reason(reason: &FinishReason) -> &str {
    match reason {
        FinishReason::EndTurn => "end_turn",
        FinishReason::StopSequence => "stop_sequence",
        FinishReason::MaxTokens => "max_tokens",
        FinishReason::ToolUse => "tool_use",
        FinishReason::ContentFilter | FinishReason::Refusal => "refusal",
        FinishReason::PauseTurn => "pause_turn",
        FinishReason::ContextWindowExceeded => "model_context_window_exceeded",
        FinishReason::Other(other) => other,
    }
}

/// Usage in Anthropic's shape: input without cache reads and writes.
pub fn usage(usage: &Usage) -> Value {
    let mut obj = ext_or_empty(&usage.extensions);
    let read = usage.cached_input_tokens.unwrap_or(0);
    let written = usage.cache_creation_input_tokens.unwrap_or(0);
    obj.insert(
        "input_tokens".into(),
        Value::from(
            usage
                .input_tokens
                .saturating_sub(read.saturating_add(written)),
        ),
    );
    obj.insert("cache_creation_input_tokens".into(), Value::from(written));
    obj.insert("cache_read_input_tokens".into(), Value::from(read));
    obj.insert("output_tokens".into(), Value::from(usage.output_tokens));
    Value::Object(obj)
}

/// Stop reason computed from what was produced: any tool call means `tool_use`.
pub fn effective_stop(finish: Option<&FinishReason>, called_tools: bool) -> FinishReason {
    match finish {
        Some(FinishReason::EndTurn) | None if called_tools => FinishReason::ToolUse,
        Some(reason) => reason.clone(),
        None => FinishReason::EndTurn,
    }
}

/// Builds a non-streaming message body.
pub fn encode_response(response: &Response, estimated_input: u64) -> Value {
    let mut body = Map::new();
    for ext in &response.extensions {
        if let Some(Value::Object(top)) = ext.for_protocol(PROTOCOL).and_then(|e| e.get("top")) {
            body.extend(top.clone());
        }
    }
    let rebuilt = content_from_parts(&response.parts);
    let content = match original_content(response) {
        // The upstream's own blocks, fields and order, when the model's view is unchanged.
        Some(original) if content_from_parts(&fold_blocks(original)) == rebuilt => original.clone(),
        _ => {
            let mut content = rebuilt;
            for ext in &response.extensions {
                if let Some(block) = ext.for_protocol(PROTOCOL).and_then(|e| e.get("block")) {
                    content.push(block.clone());
                }
            }
            content
        }
    };
    let stop = effective_stop(response.finish.as_ref(), response.has_tool_calls());
    let usage_value = match &response.usage {
        Some(u) => usage(u),
        None => json!({"input_tokens": estimated_input, "output_tokens": 0,
                       "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}),
    };
    body.insert("id".into(), Value::from(message_id(&response.id)));
    body.insert("type".into(), Value::from("message"));
    body.insert("role".into(), Value::from("assistant"));
    body.insert("model".into(), Value::from(response.model.as_str()));
    body.insert("content".into(), Value::Array(content));
    body.insert("stop_reason".into(), Value::from(stop_reason(&stop)));
    body.insert(
        "stop_sequence".into(),
        response
            .stop_sequence
            .as_deref()
            .map_or(Value::Null, Value::from),
    );
    body.insert("usage".into(), usage_value);
    Value::Object(body)
}

/// The content array of a same-protocol upstream response, kept by `decode_response`
/// when folding it into parts would lose something.
fn original_content(response: &Response) -> Option<&Vec<Value>> {
    response
        .extensions
        .iter()
        .find_map(|ext| ext.for_protocol(PROTOCOL)?.get("content")?.as_array())
}

/// The parts an upstream content array folds into.
fn fold_blocks(content: &[Value]) -> Vec<Part> {
    let mut events = Vec::new();
    let mut index = 0;
    for block in content {
        super::decode::block_events(block.clone(), &mut index, &mut events);
    }
    let mut builder = ResponseBuilder::new();
    for event in events {
        if builder.push(event).is_err() {
            return Vec::new();
        }
    }
    builder.finish().parts
}

/// Content blocks built from the model's parts.
fn content_from_parts(parts: &[Part]) -> Vec<Value> {
    let mut content = Vec::new();
    for part in parts {
        match part {
            Part::Thinking {
                text,
                signature,
                redacted,
                ..
            } => {
                if *redacted {
                    content.push(json!({"type": "redacted_thinking", "data": text}));
                } else {
                    let signature = signature.as_deref().unwrap_or(SYNTHETIC_SIGNATURE);
                    content.push(
                        json!({"type": "thinking", "thinking": text, "signature": signature}),
                    );
                }
            }
            Part::Text { text, .. } if !text.is_empty() => {
                content.push(json!({"type": "text", "text": text}));
            }
            Part::Refusal { text } => content.push(json!({"type": "text", "text": text})),
            Part::ToolCall {
                id,
                name,
                arguments,
                ..
            } => content.push(json!({
                "type": "tool_use", "id": id, "name": name, "input": arguments_object(arguments)
            })),
            _ => {}
        }
    }
    content
}

/// Anthropic ids start with `msg_`; ids from other providers get the prefix.
pub fn message_id(id: &str) -> String {
    if id.starts_with("msg_") {
        id.to_owned()
    } else if id.is_empty() {
        format!("msg_{:016x}", fastrand::u64(..))
    } else {
        format!("msg_{id}")
    }
}

/// The error type Anthropic uses for an HTTP status.
pub fn error_type(status: u16) -> &'static str {
    match status {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        _ => "api_error",
    }
}

/// The error body Anthropic clients expect: `{"type":"error","error":{type,message}}`.
pub fn error_body(error: &Error) -> Value {
    let kind = match error.kind() {
        crate::error::ErrorKind::Upstream {
            error_type: Some(t),
            ..
        } if t.ends_with("_error") => t.clone(),
        _ => error_type(error.status()).to_owned(),
    };
    json!({"type": "error", "error": {"type": kind, "message": error.to_string()}})
}
