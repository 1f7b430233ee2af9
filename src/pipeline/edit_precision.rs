//! Edit-precision tuning (the seed's "Automated Model Tuning for Precision"): when the
//! newest tool results or user message of a request say a file edit failed (patterns in
//! config/edit_precision_patterns.toml), that request goes out with a low temperature and,
//! if enabled, a capped top_p, so the model's next edit attempt is more precise.

use async_trait::async_trait;
use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

use super::{Flow, Phases, Reads, RequestContext, Stage};
use crate::Error;
use crate::model::{Part, Request, Role};

/// The patterns shipped with llmux.
pub const DEFAULT_PATTERNS: &str = include_str!("../../config/edit_precision_patterns.toml");

#[derive(Debug, Clone, PartialEq)]
pub struct EditPrecisionSettings {
    pub enabled: bool,
    pub temperature: f64,
    pub min_top_p: f64,
    pub override_top_p: bool,
    /// Agents (user agents) this never applies to.
    pub exclude_agents_regex: Option<String>,
    /// The patterns file's text (`patterns = [...]`).
    pub patterns: Vec<String>,
}

/// Reads `patterns = [...]` from a patterns file's text.
pub fn parse_patterns(text: &str) -> Result<Vec<String>, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        patterns: Vec<String>,
    }
    let file: File = toml::from_str(text).map_err(|e| e.message().to_owned())?;
    for pattern in &file.patterns {
        RegexBuilder::new(pattern)
            .case_insensitive(true)
            .build()
            .map_err(|e| format!("invalid regex '{pattern}': {e}"))?;
    }
    Ok(file.patterns)
}

/// The only characters outside ASCII that case-fold to an ASCII letter (Kelvin sign: k,
/// long s: s; regex-syntax's simple case folding table). A text without them matches a
/// pattern ignoring case as its ASCII-lowercased self matches it exactly, when the pattern
/// [`matches_lowercased_text_alike`].
const FOLD_TO_ASCII: [&str; 2] = ["\u{212A}", "\u{17F}"];

/// Whether `text` holds one of [`FOLD_TO_ASCII`]. Searched for as substrings, which std
/// finds with SIMD, rather than as a set of `char`s, which decodes every character (a
/// third of the stage's instructions on the bench's 200-byte last message).
fn has_fold_to_ascii(text: &str) -> bool {
    FOLD_TO_ASCII.iter().any(|c| text.contains(c))
}

pub struct EditPrecision {
    settings: EditPrecisionSettings,
    /// All patterns in one automaton: one pass over the text, however many patterns.
    patterns: RegexSet,
    /// The same patterns matched case-sensitively, for a text with its ASCII letters lowercased
    /// (and none of [`FOLD_TO_ASCII`]): when every pattern [`matches_lowercased_text_alike`],
    /// this answers as `patterns` does, and its literals let regex search with SIMD.
    /// Case-insensitive literals expand to too many variants for that: 5.6 µs against 0.4 µs
    /// (with the lowercasing) over a 2 KB message.
    lowercased: Option<RegexSet>,
    exclude: Option<Regex>,
}

/// Whether `pattern`, matched case-insensitively against a text without [`FOLD_TO_ASCII`],
/// matches exactly where it matches case-sensitively against that text with its ASCII
/// letters lowercased (other characters left as they are). It does when every literal is
/// ASCII and not uppercase (`\x4B` is an uppercase literal too), every class item is either
/// free of uppercase letters or closed under ASCII case (no `[A-Z]`, `[@-_]`, `[[:upper:]]`;
/// `[[:alpha:]]` and Perl classes such as `\w` are closed), there is no Unicode class
/// (`\p{Lu}`) and no flag (`(?-i)`). regex folds a class's case before it negates it, so
/// negated classes follow the same rule; assertions do not depend on case, and lowercasing
/// keeps a word character a word character. A pattern regex cannot parse is never taken as
/// alike.
fn matches_lowercased_text_alike(pattern: &str) -> bool {
    use regex_syntax::ast::{Ast, ClassAsciiKind, ClassSet, ClassSetItem, GroupKind};

    fn literal(c: char) -> bool {
        c.is_ascii() && !c.is_ascii_uppercase()
    }
    fn ast(node: &Ast) -> bool {
        match node {
            Ast::Empty(_) | Ast::Dot(_) | Ast::Assertion(_) | Ast::ClassPerl(_) => true,
            Ast::Flags(_) | Ast::ClassUnicode(_) => false,
            Ast::Literal(l) => literal(l.c),
            Ast::ClassBracketed(class) => class_set(&class.kind),
            Ast::Repetition(repetition) => ast(&repetition.ast),
            Ast::Group(group) => {
                let plain = match &group.kind {
                    GroupKind::NonCapturing(flags) => flags.items.is_empty(),
                    GroupKind::CaptureIndex(_) | GroupKind::CaptureName { .. } => true,
                };
                plain && ast(&group.ast)
            }
            Ast::Alternation(alternation) => alternation.asts.iter().all(ast),
            Ast::Concat(concat) => concat.asts.iter().all(ast),
        }
    }
    fn class_set(set: &ClassSet) -> bool {
        // Intersections and differences (`ClassSet::BinaryOp`): rare, not worth reasoning about.
        matches!(set, ClassSet::Item(item) if class_item(item))
    }
    fn class_item(item: &ClassSetItem) -> bool {
        match item {
            ClassSetItem::Empty(_) | ClassSetItem::Perl(_) => true,
            ClassSetItem::Unicode(_) => false,
            ClassSetItem::Literal(l) => literal(l.c),
            // A range between lowercase ends may still span the uppercase ones ('9'-'a'), and
            // one past ASCII may hold a letter that folds to an ASCII one (U+212A, Kelvin: k).
            ClassSetItem::Range(range) => {
                range.end.c.is_ascii() && (range.end.c < 'A' || range.start.c > 'Z')
            }
            ClassSetItem::Ascii(ascii) => ascii.kind != ClassAsciiKind::Upper,
            ClassSetItem::Bracketed(inner) => class_set(&inner.kind),
            ClassSetItem::Union(union) => union.items.iter().all(class_item),
        }
    }
    regex_syntax::ast::parse::Parser::new()
        .parse(pattern)
        .is_ok_and(|parsed| ast(&parsed))
}

impl EditPrecision {
    pub fn new(settings: EditPrecisionSettings) -> Result<Self, Error> {
        let patterns = RegexSetBuilder::new(&settings.patterns)
            .case_insensitive(true)
            .build()
            .map_err(|e| Error::internal(format!("edit-precision pattern: {e}")))?;
        let exclude = settings
            .exclude_agents_regex
            .as_deref()
            .map(Regex::new)
            .transpose()
            .map_err(|e| Error::internal(format!("edit_precision.exclude_agents_regex: {e}")))?;
        let lowercased = settings
            .patterns
            .iter()
            .all(|pattern| matches_lowercased_text_alike(pattern))
            .then(|| RegexSetBuilder::new(&settings.patterns).build().ok())
            .flatten();
        Ok(Self {
            settings,
            patterns,
            lowercased,
            exclude,
        })
    }

    /// Text of what came back since the model last spoke: tool results and user text.
    fn newest_feedback(request: &Request) -> String {
        let mut text = String::new();
        for message in request.messages.iter().rev() {
            if message.role == Role::Assistant {
                break;
            }
            for part in &message.parts {
                match part {
                    Part::Text { text: t, .. } => text.push_str(t),
                    Part::ToolResult { content, .. } => {
                        for inner in content {
                            if let Some(t) = inner.as_text() {
                                text.push_str(t);
                            }
                        }
                    }
                    _ => {}
                }
                text.push('\n');
            }
        }
        text
    }

    /// Whether the request reports a failed edit.
    pub fn detects_failure(&self, request: &Request) -> bool {
        let mut feedback = Self::newest_feedback(request);
        if feedback.is_empty() {
            return false;
        }
        match &self.lowercased {
            Some(lowercased) if !has_fold_to_ascii(&feedback) => {
                feedback.make_ascii_lowercase();
                lowercased.is_match(&feedback)
            }
            _ => self.patterns.is_match(&feedback),
        }
    }
}

#[async_trait]
impl Stage for EditPrecision {
    fn name(&self) -> &'static str {
        "edit-precision"
    }

    fn reads(&self) -> Reads {
        Reads::MESSAGES
    }

    fn phases(&self) -> Phases {
        Phases::ON_REQUEST.when(self.settings.enabled)
    }

    async fn on_request(
        &self,
        ctx: &mut RequestContext,
        request: &mut Request,
    ) -> Result<Flow, Error> {
        if !self.settings.enabled {
            return Ok(Flow::Continue);
        }
        if let (Some(exclude), Some(agent)) = (&self.exclude, &ctx.user_agent)
            && exclude.is_match(agent)
        {
            return Ok(Flow::Continue);
        }
        if !self.detects_failure(request) {
            return Ok(Flow::Continue);
        }
        let sampling = &mut request.sampling;
        let target = self.settings.temperature;
        sampling.temperature = Some(sampling.temperature.map_or(target, |t| t.min(target)));
        if self.settings.override_top_p {
            let cap = self.settings.min_top_p;
            sampling.top_p = Some(sampling.top_p.map_or(cap, |p| p.min(cap)));
        }
        tracing::debug!(request_id = %ctx.request_id, "edit failure detected; lowering temperature");
        Ok(Flow::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Extensions, Message};

    fn settings() -> EditPrecisionSettings {
        EditPrecisionSettings {
            enabled: true,
            temperature: 0.1,
            min_top_p: 0.3,
            override_top_p: true,
            exclude_agents_regex: Some("^test-agent".into()),
            patterns: parse_patterns(DEFAULT_PATTERNS).unwrap(),
        }
    }

    fn request_after(result: &str) -> Request {
        let mut request = Request::new(
            "m",
            vec![
                Message::new(Role::User, vec![Part::text("fix it")]),
                Message::new(
                    Role::Assistant,
                    vec![Part::ToolCall {
                        id: "c".into(),
                        name: "Edit".into(),
                        arguments: "{}".into(),
                        extensions: Extensions::default(),
                    }],
                ),
                Message::new(
                    Role::Tool,
                    vec![Part::ToolResult {
                        call_id: "c".into(),
                        content: vec![Part::text(result)],
                        is_error: true,
                        extensions: Extensions::default(),
                    }],
                ),
            ],
        );
        request.sampling.temperature = Some(0.7);
        request
    }

    async fn run(stage: &EditPrecision, request: &mut Request, agent: Option<&str>) {
        let mut ctx = RequestContext::new(crate::model::Protocol::OpenAiChat);
        ctx.user_agent = agent.map(str::to_owned);
        stage.on_request(&mut ctx, request).await.unwrap();
    }

    #[tokio::test]
    async fn a_failed_edit_lowers_temperature_and_top_p() {
        let stage = EditPrecision::new(settings()).unwrap();
        let mut request = request_after("Error: String to replace not found in file.");
        run(&stage, &mut request, Some("claude-cli/2.1")).await;
        assert_eq!(request.sampling.temperature, Some(0.1));
        assert_eq!(request.sampling.top_p, Some(0.3));
    }

    #[tokio::test]
    async fn other_results_excluded_agents_and_old_failures_change_nothing() {
        let stage = EditPrecision::new(settings()).unwrap();
        let mut request = request_after("File written.");
        run(&stage, &mut request, None).await;
        assert_eq!(request.sampling.temperature, Some(0.7));

        let mut request = request_after("SEARCH block didn't match the file");
        run(&stage, &mut request, Some("test-agent/1")).await;
        assert_eq!(request.sampling.temperature, Some(0.7), "excluded agent");

        // The failure was answered already: the model spoke after it.
        let mut request = request_after("patch does not apply");
        request
            .messages
            .push(Message::new(Role::Assistant, vec![Part::text("retrying")]));
        request
            .messages
            .push(Message::new(Role::User, vec![Part::text("go on")]));
        run(&stage, &mut request, None).await;
        assert_eq!(request.sampling.temperature, Some(0.7));
    }

    #[test]
    fn each_pattern_alone_is_a_failure_and_no_patterns_is_none() {
        // One message per shipped pattern, in the case a tool writes it.
        let failures = [
            "String to replace not found in file.",
            "old_string was not found",
            "Found 3 matches of the string to replace",
            "No match found for replacement text",
            "The SEARCH block you gave does not match anything in the file",
            "No sufficiently similar match found at line 4",
            "The diff could not be applied",
            "Unable to apply diff to src/main.rs",
            "Failed to apply the patch",
            "error: patch didn't apply",
            "Hunk #2 FAILED at 17.",
            "Could not find the exact text to replace",
            "Edit failed: file changed on disk",
        ];
        let stage = EditPrecision::new(settings()).unwrap();
        assert_eq!(failures.len(), stage.settings.patterns.len());
        for failure in failures {
            assert!(stage.detects_failure(&request_after(failure)), "{failure}");
        }
        assert!(!stage.detects_failure(&request_after("All 12 tests passed.")));
        let none = EditPrecision::new(EditPrecisionSettings {
            patterns: Vec::new(),
            ..settings()
        })
        .unwrap();
        assert!(!none.detects_failure(&request_after("Edit failed")));
    }

    #[test]
    fn the_shipped_patterns_parse_and_bad_ones_are_named() {
        assert!(parse_patterns(DEFAULT_PATTERNS).unwrap().len() > 5);
        let err = parse_patterns("patterns = [\"(\"]").unwrap_err();
        assert!(err.contains("invalid regex '('"), "{err}");
    }

    #[test]
    fn patterns_that_could_match_an_uppercase_letter_only_are_not_taken_as_alike() {
        let alike = [
            r"string to replace not found",
            r"hunk #?\d+ failed",
            r"(?:x|y)z",
            r"(?<name>edit) failed",
            r"[^a-z]+ \W \bend\b",
            r"[0-9_a-f]{2,}",
            r"[[:^lower:]] [[:alpha:]]",
            r"\x6b",
        ];
        for pattern in alike {
            assert!(matches_lowercased_text_alike(pattern), "{pattern}");
        }
        let not_alike = [
            r"Error",
            r"\x4B",
            r"[A-Z]",
            r"[9-a]",
            r"[@-_]",
            r"[@-`]",
            r"[[:upper:]]",
            r"\p{Lu}",
            r"\pL",
            r"(?-i)x",
            r"(?i:x)",
            r"é",
            r"[a-\x{2200}]",
            r"[a-z&&b]",
            r"(",
        ];
        for pattern in not_alike {
            assert!(!matches_lowercased_text_alike(pattern), "{pattern}");
        }
    }

    /// Random text with letters of both cases (ASCII and not), digits, punctuation and spaces.
    fn random_text(rng: &mut fastrand::Rng, len: usize) -> String {
        const ALPHABET: &[char] = &[
            'a', 'A', 'b', 'B', 'e', 'E', 'f', 'F', 'k', 'K', 's', 'S', 'z', 'Z', '0', '9', ' ',
            '_', '-', '#', '@', '[', ']', '^', '`', '{', '}', '.', '\n', 'é', 'É', 'ß', 'Σ', 'ς',
            '✓',
        ];
        (0..len)
            .map(|_| ALPHABET[rng.usize(..ALPHABET.len())])
            .collect()
    }

    #[test]
    fn an_alike_pattern_matches_a_lowercased_text_as_it_matches_the_text_ignoring_case() {
        let patterns = [
            r"ab",
            r"[^a-z]",
            r"[^a-f]{2}",
            r"\W[a-z]",
            r"[[:^lower:]]",
            r"[[:lower:]]{3}",
            r"[0-9_a-f]{3}",
            r"\bk\B",
            r"e\b",
            r"(?:z|s)[^z]",
            r"[!-@]",
            r"[\[-`]k",
            r"[{-~]k",
        ];
        // Seeded, so a failure reproduces.
        let mut rng = fastrand::Rng::with_seed(0x9e37_79b9_7f4a_7c15);
        for pattern in patterns {
            assert!(matches_lowercased_text_alike(pattern), "{pattern}");
            let ignoring_case = RegexBuilder::new(pattern)
                .case_insensitive(true)
                .build()
                .unwrap();
            let exact = Regex::new(pattern).unwrap();
            let (mut seen_match, mut seen_miss) = (false, false);
            for _ in 0..3000 {
                let len = rng.usize(1..=7);
                let text = random_text(&mut rng, len);
                let expected = ignoring_case.is_match(&text);
                assert_eq!(
                    exact.is_match(&text.to_ascii_lowercase()),
                    expected,
                    "{pattern} on {text:?}"
                );
                seen_match |= expected;
                seen_miss |= !expected;
            }
            assert!(
                seen_match && seen_miss,
                "{pattern}: the texts tried both ways"
            );
        }
    }

    #[test]
    fn failures_are_found_in_any_case_with_or_without_the_lowercased_set() {
        let stage = EditPrecision::new(settings()).unwrap();
        assert!(
            stage.lowercased.is_some(),
            "the shipped patterns are all alike"
        );
        for text in [
            "STRING TO REPLACE NOT FOUND",
            "Ошибка: String To Replace NOT found",
        ] {
            assert!(stage.detects_failure(&request_after(text)), "{text}");
        }
        assert!(!stage.detects_failure(&request_after("ПАТЧ applied")));

        // The Kelvin sign folds to k: a text holding it is matched ignoring case, as it is.
        let mut kelvin = settings();
        kelvin.patterns = vec!["kill failed".into()];
        let stage = EditPrecision::new(kelvin).unwrap();
        assert!(stage.lowercased.is_some());
        assert!(stage.detects_failure(&request_after("\u{212A}ILL FAILED")));
        assert!(stage.detects_failure(&request_after("Kill Failed ✓")));

        let mut custom = settings();
        custom.patterns = vec![r"[A-Z]{3} failed".into(), "edit failed".into()];
        let stage = EditPrecision::new(custom).unwrap();
        assert!(
            stage.lowercased.is_none(),
            "one pattern names uppercase letters"
        );
        assert!(stage.detects_failure(&request_after("abc FAILED")));
        assert!(stage.detects_failure(&request_after("EDIT FAILED")));
        assert!(!stage.detects_failure(&request_after("12 failed")));
    }
}
