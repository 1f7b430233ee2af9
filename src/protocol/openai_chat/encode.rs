//! Canonical model -> Chat Completions wire.

use serde_json::{Map, Value, json};

use super::decode::REASONING_FIELD;
use crate::Error;
use crate::error::ErrorKind;
use crate::model::{
    Extensions, FinishReason, Message, Part, Protocol, Request, Response, ResponseFormat, Role,
    Tool, ToolChoice, Usage,
};
use crate::protocol::tools_out::{Encoded, ToolsOut, encoded, put_tools};

const PROTOCOL: Protocol = Protocol::OpenAiChat;

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
    let mut body = Map::new();
    let ext = request.extensions.for_protocol(PROTOCOL);
    // Unknown fields go first so that every field we set below wins over them.
    if let Some(ext) = ext {
        for (key, value) in ext {
            if key != "max_completion_tokens" && key != "stream_options" {
                body.insert(key.clone(), value.clone());
            }
        }
    }
    body.insert("model".into(), Value::from(model));
    body.insert("messages".into(), Value::Array(encode_messages(request)));

    let sampling = &request.sampling;
    insert_opt(&mut body, "temperature", sampling.temperature);
    insert_opt(&mut body, "top_p", sampling.top_p);
    if let Some(cap) = sampling.max_tokens {
        let name = match ext.map(|e| e.contains_key("max_completion_tokens")) {
            Some(true) => "max_completion_tokens",
            _ => "max_tokens",
        };
        body.insert(name.into(), Value::from(cap));
    }
    match sampling.stop.as_slice() {
        [] => {}
        [one] => {
            body.insert("stop".into(), Value::from(one.as_str()));
        }
        many => {
            body.insert("stop".into(), Value::from(many.to_vec()));
        }
    }
    insert_opt(&mut body, "seed", sampling.seed);
    insert_opt(&mut body, "presence_penalty", sampling.presence_penalty);
    insert_opt(&mut body, "frequency_penalty", sampling.frequency_penalty);

    let tools = put_tools(&mut body, &request.tools, tools_out, encode_tool);
    if let Some(choice) = request.tool_choice.as_ref().and_then(encode_tool_choice) {
        body.insert("tool_choice".into(), choice);
    }
    insert_opt(
        &mut body,
        "parallel_tool_calls",
        request.parallel_tool_calls,
    );
    if let Some(effort) = request
        .reasoning
        .as_ref()
        .and_then(|r| r.effective_effort())
    {
        body.insert("reasoning_effort".into(), Value::from(effort.as_str()));
    }
    if let Some(format) = &request.response_format {
        body.insert("response_format".into(), encode_response_format(format));
    }
    if let Some(user) = &request.client.user {
        body.insert("user".into(), Value::from(user.as_str()));
    }
    if request.stream {
        body.insert("stream".into(), Value::Bool(true));
        // Always ask for usage upstream: logs and captures need it. The client only gets
        // the usage chunk if it asked (see `ChunkEncoder`).
        let mut options = match ext.and_then(|e| e.get("stream_options")) {
            Some(Value::Object(o)) => o.clone(),
            _ => Map::new(),
        };
        options.insert("include_usage".into(), Value::Bool(true));
        body.insert("stream_options".into(), Value::Object(options));
    } else {
        body.remove("stream");
        body.remove("stream_options");
    }
    encoded(body, tools)
}

fn insert_opt<T: Into<Value>>(body: &mut Map<String, Value>, key: &str, value: Option<T>) {
    if let Some(value) = value {
        body.insert(key.into(), value.into());
    }
}

fn encode_messages(request: &Request) -> Vec<Value> {
    let mut out = Vec::with_capacity(request.messages.len() + 1);
    let system: Vec<&str> = request.system.iter().filter_map(Part::as_text).collect();
    if !system.is_empty() {
        out.push(json!({"role": "system", "content": system.join("\n\n")}));
    }
    for message in &request.messages {
        encode_message(message, &mut out);
    }
    out
}

fn encode_message(message: &Message, out: &mut Vec<Value>) {
    // Tool results become `role: tool` messages of their own, whatever role carried them
    // (Anthropic puts them in user messages), and they come before the rest.
    // A chat `role: tool` message also keeps its own unknown fields, name and content shape.
    let own = message.role == Role::Tool;
    // OpenAI takes only text in a tool message: images a tool returned (Anthropic allows
    // them) follow the tool messages in a user message of their own.
    let mut images: Vec<Value> = Vec::new();
    for part in &message.parts {
        if let Part::ToolResult {
            call_id, content, ..
        } = part
        {
            // Borrowed, not cloned: a tool result is often a request's largest text, and a
            // clone copied it once more on its way out.
            let (kept, moved): (Vec<&Part>, Vec<&Part>) = if own {
                (content.iter().collect(), Vec::new())
            } else {
                content
                    .iter()
                    .partition(|p| !matches!(p, Part::Image { .. }))
            };
            if !moved.is_empty() {
                images.push(json!({"type": "text", "text": format!("Images returned by tool call {call_id}:")}));
                images.extend(moved.into_iter().filter_map(encode_part));
            }
            let mut obj = if own {
                ext_or_empty(&message.extensions)
            } else {
                Map::new()
            };
            obj.insert("role".into(), Value::from("tool"));
            obj.insert("tool_call_id".into(), Value::from(call_id.as_str()));
            if let Some(name) = message.name.as_ref().filter(|_| own) {
                obj.insert("name".into(), Value::from(name.as_str()));
            }
            let as_parts = own && message.content_as_parts == Some(PROTOCOL);
            obj.insert("content".into(), tool_result_content(&kept, as_parts));
            out.push(Value::Object(obj));
        }
    }
    if !images.is_empty() {
        out.push(json!({"role": "user", "content": images}));
    }
    if message.role == Role::Tool {
        return;
    }

    let mut obj = match message.extensions.for_protocol(PROTOCOL) {
        Some(ext) => ext.clone(),
        None => Map::new(),
    };
    let role = match message.role {
        Role::System => "system",
        Role::Developer => "developer",
        Role::User | Role::Tool => "user",
        Role::Assistant => "assistant",
    };
    obj.insert("role".into(), Value::from(role));
    if let Some(name) = &message.name {
        obj.insert("name".into(), Value::from(name.as_str()));
    }

    let content_parts: Vec<&Part> = message
        .parts
        .iter()
        .filter(|p| {
            matches!(p, Part::Text { .. } | Part::Image { .. })
                || matches!(p, Part::Opaque { protocol, .. } if *protocol == PROTOCOL)
                || (message.role != Role::Assistant && matches!(p, Part::Refusal { .. }))
        })
        .collect();

    if message.role == Role::Assistant {
        encode_assistant_extras(message, &mut obj);
        let has_calls = obj.contains_key("tool_calls");
        let content = encode_content(&content_parts, message.content_as_parts == Some(PROTOCOL));
        match content {
            Some(content) => {
                obj.insert("content".into(), content);
            }
            None if has_calls => {
                obj.insert("content".into(), Value::Null);
            }
            None => {
                obj.insert("content".into(), Value::from(""));
            }
        }
    } else {
        let content = encode_content(&content_parts, message.content_as_parts == Some(PROTOCOL))
            .unwrap_or_else(|| Value::from(""));
        obj.insert("content".into(), content);
    }
    if message.role == Role::User && obj.get("content") == Some(&Value::from("")) {
        // A user message that only carried tool results has nothing left to say.
        if message
            .parts
            .iter()
            .all(|p| matches!(p, Part::ToolResult { .. }))
        {
            return;
        }
    }
    out.push(Value::Object(obj));
}

fn encode_assistant_extras(message: &Message, obj: &mut Map<String, Value>) {
    let mut calls = Vec::new();
    for part in &message.parts {
        match part {
            Part::ToolCall {
                id,
                name,
                arguments,
                extensions,
            } => {
                let mut function = match extensions.for_protocol(PROTOCOL) {
                    Some(ext) => ext.clone(),
                    None => Map::new(),
                };
                let call_extra = function.remove("call");
                function.insert("name".into(), Value::from(name.as_str()));
                function.insert("arguments".into(), Value::from(arguments.as_str()));
                let mut call = match call_extra {
                    Some(Value::Object(extra)) => extra,
                    _ => Map::new(),
                };
                call.insert("id".into(), Value::from(id.as_str()));
                call.insert("type".into(), Value::from("function"));
                call.insert("function".into(), Value::Object(function));
                calls.push(Value::Object(call));
            }
            Part::Refusal { text } => {
                obj.insert("refusal".into(), Value::from(text.as_str()));
            }
            // Reasoning goes back only to the protocol and field it came from: OpenAI
            // rejects it, and DeepSeek-style servers want it only where they sent it.
            Part::Thinking {
                text, extensions, ..
            } => {
                if let Some(field) = extensions
                    .for_protocol(PROTOCOL)
                    .and_then(|e| e.get(REASONING_FIELD))
                    .and_then(Value::as_str)
                {
                    obj.insert(field.to_owned(), Value::from(text.as_str()));
                }
            }
            _ => {}
        }
    }
    if !calls.is_empty() {
        obj.insert("tool_calls".into(), Value::Array(calls));
    }
}

/// Content as a string when it is only plain text and the client did not send parts.
fn encode_content(parts: &[&Part], as_parts: bool) -> Option<Value> {
    if parts.is_empty() {
        return None;
    }
    let only_text = parts
        .iter()
        .all(|p| matches!(p, Part::Text { extensions, .. } if extensions.for_protocol(PROTOCOL).is_none()));
    if only_text && !as_parts {
        let text: String = parts.iter().filter_map(|p| p.as_text()).collect();
        return Some(Value::from(text));
    }
    let encoded: Vec<Value> = parts.iter().filter_map(|p| encode_part(p)).collect();
    (!encoded.is_empty()).then_some(Value::Array(encoded))
}

fn encode_part(part: &Part) -> Option<Value> {
    match part {
        Part::Text { text, extensions } => {
            let mut obj = ext_or_empty(extensions);
            obj.insert("type".into(), Value::from("text"));
            obj.insert("text".into(), Value::from(text.as_str()));
            Some(Value::Object(obj))
        }
        Part::Image {
            source,
            detail,
            extensions,
        } => {
            let mut obj = ext_or_empty(extensions);
            let mut image = match obj.remove("image_url") {
                Some(Value::Object(image)) => image,
                _ => Map::new(),
            };
            image.insert("url".into(), Value::from(source.to_url()));
            if let Some(detail) = detail {
                image.insert("detail".into(), Value::from(detail.as_str()));
            }
            obj.insert("type".into(), Value::from("image_url"));
            obj.insert("image_url".into(), Value::Object(image));
            Some(Value::Object(obj))
        }
        Part::Refusal { text } => Some(json!({"type": "refusal", "refusal": text})),
        Part::Opaque { protocol, value } if *protocol == PROTOCOL => Some(value.clone()),
        _ => None,
    }
}

fn ext_or_empty(extensions: &Extensions) -> Map<String, Value> {
    extensions
        .for_protocol(PROTOCOL)
        .cloned()
        .unwrap_or_default()
}

fn tool_result_content(content: &[&Part], as_parts: bool) -> Value {
    encode_content(content, as_parts).unwrap_or_else(|| Value::from(""))
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
            let mut function = ext_or_empty(extensions);
            let top = function.remove("tool");
            function.insert("name".into(), Value::from(name.as_str()));
            if let Some(description) = description {
                function.insert("description".into(), Value::from(description.as_str()));
            }
            if let Some(parameters) = parameters {
                function.insert("parameters".into(), parameters.clone());
            }
            if let Some(strict) = strict {
                function.insert("strict".into(), Value::Bool(*strict));
            }
            let mut obj = match top {
                Some(Value::Object(top)) => top,
                _ => Map::new(),
            };
            obj.insert("type".into(), Value::from("function"));
            obj.insert("function".into(), Value::Object(function));
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
        ToolChoice::Tool(name) => json!({"type": "function", "function": {"name": name}}),
        ToolChoice::Opaque { protocol, value } if *protocol == PROTOCOL => value.clone(),
        ToolChoice::Opaque { .. } => return None,
    })
}

fn encode_response_format(format: &ResponseFormat) -> Value {
    match format {
        ResponseFormat::Text => json!({"type": "text"}),
        ResponseFormat::JsonObject => json!({"type": "json_object"}),
        ResponseFormat::JsonSchema {
            name,
            schema,
            strict,
            description,
        } => {
            let mut spec = Map::new();
            spec.insert("name".into(), Value::from(name.as_str()));
            if let Some(description) = description {
                spec.insert("description".into(), Value::from(description.as_str()));
            }
            spec.insert("schema".into(), schema.clone());
            if let Some(strict) = strict {
                spec.insert("strict".into(), Value::Bool(*strict));
            }
            json!({"type": "json_schema", "json_schema": spec})
        }
    }
}

/// The wire name of a finish reason.
pub fn finish_reason(reason: &FinishReason) -> &str {
    match reason {
        FinishReason::EndTurn | FinishReason::StopSequence | FinishReason::PauseTurn => "stop",
        FinishReason::MaxTokens | FinishReason::ContextWindowExceeded => "length",
        FinishReason::ToolUse => "tool_calls",
        FinishReason::ContentFilter | FinishReason::Refusal => "content_filter",
        FinishReason::Other(other) => other,
    }
}

/// Usage in OpenAI's shape; a same-protocol usage object keeps its extra details.
pub fn usage(usage: &Usage) -> Value {
    let mut obj = ext_or_empty(&usage.extensions);
    obj.insert("prompt_tokens".into(), Value::from(usage.input_tokens));
    obj.insert("completion_tokens".into(), Value::from(usage.output_tokens));
    obj.insert("total_tokens".into(), Value::from(usage.total_tokens()));
    let mut set_detail = |key: &str, field: &str, value: Option<u64>| {
        if let Some(value) = value {
            let details = obj
                .entry(key.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(details) = details {
                details.insert(field.into(), Value::from(value));
            }
        }
    };
    set_detail(
        "prompt_tokens_details",
        "cached_tokens",
        usage.cached_input_tokens,
    );
    set_detail(
        "completion_tokens_details",
        "reasoning_tokens",
        usage.reasoning_tokens,
    );
    Value::Object(obj)
}

/// Merges same-protocol extension scopes (`top`, `choice`, `message`) from a response.
pub(crate) fn merged_scopes(extensions: &[Extensions]) -> Map<String, Value> {
    let mut merged = Map::new();
    for ext in extensions {
        let Some(fields) = ext.for_protocol(PROTOCOL) else {
            continue;
        };
        for (scope, value) in fields {
            let Value::Object(value) = value else {
                continue;
            };
            let target = merged
                .entry(scope.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(target) = target else {
                continue;
            };
            for (key, v) in value {
                match (key.as_str(), target.get_mut(key), v) {
                    // Streamed logprobs arrive chunk by chunk; a folded body holds them all.
                    ("logprobs", Some(Value::Object(so_far)), Value::Object(more)) => {
                        for (list, items) in more {
                            if let (Some(Value::Array(a)), Value::Array(b)) =
                                (so_far.get_mut(list), items)
                            {
                                a.extend(b.iter().cloned());
                            } else {
                                so_far.insert(list.clone(), items.clone());
                            }
                        }
                    }
                    _ => {
                        target.insert(key.clone(), v.clone());
                    }
                }
            }
        }
    }
    merged
}

fn take_scope(scopes: &mut Map<String, Value>, scope: &str) -> Map<String, Value> {
    match scopes.remove(scope) {
        Some(Value::Object(fields)) => fields,
        _ => Map::new(),
    }
}

/// Builds a non-streaming `chat.completion` body.
pub fn encode_response(response: &Response) -> Value {
    let mut scopes = merged_scopes(&response.extensions);
    let mut message = take_scope(&mut scopes, "message");
    message.insert("role".into(), Value::from("assistant"));
    let text = response.text();
    let mut calls = Vec::new();
    let mut reasoning = String::new();
    let mut refusal: Option<String> = None;
    for part in &response.parts {
        match part {
            Part::ToolCall {
                id,
                name,
                arguments,
                ..
            } => calls.push(json!({
                "id": id,
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            })),
            Part::Thinking {
                text,
                redacted: false,
                ..
            } => reasoning.push_str(text),
            Part::Refusal { text } => refusal.get_or_insert_with(String::new).push_str(text),
            _ => {}
        }
    }
    let content = if text.is_empty() && (!calls.is_empty() || refusal.is_some()) {
        Value::Null
    } else {
        Value::from(text)
    };
    message.insert("content".into(), content);
    if !reasoning.is_empty() {
        message.insert("reasoning_content".into(), Value::from(reasoning));
    }
    if let Some(refusal) = refusal {
        message.insert("refusal".into(), Value::from(refusal));
    }
    if !calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(calls));
    }

    let finish = response
        .finish
        .clone()
        .unwrap_or(if response.has_tool_calls() {
            FinishReason::ToolUse
        } else {
            FinishReason::EndTurn
        });
    let mut choice = take_scope(&mut scopes, "choice");
    choice.insert("index".into(), Value::from(0));
    choice.insert("message".into(), Value::Object(message));
    choice.entry("logprobs").or_insert(Value::Null);
    choice.insert("finish_reason".into(), Value::from(finish_reason(&finish)));

    let mut body = take_scope(&mut scopes, "top");
    body.insert("id".into(), Value::from(response.id.as_str()));
    body.insert("object".into(), Value::from("chat.completion"));
    body.insert(
        "created".into(),
        Value::from(response.created.unwrap_or_else(super::stream::unix_now)),
    );
    body.insert("model".into(), Value::from(response.model.as_str()));
    body.insert("choices".into(), json!([choice]));
    if let Some(u) = &response.usage {
        body.insert("usage".into(), usage(u));
    }
    Value::Object(body)
}

/// The error body OpenAI clients expect: `{"error":{message,type,param,code}}`.
pub fn error_body(error: &Error) -> Value {
    let (kind, code) = error_type_and_code(error);
    json!({
        "error": {
            "message": error.to_string(),
            "type": kind,
            "param": error.param(),
            "code": code,
        }
    })
}

fn error_type_and_code(error: &Error) -> (String, Option<String>) {
    if let ErrorKind::InputLimitExceeded { .. } = error.kind() {
        return (
            "invalid_request_error".into(),
            Some("input_limit_exceeded".into()),
        );
    }
    if let ErrorKind::Upstream {
        error_type, code, ..
    } = error.kind()
        && error_type.is_some()
    {
        return (error_type.clone().unwrap_or_default(), code.clone());
    }
    let (kind, code) = match error.status() {
        400 | 422 => ("invalid_request_error", None),
        401 => ("authentication_error", Some("invalid_api_key")),
        403 => ("permission_error", None),
        404 => ("invalid_request_error", Some("model_not_found")),
        413 => ("invalid_request_error", Some("request_too_large")),
        429 => ("rate_limit_error", Some("rate_limit_exceeded")),
        503 => ("server_error", Some("backend_unavailable")),
        504 => ("server_error", Some("timeout")),
        _ => ("server_error", None),
    };
    (kind.to_owned(), code.map(str::to_owned))
}
