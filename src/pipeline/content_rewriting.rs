//! Content rewriting (the seed's "Customize System Prompts"): rules that REPLACE text (a
//! regex), PREPEND or APPEND it, in what goes to the provider (the system prompt, user
//! messages) and in what comes back (the answer), for the back-ends, models and clients
//! they name. Rules live in a TOML file (`[content_rewriting] rules_file`; see
//! config/content_rewriting.toml for the format and examples).
//!
//! Outbound, only PREPEND and APPEND: a pattern in a streamed answer may straddle chunks,
//! and holding the answer back to replace in it would undo streaming.

use std::borrow::Cow;

use async_trait::async_trait;
use regex::Regex;
use serde::Deserialize;

use super::{EventFilter, Phases, Reads, RequestContext, Stage};
use crate::Error;
use crate::model::{Event, Part, Request, Role};
use crate::router::Target;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Inbound,
    Outbound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Where {
    /// The system prompt (inbound).
    System,
    /// Every user message's text (replace), or the last one (prepend, append).
    User,
    /// The answer (outbound).
    Answer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Replace,
    Prepend,
    Append,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    direction: Direction,
    target: Where,
    action: Action,
    /// The regex REPLACE looks for (`$1` in `text` inserts a group).
    #[serde(default)]
    pattern: Option<String>,
    text: String,
    /// Regexes over the back-end's id, the model, and the client's user agent; a rule
    /// without one applies to all.
    #[serde(default)]
    backend: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    client: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    rules: Vec<RawRule>,
}

/// A checked rule.
#[derive(Debug, Clone)]
pub struct Rule {
    direction: Direction,
    target: Where,
    action: Action,
    pattern: Option<Regex>,
    text: String,
    backend: Option<Regex>,
    model: Option<Regex>,
    client: Option<Regex>,
}

impl PartialEq for Rule {
    fn eq(&self, other: &Self) -> bool {
        let re = |r: &Option<Regex>| r.as_ref().map(|r| r.as_str().to_owned());
        self.direction == other.direction
            && self.target == other.target
            && self.action == other.action
            && re(&self.pattern) == re(&other.pattern)
            && self.text == other.text
            && re(&self.backend) == re(&other.backend)
            && re(&self.model) == re(&other.model)
            && re(&self.client) == re(&other.client)
    }
}

/// Reads a rules file's text; the error names the rule and what is wrong.
pub fn parse_rules(text: &str) -> Result<Vec<Rule>, String> {
    let file: RulesFile = toml::from_str(text).map_err(|e| e.to_string())?;
    let regex = |i: usize, field: &str, value: &Option<String>| -> Result<Option<Regex>, String> {
        value
            .as_deref()
            .map(|p| Regex::new(p).map_err(|e| format!("rules[{i}].{field}: {e}")))
            .transpose()
    };
    file.rules
        .into_iter()
        .enumerate()
        .map(|(i, raw)| {
            let fits = match raw.direction {
                Direction::Inbound => raw.target != Where::Answer,
                Direction::Outbound => raw.target == Where::Answer,
            };
            if !fits {
                return Err(format!(
                    "rules[{i}]: inbound rules rewrite the system prompt or user messages; \
                     outbound ones rewrite the answer"
                ));
            }
            if raw.action == Action::Replace && raw.pattern.is_none() {
                return Err(format!("rules[{i}]: replace needs a pattern"));
            }
            Ok(Rule {
                direction: raw.direction,
                target: raw.target,
                action: raw.action,
                pattern: regex(i, "pattern", &raw.pattern)?,
                text: raw.text,
                backend: regex(i, "backend", &raw.backend)?,
                model: regex(i, "model", &raw.model)?,
                client: regex(i, "client", &raw.client)?,
            })
        })
        .collect()
}

impl Rule {
    fn applies(&self, backend: &str, model: &str, client: &str) -> bool {
        let fits =
            |re: &Option<Regex>, value: &str| re.as_ref().is_none_or(|re| re.is_match(value));
        fits(&self.backend, backend) && fits(&self.model, model) && fits(&self.client, client)
    }

    /// The rule in a few words, for the inspector.
    fn describe(&self) -> String {
        let target = match self.target {
            Where::System => "system prompt",
            Where::User => "user message",
            Where::Answer => "answer",
        };
        let action = match self.action {
            Action::Replace => "replaced in",
            Action::Prepend => "prepended to",
            Action::Append => "appended to",
        };
        format!("text {action} the {target}")
    }

    fn rewrite(&self, text: &str) -> Option<String> {
        match self.action {
            Action::Replace => {
                let pattern = self.pattern.as_ref()?;
                match pattern.replace_all(text, self.text.as_str()) {
                    Cow::Owned(changed) => Some(changed),
                    Cow::Borrowed(_) => None,
                }
            }
            Action::Prepend => Some(format!("{}{text}", self.text)),
            Action::Append => Some(format!("{text}{}", self.text)),
        }
    }
}

pub struct ContentRewriting {
    rules: Vec<Rule>,
}

impl ContentRewriting {
    pub fn new(rules: Vec<Rule>) -> Self {
        Self { rules }
    }

    fn has(&self, direction: Direction) -> bool {
        self.rules.iter().any(|r| r.direction == direction)
    }
}

/// The text parts a rule rewrites: the system prompt's (the request's system parts, then
/// system messages, as protocols differ in where they put it), every user message's
/// (replace), or the first/last of them (prepend to the first system part, append to the
/// last; prepend and append to the last user message).
fn texts_of<'r>(request: &'r mut Request, rule: &Rule) -> Vec<&'r mut String> {
    fn text_of(part: &mut Part) -> Option<&mut String> {
        match part {
            Part::Text { text, .. } => Some(text),
            _ => None,
        }
    }
    let Request {
        system, messages, ..
    } = request;
    match rule.target {
        Where::System => {
            let mut all: Vec<&'r mut String> = system
                .iter_mut()
                .chain(
                    messages
                        .iter_mut()
                        .filter(|m| m.role == Role::System)
                        .flat_map(|m| m.parts.iter_mut()),
                )
                .filter_map(text_of)
                .collect();
            match rule.action {
                Action::Replace => all,
                Action::Prepend => all.into_iter().take(1).collect(),
                Action::Append => all.pop().into_iter().collect(),
            }
        }
        Where::User if rule.action == Action::Replace => messages
            .iter_mut()
            .filter(|m| m.role == Role::User)
            .flat_map(|m| m.parts.iter_mut())
            .filter_map(text_of)
            .collect(),
        Where::User => messages
            .iter_mut()
            .rev()
            .find(|m| {
                m.role == Role::User && m.parts.iter().any(|p| matches!(p, Part::Text { .. }))
            })
            .and_then(|m| m.parts.iter_mut().filter_map(text_of).last())
            .into_iter()
            .collect(),
        Where::Answer => Vec::new(),
    }
}

/// Whether the request has a system prompt, wherever its protocol put it.
fn has_system(request: &Request) -> bool {
    !request.system.is_empty() || request.messages.iter().any(|m| m.role == Role::System)
}

#[async_trait]
impl Stage for ContentRewriting {
    fn name(&self) -> &'static str {
        "content-rewriting"
    }

    fn reads(&self) -> Reads {
        Reads::ALL
    }

    fn phases(&self) -> Phases {
        Phases::UPSTREAM_REQUEST.when(self.has(Direction::Inbound))
            | Phases::RESPONSE_FILTER.when(self.has(Direction::Outbound))
    }

    async fn upstream_request(
        &self,
        ctx: &RequestContext,
        target: &Target,
        request: &mut Cow<'_, Request>,
    ) -> Result<(), Error> {
        let client = ctx.user_agent.as_deref().unwrap_or_default();
        for rule in &self.rules {
            if rule.direction != Direction::Inbound
                || !rule.applies(target.backend.id(), &target.model, client)
            {
                continue;
            }
            // A system prompt to prepend to when there is none yet.
            if rule.target == Where::System
                && rule.action != Action::Replace
                && !has_system(request)
            {
                request.to_mut().system.push(Part::text(rule.text.clone()));
                continue;
            }
            // A rule that applies is a rule the user wants: the request is copied for it.
            let mut changed_any = false;
            for text in texts_of(request.to_mut(), rule) {
                if let Some(changed) = rule.rewrite(text) {
                    *text = changed;
                    changed_any = true;
                }
            }
            if changed_any {
                ctx.trail.intervene("content-rewriting", rule.describe());
            }
        }
        Ok(())
    }

    fn response_filter(
        &self,
        ctx: &RequestContext,
        _request: &Request,
    ) -> Option<Box<dyn EventFilter>> {
        let (backend, model) = (ctx.backend.as_deref()?, ctx.model.as_deref()?);
        let client = ctx.user_agent.as_deref().unwrap_or_default();
        let rules: Vec<Rule> = self
            .rules
            .iter()
            .filter(|r| r.direction == Direction::Outbound && r.applies(backend, model, client))
            .cloned()
            .collect();
        (!rules.is_empty()).then(|| {
            Box::new(Outbound {
                replaces: rules.iter().any(|r| r.action == Action::Replace),
                rules,
                started: false,
                line: String::new(),
                trail: ctx.trail.clone(),
            }) as Box<dyn EventFilter>
        })
    }
}

/// The most answer text held for outbound replace rules when no line ends.
const LINE_LIMIT: usize = 4096;

/// Outbound rules: text added before the answer's first text and after its last, and
/// replace rules applied a line at a time (a streamed answer is held until each line ends,
/// at most [`LINE_LIMIT`] bytes, so a pattern is matched within one line).
struct Outbound {
    rules: Vec<Rule>,
    replaces: bool,
    started: bool,
    /// Text of the line being read, for the replace rules.
    line: String,
    trail: super::Trail,
}

impl EventFilter for Outbound {
    fn on_event(&mut self, event: Event, out: &mut Vec<Event>) {
        if matches!(event, Event::TextDelta(_)) && !self.started {
            self.started = true;
            for rule in self.rules.iter().filter(|r| r.action == Action::Prepend) {
                out.push(Event::TextDelta(rule.text.clone()));
                self.trail.intervene("content-rewriting", rule.describe());
            }
        }
        match event {
            Event::TextDelta(text) if self.replaces => {
                self.line.push_str(&text);
                let ready = match self.line.rfind('\n') {
                    Some(at) => at + 1,
                    None if self.line.len() > LINE_LIMIT => self.line.len(),
                    None => return,
                };
                let rest = self.line.split_off(ready);
                let lines = std::mem::replace(&mut self.line, rest);
                self.give_replaced(lines, out);
            }
            Event::TextDelta(_) => out.push(event),
            other => {
                // Anything else (a call, the finish, an error) ends the line.
                let line = std::mem::take(&mut self.line);
                self.give_replaced(line, out);
                if matches!(other, Event::Finish { .. }) && self.started {
                    for rule in self.rules.iter().filter(|r| r.action == Action::Append) {
                        out.push(Event::TextDelta(rule.text.clone()));
                        self.trail.intervene("content-rewriting", rule.describe());
                    }
                }
                out.push(other);
            }
        }
    }

    fn on_end(&mut self, out: &mut Vec<Event>) {
        let line = std::mem::take(&mut self.line);
        self.give_replaced(line, out);
    }
}

impl Outbound {
    /// Whole lines of the answer with the replace rules applied.
    fn give_replaced(&mut self, mut text: String, out: &mut Vec<Event>) {
        if text.is_empty() {
            return;
        }
        for rule in self.rules.iter().filter(|r| r.action == Action::Replace) {
            if let Some(changed) = rule.rewrite(&text) {
                text = changed;
                self.trail.intervene("content-rewriting", rule.describe());
            }
        }
        if !text.is_empty() {
            out.push(Event::TextDelta(text));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbound_replace_rules_apply_within_lines_whatever_the_chunks() {
        let rules = parse_rules(
            r#"[[rules]]
direction = "outbound"
target = "answer"
action = "replace"
pattern = "\\bcolour\\b"
text = "color"

[[rules]]
direction = "outbound"
target = "answer"
action = "append"
text = " [end]"
"#,
        )
        .unwrap();
        let answer = "The colour is grey.\nMy colour: blue, your colour: red.\nNo change here";
        let expected = "The color is grey.\nMy color: blue, your color: red.\nNo change here [end]";
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..50 {
            let mut filter = Outbound {
                replaces: true,
                rules: rules.clone(),
                started: false,
                line: String::new(),
                trail: super::super::Trail::default(),
            };
            let mut out = Vec::new();
            let mut rest = answer;
            while !rest.is_empty() {
                let cut = rng.usize(1..=rest.len().min(9));
                filter.on_event(Event::TextDelta(rest[..cut].to_owned()), &mut out);
                rest = &rest[cut..];
            }
            filter.on_event(
                Event::Finish {
                    reason: crate::model::FinishReason::EndTurn,
                    stop_sequence: None,
                },
                &mut out,
            );
            let text: String = out
                .iter()
                .filter_map(|e| match e {
                    Event::TextDelta(t) => Some(t.as_str()),
                    _ => None,
                })
                .collect();
            assert_eq!(text, expected);
            assert!(matches!(out.last(), Some(Event::Finish { .. })));
        }
    }

    #[test]
    fn rules_are_checked_naming_what_is_wrong() {
        let ok = parse_rules(
            r#"[[rules]]
direction = "inbound"
target = "system"
action = "replace"
pattern = "You are Claude Code"
text = "You are a careful engineer"
model = "^qwen"
"#,
        )
        .unwrap();
        assert_eq!(ok.len(), 1);
        let bad = |text: &str| parse_rules(text).unwrap_err();
        assert!(bad("[[rules]]\ndirection = \"inbound\"\ntarget = \"system\"\naction = \"replace\"\ntext = \"x\"").contains("needs a pattern"));
        assert!(bad("[[rules]]\ndirection = \"outbound\"\ntarget = \"user\"\naction = \"append\"\ntext = \"x\"").contains("outbound"));
        assert!(bad("[[rules]]\ndirection = \"inbound\"\ntarget = \"user\"\naction = \"replace\"\npattern = \"(\"\ntext = \"x\"").contains("rules[0].pattern"));
        assert!(bad("[[rules]]\ndirection = \"sideways\"\ntarget = \"user\"\naction = \"append\"\ntext = \"x\"").contains("sideways"));
    }
}
