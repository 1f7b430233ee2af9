//! Front-ends: the HTTP surface clients talk to, one module per protocol.
//!
//! Front-ends are thin: read the body, decode, hand the request to the engine, encode the
//! events. Everything protocol-independent about serving lives here: auth, body limits,
//! error responses, the request log line, health and info.

mod common;
pub mod openai_chat;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

pub use common::{ClientAddr, error_response};

use crate::engine::Engine;
use crate::model::Protocol;

/// The whole app: every front-end plus health, info and a protocol-shaped 404.
pub fn app(engine: Engine) -> axum::Router {
    let api = openai_chat::routes().route_layer(middleware::from_fn_with_state(
        (engine.clone(), Protocol::OpenAiChat),
        require_auth,
    ));
    axum::Router::new()
        .route("/health", get(health))
        .route("/", get(info))
        .merge(api)
        .fallback(not_found)
        .with_state(engine)
}

async fn require_auth(
    State((engine, protocol)): State<(Engine, Protocol)>,
    request: Request,
    next: Next,
) -> Response {
    let client = request
        .extensions()
        .get::<ClientAddr>()
        .map(|c| c.0.ip())
        .or_else(|| {
            request
                .extensions()
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip())
        });
    let checked = engine.auth().check(
        request.uri().path(),
        client,
        request.headers(),
        request.uri().query(),
    );
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

async fn health() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

async fn info(State(engine): State<Engine>) -> impl IntoResponse {
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
    Json(json!({
        "name": "llmux",
        "version": env!("CARGO_PKG_VERSION"),
        "frontends": [
            {"protocol": "openai_chat", "paths": ["/v1/chat/completions", "/v1/models"]},
        ],
        "default_backend": config.default_backend,
        "backends": backends,
        "auth": engine.auth().enabled(),
        "pipeline": engine.pipeline().names(),
    }))
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
