//! Folding an event stream into one response, for clients that did not ask to stream.

use super::{Event, Extensions, FinishReason, Part, Usage};
use crate::Error;

/// A whole response, folded from events.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Response {
    pub id: String,
    pub model: String,
    pub created: Option<u64>,
    /// Output in the order it was produced: text, thinking, tool calls, refusals.
    pub parts: Vec<Part>,
    pub usage: Option<Usage>,
    pub finish: Option<FinishReason>,
    pub stop_sequence: Option<String>,
    /// The start event's extensions, then every extension event, in order.
    pub extensions: Vec<Extensions>,
}

impl Response {
    pub fn text(&self) -> String {
        self.parts.iter().filter_map(Part::as_text).collect()
    }

    pub fn has_tool_calls(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::ToolCall { .. }))
    }
}

/// Accumulates events into a [`Response`]. An error event ends the fold with that error.
#[derive(Debug, Default)]
pub struct ResponseBuilder {
    response: Response,
    /// Position in `parts` of each open tool call, by event index.
    tool_calls: Vec<(u32, usize)>,
}

impl ResponseBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, event: Event) -> Result<(), Error> {
        let response = &mut self.response;
        match event {
            Event::Start {
                id,
                model,
                created,
                extensions,
            } => {
                response.id = id;
                response.model = model;
                response.created = created;
                if !extensions.is_empty() {
                    response.extensions.insert(0, extensions);
                }
            }
            Event::TextDelta(delta) => match response.parts.last_mut() {
                Some(Part::Text { text, .. }) => text.push_str(&delta),
                _ => response.parts.push(Part::text(delta)),
            },
            Event::RefusalDelta(delta) => match response.parts.last_mut() {
                Some(Part::Refusal { text }) => text.push_str(&delta),
                _ => response.parts.push(Part::Refusal { text: delta }),
            },
            Event::ThinkingDelta { text, signature } => match response.parts.last_mut() {
                Some(Part::Thinking {
                    text: so_far,
                    signature: sig,
                    redacted: false,
                    ..
                }) if sig.is_none() => {
                    so_far.push_str(&text);
                    *sig = signature;
                }
                _ => response.parts.push(Part::Thinking {
                    text,
                    signature,
                    redacted: false,
                    extensions: Extensions::default(),
                }),
            },
            Event::RedactedThinking(data) => response.parts.push(Part::Thinking {
                text: data,
                signature: None,
                redacted: true,
                extensions: Extensions::default(),
            }),
            Event::ToolCallStart { index, id, name } => {
                self.tool_calls.push((index, response.parts.len()));
                response.parts.push(Part::ToolCall {
                    id,
                    name,
                    arguments: String::new(),
                    extensions: Extensions::default(),
                });
            }
            Event::ToolCallArgsDelta { index, arguments } => {
                let position = self
                    .tool_calls
                    .iter()
                    .rev()
                    .find(|(i, _)| *i == index)
                    .map(|(_, p)| *p);
                if let Some(Part::ToolCall {
                    arguments: so_far, ..
                }) = position.and_then(|p| response.parts.get_mut(p))
                {
                    so_far.push_str(&arguments);
                }
            }
            Event::ToolCallEnd { .. } => {}
            Event::Usage(usage) => response.usage = Some(usage),
            Event::Finish {
                reason,
                stop_sequence,
            } => {
                response.finish = Some(reason);
                response.stop_sequence = stop_sequence;
            }
            Event::Extension(extensions) => response.extensions.push(extensions),
            Event::Error(error) => return Err(error),
        }
        Ok(())
    }

    pub fn finish(self) -> Response {
        self.response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold(events: Vec<Event>) -> Response {
        let mut builder = ResponseBuilder::new();
        for event in events {
            builder.push(event).unwrap();
        }
        builder.finish()
    }

    #[test]
    fn interleaved_tool_call_fragments_land_in_their_own_call() {
        let response = fold(vec![
            Event::TextDelta("Checking".into()),
            Event::TextDelta(".".into()),
            Event::ToolCallStart {
                index: 0,
                id: "a".into(),
                name: "f".into(),
            },
            Event::ToolCallStart {
                index: 1,
                id: "b".into(),
                name: "g".into(),
            },
            Event::ToolCallArgsDelta {
                index: 1,
                arguments: "{\"y\"".into(),
            },
            Event::ToolCallArgsDelta {
                index: 0,
                arguments: "{}".into(),
            },
            Event::ToolCallArgsDelta {
                index: 1,
                arguments: ":2}".into(),
            },
        ]);
        assert_eq!(response.text(), "Checking.");
        let args: Vec<&str> = response
            .parts
            .iter()
            .filter_map(|p| match p {
                Part::ToolCall { arguments, .. } => Some(arguments.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(args, ["{}", "{\"y\":2}"]);
    }

    #[test]
    fn thinking_then_text_become_two_parts_and_signature_closes_thinking() {
        let response = fold(vec![
            Event::ThinkingDelta {
                text: "hm".into(),
                signature: None,
            },
            Event::ThinkingDelta {
                text: String::new(),
                signature: Some("sig".into()),
            },
            Event::TextDelta("Hi".into()),
        ]);
        assert!(matches!(
            &response.parts[0],
            Part::Thinking { text, signature: Some(s), .. } if text == "hm" && s == "sig"
        ));
        assert_eq!(response.parts.len(), 2);
    }

    #[test]
    fn an_error_event_ends_the_fold() {
        let mut builder = ResponseBuilder::new();
        let error = Error::internal("boom");
        assert!(builder.push(Event::Error(error)).is_err());
    }
}
