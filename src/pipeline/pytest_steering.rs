//! Pytest full-suite steering (opt-in, as in the seed: `session.pytest_full_suite_steering_enabled`,
//! PYTEST_FULL_SUITE_STEERING_ENABLED, `--enable-pytest-full-suite-steering`). A shell call
//! that runs the whole pytest suite (`pytest`, `python -m pytest -q`, `uv run pytest` with no
//! test path and no `-k`/`-m` selection) is replaced by a message suggesting the tests of
//! the files at hand; calling the very same command again runs it. Whole suites take
//! minutes and fill the context with output the model rarely needs.

use super::tool_match::{
    commands, normalized_arguments as normalized, runs_shell, scripts, since_user_wrote,
};
use super::tool_screen::{ToolScreen, Verdict};
use super::{EventFilter, Phases, Reads, RequestContext, Stage};
use crate::model::{Part, Request};

/// Marks llmux's message, for the tests and the log.
pub const MARK: &str = "[llmux: whole test suite]";

/// Options of pytest that take the next word as their value.
const TAKES_VALUE: &[&str] = &[
    "-k",
    "-m",
    "-n",
    "-p",
    "-c",
    "-o",
    "--durations",
    "--maxfail",
    "--rootdir",
    "--tb",
    "--deselect",
    "--ignore",
    "--junitxml",
    "--cov",
    "--cov-report",
    "--dist",
    "-W",
];
/// Options that select some tests: the run is not the whole suite.
const SELECTS: &[&str] = &[
    "-k",
    "-m",
    "--lf",
    "--last-failed",
    "--sw",
    "--stepwise",
    "--deselect",
];
/// Runners that run a command: `uv run pytest` runs pytest.
const RUNNERS: &[&[&str]] = &[
    &["uv", "run"],
    &["poetry", "run"],
    &["pipenv", "run"],
    &["pdm", "run"],
    &["hatch", "run"],
];

/// Whether a simple command runs the whole pytest suite.
fn runs_whole_suite(words: &[String]) -> bool {
    let mut words: &[String] = words;
    for runner in RUNNERS {
        if words.len() > runner.len() && words.iter().zip(runner.iter()).all(|(w, r)| w == r) {
            words = &words[runner.len()..];
        }
    }
    let program = words.first().map(|w| w.rsplit('/').next().unwrap_or(w));
    let args = match program {
        Some("pytest" | "py.test") => &words[1..],
        Some(p) if p.starts_with("python") && words.get(1).is_some_and(|w| w == "-m") => {
            match words.get(2).map(String::as_str) {
                Some("pytest") => &words[3..],
                _ => return false,
            }
        }
        _ => return false,
    };
    let mut skip_next = false;
    for arg in args {
        if skip_next {
            skip_next = false;
            continue;
        }
        if SELECTS.contains(&arg.as_str()) {
            return false;
        }
        if TAKES_VALUE.contains(&arg.as_str()) {
            skip_next = true;
            continue;
        }
        if !arg.starts_with('-') {
            // A test path, a directory or a node id: a part of the suite.
            return false;
        }
    }
    true
}

/// Whether a call (tool name and JSON arguments) runs the whole suite.
pub fn whole_suite_call(tool: &str, arguments: &str) -> bool {
    runs_shell(tool)
        && scripts(arguments)
            .iter()
            .any(|script| commands(script).iter().any(|c| runs_whole_suite(c)))
}

/// The model's last call before this answer, since the user last wrote.
fn last_call(request: &Request) -> Option<(String, String)> {
    since_user_wrote(request).find_map(|part| match part {
        Part::ToolCall {
            name, arguments, ..
        } => Some((name.clone(), normalized(arguments))),
        _ => None,
    })
}

pub struct PytestSteering {
    enabled: bool,
}

impl PytestSteering {
    pub fn new(enabled: bool) -> Self {
        Self { enabled }
    }
}

impl Stage for PytestSteering {
    fn name(&self) -> &'static str {
        "pytest-steering"
    }

    fn reads(&self) -> Reads {
        Reads::ALL
    }

    fn phases(&self) -> Phases {
        Phases::RESPONSE_FILTER.when(self.enabled)
    }

    fn response_filter(
        &self,
        ctx: &RequestContext,
        request: &Request,
    ) -> Option<Box<dyn EventFilter>> {
        let previous = last_call(request);
        let (request_id, trail) = (ctx.request_id.clone(), ctx.trail.clone());
        Some(Box::new(ToolScreen::shell(std::sync::Arc::new(
            move |tool: &str, arguments: &str| {
                if !whole_suite_call(tool, arguments) {
                    return None;
                }
                let again = previous
                    .as_ref()
                    .is_some_and(|(name, args)| name == tool && *args == normalized(arguments));
                if again {
                    return None;
                }
                tracing::info!(request_id = %request_id, tool, "whole pytest suite: steered");
                trail.intervene(
                    "pytest-steering",
                    "a run of the whole suite was not passed on",
                );
                Some(Verdict::Replace(format!(
                    "\n\n{MARK} That call would run the whole pytest suite. llmux did not run it. \
                     Run the tests of the files you changed instead (`pytest tests/test_x.py`, \
                     or `-k` with a name). If the whole suite is really needed, call the same \
                     command again and it will run."
                )))
            },
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bash(command: &str) -> String {
        serde_json::json!({ "command": command }).to_string()
    }

    #[test]
    fn whole_suite_runs_are_told_apart_from_selections() {
        for whole in [
            "pytest",
            "pytest -q",
            "pytest -v -x --tb short",
            "python -m pytest",
            "python3 -m pytest -n 4",
            "uv run pytest",
            "cd repo && poetry run pytest -q",
            "/usr/bin/pytest --durations 10",
        ] {
            assert!(whole_suite_call("Bash", &bash(whole)), "{whole}");
        }
        for part in [
            "pytest tests/test_api.py",
            "pytest tests/",
            "pytest -k login",
            "pytest -m 'not slow'",
            "pytest --lf",
            "python -m pytest tests/test_a.py::test_one",
            "python -m pip install pytest",
            "cargo test",
            "echo pytest",
        ] {
            assert!(!whole_suite_call("Bash", &bash(part)), "{part}");
        }
        assert!(!whole_suite_call("Read", &bash("pytest")));
    }
}
