//! `mock`: answers without any network, deterministically, for trying llmux out and for
//! client tests.
//!
//! It answers `response_text` cut into `chunks` pieces, `chunk_delay_ms` apart. When the
//! request offers function tools and the last message is from the user, it calls the first
//! tool with `{}` instead, so agents can be exercised end to end. Usage counts are
//! estimates (four characters a token).

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use super::{Backend, EventStream};
use crate::Error;
use crate::config::BackendConfig;
use crate::model::{Event, Extensions, FinishReason, Request, Role, Tool, ToolChoice, Usage};

pub struct MockBackend {
    config: BackendConfig,
    counter: AtomicU64,
}

/// The model the mock lists when none is configured.
pub const DEFAULT_MODEL: &str = "mock-model";

impl MockBackend {
    pub fn new(config: BackendConfig) -> Self {
        Self {
            config,
            counter: AtomicU64::new(0),
        }
    }

    fn tool_to_call(request: &Request) -> Option<String> {
        if matches!(request.tool_choice, Some(ToolChoice::None)) {
            return None;
        }
        let last = request.messages.last()?;
        if last.role != Role::User
            || last
                .parts
                .iter()
                .any(|p| matches!(p, crate::model::Part::ToolResult { .. }))
        {
            return None;
        }
        if let Some(ToolChoice::Tool(name)) = &request.tool_choice {
            return Some(name.clone());
        }
        request.tools.iter().find_map(|tool| match tool {
            Tool::Function { name, .. } => Some(name.clone()),
            Tool::Opaque { .. } => None,
        })
    }
}

fn estimate_tokens(chars: usize) -> u64 {
    (chars as u64).div_ceil(4)
}

/// Splits `text` into `n` pieces of about equal length, on character boundaries.
fn split_evenly(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    let n = n.clamp(1, chars.len());
    let size = chars.len().div_ceil(n);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

#[async_trait]
impl Backend for MockBackend {
    fn config(&self) -> &BackendConfig {
        &self.config
    }

    async fn models(&self) -> Result<Vec<String>, Error> {
        Ok(self
            .config
            .models
            .clone()
            .unwrap_or_else(|| vec![DEFAULT_MODEL.to_owned()]))
    }

    async fn send(
        &self,
        request: &Request,
        model: &str,
        _tap: Option<&crate::capture::Tap>,
    ) -> Result<EventStream, Error> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let input_chars: usize = request
            .messages
            .iter()
            .map(|m| m.text().len())
            .chain(
                request
                    .system
                    .iter()
                    .filter_map(|p| p.as_text())
                    .map(str::len),
            )
            .sum();
        let mut events = vec![Event::Start {
            id: format!("chatcmpl-mock-{n}"),
            model: model.to_owned(),
            created: None,
            extensions: Extensions::default(),
        }];
        let (finish, output_chars) = match Self::tool_to_call(request) {
            Some(name) => {
                events.push(Event::ToolCallStart {
                    index: 0,
                    id: format!("call_mock_{n}"),
                    name,
                });
                events.push(Event::ToolCallArgsDelta {
                    index: 0,
                    arguments: "{}".into(),
                });
                events.push(Event::ToolCallEnd { index: 0 });
                (FinishReason::ToolUse, 2)
            }
            None => {
                let text = &self.config.mock.response_text;
                for piece in split_evenly(text, self.config.mock.chunks as usize) {
                    events.push(Event::TextDelta(piece));
                }
                (FinishReason::EndTurn, text.len())
            }
        };
        events.push(Event::Usage(Usage {
            input_tokens: estimate_tokens(input_chars),
            output_tokens: estimate_tokens(output_chars),
            ..Usage::default()
        }));
        events.push(Event::Finish {
            reason: finish,
            stop_sequence: None,
        });

        let delay = self.config.mock.chunk_delay;
        if delay.is_zero() || !request.stream {
            return Ok(Box::pin(futures::stream::iter(events)));
        }
        Ok(Box::pin(async_stream::stream! {
            for event in events {
                if matches!(event, Event::TextDelta(_)) {
                    tokio::time::sleep(delay).await;
                }
                yield event;
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_splits_into_the_requested_number_of_pieces() {
        let pieces = split_evenly("Hello from mock", 4);
        assert_eq!(pieces.len(), 4);
        assert_eq!(pieces.concat(), "Hello from mock");
        assert_eq!(split_evenly("hi", 10).len(), 2);
        assert_eq!(split_evenly("héllo", 5).concat(), "héllo");
    }
}
