//! The route of a request, as the `on_route` phase chooses it: a typed target (a back-end
//! and a model) or a failover route's legs, and the rule that chose it, so a weaker rule
//! leaves a stronger one alone.

use std::sync::Arc;

use crate::Error;
use crate::config::routes::{FailoverRoute, route_name};
use crate::router::{Plan, Router, Target};
use crate::state::Session;

/// Which rule chose a request's route; later rules (the planning phase) only act on
/// requests no stronger rule claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteSource {
    OneOff,
    Session,
    StaticRoute,
    ForceModel,
    Alias,
    Planning,
    Client,
}

/// The route being chosen for one request.
pub struct Route<'a> {
    router: &'a Router,
    chosen: Option<Chosen>,
}

struct Chosen {
    /// As the rule wrote it: a failover route's name stands for the route.
    spec: String,
    /// An unknown back-end or model is an error only if no later stage chooses again.
    target: Result<Target, Error>,
    source: RouteSource,
}

impl<'a> Route<'a> {
    pub fn new(router: &'a Router) -> Self {
        Self {
            router,
            chosen: None,
        }
    }

    /// Sends the request to `route` (`backend:model`, or a model of the default back-end),
    /// as rule `source` decided.
    pub fn choose(&mut self, route: &str, source: RouteSource) {
        self.chosen = Some(Chosen {
            spec: route.to_owned(),
            target: self.router.resolve(route),
            source,
        });
    }

    /// The rule that chose the route so far; [`RouteSource::Client`] when none did.
    pub fn source(&self) -> RouteSource {
        self.chosen
            .as_ref()
            .map_or(RouteSource::Client, |chosen| chosen.source)
    }

    /// The target chosen so far, if it resolved.
    pub fn target(&self) -> Option<&Target> {
        self.chosen.as_ref()?.target.as_ref().ok()
    }

    /// The chosen target, or the client's `model` when no stage chose one.
    pub fn into_target(self, model: &str) -> Result<Target, Error> {
        match self.chosen {
            Some(chosen) => chosen.target,
            None => self.router.resolve(model),
        }
    }

    /// Where the request goes: the legs of a failover route when the chosen route (or the
    /// client's `model`) names one, made in `session`'s chat or configured, else the
    /// chosen target alone.
    pub fn into_plan(self, model: &str, session: &Session) -> Result<Plan, Error> {
        let router = self.router;
        let spec = self.chosen.as_ref().map_or(model, |c| c.spec.as_str());
        let name = route_name(spec);
        if let Some(legs) = session.failover_routes.get(name) {
            let route = FailoverRoute::with_defaults(name, legs.clone());
            return router.plan(Arc::new(route));
        }
        if let Some(route) = router.route(name) {
            return router.plan(route.clone());
        }
        if spec.starts_with("route:") {
            return Err(Error::not_found(format!(
                "unknown failover route '{name}'; configure [routes.{name}] or create it in \
                 chat with !/failover-route(create {name})"
            )));
        }
        self.into_target(model).map(Plan::single)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_choice_replaces_an_unknown_route_and_the_client_model_is_the_default() {
        let router = crate::router::tests::router(Some("m1"));
        let mut route = Route::new(&router);
        assert_eq!(route.source(), RouteSource::Client);
        route.choose("mock:unknown", RouteSource::Alias);
        assert!(route.target().is_none(), "mock only answers m1");
        route.choose("openai:gpt-4o", RouteSource::Planning);
        assert_eq!(route.source(), RouteSource::Planning);
        let target = route.into_target("ignored").unwrap();
        assert_eq!(
            (target.backend.id(), target.model.as_str()),
            ("openai", "gpt-4o")
        );
        let client = Route::new(&router).into_target("mock:m1").unwrap();
        assert_eq!((client.backend.id(), client.model.as_str()), ("mock", "m1"));
        let unknown = Route::new(&router).into_target("mock:m2");
        assert!(unknown.is_err(), "an unknown client model is an error");
    }
}
