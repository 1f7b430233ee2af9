//! A fake Gemini API provider (the Developer API at generativelanguage.googleapis.com)
//! speaking the real wire format: shapes from https://ai.google.dev/api/generate-content
//! and ../shared/reference/PROTOCOLS.md §1.5 and §3.6.
//!
//! It serves `GET /v1beta/models`, `POST /v1beta/models/{model}:generateContent`,
//! `:streamGenerateContent` (SSE with `?alt=sse`, else the streamed JSON array) and
//! `:countTokens`. Like the real API it answers function calls without an `id`, and it
//! rejects what the real API rejects and a translator easily gets wrong: schema keywords
//! outside the OpenAPI subset in `parameters`, function responses that do not pair with
//! the calls of the turn before, empty text parts, and (on `gemini-3*` models) a call turn
//! whose first call lacks its `thoughtSignature`. Ids on calls and responses are accepted
//! (clients such as Gemini CLI make their own), so tests assert on them instead.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::{Value, json};

#[derive(Clone, Debug)]
pub enum Mode {
    /// Text; a `functionCall` (without id) when tools are offered and the history holds
    /// no `functionResponse`; a signed thought part first when
    /// `generationConfig.thinkingConfig.includeThoughts` is set.
    Normal,
    /// An error status with Google's RPC error body.
    Status(u16),
    /// A stream (or body) that ends without a `finishReason`.
    NoFinish,
    /// A prompt blocked by a safety filter: 200, `promptFeedback.blockReason`, no
    /// candidates.
    Blocked,
}

/// One request the fake received.
#[derive(Clone, Debug)]
pub struct Call {
    /// `/v1beta/models/{model}:{method}`.
    pub path: String,
    /// The raw query string, if any (`alt=sse`).
    pub query: Option<String>,
    /// The `{model}` part of the path.
    pub model: String,
    /// `generateContent`, `streamGenerateContent` or `countTokens`.
    pub method: String,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Call {
    pub fn api_key(&self) -> Option<&str> {
        self.headers
            .get("x-goog-api-key")
            .and_then(|v| v.to_str().ok())
    }
}

#[derive(Clone)]
struct Shared {
    mode: Mode,
    hits: Arc<AtomicUsize>,
    model_list_hits: Arc<AtomicUsize>,
    calls: Arc<Mutex<Vec<Call>>>,
}

pub struct FakeGemini {
    /// The host root, as the google-genai SDKs take it (llmux appends /v1beta/...).
    pub base_url: String,
    /// Requests to `generateContent` and `streamGenerateContent`.
    pub hits: Arc<AtomicUsize>,
    /// Requests to `GET /v1beta/models`.
    pub model_list_hits: Arc<AtomicUsize>,
    pub calls: Arc<Mutex<Vec<Call>>>,
}

/// The signature on the thought part.
pub const THOUGHT_SIGNATURE: &str = "c2lnLXRob3VnaHQtZmFrZQ==";
/// The signature on the function-call part (Gemini 3 puts one on the first call).
pub const CALL_SIGNATURE: &str = "c2lnLWNhbGwtZmFrZQ==";
/// The fake's answer text, as streamed pieces.
pub const TEXT_PIECES: [&str; 2] = ["Hello", " from fake Gemini."];

impl FakeGemini {
    pub async fn start(mode: Mode) -> Self {
        let shared = Shared {
            mode,
            hits: Arc::default(),
            model_list_hits: Arc::default(),
            calls: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/v1beta/models", get(models))
            .route("/v1beta/models/{target}", post(generate))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            base_url: format!("http://{addr}"),
            hits: shared.hits,
            model_list_hits: shared.model_list_hits,
            calls: shared.calls,
        }
    }

    pub fn last_call(&self) -> Call {
        self.calls
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("no request reached the fake")
    }

    pub fn all_calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    pub fn hit_count(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn models(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    shared.model_list_hits.fetch_add(1, Ordering::SeqCst);
    if headers.get("x-goog-api-key").is_none() {
        return google_error(403, None);
    }
    let entry = |name: &str, display: &str| {
        json!({
            "name": format!("models/{name}"),
            "version": "001",
            "displayName": display,
            "description": "A fake model.",
            "inputTokenLimit": 1048576,
            "outputTokenLimit": 65536,
            "supportedGenerationMethods": ["generateContent", "countTokens"],
            "temperature": 1.0,
            "topP": 0.95,
            "topK": 64,
            "maxTemperature": 2.0,
            "thinking": true
        })
    };
    axum::Json(json!({"models": [
        entry("gemini-fake-flash", "Gemini Fake Flash"),
        entry("gemini-3-fake-pro", "Gemini 3 Fake Pro"),
    ]}))
    .into_response()
}

/// Google's error envelope, with the status name and (for a bad request) the details
/// array the real API sends.
pub fn google_error_body(code: u16, message: Option<&str>) -> Value {
    let status = match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    };
    let message = message.map(str::to_owned).unwrap_or_else(|| match code {
        403 => "Method doesn't allow unregistered callers (callers without established \
                identity). Please use API Key or other form of API consumer identity to call \
                this API."
            .to_owned(),
        429 => "Resource has been exhausted (e.g. check quota).".to_owned(),
        503 => "The model is overloaded. Please try again later.".to_owned(),
        _ => format!("fake says {code}"),
    });
    let mut error = json!({"code": code, "message": message, "status": status});
    if code == 400 {
        error["details"] = json!([{
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"description": message}]
        }]);
    }
    if code == 429 {
        error["details"] = json!([{
            "@type": "type.googleapis.com/google.rpc.RetryInfo",
            "retryDelay": "7s"
        }]);
    }
    json!({ "error": error })
}

fn google_error(code: u16, message: Option<&str>) -> Response {
    (
        StatusCode::from_u16(code).unwrap(),
        axum::Json(google_error_body(code, message)),
    )
        .into_response()
}

fn bad_request(message: String) -> Response {
    google_error(400, Some(&message))
}

/// Schema keywords Gemini's `parameters` (an OpenAPI 3.0 subset) accepts; anything else
/// is "Invalid JSON payload received. Unknown name ...".
const SCHEMA_KEYS: [&str; 23] = [
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
    "$ref",
];

fn check_schema(schema: &Value, path: &str) -> Result<(), String> {
    let Some(obj) = schema.as_object() else {
        return Err(format!("{path} must be an object"));
    };
    for (key, value) in obj {
        if !SCHEMA_KEYS.contains(&key.as_str()) {
            return Err(format!(
                "Invalid JSON payload received. Unknown name \"{key}\" at '{path}': Cannot find field."
            ));
        }
        match key.as_str() {
            "type" => {
                let ok = value.as_str().is_some_and(|t| {
                    matches!(
                        t.to_ascii_uppercase().as_str(),
                        "STRING" | "NUMBER" | "INTEGER" | "BOOLEAN" | "ARRAY" | "OBJECT" | "NULL"
                    )
                });
                if !ok {
                    return Err(format!(
                        "Invalid value at '{path}.type': {value} (Gemini takes one type name)"
                    ));
                }
            }
            "properties" => {
                for (name, inner) in value.as_object().into_iter().flatten() {
                    check_schema(inner, &format!("{path}.properties[{name}]"))?;
                }
            }
            "items" => check_schema(value, &format!("{path}.items"))?,
            "anyOf" => {
                for (i, inner) in value.as_array().into_iter().flatten().enumerate() {
                    check_schema(inner, &format!("{path}.any_of[{i}]"))?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The checks the real API applies that a translator can fail.
fn validate(body: &Value, model: &str) -> Result<(), String> {
    let Some(contents) = body["contents"].as_array().filter(|c| !c.is_empty()) else {
        return Err("* GenerateContentRequest.contents: contents is not specified".into());
    };
    for (t, tool) in body["tools"].as_array().into_iter().flatten().enumerate() {
        for (d, declaration) in tool["functionDeclarations"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            if declaration["name"].as_str().is_none_or(str::is_empty) {
                return Err(format!(
                    "* GenerateContentRequest.tools[{t}].function_declarations[{d}].name: \
                     [FIELD_INVALID] Invalid function name."
                ));
            }
            if let Some(parameters) = declaration.get("parameters") {
                check_schema(
                    parameters,
                    &format!("tools[{t}].function_declarations[{d}].parameters"),
                )?;
            }
        }
    }
    if let Some(system) = body.get("systemInstruction")
        && system["parts"].as_array().is_none_or(Vec::is_empty)
    {
        return Err("* GenerateContentRequest.system_instruction.parts: must not be empty".into());
    }
    let validates_signatures = model.starts_with("gemini-3");
    // Calls waiting for a response in the turn that must come next.
    let mut open_calls: Vec<String> = Vec::new();
    for (c, content) in contents.iter().enumerate() {
        let role = content["role"].as_str().unwrap_or("user");
        if role != "user" && role != "model" {
            return Err(format!(
                "* GenerateContentRequest.contents[{c}].role: Please use a valid role: user, model."
            ));
        }
        let Some(parts) = content["parts"].as_array().filter(|p| !p.is_empty()) else {
            return Err(format!(
                "* GenerateContentRequest.contents[{c}].parts: contents.parts must not be empty."
            ));
        };
        let mut calls = Vec::new();
        let mut responses = Vec::new();
        for (p, part) in parts.iter().enumerate() {
            let path = format!("contents[{c}].parts[{p}]");
            let data = [
                "text",
                "inlineData",
                "fileData",
                "functionCall",
                "functionResponse",
            ]
            .iter()
            .filter(|k| part.get(**k).is_some())
            .count();
            if data > 1 {
                return Err(format!(
                    "* GenerateContentRequest.{path}.data: oneof field 'data' is already set"
                ));
            }
            if data == 0 && part.get("thoughtSignature").is_none() {
                return Err(format!(
                    "* GenerateContentRequest.{path}.data: required oneof field 'data' must have one initialized field"
                ));
            }
            if part.get("text").is_some_and(|t| t == "")
                && part.get("thoughtSignature").is_none()
                && parts.len() == 1
            {
                return Err(format!(
                    "* GenerateContentRequest.{path}.text: Unable to submit request because it has an empty text parameter."
                ));
            }
            if let Some(call) = part.get("functionCall") {
                if role != "model" {
                    return Err(format!("{path}: a functionCall must be in a model turn"));
                }
                if !call["args"].is_object() && !call["args"].is_null() {
                    return Err(format!(
                        "* GenerateContentRequest.{path}.function_call.args: Proto field is not repeating, cannot start list."
                    ));
                }
                if validates_signatures
                    && calls.is_empty()
                    && part.get("thoughtSignature").is_none()
                {
                    return Err(format!(
                        "Function call is missing a thought_signature in functionCall parts. This \
                         is required for tools to work correctly, and missing thought_signature \
                         may lead to degraded model performance. Additional data, function call \
                         `default_api:{}` , position {} (contents[{c}].parts[{p}]).",
                        call["name"].as_str().unwrap_or(""),
                        p + 1
                    ));
                }
                calls.push(call["name"].as_str().unwrap_or("").to_owned());
            }
            if let Some(response) = part.get("functionResponse") {
                if !response["response"].is_object() {
                    return Err(format!(
                        "* GenerateContentRequest.{path}.function_response.response: Starting an object on a scalar field"
                    ));
                }
                responses.push(response["name"].as_str().unwrap_or("").to_owned());
            }
        }
        if !responses.is_empty() {
            // "Please ensure that function response turn comes immediately after a
            // function call turn" and answers every call of it.
            let mut expected = std::mem::take(&mut open_calls);
            let mut got = responses.clone();
            expected.sort();
            got.sort();
            if expected.is_empty() || expected != got {
                return Err(format!(
                    "Please ensure that function response turn comes immediately after a \
                     function call turn. And the number of function response parts should be \
                     equal to number of function call parts of the function call turn. \
                     (contents[{c}] answers {responses:?}, the calls were {expected:?})"
                ));
            }
        } else if !open_calls.is_empty() {
            return Err(format!(
                "Please ensure that function call turn comes immediately after a user turn or \
                 after a function response turn. (contents[{c}] follows unanswered calls {open_calls:?})"
            ));
        }
        open_calls = calls;
    }
    Ok(())
}

/// The `{model}:{method}` of a path segment.
fn split_target(target: &str) -> (String, String) {
    match target.rsplit_once(':') {
        Some((model, method)) => (model.to_owned(), method.to_owned()),
        None => (target.to_owned(), String::new()),
    }
}

fn record(finish: bool, usage: &Value, model: &str, parts: Vec<Value>) -> Value {
    let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
    if finish {
        candidate["finishReason"] = json!("STOP");
        candidate["safetyRatings"] = json!([
            {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "NEGLIGIBLE"}
        ]);
    }
    json!({
        "candidates": [candidate],
        "usageMetadata": usage,
        "modelVersion": model,
        "responseId": "fake-response-1"
    })
}

async fn generate(
    State(shared): State<Shared>,
    Path(target): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (model, method) = split_target(&target);
    let parsed: Result<Value, _> = serde_json::from_slice(&body);
    shared.calls.lock().unwrap().push(Call {
        path: format!("/v1beta/models/{target}"),
        query: query.clone(),
        model: model.clone(),
        method: method.clone(),
        headers: headers.clone(),
        body: parsed.as_ref().cloned().unwrap_or(Value::Null),
    });
    if headers.get("x-goog-api-key").is_none() {
        return google_error(403, None);
    }
    let Ok(body) = parsed else {
        return bad_request("Invalid JSON payload received.".into());
    };
    if method == "countTokens" {
        let text = body.to_string();
        return axum::Json(json!({"totalTokens": (text.len() / 4).max(1)})).into_response();
    }
    let stream = match method.as_str() {
        "generateContent" => false,
        "streamGenerateContent" => true,
        _ => {
            return google_error(
                404,
                Some(&format!("Method not found: models/{model}:{method}")),
            );
        }
    };
    shared.hits.fetch_add(1, Ordering::SeqCst);
    if let Mode::Status(code) = shared.mode {
        return google_error(code, None);
    }
    if let Err(message) = validate(&body, &model) {
        return bad_request(message);
    }
    let sse = query
        .as_deref()
        .is_some_and(|q| q.split('&').any(|p| p == "alt=sse"));

    if matches!(shared.mode, Mode::Blocked) {
        let blocked = json!({
            "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
            "usageMetadata": {"promptTokenCount": 11, "totalTokenCount": 11},
            "modelVersion": model,
            "responseId": "fake-response-1"
        });
        return if stream {
            stream_records(vec![blocked], sse)
        } else {
            axum::Json(blocked).into_response()
        };
    }

    let thinking = body["generationConfig"]["thinkingConfig"]["includeThoughts"] == true;
    let answered = body["contents"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c.to_string().contains("\"functionResponse\""))
    });
    let tool = body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|t| t["functionDeclarations"][0]["name"].as_str())
        .filter(|_| !answered)
        .map(str::to_owned);

    // The parts of the answer, one record each when streaming.
    let mut parts = Vec::new();
    if thinking {
        parts.push(json!({"text": "Let me think.", "thought": true, "thoughtSignature": THOUGHT_SIGNATURE}));
    }
    match &tool {
        Some(name) => {
            parts.push(json!({"text": "Let me check."}));
            parts.push(
                json!({"functionCall": {"name": name, "args": {"city": "Paris"}},
                              "thoughtSignature": CALL_SIGNATURE}),
            );
        }
        None => {
            for piece in TEXT_PIECES {
                parts.push(json!({ "text": piece }));
            }
        }
    }
    let thoughts = if thinking { 5 } else { 0 };
    let usage_at = |candidates: u64| {
        let mut usage = json!({"promptTokenCount": 11,
            "candidatesTokenCount": candidates,
            "totalTokenCount": 11 + candidates + thoughts,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 11}]});
        if thinking {
            usage["thoughtsTokenCount"] = json!(thoughts);
        }
        usage
    };
    let finish = !matches!(shared.mode, Mode::NoFinish);

    if !stream {
        let usage = usage_at(7);
        return axum::Json(record(finish, &usage, &model, parts)).into_response();
    }
    let count = parts.len();
    let records: Vec<Value> = parts
        .into_iter()
        .enumerate()
        .map(|(i, part)| {
            let last = i + 1 == count;
            let usage = usage_at(if last { 7 } else { 1 + i as u64 });
            record(last && finish, &usage, &model, vec![part])
        })
        .collect();
    stream_records(records, sse)
}

/// Streams records as SSE (`data: ..\r\n\r\n`, no terminator) or as the JSON array
/// Gemini sends without `alt=sse`.
fn stream_records(records: Vec<Value>, sse: bool) -> Response {
    let count = records.len();
    let frames: Vec<String> = records
        .into_iter()
        .enumerate()
        .map(|(i, record)| {
            if sse {
                format!("data: {record}\r\n\r\n")
            } else {
                let open = if i == 0 { "[" } else { ",\r\n" };
                let close = if i + 1 == count { "]" } else { "" };
                format!("{open}{record}{close}")
            }
        })
        .collect();
    let stream = futures::stream::iter(
        frames
            .into_iter()
            .map(|f| Ok::<_, std::convert::Infallible>(Bytes::from(f))),
    );
    Response::builder()
        .header(
            "content-type",
            if sse {
                "text/event-stream"
            } else {
                "application/json; charset=UTF-8"
            },
        )
        .body(Body::from_stream(stream))
        .unwrap()
}
