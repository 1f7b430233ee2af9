//! Routing rules: where a request goes, and with which temperature and reasoning.
//!
//! Precedence, strongest first (DESIGN.md): one-off `!/oneoff` > session `!/backend` and
//! `!/model` (through the aliases) > `--static-route` > `--force-model` > the planning phase
//! (`planning.rs`, which works on the names model aliases rewrote, as the seed does) > model
//! aliases > the client's model on the default back-end.

use std::sync::Arc;

use async_trait::async_trait;

use super::model_aliases::{AliasRule, rewrite};
pub use super::route::RouteSource;
use super::{Flow, Phases, Reads, RequestContext, Route, Stage};
use crate::Error;
use crate::model::Request;
use crate::state::{Session, StateStore};

/// The configured rules (`--static-route`, `--force-model`, `--model-alias`).
#[derive(Debug, Clone, Default)]
pub struct RoutingRules {
    pub static_route: Option<String>,
    pub force_model: Option<String>,
    pub aliases: Vec<AliasRule>,
}

impl RoutingRules {
    /// Compiles the configured aliases (already checked by config validation).
    pub fn from_config(config: &crate::Config) -> Result<Self, Error> {
        let aliases = config
            .model_aliases
            .iter()
            .map(|(p, r)| AliasRule::new(p, r).map_err(Error::internal))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            static_route: config.static_route.clone(),
            force_model: config.force_model.clone(),
            aliases,
        })
    }

    /// The model string the request goes to, from the session and the rules.
    pub fn route(&self, session: &Session, client_model: &str) -> String {
        self.decide(session, client_model).0
    }

    /// The route and the rule that chose it.
    pub fn decide(&self, session: &Session, client_model: &str) -> (String, RouteSource) {
        if let Some(route) = &session.oneoff {
            return (route.clone(), RouteSource::OneOff);
        }
        if let Some(mut route) = session_route(session, client_model) {
            // A session model goes through the aliases, as `!/model(...)` does in the seed.
            if session.model.is_some()
                && let Some(rewritten) = rewrite(&self.aliases, &route)
            {
                route = rewritten;
            }
            return (route, RouteSource::Session);
        }
        if let Some(route) = &self.static_route {
            return (route.clone(), RouteSource::StaticRoute);
        }
        if let Some(model) = &self.force_model {
            return (model.clone(), RouteSource::ForceModel);
        }
        match rewrite(&self.aliases, client_model) {
            Some(route) => (route, RouteSource::Alias),
            None => (client_model.to_owned(), RouteSource::Client),
        }
    }
}

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

pub struct Routing {
    rules: RoutingRules,
    state: Arc<dyn StateStore>,
}

impl Routing {
    pub fn new(rules: RoutingRules, state: Arc<dyn StateStore>) -> Self {
        Self { rules, state }
    }
}

#[async_trait]
impl Stage for Routing {
    fn name(&self) -> &'static str {
        "routing"
    }

    fn reads(&self) -> Reads {
        Reads::NOTHING
    }

    fn phases(&self) -> Phases {
        Phases::ON_REQUEST | Phases::ON_ROUTE
    }

    /// Counts the turn, uses up a one-off route, and applies the session's sampling.
    async fn on_request(
        &self,
        ctx: &mut RequestContext,
        request: &mut Request,
    ) -> Result<Flow, Error> {
        // A one-off route is used once.
        let updated = self.state.begin_turn(&ctx.session_id).await?;
        // This request still takes the one-off route it used up.
        ctx.session = Session {
            oneoff: updated.before.oneoff,
            ..updated.after
        };
        if let Some(t) = ctx.session.temperature {
            request.sampling.temperature = Some(t);
        }
        if let Some(reasoning) = ctx.session.reasoning.clone() {
            request.reasoning = Some(reasoning);
        }
        request.client.project_dir = ctx.session.project_dir.clone();
        Ok(Flow::Continue)
    }

    async fn on_route(
        &self,
        ctx: &mut RequestContext,
        request: &mut Request,
        route: &mut Route<'_>,
    ) -> Result<(), Error> {
        let (chosen, source) = self.rules.decide(&ctx.session, &request.model);
        route.choose(&chosen, source);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One row of the precedence table each: the strongest rule present wins.
    #[test]
    fn precedence_table() {
        let rules = RoutingRules {
            static_route: Some("zai:glm-static".into()),
            force_model: Some("forced".into()),
            aliases: vec![AliasRule::new("^gpt-(.*)", "openrouter:openai/gpt-\\1").unwrap()],
        };
        let none = Session::default();
        let session_model = Session {
            model: Some("gpt-5".into()),
            ..Session::default()
        };
        let oneoff = Session {
            oneoff: Some("mock:once".into()),
            ..session_model.clone()
        };
        // one-off > session
        assert_eq!(rules.route(&oneoff, "gpt-4o"), "mock:once");
        // session (through aliases) > static route
        assert_eq!(
            rules.route(&session_model, "gpt-4o"),
            "openrouter:openai/gpt-5"
        );
        // static route > force model
        assert_eq!(rules.route(&none, "gpt-4o"), "zai:glm-static");
        // force model > aliases
        let forced = RoutingRules {
            static_route: None,
            ..rules.clone()
        };
        assert_eq!(forced.route(&none, "gpt-4o"), "forced");
        // aliases > the client's model
        let aliased = RoutingRules {
            force_model: None,
            ..forced.clone()
        };
        assert_eq!(aliased.route(&none, "gpt-4o"), "openrouter:openai/gpt-4o");
        // the client's model when nothing applies
        assert_eq!(aliased.route(&none, "claude-x"), "claude-x");
    }

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
