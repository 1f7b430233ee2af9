//! A later stream frame that repeats the last one byte for byte except for its one string
//! (a text, reasoning or tool-arguments delta), read without parsing it.
//!
//! Nearly every frame of a stream is the one before it with another few characters of text:
//! the same id, model, fingerprint, index and null fields around one string. Parsing such a
//! frame cost ~5,400 instructions for a chat chunk (bench/callgrind.sh, KIND=stream);
//! finding that its bytes around the string are the last frame's, checking the string and
//! copying it costs a few hundred.
//!
//! Why it cannot read wrongly: a shape is remembered only after the frame it came from was
//! read in full to exactly one event holding one non-empty string, whose key occurs once in
//! the frame's text. Before it is used, a probe (the same bytes with another string in its
//! place, read in full by a copy of the decoder) must give exactly that event with the other
//! string: the place is the one the event's string comes from, not an ignored field that
//! happens to hold the same text. A later frame takes the shortcut only when it is the
//! shape's prefix, then the body of exactly one non-empty JSON string (no unescaped quote: the
//! string ends where the suffix begins), then the shape's suffix. JSON reads it as it read
//! the probe: the same tokens with another string in the same place. The decoder forgets the
//! shape whenever it reads a frame in full (its state may change), and learns that frame's;
//! the probe runs when the first frame of a shape comes, with the decoder in the state it
//! was in when it learnt the shape.
//!
//! This rests on three rules for the decoders that use it: a delta's string may be looked at
//! only to tell whether it is empty, never for what it holds (the probe shows where the
//! string goes, not that its content does not matter), unless the decoder does with a
//! shortcut's event what it did with the string when it read the frame in full
//! ([`ShapedDecoder::took_shortcut`]); a padding member ([`Keys::padding`]), which a shape
//! leaves out, is never read; and neither is a counter ([`Keys::counter`]), whose digits a
//! shape leaves out.

use crate::model::Event;
use crate::protocol::ChunkError;

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

/// Where a protocol's frames hold each kind of string: the bytes that open the string, each
/// key with its colon and opening quote, in the order its decoder prefers them.
pub(crate) struct Keys {
    pub text: &'static [&'static str],
    pub thinking: &'static [&'static str],
    pub arguments: &'static [&'static str],
    /// A frame's last top-level member, when it holds a string that the provider changes in
    /// every frame and the decoder never reads (OpenAI's `obfuscation` padding): its comma,
    /// key, colon and opening quote. A shape leaves it out.
    pub padding: Option<&'static str>,
    /// A member before the string holding an unsigned integer that the provider changes in
    /// every frame and the decoder never reads (a Responses event's `sequence_number`): its
    /// key and colon. A shape leaves its digits out, and a frame of the shape may have any
    /// integer there that JSON and a `u64` allow (no sign, point, exponent or leading zero; at
    /// most 19 digits).
    pub counter: Option<&'static str>,
}

/// The last frame's bytes around its one string, when it had one.
#[derive(Debug, Clone, Default)]
pub(crate) struct SameShape {
    /// Up to and including the string's opening quote.
    prefix: String,
    /// From the string's closing quote on, up to the padding member when there is one.
    suffix: String,
    slot: Option<Slot>,
    /// The padding member that ends the shape's frames (see [`Keys::padding`]).
    padding: Option<&'static str>,
    /// Where in `prefix` the counter's digits were (see [`Keys::counter`]).
    counter_at: Option<usize>,
    /// The probe gave the shape's event: frames of this shape may take the shortcut.
    verified: bool,
    /// A frame took the shortcut since the shape was learnt.
    used: bool,
    /// Shapes learnt one after another that no frame used. Some streams never repeat one
    /// (OpenAI's `obfuscation` member changes in every chunk): after `GIVE_UP` of them the
    /// stream is read in full without looking for shapes, which then cost nothing more.
    unused: u8,
    off: bool,
    /// Frames that took the shortcut in all, and probes that failed (tests count them).
    #[cfg(test)]
    pub(crate) uses: usize,
    #[cfg(test)]
    pub(crate) failed_probes: usize,
}

/// What a probe puts in the string's place: text no provider sends.
const PROBE: &str = "llmux shape probe \u{1F9EA}";

/// What a probe puts in a counter's place.
const PROBE_COUNT: &str = "4242";

/// Unused shapes in a row after which a stream stops looking for them.
const GIVE_UP: u8 = 8;

impl SameShape {
    /// A shape that never learns (tests read streams both ways).
    #[cfg(test)]
    pub(crate) fn never() -> Self {
        Self {
            off: true,
            ..Self::default()
        }
    }

    /// The event of `data` when it has the learnt shape, verified or not; `None`: read it in
    /// full.
    pub(crate) fn read(&self, data: &str) -> Option<Event> {
        let slot = self.slot?;
        let (mut rest, string_at) = match self.counter_at {
            None => (data.strip_prefix(self.prefix.as_str())?, self.prefix.len()),
            Some(at) => {
                let after = data.strip_prefix(&self.prefix[..at])?;
                let digits = counter_len(after.as_bytes())?;
                let rest = after[digits..].strip_prefix(&self.prefix[at..])?;
                (rest, self.prefix.len() + digits)
            }
        };
        if let Some(padding) = self.padding {
            rest = without_padding(rest, padding)?;
        }
        let body = rest.strip_suffix(self.suffix.as_str())?;
        // The body with its quotes: the prefix ends with one, the suffix starts with one.
        let quoted = &data[string_at - 1..string_at + body.len() + 1];
        // An empty string is read in full: protocols differ in whether it is an event.
        let text = string_of(quoted).filter(|text| !text.is_empty())?;
        Some(slot.event(text))
    }

    /// Whether the stream stopped looking for shapes.
    #[cfg(test)]
    pub(crate) fn is_off(&self) -> bool {
        self.off
    }

    /// Whether the shape's probe passed.
    pub(crate) fn is_verified(&self) -> bool {
        self.verified
    }

    /// The shape with the probe's string in its place, for a copy of the decoder to read in
    /// full. The probe waits for the first frame of the shape: most shapes of a stream that
    /// never repeats one are never probed.
    pub(crate) fn probe(&self) -> String {
        let prefix = match self.counter_at {
            // Another count than the frames': the decoder reads none.
            Some(at) => format!("{}{PROBE_COUNT}{}", &self.prefix[..at], &self.prefix[at..]),
            None => self.prefix.clone(),
        };
        let mut probe = format!("{prefix}{PROBE}{}", self.suffix);
        if let Some(padding) = self.padding {
            probe.push_str(padding);
            probe.push_str("probe\"}");
        }
        probe
    }

    /// Takes what the probe was read to: the shape is verified when that is exactly its
    /// event with the probe's string, and forgotten otherwise.
    pub(crate) fn probed(&mut self, events: &[Event]) -> bool {
        let gave = self.slot.is_some_and(
            |slot| matches!(events, [event] if event.same_as(&slot.event(PROBE.to_owned()))),
        );
        if gave {
            self.verified = true;
        } else {
            // The keys do not say where this stream's strings are: the same frame read in
            // full would learn the same shape and probe again at the next frame, so a
            // failure counts as an unused shape.
            self.slot = None;
            self.count_unused();
            #[cfg(test)]
            {
                self.failed_probes += 1;
            }
        }
        gave
    }

    fn count_unused(&mut self) {
        self.unused = self.unused.saturating_add(1);
        self.off |= self.unused >= GIVE_UP;
    }

    /// A frame took the shortcut.
    pub(crate) fn used(&mut self) {
        self.used = true;
        self.unused = 0;
        #[cfg(test)]
        {
            self.uses += 1;
        }
    }

    pub(crate) fn forget(&mut self) {
        self.slot = None;
    }

    /// Learns the shape of `data`, a later frame that was read in full to `events`, if it has
    /// one (unverified), forgetting the last: exactly one event holding a non-empty string,
    /// whose key (one of `keys`) occurs once in `data`, there holding that string.
    pub(crate) fn learn(&mut self, data: &str, events: &[Event], keys: &Keys) {
        if self.slot.is_some() && !self.used {
            self.count_unused();
        }
        self.slot = None;
        if self.off {
            return;
        }
        let Some((slot, start, end)) = place_of(data, events, keys) else {
            return;
        };
        self.prefix.clear();
        self.prefix.push_str(&data[..start]);
        let counter = keys.counter.and_then(|key| counter_in(data, start, key));
        if let Some((at, digits)) = counter {
            self.prefix.replace_range(at..at + digits, "");
        }
        self.counter_at = counter.map(|(at, _)| at);
        let after = &data[end..];
        let padded = keys
            .padding
            .and_then(|padding| Some((padding, without_padding(after, padding)?)));
        self.suffix.clear();
        self.suffix
            .push_str(padded.map_or(after, |(_, before)| before));
        self.padding = padded.map(|(padding, _)| padding);
        self.slot = Some(slot);
        self.verified = false;
        self.used = false;
    }
}

/// A stream decoder that reads frames by their shape (see the module's documentation).
pub(crate) trait ShapedDecoder: Clone {
    fn same_shape(&mut self) -> &mut SameShape;

    /// Reads a frame in full; `event` is its SSE event name.
    fn read_whole(
        &mut self,
        event: &str,
        data: &str,
        out: &mut Vec<Event>,
    ) -> Result<(), ChunkError>;

    /// A copy of the decoder for a probe to read in full (see [`shape_verified`]): the whole
    /// decoder by default; a decoder may leave out what reading a frame of the shape never
    /// looks at.
    fn copy_for_probe(&self) -> Self {
        self.clone()
    }

    /// A frame of the learnt shape was read by it to `event`: what reading the frame in full
    /// would have done to the decoder's state with the string, the decoder does here (none by
    /// default: the decoder keeps nothing of it).
    fn took_shortcut(&mut self, _event: &Event) {}
}

/// Reads the frame `data` (trimmed, not empty): by the learnt shape when it has it and the
/// shape passed its probe, else in full. Only a frame that may have a shape (`shaped`: a later
/// chunk, an Anthropic `content_block_delta`) is read by one or teaches one; any frame read in
/// full replaces the shape.
pub(crate) fn read_frame<D: ShapedDecoder>(
    decoder: &mut D,
    event: &str,
    data: &str,
    out: &mut Vec<Event>,
    keys: &Keys,
    shaped: bool,
) -> Result<(), ChunkError> {
    if shaped
        && let Some(shortcut) = decoder.same_shape().read(data)
        && shape_verified(decoder, event)
    {
        decoder.same_shape().used();
        decoder.took_shortcut(&shortcut);
        out.push(shortcut);
        return Ok(());
    }
    let before = out.len();
    let read = decoder.read_whole(event, data, out);
    if shaped && read.is_ok() {
        decoder.same_shape().learn(data, &out[before..], keys);
    } else {
        decoder.same_shape().forget();
    }
    read
}

/// Whether the learnt shape passed its probe: read in full by a copy of the decoder, in the
/// state it is still in (any frame read in full since would have replaced the shape).
fn shape_verified<D: ShapedDecoder>(decoder: &mut D, event: &str) -> bool {
    if decoder.same_shape().is_verified() {
        return true;
    }
    let probe = decoder.same_shape().probe();
    let shape = std::mem::take(decoder.same_shape());
    let mut copy = decoder.copy_for_probe();
    *decoder.same_shape() = shape;
    let mut events = Vec::with_capacity(1);
    if copy.read_whole(event, &probe, &mut events).is_err() {
        events.clear();
    }
    decoder.same_shape().probed(&events)
}

/// The slot of the one event in `events` and where its string's body lies in `data` (from
/// after its opening quote to its closing quote), when that event holds a non-empty string
/// whose key (one of `keys`) occurs once in `data`, there holding that string.
fn place_of(data: &str, events: &[Event], keys: &Keys) -> Option<(Slot, usize, usize)> {
    let [event] = events else {
        return None;
    };
    let (slot, text, keys) = match event {
        Event::TextDelta(text) => (Slot::Text, text, keys.text),
        Event::ThinkingDelta {
            text,
            signature: None,
        } => (Slot::Thinking, text, keys.thinking),
        Event::ToolCallArgsDelta { index, arguments } => {
            (Slot::Arguments { index: *index }, arguments, keys.arguments)
        }
        _ => return None,
    };
    // A frame holding the probe's own text could not be told from the probe.
    if text.is_empty() || text == PROBE {
        return None;
    }
    keys.iter().find_map(|key| {
        let (start, end) = only_string_after(data, key)?;
        (string_of(&data[start - 1..=end])? == *text).then_some((slot, start, end))
    })
}

/// Where the digits of the counter `key` start in `data`, and how many there are, when
/// `key` occurs exactly once in it, before `before` (the string's place), followed by a
/// counter's digits.
fn counter_in(data: &str, before: usize, key: &str) -> Option<(usize, usize)> {
    let mut found = data.match_indices(key);
    let (at, _) = found.next()?;
    if found.next().is_some() {
        return None;
    }
    let digits_at = at + key.len();
    let digits = counter_len(&data.as_bytes()[digits_at..])?;
    (digits_at + digits < before).then_some((digits_at, digits))
}

/// The length of the unsigned integer that starts `bytes`, when it is one that JSON writes and
/// a `u64` holds: digits without a leading zero (or a lone `0`), at most 19 of them, not
/// followed by a digit, a point or an exponent.
fn counter_len(bytes: &[u8]) -> Option<usize> {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    let leading_zero = digits > 1 && bytes[0] == b'0';
    let fraction = matches!(bytes.get(digits), Some(b'.' | b'e' | b'E'));
    (digits > 0 && digits <= 19 && !leading_zero && !fraction).then_some(digits)
}

/// `text` without its last member when that is `padding` holding a plain string (nothing
/// escaped, no quote), and the object's closing brace.
fn without_padding<'a>(text: &'a str, padding: &str) -> Option<&'a str> {
    let inner = text.strip_suffix("\"}")?;
    let at = inner.rfind(padding)?;
    is_plain(&inner[at + padding.len()..]).then_some(&text[..at])
}

/// Where the string after `key` lies (from after its opening quote to its closing quote),
/// when `key` occurs exactly once in `data`.
fn only_string_after(data: &str, key: &str) -> Option<(usize, usize)> {
    let mut found = data.match_indices(key);
    let (at, _) = found.next()?;
    if found.next().is_some() {
        return None;
    }
    let start = at + key.len();
    Some((start, start + string_end(&data.as_bytes()[start..])?))
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

/// The text of `quoted`, a JSON string with its quotes, or `None` when it is not exactly one
/// JSON string.
fn string_of(quoted: &str) -> Option<String> {
    let body = quoted.get(1..quoted.len().checked_sub(1)?)?;
    // Nearly always: nothing escaped, nothing JSON forbids unescaped.
    if is_plain(body) {
        return Some(body.to_owned());
    }
    serde_json::from_str::<String>(quoted).ok()
}

/// Whether `body`, between a JSON string's quotes, is its text as it stands: no escape, no
/// quote, no control character.
fn is_plain(body: &str) -> bool {
    body.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\')
}

/// Random frame parts for the decoders' property tests.
#[cfg(test)]
pub(crate) mod random {
    /// Strings for a frame's two places, the same one half of the time (a decoy's chance).
    pub(crate) fn pair(rng: &mut fastrand::Rng) -> (String, String) {
        let first = json_string(rng);
        let second = if rng.bool() {
            first.clone()
        } else {
            json_string(rng)
        };
        (first, second)
    }

    /// Changes one of the two, as the next frame of a run of one shape does.
    pub(crate) fn change_one(rng: &mut fastrand::Rng, first: &mut String, second: &mut String) {
        let changed = if rng.bool() { first } else { second };
        *changed = json_string(rng);
    }

    /// A random JSON string literal: text with quotes, backslashes, control characters,
    /// non-ASCII and key-like runs, escaped in one of several ways, or now and then a
    /// broken one.
    pub(crate) fn json_string(rng: &mut fastrand::Rng) -> String {
        const PIECES: [&str; 14] = [
            "a",
            " the",
            "\"",
            "\\",
            "\n",
            "\t",
            "é",
            "🧪",
            "\",\"content\":\"",
            "\",\"text\":\"",
            "}",
            "",
            "x\u{1}",
            "\u{7f}",
        ];
        // Escapes as servers write them, some that JSON refuses (lone surrogates).
        const ESCAPES: [&str; 8] = [
            r"\ud83e\uddea",
            r"\ud800",
            r"\udc00",
            r"\ud800\u0041",
            r"\/",
            r"\u00E9",
            r"\u0000",
            r"\b\f\r",
        ];
        let text: String = (0..rng.usize(0..5))
            .map(|_| PIECES[rng.usize(..PIECES.len())])
            .collect();
        match rng.u8(..12) {
            0 => "null".to_owned(),
            10 | 11 => format!("\"{text}{}\"", ESCAPES[rng.usize(..ESCAPES.len())])
                .replace('\n', "")
                .replace('\t', ""),
            // Unicode escapes for every non-ASCII character, as some servers write them.
            1 => {
                let mut quoted = String::from("\"");
                for c in text.chars() {
                    match c {
                        '"' => quoted.push_str("\\\""),
                        '\\' => quoted.push_str("\\\\"),
                        c if c.is_ascii() && c >= ' ' => quoted.push(c),
                        c => {
                            let mut units = [0u16; 2];
                            for unit in c.encode_utf16(&mut units) {
                                quoted.push_str(&format!("\\u{unit:04x}"));
                            }
                        }
                    }
                }
                quoted + "\""
            }
            // Broken: a raw quote, a dangling backslash, a raw control character.
            2 => format!("\"{}\"", text.replace('\\', "")),
            3 => format!("\"{text}\\\""),
            _ => serde_json::to_string(&text).unwrap(),
        }
    }
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
    fn a_counter_is_an_integer_a_u64_holds_as_json_writes_it() {
        assert_eq!(counter_len(b"0,"), Some(1));
        assert_eq!(counter_len(b"42,\"x\""), Some(2));
        assert_eq!(counter_len(b"1844674407370955161}"), Some(19));
        assert_eq!(counter_len(b"18446744073709551615,"), None, "20 digits");
        assert_eq!(counter_len(b"007,"), None, "a leading zero");
        assert_eq!(counter_len(b"1.5,"), None);
        assert_eq!(counter_len(b"1e3,"), None);
        assert_eq!(counter_len(b"-3,"), None);
        assert_eq!(counter_len(b"\"5\","), None);
        // Only once, and before the string.
        let data = r#"{"sequence_number":7,"delta":"hi"}"#;
        let string_at = data.find("hi").unwrap();
        assert_eq!(
            counter_in(data, string_at, "\"sequence_number\":"),
            Some((19, 1))
        );
        assert_eq!(counter_in(data, 5, "\"sequence_number\":"), None);
        let twice = r#"{"sequence_number":7,"x":{"sequence_number":8},"delta":"hi"}"#;
        assert_eq!(
            counter_in(twice, twice.find("hi").unwrap(), "\"sequence_number\":"),
            None
        );
    }

    #[test]
    fn a_body_is_one_json_string_or_nothing() {
        let read = |body: &str| string_of(&format!("\"{body}\""));
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
