//! Messages decoded for an earlier request, reused when a later request repeats them byte
//! for byte.
//!
//! A coding agent sends its whole conversation with every request, and each request is the
//! one before with a turn or two added: a 100 KB request repeats ~97 KB it sent seconds
//! ago. Decoding its messages was ~40 % of llmux's CPU for such a request (perf on the
//! tokio worker, `loadgen --history 40`), nearly all of it serde_json reading escaped
//! strings (tool results full of `\n` and `\"`). Finding where each message's JSON begins
//! and ends costs a third of decoding it, comparing it with the text the same position had
//! in the conversation's last request costs next to nothing, and a copy of the message
//! decoded then is a few allocations: so a message seen before is cloned, and only the new
//! ones are decoded.
//!
//! Nor is a body parsed to find its messages when the memo knows where they are
//! ([`MessageMemo::known`]): each conversation keeps its head, the body's bytes before its
//! first message, and a body that starts with that head lists its messages at the same
//! place. There the conversation's texts are compared with the body's bytes, each new
//! message is read where it is (serde_json's stream reader tells where it ends), and the
//! parser gets the body with its list cut down to one placeholder message. A growing 100 KB
//! agent request took 1.19M instructions through the memo before, 0.52M so (bench/
//! callgrind.sh, `--history-grows`), and one with no message seen before, read in one pass,
//! 2.22M against 3.01M (1.94M without any memo; `--history-fresh`).
//!
//! Decoding a message is a pure function of its JSON text (its position only names it in
//! an error, and an error is never remembered), so reusing the value decoded from the same
//! text gives what decoding it again would. serde_json's nesting limit refuses a message
//! read alone exactly when it refused it in the body: one that might nest deep enough to
//! tell is read as deep as it sits (see [`Nested`]). The texts are
//! compared byte for byte, never by a hash: a request whose messages collided with another
//! client's would be given that client's messages.
//!
//! The memo is one for all clients: a client given the messages decoded for another sent
//! the same bytes. It keeps message texts as the client sent them, before any stage (the
//! prompt redaction among them) saw them, for as long as the conversation is among the
//! latest.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::Error;
use crate::model::{Edits, Facts, Message, MessageFacts, Shared, Splice};
use crate::protocol::splice::span_in;
use crate::protocol::tools_memo::ToolsMemo;

/// Requests from this size up have their messages read through a memo. A request with no
/// message seen before costs a sixth more (copying each message's text to keep it; half
/// again for a client's first, whose messages' ends are found before they are decoded:
/// bench/results/fastpath.md, sessions 26 and 27), but a request this large is nearly
/// always an agent's, which repeats its last request and adds a turn. Below it the request
/// path stays as it was.
pub(crate) const MEMO_FROM: usize = 32 << 10;

/// Conversations remembered at most: an agent, its sub-agents, and a few sessions at once.
const CONVERSATIONS: usize = 8;
/// What the conversations remembered may weigh at most, as [`weight`] counts it.
const BYTES: usize = 16 << 20;

/// What a message remembered weighs: its text, about as much again decoded, and a part's
/// own allocations (a 13-byte `{"type":"x"}` part decodes to a map of a few hundred bytes,
/// so a request of many tiny parts weighs what it holds, not what its text is long).
fn weight(text: &str, message: &Message) -> usize {
    const PART: usize = 512;
    let parts: usize = message
        .parts
        .iter()
        .map(|part| match part {
            crate::model::Part::ToolResult { content, .. } => 1 + content.len(),
            _ => 1,
        })
        .sum();
    2 * text.len() + PART * (1 + parts)
}

/// The messages of a conversation's latest request: their JSON texts, what they decoded
/// to (the request's own list, shared: a stage that changes the request's messages copies
/// them first, so this stays as decoded), and whether the encoder writes each again as it
/// came.
struct Conversation {
    /// The request's bytes before its first message: its members before the list, and the
    /// list's opening bracket (empty when it had no message).
    head: Arc<[u8]>,
    texts: Vec<Arc<Nested>>,
    messages: Shared<Message>,
    /// What stages learnt about each message ([`Facts`]), handed on with the message.
    facts: Vec<Arc<MessageFacts>>,
    round_trips: Vec<bool>,
    bytes: usize,
}

impl Conversation {
    /// Whether `texts` starts as this conversation's request did: its first `how_many`
    /// messages (in OpenAI chat the system prompt, which every session of one agent shares,
    /// then the task, which sets one session apart; in Anthropic, whose system prompt is
    /// not a message, the task and the first answer).
    fn starts_like(&self, texts: &[&RawValue], how_many: usize) -> bool {
        texts
            .iter()
            .take(how_many)
            .enumerate()
            .all(|(index, text)| self.texts.get(index).map(|seen| seen.text()) == Some(text.get()))
    }

    /// How many of this conversation's first two messages `body` starts its list with,
    /// compared as bytes (what follows each is checked as the body is read,
    /// [`MessageMemo::known`]); `None` when the body does not start with this
    /// conversation's head, so its list starts somewhere else.
    fn first_repeated(&self, body: &[u8]) -> Option<usize> {
        if self.head.is_empty() || !body.starts_with(&self.head) {
            return None;
        }
        let (mut count, mut at) = (0, self.head.len());
        for text in self.texts.iter().take(2) {
            let text = text.text().as_bytes();
            if !body.get(at..).is_some_and(|rest| rest.starts_with(text)) {
                break;
            }
            // Past the separator after it, whatever it is.
            (count, at) = (
                count + 1,
                after_space(body, after_space(body, at + text.len()) + 1),
            );
        }
        Some(count)
    }
}

/// The first byte of `body` from `at` on that is not JSON whitespace.
fn after_space(body: &[u8], at: usize) -> usize {
    at + body
        .get(at..)
        .unwrap_or_default()
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .count()
}

/// What the parser is given in the place of a request's messages when the memo has read
/// them ([`MessageMemo::known`]): one message, for OpenAI chat's decoder refuses an empty
/// list.
const PLACEHOLDER: &[u8] = b"{}";

/// A request's body as a decoder parses it ([`MessageMemo::read`]): the body itself, or,
/// when the memo read its messages ([`MessageMemo::known`]), the body with its list of
/// messages cut down to [`PLACEHOLDER`], to parse for the rest. That doc is valid JSON
/// exactly when the body is, for the memo read every message whole and checked the commas
/// between them.
pub(crate) struct Body<'b> {
    pub(crate) doc: Cow<'b, [u8]>,
    seam: Option<Seam>,
    /// The messages the memo read, and what it keeps of them: for [`MessageMemo::messages`].
    pub(crate) known: Option<(Vec<Message>, Decoded)>,
}

impl Body<'_> {
    /// `edits` found in the doc, where they are in the body.
    pub(crate) fn edits_in_body(&self, edits: Option<Edits>) -> Option<Edits> {
        match self.seam {
            Some(seam) => edits.and_then(|edits| seam.edits_in_body(edits)),
            None => edits,
        }
    }
}

/// Where a [`Body`]'s doc parts from the body: the head is where it was, what follows the
/// placeholder is further on by what was left out.
#[derive(Debug, Clone, Copy)]
struct Seam {
    head: usize,
    left_out: usize,
}

impl Seam {
    /// `edits` found in the doc, moved to where they are in the body.
    fn edits_in_body(self, edits: Edits) -> Option<Edits> {
        let Edits { model, splices } = edits;
        let splices = splices
            .into_iter()
            .map(|Splice { at, with }| {
                Some(Splice {
                    at: self.in_body(at)?,
                    with,
                })
            })
            .collect::<Option<_>>()?;
        Some(Edits {
            model: self.in_body(model)?,
            splices,
        })
    }

    /// Where the bytes at `range` of the doc are in the body. `None` for a range that
    /// touches the placeholder (no member of a request does: it is inside the list).
    fn in_body(self, range: Range<usize>) -> Option<Range<usize>> {
        let rest = self.head + PLACEHOLDER.len();
        if range.end <= self.head {
            Some(range)
        } else if range.start >= rest {
            Some(range.start + self.left_out..range.end + self.left_out)
        } else {
            None
        }
    }
}

/// A request's messages as they are read, one by one: copies of the conversation's where
/// the texts are the same, the others decoded.
struct Reading<'c, R, D> {
    earlier: Option<&'c Conversation>,
    round_trips: R,
    decode: D,
    messages: Vec<Message>,
    out: Decoded,
    reused: usize,
}

impl<'c, R, D> Reading<'c, R, D> {
    fn new(earlier: Option<&'c Conversation>, head: Arc<[u8]>, round_trips: R, decode: D) -> Self {
        Self {
            earlier,
            round_trips,
            decode,
            messages: Vec::new(),
            out: Decoded {
                round_trips: Vec::new(),
                texts: Vec::new(),
                facts: Vec::new(),
                head,
                continues: None,
            },
            reused: 0,
        }
    }

    /// Copies the conversation's next message if its text is `text`.
    fn reuse(&mut self, text: &str) -> bool {
        let index = self.messages.len();
        let Some(earlier) = self.earlier.filter(|earlier| {
            earlier
                .texts
                .get(index)
                .is_some_and(|seen| seen.text() == text)
        }) else {
            return false;
        };
        self.reuse_next(earlier);
        true
    }

    fn reuse_next(&mut self, earlier: &Conversation) {
        let index = self.messages.len();
        self.messages.push(earlier.messages[index].clone());
        self.out.round_trips.push(earlier.round_trips[index]);
        self.out.texts.push(Arc::clone(&earlier.texts[index]));
        self.out.facts.push(Arc::clone(&earlier.facts[index]));
        self.reused += 1;
    }

    /// Adds the message read as `wire` from `nested`.
    fn push<W>(&mut self, nested: Nested, wire: W) -> Result<(), Error>
    where
        R: Fn(&W) -> bool,
        D: Fn(W, usize) -> Result<Message, Error>,
    {
        let index = self.messages.len();
        self.out.round_trips.push((self.round_trips)(&wire));
        self.messages.push((self.decode)(wire, index)?);
        self.out.texts.push(Arc::new(nested));
        self.out.facts.push(Arc::default());
        Ok(())
    }

    /// The messages, and what the memo keeps of them. A request that shares only its first
    /// message with a conversation (another session of the same agent) is one of its own,
    /// and leaves that one be.
    fn finish(self, earlier: Option<&Arc<Conversation>>) -> (Vec<Message>, Decoded) {
        let Self {
            messages,
            mut out,
            reused,
            ..
        } = self;
        out.continues = earlier
            .filter(|earlier| reused >= 2 && reused * 2 >= earlier.texts.len())
            .cloned();
        (messages, out)
    }
}

/// The first JSON value of `text`, read as `W`, and its length.
fn read_first<W: DeserializeOwned>(text: &str) -> Option<(W, usize)> {
    let mut values = serde_json::Deserializer::from_str(text).into_iter::<W>();
    let value = values.next()?.ok()?;
    Some((value, values.byte_offset()))
}

/// What [`MessageMemo::decode`] learnt of a request's messages besides the messages: what
/// the memo keeps of them once the request holds them ([`MessageMemo::remember`]).
pub(crate) struct Decoded {
    /// Whether the encoder writes each message again as it came.
    round_trips: Vec<bool>,
    texts: Vec<Arc<Nested>>,
    facts: Vec<Arc<MessageFacts>>,
    head: Arc<[u8]>,
    /// The conversation this request continues, when it reused two of its messages and at
    /// least half of them.
    continues: Option<Arc<Conversation>>,
}

impl Decoded {
    /// Takes the head's bytes from `body`, the request's own bytes, when the doc's were
    /// changed in place (a list of tools blanked before the messages, at the same offsets):
    /// the conversation is then found by the bytes its next request starts with.
    pub(crate) fn head_from(&mut self, body: &[u8]) {
        if let Some(head) = body.get(..self.head.len())
            && *head != *self.head
        {
            self.head = Arc::from(head);
        }
    }

    /// Whether the encoder writes every message again as it came.
    pub(crate) fn all_round_trip(&self) -> bool {
        self.round_trips.iter().all(|&round_trips| round_trips)
    }
}

/// The memo of the latest requests' messages (see the module's comment).
#[derive(Default)]
pub(crate) struct MessageMemo {
    conversations: Mutex<VecDeque<Arc<Conversation>>>,
    /// The latest lists of tools: every request of the decoder this memo serves has its
    /// tools read through it.
    tools: ToolsMemo,
    /// Messages decoded rather than reused, for the tests.
    #[cfg(test)]
    fresh: std::sync::atomic::AtomicUsize,
    /// Messages a body parsed without its list repeated from the memo ([`Known`]), for the
    /// tests.
    #[cfg(test)]
    left_out: std::sync::atomic::AtomicUsize,
}

impl MessageMemo {
    /// `body` to parse, with its messages read when the memo knows where its list starts
    /// ([`MessageMemo::known`]), else as it is. `round_trips` and `decode` as for
    /// [`MessageMemo::decode`].
    pub(crate) fn read<'b, W: DeserializeOwned>(
        &self,
        body: &'b [u8],
        round_trips: impl Fn(&W) -> bool,
        decode: impl Fn(W, usize) -> Result<Message, Error>,
    ) -> Body<'b> {
        self.known(body, round_trips, decode).unwrap_or(Body {
            doc: Cow::Borrowed(body),
            seam: None,
            known: None,
        })
    }

    /// A request's messages read from its `body` where the memo knows where its list
    /// starts: when the body starts as a conversation's last request did, up to its first
    /// message (the latest conversation whose first two messages it repeats, else the
    /// latest whose first, else the latest it starts as). A message the conversation has at
    /// the same place is compared byte for byte and copied; each of the others is read
    /// where it is (serde_json finds where it ends as it reads it), so the parser is spared
    /// them and no message is read twice. `None` when no
    /// conversation's head fits, or on anything wrong, which parsing the body then finds.
    /// `round_trips` and `decode` as for [`MessageMemo::decode`].
    fn known<'b, W: DeserializeOwned>(
        &self,
        body: &'b [u8],
        round_trips: impl Fn(&W) -> bool,
        decode: impl Fn(W, usize) -> Result<Message, Error>,
    ) -> Option<Body<'b>> {
        let earlier = self.conversation_starting(body)?;
        let head = earlier.head.len();
        let mut at = head;
        let mut reading = Reading::new(
            Some(&earlier),
            Arc::clone(&earlier.head),
            round_trips,
            decode,
        );
        // The body from its first new message on is checked as UTF-8 once, when one comes
        // (the head and the repeated messages are the conversation's, which were): checking
        // all of a repeated 100 KB request was a tenth of its instructions (callgrind).
        let mut unread: Option<(usize, &str)> = None;
        while body.get(at) != Some(&b']') {
            // A message the conversation has at this place is copied, as in `decode`; whole,
            // for a JSON object ends where its braces close.
            let index = reading.messages.len();
            let seen = earlier
                .texts
                .get(index)
                .map(|seen| seen.text())
                .filter(|seen| {
                    body.get(at..)
                        .is_some_and(|rest| rest.starts_with(seen.as_bytes()))
                });
            let len = match seen {
                Some(seen) => {
                    reading.reuse_next(&earlier);
                    seen.len()
                }
                None => {
                    let (from, text) = match unread {
                        Some(unread) => unread,
                        None => *unread.insert((at, std::str::from_utf8(&body[at..]).ok()?)),
                    };
                    // Always at a char boundary (after ASCII); `get` all the same.
                    let rest = text.get(at - from..)?;
                    let (wire, len) = read_first::<W>(rest)?;
                    let nested = Nested::new(rest.get(..len)?);
                    // Read alone, a message may nest two levels deeper than in the body:
                    // one that might is read again as deep as it sits.
                    let wire = if nested.might_be_too_deep() {
                        nested.read().ok()?
                    } else {
                        wire
                    };
                    reading.push(nested, wire).ok()?;
                    #[cfg(test)]
                    self.fresh
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    len
                }
            };
            let after = after_space(body, at + len);
            match body.get(after) {
                Some(b',') => {
                    at = after_space(body, after + 1);
                    if body.get(at) == Some(&b']') {
                        return None;
                    }
                }
                Some(b']') => at = after,
                _ => return None,
            }
        }
        let (messages, decoded) = reading.finish(Some(&earlier));
        if messages.is_empty() {
            return None;
        }
        let mut doc = Vec::with_capacity(head + PLACEHOLDER.len() + body.len() - at);
        doc.extend_from_slice(&body[..head]);
        doc.extend_from_slice(PLACEHOLDER);
        doc.extend_from_slice(&body[at..]);
        let left_out = (at - head).checked_sub(PLACEHOLDER.len())?;
        #[cfg(test)]
        self.left_out.fetch_add(
            decoded
                .texts
                .iter()
                .zip(&earlier.texts)
                .take_while(|(text, seen)| Arc::ptr_eq(text, seen))
                .count(),
            std::sync::atomic::Ordering::Relaxed,
        );
        Some(Body {
            doc: Cow::Owned(doc),
            seam: Some(Seam { head, left_out }),
            known: Some((messages, decoded)),
        })
    }

    /// The conversation whose head `body` starts with (see [`MessageMemo::known`]).
    fn conversation_starting(&self, body: &[u8]) -> Option<Arc<Conversation>> {
        let conversations: Vec<Arc<Conversation>> = self.lock().iter().cloned().collect();
        let mut found: Option<(Arc<Conversation>, usize)> = None;
        for conversation in conversations {
            let Some(repeated) = conversation.first_repeated(body) else {
                continue;
            };
            if found.as_ref().is_none_or(|(_, most)| repeated > *most) {
                found = Some((conversation, repeated));
            }
            if repeated == 2 {
                break;
            }
        }
        found.map(|(conversation, _)| conversation)
    }

    /// The messages whose JSON texts are `texts`, the list of the request `doc`: a copy of
    /// the message decoded from the same text at the same place in the conversation's last
    /// request, else the text read as the wire type `W`, told whether the encoder writes it
    /// again as it came (`round_trips`) and turned into the model's message by `decode`
    /// (with its index, for an error). The first error is returned as it is.
    pub(crate) fn decode<W: DeserializeOwned>(
        &self,
        doc: &[u8],
        texts: &[&RawValue],
        round_trips: impl Fn(&W) -> bool,
        decode: impl Fn(W, usize) -> Result<Message, Error>,
    ) -> Result<(Vec<Message>, Decoded), Error> {
        let earlier = self.conversation_like(texts);
        let head = texts
            .first()
            .and_then(|first| span_in(doc, first))
            .map_or_else(
                || Arc::from(&[][..]),
                |first| Arc::from(&doc[..first.start]),
            );
        let mut reading = Reading::new(earlier.as_deref(), head, round_trips, decode);
        for text in texts {
            let text = text.get();
            if reading.reuse(text) {
                continue;
            }
            let nested = Nested::new(text);
            let wire: W = nested.read()?;
            reading.push(nested, wire)?;
            #[cfg(test)]
            self.fresh
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(reading.finish(earlier.as_ref()))
    }

    /// The messages of a request whose list in `doc` is `texts`: those `known` read from its
    /// body when it did (see [`MessageMemo::known`]), else `texts` read by
    /// [`MessageMemo::decode`].
    pub(crate) fn messages<W: DeserializeOwned>(
        &self,
        known: Option<(Vec<Message>, Decoded)>,
        doc: &[u8],
        texts: &[&RawValue],
        round_trips: impl Fn(&W) -> bool,
        decode: impl Fn(W, usize) -> Result<Message, Error>,
    ) -> Result<(Vec<Message>, Decoded), Error> {
        match known {
            Some(known) => Ok(known),
            None => self.decode(doc, texts, round_trips, decode),
        }
    }

    /// Keeps `messages`, the request's list of the messages `decoded` came with, as its
    /// conversation's newest, in the place of the one it continues (which goes even when
    /// the new one is not kept), and forgets the oldest beyond the bounds. A request that
    /// does not fit in the bounds by itself is not kept. Two requests of one conversation
    /// at once may both be kept; the later one is found first. Gives the request the facts
    /// of its messages, those it repeats shared with the conversation it continues.
    pub(crate) fn remember(&self, decoded: Decoded, messages: &Shared<Message>) -> Facts {
        let Decoded {
            texts,
            round_trips,
            facts,
            head,
            continues,
        } = decoded;
        let request_facts = Facts::new(messages, facts.clone());
        let fits = messages.len() == texts.len();
        let bytes = head.len()
            + texts
                .iter()
                .zip(messages.iter())
                .map(|(text, message)| weight(text.text(), message))
                .sum::<usize>();
        // What leaves the memo is freed after the lock is let go: the last copy of a
        // conversation is thousands of allocations, and every large request takes the lock.
        let mut forgotten = Vec::new();
        let mut conversations = self.lock();
        if let Some(continued) = continues {
            conversations.retain(|kept| !Arc::ptr_eq(kept, &continued));
            forgotten.push(continued);
        }
        if fits && bytes <= BYTES {
            conversations.push_front(Arc::new(Conversation {
                head,
                texts,
                messages: messages.clone(),
                facts,
                round_trips,
                bytes,
            }));
        }
        while conversations.len() > CONVERSATIONS
            || conversations.iter().map(|kept| kept.bytes).sum::<usize>() > BYTES
        {
            forgotten.extend(conversations.pop_back());
        }
        drop(conversations);
        drop(forgotten);
        request_facts
    }

    /// The conversation `texts` most likely continues: the latest that starts with the same
    /// two messages, else the latest that starts with the same first one. The texts are
    /// compared after the lock is let go.
    fn conversation_like(&self, texts: &[&RawValue]) -> Option<Arc<Conversation>> {
        let conversations: Vec<Arc<Conversation>> = self.lock().iter().cloned().collect();
        [2, 1].into_iter().find_map(|how_many| {
            conversations
                .iter()
                .find(|conversation| conversation.starts_like(texts, how_many))
                .cloned()
        })
    }

    /// The memo of the tools of the requests this memo reads.
    pub(crate) fn tools(&self) -> &ToolsMemo {
        &self.tools
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Conversation>>> {
        // A panic while holding the lock leaves nothing half-changed that matters: the
        // list is only a memo.
        self.conversations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Messages decoded rather than reused so far.
    #[cfg(test)]
    pub(crate) fn fresh(&self) -> usize {
        self.fresh.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Messages left out of bodies before they were parsed so far.
    #[cfg(test)]
    pub(crate) fn left_out(&self) -> usize {
        self.left_out.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many conversations are kept, and their weight.
    #[cfg(test)]
    pub(crate) fn kept(&self) -> (usize, usize) {
        let conversations = self.lock();
        (
            conversations.len(),
            conversations.iter().map(|kept| kept.bytes).sum(),
        )
    }
}

/// One message's JSON text two arrays deep (`[[text]]`), where a message sits in a body (its
/// object and the `messages` list): read so, serde_json's nesting limit refuses the message
/// alone exactly when it refused the body. Read alone, it would be allowed two levels more
/// (and finding where it ends, as `RawValue`, does not count levels). The memo keeps this
/// copy as the message's text, so a new message's text is copied once.
struct Nested(String);

impl Nested {
    fn new(text: &str) -> Self {
        let mut nested = String::with_capacity(text.len() + 4);
        nested.push_str("[[");
        nested.push_str(text);
        nested.push_str("]]");
        Self(nested)
    }

    /// Whether the message might nest deeper than serde_json reads in a body: it has more
    /// than 125 opening brackets (inside strings too). serde_json refuses the 128th level;
    /// the body and its list are two of them.
    fn might_be_too_deep(&self) -> bool {
        const LEVELS_LEFT: usize = 125;
        // Counted a block at a time into a byte, which the compiler turns into vector
        // instructions, and `[` (0x5B) is `{` (0x7B) but for the bit 0x20: one compare a
        // byte. Counted with `filter`, a byte at a time, this was a fifth of a request with
        // no message seen before, and memchr's search for either a twentieth (bench/
        // callgrind.sh, `--history-fresh`).
        let mut opening = 0;
        for block in self.text().as_bytes().chunks(255) {
            let in_block: u8 = block.iter().map(|&b| u8::from(b | 0x20 == b'{')).sum();
            opening += usize::from(in_block);
            if opening > LEVELS_LEFT {
                return true;
            }
        }
        false
    }

    /// The message's own text.
    fn text(&self) -> &str {
        &self.0[2..self.0.len() - 2]
    }

    fn read<W: DeserializeOwned>(&self) -> Result<W, Error> {
        let ((wire,),): ((W,),) =
            serde_json::from_str(&self.0).map_err(|err| Error::invalid_request(err.to_string()))?;
        Ok(wire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Part, Role};

    fn raws(texts: &[String]) -> Vec<Box<RawValue>> {
        texts
            .iter()
            .map(|text| RawValue::from_string(text.clone()).unwrap())
            .collect()
    }

    fn borrowed(raws: &[Box<RawValue>]) -> Vec<&RawValue> {
        raws.iter().map(|raw| &**raw).collect()
    }

    /// Decodes `texts` (JSON strings) through `memo` as the decoders do, and has the memo
    /// remember them; a message is a user's with the string as its text. Gives the texts of
    /// the messages and how many of them were decoded.
    fn run(memo: &MessageMemo, texts: &[String]) -> (Vec<String>, usize) {
        let (list, _, decoded) = remembered(memo, texts);
        (list.iter().map(Message::text).collect(), decoded)
    }

    /// [`run`]'s request: its messages, their facts, and how many it decoded.
    fn remembered(memo: &MessageMemo, texts: &[String]) -> (Shared<Message>, Facts, usize) {
        let raws = raws(texts);
        let decoded = std::cell::Cell::new(0);
        let (messages, out) = memo
            .decode(
                b"",
                &borrowed(&raws),
                |text: &String| !text.is_empty(),
                |text: String, _| {
                    decoded.set(decoded.get() + 1);
                    Ok(Message::new(
                        Role::User,
                        vec![Part::text(format!("decoded {text}"))],
                    ))
                },
            )
            .unwrap();
        let list: Shared<Message> = messages.into();
        let facts = memo.remember(out, &list);
        (list, facts, decoded.get())
    }

    #[test]
    fn a_repeated_message_brings_what_stages_learnt_of_it_a_new_one_nothing() {
        let memo = MessageMemo::default();
        let (list, facts, _) = remembered(&memo, &conversation("task", 2));
        let first = facts.of(&list).expect("facts of the decoded list").to_vec();
        assert_eq!(first.len(), 4);
        first[3].pytest_output.set(true).unwrap();

        let (list, facts, decoded) = remembered(&memo, &conversation("task", 3));
        assert_eq!(decoded, 1);
        let next = facts.of(&list).expect("facts of the decoded list");
        assert_eq!(next.len(), 5);
        for (earlier, now) in first.iter().zip(next) {
            assert!(Arc::ptr_eq(earlier, now));
        }
        assert_eq!(next[3].pytest_output.get(), Some(&true));
        assert_eq!(next[4].pytest_output.get(), None);

        // Another task's messages share only the system prompt's facts.
        let (list, facts, _) = remembered(&memo, &conversation("other", 2));
        let other = facts.of(&list).expect("facts of the decoded list");
        assert!(Arc::ptr_eq(&other[0], &first[0]));
        assert!(
            !other[1..]
                .iter()
                .any(|fact| first.iter().any(|f| Arc::ptr_eq(f, fact)))
        );
    }

    fn conversation(task: &str, turns: usize) -> Vec<String> {
        let mut texts = vec!["\"system prompt\"".to_owned(), format!("\"{task}\"")];
        texts.extend((0..turns).map(|turn| format!("\"{task}: turn {turn}\"")));
        texts
    }

    #[test]
    fn a_message_with_more_than_125_opening_brackets_might_nest_too_deep() {
        // Brackets of both kinds, in strings too, spread over blocks of 255 bytes.
        let text = |brackets: usize| {
            let filler = "x".repeat(300);
            let inner: String = (0..brackets)
                .map(|i| if i % 2 == 0 { "{" } else { "[" })
                .collect::<Vec<_>>()
                .join(&filler);
            format!("\"{inner}}}]\"")
        };
        assert!(!Nested::new(&text(125)).might_be_too_deep());
        assert!(Nested::new(&text(126)).might_be_too_deep());
        assert!(!Nested::new("{\"role\":\"user\",\"content\":\"}}}]]]\"}").might_be_too_deep());
    }

    #[test]
    fn a_request_that_repeats_the_last_one_decodes_only_its_new_messages() {
        let memo = MessageMemo::default();
        let first = conversation("fix the bug", 3);
        let (values, decoded) = run(&memo, &first);
        assert_eq!(decoded, 5);
        assert_eq!(values[2], "decoded fix the bug: turn 0");

        let next = conversation("fix the bug", 5);
        let (values, decoded) = run(&memo, &next);
        assert_eq!(decoded, 2, "only the two new turns are decoded");
        let expected: Vec<String> = next
            .iter()
            .map(|t| format!("decoded {}", t.trim_matches('"')))
            .collect();
        assert_eq!(values, expected);
    }

    #[test]
    fn a_message_that_changed_in_place_is_decoded_again() {
        let memo = MessageMemo::default();
        run(&memo, &conversation("task", 4));
        let mut edited = conversation("task", 4);
        edited[3] = "\"a cleared tool result\"".to_owned();
        let (values, decoded) = run(&memo, &edited);
        assert_eq!(decoded, 1);
        assert_eq!(values[3], "decoded a cleared tool result");
        assert_eq!(values[4], "decoded task: turn 2");
    }

    #[test]
    fn two_sessions_of_one_agent_each_continue_their_own_conversation() {
        let memo = MessageMemo::default();
        run(&memo, &conversation("first task", 3));
        run(&memo, &conversation("second task", 3));
        // Both start with the same system prompt; each finds its own by its task.
        assert_eq!(run(&memo, &conversation("first task", 4)).1, 1);
        assert_eq!(run(&memo, &conversation("second task", 4)).1, 1);
        assert_eq!(memo.kept().0, 2, "each replaced its own conversation");
    }

    #[test]
    fn an_error_is_returned_and_nothing_is_remembered() {
        let memo = MessageMemo::default();
        let texts = conversation("task", 2);
        let raws = raws(&texts);
        let out = memo.decode(
            b"",
            &borrowed(&raws),
            |_: &String| true,
            |text: String, index| {
                if index == 2 {
                    Err(Error::invalid_request(format!(
                        "bad message {index}: {text}"
                    )))
                } else {
                    Ok(Message::new(Role::User, vec![Part::text(text)]))
                }
            },
        );
        assert_eq!(
            out.err().unwrap().to_string(),
            "bad message 2: task: turn 0"
        );
        assert_eq!(memo.kept(), (0, 0));
    }

    #[test]
    fn the_memo_keeps_the_requests_own_list_as_decoded() {
        let memo = MessageMemo::default();
        let texts = conversation("task", 2);
        let raws = raws(&texts);
        let decode = |memo: &MessageMemo| {
            memo.decode(
                b"",
                &borrowed(&raws),
                |_: &String| true,
                |text: String, _| Ok(Message::new(Role::User, vec![Part::text(text)])),
            )
            .unwrap()
        };
        let (messages, out) = decode(&memo);
        let mut list: Shared<Message> = messages.into();
        memo.remember(out, &list);
        // A stage changes the request's messages: the memo's stay as they were decoded.
        list[0] = Message::new(Role::User, vec![Part::text("changed")]);
        let (messages, again) = decode(&memo);
        assert_eq!(messages[0].text(), "system prompt");
        assert_eq!(again.round_trips, vec![true; 4]);
    }

    #[test]
    fn the_memo_keeps_eight_conversations_and_sixteen_mib_at_most() {
        let memo = MessageMemo::default();
        for task in 0..12 {
            run(&memo, &conversation(&format!("task {task}"), 1));
        }
        assert_eq!(memo.kept().0, CONVERSATIONS);
        // The oldest went: task 0 is decoded whole again, task 11 is not.
        assert_eq!(run(&memo, &conversation("task 11", 1)).1, 0);
        assert_eq!(run(&memo, &conversation("task 0", 1)).1, 2);

        let big = |task: &str| vec![format!("\"{task}{}\"", "x".repeat(6 << 20))];
        run(&memo, &big("a"));
        run(&memo, &big("b"));
        run(&memo, &big("c"));
        let (count, bytes) = memo.kept();
        assert!(bytes <= BYTES, "{bytes} bytes kept");
        assert!(count < CONVERSATIONS, "older conversations made room");
        // One request larger than the bound is decoded and not kept.
        let before = memo.kept();
        run(&memo, &[format!("\"{}\"", "y".repeat(BYTES))]);
        assert_eq!(memo.kept().0, before.0);
    }
}
