//! The same-protocol answer pass-through: when the client and the back-end speak the same
//! protocol and nothing on the way changed the answer, the client gets the provider's own
//! bytes instead of llmux's re-encoding of them.
//!
//! The client's front-end puts a [`VerbatimSlot`] on the request. A back-end whose wire is
//! that protocol, and whose decoder found the body to be one that llmux's own encoder would
//! reproduce, offers the body with the events it decoded from it. After the pipeline,
//! the front-end compares the events the client is about to get with the offered ones:
//! only when they are the same, event for event, does it send the offered bytes. Any stage
//! that changed, dropped, added or re-ordered an event (a filter, a retry, a failover leg to
//! another protocol) makes them differ, and the answer is encoded as before. So the slow
//! path stays the reference, and the pass-through needs no stage to declare anything.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::{Event, Protocol};

/// Where a back-end leaves the provider's whole answer for the client. Shared by every
/// clone of the request it rides on.
#[derive(Clone)]
pub struct VerbatimSlot {
    protocol: Protocol,
    offered: Arc<Mutex<Option<Offer>>>,
}

/// A body and the events decoded from it.
struct Offer {
    body: Bytes,
    events: Vec<Event>,
}

impl VerbatimSlot {
    /// A slot for a client that speaks `protocol`.
    pub fn new(protocol: Protocol) -> Self {
        Self {
            protocol,
            offered: Arc::new(Mutex::new(None)),
        }
    }

    /// The protocol the client reads.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Offers `body`, which decoded to `events`, replacing any earlier offer (an earlier
    /// attempt's). Ignored unless the body is in the client's protocol.
    pub fn offer(&self, protocol: Protocol, body: &Bytes, events: &[Event]) {
        if protocol != self.protocol {
            return;
        }
        if let Ok(mut offered) = self.offered.lock() {
            *offered = Some(Offer {
                body: body.clone(),
                events: events.to_vec(),
            });
        }
    }

    /// The offered body, if the client's answer is exactly the events it decoded to.
    pub fn take_if_same(&self, answer: &[Event]) -> Option<Bytes> {
        let offer = self.offered.lock().ok()?.take()?;
        let same = offer.events.len() == answer.len()
            && offer.events.iter().zip(answer).all(|(a, b)| a.same_as(b));
        same.then_some(offer.body)
    }
}

/// The slot is not part of what a request asks for: two requests are equal whatever their
/// slots hold.
impl PartialEq for VerbatimSlot {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for VerbatimSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerbatimSlot({:?})", self.protocol)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FinishReason;

    fn answer(text: &str) -> Vec<Event> {
        vec![
            Event::TextDelta(text.into()),
            Event::Finish {
                reason: FinishReason::EndTurn,
                stop_sequence: None,
            },
        ]
    }

    #[test]
    fn the_body_goes_out_only_for_the_same_events() {
        let slot = VerbatimSlot::new(Protocol::OpenAiChat);
        let body = Bytes::from_static(b"{\"provider\":1}");
        slot.offer(Protocol::OpenAiChat, &body, &answer("hi"));
        assert_eq!(slot.take_if_same(&answer("hi")), Some(body.clone()));
        assert_eq!(slot.take_if_same(&answer("hi")), None, "taken once");

        slot.offer(Protocol::OpenAiChat, &body, &answer("hi"));
        assert_eq!(slot.take_if_same(&answer("HI")), None, "a changed event");
        slot.offer(Protocol::OpenAiChat, &body, &answer("hi"));
        assert_eq!(
            slot.take_if_same(&answer("hi")[..1]),
            None,
            "a dropped event"
        );
    }

    #[test]
    fn a_body_of_another_protocol_is_not_offered() {
        let slot = VerbatimSlot::new(Protocol::OpenAiChat);
        slot.offer(
            Protocol::Anthropic,
            &Bytes::from_static(b"{}"),
            &answer("hi"),
        );
        assert_eq!(slot.take_if_same(&answer("hi")), None);
    }

    #[test]
    fn a_later_offer_replaces_an_earlier_one() {
        let slot = VerbatimSlot::new(Protocol::OpenAiChat);
        slot.offer(
            Protocol::OpenAiChat,
            &Bytes::from_static(b"1"),
            &answer("one"),
        );
        slot.offer(
            Protocol::OpenAiChat,
            &Bytes::from_static(b"2"),
            &answer("two"),
        );
        assert_eq!(slot.take_if_same(&answer("one")), None);
    }
}
