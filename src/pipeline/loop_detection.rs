//! Loop detection (off by default; `[loop_detection] enabled`, `!/loop-detection(on|off)`
//! per session). Two kinds of loop:
//! - an answer that starts repeating itself: the same stretch of text `threshold` times in
//!   a row (at least `chunk_size` characters long), or a long stretch (at least
//!   `long_pattern_length`) `long_pattern_repetitions` times. The answer is cut there with a
//!   short note and a normal end in the client's protocol, and the upstream call is
//!   cancelled;
//! - a model calling the same tool with the same arguments again and again: the
//!   `tool_call_repetitions`-th identical call in a row since the user last wrote is
//!   replaced by a message telling the model what it is doing; if it still calls it, the
//!   call is replaced again, and the answer says the loop was stopped.
//!
//! Repetition is found with the prefix function (KMP) of the answer's reversed tail: the
//! shortest period of every suffix in one pass over at most `buffer_size` bytes, run every
//! `analysis_interval` bytes of new text.

use super::{EventFilter, Phases, Reads, RequestContext, Stage};
use crate::model::{Event, FinishReason, Part, Request};

/// `[loop_detection]`, checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoopSettings {
    pub enabled: bool,
    pub buffer_size: usize,
    pub max_pattern_length: usize,
    pub analysis_interval: usize,
    pub chunk_size: usize,
    pub threshold: usize,
    pub long_pattern_length: usize,
    pub long_pattern_repetitions: usize,
    pub tool_call_repetitions: usize,
}

impl Default for LoopSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            buffer_size: 16_384,
            max_pattern_length: 8_192,
            analysis_interval: 32,
            chunk_size: 80,
            threshold: 6,
            long_pattern_length: 100,
            long_pattern_repetitions: 3,
            tool_call_repetitions: 4,
        }
    }
}

/// What a loop's end says to the user.
const TEXT_LOOP_NOTE: &str = "\n\n[llmux stopped this answer: it kept repeating the same text.]";

/// A repetition at the end of `text`: the unit's length and how many times it repeats.
pub fn repeated_tail(text: &[u8], settings: &LoopSettings) -> Option<(usize, usize)> {
    let tail: Vec<u8> = text.iter().rev().copied().collect();
    let mut pi = vec![0usize; tail.len()];
    for i in 1..tail.len() {
        let mut k = pi[i - 1];
        while k > 0 && tail[i] != tail[k] {
            k = pi[k - 1];
        }
        if tail[i] == tail[k] {
            k += 1;
        }
        pi[i] = k;
        if k == 0 {
            continue;
        }
        let (len, period) = (i + 1, i + 1 - k);
        // Any multiple of the shortest period is a period too: the unit is the shortest
        // multiple that is long enough to count.
        let unit_of = |min: usize| min.div_ceil(period).max(1) * period;
        let (short, long) = (
            unit_of(settings.chunk_size),
            unit_of(settings.long_pattern_length),
        );
        if short <= settings.max_pattern_length && len >= settings.threshold * short {
            return Some((short, len / short));
        }
        if long <= settings.max_pattern_length && len >= settings.long_pattern_repetitions * long {
            return Some((long, len / long));
        }
    }
    None
}

/// Whether `text` can end in a loop at all, cheaply: a loop's unit is at least
/// `min(chunk_size, long_pattern_length)` bytes and repeats, so the text's last that many
/// bytes occur earlier in it too (one unit back). Prose almost never passes, which spares it
/// the full check (a SIMD substring search instead of a pass over the whole buffer).
fn may_loop(text: &[u8], settings: &LoopSettings) -> bool {
    let width = settings.chunk_size.min(settings.long_pattern_length).max(1);
    if text.len() < 2 * width {
        return false;
    }
    let tail = &text[text.len() - width..];
    memchr::memmem::rfind(&text[..text.len() - 1], tail).is_some()
}

pub struct LoopDetection {
    settings: LoopSettings,
}

impl LoopDetection {
    pub fn new(settings: LoopSettings) -> Self {
        Self { settings }
    }
}

impl Stage for LoopDetection {
    fn name(&self) -> &'static str {
        "loop-detection"
    }

    fn reads(&self) -> Reads {
        Reads::ALL
    }

    fn phases(&self) -> Phases {
        // `!/loop-detection(on)` may turn it on for a session when the config has it off.
        Phases::RESPONSE_FILTER
    }

    fn response_filter(
        &self,
        ctx: &RequestContext,
        request: &Request,
    ) -> Option<Box<dyn EventFilter>> {
        let on = ctx.session.loop_detection.unwrap_or(self.settings.enabled);
        if !on {
            return None;
        }
        Some(Box::new(Watch::new(self.settings, ctx, request)))
    }
}

/// The identical tool call the conversation ends with, since the user last wrote: the
/// call (name, arguments), how many times in a row, and whether llmux already steered.
type Repeated = Option<((String, String), usize, bool)>;

fn trailing_calls(request: &Request) -> Repeated {
    let mut last: Option<(String, String)> = None;
    let mut count = 0;
    let mut steered = false;
    for part in since_user_wrote(request) {
        match part {
            Part::ToolCall {
                name, arguments, ..
            } => {
                let call = (name.clone(), normalized_args(arguments));
                match &last {
                    None => {
                        last = Some(call);
                        count = 1;
                    }
                    Some(same) if *same == call => count += 1,
                    Some(_) => return last.map(|l| (l, count, steered)),
                }
            }
            Part::Text { text, .. } if text.contains(TOOL_LOOP_MARK) => steered = true,
            _ => {}
        }
    }
    last.map(|l| (l, count, steered))
}

use super::tool_match::{normalized_arguments as normalized_args, since_user_wrote};

/// Marks llmux's steering text, so a later request knows it was steered already.
const TOOL_LOOP_MARK: &str = "[llmux: tool-call loop]";

/// Watches one answer.
struct Watch {
    settings: LoopSettings,
    request_id: String,
    trail: super::Trail,
    /// The answer's text so far (its last `buffer_size` bytes).
    text: Vec<u8>,
    unchecked: usize,
    cut: bool,
    repeated_call: Repeated,
    /// This answer's calls: index, name, arguments, held events.
    calls: Vec<(u32, String, String, Vec<Event>)>,
    /// Whether a call was replaced by a message, and whether one went out as a call.
    replaced: bool,
    passed_calls: bool,
}

impl EventFilter for Watch {
    fn on_event(&mut self, event: Event, out: &mut Vec<Event>) {
        if self.cut {
            return;
        }
        match event {
            Event::TextDelta(text) => {
                self.text.extend_from_slice(text.as_bytes());
                self.unchecked += text.len();
                out.push(Event::TextDelta(text));
                if self.unchecked >= self.settings.analysis_interval {
                    self.unchecked = 0;
                    self.check_text(out);
                }
            }
            // Calls of the tool the conversation repeats are held until complete.
            Event::ToolCallStart { index, id, name } if self.repeats_tool(&name) => {
                let start = Event::ToolCallStart {
                    index,
                    id,
                    name: name.clone(),
                };
                self.calls.push((index, name, String::new(), vec![start]));
            }
            Event::ToolCallArgsDelta { index, arguments }
                if self.calls.iter().any(|c| c.0 == index) =>
            {
                if let Some(call) = self.calls.iter_mut().find(|c| c.0 == index) {
                    call.2.push_str(&arguments);
                    call.3.push(Event::ToolCallArgsDelta { index, arguments });
                }
            }
            Event::ToolCallEnd { index } if self.calls.iter().any(|c| c.0 == index) => {
                self.release(index, Event::ToolCallEnd { index }, out);
            }
            Event::Finish {
                reason,
                stop_sequence,
            } => {
                let pending: Vec<u32> = self.calls.iter().map(|c| c.0).collect();
                for index in pending {
                    self.release_without_end(index, out);
                }
                let reason = match reason {
                    FinishReason::ToolUse if self.replaced && !self.passed_calls => {
                        FinishReason::EndTurn
                    }
                    other => other,
                };
                out.push(Event::Finish {
                    reason,
                    stop_sequence,
                });
            }
            other => {
                self.passed_calls |= matches!(other, Event::ToolCallStart { .. });
                out.push(other);
            }
        }
    }

    fn cut(&self) -> bool {
        self.cut
    }
}

#[cfg(test)]
fn has_calls(events: &[Event]) -> bool {
    events
        .iter()
        .any(|e| matches!(e, Event::ToolCallStart { .. }))
}

impl Watch {
    fn new(settings: LoopSettings, ctx: &RequestContext, request: &Request) -> Self {
        Self {
            settings,
            request_id: ctx.request_id.clone(),
            trail: ctx.trail.clone(),
            text: Vec::new(),
            unchecked: 0,
            cut: false,
            repeated_call: trailing_calls(request),
            calls: Vec::new(),
            replaced: false,
            passed_calls: false,
        }
    }

    fn check_text(&mut self, out: &mut Vec<Event>) {
        let keep = self.settings.buffer_size;
        if self.text.len() > keep {
            self.text.drain(..self.text.len() - keep);
        }
        if !may_loop(&self.text, &self.settings) {
            return;
        }
        if let Some((unit, times)) = repeated_tail(&self.text, &self.settings) {
            tracing::warn!(
                request_id = %self.request_id,
                unit_bytes = unit,
                repetitions = times,
                "loop detected: the answer is cut"
            );
            self.trail.intervene(
                "loop-detection",
                format!("answer cut: {unit} bytes repeated {times} times"),
            );
            out.push(Event::TextDelta(TEXT_LOOP_NOTE.to_owned()));
            out.push(Event::Finish {
                reason: FinishReason::EndTurn,
                stop_sequence: None,
            });
            self.cut = true;
        }
    }

    fn repeats_tool(&self, name: &str) -> bool {
        self.repeated_call
            .as_ref()
            .is_some_and(|((tool, _), count, _)| {
                tool == name && count + 1 >= self.settings.tool_call_repetitions
            })
    }

    /// A held call is complete: passed on, or replaced when it repeats the loop.
    fn release(&mut self, index: u32, end: Event, out: &mut Vec<Event>) {
        if !self.release_without_end(index, out) {
            out.push(end);
        }
    }

    /// Returns whether the call was replaced by a message.
    fn release_without_end(&mut self, index: u32, out: &mut Vec<Event>) -> bool {
        let Some(at) = self.calls.iter().position(|c| c.0 == index) else {
            return false;
        };
        let (_, name, arguments, events) = self.calls.remove(at);
        let repeats = self
            .repeated_call
            .as_ref()
            .is_some_and(|((tool, args), _, _)| {
                *tool == name && *args == normalized_args(&arguments)
            });
        if !repeats {
            self.passed_calls = true;
            out.extend(events);
            return false;
        }
        let Some((_, count, steered)) = &self.repeated_call else {
            return false;
        };
        self.replaced = true;
        let times = count + 1;
        tracing::warn!(request_id = %self.request_id, tool = %name, times, steered = *steered, "tool-call loop");
        self.trail.intervene(
            "loop-detection",
            format!("call {times} in a row of `{name}` with the same arguments not passed on"),
        );
        let message = if *steered {
            format!(
                "\n\n{TOOL_LOOP_MARK} This is the {times}th identical call of `{name}` in a row, \
                 after being told. llmux stopped it. Stop calling it; tell the user what you \
                 are stuck on instead."
            )
        } else {
            format!(
                "\n\n{TOOL_LOOP_MARK} You have called `{name}` with the same arguments {times} \
                 times in a row, and got the same result each time. llmux did not run it again. \
                 Try something different, or ask the user."
            )
        };
        out.push(Event::TextDelta(message));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> LoopSettings {
        LoopSettings {
            enabled: true,
            ..LoopSettings::default()
        }
    }

    #[test]
    fn a_unit_repeated_enough_times_is_a_loop_and_prose_is_not() {
        let s = settings();
        let unit = "I will now check the file again to be sure it is right, and then move on. ";
        assert!(unit.len() < 80);
        let long_unit = unit.repeat(2);
        assert_eq!(
            repeated_tail(long_unit.repeat(6).as_bytes(), &s).map(|(u, _)| u),
            Some(long_unit.len())
        );
        // Five times 74 bytes: neither six units of 80+ nor three of 100+.
        assert!(repeated_tail(unit.repeat(5).as_bytes(), &s).is_none());
        // A stretch of 100+ bytes three times is enough.
        let hundred = "The answer is forty-two, as computed above from the inputs given, step by \
            step here. "
            .repeat(2);
        assert!(hundred.len() >= 100);
        assert!(repeated_tail(hundred.repeat(3).as_bytes(), &s).is_some());
        let prose = "Rust's ownership rules make memory safety a compile-time property. \
            Each value has one owner; borrowing lends access without moving it. ";
        assert!(repeated_tail(prose.as_bytes(), &s).is_none());
        // A separator line is not a loop; the same character on and on is.
        assert!(repeated_tail("-".repeat(80).as_bytes(), &s).is_none());
        assert!(repeated_tail("-".repeat(5000).as_bytes(), &s).is_some());
        // A table with rows that differ is not one either.
        let table: String = (0..200)
            .map(|i| format!("| row {i:>3} | value {i:>5} |\n"))
            .collect();
        assert!(repeated_tail(table.as_bytes(), &s).is_none());
    }

    /// Streams `text` through a fresh watch in pieces cut at random places: whether it was cut.
    fn cut_when_streamed(text: &str, rng: &mut fastrand::Rng) -> bool {
        let mut filter = watch(&Request::new("m", vec![]));
        let mut out = Vec::new();
        let mut rest = text;
        while !rest.is_empty() && !filter.cut() {
            let mut at = rng.usize(1..=rest.len().min(200));
            while !rest.is_char_boundary(at) {
                at += 1;
            }
            filter.on_event(Event::TextDelta(rest[..at].to_owned()), &mut out);
            rest = &rest[at..];
        }
        filter.cut()
    }

    #[test]
    fn two_loops_and_a_non_loop_are_told_apart_whatever_the_chunks() {
        // A model stuck re-planning the same step, and one repeating a paragraph.
        let short_loop = "Now I will run the tests again. ".repeat(40);
        let paragraph_loop = "I have updated the handler so that it validates the input \
            before calling the service, and I added a test for the empty case. Let me verify \
            that the change works as expected by reading the file once more.\n\n"
            .repeat(5);
        // Long, structured, and repetitive in shape but never the same text twice.
        let table: String = (0..300)
            .map(|i| {
                format!(
                    "| test_case_{i:03} | passed | {}.{:02} ms |\n",
                    i % 7,
                    i % 100
                )
            })
            .collect();
        let mut rng = fastrand::Rng::with_seed(15);
        for round in 0..100 {
            assert!(
                cut_when_streamed(&short_loop, &mut rng),
                "short loop, round {round}"
            );
            assert!(
                cut_when_streamed(&paragraph_loop, &mut rng),
                "paragraph loop, round {round}"
            );
            assert!(!cut_when_streamed(&table, &mut rng), "table, round {round}");
        }
    }

    #[test]
    fn the_cheap_check_never_turns_away_a_loop_the_full_check_finds() {
        let s = settings();
        let mut rng = fastrand::Rng::with_seed(7);
        let mut loops = 0;
        for _ in 0..400 {
            let word = |rng: &mut fastrand::Rng| -> String {
                (0..rng.usize(1..8)).map(|_| rng.alphabetic()).collect()
            };
            let unit: String = (0..rng.usize(1..40))
                .map(|_| word(&mut rng) + " ")
                .collect();
            let prefix: String = (0..rng.usize(0..30))
                .map(|_| word(&mut rng) + " ")
                .collect();
            let text = prefix + &unit.repeat(rng.usize(1..12));
            let full = repeated_tail(text.as_bytes(), &s);
            loops += usize::from(full.is_some());
            assert!(full.is_none() || may_loop(text.as_bytes(), &s), "{text:?}");
        }
        assert!(loops > 50, "the cases hold loops: {loops}");
        let prose = "Rust's ownership rules make memory safety a compile-time property. \
            Each value has one owner; borrowing lends access without moving it. ";
        assert!(!may_loop(prose.as_bytes(), &s));
    }

    fn watch(request: &Request) -> Watch {
        let ctx = RequestContext::new(crate::model::Protocol::OpenAiChat);
        Watch::new(settings(), &ctx, request)
    }

    #[test]
    fn a_looping_stream_is_cut_whatever_its_chunks_with_a_note_and_an_end() {
        let unit = "Let me re-read the configuration file once more to double check it. ".repeat(2);
        let looping = unit.repeat(20);
        for chunk in [1usize, 3, 7, 50, 333] {
            let mut filter = watch(&Request::new("m", vec![]));
            let mut out = Vec::new();
            let bytes = looping.as_bytes();
            for piece in bytes.chunks(chunk) {
                filter.on_event(
                    Event::TextDelta(String::from_utf8(piece.to_vec()).unwrap()),
                    &mut out,
                );
                if filter.cut() {
                    break;
                }
            }
            assert!(filter.cut(), "chunk {chunk}");
            let streamed: usize = out
                .iter()
                .filter_map(|e| match e {
                    Event::TextDelta(t) if !t.contains("llmux") => Some(t.len()),
                    _ => None,
                })
                .sum();
            assert!(streamed < looping.len() / 2, "cut early: {streamed}");
            assert!(matches!(
                out.last(),
                Some(Event::Finish {
                    reason: FinishReason::EndTurn,
                    ..
                })
            ));
            filter.on_event(Event::TextDelta("more".into()), &mut out);
            assert!(!matches!(out.last(), Some(Event::TextDelta(t)) if t == "more"));
        }
    }

    #[test]
    fn the_repeated_call_is_replaced_after_the_threshold_and_a_new_user_message_resets() {
        use crate::model::{Message, Role};
        let call = |id: &str| {
            Message::new(
                Role::Assistant,
                vec![Part::ToolCall {
                    id: id.into(),
                    name: "Read".into(),
                    arguments: "{\"path\": \"a.rs\"}".into(),
                    extensions: Default::default(),
                }],
            )
        };
        let result = |id: &str| {
            Message::new(
                Role::User,
                vec![Part::ToolResult {
                    call_id: id.into(),
                    content: vec![Part::text("same")],
                    is_error: false,
                    extensions: Default::default(),
                }],
            )
        };
        let mut messages = vec![Message::new(Role::User, vec![Part::text("Fix it.")])];
        for id in ["1", "2", "3"] {
            messages.push(call(id));
            messages.push(result(id));
        }
        let request = Request::new("m", messages.clone());
        assert_eq!(trailing_calls(&request).map(|(_, n, _)| n), Some(3));
        let mut filter = watch(&request);
        let mut out = Vec::new();
        for event in [
            Event::ToolCallStart {
                index: 0,
                id: "4".into(),
                name: "Read".into(),
            },
            Event::ToolCallArgsDelta {
                index: 0,
                arguments: "{\"path\":\"a.rs\"}".into(),
            },
            Event::ToolCallEnd { index: 0 },
            Event::Finish {
                reason: FinishReason::ToolUse,
                stop_sequence: None,
            },
        ] {
            filter.on_event(event, &mut out);
        }
        assert!(!has_calls(&out));
        assert!(matches!(
            out.last(),
            Some(Event::Finish {
                reason: FinishReason::EndTurn,
                ..
            })
        ));
        let said: String = out
            .iter()
            .filter_map(|e| match e {
                Event::TextDelta(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert!(said.contains("4 times in a row"), "{said}");

        // Another call passes; a new user message starts the count again.
        messages.push(Message::new(Role::User, vec![Part::text("Try the tests.")]));
        assert_eq!(trailing_calls(&Request::new("m", messages)), None);
    }
}
