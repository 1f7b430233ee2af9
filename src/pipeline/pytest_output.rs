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
use regex::Regex;

use super::{Flow, Phases, Reads, RequestContext, Stage};
use crate::Error;
use crate::model::{Part, Request};

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

/// What pytest's output holds: its opening banner, or one of the words a closing summary
/// holds. A pure alternation of literals, so the search is a SIMD scan for them, where the
/// summary's regex searched the whole text from every `=` (~5 instructions a byte of a tool
/// result, the most costly part of a 100 KB request: bench/callgrind.sh with `--history 40`).
static PYTEST_WORD: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new("test session starts|passed|failed|error|skipped").ok());

/// Whether `text` looks like pytest's output: it has the session's banner, or a line that
/// is its closing summary. Only lines holding a summary word are searched for the summary:
/// a match of [`SUMMARY`] holds one, and never spans a line (`.` stops at `\n`), and the
/// `\b`s around the word look at characters of the match, so searching its line finds it.
pub fn is_pytest_output(text: &str) -> bool {
    let (Some(words), Some(summary)) = (PYTEST_WORD.as_ref(), SUMMARY.as_ref()) else {
        return false;
    };
    // Lines before `searched` have been searched for the summary; the banner may still
    // follow a summary word on such a line, so the scan for words goes on word by word.
    let (mut from, mut searched) = (0, 0);
    while let Some(word) = words.find_at(text, from) {
        if word.as_str() == "test session starts" {
            return true;
        }
        if word.start() >= searched {
            let start = text[..word.start()].rfind('\n').map_or(0, |i| i + 1);
            searched = text[word.end()..]
                .find('\n')
                .map_or(text.len(), |i| word.end() + i);
            if summary.is_match(&text[start..searched]) {
                return true;
            }
        }
        from = word.end();
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
        // memo (`model::Shared`).
        let compressible = request.messages.iter().flat_map(|m| &m.parts).any(|part| {
            matches!(part, Part::ToolResult { content, .. } if content.iter().any(
                |inner| matches!(inner, Part::Text { text, .. } if is_pytest_output(text))
            ))
        });
        if !compressible {
            return Ok(Flow::Continue);
        }
        let (mut before, mut after) = (0usize, 0usize);
        for message in &mut request.messages {
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
    use super::*;

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
        const PIECES: [&str; 24] = [
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
}
