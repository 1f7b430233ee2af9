//! Anthropic streaming, both ways: upstream events -> model events, model events -> the
//! client's `event:`/`data:` frames in the exact order Anthropic documents.

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Map, Value, json};

use super::SYNTHETIC_SIGNATURE;
use super::decode::{stop_reason, usage, wire_error};
use super::encode::{
    effective_stop, error_body, message_id, stop_reason as wire_stop, usage as wire_usage,
};
use crate::Error;
use crate::model::{Event, Extensions, FinishReason, Protocol, Usage};
use crate::protocol::same_shape::{Keys, SameShape, ShapedDecoder, read_frame};
use crate::protocol::sse::{named_frame, push_json_string, push_u64};
use crate::protocol::{ChunkError, StreamDecoder};

const PROTOCOL: Protocol = Protocol::Anthropic;

/// Where a `content_block_delta` holds its strings (see [`SameShape`]).
const SHAPE_KEYS: Keys = Keys {
    text: &["\"text\":\""],
    thinking: &["\"thinking\":\""],
    arguments: &["\"partial_json\":\""],
    padding: None,
    counter: None,
};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Block {
    Text,
    Thinking,
    Tool(u32),
    Other,
}

/// Reads an upstream Anthropic stream into events.
#[derive(Debug, Default, Clone)]
pub struct EventDecoder {
    started: bool,
    /// Usage so far: `message_start`'s, overlaid by each cumulative `message_delta`.
    usage: Map<String, Value>,
    /// Kind of each open block, by wire index.
    blocks: Vec<(u64, Block)>,
    tools: u32,
    finished: bool,
    done: bool,
    /// Turns the JSON answer tool's call back into text.
    json_tool: super::json_tool::JsonToolAsText,
    /// The last `content_block_delta`'s bytes around its one string (see [`SameShape`]).
    same_shape: SameShape,
}

impl EventDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    fn block(&self, index: u64) -> Option<Block> {
        self.blocks
            .iter()
            .rev()
            .find(|(i, _)| *i == index)
            .map(|(_, b)| *b)
    }

    fn start(&mut self, data: &Value, out: &mut Vec<Event>) {
        self.started = true;
        let mut top = data
            .get("message")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if let Some(Value::Object(usage)) = top.remove("usage") {
            self.usage = usage;
        }
        let mut text = |key: &str| match top.remove(key) {
            Some(Value::String(s)) => s,
            _ => String::new(),
        };
        let (id, model) = (text("id"), text("model"));
        for known in ["type", "role", "content", "stop_reason", "stop_sequence"] {
            top.remove(known);
        }
        let mut scoped = Map::new();
        if !top.is_empty() {
            scoped.insert("top".into(), Value::Object(top));
        }
        if !self.usage.is_empty() {
            scoped.insert("start_usage".into(), Value::Object(self.usage.clone()));
        }
        out.push(Event::Start {
            id,
            model,
            created: None,
            extensions: Extensions::new(PROTOCOL, scoped),
        });
    }

    fn passthrough(key: &str, value: Value, out: &mut Vec<Event>) {
        let mut fields = Map::new();
        fields.insert(key.into(), value);
        out.push(Event::Extension(Extensions::new(PROTOCOL, fields)));
    }
}

impl ShapedDecoder for EventDecoder {
    fn same_shape(&mut self) -> &mut SameShape {
        &mut self.same_shape
    }

    fn read_whole(
        &mut self,
        event: &str,
        data: &str,
        out: &mut Vec<Event>,
    ) -> Result<(), ChunkError> {
        self.push_whole(event, data, out)
    }
}

impl StreamDecoder for EventDecoder {
    fn push(&mut self, event: &str, data: &str, out: &mut Vec<Event>) -> Result<(), ChunkError> {
        let from = out.len();
        let pushed = self.push_wire(event, data, out);
        self.json_tool.rewrite_from(out, from);
        pushed
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn finish(&mut self) -> Result<(), ChunkError> {
        if self.finished {
            Ok(())
        } else {
            Err(ChunkError::Truncated)
        }
    }
}

/// A `content_block_delta` event, read straight into its fields (see
/// [`EventDecoder::push_string_delta`]).
#[derive(serde::Deserialize)]
struct BlockDeltaEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    index: u64,
    #[serde(borrow)]
    delta: StringDelta<'a>,
}

/// A delta of one string. Any other field makes it a delta for the general path.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StringDelta<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    text: Option<String>,
    thinking: Option<String>,
    signature: Option<String>,
    partial_json: Option<String>,
}

impl EventDecoder {
    /// Decodes one frame as the wire says it (the JSON answer tool still a tool call).
    fn push_wire(
        &mut self,
        event: &str,
        data: &str,
        out: &mut Vec<Event>,
    ) -> Result<(), ChunkError> {
        let data = data.trim();
        if data.is_empty() {
            return Ok(());
        }
        let delta = self.started && event == "content_block_delta";
        read_frame(self, event, data, out, &SHAPE_KEYS, delta)
    }

    /// Reads a frame in full.
    fn push_whole(
        &mut self,
        event: &str,
        data: &str,
        out: &mut Vec<Event>,
    ) -> Result<(), ChunkError> {
        if self.started && event == "content_block_delta" && self.push_string_delta(data, out) {
            return Ok(());
        }
        self.push_value(event, data, out)
    }

    /// Decodes a `content_block_delta` of text, thinking, a signature or tool arguments,
    /// nearly every event of a stream, without building it as a `Value` first (which, with
    /// the copies taken of it, was most of a streamed event's cost). Returns false, having
    /// pushed nothing, for anything else: [`Self::push_value`] then reads it, and stays the
    /// reference (a test holds the two to the same events).
    fn push_string_delta(&mut self, data: &str, out: &mut Vec<Event>) -> bool {
        let Ok(BlockDeltaEvent { kind, index, delta }) = serde_json::from_str(data) else {
            return false;
        };
        if kind != "content_block_delta" {
            return false;
        }
        // A delta's strings are looked at only for being empty (`SameShape` rests on it).
        let text = |text: Option<String>| text.unwrap_or_default();
        let event = match (delta.kind.as_ref(), self.block(index)) {
            ("text_delta", _) => Event::TextDelta(text(delta.text)),
            ("thinking_delta", _) => Event::ThinkingDelta {
                text: text(delta.thinking),
                signature: None,
            },
            ("signature_delta", _) => Event::ThinkingDelta {
                text: String::new(),
                signature: Some(text(delta.signature)),
            },
            ("input_json_delta", Some(Block::Tool(call))) => {
                let arguments = text(delta.partial_json);
                if !arguments.is_empty() {
                    out.push(Event::ToolCallArgsDelta {
                        index: call,
                        arguments,
                    });
                }
                return true;
            }
            _ => return false,
        };
        out.push(event);
        true
    }

    /// Decodes one frame through its JSON value: every kind of event.
    fn push_value(
        &mut self,
        event: &str,
        data: &str,
        out: &mut Vec<Event>,
    ) -> Result<(), ChunkError> {
        let value: Value = serde_json::from_str(data).map_err(|e| {
            ChunkError::Garbage(format!("stream event is not JSON ({e}): {}", preview(data)))
        })?;
        let kind = value
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or(event)
            .to_owned();
        if kind == "error" {
            return Err(wire_error(&value));
        }
        if !self.started && kind != "ping" {
            if kind != "message_start" {
                return Err(ChunkError::Garbage(format!(
                    "the stream began with '{kind}' instead of message_start"
                )));
            }
            self.start(&value, out);
            return Ok(());
        }
        let index = value.get("index").and_then(Value::as_u64).unwrap_or(0);
        match kind.as_str() {
            "content_block_start" => {
                let block = value.get("content_block").cloned().unwrap_or(Value::Null);
                let text = |key: &str| {
                    block
                        .get(key)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned()
                };
                let kind = match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        // The block as sent (fields such as `citations` included), so an
                        // Anthropic client gets the same block boundaries and fields.
                        Self::passthrough("text_start", block.clone(), out);
                        let t = text("text");
                        if !t.is_empty() {
                            out.push(Event::TextDelta(t));
                        }
                        Block::Text
                    }
                    Some("thinking") => {
                        Self::passthrough("thinking_start", block.clone(), out);
                        let t = text("thinking");
                        if !t.is_empty() {
                            out.push(Event::ThinkingDelta {
                                text: t,
                                signature: None,
                            });
                        }
                        Block::Thinking
                    }
                    Some("redacted_thinking") => {
                        out.push(Event::RedactedThinking(text("data")));
                        Block::Other
                    }
                    Some("tool_use") => {
                        let mut extra = block.as_object().cloned().unwrap_or_default();
                        for known in ["type", "id", "name", "input"] {
                            extra.remove(known);
                        }
                        if !extra.is_empty() {
                            Self::passthrough("tool_fields", Value::Object(extra), out);
                        }
                        let call = self.tools;
                        self.tools += 1;
                        out.push(Event::ToolCallStart {
                            index: call,
                            id: text("id"),
                            name: text("name"),
                        });
                        if let Some(Value::Object(input)) = block.get("input")
                            && !input.is_empty()
                        {
                            out.push(Event::ToolCallArgsDelta {
                                index: call,
                                arguments: Value::Object(input.clone()).to_string(),
                            });
                        }
                        Block::Tool(call)
                    }
                    _ => {
                        Self::passthrough("block_start", block.clone(), out);
                        Block::Other
                    }
                };
                self.blocks.push((index, kind));
            }
            "content_block_delta" => {
                let delta = value.get("delta").cloned().unwrap_or(Value::Null);
                let text = |key: &str| {
                    delta
                        .get(key)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned()
                };
                match (delta.get("type").and_then(Value::as_str), self.block(index)) {
                    (Some("text_delta"), _) => out.push(Event::TextDelta(text("text"))),
                    (Some("thinking_delta"), _) => out.push(Event::ThinkingDelta {
                        text: text("thinking"),
                        signature: None,
                    }),
                    (Some("signature_delta"), _) => out.push(Event::ThinkingDelta {
                        text: String::new(),
                        signature: Some(text("signature")),
                    }),
                    (Some("input_json_delta"), Some(Block::Tool(call))) => {
                        let fragment = text("partial_json");
                        if !fragment.is_empty() {
                            out.push(Event::ToolCallArgsDelta {
                                index: call,
                                arguments: fragment,
                            });
                        }
                    }
                    _ => Self::passthrough("block_delta", delta.clone(), out),
                }
            }
            "content_block_stop" => match self.block(index) {
                Some(Block::Tool(call)) => out.push(Event::ToolCallEnd { index: call }),
                Some(Block::Other | Block::Text | Block::Thinking) => {
                    Self::passthrough("block_stop", Value::Bool(true), out);
                }
                None => {}
            },
            "message_delta" => {
                if let Some(Value::Object(delta_usage)) = value.get("usage") {
                    for (k, v) in delta_usage {
                        if !v.is_null() {
                            self.usage.insert(k.clone(), v.clone());
                        }
                    }
                }
                if let Some(u) = usage(Value::Object(self.usage.clone())) {
                    out.push(Event::Usage(u));
                }
                let delta = value.get("delta").cloned().unwrap_or(Value::Null);
                // Fields beside the stop reason and usage (`context_management`,
                // `delta.container`, ...) travel to an Anthropic client's message_delta.
                let mut top = value.as_object().cloned().unwrap_or_default();
                for known in ["type", "delta", "usage"] {
                    top.remove(known);
                }
                let mut delta_extra = delta.as_object().cloned().unwrap_or_default();
                for known in ["stop_reason", "stop_sequence"] {
                    delta_extra.remove(known);
                }
                if !top.is_empty() || !delta_extra.is_empty() {
                    Self::passthrough(
                        "message_delta",
                        json!({"top": top, "delta": delta_extra}),
                        out,
                    );
                }
                if let Some(reason) = delta.get("stop_reason").and_then(Value::as_str) {
                    self.finished = true;
                    out.push(Event::Finish {
                        reason: stop_reason(reason),
                        stop_sequence: delta
                            .get("stop_sequence")
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                    });
                }
            }
            "message_stop" => self.done = true,
            // ping, and event types newer than this code: Anthropic asks clients to
            // tolerate them.
            _ => {}
        }
        Ok(())
    }
}

fn preview(data: &str) -> String {
    let mut end = data.len().min(120);
    while !data.is_char_boundary(end) {
        end -= 1;
    }
    data[..end].to_owned()
}

/// A tool call waiting for the open block to close: Anthropic never interleaves blocks,
/// while OpenAI-style sources interleave parallel calls.
#[derive(Debug)]
struct Queued {
    index: u32,
    id: String,
    name: String,
    /// Same-protocol fields of the block beside `id`, `name` and `input`.
    fields: Map<String, Value>,
    arguments: String,
    ended: bool,
}

/// Encodes events as an Anthropic client stream.
#[derive(Debug)]
pub struct EventEncoder {
    estimated_input: u64,
    started: bool,
    next_index: u32,
    open: Option<(u32, Block)>,
    thinking_signed: bool,
    queue: Vec<Queued>,
    called_tools: bool,
    usage: Option<Usage>,
    finish: Option<(FinishReason, Option<String>)>,
    /// Same-protocol fields for the next tool_use block.
    tool_fields: Option<Map<String, Value>>,
    /// Same-protocol fields of the upstream message_delta: its top level and its delta.
    message_delta: Option<(Map<String, Value>, Map<String, Value>)>,
    closed: bool,
}

/// `event: content_block_delta` with `{"type":"content_block_delta","index":index,
/// "delta":{"type":kind,field:text}}`, byte for byte what serializing that `json!` value
/// writes. Building the value and serializing it was most of an Anthropic client's cost
/// a streamed chunk (~10k instructions).
fn string_delta_frame(index: u32, kind: &str, field: &str, text: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(112 + text.len());
    buf.put_slice(
        b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":",
    );
    push_u64(&mut buf, u64::from(index));
    buf.put_slice(b",\"delta\":{\"type\":");
    push_json_string(&mut buf, kind);
    buf.put_slice(b",");
    push_json_string(&mut buf, field);
    buf.put_slice(b":");
    push_json_string(&mut buf, text);
    buf.put_slice(b"}}\n\n");
    buf.freeze()
}

impl EventEncoder {
    /// `estimated_input` fills `message_start.usage.input_tokens` when the upstream reports
    /// usage only at the end: Claude Code reads it from there and breaks on zeros.
    pub fn new(estimated_input: u64) -> Self {
        Self {
            estimated_input,
            started: false,
            next_index: 0,
            open: None,
            thinking_signed: false,
            queue: Vec::new(),
            called_tools: false,
            usage: None,
            finish: None,
            tool_fields: None,
            message_delta: None,
            closed: false,
        }
    }

    fn frame(name: &str, value: Value, out: &mut Vec<Bytes>) {
        out.push(named_frame(name, &value));
    }

    fn start(&mut self, id: &str, model: &str, extensions: &Extensions, out: &mut Vec<Bytes>) {
        self.started = true;
        let ext = extensions.for_protocol(PROTOCOL);
        let usage = match ext.and_then(|e| e.get("start_usage")) {
            Some(Value::Object(u)) => {
                // Anthropic-compatible servers that count only at the end send zeros here;
                // Claude Code reads input usage from message_start and breaks on zeros.
                let mut u = u.clone();
                let counted = [
                    "input_tokens",
                    "cache_creation_input_tokens",
                    "cache_read_input_tokens",
                ]
                .iter()
                .any(|key| u.get(*key).and_then(Value::as_u64).unwrap_or(0) > 0);
                if !counted {
                    u.insert("input_tokens".into(), Value::from(self.estimated_input));
                }
                Value::Object(u)
            }
            _ => json!({
                "input_tokens": self.estimated_input,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 1,
            }),
        };
        let mut message = match ext.and_then(|e| e.get("top")) {
            Some(Value::Object(top)) => top.clone(),
            _ => Map::new(),
        };
        message.insert("id".into(), Value::from(message_id(id)));
        message.insert("type".into(), Value::from("message"));
        message.insert("role".into(), Value::from("assistant"));
        message.insert("model".into(), Value::from(model));
        message.insert("content".into(), json!([]));
        message.insert("stop_reason".into(), Value::Null);
        message.insert("stop_sequence".into(), Value::Null);
        message.insert("usage".into(), usage);
        Self::frame(
            "message_start",
            json!({"type": "message_start", "message": message}),
            out,
        );
        Self::frame("ping", json!({"type": "ping"}), out);
    }

    fn ensure_started(&mut self, out: &mut Vec<Bytes>) {
        if !self.started {
            self.start("", "", &Extensions::default(), out);
        }
    }

    fn open_block(&mut self, block: Block, content_block: Value, out: &mut Vec<Bytes>) -> u32 {
        self.close_block(out);
        let index = self.next_index;
        self.next_index += 1;
        self.open = Some((index, block));
        self.thinking_signed = false;
        Self::frame(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": content_block}),
            out,
        );
        index
    }

    /// A delta of one string field, `{"type": kind, field: text}`: nearly every delta of
    /// a stream (text, thinking, tool arguments), so it is written directly (see
    /// [`string_delta_frame`]).
    fn string_delta(&self, kind: &str, field: &str, text: &str, out: &mut Vec<Bytes>) {
        if let Some((index, _)) = self.open {
            out.push(string_delta_frame(index, kind, field, text));
        }
    }

    fn delta(&self, delta: Value, out: &mut Vec<Bytes>) {
        if let Some((index, _)) = self.open {
            Self::frame(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": delta}),
                out,
            );
        }
    }

    fn close_block(&mut self, out: &mut Vec<Bytes>) {
        let Some((index, block)) = self.open.take() else {
            return;
        };
        if block == Block::Thinking && !self.thinking_signed {
            // Claude Code drops thinking blocks without a signature.
            out.push(string_delta_frame(
                index,
                "signature_delta",
                "signature",
                SYNTHETIC_SIGNATURE,
            ));
        }
        Self::frame(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
            out,
        );
    }

    fn open_tool(
        &mut self,
        index: u32,
        id: &str,
        name: &str,
        mut fields: Map<String, Value>,
        out: &mut Vec<Bytes>,
    ) {
        self.called_tools = true;
        fields.insert("type".into(), Value::from("tool_use"));
        fields.insert("id".into(), Value::from(id));
        fields.insert("name".into(), Value::from(name));
        fields.insert("input".into(), json!({}));
        self.open_block(Block::Tool(index), Value::Object(fields), out);
    }

    /// Opens queued calls in order once the open block is done with.
    fn flush_queue(&mut self, out: &mut Vec<Bytes>) {
        while !self.queue.is_empty() {
            if matches!(self.open, Some((_, Block::Tool(_)))) {
                return;
            }
            let next = self.queue.remove(0);
            self.open_tool(next.index, &next.id, &next.name, next.fields, out);
            if !next.arguments.is_empty() {
                self.string_delta("input_json_delta", "partial_json", &next.arguments, out);
            }
            if next.ended {
                self.close_block(out);
            }
        }
    }

    fn close_all(&mut self, out: &mut Vec<Bytes>) {
        loop {
            self.close_block(out);
            if self.queue.is_empty() {
                return;
            }
            for queued in &mut self.queue {
                queued.ended = true;
            }
            self.flush_queue(out);
        }
    }

    pub fn push(&mut self, event: Event, out: &mut Vec<Bytes>) {
        if self.closed {
            return;
        }
        if !self.started && !matches!(event, Event::Start { .. } | Event::Error(_)) {
            self.ensure_started(out);
        }
        match event {
            Event::Start {
                id,
                model,
                extensions,
                ..
            } => {
                if !self.started {
                    self.start(&id, &model, &extensions, out);
                }
            }
            Event::TextDelta(text) | Event::RefusalDelta(text) => {
                if text.is_empty() {
                    return;
                }
                if !matches!(self.open, Some((_, Block::Text))) {
                    self.close_all(out);
                    self.open_block(Block::Text, json!({"type": "text", "text": ""}), out);
                }
                self.string_delta("text_delta", "text", &text, out);
            }
            Event::ThinkingDelta { text, signature } => {
                if !matches!(self.open, Some((_, Block::Thinking))) || self.thinking_signed {
                    if text.is_empty() && signature.is_none() {
                        return;
                    }
                    self.close_all(out);
                    self.open_block(
                        Block::Thinking,
                        json!({"type": "thinking", "thinking": ""}),
                        out,
                    );
                }
                if !text.is_empty() {
                    self.string_delta("thinking_delta", "thinking", &text, out);
                }
                if let Some(signature) = signature {
                    self.string_delta("signature_delta", "signature", &signature, out);
                    self.thinking_signed = true;
                }
            }
            Event::RedactedThinking(data) => {
                self.close_all(out);
                self.open_block(
                    Block::Other,
                    json!({"type": "redacted_thinking", "data": data}),
                    out,
                );
                self.close_block(out);
            }
            Event::ToolCallStart { index, id, name } => {
                let fields = self.tool_fields.take().unwrap_or_default();
                if matches!(self.open, Some((_, Block::Tool(_)))) || !self.queue.is_empty() {
                    self.queue.push(Queued {
                        index,
                        id,
                        name,
                        fields,
                        arguments: String::new(),
                        ended: false,
                    });
                } else {
                    self.open_tool(index, &id, &name, fields, out);
                }
            }
            Event::ToolCallArgsDelta { index, arguments } => {
                if matches!(self.open, Some((_, Block::Tool(open))) if open == index) {
                    self.string_delta("input_json_delta", "partial_json", &arguments, out);
                } else if let Some(queued) = self.queue.iter_mut().find(|q| q.index == index) {
                    queued.arguments.push_str(&arguments);
                }
            }
            Event::ToolCallEnd { index } => {
                if matches!(self.open, Some((_, Block::Tool(open))) if open == index) {
                    self.close_block(out);
                    self.flush_queue(out);
                } else if let Some(queued) = self.queue.iter_mut().find(|q| q.index == index) {
                    queued.ended = true;
                }
            }
            Event::Usage(usage) => self.usage = Some(usage),
            Event::Finish {
                reason,
                stop_sequence,
            } => {
                self.close_all(out);
                self.finish = Some((reason, stop_sequence));
            }
            Event::Extension(extensions) => {
                let Some(fields) = extensions.for_protocol(PROTOCOL) else {
                    return;
                };
                if let Some(block) = fields.get("block_start") {
                    self.close_all(out);
                    self.open_block(Block::Other, block.clone(), out);
                } else if let Some(Value::Object(block)) = fields.get("text_start") {
                    // The upstream opened a text block: open it here too, with its fields,
                    // so blocks keep their boundaries (a citation belongs to one block).
                    let mut block = block.clone();
                    block.insert("text".into(), Value::from(""));
                    self.close_all(out);
                    self.open_block(Block::Text, Value::Object(block), out);
                } else if let Some(Value::Object(block)) = fields.get("thinking_start") {
                    let mut block = block.clone();
                    block.insert("thinking".into(), Value::from(""));
                    self.close_all(out);
                    self.open_block(Block::Thinking, Value::Object(block), out);
                } else if let Some(Value::Object(extra)) = fields.get("tool_fields") {
                    self.tool_fields = Some(extra.clone());
                } else if let Some(message_delta) = fields.get("message_delta") {
                    let part = |key: &str| match message_delta.get(key) {
                        Some(Value::Object(obj)) => obj.clone(),
                        _ => Map::new(),
                    };
                    self.message_delta = Some((part("top"), part("delta")));
                } else if let Some(delta) = fields.get("block_delta") {
                    self.delta(delta.clone(), out);
                } else if fields.contains_key("block_stop") {
                    self.close_block(out);
                } else if let Some(block) = fields.get("block") {
                    // A whole block from a non-streamed Anthropic response.
                    self.close_all(out);
                    self.open_block(Block::Other, block.clone(), out);
                    self.close_block(out);
                }
            }
            Event::Error(error) => {
                self.closed = true;
                Self::frame("error", error_body(&error), out);
            }
        }
    }

    /// Ends the stream: `message_delta` with the stop reason and usage, then
    /// `message_stop`; or an error event if the response never finished.
    pub fn finish(&mut self, out: &mut Vec<Bytes>) {
        if self.closed {
            return;
        }
        self.closed = true;
        let Some((reason, stop_sequence)) = self.finish.take() else {
            let error = Error::internal("the response ended without a stop reason");
            Self::frame("error", error_body(&error), out);
            return;
        };
        self.ensure_started(out);
        self.close_all(out);
        let stop = effective_stop(Some(&reason), self.called_tools);
        let usage = match &self.usage {
            Some(u) => wire_usage(u),
            None => json!({"output_tokens": 0}),
        };
        let (mut frame, mut delta) = self.message_delta.take().unwrap_or_default();
        delta.insert("stop_reason".into(), Value::from(wire_stop(&stop)));
        delta.insert(
            "stop_sequence".into(),
            stop_sequence.map_or(Value::Null, Value::from),
        );
        frame.insert("type".into(), Value::from("message_delta"));
        frame.insert("delta".into(), Value::Object(delta));
        frame.insert("usage".into(), usage);
        Self::frame("message_delta", Value::Object(frame), out);
        Self::frame("message_stop", json!({"type": "message_stop"}), out);
    }
}

#[cfg(test)]
mod tests {
    use super::super::json_tool::JSON_RESPONSE_TOOL as JSON_TOOL;
    use super::*;
    use crate::protocol::same_shape::random;

    /// A random frame: deltas of every kind at blocks of every kind (an index may be
    /// started again as another kind), decoys holding the same keys, spacing that hides a
    /// key from a byte search, block starts and stops, and errors.
    fn random_frame(
        rng: &mut fastrand::Rng,
        s: &str,
        t: &str,
        shape: u8,
    ) -> (&'static str, String) {
        let index = shape % 3;
        let delta = |body: String| {
            format!(r#"{{"type":"content_block_delta","index":{index},"delta":{body}}}"#)
        };
        match shape / 3 {
            0 | 1 => (
                "content_block_delta",
                delta(format!(r#"{{"type":"text_delta","text":{s}}}"#)),
            ),
            2 => (
                "content_block_delta",
                delta(format!(r#"{{"type":"thinking_delta","thinking":{s}}}"#)),
            ),
            3 => (
                "content_block_delta",
                delta(format!(
                    r#"{{"type":"input_json_delta","partial_json":{s}}}"#
                )),
            ),
            4 => (
                "content_block_delta",
                delta(format!(r#"{{"type":"signature_delta","signature":{s}}}"#)),
            ),
            // The text's key hidden by spacing, a decoy read by nobody.
            5 => (
                "content_block_delta",
                format!(
                    r#"{{"type":"content_block_delta","index":{index},"delta":{{"type":"text_delta","text" : {s}}},"x_meta":{{"text":{t}}}}}"#
                ),
            ),
            6 => (
                "content_block_delta",
                delta(format!(r#"{{"type":"text_delta","text":{s},"x":{t}}}"#)),
            ),
            7 => {
                let block = match rng.u8(..3) {
                    0 => r#"{"type":"text","text":""}"#.to_owned(),
                    1 => r#"{"type":"thinking","thinking":""}"#.to_owned(),
                    // Now and then the JSON answer tool, whose arguments become text.
                    _ => {
                        let name = if rng.bool() { JSON_TOOL } else { "f" };
                        format!(
                            r#"{{"type":"tool_use","id":"t{index}","name":"{name}","input":{{}}}}"#
                        )
                    }
                };
                (
                    "content_block_start",
                    format!(
                        r#"{{"type":"content_block_start","index":{index},"content_block":{block}}}"#
                    ),
                )
            }
            8 => (
                "content_block_stop",
                format!(r#"{{"type":"content_block_stop","index":{index}}}"#),
            ),
            9 => (
                "message_delta",
                r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":3}}"#.to_owned(),
            ),
            10 if rng.u8(..4) == 0 => (
                "error",
                r#"{"type":"error","error":{"type":"overloaded_error","message":"busy"}}"#.to_owned(),
            ),
            10 => ("content_block_delta", String::new()),
            _ => ("ping", r#"{"type":"ping"}"#.to_owned()),
        }
    }

    #[test]
    fn a_stream_reads_to_the_same_events_with_the_same_shape_shortcut_as_without() {
        let mut rng = fastrand::Rng::with_seed(21);
        let start = r#"{"type":"message_start","message":{"id":"m1","model":"claude","usage":{"input_tokens":3}}}"#;
        let (mut uses, mut failed_probes) = (0, 0);
        let used_by_kind = std::cell::RefCell::new(std::collections::BTreeMap::new());
        for _ in 0..2000 {
            let mut frames = vec![("message_start", start.to_owned())];
            while frames.len() < 16 {
                // Runs of one shape in which one of its strings changes.
                let shape = rng.u8(..36);
                let (mut s, mut t) = random::pair(&mut rng);
                for _ in 0..rng.usize(1..5) {
                    let (event, mut data) = random_frame(&mut rng, &s, &t, shape);
                    if rng.u8(..10) == 0 {
                        data = format!("  {data} \r\n");
                    }
                    frames.push((event, data));
                    random::change_one(&mut rng, &mut s, &mut t);
                }
            }
            let read = |whole_only: bool| {
                let mut decoder = EventDecoder::default();
                if whole_only {
                    decoder.same_shape = SameShape::never();
                }
                let mut events = Vec::new();
                for (event, data) in &frames {
                    let uses = decoder.same_shape.uses;
                    if let Err(e) = StreamDecoder::push(&mut decoder, event, data, &mut events) {
                        return (format!("{events:?} {e:?}"), decoder.same_shape);
                    }
                    if decoder.same_shape.uses > uses {
                        let kind = match events.last() {
                            Some(Event::TextDelta(_)) => "text",
                            Some(Event::ThinkingDelta { .. }) => "thinking",
                            Some(Event::ToolCallArgsDelta { .. }) => "arguments",
                            _ => "other",
                        };
                        *used_by_kind.borrow_mut().entry(kind).or_insert(0) += 1;
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
        let used_by_kind = used_by_kind.into_inner();
        // Arguments need a tool block open at their index, which random frames seldom
        // give (and the JSON answer tool's come out as text).
        for (kind, least) in [("text", 50), ("thinking", 50), ("arguments", 1)] {
            assert!(
                used_by_kind.get(kind).is_some_and(|n| *n >= least),
                "{used_by_kind:?}"
            );
        }
    }

    #[test]
    fn string_deltas_read_directly_are_the_events_the_value_path_reads() {
        let frames = [
            (
                "message_start",
                r#"{"type":"message_start","message":{"id":"m1","model":"claude","usage":{"input_tokens":3}}}"#,
            ),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi \"you\" \u00e9\n"}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":null}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta"}}"#,
            ),
            // An unknown field, another kind of delta, a wrong type, a repeated key: the
            // general path reads them.
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a","x":1}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"citations_delta","citation":{"cited_text":"c"}}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":"0","delta":{"type":"text_delta","text":"b"}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"c","text":"d"}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{}"}}"#,
            ),
            (
                "content_block_stop",
                r#"{"type":"content_block_stop","index":0}"#,
            ),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":1,"content_block":{"type":"thinking","thinking":""}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"thinking_delta","thinking":"hmm"}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"signature_delta","signature":"sig"}}"#,
            ),
            (
                "content_block_stop",
                r#"{"type":"content_block_stop","index":1}"#,
            ),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"t1","name":"f","input":{}}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"a\":"}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"error","error":{"type":"overloaded_error","message":"busy"}}"#,
            ),
        ];
        let (mut direct, mut general) = (EventDecoder::new(), EventDecoder::new());
        let (mut direct_events, mut general_events) = (Vec::new(), Vec::new());
        for (event, data) in frames {
            let a = direct.push_wire(event, data, &mut direct_events);
            let b = general.push_value(event, data, &mut general_events);
            assert_eq!(format!("{a:?}"), format!("{b:?}"), "{data}");
            assert_eq!(
                format!("{direct_events:?}"),
                format!("{general_events:?}"),
                "{data}"
            );
        }
        assert!(direct_events.iter().any(
            |e| matches!(e, Event::ToolCallArgsDelta { arguments, .. } if arguments == "{\"a\":")
        ));
        // Which frames the direct path takes: plain string deltas only.
        let mut decoder = EventDecoder::new();
        let mut events = Vec::new();
        for (event, data) in &frames[..2] {
            decoder.push_value(event, data, &mut events).unwrap();
        }
        let taken: Vec<bool> = frames[2..10]
            .iter()
            .map(|(_, data)| decoder.push_string_delta(data, &mut events))
            .collect();
        assert_eq!(taken, [true, true, true, false, false, false, false, false]);
    }

    #[test]
    fn a_string_delta_is_written_byte_for_byte_as_the_json_value_was() {
        let texts = crate::protocol::sse::AWKWARD_TEXTS;
        let kinds = [
            ("text_delta", "text"),
            ("thinking_delta", "thinking"),
            ("signature_delta", "signature"),
            ("input_json_delta", "partial_json"),
        ];
        let mut checked = 0;
        for text in texts {
            for (kind, field) in kinds {
                for index in [0, 7, u32::MAX] {
                    let mut delta = Map::new();
                    delta.insert("type".into(), Value::from(kind));
                    delta.insert(field.into(), Value::from(text));
                    let value = json!({"type": "content_block_delta", "index": index,
                        "delta": delta});
                    assert_eq!(
                        string_delta_frame(index, kind, field, text),
                        named_frame("content_block_delta", &value)
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 3 * 4 * 3);
    }

    #[test]
    fn a_text_stream_encodes_its_deltas_in_their_block() {
        let mut encoder = EventEncoder::new(5);
        let mut out = Vec::new();
        for event in [
            Event::TextDelta("Hel".into()),
            Event::TextDelta("lo \"you\"".into()),
            Event::ThinkingDelta {
                text: "hmm".into(),
                signature: Some("sig".into()),
            },
        ] {
            encoder.push(event, &mut out);
        }
        let text: String = out
            .iter()
            .map(|frame| String::from_utf8_lossy(frame).into_owned())
            .collect();
        for expected in [
            r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}"#,
            r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"lo \"you\""}}"#,
            r#"data: {"type":"content_block_delta","index":1,"delta":{"type":"thinking_delta","thinking":"hmm"}}"#,
            r#"data: {"type":"content_block_delta","index":1,"delta":{"type":"signature_delta","signature":"sig"}}"#,
        ] {
            assert!(text.contains(expected), "{expected} not in {text}");
        }
    }
}
