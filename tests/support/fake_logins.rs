//! Fakes of the services behind the subscription logins, on one loopback server: an OAuth
//! token endpoint that rotates refresh tokens, the ChatGPT back-end the Codex CLI calls,
//! Anthropic's Messages API as it treats OAuth tokens, and Qwen's chat endpoint. Each
//! checks what the real one checks (PROVIDERS.md, "Test-design notes"): bearer tokens it
//! issued, the body format of a refresh, the Codex body rules, Claude Code's identity
//! sentence and OAuth beta, and refuses otherwise in the provider's own error shape.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Value, json};

pub const CLAUDE_CODE_IDENTITY: &str = "You are Claude Code, Anthropic's official CLI for Claude.";

/// The whole message `/v1/messages` answers, with the request's model for `MODEL`: Anthropic's
/// shape (all four usage counts), in its own key order and spacing.
pub const CLAUDE_MESSAGE: &str = r#"{"id":"msg_1","type":"message","role":"assistant","model":"MODEL",
 "content":[{"type":"text","text":"Hello from Claude."}],"stop_reason":"end_turn","stop_sequence":null,
 "usage":{"input_tokens":10,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":4}}"#;

#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
    /// The body's bytes, as they came (recorded by the ChatGPT back-end).
    pub raw: Bytes,
}

#[derive(Default)]
struct Inner {
    /// Access tokens the APIs accept.
    valid: Mutex<HashSet<String>>,
    /// Access tokens the APIs answer with 429.
    limited: Mutex<HashSet<String>>,
    /// The refresh token the endpoint accepts now; used ones are burned.
    refresh: Mutex<Option<String>>,
    /// Refuse every refresh with this OAuth error.
    refuse: Mutex<Option<&'static str>>,
    /// How long a refresh takes, so concurrent requests overlap it.
    refresh_delay: Mutex<Duration>,
    /// The token endpoint is down (503) while set.
    token_endpoint_down: std::sync::atomic::AtomicBool,
    issued: AtomicUsize,
    token_calls: AtomicUsize,
    requests: Mutex<Vec<Recorded>>,
    /// Code Assist: the project an onboarded account has (`None`: it must onboard, and
    /// gets `proj-onboarded`), and the tiers it is offered.
    code_assist_project: Mutex<Option<String>>,
    allowed_tiers: Mutex<Value>,
    onboard_polls: AtomicUsize,
    /// The public key service-account assertions must be signed with.
    service_account_key: Mutex<Option<Vec<u8>>>,
    /// Code Assist answers 429 with a RetryInfo of this many seconds.
    code_assist_quota: Mutex<Option<u64>>,
}

#[derive(Clone)]
pub struct FakeLogins {
    pub base_url: String,
    inner: Arc<Inner>,
}

/// A JWT (unsigned; nobody checks) with these claims, as the Codex tokens are.
pub fn jwt(claims: Value) -> String {
    let encode = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.c2lnbmF0dXJl",
        encode(&json!({"alg": "RS256", "typ": "JWT"})),
        encode(&claims)
    )
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl FakeLogins {
    pub async fn start() -> Self {
        let inner = Arc::new(Inner::default());
        let app = axum::Router::new()
            .route("/oauth/token", post(token))
            .route("/codex/responses", post(codex_responses))
            .route("/v1/messages", post(messages))
            .route("/qwen/v1/chat/completions", post(qwen_chat))
            .route("/v1internal:loadCodeAssist", post(load_code_assist))
            .route("/v1internal:onboardUser", post(onboard_user))
            .route("/v1internal/operations/{id}", axum::routing::get(operation))
            .route("/v1internal:generateContent", post(code_assist_generate))
            .route(
                "/v1internal:streamGenerateContent",
                post(code_assist_generate),
            )
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            base_url: format!("http://{addr}"),
            inner,
        }
    }

    /// Makes `access` a token the APIs accept and `refresh` the one the endpoint takes.
    pub fn issue(&self, access: &str, refresh: &str) {
        self.inner.valid.lock().unwrap().insert(access.to_owned());
        *self.inner.refresh.lock().unwrap() = Some(refresh.to_owned());
    }

    /// The APIs stop accepting `access` (revoked, or expired early).
    pub fn revoke(&self, access: &str) {
        self.inner.valid.lock().unwrap().remove(access);
    }

    /// Requests with `access` get 429 with Retry-After.
    pub fn limit(&self, access: &str) {
        self.inner.limited.lock().unwrap().insert(access.to_owned());
    }

    pub fn refuse_refreshes(&self, error: &'static str) {
        *self.inner.refuse.lock().unwrap() = Some(error);
    }

    pub fn refuse_refreshes_no_more(&self) {
        *self.inner.refuse.lock().unwrap() = None;
    }

    /// The token endpoint answers 503 (down for maintenance) until `false`.
    pub fn token_endpoint_down(&self, down: bool) {
        self.inner.token_endpoint_down.store(down, Ordering::SeqCst);
    }

    pub fn slow_refreshes(&self, delay: Duration) {
        *self.inner.refresh_delay.lock().unwrap() = delay;
    }

    /// Code Assist: the account is set up with `project`, or (`None`) must onboard.
    pub fn code_assist_account(&self, project: Option<&str>, allowed_tiers: Value) {
        *self.inner.code_assist_project.lock().unwrap() = project.map(str::to_owned);
        *self.inner.allowed_tiers.lock().unwrap() = allowed_tiers;
    }

    /// Service-account assertions must verify with this RSA public key (PEM).
    pub fn trust_service_account(&self, public_pem: &[u8]) {
        *self.inner.service_account_key.lock().unwrap() = Some(public_pem.to_vec());
    }

    /// Code Assist answers 429 RESOURCE_EXHAUSTED with a RetryInfo delay.
    pub fn exhaust_quota(&self, retry_seconds: u64) {
        *self.inner.code_assist_quota.lock().unwrap() = Some(retry_seconds);
    }

    pub fn onboard_polls(&self) -> usize {
        self.inner.onboard_polls.load(Ordering::SeqCst)
    }

    pub fn token_calls(&self) -> usize {
        self.inner.token_calls.load(Ordering::SeqCst)
    }

    pub fn requests(&self, path: &str) -> Vec<Recorded> {
        self.inner
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// The bearer tokens the API requests carried, in order.
    pub fn bearers(&self, path: &str) -> Vec<String> {
        self.requests(path)
            .iter()
            .map(|r| bearer(&r.headers).unwrap_or_default())
            .collect()
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::to_owned)
}

fn record(inner: &Inner, path: &str, headers: &HeaderMap, body: &Value) {
    record_raw(inner, path, headers, body, Bytes::new());
}

fn record_raw(inner: &Inner, path: &str, headers: &HeaderMap, body: &Value, raw: Bytes) {
    inner.requests.lock().unwrap().push(Recorded {
        path: path.to_owned(),
        headers: headers.clone(),
        body: body.clone(),
        raw,
    });
}

/// The token endpoint: JSON bodies (OpenAI, Anthropic) or forms (Qwen, Google), each with
/// `grant_type=refresh_token` and the one refresh token it accepts now; answers with a new
/// access token (a JWT valid for an hour) and a new refresh token (rotation).
async fn token(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    inner.token_calls.fetch_add(1, Ordering::SeqCst);
    let delay = *inner.refresh_delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let fields: Value = if content_type.starts_with("application/json") {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        let pairs: Vec<(String, String)> = url_pairs(&body);
        Value::Object(
            pairs
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
        )
    } else {
        Value::Null
    };
    record(&inner, "/oauth/token", &headers, &fields);
    if inner.token_endpoint_down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "upstream connect error").into_response();
    }
    let oauth_error = |status: StatusCode, error: &str, description: &str| {
        (
            status,
            axum::Json(json!({"error": error, "error_description": description})),
        )
            .into_response()
    };
    if fields["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer" {
        return service_account_grant(&inner, &fields);
    }
    if fields["grant_type"] != "refresh_token" || fields["client_id"].as_str().is_none() {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "grant_type refresh_token and client_id are required",
        );
    }
    // Google's installed-app clients must send their secret, in a form.
    let google = fields["client_id"]
        .as_str()
        .is_some_and(|id| id.ends_with(".apps.googleusercontent.com"));
    if google
        && (fields["client_secret"].as_str().is_none()
            || content_type.starts_with("application/json"))
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "client_secret is missing.",
        );
    }
    if let Some(error) = *inner.refuse.lock().unwrap() {
        return oauth_error(StatusCode::BAD_REQUEST, error, "Please sign in again.");
    }
    let presented = fields["refresh_token"].as_str().unwrap_or_default();
    {
        let mut current = inner.refresh.lock().unwrap();
        if current.as_deref() != Some(presented) {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "refresh_token_reused: this refresh token was already used",
            );
        }
        let n = inner.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let access = jwt(json!({"exp": unix_now() + 3600, "n": n}));
        let refresh = format!("rt-rotated-{n}");
        *current = Some(refresh.clone());
        inner.valid.lock().unwrap().insert(access.clone());
        axum::Json(json!({
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": 3600,
            "token_type": "Bearer",
        }))
        .into_response()
    }
}

fn url_pairs(body: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let decode = |s: &str| {
                let s = s.replace('+', " ");
                let mut out = Vec::new();
                let bytes = s.as_bytes();
                let mut i = 0;
                while i < bytes.len() {
                    if bytes[i] == b'%' && i + 2 < bytes.len() {
                        let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                        out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                        i += 3;
                    } else {
                        out.push(bytes[i]);
                        i += 1;
                    }
                }
                String::from_utf8_lossy(&out).into_owned()
            };
            Some((decode(k), decode(v)))
        })
        .collect()
}

/// Checks the bearer: `None` when the API should go on, else its refusal.
fn refuse_token(
    inner: &Inner,
    headers: &HeaderMap,
    body_of: fn(&str) -> Value,
) -> Option<Response> {
    let token = bearer(headers).unwrap_or_default();
    if inner.limited.lock().unwrap().contains(&token) {
        return Some(
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "30")],
                axum::Json(body_of("usage limit reached for this account")),
            )
                .into_response(),
        );
    }
    if !inner.valid.lock().unwrap().contains(&token) {
        return Some(
            (
                StatusCode::UNAUTHORIZED,
                axum::Json(body_of("token expired or invalid")),
            )
                .into_response(),
        );
    }
    None
}

fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": {"message": message, "type": "invalid_request_error"}})),
    )
        .into_response()
}

fn sse(frames: Vec<(String, Value)>) -> Response {
    let frames: Vec<Result<Bytes, Infallible>> = frames
        .into_iter()
        .map(|(event, data)| {
            Ok(Bytes::from(if event.is_empty() {
                format!("data: {data}\n\n")
            } else {
                format!("event: {event}\ndata: {data}\n\n")
            }))
        })
        .collect();
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(futures::stream::iter(frames)))
        .unwrap()
}

/// The ChatGPT back-end: refuses what the real one refuses, answers a Responses stream.
async fn codex_responses(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let raw = body;
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    record_raw(&inner, "/codex/responses", &headers, &body, raw);
    if let Some(refused) = refuse_token(&inner, &headers, |m| json!({"detail": m})) {
        return refused;
    }
    if headers.get("chatgpt-account-id").is_none() {
        return bad_request("missing chatgpt-account-id".into());
    }
    if body["stream"] != true || body["store"] != false {
        return bad_request("stream must be true and store false".into());
    }
    if body["instructions"]
        .as_str()
        .is_none_or(|i| i.trim().is_empty())
    {
        return bad_request("Instructions are required".into());
    }
    for refused in ["temperature", "previous_response_id", "max_output_tokens"] {
        if body.get(refused).is_some() {
            return bad_request(format!("Unsupported parameter: {refused}"));
        }
    }
    let text = "Hello from ChatGPT.";
    let model = body["model"].clone();
    let item = json!({"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}]});
    let done = json!({"id": "resp_1", "object": "response", "created_at": 1_700_000_000, "status": "completed",
        "model": model, "output": [item.clone()],
        "usage": {"input_tokens": 9, "output_tokens": 4, "total_tokens": 13}});
    let mut started = done.clone();
    started["status"] = json!("in_progress");
    started["output"] = json!([]);
    let events = vec![
        json!({"type": "response.created", "response": started}),
        json!({"type": "response.output_item.added", "output_index": 0, "item":
            {"type": "message", "id": "msg_1", "status": "in_progress", "role": "assistant", "content": []}}),
        json!({"type": "response.content_part.added", "item_id": "msg_1", "output_index": 0, "content_index": 0,
            "part": {"type": "output_text", "text": "", "annotations": []}}),
        json!({"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "Hello from "}),
        json!({"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "ChatGPT."}),
        json!({"type": "response.output_text.done", "item_id": "msg_1", "output_index": 0, "content_index": 0, "text": text}),
        json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
        json!({"type": "response.completed", "response": done}),
    ];
    let mut response = sse(events
        .into_iter()
        .enumerate()
        .map(|(i, mut e)| {
            e["sequence_number"] = json!(i);
            (e["type"].as_str().unwrap().to_owned(), e)
        })
        .collect());
    response
        .headers_mut()
        .insert("x-codex-primary-used-percent", "12".parse().unwrap());
    response
}

/// Anthropic's Messages API as it treats OAuth tokens: a bearer (an x-api-key is refused),
/// the OAuth beta, and Claude Code's sentence first in the system prompt.
async fn messages(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    record(&inner, "/v1/messages", &headers, &body);
    let anthropic_error =
        |m: &str| json!({"type": "error", "error": {"type": "authentication_error", "message": m}});
    if headers.get("x-api-key").is_some() {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(anthropic_error("invalid x-api-key")),
        )
            .into_response();
    }
    if let Some(refused) = refuse_token(
        &inner,
        &headers,
        |m| json!({"type": "error", "error": {"type": "authentication_error", "message": m}}),
    ) {
        return refused;
    }
    let betas = headers
        .get("anthropic-beta")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let first_system = body["system"][0]["text"].as_str().unwrap_or_default();
    if !betas.split(',').any(|b| b.trim() == "oauth-2025-04-20")
        || first_system != CLAUDE_CODE_IDENTITY
    {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"type": "error", "error": {"type": "invalid_request_error",
                "message": "This credential is only authorized for use with Claude Code and cannot be used for other API requests."}})),
        )
            .into_response();
    }
    let model = body["model"].clone();
    if body["stream"] != true {
        let body = CLAUDE_MESSAGE.replace("MODEL", model.as_str().unwrap_or_default());
        return (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
    }
    let events = vec![
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello from "}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Claude."}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 4}}),
        json!({"type": "message_stop"}),
    ];
    sse(events
        .into_iter()
        .map(|e| (e["type"].as_str().unwrap().to_owned(), e))
        .collect())
}

/// Qwen's OpenAI-compatible chat endpoint, with the headers Qwen Code sends.
async fn qwen_chat(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    record(&inner, "/qwen/v1/chat/completions", &headers, &body);
    if let Some(refused) = refuse_token(
        &inner,
        &headers,
        |m| json!({"error": {"message": m, "type": "invalid_request_error", "code": "invalid_api_key"}}),
    ) {
        return refused;
    }
    if headers
        .get("x-dashscope-authtype")
        .and_then(|v| v.to_str().ok())
        != Some("qwen-oauth")
    {
        return bad_request("X-DashScope-AuthType: qwen-oauth is required".into());
    }
    let model = body["model"].clone();
    let text = "Hello from Qwen.";
    if body["stream"] != true {
        return axum::Json(json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1_700_000_000,
            "model": model, "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
            "finish_reason": "stop"}], "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}}))
        .into_response();
    }
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut frames: Vec<(String, Value)> = vec![
        (
            String::new(),
            chunk(
                json!({"role": "assistant", "content": "Hello from "}),
                Value::Null,
            ),
        ),
        (
            String::new(),
            chunk(json!({"content": "Qwen."}), Value::Null),
        ),
        (String::new(), chunk(json!({}), json!("stop"))),
    ];
    let frames_text: Vec<Result<Bytes, Infallible>> = frames
        .drain(..)
        .map(|(_, data)| Ok(Bytes::from(format!("data: {data}\n\n"))))
        .chain(std::iter::once(Ok(Bytes::from_static(b"data: [DONE]\n\n"))))
        .collect();
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(futures::stream::iter(frames_text)))
        .unwrap()
}

/// RFC 7523: a JWT signed by the service account, checked against its public key, for
/// an access token (no refresh token).
fn service_account_grant(inner: &Inner, fields: &Value) -> Response {
    let refuse = |why: String| {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_grant", "error_description": why})),
        )
            .into_response()
    };
    let Some(public) = inner.service_account_key.lock().unwrap().clone() else {
        return refuse("no service account is known".into());
    };
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(&public).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.validate_aud = false;
    let assertion = fields["assertion"].as_str().unwrap_or_default();
    let claims = match jsonwebtoken::decode::<Value>(assertion, &key, &validation) {
        Ok(data) => data.claims,
        Err(err) => return refuse(format!("Invalid JWT Signature ({err})")),
    };
    if !claims["scope"]
        .as_str()
        .unwrap_or_default()
        .contains("cloud-platform")
        || !claims["aud"]
            .as_str()
            .unwrap_or_default()
            .ends_with("/oauth/token")
        || claims["iss"].as_str().is_none()
    {
        return refuse(format!("bad claims {claims}"));
    }
    let n = inner.issued.fetch_add(1, Ordering::SeqCst) + 1;
    let access = format!("ya29.service-{n}");
    inner.valid.lock().unwrap().insert(access.clone());
    axum::Json(json!({"access_token": access, "expires_in": 3599, "token_type": "Bearer"}))
        .into_response()
}

/// Google's error body, as Code Assist sends it.
fn google_error(status: StatusCode, name: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": status.as_u16(), "message": message, "status": name}})),
    )
        .into_response()
}

fn code_assist_refusal(inner: &Inner, headers: &HeaderMap) -> Option<Response> {
    let token = bearer(headers).unwrap_or_default();
    if !inner.valid.lock().unwrap().contains(&token) {
        return Some(google_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
        ));
    }
    None
}

async fn load_code_assist(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    record(&inner, "loadCodeAssist", &headers, &body);
    if let Some(refused) = code_assist_refusal(&inner, &headers) {
        return refused;
    }
    if body["metadata"]["pluginType"] != "GEMINI" {
        return google_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "metadata.pluginType is required",
        );
    }
    let allowed = inner.allowed_tiers.lock().unwrap().clone();
    match inner.code_assist_project.lock().unwrap().clone() {
        Some(project) => axum::Json(json!({
            "currentTier": {"id": "standard-tier", "name": "Gemini Code Assist"},
            "allowedTiers": allowed,
            "cloudaicompanionProject": project,
        }))
        .into_response(),
        None => axum::Json(json!({"allowedTiers": allowed})).into_response(),
    }
}

/// Onboarding: a long-running operation, done on the second look.
async fn onboard_user(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    record(&inner, "onboardUser", &headers, &body);
    if let Some(refused) = code_assist_refusal(&inner, &headers) {
        return refused;
    }
    let tier = body["tierId"].as_str().unwrap_or_default();
    if tier == "free-tier"
        && body
            .get("cloudaicompanionProject")
            .is_some_and(|p| !p.is_null())
    {
        return google_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "free-tier brings its own project",
        );
    }
    if tier == "standard-tier" && body["cloudaicompanionProject"].as_str().is_none() {
        return google_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "standard-tier needs a project",
        );
    }
    if let Some(project) = body["cloudaicompanionProject"].as_str() {
        *inner.code_assist_project.lock().unwrap() = Some(format!("requested:{project}"));
    }
    axum::Json(json!({"name": "operations/onboard-1", "done": false})).into_response()
}

async fn operation(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    record(&inner, "operation", &headers, &Value::Null);
    if let Some(refused) = code_assist_refusal(&inner, &headers) {
        return refused;
    }
    inner.onboard_polls.fetch_add(1, Ordering::SeqCst);
    // The project onboarding asked for, else the one a free account is given.
    let requested = inner.code_assist_project.lock().unwrap().clone();
    let project = requested
        .and_then(|p| p.strip_prefix("requested:").map(str::to_owned))
        .unwrap_or_else(|| "proj-onboarded".to_owned());
    *inner.code_assist_project.lock().unwrap() = Some(project.clone());
    axum::Json(json!({"name": "operations/onboard-1", "done": true,
        "response": {"cloudaicompanionProject": {"id": project, "name": "Onboarded"}}}))
    .into_response()
}

/// generateContent / streamGenerateContent?alt=sse in the Code Assist envelope.
async fn code_assist_generate(
    State(inner): State<Arc<Inner>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let stream = uri.path().ends_with("streamGenerateContent");
    record(
        &inner,
        if stream {
            "streamGenerateContent"
        } else {
            "generateContent"
        },
        &headers,
        &body,
    );
    if let Some(refused) = code_assist_refusal(&inner, &headers) {
        return refused;
    }
    if let Some(seconds) = *inner.code_assist_quota.lock().unwrap() {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                "message": format!("You have exhausted your capacity on this model. Your quota will reset after {seconds}s."),
                "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{seconds}s")}]}})),
        )
            .into_response();
    }
    let known = inner.code_assist_project.lock().unwrap().clone();
    if body["project"].as_str() != known.as_deref() || known.is_none() {
        return google_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "The caller does not have permission on this project",
        );
    }
    if body["request"]["contents"]
        .as_array()
        .is_none_or(Vec::is_empty)
        || body["model"].as_str().is_none()
    {
        return google_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "model and request.contents are required",
        );
    }
    let candidate = |text: &str, finish: Option<&str>| {
        let mut c = json!({"content": {"role": "model", "parts": [{"text": text}]}, "index": 0});
        if let Some(finish) = finish {
            c["finishReason"] = json!(finish);
        }
        c
    };
    let usage = json!({"promptTokenCount": 6, "candidatesTokenCount": 4, "totalTokenCount": 10});
    if !stream {
        return axum::Json(
            json!({"response": {"candidates": [candidate("Hello from Code Assist.", Some("STOP"))],
            "usageMetadata": usage, "modelVersion": body["model"]}, "traceId": "trace-1"}),
        )
        .into_response();
    }
    let frames = vec![
        json!({"response": {"candidates": [candidate("Hello from ", None)]}, "traceId": "trace-1"}),
        json!({"response": {"candidates": [candidate("Code Assist.", Some("STOP"))], "usageMetadata": usage}, "traceId": "trace-1"}),
    ];
    sse(frames.into_iter().map(|f| (String::new(), f)).collect())
}
