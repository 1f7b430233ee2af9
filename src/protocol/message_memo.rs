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
//! text gives what decoding it again would. The texts are compared byte for byte, never by
//! a hash: a request whose messages collided with another client's would be given that
//! client's messages.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::Error;
use crate::model::Message;

/// Requests from this size up have their messages read through a memo. Finding where each
/// message's text ends before decoding it costs a third more when no message was seen
/// before; a request this large is nearly always an agent's, which repeats its last request
/// and adds a turn. Below it the request path stays as it was.
pub(crate) const MEMO_FROM: usize = 32 << 10;

/// Conversations remembered at most: an agent, its sub-agents, and a few sessions at once.
const CONVERSATIONS: usize = 8;
/// The messages' JSON text remembered at most, over all conversations (their decoded
/// values take about as much again).
const BYTES: usize = 16 << 20;

/// One message: its JSON text and what it decoded to.
struct Memoized<M> {
    raw: Box<str>,
    value: M,
}

/// The messages of a conversation's latest request, in order.
struct Conversation<M> {
    messages: Vec<Arc<Memoized<M>>>,
    bytes: usize,
}

impl<M> Conversation<M> {
    fn raw(&self, index: usize) -> Option<&str> {
        self.messages.get(index).map(|message| &*message.raw)
    }

    /// Whether `raws` starts as this conversation's request did: its first message (the
    /// system prompt, which every session of one agent shares) and, when there is one, its
    /// second (the task, which sets one session apart from another).
    fn starts_like(&self, raws: &[&RawValue], how_many: usize) -> bool {
        raws.iter()
            .take(how_many)
            .enumerate()
            .all(|(index, raw)| self.raw(index) == Some(raw.get()))
    }
}

/// The memo of the latest requests' messages (see the module's comment).
pub(crate) struct MessageMemo<M> {
    conversations: Mutex<VecDeque<Arc<Conversation<M>>>>,
}

impl<M> Default for MessageMemo<M> {
    fn default() -> Self {
        Self {
            conversations: Mutex::new(VecDeque::new()),
        }
    }
}

impl<M: Clone> MessageMemo<M> {
    /// The values of the messages whose JSON texts are `raws`: a copy of the value
    /// remembered for a message with the same text at the same place in the conversation's
    /// last request, else `decode(index, text)`. The first error is returned as it is, and
    /// nothing is remembered then.
    pub(crate) fn decode<E>(
        &self,
        raws: &[&RawValue],
        mut decode: impl FnMut(usize, &str) -> Result<M, E>,
    ) -> Result<Vec<M>, E> {
        let earlier = self.conversation_like(raws);
        let mut values = Vec::with_capacity(raws.len());
        let mut memoized = Vec::with_capacity(raws.len());
        let (mut decoded, mut bytes) = (0, 0);
        for (index, raw) in raws.iter().enumerate() {
            let text = raw.get();
            bytes += text.len();
            let seen = earlier
                .as_ref()
                .and_then(|earlier| earlier.messages.get(index))
                .filter(|seen| *seen.raw == *text);
            if let Some(seen) = seen {
                values.push(seen.value.clone());
                memoized.push(Arc::clone(seen));
                continue;
            }
            let value = decode(index, text)?;
            decoded += 1;
            memoized.push(Arc::new(Memoized {
                raw: text.into(),
                value: value.clone(),
            }));
            values.push(value);
        }
        let reused = raws.len() - decoded;
        self.remember(
            Conversation {
                messages: memoized,
                bytes,
            },
            earlier.filter(|earlier| reused * 2 >= earlier.messages.len()),
        );
        Ok(values)
    }

    /// The conversation `raws` most likely continues: the latest that starts with the same
    /// two messages, else the latest that starts with the same first one.
    fn conversation_like(&self, raws: &[&RawValue]) -> Option<Arc<Conversation<M>>> {
        let conversations = self.lock();
        [2, 1].into_iter().find_map(|how_many| {
            conversations
                .iter()
                .find(|conversation| conversation.starts_like(raws, how_many))
                .cloned()
        })
    }

    /// Keeps `latest` as the newest conversation, in the place of `continued` (the one it
    /// continues, when it reused at least half of its messages), and forgets the oldest
    /// beyond the bounds. A conversation that does not fit in the bounds by itself is not
    /// kept.
    fn remember(&self, latest: Conversation<M>, continued: Option<Arc<Conversation<M>>>) {
        let mut conversations = self.lock();
        if let Some(continued) = continued {
            conversations.retain(|kept| !Arc::ptr_eq(kept, &continued));
        }
        if latest.bytes > BYTES {
            return;
        }
        conversations.push_front(Arc::new(latest));
        while conversations.len() > CONVERSATIONS
            || conversations.iter().map(|kept| kept.bytes).sum::<usize>() > BYTES
        {
            conversations.pop_back();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Conversation<M>>>> {
        // A panic while holding the lock leaves nothing half-changed that matters: the
        // list is only a memo.
        self.conversations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many conversations are kept, and their messages' bytes.
    #[cfg(test)]
    pub(crate) fn kept(&self) -> (usize, usize) {
        let conversations = self.lock();
        (
            conversations.len(),
            conversations.iter().map(|kept| kept.bytes).sum(),
        )
    }
}

/// A protocol's messages, decoded through its memo: each message it has not seen is read as
/// the wire type `W`, told whether the encoder writes it again as it came (`round_trips`),
/// and turned into the model's by `decode` (with its index, for an error).
pub(crate) fn decode_messages<W: DeserializeOwned>(
    memo: &MessageMemo<(Message, bool)>,
    texts: &[&RawValue],
    round_trips: impl Fn(&W) -> bool,
    decode: impl Fn(W, usize) -> Result<Message, Error>,
) -> Result<Vec<(Message, bool)>, Error> {
    memo.decode(texts, |index, text| {
        let wire: W =
            serde_json::from_str(text).map_err(|err| Error::invalid_request(err.to_string()))?;
        let round_trips = round_trips(&wire);
        Ok((decode(wire, index)?, round_trips))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raws(texts: &[String]) -> Vec<Box<RawValue>> {
        texts
            .iter()
            .map(|text| RawValue::from_string(text.clone()).unwrap())
            .collect()
    }

    fn borrowed(raws: &[Box<RawValue>]) -> Vec<&RawValue> {
        raws.iter().map(|raw| &**raw).collect()
    }

    /// Decodes `texts` through `memo`, counting the messages decoded; the value of a
    /// message is its text.
    fn run(memo: &MessageMemo<String>, texts: &[String]) -> (Vec<String>, usize) {
        let raws = raws(texts);
        let mut decoded = 0;
        let values = memo
            .decode(&borrowed(&raws), |_, text| {
                decoded += 1;
                Ok::<_, String>(format!("decoded {text}"))
            })
            .unwrap();
        (values, decoded)
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
        assert_eq!(values[2], "decoded \"fix the bug: turn 0\"");

        let next = conversation("fix the bug", 5);
        let (values, decoded) = run(&memo, &next);
        assert_eq!(decoded, 2, "only the two new turns are decoded");
        let expected: Vec<String> = next.iter().map(|t| format!("decoded {t}")).collect();
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
        assert_eq!(values[3], "decoded \"a cleared tool result\"");
        assert_eq!(values[4], "decoded \"task: turn 2\"");
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
        let memo: MessageMemo<String> = MessageMemo::default();
        let texts = conversation("task", 2);
        let raws = raws(&texts);
        let out = memo.decode(&borrowed(&raws), |index, text| {
            if index == 2 {
                Err(format!("bad message {index}: {text}"))
            } else {
                Ok(text.to_owned())
            }
        });
        assert_eq!(out.err().unwrap(), "bad message 2: \"task: turn 0\"");
        assert_eq!(memo.kept(), (0, 0));
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
