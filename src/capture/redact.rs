//! Masking before anything is written: the keys llmux knows (provider and proxy keys) and
//! patterns of secrets it does not know (a key someone pasted into a prompt).

use std::borrow::Cow;

use regex::Regex;

/// What a masked secret becomes.
pub const MASK: &str = "****";

/// The patterns masked when the config names none: the shapes of common provider keys.
pub const DEFAULT_PATTERNS: &[&str] = &[
    // OpenAI, Anthropic (sk-ant-...), OpenRouter (sk-or-...) and most compatible servers.
    r"sk-[A-Za-z0-9_\-]{20,}",
    // Google API keys.
    r"AIza[0-9A-Za-z_\-]{35}",
    // Bearer tokens in headers or pasted curl commands.
    r"(?i)bearer\s+[A-Za-z0-9._\-]{20,}",
];

/// Masks known secrets and secret-shaped text.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// The known secrets (as literals, longest first so a key that contains another is
    /// masked whole) and the patterns as one alternation: one pass over the text.
    combined: Option<Regex>,
    /// Used one by one only when the alternation is too large to compile.
    parts: Vec<Regex>,
}

impl Redactor {
    /// `secrets` shorter than 8 characters are ignored: masking them would garble text.
    pub fn new(secrets: Vec<String>, patterns: Vec<Regex>) -> Self {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| s.len() >= 8).collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        let alternatives: Vec<String> = secrets
            .iter()
            .map(|s| regex::escape(s))
            .chain(patterns.iter().map(|p| format!("(?:{})", p.as_str())))
            .collect();
        if alternatives.is_empty() {
            return Self::default();
        }
        // Each part compiles alone; together they can only fail a size limit, and then the
        // parts are applied one by one rather than masking nothing.
        match Regex::new(&alternatives.join("|")) {
            Ok(combined) => Self {
                combined: Some(combined),
                parts: Vec::new(),
            },
            Err(_) => Self {
                combined: None,
                parts: alternatives
                    .iter()
                    .filter_map(|part| Regex::new(part).ok())
                    .collect(),
            },
        }
    }

    /// The text with every secret masked; borrowed when there was nothing to mask.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if let Some(combined) = &self.combined {
            return combined.replace_all(text, MASK);
        }
        let mut text = Cow::Borrowed(text);
        for part in &self.parts {
            if let Cow::Owned(masked) = part.replace_all(&text, MASK) {
                text = Cow::Owned(masked);
            }
        }
        text
    }

    /// Masks in place.
    pub fn redact_in_place(&self, text: &mut String) {
        if let Cow::Owned(masked) = self.redact(text) {
            *text = masked;
        }
    }
}

impl From<Vec<String>> for Redactor {
    fn from(secrets: Vec<String>) -> Self {
        Self::new(secrets, Vec::new())
    }
}

/// Compiles the configured patterns; the error names the one that is wrong.
pub fn compile_patterns(patterns: &[String]) -> Result<Vec<Regex>, String> {
    patterns
        .iter()
        .map(|p| Regex::new(p).map_err(|e| format!("capture.redact_patterns: {p:?}: {e}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Vec<Regex> {
        let patterns: Vec<String> = DEFAULT_PATTERNS.iter().map(|p| (*p).to_owned()).collect();
        compile_patterns(&patterns).unwrap()
    }

    #[test]
    fn known_keys_and_key_shaped_text_are_masked() {
        let redactor = Redactor::new(vec!["my-proxy-key-123".into(), "short".into()], defaults());
        let text = "use my-proxy-key-123 and sk-ant-api03-abcdefghijklmnopqrstuvwxyz or \
                    AIzaSyA1234567890abcdefghijklmnopqrstuv; Authorization: Bearer \
                    eyJhbGciOiJIUzI1NiJ9.payload.sig; short words stay";
        let masked = redactor.redact(text);
        assert!(!masked.contains("my-proxy-key-123"));
        assert!(!masked.contains("sk-ant-api03"));
        assert!(!masked.contains("AIzaSy"));
        assert!(!masked.contains("eyJhbGci"));
        assert!(masked.contains("short words stay"));
    }

    #[test]
    fn clean_text_is_not_copied() {
        let redactor = Redactor::new(vec!["secret-key-value".into()], defaults());
        assert!(matches!(
            redactor.redact("nothing to see, sk-short"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn a_bad_pattern_is_named() {
        let err = compile_patterns(&["ok".into(), "(unclosed".into()]).unwrap_err();
        assert!(err.contains("(unclosed"), "{err}");
    }
}
