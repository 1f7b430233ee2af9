//! Pytest output compression (the seed's, on by default: `session.pytest_compression_enabled`,
//! PYTEST_COMPRESSION_ENABLED, `--enable-pytest-compression` /
//! `--disable-pytest-compression`). A tool result that is pytest's output loses what a model
//! does not need to fix a failure: the PASSED lines of verbose runs, progress lines with
//! nothing but passes, and the setup/call/teardown timings of `--durations`. FAILED and ERROR
//! lines, tracebacks, captured output and the summary stay. Agents run the suite again and
//! again; a few hundred passing tests are thousands of tokens each time.
//!
//! Compression is a pure function of the text, so every turn of a conversation sends the
//! same (compressed) history and providers' prompt caches keep working.

use std::sync::LazyLock;

use async_trait::async_trait;
use memchr::memmem;
use regex::Regex;

use super::{Flow, Phases, Reads, RequestContext, Stage};
use crate::Error;
use crate::model::{Message, Part, Request};

/// `tests/test_a.py::test_one PASSED   [ 10%]` (verbose), and pytest-xdist's
/// `[gw1] [ 40%] PASSED tests/test_a.py::test_one`.
static PASSED_LINE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"^(\S+::\S+.*\bPASSED\b.*|\[gw\d+\] \[\s*\d+%\] PASSED .*)$").ok()
});
/// `tests/test_a.py ........ss..   [ 40%]`: a progress line with passes and skips only.
static PASSING_PROGRESS: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^\S+\.py [.sx]+\s*(\[\s*\d+%\])?$").ok());
/// `0.52s call     tests/test_a.py::test_one` (`--durations`).
static TIMING: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^\d+(\.\d+)?s (setup|call|teardown)\s+\S+").ok());
/// The closing summary: `==== 3 failed, 97 passed in 2.10s ====`.
static SUMMARY: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"=+ .*\b(passed|failed|error|errors|skipped)\b.* in [\d.]+s.* =+").ok()
});

/// pytest's opening banner: `==== test session starts ====`.
static BANNER: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new("test session starts"));
/// What a closing summary's duration (` in 0.61s`, the part of [`SUMMARY`] after its words)
/// starts with.
const DURATION: &str = " in ";
static DURATION_START: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(DURATION));

/// Whether `text` looks like pytest's output: it has the session's banner, or a line that
/// is its closing summary. Only lines holding the start of a summary's duration are
/// searched for the summary: a match of [`SUMMARY`] holds one, and never spans a line (`.`
/// stops at `\n`). Coding agents' tool results are code and compiler output, full of the
/// summary's words (`error` above all), and each line holding one used to be searched; a
/// duration is rare in them, and two SIMD scans for literals took 0.04-0.08 ns a byte
/// where the search for the words took 0.12-0.16 (100 KB of llmux's own source).
pub fn is_pytest_output(text: &str) -> bool {
    let Some(summary) = SUMMARY.as_ref() else {
        return false;
    };
    if BANNER.find(text.as_bytes()).is_some() {
        return true;
    }
    // Lines before `searched` have been searched for the summary. The search goes on a byte
    // after each find, not after its end: ` in ` overlaps itself (` in in 1s`).
    let (mut from, mut searched) = (0, 0);
    while let Some(found) = DURATION_START.find(&text.as_bytes()[from..]) {
        let at = from + found;
        from = at + 1;
        // `[\d.]` in SUMMARY is any Unicode digit: a byte past ASCII may start one.
        let number = text.as_bytes()[at + DURATION.len()..]
            .first()
            .is_some_and(|&byte| byte.is_ascii_digit() || byte == b'.' || !byte.is_ascii());
        if at < searched || !number {
            continue;
        }
        let start = memchr::memrchr(b'\n', &text.as_bytes()[..at]).map_or(0, |i| i + 1);
        searched = memchr::memchr(b'\n', &text.as_bytes()[at..]).map_or(text.len(), |i| at + i);
        if summary.is_match(&text[start..searched]) {
            return true;
        }
    }
    false
}

/// `text` without the lines of passing tests and timings, with a note of what went;
/// `None` when nothing would go.
pub fn compress(text: &str) -> Option<String> {
    if !is_pytest_output(text) {
        return None;
    }
    let drop = |line: &str| {
        let line = line.trim_end();
        [&PASSED_LINE, &PASSING_PROGRESS, &TIMING]
            .iter()
            .any(|re| re.as_ref().is_some_and(|re| re.is_match(line)))
    };
    let mut kept = String::with_capacity(text.len() / 2);
    let mut dropped = 0usize;
    for line in text.lines() {
        if drop(line) {
            dropped += 1;
        } else {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    if dropped == 0 {
        return None;
    }
    kept.push_str(&format!(
        "[llmux removed {dropped} lines of passing tests and timings from this pytest output]\n"
    ));
    Some(kept)
}

/// Whether a tool result of `message` is pytest's output.
fn holds_pytest_output(message: &Message) -> bool {
    message.parts.iter().any(|part| {
        matches!(part, Part::ToolResult { content, .. } if content.iter().any(
            |inner| matches!(inner, Part::Text { text, .. } if is_pytest_output(text))
        ))
    })
}

pub struct PytestOutput {
    enabled: bool,
}

impl PytestOutput {
    pub fn new(enabled: bool) -> Self {
        Self { enabled }
    }
}

#[async_trait]
impl Stage for PytestOutput {
    fn name(&self) -> &'static str {
        "pytest-output"
    }

    fn reads(&self) -> Reads {
        Reads::MESSAGES
    }

    fn phases(&self) -> Phases {
        Phases::ON_REQUEST.when(self.enabled)
    }

    async fn on_request(
        &self,
        ctx: &mut RequestContext,
        request: &mut Request,
    ) -> Result<Flow, Error> {
        // Read first, and taken mutably only when there is output to compress: that copies
        // the messages, which the request shares with the copy kept to tell whether the
        // client's body can go out as it came and, for a large request, with the message
        // memo (`model::Shared`). A message repeated from the conversation's last request
        // was looked at then (`model::Facts`): an agent's growing request is mostly tool
        // results seen before, and looking took a third of its CPU.
        let facts = request.message_facts.of(&request.messages);
        let holding: Vec<bool> = request
            .messages
            .iter()
            .enumerate()
            .map(|(index, message)| {
                let look = || holds_pytest_output(message);
                match facts.and_then(|facts| facts.get(index)) {
                    Some(fact) => *fact.pytest_output.get_or_init(look),
                    None => look(),
                }
            })
            .collect();
        if !holding.contains(&true) {
            return Ok(Flow::Continue);
        }
        let (mut before, mut after) = (0usize, 0usize);
        let messages = request.messages.iter_mut().zip(holding);
        for (message, _) in messages.filter(|(_, holds)| *holds) {
            for part in &mut message.parts {
                let Part::ToolResult { content, .. } = part else {
                    continue;
                };
                for inner in content {
                    if let Part::Text { text, .. } = inner
                        && let Some(shorter) = compress(text)
                    {
                        before += text.len();
                        after += shorter.len();
                        *text = shorter;
                    }
                }
            }
        }
        if before > 0 {
            tracing::info!(
                request_id = %ctx.request_id,
                before_bytes = before,
                after_bytes = after,
                ratio = format_args!("{:.2}", after as f64 / before as f64),
                "pytest output compressed"
            );
            ctx.trail.intervene(
                "pytest-output",
                format!("pytest output compressed from {before} to {after} bytes"),
            );
        }
        Ok(Flow::Continue)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::{Facts, MessageFacts};

    const VERBOSE_WITH_FAILURE: &str = "\
============================= test session starts ==============================
platform linux -- Python 3.11.7, pytest-8.3.3, pluggy-1.5.0
collected 4 items

tests/test_math.py::test_add PASSED                                      [ 25%]
tests/test_math.py::test_sub PASSED                                      [ 50%]
tests/test_math.py::test_div FAILED                                      [ 75%]
tests/test_math.py::test_mul PASSED                                      [100%]

=================================== FAILURES ===================================
___________________________________ test_div ___________________________________

    def test_div():
>       assert div(1, 0) == 0
E       ZeroDivisionError: division by zero

tests/test_math.py:12: ZeroDivisionError
============================= slowest 3 durations ==============================
0.52s call     tests/test_math.py::test_div
0.01s setup    tests/test_math.py::test_add
0.00s teardown tests/test_math.py::test_add
=========================== short test summary info ============================
FAILED tests/test_math.py::test_div - ZeroDivisionError: division by zero
========================= 1 failed, 3 passed in 0.61s ==========================
";

    /// The definition `is_pytest_output` keeps, searching the whole text at once.
    fn looks_like_pytest_by_definition(text: &str) -> bool {
        text.contains("test session starts") || SUMMARY.as_ref().is_some_and(|re| re.is_match(text))
    }

    /// Random texts of the pieces a summary and a banner are made of, with decoys (a word
    /// inside another, a summary cut by a line break, the banner after a word on its line).
    /// The banner's pieces are in a quarter of the texts, so most that match do by a summary.
    fn random_text(rng: &mut fastrand::Rng) -> String {
        const PIECES: [&str; 26] = [
            "=",
            "==== ",
            " ===",
            "passed",
            "failed",
            "error",
            "errors",
            "skipped",
            "bypassed",
            " in ",
            " in 2.0s",
            "in 1s",
            "0.61",
            "3",
            "s",
            " ",
            "\n",
            "\r\n",
            "x",
            "é",
            ",",
            "1 failed, 3 passed in 0.61s",
            "== 2 passed in 0.1s ==",
            "_",
            "test session",
            " starts",
        ];
        let pieces = if rng.u8(..4) == 0 {
            &PIECES[..]
        } else {
            &PIECES[..PIECES.len() - 2]
        };
        let mut chosen: Vec<&str> = (0..rng.usize(0..40))
            .map(|_| pieces[rng.usize(..pieces.len())])
            .collect();
        if pieces.len() == PIECES.len() && rng.bool() {
            chosen.insert(rng.usize(..=chosen.len()), "test session starts");
        }
        chosen.concat()
    }

    #[test]
    fn the_line_by_line_search_agrees_with_the_definition() {
        let mut rng = fastrand::Rng::with_seed(0x5eed_7e57);
        let (mut by_summary, mut yes, mut no) = (0, 0, 0);
        for _ in 0..20_000 {
            let text = random_text(&mut rng);
            let expected = looks_like_pytest_by_definition(&text);
            assert_eq!(is_pytest_output(&text), expected, "{text:?}");
            match expected {
                true if !text.contains("test session starts") => by_summary += 1,
                true => yes += 1,
                false => no += 1,
            }
        }
        // Every answer is common, a summary line without the banner too, so the test says
        // something about each way to it.
        assert!(
            by_summary > 1_000 && yes > 1_000 && no > 1_000,
            "{by_summary} by a summary alone, {yes} with the banner, {no} no"
        );
    }

    #[test]
    fn a_banner_after_a_summary_word_on_its_line_is_found() {
        assert!(is_pytest_output(
            "error: x\nerror ==== test session starts ===="
        ));
        assert!(is_pytest_output("x\n== 1 failed in 2.0s ==\ny"));
        assert!(!is_pytest_output("== 1 failed\n in 2.0s =="));
        assert!(!is_pytest_output("fn main() { let error = 1; }"));
        // ` in ` overlapping itself, the second one starting the duration.
        assert!(is_pytest_output("= passed in in 1s ="));
    }

    #[test]
    fn passing_lines_and_timings_go_failures_and_tracebacks_stay() {
        let out = compress(VERBOSE_WITH_FAILURE).unwrap();
        assert!(!out.contains("test_add PASSED"));
        assert!(!out.contains("0.52s call"));
        assert!(out.contains("tests/test_math.py::test_div FAILED"));
        assert!(out.contains("E       ZeroDivisionError: division by zero"));
        assert!(out.contains("FAILED tests/test_math.py::test_div - ZeroDivisionError"));
        assert!(out.contains("1 failed, 3 passed in 0.61s"));
        assert!(out.contains("[llmux removed 6 lines"));
        assert!(out.len() < VERBOSE_WITH_FAILURE.len());
    }

    #[test]
    fn progress_lines_of_passes_go_and_ones_with_failures_or_errors_stay() {
        let quiet = "\
============================= test session starts ==============================
collected 120 items

tests/test_api.py ........................................................ [ 46%]
tests/test_db.py ..........F.....E....                                      [ 63%]
tests/test_ui.py ...............s............................              [100%]

==================== 1 failed, 117 passed, 1 skipped, 1 error in 3.2s ====================
";
        let out = compress(quiet).unwrap();
        assert!(!out.contains("tests/test_api.py ....."));
        assert!(!out.contains("tests/test_ui.py"));
        assert!(out.contains("tests/test_db.py ..........F.....E...."));
        assert!(out.contains("1 failed, 117 passed"));
    }

    #[test]
    fn xdist_output_and_other_tools_output() {
        let xdist = "\
============================= test session starts ==============================
created: 4/4 workers
4 workers [200 items]
........................................................................ [ 36%]
[gw1] [ 40%] PASSED tests/test_a.py::test_x
============================= 200 passed in 4.01s ==============================
";
        let out = compress(xdist).unwrap();
        assert!(!out.contains("[gw1] [ 40%] PASSED"));
        assert!(out.contains("200 passed in 4.01s"));
        assert!(out.contains("[llmux removed 1 lines"));
        assert_eq!(compress("cargo test: 12 passed; 0 failed"), None);
        assert_eq!(compress("total 12\ndrwxr-xr-x  2 root root 4096 ."), None);
    }

    fn tool_result(text: &str) -> Message {
        Message::new(
            crate::model::Role::Tool,
            vec![Part::ToolResult {
                call_id: "c".into(),
                content: vec![Part::text(text)],
                is_error: false,
                extensions: crate::model::Extensions::default(),
            }],
        )
    }

    fn result_text(request: &Request, index: usize) -> String {
        match &request.messages[index].parts[0] {
            Part::ToolResult { content, .. } => match &content[0] {
                Part::Text { text, .. } => text.clone(),
                other => panic!("not text: {other:?}"),
            },
            other => panic!("not a tool result: {other:?}"),
        }
    }

    /// A request of a listing and pytest's output, with facts of its messages as the
    /// message memo hands them on: `pytest` says what each was found to be.
    fn request_with_facts(pytest: [Option<bool>; 2]) -> (Request, Vec<Arc<MessageFacts>>) {
        let mut request = Request::new(
            "m",
            vec![tool_result("total 12\n"), tool_result(VERBOSE_WITH_FAILURE)],
        );
        let facts: Vec<Arc<MessageFacts>> = pytest
            .iter()
            .map(|known| {
                let fact = MessageFacts::default();
                if let Some(known) = *known {
                    fact.pytest_output.set(known).unwrap();
                }
                Arc::new(fact)
            })
            .collect();
        request.message_facts = Facts::new(&request.messages, facts.clone());
        (request, facts)
    }

    async fn run(request: &mut Request) {
        let mut ctx = RequestContext::new(crate::model::Protocol::OpenAiChat);
        PytestOutput::new(true)
            .on_request(&mut ctx, request)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn what_a_message_was_found_to_be_is_kept_and_not_looked_for_again() {
        // Nothing known yet: both are looked at, and what they are is kept.
        let (mut request, facts) = request_with_facts([None, None]);
        run(&mut request).await;
        assert_eq!(facts[0].pytest_output.get(), Some(&false));
        assert_eq!(facts[1].pytest_output.get(), Some(&true));
        assert!(result_text(&request, 1).contains("[llmux removed 6 lines"));

        // What is known is taken as it is: output said to be none is left alone.
        let (mut request, _) = request_with_facts([Some(false), Some(false)]);
        run(&mut request).await;
        assert_eq!(result_text(&request, 1), VERBOSE_WITH_FAILURE);

        // Output known to be pytest's is compressed again: each request carries it whole.
        let (mut request, _) = request_with_facts([Some(false), Some(true)]);
        run(&mut request).await;
        assert!(result_text(&request, 1).contains("[llmux removed 6 lines"));

        // Facts of a list a stage changed are not used.
        let (mut request, _) = request_with_facts([Some(false), Some(false)]);
        request.messages.push(tool_result("more"));
        run(&mut request).await;
        assert!(result_text(&request, 1).contains("[llmux removed 6 lines"));
    }
}
