//! The request's row in the capture store (when the store is on): the front-end starts it
//! with what the client sent; this stage adds the prompt as decoded and, at the end, the
//! route, status, timings, tokens and answer text. The upstream legs are recorded by the
//! back-end call's tap.

use async_trait::async_trait;

use super::{Flow, Outcome, Phases, Reads, RequestContext, Stage};
use crate::Error;
use crate::model::Request;

/// Takes part only when the store is on (`capture.db`): no other request has a row.
pub struct CaptureRow {
    pub store_on: bool,
}

#[async_trait]
impl Stage for CaptureRow {
    fn name(&self) -> &'static str {
        "capture-row"
    }

    fn reads(&self) -> Reads {
        Reads::MESSAGES
    }

    fn phases(&self) -> Phases {
        (Phases::ON_REQUEST | Phases::ON_COMPLETE).when(self.store_on)
    }

    async fn on_request(
        &self,
        ctx: &mut RequestContext,
        request: &mut Request,
    ) -> Result<Flow, Error> {
        if let Some(recorder) = &ctx.recorder {
            let prompt = request.last_user_text().unwrap_or_default();
            let model = request.model.clone();
            let estimated_input = request.estimated_input_tokens();
            recorder.update(|row| {
                row.prompt_text = prompt;
                row.model_requested = model;
                // Replaced by the provider's count when it reports usage.
                row.input_tokens = estimated_input;
                row.tokens_estimated = true;
            });
        }
        Ok(Flow::Continue)
    }

    fn on_complete(&self, ctx: &RequestContext, outcome: &Outcome) {
        let Some(recorder) = &ctx.recorder else {
            return;
        };
        let latency_ms = outcome.latency_ms;
        let started_at = crate::capture::store::unix_seconds() - latency_ms / 1000.0;
        let error = match (&outcome.error, outcome.ended) {
            (Some(error), _) => error.clone(),
            (None, super::Ended::Done) => String::new(),
            (None, ended) => ended.as_str().to_owned(),
        };
        recorder.finish(|row| {
            row.id = ctx.request_id.clone();
            row.started_at = started_at;
            row.session_id = ctx.session_id.clone();
            row.client_host = ctx.client_host();
            row.user_agent = ctx.user_agent.clone().unwrap_or_default();
            row.frontend = ctx.frontend.as_str().to_owned();
            row.backend = ctx.backend.clone().unwrap_or_default();
            row.model_used = ctx.model.clone().unwrap_or_default();
            row.key_name = ctx.key_name.clone().unwrap_or_default();
            row.status = outcome.status;
            row.stream = ctx.stream;
            row.latency_ms = latency_ms;
            row.ttfb_ms = outcome.ttfb_ms.unwrap_or(latency_ms);
            match (&outcome.usage, &outcome.answer_text) {
                (Some(usage), _) => {
                    row.input_tokens = usage.input_tokens;
                    row.output_tokens = usage.output_tokens;
                    row.tokens_estimated = false;
                }
                // About four characters a token, as the estimate of the input.
                (None, Some(answer)) => row.output_tokens = (answer.len() as u64).div_ceil(4),
                (None, None) => {}
            }
            row.error = error;
            row.attempts = ctx.trail.chain();
            row.interventions = ctx.trail.interventions();
            row.response_text = outcome.answer_text.clone().unwrap_or_default();
            row.tool_calls = outcome
                .tool_calls
                .iter()
                .map(|(_, call)| call.clone())
                .collect();
        });
    }
}
