//! Routing: which back-end and model serve a request.
//!
//! A `backend:model` string names both when the part before the first `:` is a configured
//! back-end id; anything else is a model of the default back-end (model names may hold
//! colons: `llama3:8b`, `qwen/qwen3-coder:free`). A failover route's name (`coder`, or
//! `route:coder`) stands for its legs, tried in order: a [`Plan`].

pub mod breaker;
pub mod health;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::Error;
use crate::backend::Backend;
use crate::config::routes::FailoverRoute;

/// Where a request goes.
#[derive(Clone)]
pub struct Target {
    pub backend: Arc<dyn Backend>,
    pub model: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.backend.id(), self.model)
    }
}

/// Where a request may go, in order: one target, or the legs of a failover route.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Never empty.
    pub legs: Vec<Target>,
    /// The failover route the legs come from: when and how often to move on.
    pub route: Option<Arc<FailoverRoute>>,
}

impl Plan {
    pub fn single(target: Target) -> Self {
        Self {
            legs: vec![target],
            route: None,
        }
    }

    pub fn first(&self) -> &Target {
        &self.legs[0]
    }
}

pub struct Router {
    backends: BTreeMap<String, Arc<dyn Backend>>,
    default_backend: String,
    routes: BTreeMap<String, Arc<FailoverRoute>>,
}

impl Router {
    pub fn new(backends: BTreeMap<String, Arc<dyn Backend>>, default_backend: String) -> Self {
        Self {
            backends,
            default_backend,
            routes: BTreeMap::new(),
        }
    }

    /// The configured failover routes (`[routes.NAME]`).
    pub fn with_routes(mut self, routes: &BTreeMap<String, FailoverRoute>) -> Self {
        self.routes = routes
            .iter()
            .map(|(name, route)| (name.clone(), Arc::new(route.clone())))
            .collect();
        self
    }

    /// The configured failover route called `name`.
    pub fn route(&self, name: &str) -> Option<&Arc<FailoverRoute>> {
        self.routes.get(name)
    }

    /// The legs of `route`, each resolved. A leg that does not resolve (a model its
    /// back-end does not serve) is left out with a warning; when none resolves, the first
    /// leg's error.
    pub fn plan(&self, route: Arc<FailoverRoute>) -> Result<Plan, Error> {
        let mut legs = Vec::with_capacity(route.legs.len());
        let mut first_error = None;
        for leg in &route.legs {
            match self.resolve(leg) {
                Ok(target) => legs.push(target),
                Err(err) => {
                    tracing::warn!(route = %route.name, leg = %leg, "failover leg left out: {err}");
                    first_error.get_or_insert(err);
                }
            }
        }
        if legs.is_empty() {
            return Err(first_error.unwrap_or_else(|| {
                Error::not_found(format!("failover route '{}' has no legs", route.name))
            }));
        }
        Ok(Plan {
            legs,
            route: Some(route),
        })
    }

    pub fn backends(&self) -> &BTreeMap<String, Arc<dyn Backend>> {
        &self.backends
    }

    pub fn default_backend(&self) -> &str {
        &self.default_backend
    }

    pub fn backend(&self, id: &str) -> Result<&Arc<dyn Backend>, Error> {
        self.backends.get(id).ok_or_else(|| {
            Error::not_found(format!(
                "unknown back-end '{id}'; configured back-ends: {}",
                self.backend_list()
            ))
        })
    }

    fn backend_list(&self) -> String {
        self.backends.keys().cloned().collect::<Vec<_>>().join(", ")
    }

    /// Resolves the client's model string to a target.
    pub fn resolve(&self, model: &str) -> Result<Target, Error> {
        let (backend, model) = match model.split_once(':') {
            Some((id, rest)) if self.backends.contains_key(id) && !rest.is_empty() => {
                (self.backend(id)?, rest)
            }
            _ => (self.backend(&self.default_backend)?, model),
        };
        if let Some(known) = backend.known_models()
            && !known.iter().any(|m| m == model)
        {
            return Err(Error::not_found(format!(
                "unknown model '{model}' for back-end '{}'; its models: {}; name another \
                 back-end as 'backend:model' (back-ends: {})",
                backend.id(),
                known.join(", "),
                self.backend_list()
            )));
        }
        Ok(Target {
            backend: backend.clone(),
            model: model.to_owned(),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::backend::build_all;
    use crate::config::ConfigLoader;
    use crate::credentials::EnvSecrets;

    /// A router over the default back-ends, `mock` answering only `models` when given.
    pub(crate) fn router(models: Option<&str>) -> Router {
        let mut loader =
            ConfigLoader::new()
                .env(|_| None)
                .set("default_backend", "mock", "--default-backend");
        if let Some(models) = models {
            loader = loader.set(
                "backends.mock.models",
                toml::Value::Array(vec![models.into()]),
                "test",
            );
        }
        let config = loader.load().unwrap().config;
        let backends = build_all(&config, &EnvSecrets::new(|_| None)).unwrap();
        Router::new(backends, config.default_backend)
    }

    #[test]
    fn backend_prefix_names_the_backend_and_other_colons_stay_in_the_model() {
        let router = router(None);
        let target = router.resolve("openai:gpt-4o").unwrap();
        assert_eq!(
            (target.backend.id(), target.model.as_str()),
            ("openai", "gpt-4o")
        );
        let target = router.resolve("llama3:8b").unwrap();
        assert_eq!(
            (target.backend.id(), target.model.as_str()),
            ("mock", "llama3:8b")
        );
    }

    #[test]
    fn configured_model_lists_refuse_other_models_and_list_the_valid_ones() {
        let router = router(Some("m1"));
        assert!(router.resolve("m1").is_ok());
        let err = router.resolve("m2").unwrap_err();
        assert_eq!(err.status(), 404);
        assert!(err.to_string().contains("m1"), "{err}");
        assert!(err.to_string().contains("openrouter"), "{err}");
    }
}
