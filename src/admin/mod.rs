//! The admin API: what the inspector and the settings window need from the engine.
//!
//! Plain async functions over an [`Engine`]; the headless server exposes them as HTTP
//! `/admin/api/*` (`crate::frontend::admin`) and the desktop shell as Tauri commands. Both
//! answer with the same serde types, so the UI sees one API whichever way it talks.
//! Replay is prepared and read back here and run by `frontend::replay` through the
//! request's own front-end; this module never calls the HTTP layer.

use std::sync::Arc;

use axum::http::{HeaderValue, header};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub mod clients;
pub mod settings;

use crate::Error;
use crate::capture::store::{self, RequestRow, Stats, Store, TimelinePoint, Usage, UsageBy};
use crate::engine::Engine;

/// The list's page size when none is asked for.
const DEFAULT_LIMIT: usize = 50;
/// The largest replayed answer read back, in bytes.
const REPLAY_ANSWER_LIMIT: usize = 64 << 20;
/// How long a replay waits for its own row to be written.
const REPLAY_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// Most buckets a timeline answers with; wider windows get wider buckets.
const MAX_BUCKETS: f64 = 2000.0;

/// Filters and paging over the captured requests.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
pub struct ListParams {
    /// Full-text search over prompt and answer.
    pub q: Option<String>,
    pub session: Option<String>,
    pub backend: Option<String>,
    pub model: Option<String>,
    pub status: Option<u16>,
    /// Unix seconds: requests started at or after `since` and before `until`.
    pub since: Option<f64>,
    pub until: Option<f64>,
    /// Page size (default 50, at most 1000) and start.
    pub limit: Option<usize>,
    pub offset: Option<usize>,
}

impl ListParams {
    fn query(self, with_bodies: bool) -> store::Query {
        store::Query {
            text: self.q,
            session_id: self.session.filter(|s| !s.is_empty()),
            backend: self.backend.filter(|s| !s.is_empty()),
            model: self.model.filter(|s| !s.is_empty()),
            status: self.status,
            since: self.since,
            until: self.until,
            limit: self.limit.unwrap_or(DEFAULT_LIMIT),
            offset: self.offset.unwrap_or(0),
            with_bodies,
        }
    }
}

/// The window and resolution of a timeline.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
pub struct TimelineParams {
    /// Unix seconds; default: one day ago.
    pub since: Option<f64>,
    /// Bucket width in seconds; default: the window in about 60 buckets, at least 1 s.
    pub bucket: Option<f64>,
}

/// Totals over the stored requests and what capture had to drop.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct AdminStats {
    /// The capture store's totals; zeros when it is off (see `capture_store`).
    #[serde(flatten)]
    pub store: Stats,
    /// Whether the capture store is on.
    pub capture_store: bool,
    /// Records the JSONL wire capture dropped because its writer fell behind.
    pub wire_capture_dropped: u64,
    pub process: ProcessStats,
    /// Every back-end and model called since llmux started: attempts, answers and
    /// failures (failover legs included).
    pub legs: Vec<crate::router::health::LegStats>,
    /// Every provider key by back-end, in rotation order: uses, failures, whether it is
    /// cooling down and its last failure. Names only, never values.
    pub keys: Vec<crate::backend::keys::KeyHealth>,
    /// The circuit breaker of every back-end that has failed since llmux started.
    pub breakers: Vec<crate::router::breaker::BreakerState>,
    /// Every subscription login (openai-oauth, ...): whose it is, until when its token is
    /// good, its last refresh and last problem. Never a token.
    pub logins: Vec<crate::credentials::login::LoginStatus>,
}

/// What the llmux process holds now: what a leak would grow.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ProcessStats {
    /// Client connections open, both ports.
    pub open_connections: u64,
    /// File descriptors open (sockets, files); `null` where the OS does not tell.
    pub open_fds: Option<u64>,
    /// Tasks alive on the async runtime.
    pub tokio_tasks: u64,
}

impl ProcessStats {
    pub fn now() -> Self {
        Self {
            open_connections: crate::process::open_connections() as u64,
            open_fds: open_fds(),
            tokio_tasks: tokio::runtime::Handle::try_current()
                .map_or(0, |h| h.metrics().num_alive_tasks() as u64),
        }
    }
}

/// Entries of /proc/self/fd, less the one the listing itself holds open.
fn open_fds() -> Option<u64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    Some((entries.count() as u64).saturating_sub(1))
}

/// Where to send a replayed request: another back-end, model, or both.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
pub struct ReplayParams {
    pub backend: Option<String>,
    pub model: Option<String>,
}

/// What a replay got back, as its client would have.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Replayed {
    pub status: u16,
    /// The new request's id; it is captured like any other.
    pub request_id: Option<String>,
    /// The model string the replay asked for (`backend:model` when a back-end was chosen).
    pub model: String,
    /// The answer's body: JSON when it is JSON, else its text.
    #[cfg_attr(test, ts(type = "unknown"))]
    pub body: Value,
}

fn store_of(engine: &Engine) -> Result<Arc<Store>, Error> {
    engine.store().cloned().ok_or_else(|| {
        Error::not_found("the capture store is off; start llmux with --capture-db FILE")
    })
}

/// Runs a store call off the async threads: SQLite calls block.
async fn read<T: Send + 'static>(
    engine: &Engine,
    query: impl FnOnce(&Store) -> Result<T, String> + Send + 'static,
) -> Result<T, Error> {
    let store = store_of(engine)?;
    tokio::task::spawn_blocking(move || query(&store))
        .await
        .map_err(|e| Error::internal(format!("capture store read failed: {e}")))?
        .map_err(|e| Error::internal(format!("capture store read failed: {e}")))
}

/// What llmux serves and with which back-ends (`GET /` and the UI's header).
pub fn server_info(engine: &Engine) -> Value {
    let config = engine.config();
    let backends: Vec<_> = engine
        .routes()
        .backends()
        .values()
        .map(|backend| {
            let c = backend.config();
            json!({
                "id": c.id,
                "type": c.kind.name(),
                "default": c.id == config.default_backend,
                "usable": !c.kind.requires_key() || backend.key_name().is_some(),
            })
        })
        .collect();
    json!({
        "name": "llmux",
        "version": env!("CARGO_PKG_VERSION"),
        "frontends": [
            {"protocol": "openai_chat", "paths": ["/v1/chat/completions", "/v1/models"]},
            {"protocol": "openai_responses", "paths": ["/v1/responses"]},
            {"protocol": "anthropic", "paths": ["/v1/messages", "/anthropic/v1/messages",
                "/anthropic/v1/messages/count_tokens", "/anthropic/v1/models"],
             "port": config.anthropic_port},
            {"protocol": "gemini", "paths": ["/v1beta/models", "/v1beta/models/{model}:generateContent",
                "/v1beta/models/{model}:streamGenerateContent", "/v1beta/models/{model}:countTokens"]},
        ],
        "default_backend": config.default_backend,
        "backends": backends,
        "auth": engine.auth().enabled(),
        "pipeline": engine.pipeline().names(),
    })
}

/// Captured requests, newest first; without their bodies unless `with_bodies`.
pub async fn requests(
    engine: &Engine,
    params: ListParams,
    with_bodies: bool,
) -> Result<Vec<RequestRow>, Error> {
    let query = params.query(with_bodies);
    read(engine, move |store| store.list(&query)).await
}

/// The matching requests with their bodies, one JSON object per line.
pub async fn export(engine: &Engine, params: ListParams) -> Result<String, Error> {
    let mut lines = String::new();
    for row in requests(engine, params, true).await? {
        lines.push_str(&serde_json::to_string(&row).unwrap_or_default());
        lines.push('\n');
    }
    Ok(lines)
}

/// One captured request with both wire legs; not found when there is none with this id.
pub async fn request(engine: &Engine, id: String) -> Result<RequestRow, Error> {
    read(engine, move |store| store.get(&id))
        .await?
        .ok_or_else(|| Error::not_found("no recorded request has this id"))
}

/// Forgets one request; not found when there is none with this id.
pub async fn delete_request(engine: &Engine, id: String) -> Result<(), Error> {
    if read(engine, move |store| store.delete(&id)).await? {
        Ok(())
    } else {
        Err(Error::not_found("no recorded request has this id"))
    }
}

/// Requests and tokens totalled by `by`: day, backend, model, key or session.
pub async fn usage(engine: &Engine, by: &str) -> Result<Vec<Usage>, Error> {
    let group = UsageBy::parse(by).ok_or_else(|| {
        Error::invalid_request(format!(
            "unknown usage grouping {by:?}; use day, backend, model, key or session"
        ))
    })?;
    read(engine, move |store| store.usage(group)).await
}

/// Totals per time bucket over a window; buckets without requests are left out.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Timeline {
    /// The window's start and end, Unix seconds.
    pub since: f64,
    pub until: f64,
    /// Bucket width in seconds; each point's `start` is a multiple of it.
    pub bucket: f64,
    pub data: Vec<TimelinePoint>,
}

/// Requests, errors, tokens and latency over time.
pub async fn timeline(engine: &Engine, params: TimelineParams) -> Result<Timeline, Error> {
    let now = store::unix_seconds();
    let since = params.since.unwrap_or(now - 86_400.0);
    let window = (now - since).max(1.0);
    let bucket = params
        .bucket
        .filter(|b| b.is_finite() && *b > 0.0)
        .unwrap_or((window / 60.0).ceil())
        .max(window / MAX_BUCKETS)
        .max(1.0);
    let data = read(engine, move |store| store.timeline(bucket, since)).await?;
    Ok(Timeline {
        since,
        until: now,
        bucket,
        data,
    })
}

/// The status of every subscription login, read from its file when llmux has not used it
/// yet (without refreshing it: only requests and the login's own timer do that).
async fn login_statuses(engine: &Engine) -> Vec<crate::credentials::login::LoginStatus> {
    let logins: Vec<_> = engine
        .routes()
        .backends()
        .values()
        .flat_map(|backend| backend.logins().iter().cloned())
        .collect();
    let statuses = logins.iter().map(|login| login.status_now());
    futures::future::join_all(statuses).await
}

/// Store totals plus what either capture sink dropped.
pub async fn stats(engine: &Engine) -> Result<AdminStats, Error> {
    let store = match engine.store() {
        Some(_) => read(engine, Store::stats).await?,
        None => Stats::default(),
    };
    Ok(AdminStats {
        store,
        capture_store: engine.store().is_some(),
        wire_capture_dropped: engine.capture().map_or(0, |c| c.dropped()),
        process: ProcessStats::now(),
        legs: engine.health().legs(),
        keys: engine
            .routes()
            .backends()
            .values()
            .filter_map(|backend| backend.keys())
            .flat_map(|ring| ring.health())
            .collect(),
        breakers: engine.health().breakers().states(),
        logins: login_statuses(engine).await,
    })
}

/// The path a client of the row's front-end posted to; `stream` picks Gemini's method.
fn client_path(row: &RequestRow, stream: bool) -> String {
    match row.frontend.as_str() {
        "openai_responses" => "/v1/responses".to_owned(),
        "anthropic" => "/v1/messages".to_owned(),
        "gemini" if stream => format!(
            "/v1beta/models/{}:streamGenerateContent?alt=sse",
            row.model_requested
        ),
        "gemini" => format!("/v1beta/models/{}:generateContent", row.model_requested),
        _ => "/v1/chat/completions".to_owned(),
    }
}

/// A shell command that sends the captured client request to llmux at `base_url` again.
/// The proxy key is read from `$LLMUX_API_KEY`, never written out.
pub fn curl_command(row: &RequestRow, base_url: &str) -> String {
    let url = format!("{base_url}{}", client_path(row, row.stream));
    format!(
        "curl -sS '{url}' \\\n  -H 'content-type: application/json' \\\n  \
         -H \"authorization: Bearer ${{LLMUX_API_KEY:-none}}\" \\\n  \
         --data-binary @- <<'LLMUX_REQUEST'\n{}\nLLMUX_REQUEST\n",
        row.client_request
    )
}

/// The model string a replay asks for: `backend:model` names both; a back-end alone keeps
/// the model the original request was served with.
fn replay_model(row: &RequestRow, params: &ReplayParams) -> String {
    fn chosen(s: &Option<String>) -> Option<&str> {
        s.as_deref().map(str::trim).filter(|s| !s.is_empty())
    }
    let original = if row.model_used.is_empty() {
        &row.model_requested
    } else {
        &row.model_used
    };
    match (chosen(&params.backend), chosen(&params.model)) {
        (Some(backend), Some(model)) => format!("{backend}:{model}"),
        (Some(backend), None) => format!("{backend}:{original}"),
        (None, Some(model)) => model.to_owned(),
        (None, None) => row.model_requested.clone(),
    }
}

/// Headers of the original request worth sending again: protocol versions and betas, never
/// credentials (they are masked in the store anyway).
fn replayed_headers(row: &RequestRow) -> Vec<(String, String)> {
    const KEEP: [&str; 2] = ["anthropic-version", "anthropic-beta"];
    let Ok(Value::Object(headers)) = serde_json::from_str::<Value>(&row.client_headers) else {
        return Vec::new();
    };
    headers
        .into_iter()
        .filter(|(name, _)| KEEP.contains(&name.to_ascii_lowercase().as_str()))
        .filter_map(|(name, value)| value.as_str().map(|v| (name, v.to_owned())))
        .collect()
}

/// A captured request made ready to be sent again (see `frontend::replay`).
#[derive(Debug, Clone)]
pub struct ReplayRequest {
    /// The front-end the original came through (`openai_chat`, `anthropic`, ...).
    pub frontend: String,
    /// The model string the replay asks for.
    pub model: String,
    /// The client request, its model replaced (Gemini keeps the model in the path), not
    /// streaming.
    pub body: Vec<u8>,
    /// What the replay sends: a JSON body, user agent `llmux-replay`, session
    /// `replay-<id>`, and the original's protocol headers (never its credentials).
    pub headers: axum::http::HeaderMap,
}

/// Reads a captured request and makes it ready to replay to another back-end or model,
/// without streaming; an unknown back-end is refused naming the configured ones.
pub async fn prepare_replay(
    engine: &Engine,
    id: String,
    params: ReplayParams,
) -> Result<ReplayRequest, Error> {
    let row = request(engine, id).await?;
    let Ok(Value::Object(mut body)) = serde_json::from_str::<Value>(&row.client_request) else {
        return Err(Error::invalid_request(
            "the captured client request is not a JSON object, so it cannot be replayed",
        ));
    };
    if let Some(backend) = params.backend.as_deref().map(str::trim)
        && !backend.is_empty()
        && !engine.routes().backends().contains_key(backend)
    {
        let mut known: Vec<&str> = engine
            .routes()
            .backends()
            .keys()
            .map(String::as_str)
            .collect();
        known.sort_unstable();
        return Err(Error::invalid_request(format!(
            "unknown back-end {backend:?} to replay to; configured: {}",
            known.join(", ")
        )));
    }
    let model = replay_model(&row, &params);
    if row.frontend != "gemini" {
        body.insert("model".into(), Value::String(model.clone()));
        body.insert("stream".into(), Value::Bool(false));
        body.remove("stream_options");
    }
    let mut headers = axum::http::HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::USER_AGENT, HeaderValue::from_static("llmux-replay"));
    if let Ok(session) = HeaderValue::from_str(&format!("replay-{}", row.id)) {
        headers.insert("x-session-id", session);
    }
    for (name, value) in replayed_headers(&row) {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.insert(name, value);
        }
    }
    Ok(ReplayRequest {
        frontend: row.frontend,
        model,
        body: Value::Object(body).to_string().into_bytes(),
        headers,
    })
}

/// What a replay got back, from the answer its front-end gave; waits (briefly) for the
/// replay's own row to be written, so the caller can open it as soon as this returns.
pub async fn finish_replay(
    engine: &Engine,
    model: String,
    response: axum::response::Response,
) -> Result<Replayed, Error> {
    let status = response.status().as_u16();
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .map(str::to_owned);
    let bytes = http_body_util::Limited::new(response.into_body(), REPLAY_ANSWER_LIMIT)
        .collect()
        .await
        .map_err(|e| Error::internal(format!("cannot read the replayed answer: {e}")))?
        .to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    if let Some(store) = engine.store().cloned() {
        let _ = tokio::task::spawn_blocking(move || store.flush(REPLAY_FLUSH_TIMEOUT)).await;
    }
    Ok(Replayed {
        status,
        request_id,
        model,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(frontend: &str) -> RequestRow {
        RequestRow {
            id: "req_1".into(),
            frontend: frontend.into(),
            model_requested: "fast".into(),
            model_used: "gpt-4o-mini".into(),
            client_headers:
                r#"{"anthropic-version":"2023-06-01","x-api-key":"****","user-agent":"claude-cli"}"#
                    .into(),
            ..RequestRow::default()
        }
    }

    #[test]
    fn replay_model_names_backend_and_model() {
        let r = row("openai_chat");
        let params = |b: Option<&str>, m: Option<&str>| ReplayParams {
            backend: b.map(Into::into),
            model: m.map(Into::into),
        };
        assert_eq!(
            replay_model(&r, &params(Some("anthropic"), Some("claude"))),
            "anthropic:claude"
        );
        assert_eq!(
            replay_model(&r, &params(Some("mock"), None)),
            "mock:gpt-4o-mini"
        );
        assert_eq!(replay_model(&r, &params(None, Some("o3"))), "o3");
        assert_eq!(replay_model(&r, &params(Some(" "), Some(""))), "fast");
    }

    #[test]
    fn replay_keeps_protocol_headers_but_no_credentials() {
        let headers = replayed_headers(&row("anthropic"));
        assert_eq!(
            headers,
            vec![("anthropic-version".to_owned(), "2023-06-01".to_owned())]
        );
        assert!(replayed_headers(&RequestRow::default()).is_empty());
    }

    #[test]
    fn gemini_paths_follow_streaming() {
        let r = row("gemini");
        assert_eq!(
            client_path(&r, false),
            "/v1beta/models/fast:generateContent"
        );
        assert_eq!(
            client_path(&r, true),
            "/v1beta/models/fast:streamGenerateContent?alt=sse"
        );
        assert_eq!(client_path(&row("anthropic"), true), "/v1/messages");
    }
}

/// The admin API's TypeScript types, generated from these Rust types so the UI and the
/// engine cannot drift apart. `LLMUX_WRITE_TS_TYPES=1 cargo test -p llmux --lib typescript`
/// rewrites the file after a change.
#[cfg(test)]
mod typescript {
    use ts_rs::{Config, TS};

    use super::*;
    use crate::capture::store::BackendStats;

    const GENERATED: &str = "ui/src/generated/admin.ts";

    fn declarations() -> String {
        // u64 counts stay far below 2^53: plain numbers, not bigint.
        let cfg = Config::new().with_large_int("number");
        let decls = [
            RequestRow::decl(&cfg),
            crate::capture::store::CapturedToolCall::decl(&cfg),
            ListParams::decl(&cfg),
            BackendStats::decl(&cfg),
            Stats::decl(&cfg),
            AdminStats::decl(&cfg),
            ProcessStats::decl(&cfg),
            crate::router::health::LegStats::decl(&cfg),
            crate::backend::keys::KeyHealth::decl(&cfg),
            crate::router::breaker::BreakerState::decl(&cfg),
            crate::credentials::login::LoginStatus::decl(&cfg),
            crate::pipeline::Intervention::decl(&cfg),
            Usage::decl(&cfg),
            TimelinePoint::decl(&cfg),
            TimelineParams::decl(&cfg),
            Timeline::decl(&cfg),
            ReplayParams::decl(&cfg),
            Replayed::decl(&cfg),
            settings::Settings::decl(&cfg),
            settings::SettingValue::decl(&cfg),
            crate::config::keys::SettingInfo::decl(&cfg),
            crate::config::keys::Kind::decl(&cfg),
            settings::BackendSetting::decl(&cfg),
            settings::SettingsChange::decl(&cfg),
            settings::SettingsProblem::decl(&cfg),
            settings::Saved::decl(&cfg),
            clients::ClientStatus::decl(&cfg),
            clients::ClientAction::decl(&cfg),
            clients::ClientChanges::decl(&cfg),
        ];
        let mut out = String::from(
            "// Generated from the Rust types of the admin API (src/admin, src/capture/store.rs)\n\
             // by the `typescript` test in src/admin/mod.rs. Do not edit by hand.\n",
        );
        for decl in decls {
            out.push_str("\nexport ");
            out.push_str(&decl);
            out.push('\n');
        }
        out
    }

    #[test]
    fn the_ui_types_match_the_rust_types() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(GENERATED);
        let generated = declarations();
        if std::env::var_os("LLMUX_WRITE_TS_TYPES").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{GENERATED} is out of date; run LLMUX_WRITE_TS_TYPES=1 cargo test -p llmux --lib \
             typescript and commit it"
        );
    }
}
