//! Session routing: what the user chose with in-chat commands decides where the request
//! goes, and with which temperature and reasoning.
//!
//! Precedence, strongest first (DESIGN.md): one-off `!/oneoff` > session `!/backend` and
//! `!/model` > `--static-route` > `--force-model` > model aliases > planning phase > the
//! client's model on the default back-end. This stage covers the first two; the later
//! rules are stages of their own.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Flow, RequestContext, Stage};
use crate::Error;
use crate::model::Request;
use crate::state::{Session, StateStore};

/// The model string the session sends `client_model` to, if it overrides it.
pub fn session_route(session: &Session, client_model: &str) -> Option<String> {
    if let Some(route) = &session.oneoff {
        return Some(route.clone());
    }
    match (&session.backend, &session.model) {
        (_, Some(model)) if model.contains(':') => Some(model.clone()),
        (Some(backend), Some(model)) => Some(format!("{backend}:{model}")),
        (None, Some(model)) => Some(model.clone()),
        (Some(backend), None) => {
            // Keep the client's model, on the chosen back-end.
            let model = client_model
                .split_once(':')
                .map_or(client_model, |(_, m)| m);
            Some(format!("{backend}:{model}"))
        }
        (None, None) => None,
    }
}

pub struct SessionRouting {
    state: Arc<dyn StateStore>,
}

impl SessionRouting {
    pub fn new(state: Arc<dyn StateStore>) -> Self {
        Self { state }
    }
}

#[async_trait]
impl Stage for SessionRouting {
    fn name(&self) -> &'static str {
        "session-routing"
    }

    async fn on_request(
        &self,
        ctx: &mut RequestContext,
        request: &mut Request,
    ) -> Result<Flow, Error> {
        let mut session = Session::default();
        self.state.update(&ctx.session_id, &mut |s| {
            s.turns += 1;
            session = s.clone();
            // A one-off route is used once.
            s.oneoff = None;
        });
        if let Some(route) = session_route(&session, &request.model) {
            request.model = route;
        }
        if let Some(t) = session.temperature {
            request.sampling.temperature = Some(t);
        }
        if let Some(reasoning) = session.reasoning {
            request.reasoning = Some(reasoning);
        }
        Ok(Flow::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oneoff_beats_session_model_which_beats_session_backend() {
        let mut session = Session {
            backend: Some("openrouter".into()),
            ..Session::default()
        };
        assert_eq!(
            session_route(&session, "gpt-4o").as_deref(),
            Some("openrouter:gpt-4o")
        );
        assert_eq!(
            session_route(&session, "openai:gpt-4o").as_deref(),
            Some("openrouter:gpt-4o")
        );
        session.model = Some("qwen".into());
        assert_eq!(
            session_route(&session, "gpt-4o").as_deref(),
            Some("openrouter:qwen")
        );
        session.model = Some("zai:glm".into());
        assert_eq!(
            session_route(&session, "gpt-4o").as_deref(),
            Some("zai:glm")
        );
        session.oneoff = Some("mock:m".into());
        assert_eq!(session_route(&session, "gpt-4o").as_deref(), Some("mock:m"));
        assert_eq!(session_route(&Session::default(), "gpt-4o"), None);
    }
}
