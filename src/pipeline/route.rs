//! The route of a request, as the `on_route` phase chooses it: a typed target (a back-end
//! and a model), and the rule that chose it, so a weaker rule leaves a stronger one alone.

use crate::Error;
use crate::router::{Router, Target};

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
