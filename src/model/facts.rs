//! [`MessageFacts`]: what a stage learnt about one message of a request, kept with the
//! message so a later request that repeats it is not examined again.
//!
//! A coding agent sends its whole conversation with every request, and a stage that looks
//! at every message (whether a tool result is pytest's output, say) looked at the same
//! ~100 KB again for each turn: it was the costliest part of such a request after decoding
//! it (bench/callgrind.sh, `--history-grows`). The message memo (`protocol::message_memo`)
//! knows which messages a request repeats byte for byte, and hands each repeated message's
//! facts to the request along with the message; a fact is worked out once, by the first
//! stage that needs it, and every later request of the conversation reads it.
//!
//! A fact must be a pure function of the message as it was decoded: the facts belong to the
//! list of messages the decoder made ([`Facts::of`] is `None` once a stage changed it).

use std::fmt;
use std::sync::{Arc, OnceLock};

use super::{Message, Shared};

/// The facts about one message, each worked out on first use.
#[derive(Default)]
pub struct MessageFacts {
    /// Whether a tool result of the message is pytest's output
    /// (`pipeline::pytest_output`).
    pub pytest_output: OnceLock<bool>,
}

/// The facts about a request's messages, one for each in order, as its decoder made them.
#[derive(Clone, Default)]
pub struct Facts {
    messages: Shared<Message>,
    each: Vec<Arc<MessageFacts>>,
}

impl Facts {
    /// `each` for the messages of `messages`, in order.
    pub fn new(messages: &Shared<Message>, each: Vec<Arc<MessageFacts>>) -> Self {
        Self {
            messages: messages.clone(),
            each,
        }
    }

    /// The facts of `messages`, one for each: `None` unless `messages` is still the list
    /// they were made for (a stage that changed a message has its own copy of the list),
    /// or when the decoder kept none (requests below the memo's size).
    pub fn of(&self, messages: &Shared<Message>) -> Option<&[Arc<MessageFacts>]> {
        (Shared::same_list(&self.messages, messages) && self.each.len() == messages.len())
            .then_some(&self.each[..])
    }
}

/// Facts are not part of what a request asks for: two requests are equal whatever they
/// carry.
impl PartialEq for Facts {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl fmt::Debug for Facts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Facts({} messages)", self.each.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Part, Role};

    fn said(text: &str) -> Message {
        Message::new(Role::User, vec![Part::text(text)])
    }

    #[test]
    fn facts_belong_to_their_list_until_it_changes() {
        let mut messages: Shared<Message> = vec![said("hi")].into();
        let facts = Facts::new(&messages, vec![Arc::default()]);
        assert!(facts.of(&messages).is_some());
        // An equal list that is another list is not theirs.
        let equal: Shared<Message> = vec![said("hi")].into();
        assert!(facts.of(&equal).is_none());
        // A stage's change copies the list first: the facts no longer apply.
        messages[0] = said("changed");
        assert!(facts.of(&messages).is_none());
        // Nor do facts kept for none of the messages.
        let list: Shared<Message> = vec![said("hi")].into();
        assert!(Facts::new(&list, Vec::new()).of(&list).is_none());
        assert!(Facts::default().of(&list).is_none());
    }
}
