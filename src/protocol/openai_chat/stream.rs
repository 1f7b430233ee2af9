//! Chat Completions streaming, both ways: upstream chunks -> events, events -> client chunks.

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use serde_json::{Map, Value};

use super::decode::{finish_reason, usage};
use super::encode::{error_body, finish_reason as wire_finish_reason, usage as wire_usage};
use super::types::{ChatChunk, LaterChunk};
use crate::Error;
use crate::model::{Event, Extensions, FinishReason, Protocol, Usage};
use crate::protocol::same_shape::{Keys, SameShape, ShapedDecoder, read_frame};
use crate::protocol::sse::{data_frame, push_json_string, push_u64};

const PROTOCOL: Protocol = Protocol::OpenAiChat;

/// Where a chunk's delta holds its strings (see [`SameShape`]).
const SHAPE_KEYS: Keys = Keys {
    text: &["\"content\":\""],
    // `reasoning_content` is read first when both are there.
    thinking: &["\"reasoning_content\":\"", "\"reasoning\":\""],
    arguments: &["\"arguments\":\""],
    // A later chunk's top-level members other than its choices, usage and error are not read.
    padding: Some(",\"obfuscation\":\""),
    counter: None,
};

pub use crate::protocol::ChunkError;

/// Reads the `data:` payloads of an upstream chat stream into events.
#[derive(Debug, Default, Clone)]
pub struct ChunkDecoder {
    started: bool,
    /// Top-level fields of choice-less chunks before the first real one.
    preamble: Map<String, Value>,
    /// Indices of the tool calls opened so far, in order.
    calls: Vec<u32>,
    open_calls: Vec<u32>,
    finished: bool,
    done: bool,
    /// The skippable head of later chunks (see [`LaterHead`]).
    later_head: LaterHead,
    /// The last chunk's bytes around its one string (see [`SameShape`]).
    same_shape: SameShape,
}

/// The text of a later chunk before its `"choices":` key, remembered to skip it in the next.
///
/// A stream's chunks repeat their top-level fields (id, object, created, model, system
/// fingerprint) before the choices, and a later chunk is read for its choices, usage and error
/// only. When a chunk starts with the same bytes as the last one and those hold neither usage
/// nor error, the chunk is read as `{` and its text from `"choices":` on: ~1,400 instructions
/// less a chunk, 7.4 % of a 64-chunk stream (bench/callgrind.sh, KIND=stream).
///
/// A wrong cut cannot read wrongly. A head with a backslash is never remembered, so the cut
/// is never inside an escaped key (`"x\"choices":`); outside strings, the bytes `"choices":`
/// are that key. A `"choices":` key nested d levels deep leaves d - 1 closing brackets after
/// the object that `{` opens, which serde_json rejects as trailing characters, and then the
/// whole text is read.
#[derive(Debug, Default, Clone)]
struct LaterHead {
    /// The last later chunk's text before `"choices":`; empty when it is not to be skipped.
    head: String,
    /// `{` and the current chunk's text from `"choices":` on.
    rest: String,
    /// Set when a cut was rejected: this stream's chunks are read whole from then on.
    off: bool,
}

impl LaterHead {
    const KEY: &'static str = "\"choices\":";

    /// Reads a later chunk, skipping its head when the last chunk had the same.
    fn read(&mut self, data: &str) -> serde_json::Result<LaterChunk> {
        let at = if self.off {
            None
        } else {
            // Built once: `memmem::find` builds its searcher anew on every call.
            static KEY: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
                std::sync::LazyLock::new(|| memchr::memmem::Finder::new(LaterHead::KEY));
            KEY.find(data.as_bytes())
        };
        let Some(at) = at else {
            return serde_json::from_str(data);
        };
        let head = &data[..at];
        if !self.head.is_empty() && head == self.head {
            self.rest.clear();
            self.rest.push('{');
            self.rest.push_str(&data[at..]);
            match serde_json::from_str(&self.rest) {
                Ok(later) => return Ok(later),
                Err(_) => {
                    self.off = true;
                    return serde_json::from_str(data);
                }
            }
        }
        let later = serde_json::from_str(data)?;
        self.head.clear();
        // No head with an escape: `"x\"choices":` would put the cut inside a key, and
        // `"us\u0061ge"` is the key `usage` spelled so that the check above misses it.
        if !head.contains('\\') && !head.contains("\"usage\"") && !head.contains("\"error\"") {
            self.head.push_str(head);
        }
        Ok(later)
    }
}

impl ChunkDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// True once `[DONE]` arrived.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Decodes one SSE `data:` payload, appending events to `out`.
    pub fn push(&mut self, data: &str, out: &mut Vec<Event>) -> Result<(), ChunkError> {
        let data = data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        if data.is_empty() {
            return Ok(());
        }
        let later = self.started;
        read_frame(self, "", data, out, &SHAPE_KEYS, later)
    }

    /// Reads a chunk in full.
    fn push_whole(&mut self, data: &str, out: &mut Vec<Event>) -> Result<(), ChunkError> {
        let garbage = |e: serde_json::Error| {
            ChunkError::Garbage(format!(
                "stream frame is not a chat chunk ({e}): {}",
                preview(data)
            ))
        };
        let chunk: ChatChunk = if self.started {
            self.later_head.read(data).map_err(garbage)?.into()
        } else {
            serde_json::from_str(data).map_err(garbage)?
        };
        // Check for an error before choices: an error frame has none, and skipping
        // "empty" chunks would turn a failure into an empty success.
        if let Some(error) = chunk.extra.get("error") {
            return Err(upstream_error(error));
        }
        let ChatChunk {
            id,
            created,
            model,
            mut choices,
            usage: chunk_usage,
            mut extra,
        } = chunk;
        // Azure opens with a chunk that has no choices, an empty id and model, and only
        // `prompt_filter_results`: the response starts with the next chunk, which keeps them.
        if !self.started && choices.is_empty() && chunk_usage.is_none() {
            extra.remove("object");
            self.preamble.extend(extra);
            return Ok(());
        }
        if !self.started {
            self.started = true;
            extra.remove("object");
            extra.remove("obfuscation");
            let mut top = std::mem::take(&mut self.preamble);
            top.extend(extra);
            let mut scoped = Map::new();
            if !top.is_empty() {
                scoped.insert("top".into(), Value::Object(top));
            }
            // The first choice's own fields (the role chunk's empty `logprobs`) belong to
            // the first frame, which encoders build from the start event.
            if let Some(choice) = choices.iter_mut().find(|c| c.index == 0) {
                let delta_extra = choice
                    .delta
                    .as_mut()
                    .map(|d| std::mem::take(&mut d.extra))
                    .unwrap_or_default();
                scoped.extend(choice_scopes(
                    std::mem::take(&mut choice.extra),
                    delta_extra,
                ));
            }
            out.push(Event::Start {
                id,
                model,
                created,
                extensions: Extensions::new(PROTOCOL, scoped),
            });
        }
        for choice in choices.into_iter().filter(|c| c.index == 0) {
            let delta = choice.delta.unwrap_or_default();
            // Nearly every chunk has no unknown fields: no scope map is made for it.
            if !choice.extra.is_empty() || !delta.extra.is_empty() {
                let scoped = choice_scopes(choice.extra, delta.extra);
                out.push(Event::Extension(Extensions::new(PROTOCOL, scoped)));
            }
            // A delta's strings are looked at only for being empty (`SameShape` rests on it).
            // Every field of a delta, in order: reasoning, text, refusal, tool calls.
            if let Some(text) = delta.reasoning_content.or(delta.reasoning)
                && !text.is_empty()
            {
                out.push(Event::ThinkingDelta {
                    text,
                    signature: None,
                });
            }
            if let Some(text) = delta.content
                && !text.is_empty()
            {
                out.push(Event::TextDelta(text));
            }
            if let Some(text) = delta.refusal
                && !text.is_empty()
            {
                out.push(Event::RefusalDelta(text));
            }
            for call in delta.tool_calls {
                let function = call.function;
                if !self.calls.contains(&call.index) {
                    self.calls.push(call.index);
                    self.open_calls.push(call.index);
                    out.push(Event::ToolCallStart {
                        index: call.index,
                        id: call.id.unwrap_or_else(|| format!("call_{}", call.index)),
                        name: function
                            .as_ref()
                            .and_then(|f| f.name.clone())
                            .unwrap_or_default(),
                    });
                }
                if let Some(arguments) = function.and_then(|f| f.arguments)
                    && !arguments.is_empty()
                {
                    out.push(Event::ToolCallArgsDelta {
                        index: call.index,
                        arguments,
                    });
                }
            }
            if let Some(reason) = choice.finish_reason {
                for index in self.open_calls.drain(..) {
                    out.push(Event::ToolCallEnd { index });
                }
                let mut reason = finish_reason(&reason);
                // Some servers say "stop" after calling tools; what was emitted decides.
                if reason == FinishReason::EndTurn && !self.calls.is_empty() {
                    reason = FinishReason::ToolUse;
                }
                self.finished = true;
                out.push(Event::Finish {
                    reason,
                    stop_sequence: None,
                });
            }
        }
        if let Some(u) = chunk_usage.and_then(usage) {
            out.push(Event::Usage(u));
        }
        Ok(())
    }

    /// Called when the upstream body ends: a stream without a finish reason was cut off.
    pub fn finish(&mut self) -> Result<(), ChunkError> {
        if self.finished {
            Ok(())
        } else {
            Err(ChunkError::Truncated)
        }
    }
}

/// A choice's and its delta's unknown fields as `choice` and `message` scopes (they hold
/// no nulls: the wire types do not keep them).
fn choice_scopes(choice: Map<String, Value>, delta: Map<String, Value>) -> Map<String, Value> {
    let mut scoped = Map::new();
    if !choice.is_empty() {
        scoped.insert("choice".into(), Value::Object(choice));
    }
    if !delta.is_empty() {
        scoped.insert("message".into(), Value::Object(delta));
    }
    scoped
}

impl ShapedDecoder for ChunkDecoder {
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
}

impl crate::protocol::StreamDecoder for ChunkDecoder {
    fn push(&mut self, _event: &str, data: &str, out: &mut Vec<Event>) -> Result<(), ChunkError> {
        ChunkDecoder::push(self, data, out)
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn finish(&mut self) -> Result<(), ChunkError> {
        ChunkDecoder::finish(self)
    }
}

pub(crate) fn upstream_error(error: &Value) -> ChunkError {
    let field = |key: &str| error.get(key).and_then(Value::as_str).map(str::to_owned);
    ChunkError::Upstream {
        message: field("message").unwrap_or_else(|| error.to_string()),
        error_type: field("type"),
        code: field("code").or_else(|| error.get("code").map(Value::to_string)),
    }
}

fn preview(data: &str) -> String {
    let mut end = data.len().min(120);
    while !data.is_char_boundary(end) {
        end -= 1;
    }
    data[..end].to_owned()
}

#[derive(Serialize)]
struct ChunkOut<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    #[serde(flatten)]
    top: &'a Map<String, Value>,
    choices: Vec<ChoiceOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Value>,
}

/// What every chunk of a stream starts with: `id`, `object`, `created`, `model` and the
/// upstream's own top-level members. Rendered once per stream (see `ChunkEncoder::head`):
/// serializing it per chunk through `flatten` was most of a chunk's encoding.
#[derive(Serialize)]
struct HeadOut<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    #[serde(flatten)]
    top: &'a Map<String, Value>,
}

#[derive(Serialize)]
struct ChoiceOut<'a> {
    index: u32,
    delta: DeltaOut<'a>,
    #[serde(flatten)]
    extra: Map<String, Value>,
    finish_reason: Option<&'a str>,
}

#[derive(Serialize, Default)]
struct DeltaOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallOut<'a>; 1]>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

#[derive(Serialize)]
struct ToolCallOut<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionOut<'a>,
}

#[derive(Serialize)]
struct FunctionOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

/// `[choice]` as serde writes it (same members, same order), for a choice and delta
/// without extra members, which is nearly every chunk: written directly, it costs a
/// fraction of serde's `flatten` path, which serializes both structs as maps.
fn write_plain_choice(buf: &mut BytesMut, choice: &ChoiceOut<'_>) {
    let delta = &choice.delta;
    buf.extend_from_slice(b"[{\"index\":");
    push_u64(buf, u64::from(choice.index));
    buf.extend_from_slice(b",\"delta\":{");
    let mut first = true;
    let mut member = |buf: &mut BytesMut, name: &[u8]| {
        if !std::mem::take(&mut first) {
            buf.extend_from_slice(b",");
        }
        buf.extend_from_slice(name);
    };
    let text_members = [
        (&b"\"role\":"[..], delta.role),
        (b"\"content\":", delta.content),
        (b"\"reasoning_content\":", delta.reasoning_content),
        (b"\"refusal\":", delta.refusal),
    ];
    for (name, value) in text_members {
        if let Some(value) = value {
            member(buf, name);
            push_json_string(buf, value);
        }
    }
    if let Some([call]) = &delta.tool_calls {
        member(buf, b"\"tool_calls\":[{\"index\":");
        push_u64(buf, u64::from(call.index));
        if let Some(id) = call.id {
            buf.extend_from_slice(b",\"id\":");
            push_json_string(buf, id);
        }
        if let Some(kind) = call.kind {
            buf.extend_from_slice(b",\"type\":");
            push_json_string(buf, kind);
        }
        buf.extend_from_slice(b",\"function\":{");
        if let Some(name) = call.function.name {
            buf.extend_from_slice(b"\"name\":");
            push_json_string(buf, name);
            buf.extend_from_slice(b",");
        }
        buf.extend_from_slice(b"\"arguments\":");
        push_json_string(buf, call.function.arguments);
        buf.extend_from_slice(b"}}]");
    }
    buf.extend_from_slice(b"},\"finish_reason\":");
    match choice.finish_reason {
        Some(reason) => push_json_string(buf, reason),
        None => buf.extend_from_slice(b"null"),
    }
    buf.extend_from_slice(b"}]");
}

/// Encodes events as a client's chat stream: one `data:` frame per event, `[DONE]` last.
#[derive(Debug)]
pub struct ChunkEncoder {
    include_usage: bool,
    id: String,
    model: String,
    created: u64,
    top: Map<String, Value>,
    /// Same-protocol fields waiting for the next frame (`choice`, `message` scopes).
    pending: Option<Map<String, Value>>,
    usage: Option<Usage>,
    /// Wire index of each canonical tool-call index, in the order calls opened.
    calls: Vec<u32>,
    finished: bool,
    closed: bool,
    /// `data: ` and the chunk's JSON up to its `choices` value, once `Start` set the fields.
    head: Option<Vec<u8>>,
}

impl ChunkEncoder {
    pub fn new(include_usage: bool) -> Self {
        Self {
            include_usage,
            id: String::new(),
            model: String::new(),
            created: 0,
            top: Map::new(),
            pending: None,
            usage: None,
            calls: Vec::new(),
            finished: false,
            closed: false,
            head: None,
        }
    }

    /// `data: {"id":…,"object":…,"created":…,"model":…,<top members>,"choices":`, rendered on
    /// the first chunk after `Start`.
    fn head(&mut self) -> &[u8] {
        self.head.get_or_insert_with(|| {
            let mut head = b"data: ".to_vec();
            let fields = HeadOut {
                id: &self.id,
                object: "chat.completion.chunk",
                created: self.created,
                model: &self.model,
                top: &self.top,
            };
            if serde_json::to_writer(&mut head, &fields).is_ok() && head.ends_with(b"}") {
                head.pop();
                head.extend_from_slice(b",\"choices\":");
            }
            head
        })
    }

    /// One chunk of `choice`: the stream's head, the choice, and `"usage":null` when the
    /// client asked for usage (every chunk but the last carries it).
    fn render_frame(&mut self, choice: &ChoiceOut<'_>) -> Bytes {
        let include_usage = self.include_usage;
        let head = self.head();
        let mut buf = BytesMut::with_capacity(head.len() + 128);
        buf.extend_from_slice(head);
        if choice.extra.is_empty() && choice.delta.extra.is_empty() {
            write_plain_choice(&mut buf, choice);
        } else {
            let mut writer = buf.writer();
            if serde_json::to_writer(&mut writer, std::slice::from_ref(choice)).is_err() {
                return data_frame(&error_body(&Error::internal(
                    "llmux failed to encode a frame",
                )));
            }
            buf = writer.into_inner();
        }
        if include_usage {
            buf.extend_from_slice(b",\"usage\":null");
        }
        buf.extend_from_slice(b"}\n\n");
        buf.freeze()
    }

    fn frame(&mut self, delta: DeltaOut<'_>, finish_reason: Option<&str>) -> Bytes {
        if self.pending.is_none() {
            return self.render_frame(&ChoiceOut {
                index: 0,
                delta,
                extra: Map::new(),
                finish_reason,
            });
        }
        let mut scopes = self.pending.take().unwrap_or_default();
        let mut delta = delta;
        if let Some(Value::Object(message)) = scopes.remove("message") {
            delta.extra = message;
        }
        let extra = match scopes.remove("choice") {
            Some(Value::Object(choice)) => choice,
            _ => Map::new(),
        };
        self.render_frame(&ChoiceOut {
            index: 0,
            delta,
            extra,
            finish_reason,
        })
    }

    fn wire_index(&self, index: u32) -> u32 {
        self.calls
            .iter()
            .position(|i| *i == index)
            .unwrap_or(self.calls.len()) as u32
    }

    /// Encodes one event; most events become exactly one frame.
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
                self.id = id;
                self.model = model;
                self.created = created.unwrap_or_else(unix_now);
                self.head = None;
                if extensions.for_protocol(PROTOCOL).is_some() {
                    let mut first = extensions.fields.into_map();
                    if let Some(Value::Object(top)) = first.remove("top") {
                        self.top = top;
                    }
                    // The first choice's own fields ride on the first frame.
                    if !first.is_empty() {
                        self.pending = Some(first);
                    }
                }
                let delta = DeltaOut {
                    role: Some("assistant"),
                    content: Some(""),
                    ..DeltaOut::default()
                };
                out.push(self.frame(delta, None));
            }
            Event::TextDelta(text) => {
                let delta = DeltaOut {
                    content: Some(&text),
                    ..DeltaOut::default()
                };
                out.push(self.frame(delta, None));
            }
            Event::ThinkingDelta { text, .. } => {
                if !text.is_empty() {
                    let delta = DeltaOut {
                        reasoning_content: Some(&text),
                        ..DeltaOut::default()
                    };
                    out.push(self.frame(delta, None));
                }
            }
            Event::RefusalDelta(text) => {
                let delta = DeltaOut {
                    refusal: Some(&text),
                    ..DeltaOut::default()
                };
                out.push(self.frame(delta, None));
            }
            Event::RedactedThinking(_) | Event::ToolCallEnd { .. } => {}
            Event::ToolCallStart { index, id, name } => {
                let wire = self.wire_index(index);
                self.calls.push(index);
                let delta = DeltaOut {
                    tool_calls: Some([ToolCallOut {
                        index: wire,
                        id: Some(&id),
                        kind: Some("function"),
                        function: FunctionOut {
                            name: Some(&name),
                            arguments: "",
                        },
                    }]),
                    ..DeltaOut::default()
                };
                out.push(self.frame(delta, None));
            }
            Event::ToolCallArgsDelta { index, arguments } => {
                let wire = self.wire_index(index);
                let delta = DeltaOut {
                    tool_calls: Some([ToolCallOut {
                        index: wire,
                        id: None,
                        kind: None,
                        function: FunctionOut {
                            name: None,
                            arguments: &arguments,
                        },
                    }]),
                    ..DeltaOut::default()
                };
                out.push(self.frame(delta, None));
            }
            Event::Usage(usage) => self.usage = Some(usage),
            Event::Finish { reason, .. } => {
                self.finished = true;
                let reason = if reason == FinishReason::EndTurn && !self.calls.is_empty() {
                    FinishReason::ToolUse
                } else {
                    reason
                };
                let frame = self.frame(DeltaOut::default(), Some(wire_finish_reason(&reason)));
                out.push(frame);
            }
            Event::Extension(extensions) => {
                if extensions.for_protocol(PROTOCOL).is_some() {
                    if self.pending.is_some() {
                        let frame = self.frame(DeltaOut::default(), None);
                        out.push(frame);
                    }
                    // The event is ours: its fields move rather than being copied, unless
                    // another copy of the event still shares them.
                    self.pending = Some(extensions.fields.into_map());
                }
            }
            Event::Error(error) => {
                self.closed = true;
                out.push(data_frame(&error_body(&error)));
            }
        }
    }

    /// Ends the stream: the usage chunk if asked for, then `[DONE]`. A stream that never
    /// finished ends with an error frame instead, so a cut-off answer never looks whole.
    pub fn finish(&mut self, out: &mut Vec<Bytes>) {
        if self.closed {
            return;
        }
        self.closed = true;
        if !self.finished {
            let error = Error::internal("the response ended without a finish reason");
            out.push(data_frame(&error_body(&error)));
            return;
        }
        if self.pending.is_some() {
            let frame = self.frame(DeltaOut::default(), None);
            out.push(frame);
        }
        if self.include_usage {
            let usage = self.usage.as_ref().map(wire_usage).unwrap_or_else(|| {
                serde_json::json!({"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0})
            });
            out.push(data_frame(&ChunkOut {
                id: &self.id,
                object: "chat.completion.chunk",
                created: self.created,
                model: &self.model,
                top: &self.top,
                choices: Vec::new(),
                usage: Some(usage),
            }));
        }
        out.push(Bytes::from_static(b"data: [DONE]\n\n"));
    }
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::same_shape::random;

    fn decode(frames: &[&str]) -> (Vec<Event>, Result<(), ChunkError>) {
        let mut decoder = ChunkDecoder::new();
        let mut events = Vec::new();
        for frame in frames {
            if let Err(e) = decoder.push(frame, &mut events) {
                return (events, Err(e));
            }
        }
        let end = decoder.finish();
        (events, end)
    }

    #[test]
    fn an_error_frame_is_an_error_not_an_empty_chunk() {
        let (_, result) = decode(&[
            r#"{"error":{"message":"upstream overloaded","type":"server_error","code":null}}"#,
        ]);
        assert!(
            matches!(result, Err(ChunkError::Upstream { message, .. }) if message == "upstream overloaded")
        );
    }

    #[test]
    fn a_later_chunk_is_read_for_its_choices_usage_and_errors_only() {
        let first = r#"{"id":"c1","object":"chat.completion.chunk","model":"m","system_fingerprint":"fp","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#;
        let (events, result) = decode(&[
            first,
            // What a later chunk repeats (or changes) of the first is not read, whatever
            // its type; its text, finish reason and usage are.
            r#"{"id":7,"model":null,"x_vendor":{"a":[1]},"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}]}"#,
            r#"{"id":"c1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#,
            "[DONE]",
        ]);
        result.unwrap();
        assert!(matches!(&events[0], Event::Start { id, .. } if id == "c1"));
        assert!(matches!(&events[1], Event::TextDelta(t) if t == "Hi"));
        assert!(matches!(&events[2], Event::Finish { .. }));
        assert!(matches!(&events[3], Event::Usage(u) if u.total_tokens() == 4));
        assert_eq!(events.len(), 4);

        let (_, result) = decode(&[
            first,
            r#"{"id":"c1","error":{"message":"overloaded mid-stream","type":"server_error"}}"#,
        ]);
        assert!(
            matches!(result, Err(ChunkError::Upstream { message, .. }) if message == "overloaded mid-stream")
        );
        let (_, result) = decode(&[first, r#"{"choices":"not a list"}"#]);
        assert!(matches!(result, Err(ChunkError::Garbage(m)) if m.contains("not a list")));
    }

    /// Reads `chunks` one after another with one `LaterHead`, and each alone in full; both
    /// must read alike (or both fail). Returns how many were read by their choices alone.
    fn read_alike(chunks: &[String]) -> usize {
        let mut heads = LaterHead::default();
        let mut cut = 0;
        for chunk in chunks {
            let whole = serde_json::from_str::<LaterChunk>(chunk).map(|c| format!("{c:?}"));
            let was_cut = !heads.off
                && !heads.head.is_empty()
                && chunk.starts_with(heads.head.as_str())
                && chunk[heads.head.len()..].starts_with(LaterHead::KEY);
            let read = heads.read(chunk).map(|c| format!("{c:?}"));
            match (&whole, &read) {
                (Ok(whole), Ok(read)) => assert_eq!(whole, read, "{chunk}"),
                (Err(whole), Err(read)) => assert_eq!(whole.to_string(), read.to_string()),
                _ => panic!("{chunk}: read whole {whole:?}, with the head skipped {read:?}"),
            }
            // A cut serde_json rejected turns skipping off, and the chunk is read whole.
            cut += usize::from(was_cut && !heads.off);
        }
        cut
    }

    #[test]
    fn a_repeated_head_is_skipped_and_the_rest_read_as_the_whole_would_be() {
        let head = r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","system_fingerprint":"fp","#;
        let word = |w: &str| {
            format!(
                r#"{head}"choices":[{{"index":0,"delta":{{"content":"{w}"}},"logprobs":null,"finish_reason":null}}],"usage":null,"obfuscation":"{w}x"}}"#
            )
        };
        let mut chunks: Vec<String> = ["a", "b", "c", "d"].iter().map(|w| word(w)).collect();
        // The finish chunk and an error after the choices are in the part still read.
        chunks.push(format!(
            r#"{head}"choices":[{{"index":0,"delta":{{}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}}}"#
        ));
        chunks.push(format!(
            r#"{head}"choices":[],"error":{{"message":"late","type":"server_error"}}}}"#
        ));
        // Broken JSON after a known head fails as the whole text fails.
        chunks.push(format!(r#"{head}"choices":[{{"index":0,"#));
        assert_eq!(
            read_alike(&chunks),
            5,
            "all after the first but the broken one"
        );

        // A head that changes is read whole once, then skipped again.
        let other = word("e").replace(r#""model":"m""#, r#""model":"m2""#);
        assert_eq!(
            read_alike(&[word("a"), other.clone(), other.clone(), other]),
            1 + 1
        );
    }

    #[test]
    fn a_head_holding_usage_or_error_or_a_nested_choices_key_is_never_skipped() {
        let usage_first = r#"{"id":"c","usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2},"choices":[]}"#;
        let error_first = r#"{"id":"c","error":{"message":"x"},"choices":[]}"#;
        let usage_escaped = r#"{"id":"c","us\u0061ge":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2},"choices":[]}"#;
        for chunk in [usage_first, error_first, usage_escaped] {
            let chunks = vec![chunk.to_owned(); 3];
            assert_eq!(read_alike(&chunks), 0, "{chunk}");
        }
        // `"choices":` inside an escaped key: the cut would read the key's value as the
        // choices. The first chunk's head ends in a backslash, so it is not remembered.
        let chunks = [
            r#"{"id":"c","x\"choices":[],"choices":[{"index":0,"delta":{"content":"a"}}]}"#,
            r#"{"id":"c","x\"choices":[{"index":0,"delta":{"content":"EVIL"}}]}"#,
        ]
        .map(str::to_owned);
        assert_eq!(read_alike(&chunks), 0);
        // `"choices":` first found inside an earlier field: the cut leaves trailing brackets,
        // is rejected, and the stream is read whole from then on, still alike.
        for nested in [
            r#"{"id":"c","meta":{"choices":[]},"choices":[{"index":0,"delta":{"content":"x"}}]}"#,
            r#"{"id":"c","meta":[{"choices":[]}],"choices":[{"index":0,"delta":{"content":"x"}}]}"#,
            r#"{"id":"c","meta":{"a":{"choices":{}}},"choices":[{"index":0,"delta":{"content":"x"}}]}"#,
        ] {
            let chunks = vec![nested.to_owned(); 4];
            assert_eq!(read_alike(&chunks), 0, "{nested}");
        }
    }

    #[test]
    fn a_stream_reads_to_the_same_events_whether_its_heads_repeat_or_not() {
        // `created` is read from the first chunk only: a stream that changes it in every
        // chunk never repeats a head, so it is read whole, and must give the same events.
        let frame = |created: usize, delta: &str, finish: &str| {
            format!(
                r#"{{"id":"c1","object":"chat.completion.chunk","created":{created},"model":"m","choices":[{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":{finish}}}]}}"#
            )
        };
        let parts = [
            (r#"{"role":"assistant","content":""}"#, "null"),
            (r#"{"content":"Hel"}"#, "null"),
            (r#"{"content":"lo"}"#, "null"),
            (
                r#"{"tool_calls":[{"index":0,"id":"t","type":"function","function":{"name":"f","arguments":""}}]}"#,
                "null",
            ),
            (
                r#"{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}"#,
                "null",
            ),
            ("{}", r#""tool_calls""#),
        ];
        let stream = |created: &dyn Fn(usize) -> usize| {
            let mut frames: Vec<String> = parts
                .iter()
                .enumerate()
                .map(|(i, (delta, finish))| frame(created(i), delta, finish))
                .collect();
            frames.push("[DONE]".into());
            let texts: Vec<&str> = frames.iter().map(String::as_str).collect();
            let (events, result) = decode(&texts);
            result.unwrap();
            format!("{events:?}")
        };
        let repeated = stream(&|_| 1);
        assert_eq!(repeated, stream(&|i| if i == 0 { 1 } else { 100 + i }));
        assert!(
            repeated.contains("Hel") && repeated.contains("ToolCallStart"),
            "{repeated}"
        );
    }

    /// What reading a stream with the [`SameShape`] shortcut gave, against reading it
    /// without: both reads (events, then the end or the error), and the shortcut's uses by
    /// the kind of event they gave and with an escape in their string.
    struct BothWays {
        shortcut: String,
        whole: String,
        uses: usize,
        uses_by_kind: std::collections::BTreeMap<&'static str, usize>,
        escaped_uses: usize,
    }

    fn decode_both_ways(frames: &[String]) -> BothWays {
        let read = |whole_only: bool| {
            let mut decoder = ChunkDecoder::default();
            if whole_only {
                decoder.same_shape = SameShape::never();
            }
            let mut events = Vec::new();
            let mut by_kind = std::collections::BTreeMap::new();
            let mut escaped = 0;
            for frame in frames {
                let uses = decoder.same_shape.uses;
                if let Err(e) = decoder.push(frame, &mut events) {
                    return (
                        format!("{events:?} {e:?}"),
                        decoder.same_shape.uses,
                        by_kind,
                        escaped,
                    );
                }
                if decoder.same_shape.uses > uses {
                    let kind = match events.last() {
                        Some(Event::TextDelta(_)) => "text",
                        Some(Event::ThinkingDelta { .. }) => "thinking",
                        Some(Event::ToolCallArgsDelta { .. }) => "arguments",
                        _ => "other",
                    };
                    *by_kind.entry(kind).or_insert(0) += 1;
                    escaped += usize::from(frame.contains('\\'));
                }
            }
            let end = format!("{events:?} {:?}", decoder.finish());
            (end, decoder.same_shape.uses, by_kind, escaped)
        };
        let (shortcut, uses, uses_by_kind, escaped_uses) = read(false);
        let (whole, none, _, _) = read(true);
        assert_eq!(none, 0);
        BothWays {
            shortcut,
            whole,
            uses,
            uses_by_kind,
            escaped_uses,
        }
    }

    /// The shape of a random later chunk: a text, reasoning or tool-call delta, decoys
    /// holding the same keys, a finish, usage, another choice, or spacing that hides a key
    /// from a byte search.
    #[derive(Clone, Copy)]
    struct ChunkShape {
        choice: u8,
        tail: u8,
        call: u32,
    }

    impl ChunkShape {
        fn random(rng: &mut fastrand::Rng) -> Self {
            Self {
                choice: rng.u8(..17),
                tail: rng.u8(..10),
                call: rng.u32(0..2),
            }
        }

        /// The chunk with the JSON strings (or other values) `s` and `t` in its places.
        fn chunk(self, s: &str, t: &str) -> String {
            let head = r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","system_fingerprint":"fp","choices":["#;
            let call = self.call;
            let choice = match self.choice {
                0..=3 => format!(
                    r#"{{"index":0,"delta":{{"content":{s}}},"logprobs":null,"finish_reason":null}}"#
                ),
                4 => format!(
                    r#"{{"index":0,"delta":{{"reasoning_content":{s}}},"finish_reason":null}}"#
                ),
                5 => {
                    format!(r#"{{"index":0,"delta":{{"reasoning_content":{s},"reasoning":{t}}}}}"#)
                }
                6 => format!(r#"{{"index":0,"delta":{{"reasoning":{s}}}}}"#),
                7 => format!(
                    r#"{{"index":0,"delta":{{"tool_calls":[{{"index":{call},"id":"t{call}","type":"function","function":{{"name":"f","arguments":{s}}}}}]}}}}"#
                ),
                8 => format!(
                    r#"{{"index":0,"delta":{{"tool_calls":[{{"index":{call},"function":{{"arguments":{s}}}}}]}}}}"#
                ),
                // Read as the text, but not found by a search for `"content":"`; a later
                // chunk's top-level `x_meta` (the tail) is not read at all.
                9 => format!(r#"{{"index":0,"delta":{{"content" : {s}}}}}"#),
                10 => format!(
                    r#"{{"index":1,"delta":{{"content":{s}}}}},{{"index":0,"delta":{{"content":{t}}}}}"#
                ),
                11 => format!(r#"{{"index":0,"delta":{{"refusal":{s}}}}}"#),
                12 => format!(r#"{{"index":0,"delta":{{"content":{s},"x_new":{t}}}}}"#),
                13 => format!(r#"{{"index":0,"delta":{{"content":{s}}},"finish_reason":"stop"}}"#),
                14 => format!(r#"{{"index":1,"delta":{{"content":{s}}}}}"#),
                15 => format!(r#"{{"index":0,"x_choice":{t},"delta":{{"content":{s}}}}}"#),
                _ => r#"{"index":0,"delta":{},"finish_reason":"stop"}"#.to_owned(),
            };
            let tail = match self.tail {
                0 => format!(r#","x_meta":{{"content":{t}}}"#),
                1 => r#","usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}"#
                    .to_owned(),
                2 => r#","error":null"#.to_owned(),
                3 => format!(r#","error":{{"message":{t}}}"#),
                _ => String::new(),
            };
            format!("{head}{choice}]{tail}}}")
        }
    }

    #[test]
    fn a_stream_reads_to_the_same_events_with_the_same_shape_shortcut_as_without() {
        let mut rng = fastrand::Rng::with_seed(21);
        let first = r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","system_fingerprint":"fp","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#;
        let (mut uses, mut escaped) = (0, 0);
        let mut by_kind = std::collections::BTreeMap::new();
        for _ in 0..3000 {
            // OpenAI's `obfuscation` member, different in every chunk, in some streams;
            // spacing around a frame in others.
            let obfuscated = rng.u8(..4) == 0;
            let spaced = rng.u8(..8) == 0;
            let mut frames = vec![first.to_owned()];
            // Runs of one shape in which one of its strings changes (a decoy's, now and
            // then), as real streams go.
            while frames.len() < 12 {
                let shape = ChunkShape::random(&mut rng);
                let (mut s, mut t) = random::pair(&mut rng);
                for _ in 0..rng.usize(1..5) {
                    let mut chunk = shape.chunk(&s, &t);
                    if obfuscated {
                        chunk.pop();
                        let padding = match rng.u8(..8) {
                            0 => r#"a\"b"#.to_owned(),
                            1 => "é".to_owned(),
                            2 => r#"x","obfuscation":"y"#.to_owned(),
                            _ => rng.u32(..).to_string(),
                        };
                        chunk.push_str(&format!(r#","obfuscation":"{padding}"}}"#));
                    }
                    if spaced {
                        chunk = format!(" {chunk}\r\n");
                    }
                    frames.push(chunk);
                    random::change_one(&mut rng, &mut s, &mut t);
                }
            }
            frames.push("[DONE]".to_owned());
            let read = decode_both_ways(&frames);
            assert_eq!(read.shortcut, read.whole, "{frames:#?}");
            uses += read.uses;
            escaped += read.escaped_uses;
            for (kind, n) in read.uses_by_kind {
                *by_kind.entry(kind).or_insert(0) += n;
            }
        }
        assert!(uses > 500, "the shortcut was taken {uses} times");
        assert!(escaped > 50, "with escapes {escaped} times");
        for kind in ["text", "thinking", "arguments"] {
            assert!(by_kind.get(kind).is_some_and(|n| *n > 50), "{by_kind:?}");
        }
    }

    #[test]
    fn chunks_that_differ_in_their_obfuscation_padding_take_the_shortcut() {
        let frames: Vec<String> = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/openai_chat/streaming/upstream.sse"
        ))
        .unwrap()
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(str::to_owned)
        .collect();
        assert!(frames.iter().filter(|f| f.contains("obfuscation")).count() > 3);
        let read = decode_both_ways(&frames);
        assert_eq!(read.shortcut, read.whole);
        assert!(read.uses >= 1, "{}", read.shortcut);
        // Padding that is not a plain string is read in full, alike.
        let padded = |text: &str, padding: &str| {
            format!(
                r#"{{"id":"c","choices":[{{"index":0,"delta":{{"content":"{text}"}}}}],"obfuscation":{padding}}}"#
            )
        };
        let frames = [
            padded("a", r#""x""#),
            padded("b", r#""y""#),
            padded("c", r#""q""#),
            padded("d", r#""\u0041""#),
            padded("e", r#""r""#),
            padded("f", r#""s""#),
            padded("g", "7"),
            padded("h", r#""t" "#),
        ];
        let read = decode_both_ways(&frames);
        assert_eq!(read.shortcut, read.whole);
        // After b, c; after e (d's padding is escaped, so d's shape holds it), f.
        assert_eq!(read.uses, 2, "{}", read.shortcut);
    }

    #[test]
    fn a_shape_whose_string_is_a_decoy_fails_its_probe_and_is_never_used() {
        // The text's key is spaced, so the only `"content":"` is an unread member's, which
        // holds the same text: the probe shows that string is not where the text comes from.
        let frame = |meta: &str, text: &str| {
            format!(
                r#"{{"id":"c","x_meta":{{"content":"{meta}"}},"choices":[{{"index":0,"delta":{{"content" : "{text}"}}}}]}}"#
            )
        };
        let frames = [
            frame("a", "a"),
            frame("b", "b"),
            frame("z", "b"),
            frame("y", "b"),
        ];
        let read = decode_both_ways(&frames);
        assert_eq!(read.shortcut, read.whole);
        assert_eq!(read.uses, 0);
        let mut decoder = ChunkDecoder::default();
        let mut events = Vec::new();
        for frame in &frames {
            decoder.push(frame, &mut events).unwrap();
        }
        assert!(decoder.same_shape.failed_probes >= 1);
        assert!(matches!(events.last(), Some(Event::TextDelta(t)) if t == "b"));
    }

    #[test]
    fn a_stream_that_never_repeats_a_shape_stops_looking_for_one() {
        let frames: Vec<String> = (0..40)
            .map(|i| {
                format!(
                    r#"{{"id":"c1","created":{i},"choices":[{{"index":0,"delta":{{"content":"w{i}"}}}}]}}"#
                )
            })
            .collect();
        let mut decoder = ChunkDecoder::default();
        let mut events = Vec::new();
        for frame in &frames {
            decoder.push(frame, &mut events).unwrap();
        }
        assert_eq!(events.len(), 41, "the start and 40 texts");
        assert_eq!(decoder.same_shape.uses, 0);
        assert!(decoder.same_shape.is_off());
    }

    #[test]
    fn a_chunk_with_the_last_ones_bytes_around_a_new_string_takes_the_shortcut() {
        let frame = |delta: &str| {
            format!(
                r#"{{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":null}}]}}"#
            )
        };
        let frames: Vec<String> = [
            r#"{"role":"assistant","content":""}"#,
            r#"{"content":"Hel"}"#,
            r#"{"content":"lo, \"wor"}"#,
            r#"{"content":"ld\u00e9"}"#,
            r#"{"content":""}"#,
            r#"{"tool_calls":[{"index":0,"id":"t","type":"function","function":{"name":"f","arguments":""}}]}"#,
            r#"{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\""}}]}"#,
            r#"{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]}"#,
        ]
        .iter()
        .map(|delta| frame(delta))
        .collect();
        let read = decode_both_ways(&frames);
        assert_eq!(read.shortcut, read.whole);
        // "lo, \"wor" and "ldé" after "Hel" (not "": an empty string is read in full);
        // ":1}" after the first arguments.
        assert_eq!(read.uses, 3, "{}", read.shortcut);
        let shown = &read.shortcut;
        assert!(shown.contains(r#"TextDelta("lo, \"wor")"#), "{shown}");
        assert!(shown.contains(r#"TextDelta("ldé")"#), "{shown}");
    }

    #[test]
    fn a_first_chunk_with_a_null_error_is_not_an_error() {
        // Some servers send every field of their chunk type, an empty `error` included.
        let (events, result) = decode(&[
            r#"{"id":"c1","model":"m","error":null,"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}]}"#,
            "[DONE]",
        ]);
        result.unwrap();
        assert!(matches!(&events[1], Event::TextDelta(t) if t == "Hi"));
    }

    /// Every shape of delta the encoder writes, with `text` in each string.
    fn deltas(text: &str) -> Vec<DeltaOut<'_>> {
        let call = |id, kind, name, arguments| ToolCallOut {
            index: 3,
            id,
            kind,
            function: FunctionOut { name, arguments },
        };
        vec![
            DeltaOut::default(),
            DeltaOut {
                role: Some("assistant"),
                content: Some(text),
                ..DeltaOut::default()
            },
            DeltaOut {
                reasoning_content: Some(text),
                ..DeltaOut::default()
            },
            DeltaOut {
                refusal: Some(text),
                ..DeltaOut::default()
            },
            DeltaOut {
                tool_calls: Some([call(Some(text), Some("function"), Some(text), "")]),
                ..DeltaOut::default()
            },
            DeltaOut {
                tool_calls: Some([call(None, None, None, text)]),
                ..DeltaOut::default()
            },
            DeltaOut {
                role: Some("assistant"),
                content: Some(text),
                reasoning_content: Some(text),
                refusal: Some(text),
                tool_calls: Some([call(Some(text), None, Some(text), text)]),
                extra: Map::new(),
            },
        ]
    }

    #[test]
    fn a_plain_choice_is_written_byte_for_byte_as_serde_writes_it() {
        let texts = crate::protocol::sse::AWKWARD_TEXTS;
        let mut checked = 0;
        for text in texts {
            for finish_reason in [None, Some("stop"), Some("tool_calls")] {
                for index in [0, 7, u32::MAX] {
                    for delta in deltas(text) {
                        let choice = ChoiceOut {
                            index,
                            delta,
                            extra: Map::new(),
                            finish_reason,
                        };
                        let mut plain = BytesMut::new();
                        write_plain_choice(&mut plain, &choice);
                        let serde = serde_json::to_vec(std::slice::from_ref(&choice)).unwrap();
                        assert_eq!(
                            String::from_utf8_lossy(&plain),
                            String::from_utf8_lossy(&serde)
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 3 * 3 * 3 * 7);
    }

    #[test]
    fn a_stream_without_finish_reason_is_truncated() {
        let (_, result) = decode(&[
            r#"{"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"Hel"}}]}"#,
        ]);
        assert_eq!(result, Err(ChunkError::Truncated));
    }

    #[test]
    fn garbage_is_reported_with_a_preview() {
        let (_, result) = decode(&["this is not json"]);
        assert!(matches!(result, Err(ChunkError::Garbage(m)) if m.contains("this is not json")));
    }

    #[test]
    fn text_and_tool_call_in_one_chunk_both_survive() {
        let (events, result) = decode(&[
            r#"{"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"Checking.","tool_calls":[{"index":0,"id":"call_A","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]}}]}"#,
            r#"{"id":"c1","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
            "[DONE]",
        ]);
        result.unwrap();
        assert!(matches!(&events[1], Event::TextDelta(t) if t == "Checking."));
        assert!(matches!(&events[2], Event::ToolCallStart { name, .. } if name == "get_weather"));
        assert!(
            matches!(&events[3], Event::ToolCallArgsDelta { arguments, .. } if arguments == "{\"city\":\"Paris\"}")
        );
        assert!(matches!(
            &events[5],
            Event::Finish {
                reason: FinishReason::ToolUse,
                ..
            }
        ));
    }

    #[test]
    fn encoder_ends_with_usage_when_asked_and_done() {
        let mut encoder = ChunkEncoder::new(true);
        let mut out = Vec::new();
        encoder.push(
            Event::Start {
                id: "c1".into(),
                model: "m".into(),
                created: Some(1),
                extensions: Extensions::default(),
            },
            &mut out,
        );
        encoder.push(Event::TextDelta("hi".into()), &mut out);
        encoder.push(
            Event::Usage(Usage {
                input_tokens: 3,
                output_tokens: 1,
                ..Usage::default()
            }),
            &mut out,
        );
        encoder.push(
            Event::Finish {
                reason: FinishReason::EndTurn,
                stop_sequence: None,
            },
            &mut out,
        );
        encoder.finish(&mut out);
        let text: Vec<String> = out
            .iter()
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
            .collect();
        assert_eq!(text.len(), 5);
        assert!(text[2].contains(r#""finish_reason":"stop""#));
        assert!(text[3].contains(r#""choices":[]"#) && text[3].contains(r#""total_tokens":4"#));
        assert_eq!(text[4], "data: [DONE]\n\n");
    }

    /// A chunk as `ChunkOut` writes it, all at once: the reference for the pre-rendered head.
    fn reference_frame(encoder: &ChunkEncoder, choice: ChoiceOut<'_>) -> Bytes {
        data_frame(&ChunkOut {
            id: &encoder.id,
            object: "chat.completion.chunk",
            created: encoder.created,
            model: &encoder.model,
            top: &encoder.top,
            choices: vec![choice],
            usage: encoder.include_usage.then_some(Value::Null),
        })
    }

    #[test]
    fn a_chunk_with_its_head_rendered_once_is_what_chunk_out_writes() {
        let object = |v: Value| match v {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        let tops = [
            Map::new(),
            object(serde_json::json!({"system_fingerprint": "fp_1",
                "x_vendor": {"a": [1, "é \"q\""]}, "service_tier": null})),
        ];
        let choices: [fn() -> ChoiceOut<'static>; 4] = [
            || ChoiceOut {
                index: 0,
                delta: DeltaOut {
                    content: Some("two\nlines \"quoted\" \u{1F600}"),
                    ..DeltaOut::default()
                },
                extra: Map::new(),
                finish_reason: None,
            },
            || ChoiceOut {
                index: 0,
                delta: DeltaOut {
                    role: Some("assistant"),
                    content: Some(""),
                    refusal: Some("no"),
                    ..DeltaOut::default()
                },
                extra: Map::new(),
                finish_reason: None,
            },
            || ChoiceOut {
                index: 0,
                delta: DeltaOut {
                    tool_calls: Some([ToolCallOut {
                        index: 1,
                        id: Some("call_A"),
                        kind: Some("function"),
                        function: FunctionOut {
                            name: Some("shell"),
                            arguments: "{\"cmd\":\"ls\"}",
                        },
                    }]),
                    ..DeltaOut::default()
                },
                extra: Map::new(),
                finish_reason: None,
            },
            || {
                let mut extra = Map::new();
                extra.insert("logprobs".into(), Value::Null);
                ChoiceOut {
                    index: 0,
                    delta: DeltaOut::default(),
                    extra,
                    finish_reason: Some("stop"),
                }
            },
        ];
        for include_usage in [false, true] {
            for top in &tops {
                let mut encoder = ChunkEncoder::new(include_usage);
                encoder.id = "chatcmpl-1".into();
                encoder.model = "gpt-\"x\"".into();
                encoder.created = 1_741_569_952;
                encoder.top = top.clone();
                for choice in choices {
                    let rendered = encoder.render_frame(&choice());
                    assert_eq!(rendered, reference_frame(&encoder, choice()));
                }
            }
        }
    }

    #[test]
    fn a_new_start_renders_a_new_head() {
        let start = |id: &str| Event::Start {
            id: id.into(),
            model: "m".into(),
            created: Some(1),
            extensions: Extensions::default(),
        };
        let mut encoder = ChunkEncoder::new(false);
        let mut out = Vec::new();
        encoder.push(start("first"), &mut out);
        encoder.push(start("second"), &mut out);
        let last = String::from_utf8(out.last().unwrap().to_vec()).unwrap();
        assert!(last.contains(r#""id":"second""#), "{last}");
    }

    #[test]
    fn encoder_never_sends_done_after_an_error() {
        let mut encoder = ChunkEncoder::new(false);
        let mut out = Vec::new();
        encoder.push(Event::Error(Error::internal("boom")), &mut out);
        encoder.finish(&mut out);
        assert_eq!(out.len(), 1);
        assert!(String::from_utf8(out[0].to_vec()).unwrap().contains("boom"));
    }
}
