//! Replay: a captured request sent through its own front-end again, in process. The
//! request is decoded, run and encoded by the same skeleton as a client's
//! ([`super::serve::generate`]), with no HTTP round trip and no router.

use axum::body::Body;

use super::common::record_client_leg;
use super::serve::{self, Frontend};
use super::{anthropic, gemini, openai_chat, openai_responses};
use crate::Error;
use crate::admin::{self, ReplayParams, Replayed};
use crate::engine::Engine;
use crate::pipeline::RequestContext;

/// Sends the captured request `id` again, to another back-end or model, without streaming,
/// and returns what its client would have received. The replay is captured as a request
/// of its own, in session `replay-<id>`.
pub async fn replay(engine: &Engine, id: String, params: ReplayParams) -> Result<Replayed, Error> {
    let admin::ReplayRequest {
        frontend,
        model,
        body,
        headers,
    } = admin::prepare_replay(engine, id, params).await?;
    let body = Body::from(body);
    let response = match frontend.as_str() {
        "openai_responses" => run::<openai_responses::Responses>(engine, &headers, body, ()).await,
        "anthropic" => run::<anthropic::Messages>(engine, &headers, body, ()).await,
        "gemini" => {
            let call = gemini::Call::generate(&model);
            run::<gemini::Gemini>(engine, &headers, body, call).await
        }
        _ => run::<openai_chat::OpenAiChat>(engine, &headers, body, ()).await,
    };
    // As for a client: the answer goes into the replay's capture row.
    let response = record_client_leg(response).await;
    admin::finish_replay(engine, model, response).await
}

/// A first request to try llmux with (the settings page's guide): a short greeting to
/// `model` through the OpenAI chat front-end, in process, captured like any request.
pub async fn test_request(engine: &Engine, model: String) -> Result<Replayed, Error> {
    if model.trim().is_empty() {
        return Err(Error::invalid_field(
            "model",
            "name a model, e.g. openai:gpt-4o-mini",
        ));
    }
    let body = serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": "Say hello in five words."}],
        "max_tokens": 64,
    });
    let headers = axum::http::HeaderMap::new();
    let response =
        run::<openai_chat::OpenAiChat>(engine, &headers, Body::from(body.to_string()), ()).await;
    let response = record_client_leg(response).await;
    admin::finish_replay(engine, model, response).await
}

/// One replay through front-end `F`, as a request from llmux itself on loopback.
async fn run<F: Frontend>(
    engine: &Engine,
    headers: &axum::http::HeaderMap,
    body: Body,
    call: F::Call,
) -> axum::response::Response {
    let mut ctx = RequestContext::new(F::PROTOCOL);
    ctx.client_ip = Some(std::net::Ipv4Addr::LOCALHOST.into());
    ctx.user_agent = Some("llmux-replay".into());
    serve::generate::<F>(engine, ctx, headers, body, call).await
}
