//! Planning phase: the first turns of a session go to a stronger model, with its own
//! sampling and reasoning overrides, until `max_turns` requests have gone there or the
//! model has made `max_file_writes` file-writing tool calls (the seed's
//! "Planning-Phase Strong Model Overrides").
//!
//! It sits below every other routing rule: a request that a one-off, a session override,
//! the static route, a forced model or an alias already routed is left alone. No override
//! applies when the client already asked for the strong model.

use std::sync::Arc;

use async_trait::async_trait;

use super::{AfterResponse, EventFilter, Phases, Reads, RequestContext, Route, RouteSource, Stage};
use crate::Error;
use crate::model::{Event, Reasoning, ReasoningEffort, Request};
use crate::state::{Session, StateStore};

#[derive(Debug, Clone, PartialEq)]
pub struct PlanningSettings {
    pub enabled: bool,
    /// `backend:model` (or a model of the default back-end).
    pub strong_model: Option<String>,
    pub max_turns: u64,
    pub max_file_writes: u64,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub reasoning_effort: Option<ReasoningEffort>,
    pub thinking_budget: Option<u64>,
}

impl Default for PlanningSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            strong_model: None,
            max_turns: 10,
            max_file_writes: 1,
            temperature: None,
            top_p: None,
            reasoning_effort: None,
            thinking_budget: None,
        }
    }
}

pub use super::tool_match::writes_files;

pub struct Planning {
    settings: PlanningSettings,
    state: Arc<dyn StateStore>,
}

impl Planning {
    pub fn new(settings: PlanningSettings, state: Arc<dyn StateStore>) -> Self {
        Self { settings, state }
    }

    fn active(&self) -> Option<&str> {
        self.settings
            .strong_model
            .as_deref()
            .filter(|_| self.settings.enabled)
    }
}

#[async_trait]
impl Stage for Planning {
    fn name(&self) -> &'static str {
        "planning-phase"
    }

    fn reads(&self) -> Reads {
        Reads::EVENTS
    }

    fn phases(&self) -> Phases {
        (Phases::ON_ROUTE | Phases::RESPONSE_FILTER).when(self.active().is_some())
    }

    async fn on_route(
        &self,
        ctx: &mut RequestContext,
        request: &mut Request,
        route: &mut Route<'_>,
    ) -> Result<(), Error> {
        let Some(strong) = self.active() else {
            return Ok(());
        };
        // As the seed has it, the phase works on the model names the aliases rewrote: it
        // claims a request an alias routed, and stays out when the client or an alias
        // already chose the strong model. Stronger rules (one-off, session, static route,
        // forced model) win over it.
        if !matches!(route.source(), RouteSource::Client | RouteSource::Alias) {
            return Ok(());
        }
        let chosen = route
            .target()
            .map(|t| format!("{}:{}", t.backend.id(), t.model));
        if request.model == strong || chosen.as_deref() == Some(strong) {
            return Ok(());
        }
        let settings = &self.settings;
        let (max_turns, max_file_writes) = (settings.max_turns, settings.max_file_writes);
        let in_phase =
            move |s: &Session| s.planning_turns < max_turns && s.file_writes < max_file_writes;
        let updated = self
            .state
            .update(&ctx.session_id, &|s| {
                if in_phase(s) {
                    s.planning_turns += 1;
                }
            })
            .await?;
        if !in_phase(&updated.before) {
            return Ok(());
        }
        route.choose(strong, RouteSource::Planning);
        if let Some(t) = settings.temperature {
            request.sampling.temperature = Some(t);
        }
        if let Some(p) = settings.top_p {
            request.sampling.top_p = Some(p);
        }
        if settings.reasoning_effort.is_some() || settings.thinking_budget.is_some() {
            request.reasoning = Some(Reasoning {
                effort: settings.reasoning_effort,
                budget_tokens: settings.thinking_budget,
            });
        }
        Ok(())
    }

    fn response_filter(
        &self,
        ctx: &RequestContext,
        _request: &Request,
    ) -> Option<Box<dyn EventFilter>> {
        self.active()?;
        Some(Box::new(FileWriteCounter {
            state: self.state.clone(),
            session: ctx.session_id.clone(),
            writes: 0,
        }))
    }
}

/// Counts the file-writing tool calls of a response into the session, once it ended.
struct FileWriteCounter {
    state: Arc<dyn StateStore>,
    session: String,
    writes: u64,
}

impl EventFilter for FileWriteCounter {
    fn on_event(&mut self, event: Event, out: &mut Vec<Event>) {
        if let Event::ToolCallStart { name, .. } = &event
            && writes_files(name)
        {
            self.writes += 1;
        }
        out.push(event);
    }

    fn after(&mut self) -> Option<AfterResponse> {
        let writes = std::mem::take(&mut self.writes);
        if writes == 0 {
            return None;
        }
        let (state, session) = (self.state.clone(), self.session.clone());
        Some(Box::pin(async move {
            if let Err(err) = state.update(&session, &|s| s.file_writes += writes).await {
                tracing::warn!(session, "planning: file writes not counted: {err}");
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Message, Part, Role};
    use crate::pipeline::RequestContext;
    use crate::state::MemoryStore;
    use std::time::Duration;

    fn stage(max_turns: u64) -> (Planning, Arc<dyn StateStore>) {
        let state: Arc<dyn StateStore> = Arc::new(MemoryStore::new(Duration::from_secs(60)));
        let settings = PlanningSettings {
            enabled: true,
            strong_model: Some("openai:o3".into()),
            max_turns,
            max_file_writes: 1,
            temperature: Some(0.2),
            reasoning_effort: Some(ReasoningEffort::High),
            ..PlanningSettings::default()
        };
        (Planning::new(settings, state.clone()), state)
    }

    /// The request after the planning stage, and where it goes (`backend:model`), when a
    /// rule `source` chose the client's model before it.
    async fn route(stage: &Planning, source: RouteSource) -> (Request, String) {
        let mut ctx = RequestContext::new(crate::model::Protocol::OpenAiChat);
        ctx.session_id = "s".into();
        let mut request = Request::new(
            "gpt-4o-mini",
            vec![Message::new(Role::User, vec![Part::text("plan it")])],
        );
        let router = crate::router::tests::router(None);
        let mut route = Route::new(&router);
        route.choose("openai:gpt-4o-mini", source);
        stage
            .on_route(&mut ctx, &mut request, &mut route)
            .await
            .unwrap();
        let target = route.into_target(&request.model).unwrap();
        (request, format!("{}:{}", target.backend.id(), target.model))
    }

    async fn routed_to(stage: &Planning, source: RouteSource) -> String {
        route(stage, source).await.1
    }

    #[tokio::test]
    async fn the_first_turns_go_to_the_strong_model_with_overrides() {
        let (stage, _) = stage(2);
        for _ in 0..2 {
            let (request, target) = route(&stage, RouteSource::Client).await;
            assert_eq!(target, "openai:o3");
            assert_eq!(request.sampling.temperature, Some(0.2));
            assert_eq!(
                request.reasoning.unwrap().effort,
                Some(ReasoningEffort::High)
            );
        }
        assert_eq!(
            routed_to(&stage, RouteSource::Client).await,
            "openai:gpt-4o-mini"
        );
    }

    #[tokio::test]
    async fn a_file_write_ends_the_phase() {
        let (stage, _) = stage(10);
        assert_eq!(routed_to(&stage, RouteSource::Client).await, "openai:o3");
        let mut ctx = RequestContext::new(crate::model::Protocol::OpenAiChat);
        ctx.session_id = "s".into();
        let request = Request::new("gpt-4o-mini", Vec::new());
        let mut filter = stage.response_filter(&ctx, &request).unwrap();
        let mut out = Vec::new();
        filter.on_event(
            Event::ToolCallStart {
                index: 0,
                id: "c".into(),
                name: "Write".into(),
            },
            &mut out,
        );
        assert_eq!(out.len(), 1, "events pass through");
        filter.after().expect("a write to count").await;
        assert_eq!(
            routed_to(&stage, RouteSource::Client).await,
            "openai:gpt-4o-mini"
        );
    }

    #[tokio::test]
    async fn stronger_rules_win_over_the_planning_phase() {
        let (stage, state) = stage(10);
        for source in [
            RouteSource::Session,
            RouteSource::ForceModel,
            RouteSource::StaticRoute,
            RouteSource::OneOff,
        ] {
            assert_eq!(routed_to(&stage, source).await, "openai:gpt-4o-mini");
        }
        assert_eq!(state.session("s").await.unwrap().planning_turns, 0);
    }

    #[tokio::test]
    async fn the_phase_applies_after_an_alias_unless_it_chose_the_strong_model() {
        let (stage, state) = stage(10);
        assert_eq!(routed_to(&stage, RouteSource::Alias).await, "openai:o3");
        assert_eq!(state.session("s").await.unwrap().planning_turns, 1);

        // An alias that already leads to the strong model: nothing to override, no turn.
        let mut ctx = RequestContext::new(crate::model::Protocol::OpenAiChat);
        ctx.session_id = "t".into();
        let mut request = Request::new("smart", Vec::new());
        let router = crate::router::tests::router(None);
        let mut route = Route::new(&router);
        route.choose("openai:o3", RouteSource::Alias);
        stage
            .on_route(&mut ctx, &mut request, &mut route)
            .await
            .unwrap();
        assert_eq!(route.source(), RouteSource::Alias);
        assert_eq!(request.sampling.temperature, None, "no overrides");
        assert_eq!(state.session("t").await.unwrap().planning_turns, 0);
    }

    #[test]
    fn file_writing_tools_are_recognised() {
        for name in [
            "Write",
            "Edit",
            "MultiEdit",
            "apply_patch",
            "write_to_file",
            "str_replace_based_edit_tool",
        ] {
            assert!(writes_files(name), "{name}");
        }
        for name in ["Read", "Bash", "Grep", "list_files"] {
            assert!(!writes_files(name), "{name}");
        }
    }
}
