//! Reasoning aliases per model: what `!/max`, `!/medium`, `!/low` and `!/no-think` mean for
//! the model a request goes to (config/reasoning_aliases.toml). Without a matching entry an
//! alias only sets the reasoning effort, which each protocol's encoder maps to its own
//! control.

use std::borrow::Cow;

use async_trait::async_trait;
use regex::Regex;
use serde::Deserialize;

use super::{Phases, Reads, RequestContext, Stage};
use crate::Error;
use crate::model::{Part, Reasoning, ReasoningEffort, Request, Role};
use crate::router::Target;

/// The shipped file (no entries; it documents the format).
pub const DEFAULT_FILE: &str = include_str!("../../config/reasoning_aliases.toml");

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModeSettings {
    pub reasoning_effort: Option<String>,
    pub thinking_budget: Option<u64>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u64>,
    pub prompt_prefix: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    pattern: String,
    #[serde(default)]
    max: Option<ModeSettings>,
    #[serde(default)]
    medium: Option<ModeSettings>,
    #[serde(default)]
    low: Option<ModeSettings>,
    #[serde(default, rename = "no-think")]
    no_think: Option<ModeSettings>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    models: Vec<RawEntry>,
}

#[derive(Debug, Clone)]
pub struct ModelModes {
    pattern: Regex,
    modes: Vec<(&'static str, ModeSettings)>,
}

impl PartialEq for ModelModes {
    fn eq(&self, other: &Self) -> bool {
        self.pattern.as_str() == other.pattern.as_str() && self.modes == other.modes
    }
}

/// Reads and checks a reasoning-aliases file.
pub fn parse(text: &str) -> Result<Vec<ModelModes>, String> {
    let file: RawFile = toml::from_str(text).map_err(|e| e.message().to_owned())?;
    file.models
        .into_iter()
        .enumerate()
        .map(|(i, entry)| {
            let pattern = Regex::new(&entry.pattern)
                .map_err(|e| format!("models[{i}].pattern '{}': {e}", entry.pattern))?;
            let mut modes = Vec::new();
            for (name, mode) in [
                ("max", entry.max),
                ("medium", entry.medium),
                ("low", entry.low),
                ("no-think", entry.no_think),
            ] {
                if let Some(mode) = mode {
                    if let Some(effort) = &mode.reasoning_effort
                        && ReasoningEffort::parse(effort).is_none()
                    {
                        return Err(format!(
                            "models[{i}].{name}.reasoning_effort '{effort}' is not an effort level"
                        ));
                    }
                    modes.push((name, mode));
                }
            }
            Ok(ModelModes { pattern, modes })
        })
        .collect()
}

/// The alias name of an effort, as `!/max` etc. set it.
fn alias_of(effort: ReasoningEffort) -> &'static str {
    match effort {
        ReasoningEffort::High | ReasoningEffort::XHigh => "max",
        ReasoningEffort::Medium => "medium",
        ReasoningEffort::Low | ReasoningEffort::Minimal => "low",
        ReasoningEffort::None => "no-think",
    }
}

pub struct ReasoningModes {
    models: Vec<ModelModes>,
}

impl ReasoningModes {
    pub fn new(models: Vec<ModelModes>) -> Self {
        Self { models }
    }
}

#[async_trait]
impl Stage for ReasoningModes {
    fn name(&self) -> &'static str {
        "reasoning-modes"
    }

    fn reads(&self) -> Reads {
        Reads::MESSAGES
    }

    fn phases(&self) -> Phases {
        Phases::UPSTREAM_REQUEST.when(!self.models.is_empty())
    }

    /// The session's reasoning alias, as the model the request goes to defines it. A
    /// pattern matches the model name or `backend:model`.
    async fn upstream_request(
        &self,
        ctx: &RequestContext,
        target: &Target,
        request: &mut Cow<'_, Request>,
    ) -> Result<(), Error> {
        if self.models.is_empty() {
            return Ok(());
        }
        let Some(effort) = ctx.session.reasoning.as_ref().and_then(|r| r.effort) else {
            return Ok(());
        };
        let alias = alias_of(effort);
        let route = format!("{}:{}", target.backend.id(), target.model);
        let Some(mode) = self
            .models
            .iter()
            .find(|m| m.pattern.is_match(&target.model) || m.pattern.is_match(&route))
            .and_then(|m| m.modes.iter().find(|(name, _)| *name == alias))
            .map(|(_, mode)| mode)
        else {
            return Ok(());
        };
        let request = request.to_mut();
        if mode.reasoning_effort.is_some() || mode.thinking_budget.is_some() {
            request.reasoning = Some(Reasoning {
                effort: mode
                    .reasoning_effort
                    .as_deref()
                    .and_then(ReasoningEffort::parse),
                budget_tokens: mode.thinking_budget,
            });
        }
        if let Some(t) = mode.temperature {
            request.sampling.temperature = Some(t);
        }
        if let Some(max) = mode.max_tokens {
            request.sampling.max_tokens = Some(max);
        }
        if let Some(prefix) = &mode.prompt_prefix
            && let Some(last) = request
                .messages
                .iter_mut()
                .rev()
                .find(|m| m.role == Role::User)
        {
            last.parts.insert(0, Part::text(format!("{prefix}\n")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Message;

    #[test]
    fn the_shipped_file_parses_and_bad_entries_are_named() {
        assert!(parse(DEFAULT_FILE).unwrap().is_empty());
        let err = parse("[[models]]\npattern = \"(\"\n").unwrap_err();
        assert!(err.contains("models[0].pattern"), "{err}");
        let err = parse("[[models]]\npattern = \"x\"\n[models.max]\nreasoning_effort = \"huge\"\n")
            .unwrap_err();
        assert!(err.contains("models[0].max.reasoning_effort"), "{err}");
    }

    #[tokio::test]
    async fn an_alias_applies_the_matching_models_settings() {
        let models = parse(
            "[[models]]\npattern = \"qwen\"\n[models.max]\ntemperature = 0.6\nthinking_budget = 9000\n\
             prompt_prefix = \"Think step by step.\"\n",
        )
        .unwrap();
        let stage = ReasoningModes::new(models);
        let mut ctx = RequestContext::new(crate::model::Protocol::OpenAiChat);
        ctx.session.reasoning = Some(Reasoning {
            effort: Some(ReasoningEffort::High),
            budget_tokens: None,
        });
        let router = crate::router::tests::router(None);
        let mut request = Cow::Owned(Request::new(
            "ignored",
            vec![Message::new(Role::User, vec![Part::text("hi")])],
        ));
        let qwen = router.resolve("openrouter:qwen/qwen3").unwrap();
        stage
            .upstream_request(&ctx, &qwen, &mut request)
            .await
            .unwrap();
        assert_eq!(request.sampling.temperature, Some(0.6));
        assert_eq!(
            request.reasoning.as_ref().unwrap().budget_tokens,
            Some(9000)
        );
        assert_eq!(request.messages[0].text(), "Think step by step.\nhi");

        let plain = Request::new(
            "gpt-4o",
            vec![Message::new(Role::User, vec![Part::text("hi")])],
        );
        let mut other = Cow::Borrowed(&plain);
        let gpt = router.resolve("gpt-4o").unwrap();
        stage
            .upstream_request(&ctx, &gpt, &mut other)
            .await
            .unwrap();
        assert!(
            matches!(other, Cow::Borrowed(_)),
            "a model without the mode leaves the request uncopied"
        );
    }
}
