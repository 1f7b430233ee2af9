//! Holding tool calls until they are complete, to replace or rewrite some: what the
//! dangerous-command stage, pytest steering and the tool-call reactor share. From the
//! answer's first call of a tool the stage watches on, the answer is held until its end;
//! each held call is put to a decision, replaced calls become text, rewritten calls go on
//! under their new name and arguments, the remaining calls are numbered from 0 again, and
//! an answer left without calls ends as a normal turn.

use std::sync::Arc;

use super::EventFilter;
use super::tool_match::runs_shell;
use crate::model::{Event, FinishReason};

/// What becomes of a complete call.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The call is not passed on; the client (and the model, next turn) reads this text.
    Replace(String),
    /// The call is passed on under another name and with other JSON arguments.
    Rewrite { name: String, arguments: String },
}

/// Decides a complete call (its tool name and JSON arguments); `None` passes it as it is.
pub type Decide = Arc<dyn Fn(&str, &str) -> Option<Verdict> + Send + Sync>;

/// Which tools' calls are held for a decision (by name); calls of other tools stream on.
pub type Watches = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// The filter; see the module docs.
pub struct ToolScreen {
    watches: Watches,
    decide: Decide,
    held: Option<Vec<Event>>,
    /// Calls passed on before the first watched call (they keep their numbers).
    passed: u32,
}

impl ToolScreen {
    /// Screens the calls of shell tools.
    pub fn shell(decide: Decide) -> Self {
        Self::new(Arc::new(runs_shell), decide)
    }

    pub fn new(watches: Watches, decide: Decide) -> Self {
        Self {
            watches,
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
            (None, Event::ToolCallStart { name, .. }) if (self.watches)(name) => {
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
    /// The held events with replaced calls turned into text, rewritten calls under their new
    /// name and arguments, the remaining calls numbered from 0 again, and the finish reason
    /// `end_turn` when no call is left.
    fn screened(&self, held: Vec<Event>) -> Vec<Event> {
        let calls = complete_calls(&held);
        let verdicts: Vec<(u32, Verdict)> = calls
            .iter()
            .filter_map(|(index, name, arguments)| {
                (self.decide)(name, arguments).map(|verdict| (*index, verdict))
            })
            .collect();
        if verdicts.is_empty() {
            return held;
        }
        let verdict = |index: u32| verdicts.iter().find(|(i, _)| *i == index).map(|v| &v.1);
        let replaced = |index: u32| matches!(verdict(index), Some(Verdict::Replace(_)));
        let kept: Vec<u32> = calls
            .iter()
            .map(|c| c.0)
            .filter(|i| !replaced(*i))
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
                Event::ToolCallStart { index, id, name } => match (renumber(index), verdict(index))
                {
                    (_, Some(Verdict::Replace(text))) => out.push(Event::TextDelta(text.clone())),
                    (Some(new_index), Some(Verdict::Rewrite { name, arguments })) => {
                        out.push(Event::ToolCallStart {
                            index: new_index,
                            id,
                            name: name.clone(),
                        });
                        out.push(Event::ToolCallArgsDelta {
                            index: new_index,
                            arguments: arguments.clone(),
                        });
                    }
                    (Some(index), _) => out.push(Event::ToolCallStart { index, id, name }),
                    (None, _) => {}
                },
                Event::ToolCallArgsDelta { index, arguments } => {
                    if let (Some(new_index), None) = (renumber(index), verdict(index)) {
                        out.push(Event::ToolCallArgsDelta {
                            index: new_index,
                            arguments,
                        });
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

/// The held calls, each as its index, tool name and whole arguments.
fn complete_calls(held: &[Event]) -> Vec<(u32, String, String)> {
    let mut calls: Vec<(u32, String, String)> = Vec::new();
    for event in held {
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
    calls
}
