//! Responses streaming, both ways: upstream typed events -> model events, and model events
//! -> a client's typed events.
//!
//! The client side follows the order the official SDK's stream accumulator and Codex CLI
//! rely on (PROTOCOLS.md §1.4, §4.2):
//!
//! ```text
//! response.created, response.in_progress
//! per output item, one after another, each at its own output_index:
//!   response.output_item.added
//!   message:   content_part.added, output_text.delta…, output_text.done, content_part.done
//!   reasoning: reasoning_summary_part.added, reasoning_summary_text.delta…,
//!              reasoning_summary_text.done, reasoning_summary_part.done
//!   function_call: function_call_arguments.delta…, function_call_arguments.done
//!   response.output_item.done            (the complete item: Codex acts on this one)
//! response.completed | response.incomplete   (the full response with usage)
//! ```
//!
//! Every event carries a `sequence_number` rising from 0. There is no `[DONE]`. A failure
//! ends the stream with an `error` event and a `response.failed` whose `response.error`
//! holds the code Codex reads (`rate_limit_exceeded`, `context_length_exceeded`, ...); a
//! stream that just stops is reported the same way, never as a completed response.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::decode::{
    ItemEvents, SUMMARY_SEPARATOR, item_extension, item_fields, opaque_item_extension,
    part_extension, part_fields, response_error, scoped, start_event, summary_break,
    take_top_fields, usage,
};
use super::encode::{
    Layout, Snapshot, item_id, response_id, status, stream_error, usage as wire_usage,
};
use super::types::{FunctionCallItem, ResponseObject, StreamEvent};
use crate::Error;
use crate::model::{Event, FinishReason, Protocol, Usage};
use crate::protocol::openai_chat::stream::unix_now;
use crate::protocol::same_shape::{Keys, SameShape, ShapedDecoder, read_frame};
use crate::protocol::sse::{named_frame, push_json_string, push_u64};
use crate::protocol::tools_out::Encoded;
use serde_json::value::RawValue;

pub use crate::protocol::openai_chat::ChunkError;

const PROTOCOL: Protocol = Protocol::OpenAiResponses;

// ---------------------------------------------------------------------------------------
// Upstream events -> model events

/// Events whose content the decoder takes from other events.
const SILENT: [&str; 2] = [
    "response.content_part.added",
    "response.reasoning_summary_part.done",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Message,
    FunctionCall,
    Reasoning,
    Other,
}

/// What the decoder knows of one upstream output item.
#[derive(Debug, Clone)]
struct UpItem {
    output_index: u32,
    id: String,
    kind: Kind,
    /// Canonical tool-call index of a `function_call`.
    tool_index: u32,
    arguments: String,
    /// Text said so far, per `(list, index)`: list 0 = content, 1 = summary, 2 = reasoning
    /// content. Used to fill in what an upstream only said in a `.done` event.
    texts: Vec<(u8, u32, String)>,
    /// Bytes of thinking text emitted for this reasoning item.
    thought: usize,
    ended: bool,
}

impl UpItem {
    /// This item without the text and arguments it has so far.
    fn without_text(&self) -> Self {
        Self {
            output_index: self.output_index,
            id: self.id.clone(),
            kind: self.kind,
            tool_index: self.tool_index,
            arguments: String::new(),
            texts: Vec::new(),
            thought: self.thought,
            ended: self.ended,
        }
    }

    fn text(&mut self, list: u8, index: u32) -> &mut String {
        let position = match self
            .texts
            .iter()
            .position(|(l, i, _)| *l == list && *i == index)
        {
            Some(position) => position,
            None => {
                self.texts.push((list, index, String::new()));
                self.texts.len() - 1
            }
        };
        &mut self.texts[position].2
    }
}

/// Reads the `data:` payloads of an upstream Responses stream into events.
///
/// The `event:` line is not needed: every payload repeats its `type`. Unknown event types
/// are skipped (new ones appear often); `response.done` is read as `response.completed`;
/// a `[DONE]` line, which some compatible servers add, is ignored.
#[derive(Debug, Default, Clone)]
pub struct EventDecoder {
    started: bool,
    /// Top-level Response fields seen at the start, to send only what changes later.
    top: Map<String, Value>,
    items: Vec<UpItem>,
    whole: ItemEvents,
    terminal: bool,
    /// The last text delta event that repeats the one before around its text and sequence
    /// number, read without parsing it (see `protocol::same_shape`).
    same_shape: SameShape,
    /// Where the text of the last `response.output_text.delta` read in full went (an item
    /// and its content index): a frame of its shape adds its text there too.
    shortcut_text: Option<(usize, u32)>,
}

/// Where a text delta event holds its text and its sequence number.
const SHAPE_KEYS: Keys = Keys {
    text: &["\"delta\":\""],
    thinking: &[],
    arguments: &[],
    // Not read: unknown members of an event are skipped.
    padding: Some(",\"obfuscation\":\""),
    // Read into `StreamEvent::sequence_number` and never looked at.
    counter: Some("\"sequence_number\":"),
};

/// What a text delta event starts with, as OpenAI writes it: only these take the shortcut.
const TEXT_DELTA_START: &str = "{\"type\":\"response.output_text.delta\",";

impl EventDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// True once a terminal event (`response.completed`, `.incomplete`) arrived.
    pub fn is_done(&self) -> bool {
        self.terminal
    }

    /// The first Response snapshot starts the answer; its top-level fields are taken out of
    /// it (a later snapshot's are compared with them at the end).
    fn start(&mut self, response: &mut ResponseObject, out: &mut Vec<Event>) {
        if !self.started {
            self.started = true;
            let top = take_top_fields(response);
            self.top.clone_from(&top);
            out.push(start_event(response, top));
        }
    }

    fn find(&mut self, item_id: Option<&str>, output_index: Option<u32>) -> Option<usize> {
        self.items.iter().rposition(|item| match item_id {
            Some(id) if !id.is_empty() => item.id == id,
            _ => Some(item.output_index) == output_index,
        })
    }

    /// The item a delta belongs to; one a lax server never announced is announced now, so
    /// its finished form later does not say the text again.
    fn find_or_add(
        &mut self,
        item_id: Option<String>,
        output_index: Option<u32>,
        kind: &str,
        out: &mut Vec<Event>,
    ) -> usize {
        if let Some(i) = self.find(item_id.as_deref(), output_index) {
            return i;
        }
        let item = json!({"id": item_id.unwrap_or_default(), "type": kind});
        self.item_added(output_index, item, out);
        self.items.len() - 1
    }

    /// Decodes one SSE `data:` payload, appending events to `out`.
    pub fn push(&mut self, data: &str, out: &mut Vec<Event>) -> Result<(), ChunkError> {
        let data = data.trim();
        if data.is_empty() || data == "[DONE]" {
            return Ok(());
        }
        let shaped = data.starts_with(TEXT_DELTA_START);
        read_frame(self, "", data, out, &SHAPE_KEYS, shaped)
    }

    /// Reads an event in full.
    fn push_whole(&mut self, data: &str, out: &mut Vec<Event>) -> Result<(), ChunkError> {
        let event: StreamEvent = match serde_json::from_str(data) {
            Ok(event) => event,
            Err(e) => {
                // A bare `{"error": {...}}` frame, as Chat-style gateways send, is still
                // the upstream's error, not garbage.
                if let Ok(Value::Object(frame)) = serde_json::from_str::<Value>(data)
                    && let Some(error) = frame.get("error").filter(|e| e.is_object())
                {
                    return Err(response_error(Some(error), "the upstream stream failed"));
                }
                return Err(ChunkError::Garbage(format!(
                    "stream event is not a Responses event ({e}): {}",
                    preview(data)
                )));
            }
        };
        match event.kind.as_str() {
            "response.created" | "response.in_progress" | "response.queued" => {
                // Only the first snapshot is read: the ones after it say what the start did
                // (a Codex response echoes tens of KB of tools and instructions each time).
                if !self.started
                    && let Some(mut response) = parse_response(event.response)?
                {
                    self.start(&mut response, out);
                }
            }
            "response.output_item.added" => {
                if let Some(item) = event.item {
                    self.item_added(event.output_index, item, out);
                }
            }
            "response.output_text.delta" | "response.refusal.delta" => {
                let delta = event.delta.unwrap_or_default();
                let i = self.find_or_add(event.item_id, event.output_index, "message", out);
                let index = event.content_index.unwrap_or(0);
                self.items[i].text(0, index).push_str(&delta);
                self.shortcut_text = Some((i, index));
                if !delta.is_empty() {
                    out.push(if event.kind == "response.output_text.delta" {
                        Event::TextDelta(delta)
                    } else {
                        Event::RefusalDelta(delta)
                    });
                }
            }
            "response.output_text.done" | "response.refusal.done" => {
                let refusal = event.kind == "response.refusal.done";
                let full = if refusal { event.refusal } else { event.text };
                if let (Some(i), Some(full)) = (
                    self.find(event.item_id.as_deref(), event.output_index),
                    full,
                ) {
                    let index = event.content_index.unwrap_or(0);
                    let rest = remainder(self.items[i].text(0, index), &full);
                    if !rest.is_empty() {
                        out.push(if refusal {
                            Event::RefusalDelta(rest)
                        } else {
                            Event::TextDelta(rest)
                        });
                    }
                }
            }
            "response.content_part.done" => {
                if let (Some(i), Some(Value::Object(part))) = (
                    self.find(event.item_id.as_deref(), event.output_index),
                    event.part,
                ) {
                    let index = event.content_index.unwrap_or(0);
                    let refusal = part.get("type").and_then(Value::as_str) == Some("refusal");
                    let key = if refusal { "refusal" } else { "text" };
                    if let Some(full) = part.get(key).and_then(Value::as_str) {
                        let rest = remainder(self.items[i].text(0, index), full);
                        if !rest.is_empty() {
                            out.push(if refusal {
                                Event::RefusalDelta(rest)
                            } else {
                                Event::TextDelta(rest)
                            });
                        }
                    }
                    let output_index = self.items[i].output_index;
                    out.extend(part_extension(output_index, index, part_fields(part)));
                }
            }
            "response.function_call_arguments.delta" => {
                let delta = event.delta.unwrap_or_default();
                if let Some(i) = self.find(event.item_id.as_deref(), event.output_index)
                    && !delta.is_empty()
                {
                    let item = &mut self.items[i];
                    item.arguments.push_str(&delta);
                    out.push(Event::ToolCallArgsDelta {
                        index: item.tool_index,
                        arguments: delta,
                    });
                }
            }
            "response.function_call_arguments.done" => {
                if let (Some(i), Some(full)) = (
                    self.find(event.item_id.as_deref(), event.output_index),
                    event.arguments,
                ) {
                    self.arguments_rest(i, &full, out);
                }
            }
            "response.reasoning_summary_part.added" => {
                if let Some(i) = self.find(event.item_id.as_deref(), event.output_index) {
                    let item = &mut self.items[i];
                    if event.summary_index.unwrap_or(0) > 0 && item.thought > 0 {
                        item.thought += summary_break(item.output_index, item.thought, out);
                    }
                }
            }
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                let delta = event.delta.unwrap_or_default();
                let (list, index) = if event.kind == "response.reasoning_text.delta" {
                    (2, event.content_index.unwrap_or(0))
                } else {
                    (1, event.summary_index.unwrap_or(0))
                };
                let i = self.find_or_add(event.item_id, event.output_index, "reasoning", out);
                let item = &mut self.items[i];
                item.text(list, index).push_str(&delta);
                item.thought += delta.len();
                if !delta.is_empty() {
                    out.push(Event::ThinkingDelta {
                        text: delta,
                        signature: None,
                    });
                }
            }
            "response.reasoning_summary_text.done" | "response.reasoning_text.done" => {
                let (list, index) = if event.kind == "response.reasoning_text.done" {
                    (2, event.content_index.unwrap_or(0))
                } else {
                    (1, event.summary_index.unwrap_or(0))
                };
                if let (Some(i), Some(full)) = (
                    self.find(event.item_id.as_deref(), event.output_index),
                    event.text,
                ) {
                    let item = &mut self.items[i];
                    let rest = remainder(item.text(list, index), &full);
                    if !rest.is_empty() {
                        item.thought += rest.len();
                        out.push(Event::ThinkingDelta {
                            text: rest,
                            signature: None,
                        });
                    }
                }
            }
            "response.output_item.done" => {
                if let Some(item) = event.item {
                    self.item_done(event.output_index, item, out);
                }
            }
            "response.completed" | "response.done" | "response.incomplete" => {
                let response = parse_response(event.response)?.unwrap_or_else(|| {
                    // A terminal event without its response still ends the stream.
                    ResponseObject {
                        id: String::new(),
                        created_at: None,
                        status: Some(if event.kind == "response.incomplete" {
                            "incomplete".into()
                        } else {
                            "completed".into()
                        }),
                        model: String::new(),
                        output: Vec::new(),
                        usage: None,
                        error: None,
                        incomplete_details: None,
                        extra: Map::new(),
                    }
                });
                self.terminal_event(response, out);
            }
            "response.failed" => {
                let response = event
                    .response
                    .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok())
                    .unwrap_or(Value::Null);
                return Err(response_error(
                    response.get("error"),
                    "the upstream response failed",
                ));
            }
            "error" => {
                // `{code, message, param}` at the top (the SDK's shape), or nested.
                let nested = event.error.filter(|e| e.is_object());
                let error =
                    nested.unwrap_or_else(|| json!({"code": event.code, "message": event.message}));
                return Err(response_error(Some(&error), "the upstream stream failed"));
            }
            // Progress of built-in tools, annotations, events newer than this code: only
            // a client of this protocol can use them, so they travel whole to its encoder.
            kind if !SILENT.contains(&kind) && kind.starts_with("response.") => {
                if let Ok(Value::Object(mut raw)) = serde_json::from_str::<Value>(data) {
                    raw.remove("sequence_number");
                    out.push(Event::Extension(scoped("event", raw)));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn item_added(&mut self, output_index: Option<u32>, item: Value, out: &mut Vec<Event>) {
        let Value::Object(obj) = item else { return };
        let output_index = output_index.unwrap_or(self.items.len() as u32);
        let id = obj
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let kind = match obj.get("type").and_then(Value::as_str) {
            Some("message") => Kind::Message,
            Some("function_call") => Kind::FunctionCall,
            Some("reasoning") => Kind::Reasoning,
            _ => Kind::Other,
        };
        let mut up = UpItem {
            output_index,
            id,
            kind,
            tool_index: 0,
            arguments: String::new(),
            texts: Vec::new(),
            thought: 0,
            ended: false,
        };
        match kind {
            Kind::Message => {
                let fields = item_fields(obj, &["role", "content"]);
                out.push(Event::Extension(item_extension(
                    output_index,
                    "message",
                    fields,
                )));
            }
            Kind::Reasoning => {
                // `encrypted_content` is taken from `output_item.done`: here it may be partial.
                let fields = item_fields(obj, &["summary", "content", "encrypted_content"]);
                out.push(Event::Extension(item_extension(
                    output_index,
                    "reasoning",
                    fields,
                )));
            }
            Kind::FunctionCall => {
                let Ok(call) = serde_json::from_value::<FunctionCallItem>(Value::Object(obj))
                else {
                    return;
                };
                up.tool_index = self.whole.tool_calls;
                self.whole.tool_calls += 1;
                out.push(Event::Extension(item_extension(
                    output_index,
                    "function_call",
                    item_fields(call.extra, &[]),
                )));
                out.push(Event::ToolCallStart {
                    index: up.tool_index,
                    id: call.call_id,
                    name: call.name,
                });
                if !call.arguments.is_empty() {
                    out.push(Event::ToolCallArgsDelta {
                        index: up.tool_index,
                        arguments: call.arguments.clone(),
                    });
                    up.arguments = call.arguments;
                }
            }
            // Built-in tool calls and other items travel whole.
            Kind::Other => out.push(opaque_item_extension(
                output_index,
                Value::Object(obj),
                true,
            )),
        }
        self.items.push(up);
    }

    fn arguments_rest(&mut self, i: usize, full: &str, out: &mut Vec<Event>) {
        let item = &mut self.items[i];
        let rest = remainder(&mut item.arguments, full);
        if !rest.is_empty() {
            out.push(Event::ToolCallArgsDelta {
                index: item.tool_index,
                arguments: rest,
            });
        }
    }

    fn item_done(&mut self, output_index: Option<u32>, item: Value, out: &mut Vec<Event>) {
        let id = item.get("id").and_then(Value::as_str).map(str::to_owned);
        let Some(i) = self.find(id.as_deref(), output_index) else {
            // Never announced: take the whole item now.
            let output_index = output_index.unwrap_or(self.items.len() as u32);
            self.whole.push(output_index, item, out);
            self.items.push(UpItem {
                output_index,
                id: id.unwrap_or_default(),
                kind: Kind::Other,
                tool_index: 0,
                arguments: String::new(),
                texts: Vec::new(),
                thought: 0,
                ended: true,
            });
            return;
        };
        if self.items[i].ended {
            return;
        }
        self.items[i].ended = true;
        let Value::Object(obj) = item else { return };
        match self.items[i].kind {
            Kind::Message => {
                // Text an upstream never streamed (it only sent the finished item).
                let parts = obj.get("content").and_then(Value::as_array);
                for (index, part) in parts.into_iter().flatten().enumerate() {
                    let refusal = part.get("type").and_then(Value::as_str) == Some("refusal");
                    let key = if refusal { "refusal" } else { "text" };
                    if let Some(full) = part.get(key).and_then(Value::as_str) {
                        let rest = remainder(self.items[i].text(0, index as u32), full);
                        if !rest.is_empty() {
                            out.push(if refusal {
                                Event::RefusalDelta(rest)
                            } else {
                                Event::TextDelta(rest)
                            });
                        }
                    }
                }
            }
            Kind::FunctionCall => {
                if let Some(full) = obj.get("arguments").and_then(Value::as_str) {
                    self.arguments_rest(i, full, out);
                }
                out.push(Event::ToolCallEnd {
                    index: self.items[i].tool_index,
                });
            }
            Kind::Reasoning => {
                for (list, key) in [(1u8, "summary"), (2, "content")] {
                    let parts = obj.get(key).and_then(Value::as_array);
                    for (index, part) in parts.into_iter().flatten().enumerate() {
                        let Some(full) = part.get("text").and_then(Value::as_str) else {
                            continue;
                        };
                        let item = &mut self.items[i];
                        let rest = remainder(item.text(list, index as u32), full);
                        if !rest.is_empty() {
                            if item.thought > 0 && index > 0 {
                                item.thought += summary_break(item.output_index, item.thought, out);
                            }
                            item.thought += rest.len();
                            out.push(Event::ThinkingDelta {
                                text: rest,
                                signature: None,
                            });
                        }
                    }
                }
                let encrypted = obj
                    .get("encrypted_content")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                // An item with nothing to say still exists (its id may be replayed).
                if encrypted.is_some() || self.items[i].thought == 0 {
                    out.push(Event::ThinkingDelta {
                        text: String::new(),
                        signature: encrypted,
                    });
                }
            }
            Kind::Other => {
                out.push(opaque_item_extension(
                    self.items[i].output_index,
                    Value::Object(obj),
                    false,
                ));
            }
        }
    }

    fn terminal_event(&mut self, mut response: ResponseObject, out: &mut Vec<Event>) {
        self.start(&mut response, out);
        // Some servers put everything in the final response and stream no items.
        if self.items.is_empty() {
            for (i, item) in std::mem::take(&mut response.output).into_iter().enumerate() {
                self.whole.push(i as u32, item, out);
            }
        }
        for item in &mut self.items {
            if item.kind == Kind::FunctionCall && !item.ended {
                item.ended = true;
                out.push(Event::ToolCallEnd {
                    index: item.tool_index,
                });
            }
        }
        let changed: Map<String, Value> = take_top_fields(&mut response)
            .into_iter()
            .filter(|(k, v)| self.top.get(k) != Some(v))
            .collect();
        if !changed.is_empty() {
            out.push(Event::Extension(scoped("top", changed)));
        }
        if let Some(u) = response.usage.take().and_then(usage) {
            out.push(Event::Usage(u));
        }
        let called = self.whole.tool_calls > 0;
        out.push(Event::Finish {
            reason: super::decode::finish_reason(&response, called),
            stop_sequence: None,
        });
        self.terminal = true;
    }

    /// Called when the upstream body ends: a stream without a terminal event was cut off.
    pub fn finish(&mut self) -> Result<(), ChunkError> {
        if self.terminal {
            Ok(())
        } else {
            Err(ChunkError::Truncated)
        }
    }
}

impl ShapedDecoder for EventDecoder {
    fn same_shape(&mut self) -> &mut SameShape {
        &mut self.same_shape
    }

    fn read_whole(
        &mut self,
        _event: &str,
        data: &str,
        out: &mut Vec<Event>,
    ) -> Result<(), ChunkError> {
        self.push_whole(data, out)
    }

    /// The text goes where the frame it repeats put its text: read in full, the frame would
    /// have found the same item (the same `item_id`, `output_index` and `content_index`, and
    /// no frame read in full since), and the `.done` event that ends the text compares with it.
    /// A text delta read in full finds its item and adds to the item's text; it reads
    /// neither the Response's echoed members (`top`: a Codex request's instructions and
    /// tools, tens of KB) nor any item's text or arguments so far, which a whole copy would
    /// repeat for every shape.
    fn copy_for_probe(&self) -> Self {
        Self {
            started: self.started,
            top: Map::new(),
            items: self.items.iter().map(UpItem::without_text).collect(),
            whole: self.whole.clone(),
            terminal: self.terminal,
            same_shape: self.same_shape.clone(),
            shortcut_text: self.shortcut_text,
        }
    }

    fn took_shortcut(&mut self, event: &Event) {
        if let (Event::TextDelta(text), Some((i, index))) = (event, self.shortcut_text)
            && let Some(item) = self.items.get_mut(i)
        {
            item.text(0, index).push_str(text);
        }
    }
}

/// An event's Response object; `None` when absent or `null` (serde reads a `null` member
/// into an `Option` as `None`).
fn parse_response(raw: Option<Box<RawValue>>) -> Result<Option<ResponseObject>, ChunkError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    serde_json::from_str(raw.get())
        .map(Some)
        .map_err(|e| ChunkError::Garbage(format!("the event's response is malformed: {e}")))
}

/// What `full` adds to `so_far` (all of it when they disagree), recording it as said.
fn remainder(so_far: &mut String, full: &str) -> String {
    let rest = match full.strip_prefix(so_far.as_str()) {
        Some(rest) => rest.to_owned(),
        None if so_far.is_empty() => full.to_owned(),
        // The deltas already said something else; do not repeat it.
        None => String::new(),
    };
    so_far.push_str(&rest);
    rest
}

fn preview(data: &str) -> String {
    let mut end = data.len().min(120);
    while !data.is_char_boundary(end) {
        end -= 1;
    }
    data[..end].to_owned()
}

// ---------------------------------------------------------------------------------------
// Model events -> client events

fn summary_list(parts: Vec<String>) -> Value {
    Value::Array(
        parts
            .into_iter()
            .map(|text| json!({"type": "summary_text", "text": text}))
            .collect(),
    )
}

/// The delta events, serialized without building maps on the hot path.
#[derive(Serialize)]
struct Delta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary_index: Option<usize>,
    delta: &'a str,
    /// `output_text.delta` always carries a (here empty) `logprobs` list.
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<[(); 0]>,
}

impl Delta<'_> {
    /// The delta's named frame, written directly: byte for byte what serializing it
    /// through serde (`named_frame`) writes, for a fraction of the cost on every chunk.
    fn frame(&self) -> Bytes {
        fn number_member(buf: &mut BytesMut, name: &[u8], n: u64) {
            buf.put_slice(name);
            push_u64(buf, n);
        }
        let mut buf = BytesMut::with_capacity(
            2 * self.kind.len() + self.item_id.len() + self.delta.len() + 128,
        );
        buf.put_slice(b"event: ");
        buf.put_slice(self.kind.as_bytes());
        buf.put_slice(b"\ndata: {\"type\":");
        push_json_string(&mut buf, self.kind);
        number_member(&mut buf, b",\"sequence_number\":", self.sequence_number);
        buf.put_slice(b",\"item_id\":");
        push_json_string(&mut buf, self.item_id);
        number_member(&mut buf, b",\"output_index\":", self.output_index as u64);
        if let Some(index) = self.content_index {
            number_member(&mut buf, b",\"content_index\":", index as u64);
        }
        if let Some(index) = self.summary_index {
            number_member(&mut buf, b",\"summary_index\":", index as u64);
        }
        buf.put_slice(b",\"delta\":");
        push_json_string(&mut buf, self.delta);
        if self.logprobs.is_some() {
            buf.put_slice(b",\"logprobs\":[]");
        }
        buf.put_slice(b"}\n\n");
        buf.freeze()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PartKind {
    Text,
    Refusal,
}

#[derive(Debug)]
struct OpenPart {
    kind: PartKind,
    text: String,
    fields: Map<String, Value>,
}

impl OpenPart {
    fn value(&self) -> Value {
        let mut obj = Map::new();
        match self.kind {
            PartKind::Text => {
                obj.insert("type".into(), Value::from("output_text"));
                obj.insert("annotations".into(), Value::Array(Vec::new()));
                obj.insert("logprobs".into(), Value::Array(Vec::new()));
                obj.insert("text".into(), Value::from(self.text.as_str()));
            }
            PartKind::Refusal => {
                obj.insert("type".into(), Value::from("refusal"));
                obj.insert("refusal".into(), Value::from(self.text.as_str()));
            }
        }
        obj.extend(self.fields.clone());
        Value::Object(obj)
    }
}

#[derive(Debug)]
enum Open {
    Message {
        output_index: usize,
        id: String,
        fields: Map<String, Value>,
        /// Finished parts, then the open one (last) if `part_open`.
        parts: Vec<OpenPart>,
        part_open: bool,
    },
    Reasoning {
        output_index: usize,
        id: String,
        fields: Map<String, Value>,
        summary: Vec<String>,
        part_open: bool,
        encrypted: Option<String>,
    },
}

impl Open {
    fn id(&self) -> &str {
        match self {
            Open::Message { id, .. } | Open::Reasoning { id, .. } => id,
        }
    }
}

/// A function call. Calls reach the client one after another: a call that starts while
/// another is still streaming waits (its arguments accumulate) until that one is done,
/// because parallel calls from a Chat upstream may interleave their fragments.
#[derive(Debug)]
struct Call {
    index: u32,
    /// Set when the call is announced to the client (`output_item.added`).
    output_index: Option<usize>,
    item_id: String,
    call_id: String,
    name: String,
    arguments: String,
    fields: Map<String, Value>,
    /// The upstream said the call is complete.
    ended: bool,
    /// The client got `output_item.done`.
    closed: bool,
}

impl Call {
    fn live(&self) -> bool {
        self.output_index.is_some() && !self.closed
    }

    fn item(&self, status: &str) -> Value {
        let mut obj = Map::new();
        obj.insert("id".into(), Value::from(self.item_id.as_str()));
        obj.insert("type".into(), Value::from("function_call"));
        obj.extend(self.fields.clone());
        obj.insert("status".into(), Value::from(status));
        obj.insert("arguments".into(), Value::from(self.arguments.as_str()));
        obj.insert("call_id".into(), Value::from(self.call_id.as_str()));
        obj.insert("name".into(), Value::from(self.name.as_str()));
        Value::Object(obj)
    }
}

/// Encodes events as a client's Responses stream (`event:` + `data:` frames).
#[derive(Debug)]
pub struct EventEncoder {
    echo: Map<String, Value>,
    /// The client's tools as text, echoed in the Response objects.
    tools: Option<Arc<str>>,
    sequence: u64,
    started: bool,
    id: String,
    model: String,
    created_at: u64,
    /// The upstream Response's own top-level fields, when it speaks this protocol.
    top: Map<String, Value>,
    /// Output items by output index; `None` while an item is open.
    output: Vec<Option<Value>>,
    open: Option<Open>,
    calls: Vec<Call>,
    /// Item fields (`id`, ...) from a same-protocol upstream, for the next item of its type.
    pending: Option<(String, Map<String, Value>)>,
    usage: Option<Usage>,
    finish: Option<FinishReason>,
    /// A same-protocol item announced but not done yet: `(output_index, id, item)`.
    open_opaque: Option<(usize, String, Value)>,
    /// A same-protocol upstream ended a summary part: the separator delta that follows is
    /// not text of the next part.
    separator: bool,
    closed: bool,
}

impl EventEncoder {
    /// `options` come from the client's request (`decode_request`): the Response objects
    /// in the stream echo its parameters.
    pub fn new(options: super::ClientOptions) -> Self {
        Self {
            echo: options.echo,
            tools: options.tools,
            sequence: 0,
            started: false,
            id: String::new(),
            model: String::new(),
            created_at: 0,
            top: Map::new(),
            output: Vec::new(),
            open: None,
            calls: Vec::new(),
            pending: None,
            usage: None,
            finish: None,
            open_opaque: None,
            separator: false,
            closed: false,
        }
    }

    fn frame(&mut self, kind: &str, fields: Value, out: &mut Vec<Bytes>) {
        let mut obj = Map::new();
        obj.insert("type".into(), Value::from(kind));
        obj.insert("sequence_number".into(), Value::from(self.sequence));
        if let Value::Object(fields) = fields {
            obj.extend(fields);
        }
        self.sequence += 1;
        out.push(named_frame(kind, &obj));
    }

    fn delta(&mut self, delta: Delta<'_>, out: &mut Vec<Bytes>) {
        let delta = Delta {
            sequence_number: self.sequence,
            ..delta
        };
        self.sequence += 1;
        out.push(delta.frame());
    }

    /// A Response object's event (`response.created`, `.completed`, ...): `{"type",
    /// "sequence_number", "response"}`, as [`Self::frame`] writes it, with the Response
    /// object's tools written as their text.
    fn response_frame(&mut self, kind: &str, response: &Encoded, out: &mut Vec<Bytes>) {
        let response = response.to_vec(0);
        let mut buf = BytesMut::with_capacity(kind.len() * 2 + response.len() + 64);
        buf.put_slice(b"event: ");
        buf.put_slice(kind.as_bytes());
        buf.put_slice(b"\ndata: {\"type\":");
        push_json_string(&mut buf, kind);
        buf.put_slice(b",\"sequence_number\":");
        push_u64(&mut buf, self.sequence);
        buf.put_slice(b",\"response\":");
        buf.put_slice(&response);
        buf.put_slice(b"}\n\n");
        self.sequence += 1;
        out.push(buf.freeze());
    }

    fn snapshot(&self, status: &str, reason: Option<&str>, error: Option<Value>) -> Encoded {
        let usage = match status {
            // No usage while running; a finished response always has one.
            "in_progress" => None,
            "failed" => self.usage.as_ref().map(wire_usage),
            _ => Some(wire_usage(self.usage.as_ref().unwrap_or(&Usage::default()))),
        };
        Snapshot {
            id: &self.id,
            created_at: self.created_at,
            model: &self.model,
            status,
            incomplete_reason: reason,
            error,
            output: self.output.iter().flatten().cloned().collect(),
            usage,
            echo: &self.echo,
            tools: self.tools.as_ref(),
            top: &self.top,
        }
        .into_encoded()
    }

    fn start(&mut self, out: &mut Vec<Bytes>) {
        if self.started {
            return;
        }
        self.started = true;
        self.id = response_id(&self.id);
        if self.created_at == 0 {
            self.created_at = unix_now();
        }
        let response = self.snapshot("in_progress", None, None);
        self.response_frame("response.created", &response, out);
        self.response_frame("response.in_progress", &response, out);
    }

    /// Takes the pending same-protocol fields if they are for an item of `kind`.
    fn take_pending(&mut self, kind: &str) -> Map<String, Value> {
        match self.pending.take() {
            Some((k, fields)) if k == kind => fields,
            Some(other) => {
                self.pending = Some(other);
                Map::new()
            }
            None => Map::new(),
        }
    }

    /// An id for the next item: the upstream's when it sent one, else a deterministic one.
    fn new_item(&mut self, kind: &str, prefix: &str) -> (usize, String, Map<String, Value>) {
        let fields = self.take_pending(kind);
        self.allocate(prefix, fields)
    }

    /// Reserves the next output index for an item with `fields` (which may hold its id).
    fn allocate(
        &mut self,
        prefix: &str,
        mut fields: Map<String, Value>,
    ) -> (usize, String, Map<String, Value>) {
        let output_index = self.output.len();
        self.output.push(None);
        let id = match fields.remove("id") {
            Some(Value::String(id)) if !id.is_empty() => id,
            _ => item_id(prefix, &self.id, output_index),
        };
        (output_index, id, fields)
    }

    /// True if the pending fields announce a different item than the open one.
    fn pending_replaces(&self, kind: &str) -> bool {
        match (&self.pending, &self.open) {
            (Some((k, fields)), Some(open)) if k == kind => fields
                .get("id")
                .and_then(Value::as_str)
                .is_some_and(|id| id != open.id()),
            _ => false,
        }
    }

    fn item_status(&self) -> &'static str {
        match status(self.finish.as_ref()).0 {
            "incomplete" => "incomplete",
            _ => "completed",
        }
    }

    fn ensure_message(&mut self, out: &mut Vec<Bytes>) {
        if matches!(self.open, Some(Open::Message { .. })) && !self.pending_replaces("message") {
            return;
        }
        self.close_open(out);
        self.end_calls(out);
        let (output_index, id, fields) = self.new_item("message", "msg");
        let mut item = Map::new();
        item.insert("id".into(), Value::from(id.as_str()));
        item.insert("type".into(), Value::from("message"));
        item.extend(fields.clone());
        item.insert("status".into(), Value::from("in_progress"));
        item.insert("content".into(), Value::Array(Vec::new()));
        item.insert("role".into(), Value::from("assistant"));
        self.frame(
            "response.output_item.added",
            json!({"output_index": output_index, "item": item}),
            out,
        );
        self.open = Some(Open::Message {
            output_index,
            id,
            fields,
            parts: Vec::new(),
            part_open: false,
        });
    }

    fn text(&mut self, kind: PartKind, text: &str, out: &mut Vec<Bytes>) {
        if text.is_empty() {
            return;
        }
        self.start(out);
        self.ensure_message(out);
        let same = matches!(
            &self.open,
            Some(Open::Message { parts, part_open: true, .. })
                if parts.last().is_some_and(|p| p.kind == kind)
        );
        if !same {
            self.close_part(out);
            let Some(Open::Message {
                output_index,
                id,
                parts,
                part_open,
                ..
            }) = self.open.as_mut()
            else {
                return;
            };
            let part = OpenPart {
                kind,
                text: String::new(),
                fields: Map::new(),
            };
            let added = json!({
                "item_id": id.clone(),
                "output_index": *output_index,
                "content_index": parts.len(),
                "part": part.value(),
            });
            parts.push(part);
            *part_open = true;
            self.frame("response.content_part.added", added, out);
        }
        let Some(Open::Message {
            output_index,
            id,
            parts,
            ..
        }) = self.open.as_mut()
        else {
            return;
        };
        let content_index = parts.len() - 1;
        if let Some(part) = parts.last_mut() {
            part.text.push_str(text);
        }
        // Written here rather than by `Self::delta`, which would need the item's id copied
        // out of `self.open` for every delta.
        let frame = Delta {
            kind: match kind {
                PartKind::Text => "response.output_text.delta",
                PartKind::Refusal => "response.refusal.delta",
            },
            sequence_number: self.sequence,
            item_id: id,
            output_index: *output_index,
            content_index: Some(content_index),
            summary_index: None,
            delta: text,
            logprobs: (kind == PartKind::Text).then_some([]),
        }
        .frame();
        self.sequence += 1;
        out.push(frame);
    }

    fn close_part(&mut self, out: &mut Vec<Bytes>) {
        let Some(Open::Message {
            output_index,
            id,
            parts,
            part_open,
            ..
        }) = self.open.as_mut()
        else {
            return;
        };
        if !*part_open {
            return;
        }
        *part_open = false;
        let Some(part) = parts.last() else { return };
        let content_index = parts.len() - 1;
        let value = part.value();
        let (done_kind, done) = match part.kind {
            PartKind::Text => (
                "response.output_text.done",
                json!({
                    "item_id": id.clone(),
                    "output_index": *output_index,
                    "content_index": content_index,
                    "text": part.text,
                    "logprobs": value.get("logprobs").cloned().unwrap_or(json!([])),
                }),
            ),
            PartKind::Refusal => (
                "response.refusal.done",
                json!({
                    "item_id": id.clone(),
                    "output_index": *output_index,
                    "content_index": content_index,
                    "refusal": part.text,
                }),
            ),
        };
        let part_done = json!({
            "item_id": id.clone(),
            "output_index": *output_index,
            "content_index": content_index,
            "part": value,
        });
        self.frame(done_kind, done, out);
        self.frame("response.content_part.done", part_done, out);
    }

    fn thinking(&mut self, text: &str, signature: Option<String>, out: &mut Vec<Bytes>) {
        self.start(out);
        if std::mem::take(&mut self.separator) && text == SUMMARY_SEPARATOR && signature.is_none() {
            return;
        }
        let continues = matches!(
            &self.open,
            Some(Open::Reasoning {
                encrypted: None,
                ..
            })
        ) && !self.pending_replaces("reasoning");
        if !continues {
            self.close_open(out);
            self.end_calls(out);
            let (output_index, id, fields) = self.new_item("reasoning", "rs");
            let mut item = Map::new();
            item.insert("id".into(), Value::from(id.as_str()));
            item.insert("type".into(), Value::from("reasoning"));
            item.extend(fields.clone());
            item.insert("summary".into(), Value::Array(Vec::new()));
            self.frame(
                "response.output_item.added",
                json!({"output_index": output_index, "item": item}),
                out,
            );
            self.open = Some(Open::Reasoning {
                output_index,
                id,
                fields,
                summary: Vec::new(),
                part_open: false,
                encrypted: None,
            });
        }
        if !text.is_empty() {
            let (id, output_index, summary_index, opened) = match self.open.as_mut() {
                Some(Open::Reasoning {
                    output_index,
                    id,
                    summary,
                    part_open,
                    ..
                }) => {
                    let opened = !*part_open;
                    if opened {
                        *part_open = true;
                        summary.push(String::new());
                    }
                    if let Some(last) = summary.last_mut() {
                        last.push_str(text);
                    }
                    (id.clone(), *output_index, summary.len() - 1, opened)
                }
                _ => return,
            };
            if opened {
                let added = json!({
                    "item_id": id.as_str(),
                    "output_index": output_index,
                    "summary_index": summary_index,
                    "part": {"type": "summary_text", "text": ""},
                });
                self.frame("response.reasoning_summary_part.added", added, out);
            }
            self.summary_delta(&id, output_index, summary_index, text, out);
        }
        if let Some(signature) = signature
            && let Some(Open::Reasoning { encrypted, .. }) = self.open.as_mut()
        {
            *encrypted = Some(signature);
        }
    }

    fn summary_delta(
        &mut self,
        id: &str,
        output_index: usize,
        summary_index: usize,
        text: &str,
        out: &mut Vec<Bytes>,
    ) {
        self.delta(
            Delta {
                kind: "response.reasoning_summary_text.delta",
                sequence_number: 0,
                item_id: id,
                output_index,
                content_index: None,
                summary_index: Some(summary_index),
                delta: text,
                logprobs: None,
            },
            out,
        );
    }

    /// Closes the open message or reasoning item with its `.done` events.
    /// Closes the open summary part of the open reasoning item.
    fn close_summary_part(&mut self, out: &mut Vec<Bytes>) {
        let Some(Open::Reasoning {
            output_index,
            id,
            summary,
            part_open,
            ..
        }) = self.open.as_mut()
        else {
            return;
        };
        if !std::mem::take(part_open) {
            return;
        }
        let Some(text) = summary.last() else { return };
        let index = summary.len() - 1;
        let text_done = json!({
            "item_id": id.as_str(),
            "output_index": *output_index,
            "summary_index": index,
            "text": text,
        });
        let part_done = json!({
            "item_id": id.as_str(),
            "output_index": *output_index,
            "summary_index": index,
            "part": {"type": "summary_text", "text": text},
        });
        self.frame("response.reasoning_summary_text.done", text_done, out);
        self.frame("response.reasoning_summary_part.done", part_done, out);
    }

    /// Closes the open message or reasoning item with its `.done` events.
    fn close_open(&mut self, out: &mut Vec<Bytes>) {
        self.close_part(out);
        self.close_summary_part(out);
        self.separator = false;
        let status = self.item_status();
        let Some(open) = self.open.take() else { return };
        match open {
            Open::Message {
                output_index,
                id,
                fields,
                parts,
                ..
            } => {
                let mut item = Map::new();
                item.insert("id".into(), Value::from(id));
                item.insert("type".into(), Value::from("message"));
                item.extend(fields);
                item.insert("status".into(), Value::from(status));
                item.insert(
                    "content".into(),
                    Value::Array(parts.iter().map(OpenPart::value).collect()),
                );
                item.insert("role".into(), Value::from("assistant"));
                self.item_done(output_index, Value::Object(item), out);
            }
            Open::Reasoning {
                output_index,
                id,
                fields,
                summary,
                encrypted,
                ..
            } => {
                let mut item = Map::new();
                item.insert("id".into(), Value::from(id));
                item.insert("type".into(), Value::from("reasoning"));
                item.extend(fields);
                item.insert("summary".into(), summary_list(summary));
                if let Some(encrypted) = encrypted {
                    item.insert("encrypted_content".into(), Value::from(encrypted));
                }
                self.item_done(output_index, Value::Object(item), out);
            }
        }
    }

    fn item_done(&mut self, output_index: usize, item: Value, out: &mut Vec<Bytes>) {
        self.frame(
            "response.output_item.done",
            json!({"output_index": output_index, "item": item.clone()}),
            out,
        );
        if let Some(slot) = self.output.get_mut(output_index) {
            *slot = Some(item);
        }
    }

    fn close_call(&mut self, position: usize, out: &mut Vec<Bytes>) {
        let status = self.item_status();
        let call = &mut self.calls[position];
        let Some(output_index) = call.output_index.filter(|_| !call.closed) else {
            return;
        };
        call.closed = true;
        let done = json!({
            "item_id": call.item_id,
            "output_index": output_index,
            "arguments": call.arguments,
            "name": call.name,
        });
        let item = call.item(status);
        self.frame("response.function_call_arguments.done", done, out);
        self.item_done(output_index, item, out);
    }

    /// Announces waiting calls while none is streaming; a call already complete is sent
    /// whole at once.
    fn pump_calls(&mut self, out: &mut Vec<Bytes>) {
        while !self.calls.iter().any(Call::live) {
            let Some(position) = self.calls.iter().position(|c| c.output_index.is_none()) else {
                return;
            };
            let fields = std::mem::take(&mut self.calls[position].fields);
            let (output_index, item_id, fields) = self.allocate("fc", fields);
            let call = &mut self.calls[position];
            call.output_index = Some(output_index);
            call.item_id = item_id;
            call.fields = fields;
            // Announced empty, like every call; what accumulated follows as one delta.
            let mut item = call.item("in_progress");
            item["arguments"] = Value::from("");
            let (item_id, arguments) = (call.item_id.clone(), call.arguments.clone());
            self.frame(
                "response.output_item.added",
                json!({"output_index": output_index, "item": item}),
                out,
            );
            if !arguments.is_empty() {
                self.arguments_delta(&item_id, output_index, &arguments, out);
            }
            if self.calls[position].ended {
                self.close_call(position, out);
            }
        }
    }

    fn arguments_delta(
        &mut self,
        item_id: &str,
        output_index: usize,
        arguments: &str,
        out: &mut Vec<Bytes>,
    ) {
        self.delta(
            Delta {
                kind: "response.function_call_arguments.delta",
                sequence_number: 0,
                item_id,
                output_index,
                content_index: None,
                summary_index: None,
                delta: arguments,
                logprobs: None,
            },
            out,
        );
    }

    /// Ends every call: the one streaming, then the waiting ones, whole. Items come one
    /// after another, so a new item after calls means the calls are complete (a Chat
    /// upstream only says so at its finish reason).
    fn end_calls(&mut self, out: &mut Vec<Bytes>) {
        if self.calls.iter().all(|c| c.closed) {
            return;
        }
        for call in &mut self.calls {
            call.ended = true;
        }
        if let Some(position) = self.calls.iter().position(Call::live) {
            self.close_call(position, out);
        }
        self.pump_calls(out);
    }

    fn close_all(&mut self, out: &mut Vec<Bytes>) {
        self.close_open(out);
        // An item the upstream announced and never finished ends as it was announced.
        if let Some((output_index, _, item)) = self.open_opaque.take() {
            self.item_done(output_index, item, out);
        }
        self.end_calls(out);
    }

    /// Encodes one event into zero or more frames.
    pub fn push(&mut self, event: Event, out: &mut Vec<Bytes>) {
        if self.closed {
            return;
        }
        match event {
            Event::Start {
                id,
                model,
                created,
                extensions,
            } => {
                if self.started {
                    return;
                }
                self.id = id;
                self.model = model;
                self.created_at = created.unwrap_or_else(unix_now);
                let mut layout = Layout::default();
                layout.read(&extensions);
                self.top = layout.top;
                self.start(out);
            }
            Event::TextDelta(text) => self.text(PartKind::Text, &text, out),
            Event::RefusalDelta(text) => self.text(PartKind::Refusal, &text, out),
            Event::ThinkingDelta { text, signature } => self.thinking(&text, signature, out),
            Event::RedactedThinking(data) => {
                self.start(out);
                self.close_open(out);
                self.end_calls(out);
                let (output_index, id, fields) = self.new_item("reasoning", "rs");
                let mut item = Map::new();
                item.insert("id".into(), Value::from(id));
                item.insert("type".into(), Value::from("reasoning"));
                item.extend(fields);
                item.insert("summary".into(), Value::Array(Vec::new()));
                item.insert("encrypted_content".into(), Value::from(data));
                self.frame(
                    "response.output_item.added",
                    json!({"output_index": output_index, "item": item.clone()}),
                    out,
                );
                self.item_done(output_index, Value::Object(item), out);
            }
            Event::ToolCallStart { index, id, name } => {
                if self.calls.iter().any(|c| c.index == index && !c.ended) {
                    return;
                }
                self.start(out);
                self.close_open(out);
                let fields = self.take_pending("function_call");
                self.calls.push(Call {
                    index,
                    output_index: None,
                    item_id: String::new(),
                    call_id: id,
                    name,
                    arguments: String::new(),
                    fields,
                    ended: false,
                    closed: false,
                });
                self.pump_calls(out);
            }
            Event::ToolCallArgsDelta { index, arguments } => {
                let Some(call) = self
                    .calls
                    .iter_mut()
                    .rev()
                    .find(|c| c.index == index && !c.ended)
                else {
                    return;
                };
                call.arguments.push_str(&arguments);
                if let (true, Some(output_index)) = (call.live(), call.output_index) {
                    let item_id = call.item_id.clone();
                    self.arguments_delta(&item_id, output_index, &arguments, out);
                }
            }
            Event::ToolCallEnd { index } => {
                if let Some(position) = self
                    .calls
                    .iter()
                    .rposition(|c| c.index == index && !c.ended)
                {
                    self.calls[position].ended = true;
                    self.close_call(position, out);
                    self.pump_calls(out);
                }
            }
            Event::Usage(usage) => self.usage = Some(usage),
            Event::Finish { reason, .. } => {
                self.start(out);
                self.finish = Some(reason);
                self.close_all(out);
            }
            Event::Extension(extensions) => self.extension(&extensions, out),
            Event::Error(error) => self.fail(&error, out),
        }
    }

    fn extension(&mut self, extensions: &crate::model::Extensions, out: &mut Vec<Bytes>) {
        let Some(fields) = extensions.for_protocol(PROTOCOL) else {
            return;
        };
        for (scope, value) in fields {
            let Value::Object(value) = value else {
                continue;
            };
            match scope.as_str() {
                "top" => self.top.extend(value.clone()),
                "item" => {
                    let mut fields = value.clone();
                    fields.remove("output_index");
                    let kind = match fields.remove("type") {
                        Some(Value::String(kind)) => kind,
                        _ => continue,
                    };
                    self.pending = Some((kind, fields));
                }
                "part" => {
                    if let Some(Open::Message {
                        parts,
                        part_open: true,
                        ..
                    }) = self.open.as_mut()
                        && let Some(part) = parts.last_mut()
                    {
                        let mut fields = value.clone();
                        fields.remove("output_index");
                        fields.remove("content_index");
                        part.fields.extend(fields);
                    }
                }
                "summary_part" => {
                    if matches!(
                        self.open,
                        Some(Open::Reasoning {
                            part_open: true,
                            ..
                        })
                    ) {
                        self.close_summary_part(out);
                        self.separator = true;
                    }
                }
                "opaque_item" => {
                    if let Some(item) = value.get("item") {
                        let added = value.get("added") == Some(&Value::Bool(true));
                        self.opaque_item(item, added, out);
                    }
                }
                "event" => self.forward(value.clone(), out),
                _ => {}
            }
        }
    }

    /// An upstream event of this protocol the model has no shape for, re-sent in this
    /// stream's numbering. One about an item this stream does not have is dropped.
    fn forward(&mut self, mut event: Map<String, Value>, out: &mut Vec<Bytes>) {
        let Some(kind) = event.get("type").and_then(Value::as_str).map(str::to_owned) else {
            return;
        };
        self.start(out);
        if let Some(id) = event.get("item_id").and_then(Value::as_str) {
            let Some(output_index) = self.index_of_item(id) else {
                return;
            };
            if event.contains_key("output_index") {
                event.insert("output_index".into(), Value::from(output_index));
            }
        } else if event.contains_key("output_index") {
            return;
        }
        event.remove("type");
        self.frame(&kind, Value::Object(event), out);
    }

    /// The output index of the item with this id, open or done.
    fn index_of_item(&self, id: &str) -> Option<usize> {
        if let Some(open) = &self.open
            && open.id() == id
        {
            return Some(match open {
                Open::Message { output_index, .. } | Open::Reasoning { output_index, .. } => {
                    *output_index
                }
            });
        }
        if let Some((index, open_id, _)) = &self.open_opaque
            && open_id == id
        {
            return Some(*index);
        }
        if let Some(call) = self.calls.iter().find(|c| c.item_id == id) {
            return call.output_index;
        }
        self.output.iter().position(|item| {
            item.as_ref()
                .and_then(|i| i.get("id"))
                .and_then(Value::as_str)
                == Some(id)
        })
    }

    /// An item the model has no shape for, from an upstream of this protocol: announced
    /// when it starts, finished when it is done.
    fn opaque_item(&mut self, item: &Value, added: bool, out: &mut Vec<Bytes>) {
        self.start(out);
        let id = item.get("id").and_then(Value::as_str).unwrap_or_default();
        let waiting = match &self.open_opaque {
            Some((index, open_id, _)) if open_id == id => Some(*index),
            _ => None,
        };
        let output_index = match waiting {
            Some(index) => index,
            None => {
                self.close_open(out);
                self.end_calls(out);
                let output_index = self.output.len();
                self.output.push(None);
                let mut announced = item.clone();
                if !added && let Some(status) = announced.get_mut("status") {
                    *status = Value::from("in_progress");
                }
                self.frame(
                    "response.output_item.added",
                    json!({"output_index": output_index, "item": announced}),
                    out,
                );
                output_index
            }
        };
        if added {
            self.open_opaque = Some((output_index, id.to_owned(), item.clone()));
        } else {
            self.open_opaque = None;
            self.item_done(output_index, item.clone(), out);
        }
    }

    /// Ends the stream with an `error` event and `response.failed`; nothing follows.
    fn fail(&mut self, error: &Error, out: &mut Vec<Bytes>) {
        // The SDK's stream helper insists on `response.created` before anything else.
        self.start(out);
        self.closed = true;
        let (code, message) = stream_error(error);
        self.frame(
            "error",
            json!({"code": code, "message": message, "param": error.param()}),
            out,
        );
        let response = self.snapshot(
            "failed",
            None,
            Some(json!({"code": code, "message": message})),
        );
        self.response_frame("response.failed", &response, out);
    }

    /// Ends the stream with its terminal event: `response.completed` (or
    /// `response.incomplete`) with the whole output and usage. A stream that never
    /// finished ends with `response.failed` instead, so a cut-off answer never looks whole.
    pub fn finish(&mut self, out: &mut Vec<Bytes>) {
        if self.closed {
            return;
        }
        let Some(reason) = self.finish.clone() else {
            let error = Error::internal("the response ended without a finish reason");
            self.fail(&error, out);
            return;
        };
        self.closed = true;
        self.close_all(out);
        let (status, incomplete) = status(Some(&reason));
        let response = self.snapshot(status, incomplete, None);
        let kind = if status == "incomplete" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        self.response_frame(kind, &response, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::same_shape::random;

    /// Sequence numbers as servers might write them, the shortcut's digits and others.
    const COUNTS: [&str; 13] = [
        "0",
        "7",
        "42",
        "1000",
        "18446744073709551615",
        "1844674407370955161",
        "007",
        "-3",
        "1.5",
        "1e3",
        "99999999999999999999",
        "\"5\"",
        "null",
    ];

    /// A random event: text deltas to one of two items and content indexes (now and then
    /// with padding), decoys holding the `delta` key elsewhere or hidden by spacing, refusal
    /// and reasoning deltas, `.done` events whose text does or does not continue the deltas,
    /// item and part starts, and an end.
    fn random_event(rng: &mut fastrand::Rng, s: &str, t: &str, shape: u8) -> String {
        // Mostly counts a `u64` holds (the shortcut takes those of up to 19 digits, `u64::MAX`
        // is read in full); the others end the stream with an error or take the long way.
        let n = if rng.u8(..12) == 0 {
            COUNTS[rng.usize(..COUNTS.len())]
        } else {
            COUNTS[rng.usize(..6)]
        };
        let (id, output, content) = match shape % 4 {
            0 => ("msg_1", 0, 0),
            1 => ("msg_1", 0, 1),
            2 => ("msg_2", 1, 0),
            _ => ("", 1, 0),
        };
        let at = format!(r#""item_id":"{id}","output_index":{output},"content_index":{content}"#);
        match shape / 4 {
            0..=2 => format!(
                r#"{{"type":"response.output_text.delta","sequence_number":{n},{at},"delta":{s},"logprobs":[]}}"#
            ),
            3 => format!(
                r#"{{"type":"response.output_text.delta","sequence_number":{n},{at},"delta":{s},"logprobs":[],"obfuscation":{t}}}"#
            ),
            // The delta's key nested in a member nobody reads, the real one spaced out.
            4 => format!(
                r#"{{"type":"response.output_text.delta","sequence_number":{n},{at},"x":{{"delta":{s}}},"delta" : {t}}}"#
            ),
            5 => format!(
                r#"{{"type":"response.output_text.delta","sequence_number":{n},"sequence_number":{n},{at},"delta":{s}}}"#
            ),
            6 => format!(
                r#"{{"type":"response.refusal.delta","sequence_number":{n},{at},"delta":{s}}}"#
            ),
            7 => format!(
                r#"{{"type":"response.reasoning_summary_text.delta","sequence_number":{n},{at},"summary_index":0,"delta":{s}}}"#
            ),
            8 => format!(
                r#"{{"type":"response.output_text.done","sequence_number":{n},{at},"text":{s}}}"#
            ),
            9 => format!(
                r#"{{"type":"response.output_item.added","sequence_number":{n},"output_index":{output},"item":{{"id":"{id}","type":"message","role":"assistant","content":[]}}}}"#
            ),
            10 => format!(
                r#"{{"type":"response.content_part.added","sequence_number":{n},{at},"part":{{"type":"output_text","text":""}}}}"#
            ),
            11 if rng.u8(..6) == 0 => format!(
                r#"{{"type":"response.completed","sequence_number":{n},"response":{{"id":"r","model":"m","status":"completed","output":[]}}}}"#
            ),
            _ => format!(r#"{{"type":"response.in_progress","sequence_number":{n}}}"#),
        }
    }

    #[test]
    fn only_the_first_response_snapshot_is_read() {
        let mut decoder = EventDecoder::new();
        let mut out = Vec::new();
        let created = r#"{"type":"response.created","sequence_number":0,"response":{"id":"resp_1","model":"m","output":[],"instructions":"Be brief."}}"#;
        decoder.push(created, &mut out).unwrap();
        assert!(matches!(&out[..], [Event::Start { id, .. }] if id == "resp_1"));
        // A later snapshot, even one llmux could not read, adds nothing.
        let progress = r#"{"type":"response.in_progress","sequence_number":1,"response":{"id":"resp_1","output":7}}"#;
        decoder.push(progress, &mut out).unwrap();
        assert_eq!(out.len(), 1, "{out:?}");

        let mut first = EventDecoder::new();
        let malformed = r#"{"type":"response.created","sequence_number":0,"response":{"id":"resp_1","output":7}}"#;
        let err = first.push(malformed, &mut Vec::new()).unwrap_err();
        assert!(
            matches!(&err, ChunkError::Garbage(message) if message.contains("malformed")),
            "{err:?}"
        );
    }

    /// Read with the shortcut or without, a stream gives the same events.
    #[test]
    fn a_stream_reads_to_the_same_events_with_the_same_shape_shortcut_as_without() {
        let mut rng = fastrand::Rng::with_seed(17);
        let start = r#"{"type":"response.created","sequence_number":0,"response":{"id":"r","model":"m","output":[]}}"#;
        let added = r#"{"type":"response.output_item.added","sequence_number":1,"output_index":0,"item":{"id":"msg_1","type":"message","role":"assistant","content":[]}}"#;
        let (mut uses, mut failed_probes) = (0, 0);
        for _ in 0..4000 {
            let mut frames = vec![start.to_owned(), added.to_owned()];
            while frames.len() < 24 {
                // Runs of one shape in which one of its strings and its count change.
                let shape = rng.u8(..52);
                let (mut s, mut t) = random::pair(&mut rng);
                for _ in 0..rng.usize(1..8) {
                    let mut data = random_event(&mut rng, &s, &t, shape);
                    if rng.u8(..10) == 0 {
                        data = format!("  {data} \r\n");
                    }
                    frames.push(data);
                    random::change_one(&mut rng, &mut s, &mut t);
                }
            }
            let read = |whole_only: bool| {
                let mut decoder = EventDecoder::default();
                if whole_only {
                    decoder.same_shape = SameShape::never();
                }
                let mut events = Vec::new();
                for data in &frames {
                    if let Err(e) = decoder.push(data, &mut events) {
                        return (format!("{events:?} {e:?}"), decoder.same_shape);
                    }
                }
                (format!("{events:?}"), decoder.same_shape)
            };
            let ((shortcut, shape), (whole, never)) = (read(false), read(true));
            assert_eq!(never.uses, 0);
            assert_eq!(shortcut, whole, "{frames:#?}");
            uses += shape.uses;
            failed_probes += shape.failed_probes;
        }
        assert!(uses > 1000, "the shortcut was taken {uses} times");
        assert!(failed_probes > 0, "no probe failed");
    }

    /// OpenAI's own stream (tests/fixtures) takes the shortcut for all its text deltas but the
    /// first, and reads as it does in full: its `.done` event repeats the whole text, and adds
    /// nothing only if the shortcut's texts were kept as the deltas read in full are.
    #[test]
    fn the_recorded_stream_takes_the_shortcut() {
        let sse =
            include_str!("../../../tests/fixtures/openai_responses/streaming_text/upstream.sse");
        let frames: Vec<&str> = sse
            .lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .collect();
        let read = |decoder: &mut EventDecoder| {
            let mut events = Vec::new();
            for data in &frames {
                decoder.push(data, &mut events).unwrap();
            }
            format!("{events:?}")
        };
        let mut shortcut = EventDecoder::default();
        let mut whole = EventDecoder {
            same_shape: SameShape::never(),
            ..EventDecoder::default()
        };
        assert_eq!(read(&mut shortcut), read(&mut whole));
        let deltas = frames
            .iter()
            .filter(|f| f.contains("output_text.delta"))
            .count();
        assert!(deltas >= 3);
        assert_eq!(shortcut.same_shape.uses, deltas - 1);
    }

    #[test]
    fn a_delta_frame_is_written_byte_for_byte_as_serde_writes_it() {
        let texts = crate::protocol::sse::AWKWARD_TEXTS;
        let mut checked = 0;
        for text in texts {
            for (kind, logprobs) in [
                ("response.output_text.delta", Some([])),
                ("response.reasoning_summary_text.delta", None),
                ("response.function_call_arguments.delta", None),
            ] {
                for (content_index, summary_index) in
                    [(None, None), (Some(2), None), (None, Some(7))]
                {
                    let delta = Delta {
                        kind,
                        sequence_number: u64::from(u32::MAX) + 9,
                        item_id: "msg_\"a\"",
                        output_index: 3,
                        content_index,
                        summary_index,
                        delta: text,
                        logprobs,
                    };
                    assert_eq!(
                        String::from_utf8_lossy(&delta.frame()),
                        String::from_utf8_lossy(&named_frame(kind, &delta))
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 3 * 3 * 3);
    }
    use crate::model::Extensions;

    fn frames(out: &[Bytes]) -> Vec<(String, Value)> {
        out.iter()
            .map(|b| {
                let text = std::str::from_utf8(b).unwrap();
                let (event, data) = text.split_once('\n').unwrap();
                let data = data.strip_prefix("data: ").unwrap().trim_end();
                (
                    event.strip_prefix("event: ").unwrap().to_owned(),
                    serde_json::from_str(data).unwrap(),
                )
            })
            .collect()
    }

    fn start() -> Event {
        Event::Start {
            id: "resp_1".into(),
            model: "m".into(),
            created: Some(1),
            extensions: Extensions::default(),
        }
    }

    #[test]
    fn a_stream_that_never_finishes_fails() {
        let mut encoder = EventEncoder::new(Default::default());
        let mut out = Vec::new();
        encoder.push(start(), &mut out);
        encoder.push(Event::TextDelta("Hel".into()), &mut out);
        encoder.finish(&mut out);
        let frames = frames(&out);
        let names: Vec<&str> = frames.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names[names.len() - 2..], ["error", "response.failed"]);
        let (_, failed) = frames.last().unwrap();
        assert_eq!(failed["response"]["status"], "failed");
        assert_eq!(failed["response"]["error"]["code"], "server_error");
        for (i, (name, data)) in frames.iter().enumerate() {
            assert_eq!(data["sequence_number"], i as u64, "{name}");
            assert_eq!(data["type"], name.as_str());
        }
    }

    #[test]
    fn an_error_event_and_a_failed_response_are_upstream_errors() {
        let mut decoder = EventDecoder::new();
        let mut events = Vec::new();
        let err = decoder
            .push(
                r#"{"type":"error","code":"rate_limit_exceeded","message":"slow down","param":null,"sequence_number":3}"#,
                &mut events,
            )
            .unwrap_err();
        assert!(
            matches!(err, ChunkError::Upstream { ref code, .. } if code.as_deref() == Some("rate_limit_exceeded")),
            "{err:?}"
        );
        let err = decoder
            .push(
                r#"{"type":"response.failed","sequence_number":4,"response":{"id":"r","status":"failed","error":{"code":"server_error","message":"boom"}}}"#,
                &mut events,
            )
            .unwrap_err();
        assert!(matches!(err, ChunkError::Upstream { ref message, .. } if message == "boom"));
        let err = EventDecoder::new()
            .push(
                r#"{"error":{"message":"quota","type":"insufficient_quota","code":"insufficient_quota"}}"#,
                &mut events,
            )
            .unwrap_err();
        assert!(
            matches!(err, ChunkError::Upstream { ref code, .. } if code.as_deref() == Some("insufficient_quota")),
            "{err:?}"
        );
    }

    #[test]
    fn a_stream_without_a_terminal_event_is_truncated() {
        let mut decoder = EventDecoder::new();
        let mut events = Vec::new();
        decoder
            .push(
                r#"{"type":"response.created","sequence_number":0,"response":{"id":"r","model":"m","output":[]}}"#,
                &mut events,
            )
            .unwrap();
        assert_eq!(decoder.finish(), Err(ChunkError::Truncated));
        assert!(decoder.push("not json", &mut events).is_err());
    }
}
