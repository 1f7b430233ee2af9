//! The tool-call reactor: the user's rules (config/tool_call_reactor.toml) react to the
//! tool calls a model makes before the client runs them: steer a call towards another tool,
//! block it, rate-limit it per session, or rewrite its name and arguments. Calls are read by
//! the shared matcher ([`super::tool_match`]), the one the planning phase and the
//! dangerous-command stage use, and held by the shared screen ([`super::tool_screen`]), so
//! only answers calling a tool some rule names are held back.
//!
//! Its filter sees the answer before the dangerous-command stage's does, so a rewritten call
//! is still checked for destructive commands.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{Quota, RateLimiter};
use regex::Regex;
use serde::Deserialize;

use super::tool_match::{commands, normalized_name, runs_shell, scripts, writes_files};
use super::tool_screen::{ToolScreen, Verdict};
use super::{EventFilter, Phases, Reads, RequestContext, Stage};
use crate::model::Request;

/// The rules llmux ships (config/tool_call_reactor.toml): one disabled example.
pub const DEFAULT_RULES: &str = include_str!("../../config/tool_call_reactor.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    priority: i64,
    tool_names: Vec<String>,
    #[serde(default)]
    phrases: Vec<String>,
    #[serde(default)]
    commands: Vec<String>,
    action: Action,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    rate_limit: Option<RawRateLimit>,
    #[serde(default)]
    rename_to: Option<String>,
    #[serde(default)]
    replace: Vec<RawReplace>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Steer,
    Block,
    RateLimit,
    Rewrite,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    calls_per_window: u32,
    window_seconds: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReplace {
    pattern: String,
    with: String,
}

/// Which tools a rule names.
#[derive(Debug, Clone, PartialEq)]
enum ToolName {
    Any,
    Shell,
    FileWriting,
    /// A name as [`normalized_name`] spells it.
    Named(String),
}

impl ToolName {
    fn parse(name: &str) -> Self {
        match name.trim() {
            "*" => Self::Any,
            "@shell" => Self::Shell,
            "@file-writing" => Self::FileWriting,
            name => Self::Named(normalized_name(name)),
        }
    }

    fn matches(&self, tool: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Shell => runs_shell(tool),
            Self::FileWriting => writes_files(tool),
            Self::Named(name) => *name == normalized_name(tool),
        }
    }
}

/// One rule, checked and compiled.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub action: Action,
    priority: i64,
    tools: Vec<ToolName>,
    /// Lower case.
    phrases: Vec<String>,
    commands: Vec<Regex>,
    message: String,
    rate_limit: Option<(NonZeroU32, Duration)>,
    rename_to: Option<String>,
    replace: Vec<(Regex, String)>,
}

impl PartialEq for Rule {
    fn eq(&self, other: &Self) -> bool {
        let commands = |r: &Rule| {
            r.commands
                .iter()
                .map(|c| c.as_str().to_owned())
                .collect::<Vec<_>>()
        };
        let replace = |r: &Rule| {
            r.replace
                .iter()
                .map(|(re, with)| (re.as_str().to_owned(), with.clone()))
                .collect::<Vec<_>>()
        };
        self.name == other.name
            && self.action == other.action
            && self.priority == other.priority
            && self.tools == other.tools
            && self.phrases == other.phrases
            && commands(self) == commands(other)
            && self.message == other.message
            && self.rate_limit == other.rate_limit
            && self.rename_to == other.rename_to
            && replace(self) == replace(other)
    }
}

/// Reads a rules file's text: the enabled rules, highest priority first. The error names the
/// rule and what is wrong with it.
pub fn parse_rules(text: &str) -> Result<Vec<Rule>, String> {
    let file: RulesFile = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut rules = Vec::new();
    for raw in file.rules {
        let name = raw.name.clone();
        let rule = compile(raw).map_err(|why| format!("rule '{name}': {why}"))?;
        if let Some(rule) = rule {
            rules.push(rule);
        }
    }
    // Stable: rules of one priority keep the file's order.
    rules.sort_by_key(|r| std::cmp::Reverse(r.priority));
    Ok(rules)
}

/// A raw rule checked (disabled rules are checked too, so turning one on cannot break the
/// start) and compiled; `None` when it is disabled.
fn compile(raw: RawRule) -> Result<Option<Rule>, String> {
    if raw.tool_names.iter().all(|n| n.trim().is_empty()) {
        return Err("tool_names names no tool (\"*\" matches any)".into());
    }
    let commands = raw
        .commands
        .iter()
        .map(|c| Regex::new(c).map_err(|e| format!("commands: invalid regex '{c}': {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let replace = raw
        .replace
        .iter()
        .map(|r| {
            Regex::new(&r.pattern)
                .map(|re| (re, r.with.clone()))
                .map_err(|e| format!("replace: invalid regex '{}': {e}", r.pattern))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let rate_limit = raw
        .rate_limit
        .as_ref()
        .map(checked_rate_limit)
        .transpose()?;
    let message = raw.message.clone().unwrap_or_default();
    match raw.action {
        Action::Steer | Action::Block | Action::RateLimit if message.trim().is_empty() => {
            return Err("this action needs a message (what the model reads instead)".into());
        }
        Action::RateLimit if rate_limit.is_none() => {
            return Err("action \"rate-limit\" needs rate_limit".into());
        }
        Action::Rewrite if raw.rename_to.is_none() && replace.is_empty() => {
            return Err("action \"rewrite\" needs rename_to or [[rules.replace]]".into());
        }
        Action::Block if rate_limit.is_some() => {
            return Err("action \"block\" takes no rate_limit (\"rate-limit\" does)".into());
        }
        _ => {}
    }
    if !raw.enabled {
        return Ok(None);
    }
    Ok(Some(Rule {
        name: raw.name,
        action: raw.action,
        priority: raw.priority,
        tools: raw.tool_names.iter().map(|n| ToolName::parse(n)).collect(),
        phrases: raw.phrases.iter().map(|p| p.to_lowercase()).collect(),
        commands,
        message,
        rate_limit,
        rename_to: raw.rename_to.filter(|n| !n.trim().is_empty()),
        replace,
    }))
}

fn checked_rate_limit(raw: &RawRateLimit) -> Result<(NonZeroU32, Duration), String> {
    let calls = NonZeroU32::new(raw.calls_per_window)
        .ok_or("rate_limit.calls_per_window must be at least 1")?;
    if !(raw.window_seconds.is_finite() && raw.window_seconds > 0.0) {
        return Err("rate_limit.window_seconds must be a positive number".into());
    }
    Ok((calls, Duration::from_secs_f64(raw.window_seconds)))
}

impl Rule {
    /// Whether this rule is about this call.
    fn matches(&self, tool: &str, arguments: &str) -> bool {
        if !self.tools.iter().any(|t| t.matches(tool)) {
            return false;
        }
        if !self.phrases.is_empty() {
            let arguments = arguments.to_lowercase();
            if !self.phrases.iter().any(|p| arguments.contains(p.as_str())) {
                return false;
            }
        }
        self.commands.is_empty()
            || scripts(arguments).iter().any(|script| {
                commands(script)
                    .iter()
                    .any(|words| self.commands.iter().any(|re| re.is_match(&words.join(" "))))
            })
    }

    fn message_for(&self, tool: &str) -> String {
        self.message.replace("{tool}", tool)
    }

    /// The call renamed and its string arguments rewritten; arguments that are not JSON are
    /// rewritten as one string.
    fn rewritten(&self, tool: &str, arguments: &str) -> (String, String) {
        let name = self.rename_to.clone().unwrap_or_else(|| tool.to_owned());
        let arguments = match serde_json::from_str::<serde_json::Value>(arguments) {
            Ok(mut value) => {
                self.rewrite_strings(&mut value);
                value.to_string()
            }
            Err(_) => self.rewrite_text(arguments),
        };
        (name, arguments)
    }

    fn rewrite_strings(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(s) => *s = self.rewrite_text(s),
            serde_json::Value::Array(items) => {
                items.iter_mut().for_each(|v| self.rewrite_strings(v))
            }
            serde_json::Value::Object(fields) => {
                fields.values_mut().for_each(|v| self.rewrite_strings(v))
            }
            _ => {}
        }
    }

    fn rewrite_text(&self, text: &str) -> String {
        self.replace
            .iter()
            .fold(text.to_owned(), |text, (re, with)| {
                re.replace_all(&text, with.as_str()).into_owned()
            })
    }
}

type SessionLimiter = RateLimiter<
    String,
    governor::state::keyed::HashMapStateStore<String>,
    governor::clock::DefaultClock,
>;

/// Sessions kept per rate-limited rule before the idle ones are forgotten.
const SESSIONS_KEPT: usize = 10_000;

/// A rule and, when it has a rate limit, each session's budget.
struct Reactor {
    rule: Rule,
    budget: Option<SessionLimiter>,
}

impl Reactor {
    fn new(rule: Rule) -> Self {
        let budget = rule.rate_limit.map(|(calls, window)| {
            // `calls` at once, then one more every window / calls: at most `calls` per window.
            let period = (window / calls.get()).max(Duration::from_nanos(1));
            let quota = Quota::with_period(period)
                .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
                .allow_burst(calls);
            RateLimiter::hashmap(quota)
        });
        Self { rule, budget }
    }

    /// Whether the session has budget left in the window, taking one unit of it.
    fn take_budget(&self, session: &str) -> bool {
        let Some(budget) = &self.budget else {
            return true;
        };
        if budget.len() > SESSIONS_KEPT {
            budget.retain_recent();
        }
        budget.check_key(&session.to_owned()).is_ok()
    }

    /// What becomes of a call this rule matches, and a line for the trail.
    fn react(&self, session: &str, tool: &str, arguments: &str) -> Option<(Verdict, String)> {
        let rule = &self.rule;
        let text = |message: String| format!("\n\n[llmux: {message}]\n");
        match rule.action {
            Action::Steer if self.take_budget(session) => Some((
                Verdict::Replace(text(rule.message_for(tool))),
                format!("steered a call to {tool} ({})", rule.name),
            )),
            Action::Steer => None,
            Action::Block => Some((
                Verdict::Replace(text(format!(
                    "a call to {tool} was blocked and not run: {}",
                    rule.message_for(tool)
                ))),
                format!("blocked a call to {tool} ({})", rule.name),
            )),
            Action::RateLimit if self.take_budget(session) => None,
            Action::RateLimit => Some((
                Verdict::Replace(text(format!(
                    "a call to {tool} was not run, over its limit: {}",
                    rule.message_for(tool)
                ))),
                format!("rate-limited a call to {tool} ({})", rule.name),
            )),
            Action::Rewrite => {
                let (name, arguments) = rule.rewritten(tool, arguments);
                let line = format!("rewrote a call to {tool} as {name} ({})", rule.name);
                Some((Verdict::Rewrite { name, arguments }, line))
            }
        }
    }
}

/// The stage; off when no rule is enabled.
pub struct ToolCallReactor {
    reactors: Arc<[Reactor]>,
}

impl ToolCallReactor {
    pub fn new(rules: Vec<Rule>) -> Self {
        Self {
            reactors: rules.into_iter().map(Reactor::new).collect(),
        }
    }
}

impl Stage for ToolCallReactor {
    fn name(&self) -> &'static str {
        "tool-call-reactor"
    }

    fn reads(&self) -> Reads {
        Reads::EVENTS
    }

    fn phases(&self) -> Phases {
        Phases::RESPONSE_FILTER.when(!self.reactors.is_empty())
    }

    fn response_filter(
        &self,
        ctx: &RequestContext,
        _request: &Request,
    ) -> Option<Box<dyn EventFilter>> {
        let watched = self.reactors.clone();
        let reactors = self.reactors.clone();
        let (session, request_id, trail) = (
            ctx.session_id.clone(),
            ctx.request_id.clone(),
            ctx.trail.clone(),
        );
        Some(Box::new(ToolScreen::new(
            Arc::new(move |tool: &str| {
                watched
                    .iter()
                    .any(|r| r.rule.tools.iter().any(|t| t.matches(tool)))
            }),
            Arc::new(move |tool: &str, arguments: &str| {
                let reactor = reactors.iter().find(|r| r.rule.matches(tool, arguments))?;
                let (verdict, line) = reactor.react(&session, tool, arguments)?;
                tracing::info!(request_id = %request_id, tool, rule = %reactor.rule.name, "{line}");
                trail.intervene("tool-call-reactor", line);
                Some(verdict)
            }),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Event, FinishReason};

    fn rules(text: &str) -> Vec<Rule> {
        parse_rules(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn decide(reactors: &[Reactor], session: &str, tool: &str, args: &str) -> Option<Verdict> {
        let reactor = reactors.iter().find(|r| r.rule.matches(tool, args))?;
        reactor.react(session, tool, args).map(|(v, _)| v)
    }

    fn reactors(text: &str) -> Vec<Reactor> {
        rules(text).into_iter().map(Reactor::new).collect()
    }

    #[test]
    fn the_shipped_file_parses_and_its_example_is_off() {
        assert!(rules(DEFAULT_RULES).is_empty());
        let on = DEFAULT_RULES.replace("enabled = false", "enabled = true");
        let on = rules(&on);
        assert_eq!(on.len(), 1);
        assert_eq!(on[0].action, Action::Steer);
        assert!(on[0].matches("ApplyDiff", "{}"));
        assert!(!on[0].matches("patch_file", "{}"));
    }

    #[test]
    fn a_steer_rule_with_a_budget_steers_once_per_window_per_session() {
        let r = reactors(
            r#"[[rules]]
            name = "diff"
            tool_names = ["apply_diff"]
            action = "steer"
            message = "use patch_file, not {tool}"
            rate_limit = { calls_per_window = 1, window_seconds = 60 }"#,
        );
        let first = decide(&r, "s1", "apply_diff", "{}");
        assert_eq!(
            first,
            Some(Verdict::Replace(
                "\n\n[llmux: use patch_file, not apply_diff]\n".into()
            ))
        );
        assert_eq!(decide(&r, "s1", "apply_diff", "{}"), None, "budget spent");
        assert!(
            decide(&r, "s2", "apply_diff", "{}").is_some(),
            "another session"
        );
    }

    #[test]
    fn a_rate_limit_rule_passes_calls_up_to_its_budget_then_replaces_them() {
        let r = reactors(
            r#"[[rules]]
            name = "web"
            tool_names = ["web_search"]
            action = "rate-limit"
            message = "at most two searches a minute"
            rate_limit = { calls_per_window = 2, window_seconds = 60 }"#,
        );
        assert_eq!(decide(&r, "s", "WebSearch", r#"{"q":"a"}"#), None);
        assert_eq!(decide(&r, "s", "web-search", r#"{"q":"b"}"#), None);
        let third = decide(&r, "s", "web_search", r#"{"q":"c"}"#);
        assert!(
            matches!(&third, Some(Verdict::Replace(t)) if t.contains("over its limit")),
            "{third:?}"
        );
    }

    #[test]
    fn phrases_and_commands_narrow_a_rule_and_groups_name_tool_families() {
        let r = reactors(
            r#"[[rules]]
            name = "no publish"
            tool_names = ["@shell"]
            commands = ["^npm publish\\b"]
            action = "block"
            message = "publishing is for the user"

            [[rules]]
            name = "no env files"
            tool_names = ["@file-writing"]
            phrases = [".ENV"]
            action = "block"
            message = "secrets stay out of reach""#,
        );
        let bash = |c: &str| serde_json::json!({ "command": c }).to_string();
        assert!(
            decide(
                &r,
                "s",
                "Bash",
                &bash("cd pkg && sudo npm publish --tag next")
            )
            .is_some()
        );
        assert!(decide(&r, "s", "run_terminal_cmd", &bash("npm test")).is_none());
        assert!(decide(&r, "s", "Write", r#"{"file_path":"/repo/.env"}"#).is_some());
        assert!(decide(&r, "s", "Write", r#"{"file_path":"/repo/main.rs"}"#).is_none());
        assert!(decide(&r, "s", "Read", r#"{"file_path":"/repo/.env"}"#).is_none());
    }

    #[test]
    fn a_rewrite_renames_and_edits_string_arguments_keeping_json() {
        let r = reactors(
            r#"[[rules]]
            name = "quiet pytest"
            tool_names = ["Bash"]
            commands = ["^pytest"]
            action = "rewrite"
            rename_to = "shell"
            [[rules.replace]]
            pattern = "\\bpytest\\b"
            with = "pytest -q""#,
        );
        let verdict = decide(
            &r,
            "s",
            "bash",
            r#"{"command": "pytest tests/", "timeout": 5}"#,
        );
        let Some(Verdict::Rewrite { name, arguments }) = verdict else {
            panic!("{verdict:?}");
        };
        assert_eq!(name, "shell");
        let arguments: serde_json::Value = serde_json::from_str(&arguments).unwrap();
        assert_eq!(
            arguments,
            serde_json::json!({"command": "pytest -q tests/", "timeout": 5})
        );
    }

    #[test]
    fn the_highest_priority_rule_decides() {
        let r = reactors(
            r#"[[rules]]
            name = "low"
            tool_names = ["*"]
            action = "block"
            message = "low"
            [[rules]]
            name = "high"
            priority = 10
            tool_names = ["edit"]
            action = "block"
            message = "high""#,
        );
        let verdict = decide(&r, "s", "Edit", "{}");
        assert!(
            matches!(&verdict, Some(Verdict::Replace(t)) if t.contains("high")),
            "{verdict:?}"
        );
        let verdict = decide(&r, "s", "Read", "{}");
        assert!(
            matches!(&verdict, Some(Verdict::Replace(t)) if t.contains("low")),
            "{verdict:?}"
        );
    }

    #[test]
    fn broken_rules_are_refused_naming_the_rule_and_the_problem() {
        for (text, expected) in [
            (
                "[[rules]]\nname = 'x'\ntool_names = []\naction = 'block'\nmessage = 'm'",
                "rule 'x': tool_names names no tool",
            ),
            (
                "[[rules]]\nname = 'x'\ntool_names = ['a']\naction = 'steer'",
                "rule 'x': this action needs a message",
            ),
            (
                "[[rules]]\nname = 'x'\ntool_names = ['a']\naction = 'rate-limit'\nmessage = 'm'",
                "needs rate_limit",
            ),
            (
                "[[rules]]\nname = 'x'\ntool_names = ['a']\naction = 'rewrite'",
                "needs rename_to",
            ),
            (
                "[[rules]]\nname = 'x'\ntool_names = ['a']\naction = 'block'\nmessage = 'm'\ncommands = ['(']",
                "commands: invalid regex '('",
            ),
            (
                "[[rules]]\nname = 'x'\nenabled = false\ntool_names = ['a']\naction = 'steer'\nmessage = 'm'\nrate_limit = { calls_per_window = 0, window_seconds = 1 }",
                "calls_per_window must be at least 1",
            ),
            (
                "[[rules]]\nname = 'x'\ntool_names = ['a']\naction = 'steer'\nmessage = 'm'\nrate_limit = { calls_per_window = 1, window_seconds = -1 }",
                "window_seconds must be a positive number",
            ),
            (
                "[[rules]]\nname = 'x'\ntool_names = ['a']\naction = 'explode'",
                "unknown variant `explode`",
            ),
        ] {
            let err = parse_rules(text).err().unwrap_or_default();
            assert!(err.contains(expected), "{text}\n=> {err}");
        }
    }

    #[test]
    fn the_screen_holds_only_watched_tools_and_rewrites_in_place() {
        let stage = ToolCallReactor::new(rules(
            r#"[[rules]]
            name = "rename"
            tool_names = ["apply_diff"]
            action = "rewrite"
            rename_to = "patch_file""#,
        ));
        let ctx = RequestContext::new(crate::model::Protocol::OpenAiChat);
        let request = Request::new("m", vec![]);
        let mut filter = stage.response_filter(&ctx, &request).unwrap();
        let mut out = Vec::new();
        filter.on_event(
            Event::ToolCallStart {
                index: 0,
                id: "a".into(),
                name: "read_file".into(),
            },
            &mut out,
        );
        assert_eq!(out.len(), 1, "an unwatched call streams on");
        for event in [
            Event::ToolCallEnd { index: 0 },
            Event::ToolCallStart {
                index: 1,
                id: "b".into(),
                name: "apply_diff".into(),
            },
            Event::ToolCallArgsDelta {
                index: 1,
                arguments: r#"{"diff":"#.into(),
            },
            Event::ToolCallArgsDelta {
                index: 1,
                arguments: r#""x"}"#.into(),
            },
            Event::ToolCallEnd { index: 1 },
            Event::Finish {
                reason: FinishReason::ToolUse,
                stop_sequence: None,
            },
        ] {
            filter.on_event(event, &mut out);
        }
        assert_eq!(out.len(), 2, "the watched call is held");
        filter.on_end(&mut out);
        assert_eq!(
            format!("{:?}", &out[2..]),
            format!(
                "{:?}",
                [
                    Event::ToolCallStart {
                        index: 1,
                        id: "b".into(),
                        name: "patch_file".into(),
                    },
                    Event::ToolCallArgsDelta {
                        index: 1,
                        arguments: r#"{"diff":"x"}"#.into(),
                    },
                    Event::ToolCallEnd { index: 1 },
                    Event::Finish {
                        reason: FinishReason::ToolUse,
                        stop_sequence: None,
                    },
                ]
            )
        );
    }
}
