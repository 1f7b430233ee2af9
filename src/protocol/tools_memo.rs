//! Tool definitions decoded for an earlier request, reused when a later request sends the
//! same bytes.
//!
//! A coding agent sends the same tools with every request: Claude Code's are some twenty
//! JSON schemas, tens of KB decoded into maps of small allocations each time, though they
//! change only when the agent's set of tools does. Twenty such tools were 70 % of an 18 KB
//! request's instructions, and more than the rest of a 100 KB one read through the message
//! memo (bench/callgrind.sh, `--extra-tools 20`). The tools of an OpenAI chat, Anthropic,
//! Responses or Gemini request (each protocol its own memo), read as their JSON text, are
//! compared byte for byte with the lists kept, and a list sent before is the one decoded
//! then, shared (`model::Shared`): a stage that changes the tools copies them first. An
//! encoder that writes the same shared list again keeps its text (`tools_out`).
//!
//! Decoding a list is a pure function of its JSON text, and only a list that decoded is
//! kept, so a kept list is what decoding the text again gives. The texts are compared
//! whole, never by a hash.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use serde_json::value::RawValue;

use crate::Error;
use crate::model::{Shared, Tool};

/// Shorter lists are not looked for in a body before it is parsed: finding, copying and
/// blanking cost more than walking a list of a tool or two (+1.0 % instructions for
/// bench/callgrind.sh's 2 KB request with its one shell tool, when they were).
const BLANK_FROM: usize = 1024;
/// Lists of tools kept at most: an agent's, its sub-agents' and a few more.
const KEPT: usize = 8;
/// A list's text longer than this is decoded each time and not kept: the memo holds 8
/// texts of 256 KiB and their decoded trees at most (Claude Code's tools are tens of KB).
const LONGEST: usize = 256 << 10;

/// A list of tools as it was sent and as it decoded.
struct Kept {
    text: Box<str>,
    tools: Shared<Tool>,
    /// Whether the encoder writes every tool again as it came.
    round_trips: bool,
}

/// A kept list found sent again in a body, to blank there ([`ToolsMemo::sent_again`]).
pub(crate) struct SentAgain {
    /// Where its text was in the body.
    at: std::ops::Range<usize>,
    kept: Arc<Kept>,
}

impl SentAgain {
    /// Overwrites the list's text in `doc` (the body it was found in, or a copy) with a JSON
    /// string of the same length (`"xx…x"`), so every other offset in `doc` holds.
    pub(crate) fn blank_in(&self, doc: &mut [u8]) {
        let blank = &mut doc[self.at.clone()];
        // A list's text is at least `[]`: two bytes, the string's quotes.
        blank.fill(b'x');
        blank[0] = b'"';
        blank[blank.len() - 1] = b'"';
    }

    /// The list's text, as the body had it.
    pub(crate) fn text(&self) -> &str {
        &self.kept.text
    }

    /// `body` with the list blanked, in a copy.
    pub(crate) fn blanked(&self, body: &[u8]) -> Vec<u8> {
        let mut copy = body.to_vec();
        self.blank_in(&mut copy);
        copy
    }

    /// The request's tools, given the `tools` value parsed from the blanked `doc`: the kept
    /// list when that value is the blanked string, where the list was. Anything else means
    /// the key found was not the request's own (a nested one): an error, so that the caller
    /// reads the body again without blanking it.
    pub(crate) fn tools(
        &self,
        memo: &ToolsMemo,
        doc: &[u8],
        text: Option<&RawValue>,
        round_trip: &mut bool,
    ) -> Result<Shared<Tool>, Error> {
        let at = text.and_then(|text| crate::protocol::splice::span_in(doc, text));
        if at != Some(self.at.clone()) {
            return Err(Error::invalid_field(
                "tools",
                "a kept list was found in another field",
            ));
        }
        memo.touch(&self.kept);
        *round_trip = self.kept.round_trips;
        Ok(self.kept.tools.clone())
    }
}

/// What reading a body with a kept list of tools blanked in it gave.
pub(crate) enum ReadBlanked<T> {
    Decoded(Option<T>),
    /// The request's own `tools` was not where the kept list was found (a nested key):
    /// read it again without blanking.
    Mismatched,
}

impl<T> ReadBlanked<T> {
    /// Reads with `read`, blanking (`true`) and, after a mismatch, again without.
    pub(crate) fn retried(read: impl Fn(bool) -> Self) -> Option<T> {
        match read(true) {
            Self::Mismatched => read(false).decoded(),
            read => read.decoded(),
        }
    }

    fn decoded(self) -> Option<T> {
        match self {
            Self::Decoded(decoded) => decoded,
            Self::Mismatched => None,
        }
    }
}

/// A request's tools being read from its parsed `tools` value: as the kept list blanked in
/// the document (`sent`), or through [`ToolsMemo::tools`]; and what the reading found.
pub(crate) struct ToolsReading {
    sent: Option<SentAgain>,
    /// Whether the encoder writes the tools again as they came.
    pub(crate) round_trip: bool,
    /// Whether the request's own list was not where the blanked one was: the body is to be
    /// read again without blanking ([`ReadBlanked::Mismatched`]).
    pub(crate) mismatched: bool,
}

impl ToolsReading {
    pub(crate) fn new(sent: Option<SentAgain>) -> Self {
        Self {
            sent,
            round_trip: true,
            mismatched: false,
        }
    }

    /// Whether a kept list was blanked in the document.
    pub(crate) fn blanked(&self) -> bool {
        self.sent.is_some()
    }

    /// The text of the kept list blanked in the document, as the body had it.
    pub(crate) fn kept_text(&self) -> Option<&str> {
        self.sent.as_ref().map(SentAgain::text)
    }

    /// The tools `text` (parsed from `doc`) stands for; `decode` decodes a list not kept.
    pub(crate) fn read(
        &mut self,
        memo: &ToolsMemo,
        doc: &[u8],
        text: Option<&RawValue>,
        decode: impl FnOnce(Vec<Value>) -> Result<(Vec<Tool>, bool), Error>,
    ) -> Result<Shared<Tool>, Error> {
        match &self.sent {
            Some(sent) => sent
                .tools(memo, doc, text, &mut self.round_trip)
                .inspect_err(|_| self.mismatched = true),
            None => memo.tools(text, &mut self.round_trip, decode),
        }
    }
}

/// The list whose JSON text is `text`, read one level deep, as it sits in a body (the
/// request's object around it), so serde_json's nesting limit refuses what it refused there.
pub(crate) fn nested_in_list<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, Error> {
    let nested = format!("[{text}]");
    let (list,): (T,) = crate::protocol::json_from_bytes(nested.as_bytes())
        .map_err(|err| Error::invalid_field("tools", err.to_string()))?;
    Ok(list)
}

/// The memo of the latest lists of tools (see the module's comment).
#[derive(Default)]
pub(crate) struct ToolsMemo {
    kept: Mutex<VecDeque<Arc<Kept>>>,
    /// Whether a list of `BLANK_FROM` bytes or more was ever kept: until one is, a body is
    /// not searched for one.
    long_kept: std::sync::atomic::AtomicBool,
    /// Lists decoded rather than reused, for the tests.
    #[cfg(test)]
    decoded: std::sync::atomic::AtomicUsize,
    /// Lists found sent again in a body before it was parsed, for the tests.
    #[cfg(test)]
    blanked: std::sync::atomic::AtomicUsize,
}

impl ToolsMemo {
    /// Reads a request `body` with `read`, given the document to parse and the reading of its
    /// tools: the body, or, when `blank` and a kept list is sent in it again, a copy with that
    /// list blanked (the same offsets). A read whose own `tools` was not where the blanked
    /// list was is [`ReadBlanked::Mismatched`] (see [`ReadBlanked::retried`]).
    pub(crate) fn read_blanking<T>(
        &self,
        body: &[u8],
        blank: bool,
        read: impl FnOnce(&[u8], &mut ToolsReading) -> Option<T>,
    ) -> ReadBlanked<T> {
        let sent = blank.then(|| self.sent_again(body)).flatten();
        let blanked = sent.as_ref().map(|sent| sent.blanked(body));
        let doc = blanked.as_deref().unwrap_or(body);
        let mut reading = ToolsReading::new(sent);
        let read = read(doc, &mut reading);
        if reading.mismatched {
            ReadBlanked::Mismatched
        } else {
            ReadBlanked::Decoded(read)
        }
    }

    /// The tools whose JSON list is `text` (none when there is none): those decoded from
    /// the same text before, else what `decode` makes of the list, which also tells
    /// whether the encoder writes each again as it came; `round_trip` is set to that. An
    /// error (a `text` that is not a list, or one of `decode`) is returned as it is, and
    /// nothing is kept.
    pub(crate) fn tools(
        &self,
        text: Option<&RawValue>,
        round_trip: &mut bool,
        decode: impl FnOnce(Vec<Value>) -> Result<(Vec<Tool>, bool), Error>,
    ) -> Result<Shared<Tool>, Error> {
        self.tools_of_text(text, round_trip, |text| decode(nested_in_list(text)?))
    }

    /// [`ToolsMemo::tools`] for a protocol whose tools are read from their text by `decode`
    /// (its own wire types: their parser, not a `Value`'s, says what is refused).
    pub(crate) fn tools_of_text(
        &self,
        text: Option<&RawValue>,
        round_trip: &mut bool,
        decode: impl FnOnce(&str) -> Result<(Vec<Tool>, bool), Error>,
    ) -> Result<Shared<Tool>, Error> {
        let Some(text) = text.map(RawValue::get) else {
            return Ok(Shared::default());
        };
        if let Some(kept) = self.find(text) {
            *round_trip = kept.round_trips;
            return Ok(kept.tools.clone());
        }
        #[cfg(test)]
        self.decoded
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tools, round_trips) = decode(text)?;
        let tools = Shared::new(tools);
        if text.len() <= LONGEST {
            self.keep(Kept {
                text: text.into(),
                tools: tools.clone(),
                round_trips,
            });
        }
        *round_trip = round_trips;
        Ok(tools)
    }

    /// A kept list sent again in `doc` as the value of a `"tools"` key, to blank there
    /// ([`SentAgain::blank_in`]): a parser then skips a string instead of walking each token
    /// of the list to find where it ends (serde_json's `RawValue`: ~12 instructions a byte,
    /// 230k for twenty tools). The key may be a nested one: [`SentAgain::tools`] then
    /// tells, and the caller reads the body again without blanking. `None` when no kept
    /// list is there.
    pub(crate) fn sent_again(&self, doc: &[u8]) -> Option<SentAgain> {
        const KEY: &[u8] = b"\"tools\"";
        if !self.long_kept.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        let at_value = |key: usize| {
            let after = doc.get(key + KEY.len()..)?;
            let colon = after.iter().position(|b| !b.is_ascii_whitespace())?;
            (after[colon] == b':').then_some(())?;
            let value = after[colon + 1..]
                .iter()
                .position(|b| !b.is_ascii_whitespace())?;
            Some(key + KEY.len() + colon + 1 + value)
        };
        // Lazily: a body of many `"tools":` keys costs no list of them.
        let mut starts = memchr::memmem::find_iter(doc, KEY)
            .filter_map(at_value)
            .peekable();
        starts.peek()?;
        let kept: Vec<Arc<Kept>> = self
            .lock()
            .iter()
            .filter(|kept| kept.text.len() >= BLANK_FROM)
            .cloned()
            .collect();
        let (start, found) = starts.find_map(|start| {
            let sent = &doc[start..];
            let found = kept.iter().find(|k| sent.starts_with(k.text.as_bytes()))?;
            Some((start, found.clone()))
        })?;
        #[cfg(test)]
        self.blanked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(SentAgain {
            at: start..start + found.text.len(),
            kept: found,
        })
    }

    /// The list kept for `text`, which becomes the first to be kept. The texts are
    /// compared after the lock is let go.
    fn find(&self, text: &str) -> Option<Arc<Kept>> {
        let same_length: Vec<Arc<Kept>> = self
            .lock()
            .iter()
            .filter(|kept| kept.text.len() == text.len())
            .cloned()
            .collect();
        let found = same_length.into_iter().find(|kept| *kept.text == *text)?;
        self.touch(&found);
        Some(found)
    }

    /// Makes `found` the first list kept (the last to be let go).
    fn touch(&self, found: &Arc<Kept>) {
        let mut kept = self.lock();
        if let Some(at) = kept.iter().position(|k| Arc::ptr_eq(k, found))
            && at > 0
            && let Some(moved) = kept.remove(at)
        {
            kept.push_front(moved);
        }
    }

    fn keep(&self, new: Kept) {
        if new.text.len() >= BLANK_FROM {
            self.long_kept
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let mut kept = self.lock();
        kept.push_front(Arc::new(new));
        kept.truncate(KEPT);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Kept>>> {
        // A panic while holding the lock leaves nothing half-changed that matters: the
        // list is only a memo.
        self.kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Lists decoded rather than reused so far.
    #[cfg(test)]
    pub(crate) fn decoded(&self) -> usize {
        self.decoded.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Lists found sent again in a body so far.
    #[cfg(test)]
    pub(crate) fn blanked(&self) -> usize {
        self.blanked.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tools named by the list's strings; they round-trip when there are two.
    fn named(list: Vec<Value>) -> Result<(Vec<Tool>, bool), Error> {
        let round_trips = list.len() == 2;
        let tools = list
            .into_iter()
            .map(|name| match name {
                Value::String(name) => Ok(Tool::Function {
                    name,
                    description: None,
                    parameters: None,
                    strict: None,
                    extensions: Default::default(),
                }),
                other => Err(Error::invalid_field("tools", format!("{other} is no name"))),
            })
            .collect::<Result<_, _>>()?;
        Ok((tools, round_trips))
    }

    /// `memo`'s tools of `text`, and what it says of their round trip.
    fn tools(memo: &ToolsMemo, text: &str) -> Result<(Shared<Tool>, bool), Error> {
        let text = RawValue::from_string(text.to_owned()).unwrap();
        let mut round_trip = true;
        let tools = memo.tools(Some(&text), &mut round_trip, named)?;
        Ok((tools, round_trip))
    }

    #[test]
    fn the_same_text_is_the_list_decoded_before_another_is_decoded() {
        let memo = ToolsMemo::default();
        let (first, round_trips) = tools(&memo, r#"["a","b"]"#).unwrap();
        assert!(round_trips);
        let (again, round_trips) = tools(&memo, r#"["a","b"]"#).unwrap();
        assert!(Shared::same_list(&first, &again) && round_trips);
        assert_eq!(memo.decoded(), 1);
        // Equal tools written otherwise are another text.
        let (spaced, _) = tools(&memo, r#"["a", "b"]"#).unwrap();
        assert!(!Shared::same_list(&first, &spaced));
        assert_eq!(spaced, first);
        assert_eq!(memo.decoded(), 2);
        let (_, round_trips) = tools(&memo, r#"["a"]"#).unwrap();
        assert!(!round_trips);
        let (_, round_trips) = tools(&memo, r#"["a"]"#).unwrap();
        assert!(!round_trips, "what was found of a kept list comes with it");
        // No list, no tools; the round trip is as it was.
        let mut round_trip = true;
        assert!(memo.tools(None, &mut round_trip, named).unwrap().is_empty() && round_trip);
    }

    #[test]
    fn a_kept_list_after_a_tools_key_is_blanked_to_a_string_of_its_length() {
        let memo = ToolsMemo::default();
        let (a, b) = ("a".repeat(600), "b".repeat(600));
        let list = format!(r#"["{a}","{b}"]"#);
        tools(&memo, &list).unwrap();
        tools(&memo, r#"["short","list"]"#).unwrap();
        let other = format!(r#"{{"tools":["{a}"]}}"#);
        assert!(memo.sent_again(other.as_bytes()).is_none(), "another list");
        let other = format!(r#"{{"x":{list}}}"#);
        assert!(memo.sent_again(other.as_bytes()).is_none(), "another key");
        let short = br#"{"tools":["short","list"]}"#;
        assert!(memo.sent_again(short).is_none(), "a short list is walked");
        let mut doc = format!(r#"{{"m":1, "tools" :  {list}, "n":2}}"#).into_bytes();
        let sent = memo.sent_again(&doc).unwrap();
        sent.blank_in(&mut doc);
        let blank = format!("\"{}\"", "x".repeat(list.len() - 2));
        assert_eq!(
            doc,
            format!(r#"{{"m":1, "tools" :  {blank}, "n":2}}"#).into_bytes()
        );
        #[derive(serde::Deserialize)]
        struct Wire<'a> {
            #[serde(borrow)]
            tools: &'a RawValue,
            n: u8,
        }
        let wire: Wire = serde_json::from_slice(&doc).unwrap();
        assert_eq!(wire.n, 2);
        let mut round_trip = false;
        let found = sent
            .tools(&memo, &doc, Some(wire.tools), &mut round_trip)
            .unwrap();
        assert_eq!(found.len(), 2);
        assert!(round_trip, "what was found of the kept list comes with it");
        // The same text elsewhere (a copy) is not the blanked list.
        let elsewhere = RawValue::from_string(blank).unwrap();
        assert!(
            sent.tools(&memo, &doc, Some(&elsewhere), &mut round_trip)
                .is_err()
        );
        assert!(sent.tools(&memo, &doc, None, &mut round_trip).is_err());
        assert_eq!((memo.decoded(), memo.blanked()), (2, 1));
    }

    #[test]
    fn an_error_is_returned_and_nothing_is_kept() {
        let memo = ToolsMemo::default();
        for broken in [r#"["a",1]"#, r#"{"a":"b"}"#, "7"] {
            assert!(tools(&memo, broken).is_err());
            assert!(tools(&memo, broken).is_err());
        }
        assert_eq!(memo.decoded(), 6);
    }

    #[test]
    fn the_latest_lists_are_kept_and_a_list_used_again_stays() {
        let memo = ToolsMemo::default();
        let list = |i: usize| format!(r#"["tool{i}"]"#);
        tools(&memo, &list(0)).unwrap();
        for i in 1..KEPT + 4 {
            tools(&memo, &list(i)).unwrap();
            // The first list is used between the others: never the oldest.
            tools(&memo, &list(0)).unwrap();
        }
        let decoded = memo.decoded();
        tools(&memo, &list(0)).unwrap();
        tools(&memo, &list(KEPT + 3)).unwrap();
        assert_eq!(memo.decoded(), decoded);
        tools(&memo, &list(1)).unwrap();
        assert_eq!(memo.decoded(), decoded + 1, "the oldest list was let go");
    }
}
