//! Gemini wire -> canonical model.
//!
//! # What the model holds and what stays Gemini's
//! Every model part decoded here keeps, in its Gemini [`Extensions`], the *skeleton* of
//! its wire part: the wire object minus what the model holds. A `functionCall` part
//! keeps `{"functionCall": {<id if the wire had one>, <unknown keys>}, "thoughtSignature":
//! ..}`, a `functionResponse` keeps its `name`, `id` and unknown keys, and so on. The
//! Gemini encoder starts from the skeleton, so a Gemini-to-Gemini round trip is exact,
//! while every other protocol ignores it. The same goes for the request's top level:
//! unknown keys, `safetySettings`, and the leftovers of `generationConfig`, `toolConfig`
//! and `systemInstruction` ride in the request's extensions.
//!
//! # Function-call ids
//! Gemini calls often carry no `id`, and results are matched to calls by `name` (and
//! `id` when present). The model needs ids on both sides, so:
//! - A `functionCall` without an id gets `gemini_call_<c>_<k>`: `c` is the index of its
//!   content in `contents`, `k` the index of the call among that content's calls. The same
//!   history always yields the same ids (PROTOCOLS.md pitfall 19), and the ids never reach
//!   a Gemini upstream (the skeleton holds no id, so the encoder sends none).
//! - A `functionResponse` answers the call with its `id` if it has one; otherwise the
//!   earliest unanswered call with its `name` (Gemini answers parallel calls in call
//!   order). A response that answers no call is a 400 naming the part.
//! - Calls in a *response* get `gemini_call_<responseId>_<k>` (see `stream.rs`); encoders
//!   recognise the prefix and never send such ids to a Gemini client.

use std::sync::LazyLock;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::PROTOCOL;
use super::schema::to_json_schema;
use super::stream::ChunkDecoder;
use super::thinking::{effort_for_budget, effort_for_level};
use super::types::{
    Content, CountTokensRequest, FunctionCallingConfig, FunctionDeclaration,
    GenerateContentRequest, GenerationConfig, Part as WirePart, ThinkingConfig, Tool as WireTool,
    ToolConfig,
};
use crate::Error;
use crate::model::{
    Event, Extensions, ImageSource, Message, Part, Reasoning, Request, ResponseFormat, Role,
    Sampling, Shared, Tool, ToolChoice,
};
use crate::protocol::openai_chat::ChunkError;
use crate::protocol::openai_chat::decode::parse_json;
use crate::protocol::tools_memo::{ToolsMemo, nested_in_list};

/// Prefix of every function-call id llmux makes up for Gemini calls that have none.
pub const SYNTHETIC_ID_PREFIX: &str = "gemini_call_";

/// Keys of a `functionResponse.response` object that hold the whole result as a string
/// (`output` and `error` are Google's documented convention, `result` a common one).
const RESULT_KEYS: [&str; 3] = ["output", "result", "error"];

/// Skeleton key (inside `functionResponse`) naming the key the result text was
/// unwrapped from. It stands in for `response`, which the encoder always rewrites.
pub(crate) const RESPONSE_KEY_HINT: &str = "response";

/// Parses a `generateContent` / `streamGenerateContent` body for `model` (the path's
/// `{model}`, with or without `models/`). `stream` is left false: the endpoint, not the
/// body, says whether the client streams.
pub fn decode_request(body: &[u8], model: &str) -> Result<Request, Error> {
    // The memo's path gives `None` only for a request with something wrong, which reading
    // the tools whole then names.
    decode_with_tools_memo(body, model, &TOOLS_MEMO)
        .map_or_else(|| decode_tools_whole(body, model), Ok)
}

/// The latest lists of tools of Gemini requests (see `tools_memo`): Gemini CLI sends its
/// tools with every request.
static TOOLS_MEMO: LazyLock<ToolsMemo> = LazyLock::new(ToolsMemo::default);

/// [`decode_request`] with the tools read through `memo`: a list sent before is the one
/// decoded then. `None` for a request with anything wrong.
pub(super) fn decode_with_tools_memo(
    body: &[u8],
    model: &str,
    memo: &ToolsMemo,
) -> Option<Request> {
    let wire: GenerateContentRequest<&RawValue> = crate::protocol::json_from_bytes(body).ok()?;
    let tools = |text: Option<&RawValue>| {
        // Nothing of this protocol goes out as it came: no round trip to learn.
        memo.tools_of_text(text, &mut false, |text| {
            Ok((tools_from_wire(nested_in_list(text)?)?, false))
        })
    };
    request_from_wire(wire, model, tools).ok()
}

/// [`decode_request`], the tools read whole.
pub(super) fn decode_tools_whole(body: &[u8], model: &str) -> Result<Request, Error> {
    let wire: GenerateContentRequest = parse_json(body)?;
    request_from_wire(wire, model, read_tools)
}

/// The tools of a list read whole.
fn read_tools(tools: Option<Vec<WireTool>>) -> Result<Shared<Tool>, Error> {
    tools_from_wire(tools.unwrap_or_default()).map(Shared::new)
}

/// Parses a `countTokens` body: either `contents` or a whole `generateContentRequest`.
pub fn decode_count_tokens_request(body: &[u8], model: &str) -> Result<Request, Error> {
    let wire: CountTokensRequest = parse_json(body)?;
    match (wire.generate_content_request, wire.contents) {
        (Some(request), _) => request_from_wire(request, model, read_tools),
        (None, Some(contents)) => request_from_wire(
            GenerateContentRequest {
                contents,
                ..GenerateContentRequest::default()
            },
            model,
            read_tools,
        ),
        (None, None) => Err(Error::invalid_field(
            "contents",
            "a countTokens request needs 'contents' or 'generateContentRequest'",
        )),
    }
}

/// Turns a non-streaming upstream response into the events a stream would give.
pub fn decode_response(body: &[u8]) -> Result<Vec<Event>, ChunkError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ChunkError::Garbage(format!("the response is not UTF-8: {e}")))?;
    let mut decoder = ChunkDecoder::new();
    let mut events = Vec::with_capacity(8);
    decoder.push(text, &mut events)?;
    decoder.finish_lenient(&mut events);
    Ok(events)
}

/// The model name without the `models/` resource prefix.
pub fn model_name(model: &str) -> &str {
    model.strip_prefix("models/").unwrap_or(model)
}

/// The request of `wire` for `model`, whose tools `read_tools` gives.
fn request_from_wire<T>(
    wire: GenerateContentRequest<T>,
    model: &str,
    read_tools: impl FnOnce(Option<T>) -> Result<Shared<Tool>, Error>,
) -> Result<Request, Error> {
    let GenerateContentRequest {
        contents,
        system_instruction,
        tools,
        tool_config,
        generation_config,
        safety_settings,
        mut extra,
    } = wire;
    if contents.is_empty() {
        return Err(Error::invalid_field(
            "contents",
            "'contents' must hold at least one content",
        ));
    }

    let mut calls = CallBook::default();
    let mut messages = Vec::with_capacity(contents.len());
    for (i, content) in contents.into_iter().enumerate() {
        messages.push(message_from_wire(content, i, &mut calls)?);
    }

    let mut system = Vec::new();
    if let Some(instruction) = system_instruction {
        let mut leftovers = instruction.extra;
        if let Some(role) = instruction.role {
            leftovers.insert("role".into(), Value::String(role));
        }
        for (j, part) in instruction.parts.into_iter().enumerate() {
            let path = || format!("systemInstruction.parts[{j}]");
            system.push(part_from_wire(part, &path, None, &mut calls)?);
        }
        if !leftovers.is_empty() {
            extra.insert("systemInstruction".into(), Value::Object(leftovers));
        }
    }

    let tools = read_tools(tools)?;
    let tool_choice = match tool_config {
        Some(config) => tool_choice_from_wire(config, &mut extra),
        None => None,
    };

    let mut request = Request::new(model_name(model), messages);
    request.system = system.into();
    request.tools = tools;
    request.tool_choice = tool_choice;
    if let Some(config) = generation_config {
        generation_from_wire(config, &mut request, &mut extra)?;
    }
    if let Some(settings) = safety_settings {
        let settings = serde_json::to_value(settings)
            .map_err(|e| Error::internal(format!("re-encoding safetySettings: {e}")))?;
        extra.insert("safetySettings".into(), settings);
    }
    request.extensions = Extensions::new(PROTOCOL, extra);
    Ok(request)
}

/// The calls seen so far, for matching `functionResponse` parts to them.
#[derive(Default)]
struct CallBook {
    calls: Vec<BookedCall>,
}

struct BookedCall {
    id: String,
    name: String,
    answered: bool,
}

impl CallBook {
    fn call(&mut self, id: String, name: String) {
        self.calls.push(BookedCall {
            id,
            name,
            answered: false,
        });
    }

    /// The id of the call a response answers: by id when it has one that matches, else
    /// the earliest unanswered call of that name.
    fn answer(&mut self, name: &str, id: Option<&str>) -> Option<String> {
        let by_id = id.and_then(|id| self.calls.iter().position(|c| c.id == id));
        let position = by_id.or_else(|| {
            self.calls
                .iter()
                .position(|c| !c.answered && c.name == name)
        })?;
        let call = &mut self.calls[position];
        call.answered = true;
        Some(call.id.clone())
    }
}

fn message_from_wire(
    content: Content,
    index: usize,
    calls: &mut CallBook,
) -> Result<Message, Error> {
    // Where an error is, written only for an error: formatting it for every content and
    // part cost ~450 instructions each (bench/callgrind.sh, a 100 KB agent request).
    let path = || format!("contents[{index}]");
    let mut leftovers = content.extra;
    let role = match content.role.as_deref() {
        Some("user") | None => Role::User,
        Some("model") => Role::Assistant,
        // Function results in the role older Gemini docs used; kept for the same protocol.
        Some("function") => {
            leftovers.insert("role".into(), Value::from("function"));
            Role::User
        }
        Some(other) => {
            let path = path();
            return Err(Error::invalid_field(
                format!("{path}.role"),
                format!("invalid value for '{path}.role': '{other}'; expected 'user' or 'model'"),
            ));
        }
    };
    if content.parts.is_empty() {
        let path = path();
        return Err(Error::invalid_field(
            format!("{path}.parts"),
            format!("'{path}.parts' must hold at least one part"),
        ));
    }
    let mut parts = Vec::with_capacity(content.parts.len());
    let mut call_index = 0;
    for (j, part) in content.parts.into_iter().enumerate() {
        let part_path = || format!("{}.parts[{j}]", path());
        // The id a call without one gets (only a call's is ever read).
        let synthetic = part.function_call.is_some().then(|| {
            call_index += 1;
            format!("{SYNTHETIC_ID_PREFIX}{index}_{}", call_index - 1)
        });
        parts.push(part_from_wire(part, &part_path, synthetic, calls)?);
    }
    let mut message = Message::new(role, parts);
    message.extensions = Extensions::new(PROTOCOL, leftovers);
    Ok(message)
}

/// One wire part -> one model part. `synthetic_id` names a call that carries no id; `path`
/// writes where the part is, for an error.
fn part_from_wire(
    part: WirePart,
    path: &dyn Fn() -> String,
    synthetic_id: Option<String>,
    calls: &mut CallBook,
) -> Result<Part, Error> {
    let data = part.data_fields();
    if data.len() > 1 {
        let path = path();
        return Err(Error::invalid_field(
            &path,
            format!(
                "'{path}' sets {}; a part holds exactly one of text, inlineData, fileData, \
                 functionCall, functionResponse, executableCode, codeExecutionResult",
                data.join(" and ")
            ),
        ));
    }
    // Parts the model cannot hold travel whole, as the client sent them.
    let is_image = |mime: Option<&str>| mime.is_some_and(|m| m.starts_with("image/"));
    let keep_whole = match (&part.inline_data, &part.file_data) {
        (Some(blob), _) => !is_image(Some(&blob.mime_type)),
        (None, Some(file)) => !is_image(file.mime_type.as_deref()) || file.file_uri.is_empty(),
        (None, None) => {
            !data.is_empty()
                && part.text.is_none()
                && part.function_call.is_none()
                && part.function_response.is_none()
        }
    };
    if keep_whole {
        let raw = serde_json::to_value(&part)
            .map_err(|e| Error::internal(format!("re-encoding {}: {e}", path())))?;
        return Ok(opaque(raw));
    }
    let mut found: Vec<String> = part.extra.keys().cloned().collect();
    found.extend(part.thought.map(|_| "thought".to_owned()));
    found.extend(
        part.thought_signature
            .as_ref()
            .map(|_| "thoughtSignature".to_owned()),
    );
    let WirePart {
        text,
        inline_data,
        file_data,
        function_call,
        function_response,
        thought,
        thought_signature,
        extra,
    } = part;
    // Thought text (or a thought that carries only a signature); `thought` on any other
    // kind of part is just a flag the skeleton keeps.
    let is_thought = thought == Some(true) && data.iter().all(|d| *d == "text");

    // The part's own fields the model has no slot for.
    let mut skeleton = extra;
    if let Some(thought) = thought {
        skeleton.insert("thought".into(), Value::Bool(thought));
    }
    // A thought part's signature is the model's; any other part keeps it on the part.
    let thinking_signature = if is_thought {
        thought_signature
    } else {
        if let Some(signature) = thought_signature {
            skeleton.insert("thoughtSignature".into(), Value::String(signature));
        }
        None
    };

    if let Some(text) = text {
        if is_thought {
            return Ok(thinking(text, thinking_signature, skeleton));
        }
        return Ok(Part::Text {
            text,
            extensions: Extensions::new(PROTOCOL, skeleton),
        });
    }
    if let Some(blob) = inline_data {
        if !blob.extra.is_empty() {
            skeleton.insert("inlineData".into(), Value::Object(blob.extra));
        }
        return Ok(Part::Image {
            source: ImageSource::Base64 {
                media_type: blob.mime_type,
                data: blob.data,
            },
            detail: None,
            extensions: Extensions::new(PROTOCOL, skeleton),
        });
    }
    if let Some(file) = file_data {
        let mut leftovers = file.extra;
        if let Some(mime) = file.mime_type {
            leftovers.insert("mimeType".into(), Value::String(mime));
        }
        skeleton.insert("fileData".into(), Value::Object(leftovers));
        return Ok(Part::Image {
            source: ImageSource::Url(file.file_uri),
            detail: None,
            extensions: Extensions::new(PROTOCOL, skeleton),
        });
    }
    if let Some(call) = function_call {
        if call.name.is_empty() {
            let path = path();
            return Err(Error::invalid_field(
                format!("{path}.functionCall.name"),
                format!("'{path}.functionCall.name' must not be empty"),
            ));
        }
        let arguments = match &call.args {
            None | Some(Value::Null) => "{}".to_owned(),
            Some(args @ Value::Object(_)) => args.to_string(),
            Some(_) => {
                let path = path();
                return Err(Error::invalid_field(
                    format!("{path}.functionCall.args"),
                    format!("'{path}.functionCall.args' must be a JSON object"),
                ));
            }
        };
        let mut leftovers = call.extra;
        let id = match call.id {
            Some(id) if !id.is_empty() => {
                leftovers.insert("id".into(), Value::String(id.clone()));
                id
            }
            _ => synthetic_id.unwrap_or_else(|| format!("{SYNTHETIC_ID_PREFIX}system")),
        };
        skeleton.insert("functionCall".into(), Value::Object(leftovers));
        calls.call(id.clone(), call.name.clone());
        return Ok(Part::ToolCall {
            id,
            name: call.name,
            arguments,
            extensions: Extensions::new(PROTOCOL, skeleton),
        });
    }
    if let Some(response) = function_response {
        let call_id = calls
            .answer(&response.name, response.id.as_deref())
            .ok_or_else(|| {
                let what = match &response.id {
                    Some(id) => format!("with id '{id}' or named '{}'", response.name),
                    None => format!("named '{}'", response.name),
                };
                let path = path();
                Error::invalid_field(
                    format!("{path}.functionResponse"),
                    format!(
                        "'{path}.functionResponse' answers no earlier functionCall: no call \
                         {what} is waiting for a response"
                    ),
                )
            })?;
        let mut leftovers = response.extra;
        leftovers.insert("name".into(), Value::String(response.name));
        if let Some(id) = response.id {
            leftovers.insert("id".into(), Value::String(id));
        }
        let (text, is_error, key) = result_text(response.response);
        if let Some(key) = key {
            leftovers.insert(RESPONSE_KEY_HINT.into(), Value::String(key));
        }
        skeleton.insert("functionResponse".into(), Value::Object(leftovers));
        return Ok(Part::ToolResult {
            call_id,
            content: vec![Part::text(text)],
            is_error,
            extensions: Extensions::new(PROTOCOL, skeleton),
        });
    }
    if is_thought || thinking_signature.is_some() || skeleton.contains_key("thoughtSignature") {
        // A thought part that carries only a signature.
        let signature = thinking_signature.or_else(|| {
            skeleton
                .remove("thoughtSignature")
                .and_then(|s| s.as_str().map(str::to_owned))
        });
        skeleton.insert("thought".into(), Value::Bool(true));
        return Ok(thinking(String::new(), signature, skeleton));
    }
    let path = path();
    Err(Error::invalid_field(
        &path,
        format!(
            "'{path}' is not a part llmux knows (it has {}); a part holds one of text, \
             inlineData, fileData, functionCall, functionResponse, executableCode, \
             codeExecutionResult",
            if found.is_empty() {
                "no fields".to_owned()
            } else {
                format!("only {}", found.join(", "))
            }
        ),
    ))
}

fn thinking(text: String, signature: Option<String>, skeleton: Map<String, Value>) -> Part {
    Part::Thinking {
        text,
        signature,
        redacted: false,
        extensions: Extensions::new(PROTOCOL, skeleton),
    }
}

fn opaque(raw: Value) -> Part {
    Part::Opaque {
        protocol: PROTOCOL,
        value: raw,
    }
}

/// A `functionResponse.response` as text: a lone `output`/`result`/`error` string is
/// unwrapped (and its key returned, so the same protocol wraps it back); anything else
/// is the object as JSON text. `error` marks the result as an error.
fn result_text(response: Option<Value>) -> (String, bool, Option<String>) {
    match response {
        None | Some(Value::Null) => (String::new(), false, None),
        Some(Value::String(text)) => (text, false, None),
        Some(Value::Object(obj)) => {
            if obj.len() == 1
                && let Some((key, Value::String(text))) = obj.iter().next()
                && RESULT_KEYS.contains(&key.as_str())
            {
                return (text.clone(), key == "error", Some(key.clone()));
            }
            (Value::Object(obj).to_string(), false, None)
        }
        Some(other) => (other.to_string(), false, None),
    }
}

fn tools_from_wire(tools: Vec<WireTool>) -> Result<Vec<Tool>, Error> {
    let mut out = Vec::new();
    for (i, tool) in tools.into_iter().enumerate() {
        for (j, declaration) in tool
            .function_declarations
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            out.push(function_from_wire(
                declaration,
                &format!("tools[{i}].functionDeclarations[{j}]"),
            )?);
        }
        if !tool.extra.is_empty() {
            // googleSearch, codeExecution, urlContext, retrieval, ...
            out.push(Tool::Opaque {
                protocol: PROTOCOL,
                value: Value::Object(tool.extra),
            });
        }
    }
    Ok(out)
}

fn function_from_wire(declaration: FunctionDeclaration, path: &str) -> Result<Tool, Error> {
    let FunctionDeclaration {
        name,
        description,
        parameters,
        parameters_json_schema,
        mut extra,
    } = declaration;
    if name.is_empty() {
        return Err(Error::invalid_field(
            format!("{path}.name"),
            format!("'{path}.name' must not be empty"),
        ));
    }
    let check = |schema: &Value, field: &str| {
        if schema.is_object() || schema.is_boolean() {
            Ok(())
        } else {
            Err(Error::invalid_field(
                format!("{path}.{field}"),
                format!("'{path}.{field}' must be a schema object"),
            ))
        }
    };
    // The model holds JSON Schema; the skeleton keeps the original so the same protocol
    // sends exactly what the client sent.
    let parameters = match (parameters, parameters_json_schema) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid_field(
                format!("{path}.parametersJsonSchema"),
                format!("'{path}' sets both parameters and parametersJsonSchema; send one"),
            ));
        }
        (Some(schema), None) => {
            check(&schema, "parameters")?;
            let converted = to_json_schema(&schema);
            extra.insert("parameters".into(), schema);
            Some(converted)
        }
        (None, Some(schema)) => {
            check(&schema, "parametersJsonSchema")?;
            extra.insert("parametersJsonSchema".into(), schema.clone());
            Some(schema)
        }
        (None, None) => None,
    };
    Ok(Tool::Function {
        name,
        description,
        parameters,
        strict: None,
        extensions: Extensions::new(PROTOCOL, extra),
    })
}

/// Reads `toolConfig`; its leftovers go into `extra["toolConfig"]`.
fn tool_choice_from_wire(config: ToolConfig, extra: &mut Map<String, Value>) -> Option<ToolChoice> {
    let ToolConfig {
        function_calling_config,
        extra: mut leftovers,
    } = config;
    let mut choice = None;
    if let Some(calling) = function_calling_config {
        let raw = serde_json::to_value(&calling).unwrap_or(Value::Null);
        let FunctionCallingConfig {
            mode,
            allowed_function_names,
            extra: mut calling_leftovers,
        } = calling;
        let mode = mode.map(|m| m.to_ascii_uppercase());
        let names = allowed_function_names.unwrap_or_default();
        choice = match (mode.as_deref(), names.as_slice()) {
            (None, []) => None,
            (Some("AUTO"), []) => Some(ToolChoice::Auto),
            (Some("NONE"), []) => Some(ToolChoice::None),
            (Some("ANY"), []) => Some(ToolChoice::Required),
            (Some("ANY"), [one]) => Some(ToolChoice::Tool(one.clone())),
            (Some("ANY"), _) => {
                // Several allowed names: "must call one of these". Other protocols get
                // "must call some tool"; the same protocol gets the names back.
                calling_leftovers.insert("allowedFunctionNames".into(), Value::from(names));
                Some(ToolChoice::Required)
            }
            _ => {
                // VALIDATED, names without ANY, modes we do not know: kept whole.
                calling_leftovers.clear();
                Some(ToolChoice::Opaque {
                    protocol: PROTOCOL,
                    value: raw,
                })
            }
        };
        if choice.is_none() || !calling_leftovers.is_empty() {
            leftovers.insert(
                "functionCallingConfig".into(),
                Value::Object(calling_leftovers),
            );
        }
    }
    if !leftovers.is_empty() {
        extra.insert("toolConfig".into(), Value::Object(leftovers));
    }
    choice
}

/// Reads `generationConfig` into sampling, reasoning and response format; its leftovers
/// go into `extra["generationConfig"]`.
fn generation_from_wire(
    config: GenerationConfig,
    request: &mut Request,
    extra: &mut Map<String, Value>,
) -> Result<(), Error> {
    let GenerationConfig {
        temperature,
        top_p,
        top_k,
        max_output_tokens,
        stop_sequences,
        seed,
        presence_penalty,
        frequency_penalty,
        response_mime_type,
        response_schema,
        response_json_schema,
        thinking_config,
        extra: mut leftovers,
    } = config;
    request.sampling = Sampling {
        temperature,
        top_p,
        top_k,
        max_tokens: max_output_tokens,
        stop: stop_sequences.unwrap_or_default(),
        seed,
        presence_penalty,
        frequency_penalty,
    };

    if let Some(thinking) = thinking_config {
        request.reasoning = reasoning_from_wire(thinking, &mut leftovers);
    }

    let json_mime = response_mime_type
        .as_deref()
        .is_some_and(|m| m.eq_ignore_ascii_case("application/json"));
    request.response_format = match (response_schema, response_json_schema) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid_field(
                "generationConfig.responseJsonSchema",
                "'generationConfig' sets both responseSchema and responseJsonSchema; send one",
            ));
        }
        (Some(schema), None) => {
            let converted = to_json_schema(&schema);
            leftovers.insert("responseSchema".into(), schema);
            Some(json_schema_format(converted))
        }
        (None, Some(schema)) => {
            leftovers.insert("responseJsonSchema".into(), schema.clone());
            Some(json_schema_format(schema))
        }
        (None, None) if json_mime => Some(ResponseFormat::JsonObject),
        (None, None) => match response_mime_type.as_deref() {
            Some("text/plain") => Some(ResponseFormat::Text),
            _ => None,
        },
    };
    if request.response_format.is_none()
        && let Some(mime) = response_mime_type
    {
        // text/x.enum and friends: no model equivalent.
        leftovers.insert("responseMimeType".into(), Value::String(mime));
    }
    if !leftovers.is_empty() {
        extra.insert("generationConfig".into(), Value::Object(leftovers));
    }
    Ok(())
}

fn json_schema_format(schema: Value) -> ResponseFormat {
    ResponseFormat::JsonSchema {
        name: "response".to_owned(),
        schema,
        strict: None,
        description: None,
    }
}

/// Reads `thinkingConfig` (see `thinking.rs` for the table). Its leftovers always go into
/// `leftovers["thinkingConfig"]`, even empty: that marks a request whose thinking the
/// client configured in Gemini's terms, so the encoder adds nothing of its own.
fn reasoning_from_wire(
    thinking: ThinkingConfig,
    leftovers: &mut Map<String, Value>,
) -> Option<Reasoning> {
    let ThinkingConfig {
        thinking_budget,
        include_thoughts,
        thinking_level,
        extra: mut rest,
    } = thinking;
    if let Some(include) = include_thoughts {
        rest.insert("includeThoughts".into(), Value::Bool(include));
    }
    let mut reasoning = None;
    if let Some(level) = thinking_level {
        // The level stays as a hint that the client speaks levels; the encoder rewrites
        // its value from the model's effort.
        if let Some(effort) = effort_for_level(&level) {
            reasoning = Some(Reasoning {
                effort: Some(effort),
                budget_tokens: None,
            });
        }
        rest.insert("thinkingLevel".into(), Value::String(level));
    }
    match thinking_budget {
        Some(budget) if budget >= 0 => {
            reasoning = Some(Reasoning {
                effort: effort_for_budget(budget),
                budget_tokens: Some(budget as u64),
            });
        }
        Some(dynamic) => {
            rest.insert("thinkingBudget".into(), Value::from(dynamic));
        }
        None => {}
    }
    leftovers.insert("thinkingConfig".into(), Value::Object(rest));
    reasoning
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ReasoningEffort;

    fn decode(body: serde_json::Value) -> Result<Request, Error> {
        decode_request(body.to_string().as_bytes(), "models/gemini-2.5-flash")
    }

    /// Read through the tools memo, a request decodes as reading its tools whole does, one
    /// sent again decodes no list, and what the whole read refuses (a duplicate member of a
    /// declaration too, which a `Value` would let through) the memo's path refuses.
    #[test]
    fn a_request_read_through_the_tools_memo_decodes_as_with_its_tools_read_whole() {
        let declaration = r#"{"name": "f", "description": "Runs é \"it\"",
            "parameters": {"type": "OBJECT", "properties": {"x": {"type": "STRING"}}}}"#;
        let lists = [
            "null".to_owned(),
            "[]".to_owned(),
            format!(r#"[{{"functionDeclarations": [{declaration}]}}]"#),
            format!(r#"[{{"functionDeclarations": [{declaration}]}}, {{"googleSearch": {{}}}}]"#),
            r#"[{"function_declarations": [{"name": "g", "parametersJsonSchema": {"type": "object"}}]}]"#.to_owned(),
            "5".to_owned(),
            r#"[{"functionDeclarations": [{"name": ""}]}]"#.to_owned(),
            r#"[{"functionDeclarations": [{"name": "a", "name": "b"}]}]"#.to_owned(),
            r#"[{"functionDeclarations": [{"name": "f", "parameters": 7}]}]"#.to_owned(),
        ];
        let memo = ToolsMemo::default();
        let model = "models/gemini-2.5-flash";
        let (mut decoded, mut refused) = (0, 0);
        for list in lists {
            let body = format!(
                r#"{{"contents": [{{"role": "user", "parts": [{{"text": "hi"}}]}}], "tools": {list}}}"#
            );
            let Ok(whole) = decode_tools_whole(body.as_bytes(), model) else {
                assert!(
                    decode_with_tools_memo(body.as_bytes(), model, &memo).is_none(),
                    "{body}"
                );
                refused += 1;
                continue;
            };
            decoded += 1;
            for time in ["first", "again"] {
                let lists_decoded = memo.decoded();
                let through_memo = decode_with_tools_memo(body.as_bytes(), model, &memo);
                assert_eq!(through_memo.as_ref(), Some(&whole), "{time}: {body}");
                if time == "again" {
                    assert_eq!(memo.decoded(), lists_decoded, "{body}");
                }
            }
        }
        assert_eq!((decoded, refused), (5, 4));
    }

    #[test]
    fn wrong_types_name_the_field() {
        let err = decode(serde_json::json!({
            "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
            "generationConfig": {"temperature": "hot"},
        }))
        .unwrap_err();
        assert_eq!(err.status(), 422);
        assert_eq!(err.param(), Some("generationConfig.temperature"));

        let err =
            decode(serde_json::json!({"contents": [{"role": "robot", "parts": [{"text": "x"}]}]}))
                .unwrap_err();
        assert_eq!(err.param(), Some("contents[0].role"));

        let err = decode(serde_json::json!({"contents": []})).unwrap_err();
        assert_eq!(err.param(), Some("contents"));
    }

    #[test]
    fn snake_case_field_names_are_accepted() {
        let request = decode(serde_json::json!({
            "contents": [{"role": "user", "parts": [{"inline_data": {"mime_type": "image/png", "data": "AAAA"}}]}],
            "system_instruction": {"parts": [{"text": "Be brief."}]},
            "generation_config": {"max_output_tokens": 10, "thinking_config": {"thinking_budget": 0}},
        }))
        .unwrap();
        assert_eq!(request.model, "gemini-2.5-flash");
        assert_eq!(request.sampling.max_tokens, Some(10));
        assert_eq!(request.system[0].as_text(), Some("Be brief."));
        assert!(matches!(
            &request.messages[0].parts[0],
            Part::Image { source: ImageSource::Base64 { media_type, .. }, .. } if media_type == "image/png"
        ));
        assert_eq!(
            request.reasoning,
            Some(Reasoning {
                effort: Some(ReasoningEffort::None),
                budget_tokens: Some(0)
            })
        );
    }

    #[test]
    fn a_call_after_text_is_numbered_among_calls_only() {
        let body = serde_json::json!({"contents": [
            {"role": "user", "parts": [{"text": "Weather?"}]},
            {"role": "model", "parts": [
                {"text": "Let me look."},
                {"functionCall": {"name": "get_weather", "args": {}}},
                {"text": "And once more."},
                {"functionCall": {"name": "get_weather", "args": {}}},
            ]},
        ]});
        let request = decode(body).unwrap();
        assert_eq!(
            call_ids(&request.messages[1]),
            ["gemini_call_1_0", "gemini_call_1_1"]
        );
    }

    /// The ids of a message's tool calls.
    fn call_ids(message: &Message) -> Vec<&str> {
        message
            .parts
            .iter()
            .filter_map(|p| match p {
                Part::ToolCall { id, .. } => Some(id.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_bad_system_instruction_part_is_named() {
        let body = serde_json::json!({
            "systemInstruction": {"parts": [{"text": "a"}, {"text": "b", "inlineData": {"mimeType": "image/png", "data": "AA=="}}]},
            "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        });
        let err = decode(body).unwrap_err();
        assert_eq!(err.param(), Some("systemInstruction.parts[1]"), "{err}");
    }

    #[test]
    fn synthesized_ids_are_deterministic_and_results_find_their_calls() {
        let body = serde_json::json!({"contents": [
            {"role": "user", "parts": [{"text": "Weather in Paris and Rome?"}]},
            {"role": "model", "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
            ]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"output": "18C"}}},
                {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
            ]},
        ]});
        let first = decode(body.clone()).unwrap();
        let second = decode(body).unwrap();
        assert_eq!(first.messages, second.messages);
        assert_eq!(
            call_ids(&first.messages[1]),
            ["gemini_call_1_0", "gemini_call_1_1"]
        );
        let results: Vec<(&str, Option<&str>)> = first.messages[2]
            .parts
            .iter()
            .filter_map(|p| match p {
                Part::ToolResult {
                    call_id, content, ..
                } => Some((call_id.as_str(), content[0].as_text())),
                _ => None,
            })
            .collect();
        assert_eq!(
            results,
            [
                ("gemini_call_1_0", Some("18C")),
                ("gemini_call_1_1", Some("{\"temp\":21}"))
            ]
        );
    }

    #[test]
    fn a_function_response_without_its_call_is_rejected() {
        let err = decode(serde_json::json!({"contents": [
            {"role": "model", "parts": [{"functionCall": {"name": "a", "args": {}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "b", "response": {}}}]},
        ]}))
        .unwrap_err();
        assert_eq!(err.param(), Some("contents[1].parts[0].functionResponse"));
        assert!(err.to_string().contains("named 'b'"), "{err}");
    }

    #[test]
    fn function_role_results_round_trip() {
        let body = serde_json::json!({"contents": [
            {"role": "model", "parts": [{"functionCall": {"name": "a", "args": {"x": 1}}}]},
            {"role": "function", "parts": [{"functionResponse": {"name": "a", "response": {"ok": true}}}]},
        ]});
        let request = decode(body.clone()).unwrap();
        assert_eq!(request.messages[1].role, Role::User);
        let upstream =
            crate::protocol::gemini::encode_request(&request, "gemini-2.5-flash").unwrap();
        assert_eq!(upstream["contents"], body["contents"]);
    }

    #[test]
    fn an_error_result_is_marked() {
        let request = decode(serde_json::json!({"contents": [
            {"role": "model", "parts": [{"functionCall": {"name": "a", "id": "c1"}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "a", "id": "c1", "response": {"error": "boom"}}}]},
        ]}))
        .unwrap();
        assert!(matches!(
            &request.messages[1].parts[0],
            Part::ToolResult { call_id, is_error: true, .. } if call_id == "c1"
        ));
    }

    #[test]
    fn unknown_parts_and_double_data_are_rejected() {
        let err = decode(serde_json::json!({"contents": [
            {"role": "user", "parts": [{"text": "hi"}, {"type": "image_url", "image_url": {"url": "x"}}]},
        ]}))
        .unwrap_err();
        assert_eq!(err.param(), Some("contents[0].parts[1]"));
        assert!(err.to_string().contains("image_url"), "{err}");

        let err = decode(serde_json::json!({"contents": [
            {"role": "user", "parts": [{"text": "hi", "functionCall": {"name": "f"}}]},
        ]}))
        .unwrap_err();
        assert_eq!(err.param(), Some("contents[0].parts[0]"));
        assert!(err.to_string().contains("text and functionCall"), "{err}");
    }

    #[test]
    fn thinking_levels_and_budgets_read_as_reasoning() {
        let level = decode(serde_json::json!({
            "contents": [{"parts": [{"text": "hi"}]}],
            "generationConfig": {"thinkingConfig": {"thinkingLevel": "HIGH", "includeThoughts": true}},
        }))
        .unwrap();
        assert_eq!(
            level.reasoning,
            Some(Reasoning {
                effort: Some(ReasoningEffort::High),
                budget_tokens: None
            })
        );
        let dynamic = decode(serde_json::json!({
            "contents": [{"parts": [{"text": "hi"}]}],
            "generationConfig": {"thinkingConfig": {"thinkingBudget": -1}},
        }))
        .unwrap();
        assert_eq!(dynamic.reasoning, None);
        let budget = decode(serde_json::json!({
            "contents": [{"parts": [{"text": "hi"}]}],
            "generationConfig": {"thinkingConfig": {"thinkingBudget": 4096}},
        }))
        .unwrap();
        assert_eq!(
            budget.reasoning,
            Some(Reasoning {
                effort: Some(ReasoningEffort::Medium),
                budget_tokens: Some(4096)
            })
        );
    }

    #[test]
    fn tool_config_modes_read_as_tool_choice() {
        let choice = |config: serde_json::Value| {
            decode(serde_json::json!({
                "contents": [{"parts": [{"text": "hi"}]}],
                "toolConfig": {"functionCallingConfig": config},
            }))
            .unwrap()
            .tool_choice
        };
        assert_eq!(
            choice(serde_json::json!({"mode": "AUTO"})),
            Some(ToolChoice::Auto)
        );
        assert_eq!(
            choice(serde_json::json!({"mode": "NONE"})),
            Some(ToolChoice::None)
        );
        assert_eq!(
            choice(serde_json::json!({"mode": "ANY"})),
            Some(ToolChoice::Required)
        );
        assert_eq!(
            choice(serde_json::json!({"mode": "ANY", "allowedFunctionNames": ["f"]})),
            Some(ToolChoice::Tool("f".into()))
        );
        assert_eq!(
            choice(serde_json::json!({"mode": "ANY", "allowedFunctionNames": ["f", "g"]})),
            Some(ToolChoice::Required)
        );
        assert!(matches!(
            choice(serde_json::json!({"mode": "VALIDATED"})),
            Some(ToolChoice::Opaque { .. })
        ));
    }

    #[test]
    fn count_tokens_takes_contents_or_a_whole_request() {
        let request = decode_count_tokens_request(
            br#"{"contents":[{"parts":[{"text":"hi"}]}]}"#,
            "gemini-2.5-flash",
        )
        .unwrap();
        assert_eq!(request.last_user_text().as_deref(), Some("hi"));
        let request = decode_count_tokens_request(
            br#"{"generateContentRequest":{"model":"models/gemini-2.5-flash","contents":[{"parts":[{"text":"yo"}]}]}}"#,
            "gemini-2.5-flash",
        )
        .unwrap();
        assert_eq!(request.last_user_text().as_deref(), Some("yo"));
        assert!(decode_count_tokens_request(b"{}", "m").is_err());
    }
}
