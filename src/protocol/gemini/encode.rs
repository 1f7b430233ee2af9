//! Canonical model -> Gemini wire: the upstream request body (for a `gemini` back-end),
//! the non-streaming response body (for Gemini clients), and the error body.
//!
//! # Schemas: sanitized `parameters` by default
//! A tool's JSON Schema goes upstream as `parameters`, rewritten by
//! [`super::schema::to_gemini_parameters`] into the OpenAPI subset every Gemini API
//! version accepts (v1 and v1beta, Developer API and Vertex). `parametersJsonSchema`
//! takes plain JSON Schema but exists on v1beta only, so it is opt-in:
//! [`EncodeOptions::schema`] = [`SchemaMode::JsonSchema`] sends the client's schema
//! verbatim (recursive `$ref`s included). The same holds for `responseSchema` /
//! `responseJsonSchema`. A Gemini client's own schemas go back exactly as it sent them,
//! in the field it used.
//!
//! # Thought signatures
//! A signature belongs to the part it came on (PROTOCOLS.md pitfall 8). Requests from a
//! Gemini client keep it in each part's skeleton (see `decode.rs`). Thinking parts from
//! other protocols are not sent to Gemini (their signatures are not Gemini's and their
//! text is not Gemini's thought). A `functionCall` from another protocol has no
//! signature, so the first call of each model turn gets the placeholder Google documents
//! for foreign histories, `skip_thought_signature_validator`, on models that validate
//! signatures (Gemini 3 and later, and names we cannot date).
//!
//! In responses the signature arrives as a [`crate::model::Event::ThinkingDelta`] with
//! empty text just before the part that carried it; see [`encode_response`] for how the
//! folded parts put it back.

use serde_json::{Map, Value, json};

use super::PROTOCOL;
use super::decode::{RESPONSE_KEY_HINT, SYNTHETIC_ID_PREFIX};
use super::schema::{SchemaError, to_gemini, to_gemini_parameters};
use super::thinking::{
    budget_for_effort, effort_for_level, fit_budget, level_for_effort, uses_levels,
};
use crate::Error;
use crate::error::ErrorKind;
use crate::model::{
    Extensions, FinishReason, ImageSource, Message, Part, Reasoning, ReasoningEffort, Request,
    Response, ResponseFormat, Role, Tool, ToolChoice, Usage,
};
use crate::protocol::tools_out::{Encoded, ToolsOut, encoded, put_tools_list};

/// The documented placeholder for function calls Gemini did not produce
/// (https://ai.google.dev/gemini-api/docs/thought-signatures).
pub const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";

/// Which schema field foreign JSON Schemas go upstream in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SchemaMode {
    /// `parameters` / `responseSchema`, sanitized to the OpenAPI subset (the default).
    #[default]
    Parameters,
    /// `parametersJsonSchema` / `responseJsonSchema`, verbatim (v1beta only).
    JsonSchema,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct EncodeOptions {
    pub schema: SchemaMode,
}

/// Builds the upstream `generateContent` body for `model` with the default options.
pub fn encode_request(request: &Request, model: &str) -> Result<Value, Error> {
    encode_request_with(request, model, EncodeOptions::default())
}

/// Builds the upstream `generateContent` body for `model`. Fails only on a tool or
/// response schema Gemini cannot express (a 400 naming the schema path).
pub fn encode_request_with(
    request: &Request,
    model: &str,
    options: EncodeOptions,
) -> Result<Value, Error> {
    encode(request, model, options, None).map(|encoded| encoded.body)
}

/// The tools this encoder wrote lately with the default options (see `tools_out`): the
/// text depends on the schema mode.
static TOOLS_OUT: ToolsOut = ToolsOut::new();

/// [`encode_request`], with the tools written as the text written for the same shared
/// list before: the body to send.
pub fn encode_request_body(request: &Request, model: &str) -> Result<Encoded, Error> {
    encode(request, model, EncodeOptions::default(), Some(&TOOLS_OUT))
}

fn encode(
    request: &Request,
    model: &str,
    options: EncodeOptions,
    tools_out: Option<&ToolsOut>,
) -> Result<Encoded, Error> {
    let model = super::decode::model_name(model);
    let mut body = Map::new();
    let ext = request.extensions.for_protocol(PROTOCOL);
    let mut generation = Map::new();
    let mut tool_config = Map::new();
    let mut system_instruction = Map::new();
    if let Some(ext) = ext {
        for (key, value) in ext {
            match (key.as_str(), value) {
                ("generationConfig", Value::Object(o)) => generation = o.clone(),
                ("toolConfig", Value::Object(o)) => tool_config = o.clone(),
                ("systemInstruction", Value::Object(o)) => system_instruction = o.clone(),
                _ => {
                    body.insert(key.clone(), value.clone());
                }
            }
        }
    }

    let (contents, system_parts) = encode_contents(request, model)?;
    body.insert("contents".into(), Value::Array(contents));
    if !system_parts.is_empty() {
        system_instruction.insert("parts".into(), Value::Array(system_parts));
        body.insert(
            "systemInstruction".into(),
            Value::Object(system_instruction),
        );
    }

    let tools = put_tools_list(&mut body, &request.tools, tools_out, |tools| {
        encode_tools(tools, options)
    })?;
    if let Some(choice) = &request.tool_choice {
        encode_tool_choice(choice, &mut tool_config);
    }
    if !tool_config.is_empty() {
        body.insert("toolConfig".into(), Value::Object(tool_config));
    }

    encode_generation(request, model, options, &mut generation)?;
    if !generation.is_empty() {
        body.insert("generationConfig".into(), Value::Object(generation));
    }
    Ok(encoded(body, tools))
}

fn skeleton(extensions: &Extensions) -> Option<Map<String, Value>> {
    extensions.for_protocol(PROTOCOL).cloned()
}

/// Takes `key` out of `map` as an object (empty when absent).
fn take_object(map: &mut Map<String, Value>, key: &str) -> Map<String, Value> {
    match map.remove(key) {
        Some(Value::Object(o)) => o,
        _ => Map::new(),
    }
}

struct Turn {
    role: &'static str,
    parts: Vec<Value>,
    extensions: Map<String, Value>,
    /// Built from an OpenAI-style `role: tool` message (so it may absorb neighbours).
    from_tool: bool,
}

/// The `contents` and the system parts (the request's system, then any system or
/// developer message met in the conversation, in order).
fn encode_contents(request: &Request, model: &str) -> Result<(Vec<Value>, Vec<Value>), Error> {
    let mut system = Vec::new();
    for part in &request.system {
        if let Some(part) = request_part(part)? {
            system.push(part);
        }
    }
    // Every call's name by id, as of the message being encoded: results from other
    // protocols only name the call's id, and some clients reuse ids across turns.
    let mut names = std::collections::HashMap::new();
    let validates_signatures = !predates_signatures(model);

    let mut turns: Vec<Turn> = Vec::with_capacity(request.messages.len());
    for (i, message) in request.messages.iter().enumerate() {
        let role = match message.role {
            Role::System | Role::Developer => {
                for part in &message.parts {
                    if let Some(part) = request_part(part)? {
                        system.push(part);
                    }
                }
                continue;
            }
            Role::User | Role::Tool => "user",
            Role::Assistant => "model",
        };
        for part in &message.parts {
            if let Part::ToolCall { id, name, .. } = part {
                names.insert(id.as_str(), name.as_str());
            }
        }
        let parts = message_parts(message, i, &names, validates_signatures)?;
        if parts.is_empty() {
            continue;
        }
        let from_tool = message.role == Role::Tool;
        // Gemini wants all results of a turn's calls in one content: OpenAI sends one
        // message per result, and may follow them with a user message.
        if let Some(last) = turns.last_mut()
            && last.role == role
            && (from_tool || last.from_tool)
        {
            last.parts.extend(parts);
            last.from_tool = true;
            continue;
        }
        turns.push(Turn {
            role,
            parts,
            extensions: skeleton(&message.extensions).unwrap_or_default(),
            from_tool,
        });
    }
    let contents = turns
        .into_iter()
        .map(|turn| {
            let mut content = turn.extensions;
            content
                .entry("role")
                .or_insert_with(|| Value::from(turn.role));
            content.insert("parts".into(), Value::Array(turn.parts));
            Value::Object(content)
        })
        .collect();
    Ok((contents, system))
}

/// Gemini 1.x and 2.x ignore thought signatures on calls; later models validate them.
fn predates_signatures(model: &str) -> bool {
    model
        .strip_prefix("gemini-")
        .and_then(|rest| rest.split(['-', '.']).next())
        .and_then(|major| major.parse::<u32>().ok())
        .is_some_and(|major| major < 3)
}

fn message_parts(
    message: &Message,
    index: usize,
    names: &std::collections::HashMap<&str, &str>,
    validates_signatures: bool,
) -> Result<Vec<Value>, Error> {
    let mut out = Vec::with_capacity(message.parts.len());
    let mut first_call = true;
    for (j, part) in message.parts.iter().enumerate() {
        match part {
            Part::ToolCall {
                name,
                arguments,
                extensions,
                ..
            } => {
                // A Gemini call's skeleton holds its id (if the wire had one) and its
                // signature; another protocol's call sends neither.
                let own = skeleton(extensions);
                let foreign = own.is_none();
                let mut obj = own.unwrap_or_default();
                let mut call = take_object(&mut obj, "functionCall");
                call.insert("name".into(), Value::from(name.as_str()));
                call.insert("args".into(), arguments_object(arguments));
                obj.insert("functionCall".into(), Value::Object(call));
                if foreign && first_call && validates_signatures {
                    obj.insert("thoughtSignature".into(), Value::from(SKIP_SIGNATURE));
                }
                first_call = false;
                out.push(Value::Object(obj));
            }
            Part::ToolResult {
                call_id,
                content,
                is_error,
                extensions,
            } => {
                let mut obj = skeleton(extensions).unwrap_or_default();
                let mut response = take_object(&mut obj, "functionResponse");
                let key = match response.remove(RESPONSE_KEY_HINT) {
                    Some(Value::String(key)) => Some(key),
                    _ => None,
                };
                if !response.contains_key("name") {
                    let Some(name) = names.get(call_id.as_str()) else {
                        return Err(Error::invalid_field(
                            format!("messages[{index}].parts[{j}]"),
                            format!(
                                "the tool result for call '{call_id}' answers no earlier tool \
                                 call; Gemini matches results to calls by name"
                            ),
                        ));
                    };
                    response.insert("name".into(), Value::from(*name));
                }
                let text: String = content.iter().filter_map(Part::as_text).collect();
                response.insert(
                    "response".into(),
                    result_object(text, *is_error, key.as_deref()),
                );
                obj.insert("functionResponse".into(), Value::Object(response));
                out.push(Value::Object(obj));
                // Images in a result follow it as parts of their own.
                for inner in content {
                    if matches!(inner, Part::Image { .. })
                        && let Some(image) = request_part(inner)?
                    {
                        out.push(image);
                    }
                }
            }
            other => {
                if let Some(part) = request_part(other)? {
                    out.push(part);
                }
            }
        }
    }
    Ok(out)
}

/// A tool result as the object `functionResponse.response` must be: the key it was
/// unwrapped from; `error` for errors; the text itself when it is a JSON object;
/// otherwise `{"output": text}` (Google's convention).
fn result_object(text: String, is_error: bool, key: Option<&str>) -> Value {
    let key = match key {
        Some(key) => key,
        None if is_error => "error",
        None => {
            if let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(&text) {
                return Value::Object(obj);
            }
            "output"
        }
    };
    let mut obj = Map::new();
    obj.insert(key.to_owned(), Value::String(text));
    Value::Object(obj)
}

/// Function arguments as the object Gemini wants. Empty means `{}`; text that is not a
/// JSON object (a model's broken JSON) is wrapped as `{"_raw": text}`, never dropped.
pub(crate) fn arguments_object(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return Value::Object(Map::new());
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(obj)) => Value::Object(obj),
        _ => {
            tracing::warn!(
                arguments = %arguments.chars().take(200).collect::<String>(),
                "tool-call arguments are not a JSON object; sending them to Gemini as {{\"_raw\": ...}}"
            );
            json!({ "_raw": arguments })
        }
    }
}

/// One non-call, non-result part of a request. `None` for parts Gemini must not get.
fn request_part(part: &Part) -> Result<Option<Value>, Error> {
    Ok(Some(match part {
        Part::Text { text, extensions } => {
            let own = skeleton(extensions);
            // Gemini rejects an empty text part ("empty text parameter"); OpenAI clients
            // send `content: ""` beside tool calls. A Gemini client's own empty part
            // (carrying a signature) goes back as it came.
            if text.is_empty() && own.is_none() {
                return Ok(None);
            }
            let mut obj = own.unwrap_or_default();
            obj.insert("text".into(), Value::from(text.as_str()));
            Value::Object(obj)
        }
        Part::Image {
            source, extensions, ..
        } => image_part(source, skeleton(extensions).unwrap_or_default()),
        Part::Thinking {
            text,
            signature,
            redacted: false,
            extensions,
        } => {
            // Only Gemini's own thoughts go back to Gemini.
            let Some(mut obj) = skeleton(extensions) else {
                return Ok(None);
            };
            if !text.is_empty() {
                obj.insert("text".into(), Value::from(text.as_str()));
            }
            if let Some(signature) = signature {
                obj.insert("thoughtSignature".into(), Value::from(signature.as_str()));
            }
            Value::Object(obj)
        }
        Part::Refusal { text } => json!({ "text": text }),
        Part::Opaque { protocol, value } if *protocol == PROTOCOL => value.clone(),
        Part::Thinking { .. }
        | Part::Opaque { .. }
        | Part::ToolCall { .. }
        | Part::ToolResult { .. } => return Ok(None),
    }))
}

fn image_part(source: &ImageSource, mut obj: Map<String, Value>) -> Value {
    match source {
        ImageSource::Base64 { media_type, data } => {
            let mut blob = take_object(&mut obj, "inlineData");
            blob.insert("mimeType".into(), Value::from(media_type.as_str()));
            blob.insert("data".into(), Value::from(data.as_str()));
            obj.insert("inlineData".into(), Value::Object(blob));
        }
        ImageSource::Url(url) => {
            let mut file = take_object(&mut obj, "fileData");
            if !file.contains_key("mimeType")
                && let Some(mime) = mime_from_url(url)
            {
                file.insert("mimeType".into(), Value::from(mime));
            }
            file.insert("fileUri".into(), Value::from(url.as_str()));
            obj.insert("fileData".into(), Value::Object(file));
        }
    }
    Value::Object(obj)
}

/// The image MIME type a URL's extension names, if any.
fn mime_from_url(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let extension = path.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match extension.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "heif" => "image/heif",
        _ => return None,
    })
}

fn schema_error(prefix: &str, what: &str, err: SchemaError) -> Error {
    let param = if err.path.is_empty() {
        prefix.to_owned()
    } else {
        format!("{prefix}.{}", err.path)
    };
    Error::invalid_field(
        param.clone(),
        format!(
            "{what}: Gemini cannot take this schema at '{param}': {}",
            err.message
        ),
    )
}

fn encode_tools(tools: &[Tool], options: EncodeOptions) -> Result<Vec<Value>, Error> {
    let mut declarations = Vec::new();
    let mut others = Vec::new();
    for (i, tool) in tools.iter().enumerate() {
        match tool {
            Tool::Function {
                name,
                description,
                parameters,
                extensions,
                ..
            } => {
                let mut declaration = skeleton(extensions).unwrap_or_default();
                declaration.insert("name".into(), Value::from(name.as_str()));
                if let Some(description) = description {
                    declaration.insert("description".into(), Value::from(description.as_str()));
                }
                let has_own = declaration.contains_key("parameters")
                    || declaration.contains_key("parametersJsonSchema");
                if let (Some(schema), false) = (parameters, has_own) {
                    match options.schema {
                        SchemaMode::Parameters => {
                            let sanitized = to_gemini_parameters(schema).map_err(|e| {
                                schema_error(
                                    &format!("tools[{i}].parameters"),
                                    &format!("tool '{name}'"),
                                    e,
                                )
                            })?;
                            if let Some(sanitized) = sanitized {
                                declaration.insert("parameters".into(), sanitized);
                            }
                        }
                        SchemaMode::JsonSchema => {
                            declaration.insert("parametersJsonSchema".into(), schema.clone());
                        }
                    }
                }
                declarations.push(Value::Object(declaration));
            }
            Tool::Opaque { protocol, value } if *protocol == PROTOCOL => {
                others.push(value.clone());
            }
            Tool::Opaque { .. } => {}
        }
    }
    let mut out = Vec::with_capacity(others.len() + 1);
    if !declarations.is_empty() {
        out.push(json!({ "functionDeclarations": declarations }));
    }
    out.extend(others);
    Ok(out)
}

fn encode_tool_choice(choice: &ToolChoice, tool_config: &mut Map<String, Value>) {
    let mut calling = take_object(tool_config, "functionCallingConfig");
    match choice {
        ToolChoice::Auto => {
            calling.insert("mode".into(), Value::from("AUTO"));
        }
        ToolChoice::None => {
            calling.insert("mode".into(), Value::from("NONE"));
        }
        ToolChoice::Required => {
            calling.insert("mode".into(), Value::from("ANY"));
        }
        ToolChoice::Tool(name) => {
            calling.insert("mode".into(), Value::from("ANY"));
            calling.insert("allowedFunctionNames".into(), json!([name]));
        }
        ToolChoice::Opaque { protocol, value } if *protocol == PROTOCOL => {
            if let Value::Object(value) = value {
                calling = value.clone();
            }
        }
        ToolChoice::Opaque { .. } => {}
    }
    if !calling.is_empty() {
        tool_config.insert("functionCallingConfig".into(), Value::Object(calling));
    }
}

fn encode_generation(
    request: &Request,
    model: &str,
    options: EncodeOptions,
    generation: &mut Map<String, Value>,
) -> Result<(), Error> {
    let sampling = &request.sampling;
    let mut set = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            generation.insert(key.into(), value);
        }
    };
    set("temperature", sampling.temperature.map(Value::from));
    set("topP", sampling.top_p.map(Value::from));
    set("topK", sampling.top_k.map(Value::from));
    set("maxOutputTokens", sampling.max_tokens.map(Value::from));
    if !sampling.stop.is_empty() {
        set("stopSequences", Some(Value::from(sampling.stop.clone())));
    }
    set("seed", sampling.seed.map(Value::from));
    set(
        "presencePenalty",
        sampling.presence_penalty.map(Value::from),
    );
    set(
        "frequencyPenalty",
        sampling.frequency_penalty.map(Value::from),
    );

    encode_thinking(request.reasoning.as_ref(), model, generation);

    match &request.response_format {
        None => {}
        Some(ResponseFormat::Text) => {
            generation.remove("responseSchema");
            generation.remove("responseJsonSchema");
            generation.insert("responseMimeType".into(), Value::from("text/plain"));
        }
        Some(ResponseFormat::JsonObject) => {
            generation.remove("responseSchema");
            generation.remove("responseJsonSchema");
            generation.insert("responseMimeType".into(), Value::from("application/json"));
        }
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            generation.insert("responseMimeType".into(), Value::from("application/json"));
            let own = generation.contains_key("responseSchema")
                || generation.contains_key("responseJsonSchema");
            if !own {
                match options.schema {
                    SchemaMode::Parameters => {
                        let sanitized = to_gemini(schema).map_err(|e| {
                            schema_error("response_format.schema", "the response schema", e)
                        })?;
                        generation.insert("responseSchema".into(), sanitized);
                    }
                    SchemaMode::JsonSchema => {
                        generation.insert("responseJsonSchema".into(), schema.clone());
                    }
                }
            }
        }
    }
    Ok(())
}

/// `thinkingConfig` from the model's reasoning (table in `thinking.rs`). A Gemini
/// client's own config (its leftovers, present even when empty) is kept; only the values
/// the model holds are rewritten, in the form the client used.
fn encode_thinking(
    reasoning: Option<&Reasoning>,
    model: &str,
    generation: &mut Map<String, Value>,
) {
    let own = generation.contains_key("thinkingConfig");
    let mut thinking = take_object(generation, "thinkingConfig");
    if let Some(reasoning) = reasoning {
        let client_level = thinking
            .get("thinkingLevel")
            .and_then(Value::as_str)
            .map(str::to_owned);
        match (reasoning.budget_tokens, reasoning.effort) {
            (Some(budget), _) => {
                thinking.remove("thinkingLevel");
                // A Gemini client's budget is its own business; another protocol's is
                // fitted to what the model accepts.
                let budget = if own {
                    budget as i64
                } else {
                    fit_budget(budget as i64, model)
                };
                thinking.insert("thinkingBudget".into(), Value::from(budget));
            }
            (None, Some(effort)) => {
                if let Some(level) = client_level {
                    if effort_for_level(&level) != Some(effort) {
                        thinking.insert(
                            "thinkingLevel".into(),
                            Value::from(level_for_effort(effort, model)),
                        );
                    }
                } else if uses_levels(model) {
                    thinking.insert(
                        "thinkingLevel".into(),
                        Value::from(level_for_effort(effort, model)),
                    );
                } else {
                    let budget = fit_budget(budget_for_effort(effort), model);
                    thinking.insert("thinkingBudget".into(), Value::from(budget));
                }
            }
            (None, None) => {}
        }
        // Another protocol asked for reasoning: show it (as thought summaries), as its
        // clients expect reasoning text.
        if !own
            && reasoning.effort != Some(ReasoningEffort::None)
            && reasoning.budget_tokens != Some(0)
        {
            thinking.insert("includeThoughts".into(), Value::Bool(true));
        }
    }
    if own || !thinking.is_empty() {
        generation.insert("thinkingConfig".into(), Value::Object(thinking));
    }
}

// ---------------------------------------------------------------------------------------
// Responses

/// Gemini extension scopes on response events (see `stream.rs`): `top` (unknown
/// top-level fields), `promptFeedback`, `candidate`, `content`, `part` (unknown fields of
/// the next part), `parts` (whole parts the model has no event for), `finishReason` (the
/// exact reason when the model's is coarser).
pub(crate) fn merged_scopes(extensions: &[Extensions]) -> Map<String, Value> {
    let mut merged = Map::new();
    for ext in extensions {
        let Some(fields) = ext.for_protocol(PROTOCOL) else {
            continue;
        };
        for (scope, value) in fields {
            match (scope.as_str(), merged.get_mut(scope), value) {
                ("parts", Some(Value::Array(so_far)), Value::Array(more)) => {
                    so_far.extend(more.iter().cloned());
                }
                (_, Some(Value::Object(so_far)), Value::Object(more)) => {
                    for (k, v) in more {
                        so_far.insert(k.clone(), v.clone());
                    }
                }
                _ => {
                    merged.insert(scope.clone(), value.clone());
                }
            }
        }
    }
    merged
}

/// Whether a call id was made up by llmux (and so must not reach a Gemini client).
pub(crate) fn is_synthetic_id(id: &str) -> bool {
    id.starts_with(SYNTHETIC_ID_PREFIX)
}

/// A `functionCall` part for a client.
pub(crate) fn call_part(id: &str, name: &str, arguments: &str) -> Map<String, Value> {
    let mut call = Map::new();
    call.insert("name".into(), Value::from(name));
    call.insert("args".into(), arguments_object(arguments));
    if !id.is_empty() && !is_synthetic_id(id) {
        call.insert("id".into(), Value::from(id));
    }
    let mut part = Map::new();
    part.insert("functionCall".into(), Value::Object(call));
    part
}

/// The wire finish reason. `hint` is the exact upstream reason when the model's value
/// is a coarser one (`RECITATION` read as content filter).
pub fn finish_reason(reason: &FinishReason, hint: Option<&str>) -> String {
    match reason {
        FinishReason::EndTurn
        | FinishReason::StopSequence
        | FinishReason::ToolUse
        | FinishReason::PauseTurn => "STOP".to_owned(),
        FinishReason::MaxTokens | FinishReason::ContextWindowExceeded => "MAX_TOKENS".to_owned(),
        FinishReason::ContentFilter | FinishReason::Refusal => hint.unwrap_or("SAFETY").to_owned(),
        FinishReason::Other(other) => {
            let is_enum = !other.is_empty()
                && other
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if is_enum {
                other.clone()
            } else {
                "OTHER".to_owned()
            }
        }
    }
}

/// `usageMetadata` for a usage. A Gemini usage keeps its own details; counts the model
/// holds are rewritten from it (`candidatesTokenCount` excludes thoughts).
pub fn usage_metadata(usage: &Usage) -> Value {
    let raw = usage.extensions.for_protocol(PROTOCOL);
    let mut obj = raw.cloned().unwrap_or_default();
    let had = |key: &str| raw.is_some_and(|r| r.contains_key(key));
    let tool_use = obj
        .get("toolUsePromptTokenCount")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let reasoning = usage.reasoning_tokens.unwrap_or(0);
    obj.insert(
        "promptTokenCount".into(),
        Value::from(usage.input_tokens.saturating_sub(tool_use)),
    );
    let candidates = usage.output_tokens.saturating_sub(reasoning);
    if candidates > 0 || had("candidatesTokenCount") || raw.is_none() {
        obj.insert("candidatesTokenCount".into(), Value::from(candidates));
    }
    if reasoning > 0 || had("thoughtsTokenCount") {
        obj.insert("thoughtsTokenCount".into(), Value::from(reasoning));
    }
    if let Some(cached) = usage.cached_input_tokens
        && (cached > 0 || had("cachedContentTokenCount"))
    {
        obj.insert("cachedContentTokenCount".into(), Value::from(cached));
    }
    obj.insert("totalTokenCount".into(), Value::from(usage.total_tokens()));
    Value::Object(obj)
}

/// Builds a non-streaming `GenerateContentResponse` body.
///
/// Signatures: the fold merges a signature into the thinking part before it, so a
/// thinking part's signature moves onto the part that follows it when that part is not
/// thinking (Gemini puts signatures on the `functionCall` or final text part, not on
/// thought summaries); a signature-only thinking part does the same, and at the very end
/// becomes an empty text part with the signature, as Gemini sends it.
pub fn encode_response(response: &Response) -> Value {
    let mut scopes = merged_scopes(&response.extensions);
    let mut parts = Vec::with_capacity(response.parts.len());
    let mut carried: Option<&str> = None;
    let visible = |p: &Part| {
        !matches!(
            p,
            Part::ToolResult { .. } | Part::Thinking { redacted: true, .. }
        ) && !matches!(p, Part::Opaque { protocol, .. } if *protocol != PROTOCOL)
    };
    let output: Vec<&Part> = response.parts.iter().filter(|p| visible(p)).collect();
    for (i, part) in output.iter().enumerate() {
        let next_is_answer = output
            .get(i + 1)
            .is_some_and(|next| !matches!(next, Part::Thinking { .. }));
        let mut obj = match part {
            Part::Thinking {
                text, signature, ..
            } => {
                let signature = signature.as_deref();
                if next_is_answer {
                    carried = signature;
                    if text.is_empty() {
                        continue;
                    }
                    json_obj(json!({"text": text, "thought": true}))
                } else if text.is_empty() && output.get(i + 1).is_none() {
                    if let Some(signature) = signature {
                        parts.push(json!({"text": "", "thoughtSignature": signature}));
                    }
                    continue;
                } else {
                    let mut obj = Map::new();
                    if !text.is_empty() {
                        obj.insert("text".into(), Value::from(text.as_str()));
                    }
                    obj.insert("thought".into(), Value::Bool(true));
                    if let Some(signature) = signature {
                        obj.insert("thoughtSignature".into(), Value::from(signature));
                    }
                    parts.push(Value::Object(obj));
                    continue;
                }
            }
            Part::Text { text, .. } | Part::Refusal { text } => json_obj(json!({ "text": text })),
            Part::ToolCall {
                id,
                name,
                arguments,
                ..
            } => call_part(id, name, arguments),
            Part::Image { source, .. } => json_obj(image_part(source, Map::new())),
            Part::Opaque { value, .. } => match value {
                Value::Object(obj) => obj.clone(),
                _ => continue,
            },
            Part::ToolResult { .. } => continue,
        };
        if !matches!(part, Part::Thinking { .. })
            && let Some(signature) = carried.take()
        {
            obj.insert("thoughtSignature".into(), Value::from(signature));
        }
        parts.push(Value::Object(obj));
    }
    if let Some(Value::Array(extra_parts)) = scopes.remove("parts") {
        parts.extend(extra_parts);
    }

    let mut body = take_object(&mut scopes, "top");
    let prompt_feedback = scopes.remove("promptFeedback");
    let blocked = parts.is_empty()
        && prompt_feedback
            .as_ref()
            .is_some_and(|f| f.get("blockReason").is_some());
    if !blocked {
        let finish = response.finish.clone().unwrap_or(FinishReason::EndTurn);
        let hint = scopes
            .get("finishReason")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let mut candidate = take_object(&mut scopes, "candidate");
        if !parts.is_empty() {
            let mut content = take_object(&mut scopes, "content");
            content.insert("parts".into(), Value::Array(parts));
            content.insert("role".into(), Value::from("model"));
            candidate.insert("content".into(), Value::Object(content));
        }
        candidate.insert(
            "finishReason".into(),
            Value::from(finish_reason(&finish, hint.as_deref())),
        );
        candidate.insert("index".into(), Value::from(0));
        body.insert("candidates".into(), json!([candidate]));
    }
    if let Some(feedback) = prompt_feedback {
        body.insert("promptFeedback".into(), feedback);
    }
    if let Some(usage) = &response.usage {
        body.insert("usageMetadata".into(), usage_metadata(usage));
    }
    body.insert("modelVersion".into(), Value::from(response.model.as_str()));
    body.insert("responseId".into(), Value::from(response.id.as_str()));
    Value::Object(body)
}

fn json_obj(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(obj) => obj,
        _ => Map::new(),
    }
}

/// The `countTokens` answer.
pub fn encode_count_tokens_response(total_tokens: u64) -> Value {
    json!({ "totalTokens": total_tokens })
}

/// The error body Gemini clients expect: `{"error":{"code","message","status"}}`, with a
/// `BadRequest` field violation when the error names a field.
pub fn error_body(error: &Error) -> Value {
    let code = http_status(error);
    let mut detail = Map::new();
    detail.insert("code".into(), Value::from(code));
    detail.insert("message".into(), Value::from(error.to_string()));
    detail.insert("status".into(), Value::from(status_name(error)));
    if let Some(param) = error.param() {
        detail.insert(
            "details".into(),
            json!([{
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": param, "description": error.to_string()}],
            }]),
        );
    }
    json!({ "error": detail })
}

/// The HTTP status a Gemini client gets for an error: Google's for the status name, so
/// Anthropic's 529 "overloaded" is 503 `UNAVAILABLE` (PROTOCOLS.md §3.6).
pub fn http_status(error: &Error) -> u16 {
    match error.status() {
        529 => 503,
        status => status,
    }
}

/// Google's RPC status name for an error: an upstream Gemini error keeps its own.
pub fn status_name(error: &Error) -> String {
    if let ErrorKind::Upstream {
        error_type: Some(kind),
        ..
    } = error.kind()
        && !kind.is_empty()
        && kind.chars().all(|c| c.is_ascii_uppercase() || c == '_')
    {
        return kind.clone();
    }
    match error.status() {
        400 | 413 | 422 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        // 529: Anthropic's "overloaded".
        502 | 503 | 529 => "UNAVAILABLE",
        504 | 408 => "DEADLINE_EXCEEDED",
        400..=499 => "FAILED_PRECONDITION",
        _ => "INTERNAL",
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Message;
    use std::time::Duration;

    #[test]
    fn error_bodies_use_google_status_names() {
        let cases: [(Error, u16, &str); 8] = [
            (
                Error::invalid_field("contents", "bad"),
                422,
                "INVALID_ARGUMENT",
            ),
            (Error::unauthorized("no key"), 401, "UNAUTHENTICATED"),
            (
                ErrorKind::Upstream {
                    backend: "g".into(),
                    status: 403,
                    message: "denied".into(),
                    error_type: None,
                    code: None,
                    retry_after: None,
                }
                .into(),
                403,
                "PERMISSION_DENIED",
            ),
            (Error::not_found("no model"), 404, "NOT_FOUND"),
            (
                ErrorKind::RateLimited {
                    message: "slow down".into(),
                    retry_after: None,
                }
                .into(),
                429,
                "RESOURCE_EXHAUSTED",
            ),
            (Error::internal("boom"), 500, "INTERNAL"),
            (
                ErrorKind::BackendUnreachable {
                    backend: "g".into(),
                    message: "refused".into(),
                }
                .into(),
                503,
                "UNAVAILABLE",
            ),
            (
                ErrorKind::Timeout {
                    backend: "g".into(),
                    phase: crate::error::TimeoutPhase::FirstByte,
                    after: Duration::from_secs(1),
                }
                .into(),
                504,
                "DEADLINE_EXCEEDED",
            ),
        ];
        for (error, code, status) in cases {
            let body = error_body(&error);
            assert_eq!(body["error"]["code"], code, "{body}");
            assert_eq!(body["error"]["status"], status, "{body}");
            assert_eq!(body["error"]["message"], error.to_string());
        }
        let body = error_body(&Error::invalid_field("contents[0].role", "bad role"));
        assert_eq!(
            body["error"]["details"][0]["fieldViolations"][0]["field"],
            "contents[0].role"
        );
        let upstream: Error = ErrorKind::Upstream {
            backend: "g".into(),
            status: 400,
            message: "x".into(),
            error_type: Some("FAILED_PRECONDITION".into()),
            code: None,
            retry_after: None,
        }
        .into();
        assert_eq!(
            error_body(&upstream)["error"]["status"],
            "FAILED_PRECONDITION"
        );
    }

    #[test]
    fn foreign_calls_get_the_placeholder_signature_on_gemini_3_only() {
        let mut request = Request::new(
            "m",
            vec![
                Message::new(Role::User, vec![Part::text("hi")]),
                Message::new(
                    Role::Assistant,
                    vec![
                        Part::ToolCall {
                            id: "call_1".into(),
                            name: "f".into(),
                            arguments: "{\"a\":1}".into(),
                            extensions: Extensions::default(),
                        },
                        Part::ToolCall {
                            id: "call_2".into(),
                            name: "f".into(),
                            arguments: String::new(),
                            extensions: Extensions::default(),
                        },
                    ],
                ),
            ],
        );
        request.messages.push(Message::new(
            Role::Tool,
            vec![Part::ToolResult {
                call_id: "call_2".into(),
                content: vec![Part::text("ok")],
                is_error: false,
                extensions: Extensions::default(),
            }],
        ));
        let body = encode_request(&request, "gemini-3-pro-preview").unwrap();
        let parts = &body["contents"][1]["parts"];
        assert_eq!(parts[0]["thoughtSignature"], SKIP_SIGNATURE);
        assert!(parts[1].get("thoughtSignature").is_none());
        assert_eq!(parts[1]["functionCall"]["args"], json!({}));
        assert!(parts[0]["functionCall"].get("id").is_none());
        assert_eq!(
            body["contents"][2]["parts"][0]["functionResponse"],
            json!({"name": "f", "response": {"output": "ok"}})
        );
        let body = encode_request(&request, "gemini-2.5-flash").unwrap();
        assert!(
            body["contents"][1]["parts"][0]
                .get("thoughtSignature")
                .is_none()
        );
    }

    #[test]
    fn reused_ids_name_the_latest_call_and_empty_text_is_skipped() {
        let call = |name: &str| Part::ToolCall {
            id: "call_0".into(),
            name: name.into(),
            arguments: "{}".into(),
            extensions: Extensions::default(),
        };
        let result = || Part::ToolResult {
            call_id: "call_0".into(),
            content: vec![Part::text("done")],
            is_error: false,
            extensions: Extensions::default(),
        };
        let request = Request::new(
            "m",
            vec![
                Message::new(Role::Assistant, vec![Part::text(""), call("first")]),
                Message::new(Role::Tool, vec![result()]),
                Message::new(Role::Assistant, vec![call("second")]),
                Message::new(Role::Tool, vec![result()]),
            ],
        );
        let body = encode_request(&request, "gemini-2.5-flash").unwrap();
        assert_eq!(
            body["contents"][0]["parts"],
            json!([{"functionCall": {"name": "first", "args": {}}}])
        );
        assert_eq!(
            body["contents"][1]["parts"][0]["functionResponse"]["name"],
            "first"
        );
        assert_eq!(
            body["contents"][3]["parts"][0]["functionResponse"]["name"],
            "second"
        );
    }

    /// A list Gemini cannot take is refused each time it is sent: no text is kept for it.
    #[test]
    fn a_refused_list_of_tools_is_refused_again() {
        let mut request = Request::new("m", vec![Message::new(Role::User, vec![Part::text("hi")])]);
        request.tools = vec![Tool::Function {
            name: "f".into(),
            description: None,
            parameters: Some(json!({"type": "string"})),
            strict: None,
            extensions: Extensions::default(),
        }]
        .into();
        for time in ["first", "again"] {
            let err = encode_request_body(&request, "gemini-2.5-flash").err();
            let err = err.unwrap_or_else(|| panic!("{time}: accepted"));
            assert_eq!(
                err.param(),
                Some("tools[0].parameters.type"),
                "{time}: {err}"
            );
        }
    }

    #[test]
    fn a_result_for_an_unknown_call_is_an_error() {
        let request = Request::new(
            "m",
            vec![Message::new(
                Role::Tool,
                vec![Part::ToolResult {
                    call_id: "ghost".into(),
                    content: vec![Part::text("x")],
                    is_error: false,
                    extensions: Extensions::default(),
                }],
            )],
        );
        let err = encode_request(&request, "gemini-2.5-flash").unwrap_err();
        assert_eq!(err.param(), Some("messages[0].parts[0]"));
        assert!(err.to_string().contains("ghost"));
    }

    #[test]
    fn broken_arguments_are_wrapped_not_dropped() {
        assert_eq!(arguments_object(""), json!({}));
        assert_eq!(arguments_object("{\"a\":1}"), json!({"a": 1}));
        assert_eq!(arguments_object("{\"a\":"), json!({"_raw": "{\"a\":"}));
    }

    #[test]
    fn foreign_efforts_become_budgets_or_levels() {
        let thinking = |effort: ReasoningEffort, model: &str| {
            let mut request =
                Request::new("m", vec![Message::new(Role::User, vec![Part::text("hi")])]);
            request.reasoning = Some(Reasoning {
                effort: Some(effort),
                budget_tokens: None,
            });
            encode_request(&request, model).unwrap()["generationConfig"]["thinkingConfig"].clone()
        };
        assert_eq!(
            thinking(ReasoningEffort::Low, "gemini-2.5-flash"),
            json!({"thinkingBudget": 1024, "includeThoughts": true})
        );
        assert_eq!(
            thinking(ReasoningEffort::None, "gemini-2.5-flash"),
            json!({"thinkingBudget": 0})
        );
        assert_eq!(
            thinking(ReasoningEffort::Medium, "gemini-3-pro-preview"),
            json!({"thinkingLevel": "high", "includeThoughts": true})
        );
    }

    #[test]
    fn usage_splits_thoughts_out_of_candidates() {
        let usage = Usage {
            input_tokens: 10,
            output_tokens: 30,
            cached_input_tokens: Some(4),
            cache_creation_input_tokens: None,
            reasoning_tokens: Some(20),
            extensions: Extensions::default(),
        };
        assert_eq!(
            usage_metadata(&usage),
            json!({"promptTokenCount": 10, "candidatesTokenCount": 10, "thoughtsTokenCount": 20,
                   "cachedContentTokenCount": 4, "totalTokenCount": 40})
        );
    }
}
