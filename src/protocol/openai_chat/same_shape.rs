//! A later stream chunk that repeats the last one byte for byte except for its one string
//! (a text, reasoning or tool-call-arguments delta), read without parsing it.
//!
//! Nearly every chunk of a chat stream is the one before it with another few characters of
//! text: the same id, model, fingerprint, choice index and null fields around one string.
//! Parsing such a chunk cost ~5,400 instructions (bench/callgrind.sh, KIND=stream); finding
//! that its bytes around the string are the last chunk's, checking the string and copying
//! it costs a few hundred.
//!
//! Why it cannot read wrongly: a shape is remembered only after the chunk it came from was
//! read in full to exactly one event holding one string, found once in the chunk's text.
//! Before it is used, a probe (the same bytes with another string in its place, read in full
//! by a copy of the decoder) must give exactly that event with the other string: the place
//! is the one the event's string comes from, not an ignored field that happens to hold the
//! same text. A later chunk takes the shortcut only when it is the shape's prefix, then the
//! body of exactly one JSON string (no unescaped quote: the string ends where the suffix
//! begins), then the shape's suffix. Then JSON reads it as the probe: the same tokens with
//! another string in the same place. Any chunk read in full replaces the shape or forgets it.

use crate::model::Event;

/// Where the shape's string goes: which event it becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Text,
    Thinking,
    Arguments { index: u32 },
}

impl Slot {
    fn event(self, text: String) -> Event {
        match self {
            Slot::Text => Event::TextDelta(text),
            Slot::Thinking => Event::ThinkingDelta {
                text,
                signature: None,
            },
            Slot::Arguments { index } => Event::ToolCallArgsDelta {
                index,
                arguments: text,
            },
        }
    }
}

/// The last chunk's bytes around its one string, when it had one.
#[derive(Debug, Clone, Default)]
pub(super) struct SameShape {
    /// Up to and including the string's opening quote.
    prefix: String,
    /// From the string's closing quote on.
    suffix: String,
    slot: Option<Slot>,
}

/// What a probe puts in the string's place: text no provider sends.
const PROBE: &str = "llmux shape probe \u{1F9EA}";

impl SameShape {
    /// The event of `data` when it has the remembered shape: `Some(None)` when its string is
    /// empty (a chunk read in full gives no event then). `None`: read it in full.
    pub(super) fn read(&self, data: &str) -> Option<Option<Event>> {
        let slot = self.slot?;
        let body = data
            .strip_prefix(self.prefix.as_str())?
            .strip_suffix(self.suffix.as_str())?;
        // The body with its quotes: the prefix ends with one, the suffix starts with one.
        let quoted = &data[self.prefix.len() - 1..self.prefix.len() + body.len() + 1];
        let text = string_body(body, quoted)?;
        Some((!text.is_empty()).then(|| slot.event(text)))
    }

    pub(super) fn forget(&mut self) {
        self.slot = None;
    }

    /// The shape of `data`, a later chunk that was read in full to `events`, if it has one:
    /// exactly one event holding a string, whose key occurs once in `data`, there holding
    /// that string. It still has to pass [`SameShape::probe`].
    pub(super) fn of(data: &str, events: &[Event]) -> Option<(SameShape, String)> {
        let [event] = events else {
            return None;
        };
        let (slot, text, keys): (Slot, &str, &[&str]) = match event {
            Event::TextDelta(text) => (Slot::Text, text, &["\"content\":\""]),
            Event::ThinkingDelta {
                text,
                signature: None,
            } => (
                Slot::Thinking,
                text,
                // The order the decoder prefers them in.
                &["\"reasoning_content\":\"", "\"reasoning\":\""],
            ),
            Event::ToolCallArgsDelta { index, arguments } => (
                Slot::Arguments { index: *index },
                arguments,
                &["\"arguments\":\""],
            ),
            _ => return None,
        };
        let key = keys.iter().find(|key| data.contains(**key))?;
        let mut found = data.match_indices(key);
        let (at, _) = found.next()?;
        if found.next().is_some() {
            return None;
        }
        let start = at + key.len();
        let end = start + string_end(&data.as_bytes()[start..])?;
        // A chunk holding the probe's own text could not be told from the probe.
        if text == PROBE || string_body(&data[start..end], &data[start - 1..=end])? != text {
            return None;
        }
        let shape = SameShape {
            prefix: data[..start].to_owned(),
            suffix: data[end..].to_owned(),
            slot: Some(slot),
        };
        let probe = format!("{}{PROBE}{}", shape.prefix, shape.suffix);
        Some((shape, probe))
    }

    /// Whether `events`, what the probe chunk of [`SameShape::of`] was read to in full, is
    /// exactly the shape's event with the probe's string.
    pub(super) fn probe_gave(&self, events: &[Event]) -> bool {
        let Some(slot) = self.slot else {
            return false;
        };
        matches!(events, [event] if event.same_as(&slot.event(PROBE.to_owned())))
    }
}

/// Where the JSON string whose body starts `bytes` ends (its closing quote), stepping over
/// escapes; `None` when it does not end.
fn string_end(bytes: &[u8]) -> Option<usize> {
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'"' => return Some(at),
            b'\\' => at += 2,
            _ => at += 1,
        }
    }
    None
}

/// The text of a JSON string with this `body` (between its quotes; `quoted` is the same
/// with them), or `None` when it is not exactly one JSON string.
fn string_body(body: &str, quoted: &str) -> Option<String> {
    // Nearly always: nothing escaped, nothing JSON forbids unescaped.
    if body.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        return Some(body.to_owned());
    }
    serde_json::from_str::<String>(quoted).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_string_ends_at_its_first_unescaped_quote() {
        assert_eq!(string_end(br#"abc"}"#), Some(3));
        assert_eq!(string_end(br#"a\"b"}"#), Some(4));
        assert_eq!(string_end(br#"a\\"}"#), Some(3));
        assert_eq!(string_end(br#"a\""#), None);
        assert_eq!(string_end(b"abc"), None);
    }

    #[test]
    fn a_body_is_one_json_string_or_nothing() {
        let read = |body: &str| string_body(body, &format!("\"{body}\""));
        assert_eq!(read("plain text").as_deref(), Some("plain text"));
        assert_eq!(read(r#"a\"b\n\u00e9"#).as_deref(), Some("a\"b\né"));
        assert_eq!(read(""), Some(String::new()));
        // Two strings, a raw control character, a dangling escape.
        assert_eq!(read(r#"a","content":"b"#), None);
        assert_eq!(read("a\tb"), None);
        assert_eq!(read(r"a\"), None);
        assert_eq!(read(r"\x41"), None);
    }
}
