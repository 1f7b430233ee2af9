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
//! Decoding a message is a pure function of its JSON text (its position only names it in
//! an error, and an error is never remembered), so reusing the value decoded from the same
//! text gives what decoding it again would. A message is decoded at the depth it has in the
//! body, so serde_json's nesting limit refuses what it refused in the body. The texts are
//! compared byte for byte, never by a hash: a request whose messages collided with another
//! client's would be given that client's messages.
//!
//! The memo is one for all clients: a client given the messages decoded for another sent
//! the same bytes. It keeps message texts as the client sent them, before any stage (the
//! prompt redaction among them) saw them, for as long as the conversation is among the
//! latest.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::Error;
use crate::model::{Edits, Message, Shared, Splice};
use crate::protocol::splice::span_in;

/// Requests from this size up have their messages read through a memo. A request with no
/// message seen before costs about half again (finding where each message's text ends,
/// then decoding it; bench/results/fastpath.md, session 26), but a request this large is
/// nearly always an agent's, which repeats its last request and adds a turn. Below it the
/// request path stays as it was.
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

    /// How many of this conversation's messages `body` starts its list with, and where the
    /// body goes on after them, at its next message (the last message is never counted, so
    /// that the rest has one): `None` for none. The body must start with the same head, so its list starts where this one's
    /// did; a message is the same when its bytes are, and is followed by a comma or the
    /// list's end. A body that lists nothing after a comma is left to the parser, which
    /// refuses it.
    fn repeated_in(&self, body: &[u8]) -> Option<(usize, usize)> {
        if self.head.is_empty() || !body.starts_with(&self.head) {
            return None;
        }
        let (mut count, mut at) = (0, self.head.len());
        for text in &self.texts {
            let text = text.text().as_bytes();
            if !body[at..].starts_with(text) {
                break;
            }
            // Only a message followed by another counts: the last one stays in the doc,
            // as the decoders refuse an empty list.
            let after = after_space(body, at + text.len());
            if body.get(after) != Some(&b',') {
                break;
            }
            let next = after_space(body, after + 1);
            if body.get(next) == Some(&b']') {
                return None;
            }
            (count, at) = (count + 1, next);
        }
        (count > 0).then_some((count, at))
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

/// A request's body without the messages a conversation of the memo starts with, when the
/// body starts with them too ([`MessageMemo::known`]): its head, then the rest of the body
/// from the first message it does not repeat (or the list's end). Valid JSON exactly when
/// the body is (whole messages and their commas are left out); parsed instead of the body,
/// the messages the conversation had are neither read nor compared again.
pub(crate) struct Known {
    conversation: Arc<Conversation>,
    /// How many of the conversation's messages the body starts with.
    count: usize,
    doc: Vec<u8>,
    /// How many bytes of the body were left out, after the head.
    left_out: usize,
}

impl Known {
    /// The body without the known messages, to parse.
    pub(crate) fn doc(&self) -> &[u8] {
        &self.doc
    }

    /// `edits` found in [`Known::doc`], moved to where they are in the body.
    pub(crate) fn edits_in_body(&self, edits: Edits) -> Option<Edits> {
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

    /// Where the bytes at `range` of the doc are in the body: the head's where they were,
    /// the rest's further on by what was left out. `None` for a range across the seam (no
    /// member of a request is: the seam is inside its list of messages).
    fn in_body(&self, range: Range<usize>) -> Option<Range<usize>> {
        let head = self.conversation.head.len();
        if range.end <= head {
            Some(range)
        } else if range.start >= head {
            Some(range.start + self.left_out..range.end + self.left_out)
        } else {
            None
        }
    }
}

/// What [`MessageMemo::decode`] learnt of a request's messages besides the messages: what
/// the memo keeps of them once the request holds them ([`MessageMemo::remember`]).
pub(crate) struct Decoded {
    /// Whether the encoder writes each message again as it came.
    round_trips: Vec<bool>,
    texts: Vec<Arc<Nested>>,
    head: Arc<[u8]>,
    /// The conversation this request continues, when it reused two of its messages and at
    /// least half of them.
    continues: Option<Arc<Conversation>>,
}

impl Decoded {
    /// Whether the encoder writes every message again as it came.
    pub(crate) fn all_round_trip(&self) -> bool {
        self.round_trips.iter().all(|&round_trips| round_trips)
    }
}

/// The memo of the latest requests' messages (see the module's comment).
#[derive(Default)]
pub(crate) struct MessageMemo {
    conversations: Mutex<VecDeque<Arc<Conversation>>>,
    /// Messages decoded rather than reused, for the tests.
    #[cfg(test)]
    fresh: std::sync::atomic::AtomicUsize,
    /// Messages left out of a body before it was parsed ([`Known`]), for the tests.
    #[cfg(test)]
    left_out: std::sync::atomic::AtomicUsize,
}

impl MessageMemo {
    /// `body` without the messages it repeats of a conversation it continues, when it
    /// starts as that conversation's last request did: the latest that it repeats two
    /// messages of, else the latest that it repeats the first of. A body that repeats none
    /// is parsed whole, and its messages compared one by one in [`MessageMemo::decode`].
    pub(crate) fn known(&self, body: &[u8]) -> Option<Known> {
        let conversations: Vec<Arc<Conversation>> = self.lock().iter().cloned().collect();
        let mut found: Option<(Arc<Conversation>, usize, usize)> = None;
        for conversation in conversations {
            let Some((count, resume)) = conversation.repeated_in(body) else {
                continue;
            };
            let two = count >= 2;
            if two || found.is_none() {
                found = Some((conversation, count, resume));
            }
            if two {
                break;
            }
        }
        let (conversation, count, resume) = found?;
        let head = conversation.head.len();
        let mut doc = Vec::with_capacity(head + body.len() - resume);
        doc.extend_from_slice(&body[..head]);
        doc.extend_from_slice(&body[resume..]);
        #[cfg(test)]
        self.left_out
            .fetch_add(count, std::sync::atomic::Ordering::Relaxed);
        Some(Known {
            conversation,
            count,
            doc,
            left_out: resume - head,
        })
    }

    /// The messages of a request: those `known` left out of its body (copies of the
    /// conversation's), then those whose JSON texts are `texts`, the list's rest in `doc`
    /// (the body, or the known's doc): a copy of the message decoded from the same text at
    /// the same place in the conversation's last request, else the text read as the wire
    /// type `W`, told whether the encoder writes it again as it came (`round_trips`) and
    /// turned into the model's message by `decode` (with its index, for an error). The
    /// first error is returned as it is.
    pub(crate) fn decode<W: DeserializeOwned>(
        &self,
        known: Option<&Known>,
        doc: &[u8],
        texts: &[&RawValue],
        round_trips: impl Fn(&W) -> bool,
        decode: impl Fn(W, usize) -> Result<Message, Error>,
    ) -> Result<(Vec<Message>, Decoded), Error> {
        let (earlier, skipped) = match known {
            Some(known) => (Some(Arc::clone(&known.conversation)), known.count),
            None => (self.conversation_like(texts), 0),
        };
        let head = match (known, texts.first()) {
            (Some(known), _) => Arc::clone(&known.conversation.head),
            (None, Some(first)) => span_in(doc, first).map_or_else(
                || Arc::from(&[][..]),
                |first| Arc::from(&doc[..first.start]),
            ),
            (None, None) => Arc::from(&[][..]),
        };
        let count = skipped + texts.len();
        let mut messages = Vec::with_capacity(count);
        let mut out = Decoded {
            round_trips: Vec::with_capacity(count),
            texts: Vec::with_capacity(count),
            head,
            continues: None,
        };
        if let Some(earlier) = earlier.as_ref().filter(|_| skipped > 0) {
            messages.extend_from_slice(&earlier.messages[..skipped]);
            out.round_trips
                .extend_from_slice(&earlier.round_trips[..skipped]);
            out.texts.extend(earlier.texts[..skipped].iter().cloned());
        }
        let mut reused = skipped;
        for (index, text) in (skipped..).zip(texts) {
            let text = text.get();
            let seen = earlier.as_ref().filter(|earlier| {
                earlier
                    .texts
                    .get(index)
                    .is_some_and(|seen| seen.text() == text)
            });
            if let Some(earlier) = seen {
                messages.push(earlier.messages[index].clone());
                out.round_trips.push(earlier.round_trips[index]);
                out.texts.push(Arc::clone(&earlier.texts[index]));
                reused += 1;
                continue;
            }
            let nested = Nested::new(text);
            let wire: W = nested.read()?;
            out.round_trips.push(round_trips(&wire));
            messages.push(decode(wire, index)?);
            out.texts.push(Arc::new(nested));
            #[cfg(test)]
            self.fresh
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        // A request that shares only its first message with a conversation (another
        // session of the same agent) is one of its own, and leaves that one be.
        out.continues = earlier.filter(|earlier| reused >= 2 && reused * 2 >= earlier.texts.len());
        Ok((messages, out))
    }

    /// Keeps `messages`, the request's list of the messages `decoded` came with, as its
    /// conversation's newest, in the place of the one it continues (which goes even when
    /// the new one is not kept), and forgets the oldest beyond the bounds. A request that
    /// does not fit in the bounds by itself is not kept. Two requests of one conversation
    /// at once may both be kept; the later one is found first.
    pub(crate) fn remember(&self, decoded: Decoded, messages: &Shared<Message>) {
        let Decoded {
            texts,
            round_trips,
            head,
            continues,
        } = decoded;
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
        let raws = raws(texts);
        let decoded = std::cell::Cell::new(0);
        let (messages, out) = memo
            .decode(
                None,
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
        let values = messages.iter().map(Message::text).collect();
        let list: Shared<Message> = messages.into();
        memo.remember(out, &list);
        (values, decoded.get())
    }

    fn conversation(task: &str, turns: usize) -> Vec<String> {
        let mut texts = vec!["\"system prompt\"".to_owned(), format!("\"{task}\"")];
        texts.extend((0..turns).map(|turn| format!("\"{task}: turn {turn}\"")));
        texts
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
            None,
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
                None,
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
