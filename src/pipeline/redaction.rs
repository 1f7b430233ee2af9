//! Redaction of prompts (opt-in: `[redaction] prompts = true`): the keys llmux knows
//! (provider and proxy keys) and secret-shaped text (`capture.redact_patterns`, by default
//! the shapes of common provider keys and bearer tokens) are masked in what goes to the
//! provider: system prompts, messages and tool results (a `.env` an agent read, a key pasted
//! into the chat). The same redactor masks the captures.

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;

use super::{Flow, Phases, Reads, RequestContext, Stage};
use crate::Error;
use crate::capture::Redactor;
use crate::capture::redact::MASK;
use crate::model::{Part, Request};

pub struct PromptRedaction {
    redactor: Option<Arc<Redactor>>,
}

impl PromptRedaction {
    /// `None`: prompts go out as they are.
    pub fn new(redactor: Option<Arc<Redactor>>) -> Self {
        Self { redactor }
    }
}

/// Whether `part` holds something to mask, read without taking the request mutably (which
/// copies its shared lists, see `model::Shared`).
fn holds_a_secret(redactor: &Redactor, part: &Part) -> bool {
    match part {
        Part::Text { text, .. } => matches!(redactor.redact(text), Cow::Owned(_)),
        Part::ToolResult { content, .. } => {
            content.iter().any(|inner| holds_a_secret(redactor, inner))
        }
        _ => false,
    }
}

/// Masks `part`'s text (and a tool result's), counting the masks.
fn redact_part(redactor: &Redactor, part: &mut Part, masked: &mut usize) {
    match part {
        Part::Text { text, .. } => {
            let before = text.matches(MASK).count();
            redactor.redact_in_place(text);
            *masked += text.matches(MASK).count().saturating_sub(before);
        }
        Part::ToolResult { content, .. } => {
            for inner in content {
                redact_part(redactor, inner, masked);
            }
        }
        _ => {}
    }
}

#[async_trait]
impl Stage for PromptRedaction {
    fn name(&self) -> &'static str {
        "prompt-redaction"
    }

    fn reads(&self) -> Reads {
        Reads::MESSAGES
    }

    fn phases(&self) -> Phases {
        Phases::ON_REQUEST.when(self.redactor.is_some())
    }

    async fn on_request(
        &self,
        ctx: &mut RequestContext,
        request: &mut Request,
    ) -> Result<Flow, Error> {
        let Some(redactor) = &self.redactor else {
            return Ok(Flow::Continue);
        };
        // Each list is taken mutably (which copies it when shared, see `model::Shared`)
        // only when it holds a secret.
        let mut masked = 0;
        let secret_in_system = request
            .system
            .iter()
            .any(|part| holds_a_secret(redactor, part));
        if secret_in_system {
            for part in request.system.iter_mut() {
                redact_part(redactor, part, &mut masked);
            }
        }
        let secret_in_messages = request
            .messages
            .iter()
            .flat_map(|m| &m.parts)
            .any(|part| holds_a_secret(redactor, part));
        if secret_in_messages {
            for part in request.messages.iter_mut().flat_map(|m| m.parts.iter_mut()) {
                redact_part(redactor, part, &mut masked);
            }
        }
        if masked > 0 {
            tracing::warn!(request_id = %ctx.request_id, masked, "secrets masked in the prompt");
            ctx.trail.intervene(
                "prompt-redaction",
                format!("{masked} secrets masked in the prompt"),
            );
        }
        Ok(Flow::Continue)
    }
}
