//! In-chat commands: `!/backend(...)`, `!/model(...)`, `!/oneoff(...)`, `!/set(...)`,
//! `!/unset(...)`, reasoning aliases (`!/max`, `!/medium`, `!/low`, `!/no-think`),
//! `!/project-dir(...)`, `!/failover-route(...)`, `!/help` and `!/status`.
//!
//! Commands are read from the last user message only, outside code, and (in strict mode)
//! only on its last non-blank line. They change the session's state and are removed from
//! the text the model sees; a message that held nothing but commands is answered by llmux
//! itself, in the client's protocol, without calling a back-end. A command that is unknown
//! or has bad arguments is answered locally too, and nothing is forwarded.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use regex::Regex;

use super::{EventFilter, Flow, Phases, Reads, RequestContext, Stage};
use crate::Error;
use crate::config::routes::{FailoverRoute, check_leg, check_name};
use crate::model::{
    Event, Extensions, FinishReason, Part, Reasoning, ReasoningEffort, Request, Role,
};
use crate::state::{Session, StateStore};

/// How commands are recognised.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandSettings {
    /// The prefix, `!/` by default (`command_prefix`, COMMAND_PREFIX).
    pub prefix: String,
    /// Only the last non-blank line counts (`strict_command_detection`).
    pub strict: bool,
}

impl Default for CommandSettings {
    fn default() -> Self {
        Self {
            prefix: "!/".into(),
            strict: false,
        }
    }
}

/// One command as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub name: String,
    pub args: Option<String>,
}

/// The commands of `text`, and `text` without them.
pub fn extract(text: &str, settings: &CommandSettings) -> (Vec<Command>, String) {
    match command_pattern(&settings.prefix) {
        Ok(pattern) => extract_with(&pattern, text, settings.strict),
        Err(_) => (Vec::new(), text.to_owned()),
    }
}

fn extract_with(pattern: &Regex, text: &str, strict: bool) -> (Vec<Command>, String) {
    let protected = code_spans(text);
    let scope_start = if strict {
        last_nonblank_line_start(text)
    } else {
        0
    };
    let mut commands = Vec::new();
    let mut rest = String::with_capacity(text.len());
    let mut copied = 0;
    for found in pattern.captures_iter(text) {
        let (Some(prefix), Some(whole)) = (found.get(1), found.get(0)) else {
            continue;
        };
        let (start, end) = (prefix.start(), whole.end());
        if start < scope_start || protected.iter().any(|(s, e)| start >= *s && start < *e) {
            continue;
        }
        commands.push(Command {
            name: found[2].to_ascii_lowercase(),
            args: found.get(3).map(|a| a.as_str().trim().to_owned()),
        });
        rest.push_str(&text[copied..start]);
        copied = end;
    }
    rest.push_str(&text[copied..]);
    // Strict mode: the last line must hold nothing but commands; a command mentioned in a
    // sentence is conversation (the seed's "I tried !/help but it didn't work").
    if strict && !commands.is_empty() && !rest[scope_start.min(rest.len())..].trim().is_empty() {
        return (Vec::new(), text.to_owned());
    }
    (commands, rest)
}

/// `<prefix><name>(<args>)`, where the prefix starts the text or follows whitespace (so
/// "see!/help" is text). Groups: 1 the prefix, 2 the name, 3 the arguments.
fn command_pattern(prefix: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!(
        r"(?:^|\s)({})([A-Za-z][A-Za-z0-9_-]*)(?:\(([^)]*)\))?",
        regex::escape(prefix)
    ))
}

/// Byte ranges inside fenced blocks (```) and inline code (`...`).
fn code_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut search = 0;
    while let Some(open) = text[search..].find("```").map(|i| i + search) {
        let close = text[open + 3..]
            .find("```")
            .map(|i| open + 3 + i + 3)
            .unwrap_or(text.len());
        spans.push((open, close));
        search = close;
        if search >= text.len() {
            break;
        }
    }
    let mut inline_open: Option<usize> = None;
    for (i, c) in text.char_indices() {
        if c != '`' || spans.iter().any(|(s, e)| i >= *s && i < *e) {
            continue;
        }
        match inline_open.take() {
            Some(start) => spans.push((start, i + 1)),
            None => inline_open = Some(i),
        }
    }
    spans
}

fn last_nonblank_line_start(text: &str) -> usize {
    let trimmed = text.trim_end();
    trimmed.rfind('\n').map(|i| i + 1).unwrap_or(0)
}

/// Reasoning aliases and the effort each stands for.
const REASONING_ALIASES: &[(&str, ReasoningEffort)] = &[
    ("max", ReasoningEffort::High),
    ("medium", ReasoningEffort::Medium),
    ("low", ReasoningEffort::Low),
    ("no-think", ReasoningEffort::None),
    ("no-thinking", ReasoningEffort::None),
    ("no-reasoning", ReasoningEffort::None),
    ("disable-thinking", ReasoningEffort::None),
];

/// One line of help per command.
const HELP: &[(&str, &str)] = &[
    (
        "backend(name)",
        "use this back-end for the rest of the session",
    ),
    (
        "model(name)",
        "use this model (or backend:model) for the rest of the session",
    ),
    (
        "oneoff(backend:model)",
        "use this back-end and model for the next request only",
    ),
    (
        "set(key=value, ...)",
        "set backend, model, temperature, reasoning or project-dir",
    ),
    (
        "unset(key, ...)",
        "forget a setting made with set (or all of them: unset(all))",
    ),
    (
        "max / medium / low",
        "reasoning effort high / medium / low for the session",
    ),
    (
        "no-think",
        "turn reasoning off (also no-thinking, no-reasoning, disable-thinking)",
    ),
    (
        "project-dir(path)",
        "the project directory agent back-ends work in (~ allowed)",
    ),
    (
        "failover-route(create NAME | append NAME backend:model | prepend NAME backend:model \
         | clear NAME | delete NAME | list)",
        "make failover routes for this session; ask for model NAME (or route:NAME) to use one",
    ),
    (
        "loop-detection(on|off)",
        "stop answers that repeat themselves and tool calls that go round in circles",
    ),
    ("status", "show what llmux will do with the next request"),
    ("help", "this list"),
];

pub struct Commands {
    settings: CommandSettings,
    pattern: Regex,
    state: Arc<dyn StateStore>,
    backends: Vec<String>,
    default_backend: String,
    /// The configured failover routes, for `!/failover-route(list)`.
    routes: BTreeMap<String, FailoverRoute>,
}

impl Commands {
    pub fn new(
        settings: CommandSettings,
        state: Arc<dyn StateStore>,
        backends: Vec<String>,
        default_backend: String,
    ) -> Result<Self, Error> {
        let pattern = command_pattern(&settings.prefix).map_err(|e| {
            Error::internal(format!(
                "command prefix '{}' is unusable: {e}",
                settings.prefix
            ))
        })?;
        Ok(Self {
            pattern,
            settings,
            state,
            backends,
            default_backend,
            routes: BTreeMap::new(),
        })
    }

    /// With the configured failover routes, which `!/failover-route(list)` shows.
    pub fn with_routes(mut self, routes: BTreeMap<String, FailoverRoute>) -> Self {
        self.routes = routes;
        self
    }

    fn check_backend(&self, name: &str) -> Result<(), String> {
        if self.backends.iter().any(|b| b == name) {
            Ok(())
        } else {
            Err(format!(
                "unknown back-end '{name}'; configured back-ends: {}",
                self.backends.join(", ")
            ))
        }
    }

    /// Checks a `backend:model` (or `backend/model`) route and returns it as `backend:model`.
    fn check_route(&self, route: &str) -> Result<String, String> {
        let split = route
            .split_once(':')
            .filter(|(b, _)| self.backends.iter().any(|x| x == b))
            .or_else(|| route.split_once('/'));
        match split {
            Some((backend, model)) if !model.is_empty() => {
                self.check_backend(backend)?;
                Ok(format!("{backend}:{model}"))
            }
            _ => Err(format!(
                "'{route}' is not backend:model; for example {}:some-model",
                self.default_backend
            )),
        }
    }

    /// Applies one command; returns what to tell the user.
    fn apply(&self, command: &Command, session: &mut Session) -> Result<String, String> {
        let arg = || {
            command
                .args
                .clone()
                .filter(|a| !a.is_empty())
                .ok_or_else(|| {
                    format!(
                        "{}{}(...) needs an argument",
                        self.settings.prefix, command.name
                    )
                })
        };
        if let Some((_, effort)) = REASONING_ALIASES.iter().find(|(n, _)| *n == command.name) {
            session.reasoning = Some(Reasoning {
                effort: Some(*effort),
                budget_tokens: None,
            });
            return Ok(format!("reasoning effort set to {}", effort.as_str()));
        }
        match command.name.as_str() {
            "help" => Ok(self.help()),
            "status" => Ok(String::new()),
            "backend" => {
                let name = arg()?;
                self.check_backend(&name)?;
                session.backend = Some(name.clone());
                Ok(format!("back-end set to {name}"))
            }
            "model" => self.set(session, "model", &arg()?),
            "oneoff" => {
                let route = self.check_route(&arg()?)?;
                session.oneoff = Some(route.clone());
                Ok(format!("the next request goes to {route}"))
            }
            "project-dir" => self.set(session, "project-dir", &arg()?),
            "failover-route" => self.failover_route(session, &arg()?),
            "loop-detection" => match arg()?.to_ascii_lowercase().as_str() {
                "on" | "true" | "yes" => {
                    session.loop_detection = Some(true);
                    Ok("loop detection on for this session".into())
                }
                "off" | "false" | "no" => {
                    session.loop_detection = Some(false);
                    Ok("loop detection off for this session".into())
                }
                other => Err(format!("loop-detection takes on or off, not '{other}'")),
            },
            "set" => {
                let mut said = Vec::new();
                for pair in arg()?.split(',') {
                    let (key, value) = pair.split_once('=').ok_or_else(|| {
                        format!("set takes key=value pairs, not '{}'", pair.trim())
                    })?;
                    said.push(self.set(session, key.trim(), value.trim())?);
                }
                Ok(said.join("\n"))
            }
            "unset" => {
                let mut said = Vec::new();
                for key in arg()?.split(',').map(str::trim) {
                    said.push(unset(session, key)?);
                }
                Ok(said.join("\n"))
            }
            other => Err(format!(
                "unknown command {}{other}; {}help lists the commands",
                self.settings.prefix, self.settings.prefix
            )),
        }
    }

    /// `!/failover-route(ACTION ...)`: the session's own failover routes.
    fn failover_route(&self, session: &mut Session, args: &str) -> Result<String, String> {
        let words: Vec<&str> = args
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|w| !w.is_empty())
            .collect();
        let backends: Vec<&str> = self.backends.iter().map(String::as_str).collect();
        let routes = &mut session.failover_routes;
        let usage = || {
            format!(
                "use {p}failover-route(create NAME), (append NAME backend:model), (prepend NAME \
                 backend:model), (clear NAME), (delete NAME) or (list)",
                p = self.settings.prefix
            )
        };
        let existing = |routes: &BTreeMap<String, Vec<String>>, name: &str| {
            if routes.contains_key(name) {
                Ok(())
            } else {
                Err(format!(
                    "no failover route '{name}' in this session; create it first with \
                     {}failover-route(create {name})",
                    self.settings.prefix
                ))
            }
        };
        match words.as_slice() {
            ["create", name] => {
                check_name(name, &backends)?;
                if routes.contains_key(*name) {
                    return Err(format!("failover route '{name}' exists already"));
                }
                routes.insert((*name).to_owned(), Vec::new());
                Ok(format!(
                    "failover route '{name}' created; add legs with {}failover-route(append \
                     {name} backend:model)",
                    self.settings.prefix
                ))
            }
            [action @ ("append" | "prepend"), name, leg] => {
                existing(routes, name)?;
                let leg = self.check_route(leg)?;
                check_leg(&leg, &backends)?;
                let legs = routes.entry((*name).to_owned()).or_default();
                if *action == "append" {
                    legs.push(leg.clone());
                } else {
                    legs.insert(0, leg.clone());
                }
                Ok(format!("failover route '{name}': {}", legs.join(" -> ")))
            }
            ["clear", name] => {
                existing(routes, name)?;
                routes.insert((*name).to_owned(), Vec::new());
                Ok(format!("failover route '{name}' has no legs now"))
            }
            ["delete", name] => {
                existing(routes, name)?;
                routes.remove(*name);
                Ok(format!("failover route '{name}' deleted"))
            }
            ["list"] => Ok(self.route_list(routes)),
            _ => Err(usage()),
        }
    }

    /// The session's failover routes, then the configured ones.
    fn route_list(&self, session_routes: &BTreeMap<String, Vec<String>>) -> String {
        if session_routes.is_empty() && self.routes.is_empty() {
            return format!(
                "no failover routes; make one with {}failover-route(create NAME)",
                self.settings.prefix
            );
        }
        let mut lines = Vec::new();
        for (name, legs) in session_routes {
            let legs = if legs.is_empty() {
                "(no legs yet)".to_owned()
            } else {
                legs.join(" -> ")
            };
            lines.push(format!("{name} (this session): {legs}"));
        }
        for (name, route) in &self.routes {
            if !session_routes.contains_key(name) {
                lines.push(format!(
                    "{name} (configured): {}; retry on {}, {} attempt(s) per leg",
                    route.legs.join(" -> "),
                    route.retry_on,
                    route.attempts_per_leg
                ));
            }
        }
        lines.join("\n")
    }

    fn set(&self, session: &mut Session, key: &str, value: &str) -> Result<String, String> {
        if value.is_empty() {
            return Err(format!("{key} needs a value"));
        }
        match key {
            "backend" => {
                self.check_backend(value)?;
                session.backend = Some(value.to_owned());
                Ok(format!("back-end set to {value}"))
            }
            "model" => {
                if let Some((backend, _)) = value.split_once(':')
                    && self.backends.iter().any(|b| b == backend)
                {
                    self.check_backend(backend)?;
                }
                session.model = Some(value.to_owned());
                Ok(format!("model set to {value}"))
            }
            "temperature" => {
                let t: f64 = value
                    .parse()
                    .map_err(|_| format!("temperature must be a number, not '{value}'"))?;
                if !(0.0..=2.0).contains(&t) {
                    return Err(format!("temperature must be between 0 and 2, not {t}"));
                }
                session.temperature = Some(t);
                Ok(format!("temperature set to {t}"))
            }
            "reasoning" | "reasoning-effort" | "reasoning_effort" => {
                let effort = ReasoningEffort::parse(value).ok_or_else(|| {
                    format!(
                        "reasoning must be none, minimal, low, medium, high or xhigh, not '{value}'"
                    )
                })?;
                session.reasoning = Some(Reasoning {
                    effort: Some(effort),
                    budget_tokens: None,
                });
                Ok(format!("reasoning effort set to {}", effort.as_str()))
            }
            "project-dir" | "project_dir" => {
                let path = expand_home(value);
                if !path.is_dir() {
                    return Err(format!("{} is not a directory", path.display()));
                }
                session.project_dir = Some(path.clone());
                Ok(format!("project directory set to {}", path.display()))
            }
            other => Err(format!(
                "unknown setting '{other}'; settings: backend, model, temperature, reasoning, project-dir"
            )),
        }
    }

    fn help(&self) -> String {
        let mut text = String::from("llmux commands:\n");
        for (usage, what) in HELP {
            text.push_str(&format!("{}{usage}: {what}\n", self.settings.prefix));
        }
        text
    }

    fn status(&self, session: &Session, request: &Request) -> String {
        let route = super::routing::session_route(session, &request.model)
            .unwrap_or_else(|| request.model.clone());
        let (backend, model) = match route.split_once(':') {
            Some((b, m)) if self.backends.iter().any(|x| x == b) => (b.to_owned(), m.to_owned()),
            _ => (self.default_backend.clone(), route),
        };
        let mut lines = vec![
            format!("next request: back-end {backend}, model {model}"),
            format!(
                "session overrides: backend={}, model={}, oneoff={}",
                session.backend.as_deref().unwrap_or("-"),
                session.model.as_deref().unwrap_or("-"),
                session.oneoff.as_deref().unwrap_or("-"),
            ),
        ];
        if let Some(t) = session.temperature {
            lines.push(format!("temperature: {t}"));
        }
        if let Some(effort) = session.reasoning.as_ref().and_then(|r| r.effort) {
            lines.push(format!("reasoning effort: {}", effort.as_str()));
        }
        if let Some(dir) = &session.project_dir {
            lines.push(format!("project directory: {}", dir.display()));
        }
        lines.push(format!(
            "command detection: {}",
            if self.settings.strict {
                "strict (last line only)"
            } else {
                "anywhere in the last message"
            }
        ));
        lines.join("\n")
    }
}

fn unset(session: &mut Session, key: &str) -> Result<String, String> {
    match key {
        "backend" => session.backend = None,
        "model" => session.model = None,
        "oneoff" => session.oneoff = None,
        "temperature" => session.temperature = None,
        "reasoning" | "reasoning-effort" | "reasoning_effort" => session.reasoning = None,
        "project-dir" | "project_dir" => session.project_dir = None,
        "loop-detection" | "loop_detection" => session.loop_detection = None,
        "all" => {
            let turns = session.turns;
            *session = Session {
                turns,
                ..Session::default()
            };
        }
        other => {
            return Err(format!(
                "unknown setting '{other}'; settings: backend, model, temperature, reasoning, project-dir, all"
            ));
        }
    }
    Ok(format!("{key} unset"))
}

fn expand_home(path: &str) -> PathBuf {
    if let Some(rest) = path.strip_prefix("~")
        && (rest.is_empty() || rest.starts_with('/'))
        && let Some(home) = std::env::var_os("HOME")
    {
        return PathBuf::from(home).join(rest.trim_start_matches('/'));
    }
    PathBuf::from(path)
}

/// Events that answer a request locally, as a back-end would.
pub fn local_answer(text: &str) -> Vec<Event> {
    vec![
        Event::Start {
            id: format!("llmux-{:016x}", fastrand::u64(..)),
            model: "llmux".into(),
            created: None,
            extensions: Extensions::default(),
        },
        Event::TextDelta(text.to_owned()),
        Event::Finish {
            reason: FinishReason::EndTurn,
            stop_sequence: None,
        },
    ]
}

#[async_trait]
impl Stage for Commands {
    fn name(&self) -> &'static str {
        "commands"
    }

    fn reads(&self) -> Reads {
        Reads::MESSAGES
    }

    fn phases(&self) -> Phases {
        Phases::ON_REQUEST | Phases::RESPONSE_FILTER
    }

    async fn on_request(
        &self,
        ctx: &mut RequestContext,
        request: &mut Request,
    ) -> Result<Flow, Error> {
        let names_a_command = request.messages.last().is_some_and(|last| {
            last.role == Role::User
                && last.parts.iter().any(
                    |part| matches!(part, Part::Text { text, .. } if self.pattern.is_match(text)),
                )
        });
        if !names_a_command {
            return Ok(Flow::Continue);
        }
        // Taken mutably only now: that copies the messages, which the request shares with
        // the copy kept to tell whether the client's body can go out as it came and, for a
        // large request, with the message memo (`Shared`).
        let Some(last) = request.messages.last_mut() else {
            return Ok(Flow::Continue);
        };
        let mut commands = Vec::new();
        let text_parts = last
            .parts
            .iter()
            .filter(|p| matches!(p, Part::Text { .. }))
            .count();
        let mut seen = 0;
        for part in &mut last.parts {
            let Part::Text { text, .. } = part else {
                continue;
            };
            seen += 1;
            // In strict mode only the last line of the message counts: the last text part.
            if self.settings.strict && seen < text_parts {
                continue;
            }
            let (found, rest) = extract_with(&self.pattern, text, self.settings.strict);
            if !found.is_empty() {
                commands.extend(found);
                *text = rest.trim().to_owned();
            }
        }
        if commands.is_empty() {
            return Ok(Flow::Continue);
        }
        last.parts
            .retain(|p| !matches!(p, Part::Text { text, .. } if text.is_empty()));
        let only_commands = last.parts.is_empty();

        let mut said = Vec::new();
        // What informational commands said: shown before the model's answer when the
        // message goes on to the model.
        let mut informed = Vec::new();
        let mut failed = None;
        let mut wants_status = false;
        let mut session = self.state.session(&ctx.session_id).await?;
        for command in &commands {
            match self.apply(command, &mut session) {
                Ok(text) if command.name == "status" => {
                    wants_status = true;
                    if !text.is_empty() {
                        said.push(text);
                    }
                }
                Ok(text) => {
                    if command.name == "help" {
                        informed.push(text.clone());
                    }
                    said.push(text);
                }
                Err(why) => {
                    failed = Some(why);
                    break;
                }
            }
        }
        if let Some(why) = failed {
            // Nothing changes and nothing is forwarded.
            return Ok(Flow::Respond(local_answer(&format!("llmux: {why}"))));
        }
        let updated = session.clone();
        self.state
            .update(&ctx.session_id, &|s| *s = updated.clone())
            .await?;
        if wants_status {
            let status = self.status(&session, request);
            informed.push(status.clone());
            said.push(status);
        }
        if only_commands {
            return Ok(Flow::Respond(local_answer(&said.join("\n"))));
        }
        if !informed.is_empty() {
            ctx.preface = Some(informed.join("\n"));
        }
        Ok(Flow::Continue)
    }

    fn response_filter(
        &self,
        ctx: &RequestContext,
        _request: &Request,
    ) -> Option<Box<dyn EventFilter>> {
        let text = ctx.preface.clone()?;
        Some(Box::new(Preface { text: Some(text) }))
    }
}

/// Puts what `!/help` or `!/status` said before the model's answer, as text of its own.
struct Preface {
    text: Option<String>,
}

impl EventFilter for Preface {
    fn on_event(&mut self, event: Event, out: &mut Vec<Event>) {
        if !matches!(event, Event::Start { .. })
            && let Some(text) = self.text.take()
        {
            out.push(Event::TextDelta(format!("{text}\n\n")));
        }
        out.push(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(text: &str, strict: bool) -> (Vec<String>, String) {
        let settings = CommandSettings {
            prefix: "!/".into(),
            strict,
        };
        let (commands, rest) = extract(text, &settings);
        (commands.into_iter().map(|c| c.name).collect(), rest)
    }

    #[test]
    fn the_seeds_strict_and_default_examples() {
        // Default: "I tried !/help but it didn't work" -> processed.
        assert_eq!(
            names("I tried !/help but it didn't work", false).0,
            ["help"]
        );
        // Strict: the same text is conversation.
        assert!(
            names("I tried !/help but it didn't work", true)
                .0
                .is_empty()
        );
        // Strict: "Some context\n!/help" -> processed (last line).
        assert_eq!(names("Some context\n!/help", true).0, ["help"]);
    }

    #[test]
    fn commands_are_removed_and_args_read() {
        let settings = CommandSettings::default();
        let (commands, rest) = extract("!/model(openai:gpt-4o) write a poem", &settings);
        assert_eq!(
            commands,
            [Command {
                name: "model".into(),
                args: Some("openai:gpt-4o".into())
            }]
        );
        assert_eq!(rest.trim(), "write a poem");
    }

    #[test]
    fn commands_in_code_are_ignored() {
        let text = "Look:\n```\n!/backend(openai)\n```\nand `!/model(x)` too";
        assert!(names(text, false).0.is_empty());
        assert_eq!(names("```\ncode\n```\n!/help", false).0, ["help"]);
    }

    #[test]
    fn a_prefix_inside_a_word_is_text() {
        assert!(names("see!/help", false).0.is_empty());
        assert!(names("http://example.com!/x", false).0.is_empty());
    }

    #[test]
    fn a_custom_prefix_works() {
        let settings = CommandSettings {
            prefix: "@@".into(),
            strict: false,
        };
        let (commands, _) = extract("@@max please", &settings);
        assert_eq!(commands[0].name, "max");
        assert!(extract("!/max", &settings).0.is_empty());
    }
}
