//! Dangerous command prevention (on by default, as in the seed): a tool call that would run
//! a destructive shell command (`git reset --hard`, `git clean -f`, a force push to a
//! protected branch, `rm -r` of the project or home, ...) is not passed to the client to
//! execute. The client gets a message in its place, which the model reads on its next
//! turn: what was stopped, why, and to ask the user. Rules live in
//! config/dangerous_commands.toml; tool calls are read by the shared matcher
//! ([`super::tool_match`]): shell strings, argv arrays, nested inputs, any agent's tool name.
//!
//! A tool call is decided once its arguments are complete, so from the answer's first call
//! of a shell tool on, the answer is held back until it ends (everything before it streams
//! as usual; answers without shell calls are not held at all).

use serde::Deserialize;

use super::tool_match::{commands, runs_shell, scripts};
use super::tool_screen::{ToolScreen, Verdict};
use super::{EventFilter, Phases, Reads, RequestContext, Stage};
use crate::model::Request;

/// The rules llmux ships (config/dangerous_commands.toml).
pub const DEFAULT_RULES: &str = include_str!("../../config/dangerous_commands.toml");

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    pub program: String,
    #[serde(default)]
    pub subcommand: Option<String>,
    #[serde(default)]
    pub any_flags: Vec<String>,
    #[serde(default)]
    pub all_flags: Vec<String>,
    #[serde(default)]
    pub any_args: Vec<String>,
    #[serde(default)]
    pub unless_flags: Vec<String>,
    pub why: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    rules: Vec<Rule>,
}

/// Reads a rules file's text; the error names the problem.
pub fn parse_rules(text: &str) -> Result<Vec<Rule>, String> {
    let file: RulesFile = toml::from_str(text).map_err(|e| e.to_string())?;
    for rule in &file.rules {
        if rule.program.trim().is_empty() {
            return Err(format!("rule '{}' names no program", rule.name));
        }
    }
    Ok(file.rules)
}

/// A simple command's words, read as a program, its subcommand, flags and other words.
struct Parsed<'a> {
    program: &'a str,
    subcommand: Option<&'a str>,
    flags: Vec<String>,
    args: Vec<&'a str>,
}

fn parse(words: &[String]) -> Option<Parsed<'_>> {
    let (first, rest) = words.split_first()?;
    let program = first.rsplit('/').next().unwrap_or(first);
    let mut rest = rest.iter().map(String::as_str).peekable();
    // git's own options come before its subcommand; -C and -c take a value.
    let mut subcommand = None;
    if program == "git" {
        while let Some(word) = rest.next() {
            match word {
                "-C" | "-c" | "--git-dir" | "--work-tree" | "--namespace" => {
                    rest.next();
                }
                w if w.starts_with('-') => {}
                w => {
                    subcommand = Some(w);
                    break;
                }
            }
        }
    }
    let (mut flags, mut args) = (Vec::new(), Vec::new());
    let mut only_args = false;
    for word in rest {
        if only_args || word == "-" || !word.starts_with('-') {
            args.push(word);
        } else if word == "--" {
            only_args = true;
        } else if let Some(long) = word.strip_prefix("--") {
            flags.push(format!("--{}", long.split('=').next().unwrap_or(long)));
        } else {
            // A cluster of short flags: -fdx is -f, -d and -x.
            flags.extend(word[1..].chars().map(|c| format!("-{c}")));
        }
    }
    Some(Parsed {
        program,
        subcommand,
        flags,
        args,
    })
}

/// `pattern` against `word`: `*` is any run of characters but `/`, `\*` a star.
fn glob(pattern: &str, word: &str) -> bool {
    fn matches(p: &[char], w: &[char]) -> bool {
        match p.split_first() {
            None => w.is_empty(),
            Some(('\\', rest)) if rest.first() == Some(&'*') => {
                w.first() == Some(&'*') && matches(&rest[1..], &w[1..])
            }
            Some(('*', rest)) => (0..=w.len())
                .take_while(|&i| i == 0 || w[i - 1] != '/')
                .any(|i| matches(rest, &w[i..])),
            Some((c, rest)) => w.first() == Some(c) && matches(rest, &w[1..]),
        }
    }
    let (p, w): (Vec<char>, Vec<char>) = (pattern.chars().collect(), word.chars().collect());
    matches(&p, &w)
}

impl Rule {
    fn matches(&self, command: &Parsed<'_>) -> bool {
        let has = |flag: &String| command.flags.iter().any(|f| f == flag);
        command.program == self.program
            && self
                .subcommand
                .as_deref()
                .is_none_or(|sub| command.subcommand == Some(sub))
            && (self.any_flags.is_empty() || self.any_flags.iter().any(has))
            && self.all_flags.iter().all(has)
            && (self.any_args.is_empty()
                || self
                    .any_args
                    .iter()
                    .any(|p| command.args.iter().any(|a| glob(p, a))))
            && !self.unless_flags.iter().any(has)
    }
}

/// The first rule a tool call breaks, and the command that broke it.
pub fn check<'r>(rules: &'r [Rule], tool: &str, arguments: &str) -> Option<(&'r Rule, String)> {
    if !runs_shell(tool) {
        return None;
    }
    for script in scripts(arguments) {
        for words in commands(&script) {
            let Some(parsed) = parse(&words) else {
                continue;
            };
            if let Some(rule) = rules.iter().find(|r| r.matches(&parsed)) {
                return Some((rule, words.join(" ")));
            }
        }
    }
    None
}

pub struct DangerousCommands {
    rules: std::sync::Arc<[Rule]>,
}

impl DangerousCommands {
    /// `rules` empty: the stage is off.
    pub fn new(rules: Vec<Rule>) -> Self {
        Self {
            rules: rules.into(),
        }
    }
}

impl Stage for DangerousCommands {
    fn name(&self) -> &'static str {
        "dangerous-commands"
    }

    fn reads(&self) -> Reads {
        Reads::EVENTS
    }

    fn phases(&self) -> Phases {
        Phases::RESPONSE_FILTER.when(!self.rules.is_empty())
    }

    fn response_filter(
        &self,
        ctx: &RequestContext,
        _request: &Request,
    ) -> Option<Box<dyn EventFilter>> {
        let (rules, request_id, trail) = (
            self.rules.clone(),
            ctx.request_id.clone(),
            ctx.trail.clone(),
        );
        Some(Box::new(ToolScreen::shell(std::sync::Arc::new(
            move |tool: &str, arguments: &str| {
                let (rule, command) = check(&rules, tool, arguments)?;
                tracing::warn!(
                    request_id = %request_id,
                    tool,
                    rule = %rule.name,
                    command = %command,
                    "dangerous command stopped"
                );
                trail.intervene(
                    "dangerous-commands",
                    format!("stopped `{command}` ({})", rule.name),
                );
                Some(Verdict::Replace(steering(rule, &command)))
            },
        ))))
    }
}

/// What the client (and the model, on its next turn) reads instead of the call.
fn steering(rule: &Rule, command: &str) -> String {
    format!(
        "\n\n[llmux stopped a tool call: `{command}` ({}): {}. It was not run. If it is really \
         needed, ask the user to run it themselves, or find a way that keeps their work.]\n",
        rule.name, rule.why
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Event, FinishReason};

    fn rules() -> Vec<Rule> {
        parse_rules(DEFAULT_RULES).unwrap()
    }

    fn stopped(tool: &str, arguments: &str) -> Option<String> {
        check(&rules(), tool, arguments).map(|(rule, _)| rule.name.clone())
    }

    fn bash(command: &str) -> String {
        serde_json::json!({ "command": command }).to_string()
    }

    #[test]
    fn each_dangerous_variant_is_stopped() {
        let cases = [
            ("Bash", bash("git reset --hard"), "git reset --hard"),
            ("shell", bash("git reset --hard HEAD~3"), "git reset --hard"),
            (
                "execute_command",
                bash("cd repo && git   reset  --hard"),
                "git reset --hard",
            ),
            (
                "run_terminal_cmd",
                bash("git -C /repo reset --hard origin/main"),
                "git reset --hard",
            ),
            ("bash", bash("sudo git clean -fdx"), "git clean -f"),
            ("Bash", bash("git clean -d --force"), "git clean -f"),
            (
                "Bash",
                bash("git push --force origin main"),
                "git push --force to a protected branch",
            ),
            (
                "Bash",
                bash("git push -f origin HEAD:master"),
                "git push --force to a protected branch",
            ),
            (
                "Bash",
                bash("git push origin +main"),
                "git push +branch to a protected branch",
            ),
            ("Bash", bash("git checkout -- ."), "git checkout -- ."),
            ("Bash", bash("git checkout ."), "git checkout -- ."),
            ("Bash", bash("git restore ."), "git restore ."),
            ("Bash", bash("git stash clear"), "git stash clear"),
            (
                "Bash",
                bash("rm -rf /"),
                "rm -r of the repository, the home directory or the root",
            ),
            (
                "Bash",
                bash("rm -rf ~"),
                "rm -r of the repository, the home directory or the root",
            ),
            (
                "Bash",
                bash("rm -r -f $HOME"),
                "rm -r of the repository, the home directory or the root",
            ),
            (
                "Bash",
                bash("/bin/rm -Rf ."),
                "rm -r of the repository, the home directory or the root",
            ),
            (
                "Bash",
                bash("echo ok; rm -rf '~'"),
                "rm -r of the repository, the home directory or the root",
            ),
            (
                "Bash",
                bash("bash -c 'git reset --hard'"),
                "git reset --hard",
            ),
            (
                "shell",
                r#"{"command": ["bash", "-lc", "git clean -fd"]}"#.into(),
                "git clean -f",
            ),
            (
                "shell",
                r#"{"command": ["git", "reset", "--hard"]}"#.into(),
                "git reset --hard",
            ),
            (
                "local_shell",
                r#"{"action": {"command": ["rm", "-rf", "/"]}}"#.into(),
                "rm -r of the repository, the home directory or the root",
            ),
            (
                "Bash",
                bash("git reset --hard\ngit status"),
                "git reset --hard",
            ),
        ];
        for (tool, arguments, rule) in cases {
            assert_eq!(
                stopped(tool, &arguments).as_deref(),
                Some(rule),
                "{tool} {arguments}"
            );
        }
    }

    #[test]
    fn each_safe_variant_passes() {
        let cases = [
            ("Bash", bash("git reset --soft HEAD~1")),
            ("Bash", bash("git reset HEAD file.rs")),
            ("Bash", bash("git clean -n")),
            ("Bash", bash("git clean -fdn")),
            ("Bash", bash("git clean --dry-run -fd")),
            ("Bash", bash("git rm --cached secrets.env")),
            ("Bash", bash("git push origin feature")),
            ("Bash", bash("git push --force origin feature/login")),
            ("Bash", bash("git checkout main")),
            ("Bash", bash("git checkout -b fix")),
            ("Bash", bash("git checkout -- src/main.rs")),
            ("Bash", bash("git restore --staged .")),
            ("Bash", bash("git stash drop")),
            ("Bash", bash("rm -rf ./build")),
            ("Bash", bash("rm -rf target node_modules")),
            ("Bash", bash("rm -rf /tmp/llmux-test")),
            ("Bash", bash("rm ~/notes.txt")),
            ("Bash", bash("echo 'git reset --hard' > notes.md")),
            ("Bash", bash("grep -rn 'rm -rf /' docs")),
            ("read_file", r#"{"path": "git reset --hard"}"#.into()),
            ("Write", r#"{"command": "git reset --hard"}"#.into()),
        ];
        for (tool, arguments) in cases {
            assert_eq!(stopped(tool, &arguments), None, "{tool} {arguments}");
        }
    }

    #[test]
    fn globs_stop_at_slashes_and_escaped_stars_are_stars() {
        assert!(glob("release/*", "release/1.2"));
        assert!(!glob("release/*", "release/1/2"));
        assert!(glob("*:main", "HEAD:main"));
        assert!(glob("\\*", "*"));
        assert!(!glob("\\*", "main"));
        assert!(glob("/*", "/usr"));
        assert!(!glob("/*", "/tmp/x"));
    }

    fn call(index: u32, name: &str, arguments: &str) -> Vec<Event> {
        vec![
            Event::ToolCallStart {
                index,
                id: format!("call_{index}"),
                name: name.into(),
            },
            Event::ToolCallArgsDelta {
                index,
                arguments: arguments[..arguments.len() / 2].into(),
            },
            Event::ToolCallArgsDelta {
                index,
                arguments: arguments[arguments.len() / 2..].into(),
            },
            Event::ToolCallEnd { index },
        ]
    }

    fn run(events: Vec<Event>) -> Vec<Event> {
        let stage = DangerousCommands::new(rules());
        let ctx = RequestContext::new(crate::model::Protocol::OpenAiChat);
        let mut guard = stage
            .response_filter(&ctx, &Request::new("m", vec![]))
            .unwrap();
        let mut out = Vec::new();
        for event in events {
            guard.on_event(event, &mut out);
        }
        guard.on_end(&mut out);
        out
    }

    #[test]
    fn a_dangerous_call_becomes_a_message_and_the_others_are_numbered_again() {
        let mut events = vec![Event::TextDelta("Cleaning up.".into())];
        events.extend(call(0, "Bash", &bash("git reset --hard")));
        events.extend(call(1, "Bash", &bash("git status")));
        events.push(Event::Finish {
            reason: FinishReason::ToolUse,
            stop_sequence: None,
        });
        let out = run(events);
        let text: String = out
            .iter()
            .filter_map(|e| match e {
                Event::TextDelta(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert!(text.starts_with("Cleaning up."));
        assert!(
            text.contains("llmux stopped a tool call: `git reset --hard`"),
            "{text}"
        );
        let starts: Vec<(u32, &str)> = out
            .iter()
            .filter_map(|e| match e {
                Event::ToolCallStart { index, id, .. } => Some((*index, id.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(starts, [(0, "call_1")], "the safe call, as index 0");
        assert!(out.iter().any(|e| matches!(
            e,
            Event::Finish {
                reason: FinishReason::ToolUse,
                ..
            }
        )));

        let only = run([
            call(0, "Bash", &bash("rm -rf ~")),
            vec![Event::Finish {
                reason: FinishReason::ToolUse,
                stop_sequence: None,
            }],
        ]
        .concat());
        assert!(
            !only
                .iter()
                .any(|e| matches!(e, Event::ToolCallStart { .. }))
        );
        assert!(only.iter().any(|e| matches!(
            e,
            Event::Finish {
                reason: FinishReason::EndTurn,
                ..
            }
        )));
    }
}
