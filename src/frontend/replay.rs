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
    let prepared = admin::prepare_replay(engine, id, params).await?;
    let headers = &prepared.headers;
    let body = || Body::from(prepared.body.clone());
    let response = match prepared.frontend.as_str() {
        "openai_responses" => {
            let ctx = context::<openai_responses::Responses>();
            serve::generate::<openai_responses::Responses>(engine, ctx, headers, body(), ()).await
        }
        "anthropic" => {
            let ctx = context::<anthropic::Messages>();
            serve::generate::<anthropic::Messages>(engine, ctx, headers, body(), ()).await
        }
        "gemini" => {
            let ctx = context::<gemini::Gemini>();
            let call = gemini::Call::generate(&prepared.model);
            serve::generate::<gemini::Gemini>(engine, ctx, headers, body(), call).await
        }
        _ => {
            let ctx = context::<openai_chat::OpenAiChat>();
            serve::generate::<openai_chat::OpenAiChat>(engine, ctx, headers, body(), ()).await
        }
    };
    // As for a client: the answer goes into the replay's capture row.
    let response = record_client_leg(response).await;
    admin::finish_replay(engine, prepared.model, response).await
}

/// A replay's context: from llmux itself, on loopback.
fn context<F: Frontend>() -> RequestContext {
    let mut ctx = RequestContext::new(F::PROTOCOL);
    ctx.client_ip = Some(std::net::Ipv4Addr::LOCALHOST.into());
    ctx.user_agent = Some("llmux-replay".into());
    ctx
}
