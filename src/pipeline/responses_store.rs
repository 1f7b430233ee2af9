//! The Responses API's stored answers (`[responses]`): an answer is kept (bounded by count
//! and age; not when the request says `store: false`), so a later request's
//! `previous_response_id` continues the conversation on any back-end: this stage puts the
//! stored turn back in front of the new input. It acts on Responses requests only.
//!
//! It is early in the list, so its filter sees the answer last, as the client gets it: that
//! is what it stores, under a `resp_` id it gives answers from other protocols' back-ends.

use std::sync::Arc;

use async_trait::async_trait;

use super::{EventFilter, Flow, Phases, Reads, RequestContext, Stage};
use crate::Error;
use crate::model::{Event, Message, Part, Protocol, Request, ResponseBuilder, Role, Shared};
use crate::state::responses::{ResponseStore, StoredResponse};

pub struct ResponsesStore {
    store: Arc<ResponseStore>,
}

impl ResponsesStore {
    pub fn new(store: Arc<ResponseStore>) -> Self {
        Self { store }
    }

    /// Puts the stored turn named by `previous_response_id` in front of the new input.
    async fn continue_previous(&self, request: &mut Request) -> Result<(), Error> {
        let Some(field) = request.extensions.fields.get("previous_response_id") else {
            return Ok(());
        };
        let Some(id) = field.as_str().map(str::to_owned) else {
            return Err(Error::invalid_field(
                "previous_response_id",
                "'previous_response_id' must be a string",
            ));
        };
        let stored = self.store.fetch(&id).await.ok_or_else(|| {
            Error::not_found(format!(
                "previous response '{id}' is not stored by llmux (answers are kept for \
                 [responses] retention_seconds, max_stored of them)"
            ))
        })?;
        request.extensions.fields.remove("previous_response_id");
        let mut messages = stored.messages;
        messages.push(Message::new(Role::Assistant, stored.response.parts));
        messages.append(&mut request.messages);
        request.messages = messages.into();
        if request.system.is_empty() {
            request.system = stored.system.into();
        }
        Ok(())
    }
}

fn is_responses(ctx: &RequestContext) -> bool {
    ctx.frontend == Protocol::OpenAiResponses
}

#[async_trait]
impl Stage for ResponsesStore {
    fn name(&self) -> &'static str {
        "responses-store"
    }

    fn reads(&self) -> Reads {
        Reads::ALL
    }

    fn phases(&self) -> Phases {
        Phases::ON_REQUEST | Phases::RESPONSE_FILTER
    }

    async fn on_request(
        &self,
        ctx: &mut RequestContext,
        request: &mut Request,
    ) -> Result<Flow, Error> {
        if is_responses(ctx) {
            self.continue_previous(request).await?;
        }
        Ok(Flow::Continue)
    }

    fn response_filter(
        &self,
        ctx: &RequestContext,
        request: &Request,
    ) -> Option<Box<dyn EventFilter>> {
        if !is_responses(ctx) {
            return None;
        }
        // `store: false` (what Codex sends) means the client keeps the state itself.
        // Otherwise the conversation is kept with the answer.
        let store = request.extensions.fields.get("store") != Some(&serde_json::Value::Bool(false));
        let keep = store.then(|| Keep {
            store: self.store.clone(),
            system: request.system.clone(),
            messages: request.messages.clone(),
            echo: ctx.answer_echo.clone(),
        });
        Some(Box::new(StoreAnswer {
            keep,
            builder: ResponseBuilder::new(),
            failed: false,
        }))
    }
}

/// Gives the answer a Responses id and, when it is kept, stores it with the conversation
/// once it ended.
struct StoreAnswer {
    keep: Option<Keep>,
    builder: ResponseBuilder,
    failed: bool,
}

/// What a kept answer is stored with.
struct Keep {
    store: Arc<ResponseStore>,
    // Shared with the request: copied when stored if the request (or a stage's change to
    // it) still holds the lists then.
    system: Shared<Part>,
    messages: Shared<Message>,
    echo: Option<Arc<super::AnswerEcho>>,
}

/// A fresh `resp_` id for answers from back-ends that do not speak Responses.
fn fresh_id() -> String {
    format!("resp_{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

impl EventFilter for StoreAnswer {
    fn on_event(&mut self, event: Event, out: &mut Vec<Event>) {
        let event = match event {
            Event::Start {
                id,
                model,
                created,
                extensions,
            } if !id.starts_with("resp_") => Event::Start {
                id: fresh_id(),
                model,
                created,
                extensions,
            },
            other => other,
        };
        if self.keep.is_some() && !self.failed && self.builder.push(event.clone()).is_err() {
            self.failed = true;
        }
        out.push(event);
    }

    fn on_end(&mut self, _out: &mut Vec<Event>) {
        let Some(keep) = self.keep.take().filter(|_| !self.failed) else {
            return;
        };
        let response = std::mem::take(&mut self.builder).finish();
        let id = response.id.clone();
        let stored = StoredResponse {
            system: keep.system.into_vec(),
            messages: keep.messages.into_vec(),
            response,
            echo: keep
                .echo
                .as_deref()
                .map(super::AnswerEcho::to_map)
                .unwrap_or_default(),
        };
        keep.store.put(&id, stored);
    }
}
