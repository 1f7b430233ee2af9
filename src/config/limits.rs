//! Per-model limits, as the seed writes them: `[models."backend:model".limits]` (or
//! `[models."model".limits]` for a model on any back-end) and
//! `[model_defaults."model".limits]`, each field falling back to the next table that sets
//! it; `force_context_window` (FORCE_CONTEXT_WINDOW, `--force-context-window`) overrides the
//! input limit of every model.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Layered, bad};

/// `[models."KEY"]` and `[model_defaults."KEY"]`: a model's table.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    #[serde(default)]
    pub limits: RawLimits,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// The whole window (input and output), in tokens; the input limit when
    /// `max_input_tokens` is not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_input_tokens: Option<u64>,
    /// A request asking for more output gets this many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    /// Input tokens per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u32>,
    /// How long a request over a rate limit waits for its turn before it is refused (0:
    /// refused at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_timeout_seconds: Option<f64>,
}

/// A model's effective limits.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ModelLimits {
    /// Input tokens a request may hold.
    pub max_input_tokens: Option<u64>,
    pub max_output_tokens: Option<u64>,
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u32>,
    pub queue_timeout: Duration,
}

impl ModelLimits {
    pub fn is_empty(&self) -> bool {
        self.max_input_tokens.is_none()
            && self.max_output_tokens.is_none()
            && self.requests_per_minute.is_none()
            && self.tokens_per_minute.is_none()
    }

    pub fn rate_limited(&self) -> bool {
        self.requests_per_minute.is_some() || self.tokens_per_minute.is_some()
    }
}

/// Every limit table, checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    /// `[models."backend:model"]` and `[models."model"]`.
    models: BTreeMap<String, RawLimits>,
    /// `[model_defaults."model"]`.
    defaults: BTreeMap<String, RawLimits>,
    /// The input limit of every model, when forced.
    pub force_context_window: Option<u64>,
}

impl Limits {
    /// Whether any limit is configured (the limits stage takes part only then).
    pub fn any(&self) -> bool {
        self.force_context_window.is_some() || !self.models.is_empty() || !self.defaults.is_empty()
    }

    /// The limits of `model` on `backend`: each field from `models."backend:model"`, else
    /// `models."model"`, else `model_defaults."model"`.
    pub fn of(&self, backend: &str, model: &str) -> ModelLimits {
        let tables: Vec<&RawLimits> = [
            self.models.get(&format!("{backend}:{model}")),
            self.models.get(model),
            self.defaults.get(model),
        ]
        .into_iter()
        .flatten()
        .collect();
        let first = |field: fn(&RawLimits) -> Option<u64>| tables.iter().find_map(|t| field(t));
        let first_u32 = |field: fn(&RawLimits) -> Option<u32>| tables.iter().find_map(|t| field(t));
        let input = first(|t| t.max_input_tokens).or_else(|| first(|t| t.context_window));
        ModelLimits {
            max_input_tokens: self.force_context_window.or(input),
            max_output_tokens: first(|t| t.max_output_tokens),
            requests_per_minute: first_u32(|t| t.requests_per_minute),
            tokens_per_minute: first_u32(|t| t.tokens_per_minute),
            queue_timeout: tables
                .iter()
                .find_map(|t| t.queue_timeout_seconds)
                .map_or(Duration::ZERO, Duration::from_secs_f64),
        }
    }
}

/// `models`, `model_defaults` and `force_context_window`, checked: every problem names its
/// key.
pub fn validate(
    models: &BTreeMap<String, RawModel>,
    defaults: &BTreeMap<String, RawModel>,
    force_context_window: Option<u64>,
    layered: &Layered,
    problems: &mut Vec<String>,
) -> Limits {
    let mut check = |table: &str, tables: &BTreeMap<String, RawModel>| {
        let mut checked = BTreeMap::new();
        for (model, raw) in tables {
            let key = |field: &str| format!("{table}.\"{model}\".limits.{field}");
            let limits = &raw.limits;
            for (field, value) in [
                ("context_window", limits.context_window),
                ("max_input_tokens", limits.max_input_tokens),
                ("max_output_tokens", limits.max_output_tokens),
                (
                    "requests_per_minute",
                    limits.requests_per_minute.map(u64::from),
                ),
                ("tokens_per_minute", limits.tokens_per_minute.map(u64::from)),
            ] {
                if value == Some(0) {
                    problems.push(bad(layered, &key(field), 0, "must be at least 1"));
                }
            }
            if let (Some(input), Some(window)) = (limits.max_input_tokens, limits.context_window)
                && input > window
            {
                problems.push(bad(
                    layered,
                    &key("max_input_tokens"),
                    input,
                    format!("is larger than context_window ({window})"),
                ));
            }
            if let Some(wait) = limits.queue_timeout_seconds
                && !(0.0..=600.0).contains(&wait)
            {
                problems.push(bad(
                    layered,
                    &key("queue_timeout_seconds"),
                    wait,
                    "must be 0 to 600 seconds",
                ));
            }
            checked.insert(model.clone(), limits.clone());
        }
        checked
    };
    let models = check("models", models);
    let defaults = check("model_defaults", defaults);
    if force_context_window == Some(0) {
        problems.push(bad(
            layered,
            "force_context_window",
            0,
            "must be at least 1 token",
        ));
    }
    Limits {
        models,
        defaults,
        force_context_window: force_context_window.filter(|w| *w > 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(window: Option<u64>, input: Option<u64>, rpm: Option<u32>) -> RawLimits {
        RawLimits {
            context_window: window,
            max_input_tokens: input,
            requests_per_minute: rpm,
            ..RawLimits::default()
        }
    }

    #[test]
    fn each_field_falls_back_from_backend_model_to_model_to_defaults() {
        let all = Limits {
            models: BTreeMap::from([
                ("zai:glm-4.6".into(), limits(None, Some(100), None)),
                ("glm-4.6".into(), limits(Some(500), None, Some(30))),
            ]),
            defaults: BTreeMap::from([("glm-4.6".into(), limits(Some(900), None, Some(60)))]),
            force_context_window: None,
        };
        let zai = all.of("zai", "glm-4.6");
        assert_eq!(zai.max_input_tokens, Some(100));
        assert_eq!(zai.requests_per_minute, Some(30));
        let other = all.of("openrouter", "glm-4.6");
        assert_eq!(
            other.max_input_tokens,
            Some(500),
            "the window is the input limit"
        );
        assert!(all.of("openrouter", "gpt-4o").is_empty());
        let forced = Limits {
            force_context_window: Some(8000),
            ..all
        };
        assert_eq!(forced.of("zai", "glm-4.6").max_input_tokens, Some(8000));
        assert_eq!(forced.of("x", "anything").max_input_tokens, Some(8000));
    }
}
