//! Model name rewrites ("model aliases"): regex rules, first match wins, with capture
//! groups, from `--model-alias "PATTERN=REPLACEMENT"`, MODEL_ALIASES (a JSON list) or
//! `model_aliases` in the config (the seed's "Model Name Rewrites").
//!
//! Replacements use the seed's Python syntax for groups (`\1`, `\g<name>`); Rust's
//! (`$1`, `${name}`) works too.

use regex::Regex;

#[derive(Debug, Clone)]
pub struct AliasRule {
    pattern: Regex,
    replacement: String,
}

impl AliasRule {
    /// Compiles a rule; the error says what is wrong with the pattern.
    pub fn new(pattern: &str, replacement: &str) -> Result<Self, String> {
        let compiled =
            Regex::new(pattern).map_err(|e| format!("invalid regex '{pattern}': {e}"))?;
        Ok(Self {
            pattern: compiled,
            replacement: python_groups_to_rust(replacement),
        })
    }

    /// The rewritten model, if the rule matches.
    pub fn apply(&self, model: &str) -> Option<String> {
        let found = self.pattern.captures(model)?;
        let whole = found.get(0)?;
        let mut expanded = String::new();
        found.expand(&self.replacement, &mut expanded);
        // Like Python's re.sub with count=1: only the matched part is replaced.
        Some(format!(
            "{}{}{}",
            &model[..whole.start()],
            expanded,
            &model[whole.end()..]
        ))
    }
}

/// The first rule that matches rewrites the model.
pub fn rewrite(rules: &[AliasRule], model: &str) -> Option<String> {
    rules.iter().find_map(|rule| rule.apply(model))
}

/// `\1` -> `${1}`, `\g<name>` -> `${name}`; a literal `$` is escaped.
fn python_groups_to_rust(replacement: &str) -> String {
    let mut out = String::with_capacity(replacement.len() + 8);
    let mut chars = replacement.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek().copied() {
                Some(d) if d.is_ascii_digit() => {
                    let mut digits = String::new();
                    while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                        digits.push(d);
                        chars.next();
                    }
                    out.push_str(&format!("${{{digits}}}"));
                }
                Some('g') => {
                    chars.next();
                    if chars.peek() == Some(&'<') {
                        chars.next();
                        let name: String = chars.by_ref().take_while(|c| *c != '>').collect();
                        out.push_str(&format!("${{{name}}}"));
                    } else {
                        out.push_str("\\g");
                    }
                }
                Some('\\') => {
                    chars.next();
                    out.push('\\');
                }
                _ => out.push('\\'),
            },
            '$' if !matches!(chars.peek(), Some(d) if d.is_ascii_digit() || *d == '{') => {
                out.push_str("$$");
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(pairs: &[(&str, &str)]) -> Vec<AliasRule> {
        pairs
            .iter()
            .map(|(p, r)| AliasRule::new(p, r).unwrap())
            .collect()
    }

    #[test]
    fn capture_groups_and_first_match_wins() {
        let rules = rules(&[
            ("^gpt-(.*)", "openrouter:openai/gpt-\\1"),
            ("^claude-(.*)", "anthropic:claude-$1"),
            ("^(.*)$", "mock:fallback"),
        ]);
        assert_eq!(
            rewrite(&rules, "gpt-4o").as_deref(),
            Some("openrouter:openai/gpt-4o")
        );
        assert_eq!(
            rewrite(&rules, "claude-3-opus").as_deref(),
            Some("anthropic:claude-3-opus")
        );
        assert_eq!(rewrite(&rules, "llama").as_deref(), Some("mock:fallback"));
    }

    #[test]
    fn named_groups_and_unmatched_models() {
        let rules = rules(&[(
            "^(?P<family>gemini)-(?P<size>pro|flash)$",
            "gemini:\\g<family>-2.5-\\g<size>",
        )]);
        assert_eq!(
            rewrite(&rules, "gemini-pro").as_deref(),
            Some("gemini:gemini-2.5-pro")
        );
        assert_eq!(rewrite(&rules, "gpt-4o"), None);
    }

    #[test]
    fn invalid_patterns_are_reported() {
        let err = AliasRule::new("^gpt-(", "x").unwrap_err();
        assert!(err.contains("invalid regex '^gpt-('"), "{err}");
    }
}
