//! A byte-at-a-time view of JSON structure: whether a byte is inside a string, and which
//! brackets open and close outside strings. What every incremental reader of JSON text in
//! llmux shares (the Gemini array splitter, the structured-output repairer, tool-call
//! repair). Works on bytes, so text cut inside a multi-byte character is fine: only ASCII
//! structure is looked at.

/// What one byte is, structurally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Byte {
    /// `{` or `[` outside a string.
    Open(u8),
    /// `}` or `]` outside a string.
    Close(u8),
    /// Anything else, string contents and quotes included.
    Other,
}

/// The string state carried from byte to byte.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLexer {
    in_string: bool,
    escaped: bool,
}

impl JsonLexer {
    /// Reads one byte.
    pub fn step(&mut self, b: u8) -> Byte {
        if self.in_string {
            match b {
                _ if self.escaped => self.escaped = false,
                b'\\' => self.escaped = true,
                b'"' => self.in_string = false,
                _ => {}
            }
            return Byte::Other;
        }
        match b {
            b'"' => {
                self.in_string = true;
                Byte::Other
            }
            b'{' | b'[' => Byte::Open(b),
            b'}' | b']' => Byte::Close(b),
            _ => Byte::Other,
        }
    }

    /// Whether the bytes read so far end inside a string.
    pub fn in_string(&self) -> bool {
        self.in_string
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brackets_inside_strings_and_escaped_quotes_are_not_structure() {
        let text = r#"{"a": "x}\"]", "b": [1, {"c": "["}]}"#;
        let mut lexer = JsonLexer::default();
        let mut depth = 0i32;
        let mut closes_at = Vec::new();
        for (i, b) in text.bytes().enumerate() {
            match lexer.step(b) {
                Byte::Open(_) => depth += 1,
                Byte::Close(_) => {
                    depth -= 1;
                    closes_at.push((i, depth));
                }
                Byte::Other => {}
            }
        }
        assert_eq!(closes_at.last(), Some(&(text.len() - 1, 0)));
        assert_eq!(closes_at.len(), 3, "{closes_at:?}");
        assert!(!lexer.in_string());
        let mut open = JsonLexer::default();
        "{\"cut".bytes().for_each(|b| {
            open.step(b);
        });
        assert!(open.in_string());
    }
}
