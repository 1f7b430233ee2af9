//! Empty-response recovery (the seed's): an answer that ends with no text and no tool call
//! (models do this now and then, most often after a long tool result) is asked for once
//! more, with a steering message telling the model its answer was empty. The answer is
//! held back only until its first text or tool call, so a normal answer streams as before;
//! only an answer that turns out empty costs a second call. Answers stopped by a content
//! filter or a refusal are passed on as they are: asking again would not change them.
//!
//! An answer that starts by reasoning is passed on from its first reasoning event, so the
//! client sees the model think as it happens; such an answer is not asked for again even if
//! no text follows (the retry has to be decided before anything reaches the client, and a
//! model may think for minutes).

use async_trait::async_trait;
use futures::StreamExt;

use super::{Phases, Reads, RequestContext, Stage, Upstream};
use crate::Error;
use crate::backend::EventStream;
use crate::model::{Event, FinishReason, Message, Part, Request, Role};

/// What the model is told when its answer was empty.
pub const DEFAULT_PROMPT: &str = "Your previous response was empty: it had no text and no \
     tool call. Continue the task: answer the user, or call the tool you need next.";

pub struct EmptyResponseRecovery {
    /// What the model is told; `None`: recovery is off.
    prompt: Option<String>,
}

impl EmptyResponseRecovery {
    pub fn new(prompt: Option<String>) -> Self {
        Self { prompt }
    }
}

/// An answer read up to its first content.
enum Peeked {
    /// It has content (or failed): the events so far, then the rest.
    Content(EventStream),
    /// It ended with nothing to show; its events.
    Empty(Vec<Event>),
}

async fn peek(mut events: EventStream) -> Peeked {
    let mut held = Vec::new();
    while let Some(event) = events.next().await {
        let content = match &event {
            Event::TextDelta(text) => !text.trim().is_empty(),
            Event::RefusalDelta(_)
            | Event::ToolCallStart { .. }
            | Event::ThinkingDelta { .. }
            | Event::RedactedThinking(_)
            | Event::Error(_) => true,
            Event::Finish { reason, .. } => {
                matches!(reason, FinishReason::ContentFilter | FinishReason::Refusal)
            }
            _ => false,
        };
        held.push(event);
        if content {
            return Peeked::Content(Box::pin(futures::stream::iter(held).chain(events)));
        }
    }
    Peeked::Empty(held)
}

#[async_trait]
impl Stage for EmptyResponseRecovery {
    fn name(&self) -> &'static str {
        "empty-response-recovery"
    }

    fn reads(&self) -> Reads {
        Reads::EVENTS
    }

    fn phases(&self) -> Phases {
        Phases::AROUND_UPSTREAM.when(self.prompt.is_some())
    }

    async fn around_upstream(
        &self,
        ctx: &RequestContext,
        request: &Request,
        next: Upstream<'_>,
    ) -> Result<EventStream, Error> {
        let Some(prompt) = &self.prompt else {
            return next.send(request).await;
        };
        let events = next.send(request).await?;
        let empty = match peek(events).await {
            Peeked::Content(events) => return Ok(events),
            Peeked::Empty(events) => events,
        };
        tracing::info!(
            request_id = %ctx.request_id,
            leg = ?next.target(),
            "empty answer: asking once more with a steering message"
        );
        ctx.trail.intervene(
            "empty-response-recovery",
            "an empty answer was asked for again",
        );
        let mut again = request.clone();
        again
            .messages
            .push(Message::new(Role::User, vec![Part::text(prompt.clone())]));
        match next.send(&again).await {
            Ok(events) => Ok(events),
            // The empty answer is still an answer; the retry's failure is in the log.
            Err(err) => {
                tracing::warn!(request_id = %ctx.request_id, "the retry of an empty answer failed: {err}");
                Ok(Box::pin(futures::stream::iter(empty)))
            }
        }
    }
}
