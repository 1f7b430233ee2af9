//! Anthropic has no response schema, so llmux asks for a JSON answer as a forced call to a
//! tool whose input schema is the requested one ([`JSON_RESPONSE_TOOL`], added by the
//! request encoder). Reading the answer back, the wire turns that call into the text it
//! stands for: its arguments become text, the call disappears, and a turn that ended only to
//! make it ends as a normal turn. The client, which never offered such a tool, gets text
//! whether or not llmux checks the answer against the schema.

use crate::model::{Event, FinishReason};

/// The tool an Anthropic back-end answers a JSON-schema request through.
pub const JSON_RESPONSE_TOOL: &str = "llmux_json_response";

/// Rewrites a response's events as they are decoded.
#[derive(Debug, Default, Clone)]
pub struct JsonToolAsText {
    /// The answer tool's call index, once it started.
    call: Option<u32>,
    /// A call to another tool started: the turn really ended for tools.
    other_calls: bool,
}

impl JsonToolAsText {
    /// Rewrites `events[from..]` in place.
    pub fn rewrite_from(&mut self, events: &mut Vec<Event>, from: usize) {
        // Until a tool call starts, every event stays as it is: no copy of them (an
        // allocation and a move of every streamed event, ~400 instructions each).
        let starts = |event: &Event| matches!(event, Event::ToolCallStart { .. });
        if self.call.is_none() && !events[from..].iter().any(starts) {
            return;
        }
        let tail: Vec<Event> = events.drain(from..).collect();
        events.extend(tail.into_iter().filter_map(|event| self.rewrite(event)));
    }

    fn rewrite(&mut self, event: Event) -> Option<Event> {
        match event {
            Event::ToolCallStart { index, name, .. } if name == JSON_RESPONSE_TOOL => {
                self.call = Some(index);
                None
            }
            start @ Event::ToolCallStart { .. } => {
                self.other_calls = true;
                Some(start)
            }
            Event::ToolCallArgsDelta { index, arguments } if Some(index) == self.call => {
                Some(Event::TextDelta(arguments))
            }
            Event::ToolCallEnd { index } if Some(index) == self.call => None,
            Event::Finish {
                reason: FinishReason::ToolUse,
                stop_sequence,
            } if self.call.is_some() && !self.other_calls => Some(Event::Finish {
                reason: FinishReason::EndTurn,
                stop_sequence,
            }),
            other => Some(other),
        }
    }
}

/// A whole response's events with the answer tool's call turned into text.
pub fn as_text(mut events: Vec<Event>) -> Vec<Event> {
    JsonToolAsText::default().rewrite_from(&mut events, 0);
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(index: u32, name: &str, args: &str) -> Vec<Event> {
        vec![
            Event::ToolCallStart {
                index,
                id: format!("toolu_{index}"),
                name: name.into(),
            },
            Event::ToolCallArgsDelta {
                index,
                arguments: args.into(),
            },
            Event::ToolCallEnd { index },
        ]
    }

    /// Events compare by their debug form (`Event` holds errors, which have no equality).
    fn shown(events: &[Event]) -> String {
        format!("{events:?}")
    }

    fn finish(reason: FinishReason) -> Event {
        Event::Finish {
            reason,
            stop_sequence: None,
        }
    }

    #[test]
    fn the_answer_tool_becomes_text_and_an_end_of_turn() {
        let mut events = call(0, JSON_RESPONSE_TOOL, "{\"city\":");
        events.insert(
            2,
            Event::ToolCallArgsDelta {
                index: 0,
                arguments: "\"Paris\"}".into(),
            },
        );
        events.push(finish(FinishReason::ToolUse));
        assert_eq!(
            shown(&as_text(events)),
            shown(&[
                Event::TextDelta("{\"city\":".into()),
                Event::TextDelta("\"Paris\"}".into()),
                finish(FinishReason::EndTurn),
            ])
        );
    }

    #[test]
    fn other_tool_calls_stay_and_keep_their_finish() {
        let mut events = call(0, "Read", "{}");
        events.extend(call(1, JSON_RESPONSE_TOOL, "{}"));
        events.push(finish(FinishReason::ToolUse));
        let out = as_text(events);
        assert_eq!(out.len(), 5, "{out:?}");
        assert!(matches!(&out[0], Event::ToolCallStart { name, .. } if name == "Read"));
        assert_eq!(
            shown(&out[3..]),
            shown(&[Event::TextDelta("{}".into()), finish(FinishReason::ToolUse)])
        );
    }

    #[test]
    fn a_stream_rewritten_piece_by_piece_gives_the_same_events() {
        let mut whole = call(0, JSON_RESPONSE_TOOL, "{}");
        whole.push(finish(FinishReason::ToolUse));
        let mut rewriter = JsonToolAsText::default();
        let mut out = Vec::new();
        for event in whole.clone() {
            let from = out.len();
            out.push(event);
            rewriter.rewrite_from(&mut out, from);
        }
        assert_eq!(shown(&out), shown(&as_text(whole)));
    }
}
