//! Front-ends: the HTTP surface clients talk to, one module per protocol.
//!
//! Front-ends are thin: read the body, decode, hand the request to the engine, encode the
//! events. Everything protocol-independent about serving lives here: auth, body limits,
//! error responses, the request log line, health and info.

mod admin;
pub mod anthropic;
mod common;
pub mod gemini;
pub mod openai_chat;
pub mod openai_responses;
mod replay;
mod serve;
mod ui;
pub mod web_safety;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

pub use common::{ClientAddr, error_response, hold_until_done};
pub use replay::{replay, test_request};

use crate::engine::Engine;
use crate::model::Protocol;

/// Whether a request asks a model for an answer: what a user counts as "requests" (the
/// desktop tray's counter). Health, info, model lists, token counts, the UI and the admin
/// API are not.
pub fn is_model_call(method: &Method, path: &str) -> bool {
    if method != Method::POST {
        return false;
    }
    let path = path.strip_prefix("/anthropic").unwrap_or(path);
    matches!(
        path,
        "/v1/chat/completions" | "/v1/messages" | "/v1/responses"
    ) || (path.starts_with("/v1beta/models/") || path.starts_with("/v1/models/"))
        && (path.ends_with(":generateContent") || path.ends_with(":streamGenerateContent"))
}

/// The apps of one engine's two ports, the main one and the dedicated Anthropic one, each
/// behind the web-safety layers; they share the per-address request count.
pub fn apps(engine: &Engine) -> (axum::Router, axum::Router) {
    let guard = Guard {
        settings: std::sync::Arc::new(engine.config().web.clone()),
        per_ip: engine
            .config()
            .web
            .max_requests_per_ip
            .map(|max| std::sync::Arc::new(web_safety::PerIpLimit::new(max))),
    };
    let main = guard.wrap(app(engine.clone()), None);
    let anthropic = guard.wrap(anthropic_app(engine.clone()), Some(Protocol::Anthropic));
    (main, anthropic)
}

/// What the web-safety layers of one engine's ports share.
struct Guard {
    settings: std::sync::Arc<web_safety::WebSafetySettings>,
    per_ip: Option<std::sync::Arc<web_safety::PerIpLimit>>,
}

impl Guard {
    /// `app` behind the web-safety layers, outermost on every listener.
    fn wrap(&self, app: axum::Router, protocol: Option<Protocol>) -> axum::Router {
        web_safety::wrap(app, &self.settings, self.per_ip.clone(), protocol)
    }
}

/// The whole app on the main port: every front-end plus health, info and a 404 in the
/// OpenAI shape.
fn app(engine: Engine) -> axum::Router {
    let auth = |protocol| middleware::from_fn_with_state((engine.clone(), protocol), require_auth);
    let metrics = axum::Router::new().route("/metrics", get(metrics));
    let metrics = match engine.config().metrics_public {
        true => metrics,
        false => metrics.route_layer(auth(Protocol::OpenAiChat)),
    };
    axum::Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .merge(metrics)
        .route("/", get(info))
        .merge(anthropic::public_routes())
        .merge(openai_chat::routes().route_layer(auth(Protocol::OpenAiChat)))
        .merge(openai_responses::routes().route_layer(auth(Protocol::OpenAiResponses)))
        .merge(anthropic::routes().route_layer(auth(Protocol::Anthropic)))
        .merge(gemini::routes().route_layer(auth(Protocol::Gemini)))
        .merge(admin::routes().route_layer(auth(Protocol::OpenAiChat)))
        .merge(ui::routes())
        .fallback(not_found)
        .layer(middleware::map_response(common::record_client_leg))
        .with_state(engine)
}

/// The dedicated Anthropic port: the Anthropic routes at the root, errors in its shape.
fn anthropic_app(engine: Engine) -> axum::Router {
    let auth = middleware::from_fn_with_state((engine.clone(), Protocol::Anthropic), require_auth);
    axum::Router::new()
        .merge(anthropic::dedicated_public_routes())
        .merge(anthropic::dedicated_routes().route_layer(auth))
        .fallback(anthropic_not_found)
        .layer(middleware::map_response(common::record_client_leg))
        .with_state(engine)
}

async fn anthropic_not_found(method: Method, request: Request) -> Response {
    let err = crate::Error::not_found(format!("no route for {method} {}", request.uri().path()));
    error_response(Protocol::Anthropic, &err)
}

async fn require_auth(
    State((engine, protocol)): State<(Engine, Protocol)>,
    request: Request,
    next: Next,
) -> Response {
    let client = common::client_ip(&request);
    let checked = engine
        .auth()
        .check(
            request.uri().path(),
            client,
            request.headers(),
            request.uri().query(),
        )
        .await;
    match checked {
        Ok(()) => next.run(request).await,
        Err(err) => {
            tracing::warn!(
                client = client.map(|c| c.to_string()).unwrap_or_default(),
                path = request.uri().path(),
                status = err.status(),
                "rejected: {err}"
            );
            error_response(protocol, &err)
        }
    }
}

/// Liveness: 200 while llmux serves, `degraded` (with why) while it serves with less than
/// it should (a shared session store it cannot reach).
async fn health(State(engine): State<Engine>) -> impl IntoResponse {
    Json(health_of(&engine, None))
}

/// Prometheus metrics, in its text format.
async fn metrics(State(engine): State<Engine>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        engine.metrics_text(),
    )
        .into_response()
}

/// Readiness, apart from liveness: 200 once the config is loaded (it is, when this
/// answers) and the session store answers; 503 naming what does not.
async fn ready(State(engine): State<Engine>) -> Response {
    match engine.state_ready().await {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(err) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not ready", "state": err.to_string()})),
        )
            .into_response(),
    }
}

pub(crate) fn health_of(engine: &Engine, frontend: Option<&str>) -> serde_json::Value {
    let mut health = match engine.state_degraded() {
        Some(why) => json!({"status": "degraded", "state": why}),
        None => json!({"status": "ok"}),
    };
    if let Some(frontend) = frontend {
        health["frontend"] = json!(frontend);
    }
    health
}

async fn info(State(engine): State<Engine>) -> impl IntoResponse {
    Json(crate::admin::server_info(&engine))
}

async fn not_found(method: Method, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let err = crate::Error::not_found(format!("no route for {method} {path}"));
    let mut response = error_response(Protocol::OpenAiChat, &err);
    if method != Method::GET && method != Method::POST {
        *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_calls_are_told_apart_from_everything_else() {
        for path in [
            "/v1/chat/completions",
            "/v1/messages",
            "/anthropic/v1/messages",
            "/v1/responses",
            "/v1beta/models/gemini-2.5-pro:generateContent",
            "/v1beta/models/fake:streamGenerateContent",
        ] {
            assert!(is_model_call(&Method::POST, path), "{path}");
        }
        for (method, path) in [
            (Method::GET, "/v1/chat/completions"),
            (Method::GET, "/health"),
            (Method::GET, "/v1/models"),
            (Method::POST, "/v1/messages/count_tokens"),
            (Method::POST, "/v1beta/models/fake:countTokens"),
            (Method::GET, "/admin/api/requests"),
            (Method::POST, "/admin/api/settings"),
            (Method::GET, "/ui/"),
            (Method::DELETE, "/v1/responses/resp_1"),
        ] {
            assert!(!is_model_call(&method, path), "{method} {path}");
        }
    }
}
