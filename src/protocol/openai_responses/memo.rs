//! Responses requests read through the message memo (see
//! [`crate::protocol::message_memo`]): Codex CLI sends its whole session with every request,
//! as input items, and each request is the one before with an item or two added.
//!
//! The memo keeps one decoded message per text, so each input item is read alone into a
//! message of its own ([`item_message`]): an assistant-side item (an assistant message, a
//! call, reasoning, an item the model keeps whole) as an assistant message, which
//! [`merged`] joins to the assistant messages beside it, as decoding the whole list does.
//! The memo keeps that list of items; the request gets the merged one, and the facts its
//! stages found for each message made of one item (a tool's output, a user's message) are
//! kept with that item for the conversation's next requests.

use std::sync::Arc;

use serde_json::value::RawValue;

use super::decode::{
    ClientOptions, decoded_tools, echoed_tools, item_message, merged, messages_of,
    request_from_wire,
};
use super::request_pass_through::{self as pass_through, item_alone_round_trips};
use super::types::{Content, InputTexts, ResponsesRequest};
use crate::Error;
use crate::model::{Edits, Facts, Message, MessageFacts, Request, Shared};
use crate::protocol::message_memo::{Decoded, MessageMemo};
use crate::protocol::strict_value::StrictValue;
use crate::protocol::tools_memo::{ReadBlanked, ToolsReading};

/// A request read through `memo`: the items it has seen at the same place in the
/// conversation are copied, the others decoded. `None` for a request with anything wrong:
/// reading it without the memo then finds the error and names its field.
pub(super) fn decode_with_memo(
    body: &[u8],
    memo: &MessageMemo,
) -> Option<(Request, ClientOptions, Option<Edits>)> {
    ReadBlanked::retried(|blank| read_with_memo(body, memo, blank))
}

/// [`decode_with_memo`], with a kept list of tools blanked in the memo's document (the same
/// offsets) when `blank` and one is found.
fn read_with_memo(
    body: &[u8],
    memo: &MessageMemo,
    blank: bool,
) -> ReadBlanked<(Request, ClientOptions, Option<Edits>)> {
    let mut read = memo.read(body, item_round_trips, item_decoded);
    let sent = blank.then(|| memo.tools().sent_again(&read.doc)).flatten();
    if let Some(sent) = &sent {
        sent.blank_in(read.doc.to_mut());
    }
    let Ok(wire) =
        crate::protocol::json_from_bytes::<ResponsesRequest<&RawValue, InputTexts>>(&read.doc)
    else {
        return ReadBlanked::Decoded(None);
    };
    let edits = read.edits_in_body(if pass_through::fields_round_trip(&wire) {
        pass_through::edits(&read.doc, &wire)
    } else {
        None
    });
    let mut reading = ToolsReading::new(sent);
    let echoed = echoed_tools(reading.kept_text(), wire.tools);
    let tools = |text| reading.read(memo.tools(), &read.doc, text, decoded_tools);
    let mut memoized: Option<(Vec<Message>, Vec<usize>, Decoded)> = None;
    let input = |input: Option<InputTexts>| match input {
        Some(InputTexts::Items(texts)) => {
            let (items, decoded) = memo.messages(
                read.known.take(),
                &read.doc,
                &texts,
                item_round_trips,
                item_decoded,
            )?;
            let (messages, made_of) = merged(&items);
            memoized = Some((items, made_of, decoded));
            Ok::<_, Error>(messages)
        }
        // Nothing to remember: a string is one message.
        Some(InputTexts::Text(text)) => messages_of(Some(Content::Text(text))),
        None => Ok(Vec::new()),
    };
    let decoded = request_from_wire(wire, input, tools, echoed);
    if reading.mismatched {
        return ReadBlanked::Mismatched;
    }
    let Ok((mut request, options)) = decoded else {
        return ReadBlanked::Decoded(None);
    };
    // Only a list of items goes as it came (the encoder writes a string as an item).
    let items_round_trip = match memoized {
        Some((items, made_of, mut decoded)) => {
            if reading.blanked() {
                // A list blanked before the items is in the head the conversation keeps.
                decoded.head_from(body);
            }
            let round_trip = decoded.all_round_trip() && pass_through::items_stay_apart(&items);
            let items = Shared::new(items);
            let facts = memo.remember(decoded, &items);
            request.message_facts =
                facts_of_messages(&request.messages, facts.of(&items), &made_of);
            round_trip
        }
        None => false,
    };
    let edits = edits.filter(|_| reading.round_trip && items_round_trip);
    ReadBlanked::Decoded(Some((request, options, edits)))
}

/// Whether the encoder writes `item` back as it came, read alone. Items are read refusing
/// a member given twice, as reading the input as values does (see `strict_value`).
fn item_round_trips(item: &StrictValue) -> bool {
    item_alone_round_trips(&item.0)
}

fn item_decoded(item: StrictValue, index: usize) -> Result<Message, Error> {
    item_message(item.0, index)
}

/// The facts of a request's `messages`, made of items as `made_of` says, from the facts of
/// those items (`None`: the memo kept none): a message of one item is that item, so its
/// facts are the item's, shared with the conversation; one of several items (a run of
/// assistant-side items) has facts of its own.
fn facts_of_messages(
    messages: &Shared<Message>,
    items: Option<&[Arc<MessageFacts>]>,
    made_of: &[usize],
) -> Facts {
    let Some(items) = items else {
        return Facts::default();
    };
    let mut at = 0;
    let each = made_of
        .iter()
        .map(|&count| {
            let facts = match items.get(at) {
                Some(facts) if count == 1 => Arc::clone(facts),
                _ => Arc::default(),
            };
            at += count;
            facts
        })
        .collect();
    Facts::new(messages, each)
}
