//! `<think>...</think>` in an answer's text (models served without a reasoning field:
//! DeepSeek-R1 and Qwen distills behind vLLM or Ollama, some OpenRouter routes) becomes
//! reasoning events, which each client protocol shows as its own reasoning (`reasoning_content`,
//! thinking blocks, thought parts). Only an answer whose text starts with `<think>` is read
//! this way, so answers that merely mention the tag are untouched. Tags split across stream
//! chunks are found: the end of a chunk that could begin a tag waits for the next one.
//! `[think_tags] enabled` (on by default).

use super::{EventFilter, Phases, Reads, RequestContext, Stage};
use crate::model::{Event, Request};

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

pub struct ThinkTags {
    enabled: bool,
}

impl ThinkTags {
    pub fn new(enabled: bool) -> Self {
        Self { enabled }
    }
}

impl Stage for ThinkTags {
    fn name(&self) -> &'static str {
        "think-tags"
    }

    fn reads(&self) -> Reads {
        Reads::EVENTS
    }

    fn phases(&self) -> Phases {
        Phases::RESPONSE_FILTER.when(self.enabled)
    }

    fn response_filter(
        &self,
        ctx: &RequestContext,
        _request: &Request,
    ) -> Option<Box<dyn EventFilter>> {
        Some(Box::new(Tags {
            state: State::Start,
            pending: String::new(),
            trail: ctx.trail.clone(),
        }))
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// No text yet: waiting to see whether it opens with `<think>`.
    Start,
    Thinking,
    /// Just after `</think>`: the blank lines before the answer go.
    AfterThought,
    /// After that, or an answer that did not open with `<think>`: text as it is.
    Text,
}

struct Tags {
    state: State,
    /// Text not yet given out (a possible tag, or leading whitespace).
    pending: String,
    /// Where the stage says it read a thought.
    trail: super::Trail,
}

/// The length of the longest end of `text` that begins `tag` (a tag split across chunks).
pub(super) fn partial_tag_at_end(text: &str, tag: &str) -> usize {
    (1..tag.len().min(text.len() + 1))
        .rev()
        .find(|&n| {
            text.is_char_boundary(text.len() - n) && tag.starts_with(&text[text.len() - n..])
        })
        .unwrap_or(0)
}

impl Tags {
    fn push_text(&mut self, text: String, out: &mut Vec<Event>) {
        self.pending.push_str(&text);
        loop {
            match self.state {
                State::Start => {
                    let trimmed = self.pending.trim_start();
                    if trimmed.starts_with(OPEN) {
                        let at = self.pending.len() - trimmed.len() + OPEN.len();
                        self.pending.drain(..at);
                        self.state = State::Thinking;
                        self.trail
                            .intervene("think-tags", "text in <think> tags became reasoning");
                    } else if OPEN.starts_with(trimmed) {
                        return; // Whitespace, or the tag's beginning: wait for more.
                    } else {
                        self.state = State::Text;
                    }
                }
                State::Thinking => match self.pending.find(CLOSE) {
                    Some(at) => {
                        let thought: String = self.pending.drain(..at).collect();
                        self.pending.drain(..CLOSE.len());
                        if !thought.is_empty() {
                            out.push(thinking(thought));
                        }
                        self.state = State::AfterThought;
                    }
                    None => {
                        let keep = partial_tag_at_end(&self.pending, CLOSE);
                        let ready = self.pending.len() - keep;
                        if ready > 0 {
                            let thought: String = self.pending.drain(..ready).collect();
                            out.push(thinking(thought));
                        }
                        return;
                    }
                },
                State::AfterThought => {
                    // The answer usually starts on a new line after the tag.
                    let rest = self.pending.trim_start().to_owned();
                    self.pending = rest;
                    if self.pending.is_empty() {
                        return;
                    }
                    self.state = State::Text;
                }
                State::Text => {
                    if !self.pending.is_empty() {
                        out.push(Event::TextDelta(std::mem::take(&mut self.pending)));
                    }
                    return;
                }
            }
        }
    }
}

fn thinking(text: String) -> Event {
    Event::ThinkingDelta {
        text,
        signature: None,
    }
}

impl EventFilter for Tags {
    fn on_event(&mut self, event: Event, out: &mut Vec<Event>) {
        match event {
            Event::TextDelta(text) if self.state != State::Text || !self.pending.is_empty() => {
                self.push_text(text, out)
            }
            other => {
                // Anything else (a tool call, the finish) ends what was waiting.
                if !matches!(other, Event::Start { .. } | Event::TextDelta(_)) {
                    self.flush(out);
                }
                out.push(other);
            }
        }
    }

    fn on_end(&mut self, out: &mut Vec<Event>) {
        self.flush(out);
    }
}

impl Tags {
    fn flush(&mut self, out: &mut Vec<Event>) {
        if self.pending.is_empty() {
            return;
        }
        let rest = std::mem::take(&mut self.pending);
        match self.state {
            State::Thinking => out.push(thinking(rest)),
            _ => out.push(Event::TextDelta(rest)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&str]) -> (String, String) {
        let mut tags = Tags {
            state: State::Start,
            pending: String::new(),
            trail: super::super::Trail::default(),
        };
        let mut out = Vec::new();
        for chunk in chunks {
            tags.on_event(Event::TextDelta((*chunk).to_owned()), &mut out);
        }
        tags.on_event(
            Event::Finish {
                reason: crate::model::FinishReason::EndTurn,
                stop_sequence: None,
            },
            &mut out,
        );
        let (mut thought, mut text) = (String::new(), String::new());
        for event in out {
            match event {
                Event::ThinkingDelta { text: t, .. } => thought.push_str(&t),
                Event::TextDelta(t) => text.push_str(&t),
                _ => {}
            }
        }
        (thought, text)
    }

    #[test]
    fn think_tags_become_reasoning_whatever_the_chunks() {
        let whole = "<think>The user wants 2+2. That is 4.</think>\n\nIt is 4.";
        for size in 1..=whole.len() {
            let chunks: Vec<&str> = whole
                .as_bytes()
                .chunks(size)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect();
            assert_eq!(
                run(&chunks),
                ("The user wants 2+2. That is 4.".into(), "It is 4.".into()),
                "chunks of {size}"
            );
        }
    }

    #[test]
    fn answers_that_do_not_open_with_the_tag_are_untouched() {
        assert_eq!(
            run(&["Use ", "<think>", " tags like this."]),
            (String::new(), "Use <think> tags like this.".into())
        );
        assert_eq!(run(&["  ", "Hello"]), (String::new(), "  Hello".into()));
        assert_eq!(run(&["<thi", "nk"]), (String::new(), "<think".into()));
        // A thought cut off by the end stays a thought.
        assert_eq!(
            run(&["<think>still thinking"]),
            ("still thinking".into(), String::new())
        );
    }
}
