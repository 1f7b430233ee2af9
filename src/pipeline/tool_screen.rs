//! Holding tool calls until they are complete, to replace some by a message: what the
//! dangerous-command stage, pytest steering and (later) the tool-call reactor share. From
//! the answer's first call of a shell tool on, the answer is held until its end; each held
//! call is put to a decision, replaced calls become text, the remaining calls are numbered
//! from 0 again, and an answer left without calls ends as a normal turn.

use std::sync::Arc;

use super::EventFilter;
use super::tool_match::runs_shell;
use crate::model::{Event, FinishReason};

/// Decides a complete call (its tool name and JSON arguments): `Some(text)` replaces it by
/// that text.
pub type Decide = Arc<dyn Fn(&str, &str) -> Option<String> + Send + Sync>;

/// The filter; see the module docs.
pub struct ToolScreen {
    decide: Decide,
    held: Option<Vec<Event>>,
    /// Calls passed on before the first shell call (they keep their numbers).
    passed: u32,
}

impl ToolScreen {
    pub fn new(decide: Decide) -> Self {
        Self {
            decide,
            held: None,
            passed: 0,
        }
    }
}

impl EventFilter for ToolScreen {
    fn on_event(&mut self, event: Event, out: &mut Vec<Event>) {
        match (&mut self.held, &event) {
            (Some(held), _) => held.push(event),
            (None, Event::ToolCallStart { name, .. }) if runs_shell(name) => {
                self.held = Some(vec![event]);
            }
            (None, Event::ToolCallStart { .. }) => {
                self.passed += 1;
                out.push(event);
            }
            (None, _) => out.push(event),
        }
    }

    fn on_end(&mut self, out: &mut Vec<Event>) {
        if let Some(held) = self.held.take() {
            out.extend(self.screened(held));
        }
    }
}

impl ToolScreen {
    /// The held events with replaced calls turned into text, the remaining calls numbered
    /// from 0 again, and the finish reason `end_turn` when no call is left.
    fn screened(&self, held: Vec<Event>) -> Vec<Event> {
        let mut calls: Vec<(u32, String, String)> = Vec::new();
        for event in &held {
            match event {
                Event::ToolCallStart { index, name, .. } => {
                    calls.push((*index, name.clone(), String::new()))
                }
                Event::ToolCallArgsDelta { index, arguments } => {
                    if let Some(call) = calls.iter_mut().find(|c| c.0 == *index) {
                        call.2.push_str(arguments);
                    }
                }
                _ => {}
            }
        }
        let replaced: Vec<(u32, String)> = calls
            .iter()
            .filter_map(|(index, name, arguments)| {
                (self.decide)(name, arguments).map(|text| (*index, text))
            })
            .collect();
        if replaced.is_empty() {
            return held;
        }
        let kept: Vec<u32> = calls
            .iter()
            .map(|c| c.0)
            .filter(|i| !replaced.iter().any(|(r, _)| r == i))
            .collect();
        let passed = self.passed;
        let renumber = |index: u32| {
            kept.iter()
                .position(|k| *k == index)
                .map(|p| passed + p as u32)
        };
        let mut out = Vec::with_capacity(held.len());
        for event in held {
            match event {
                Event::ToolCallStart { index, id, name } => match renumber(index) {
                    Some(index) => out.push(Event::ToolCallStart { index, id, name }),
                    None => {
                        if let Some((_, text)) = replaced.iter().find(|(r, _)| *r == index) {
                            out.push(Event::TextDelta(text.clone()));
                        }
                    }
                },
                Event::ToolCallArgsDelta { index, arguments } => {
                    if let Some(index) = renumber(index) {
                        out.push(Event::ToolCallArgsDelta { index, arguments });
                    }
                }
                Event::ToolCallEnd { index } => {
                    if let Some(index) = renumber(index) {
                        out.push(Event::ToolCallEnd { index });
                    }
                }
                Event::Finish {
                    reason: FinishReason::ToolUse,
                    stop_sequence,
                } if kept.is_empty() && passed == 0 => out.push(Event::Finish {
                    reason: FinishReason::EndTurn,
                    stop_sequence,
                }),
                other => out.push(other),
            }
        }
        out
    }
}
