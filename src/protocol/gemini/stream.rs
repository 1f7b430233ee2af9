//! Gemini streaming, both ways: upstream records -> events, events -> client records.
//!
//! Every streamed record is a whole `GenerateContentResponse` holding a partial
//! candidate (PROTOCOLS.md §1.5). With `?alt=sse` each record is one `data:` line; without
//! it the body is one JSON array streamed element by element (`[{..}`, `,\r\n{..}`, `]`).
//! [`ChunkDecoder`] reads record payloads (the back-end always asks for `alt=sse`;
//! [`JsonArraySplitter`] cuts an array body into records for anything that did not).
//! [`ChunkEncoder`] writes either format for clients ([`StreamFormat`]).
//!
//! # Events from a record
//! In order: `Start` (first record), `Extension`s for fields the model has no slot for,
//! the parts, `Usage`, `Finish`. Per part:
//! - `thought: true` -> `ThinkingDelta { text, signature }`.
//! - a signature on any other part -> `ThinkingDelta { text: "", signature }` right
//!   before that part's events, so encoders can put it back on the part.
//! - `text` -> `TextDelta`; `functionCall` (always whole) -> `ToolCallStart`, one
//!   `ToolCallArgsDelta` with the args as JSON text, `ToolCallEnd`.
//! - anything else (`inlineData` images, `executableCode`, ...) -> an `Extension` holding
//!   the part (scope `parts`), so a Gemini client still gets it.
//!
//! `usageMetadata` is cumulative, so every record's usage is sent and the last one wins
//! (pitfall 11). `STOP` after any `functionCall` is `ToolUse` (pitfall 25). A blocked
//! prompt (`promptFeedback.blockReason`, no candidates) finishes with `ContentFilter`
//! (pitfall 13), never as an empty success.

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Map, Value, json};

use super::PROTOCOL;
use super::decode::SYNTHETIC_ID_PREFIX;
use super::encode::{call_part, error_body, finish_reason as wire_finish_reason, usage_metadata};
#[cfg(doc)]
use super::types::UsageMetadata;
use super::types::{Candidate, GenerateContentResponse, Part as WirePart};
use crate::Error;
use crate::model::json_scan::{Byte, JsonLexer};
use crate::model::{Event, Extensions, FinishReason, Usage};
use crate::protocol::openai_chat::ChunkError;
use crate::protocol::sse::{data_frame, push_json_string};

/// Maps a wire finish reason to the model's. `called` says whether the response made
/// function calls (Gemini says `STOP` either way).
pub fn finish_reason(reason: &str, called: bool) -> FinishReason {
    match reason {
        "STOP" if called => FinishReason::ToolUse,
        "STOP" => FinishReason::EndTurn,
        "MAX_TOKENS" => FinishReason::MaxTokens,
        reason if is_content_filter(reason) => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

fn is_content_filter(reason: &str) -> bool {
    matches!(
        reason,
        "SAFETY"
            | "RECITATION"
            | "BLOCKLIST"
            | "PROHIBITED_CONTENT"
            | "SPII"
            | "IMAGE_SAFETY"
            | "IMAGE_PROHIBITED_CONTENT"
            | "IMAGE_RECITATION"
    )
}

/// Reads a `usageMetadata` object, keeping it whole for a same-protocol client.
/// `output = candidates + thoughts`, `reasoning = thoughts`, `cached = cachedContent`;
/// tool-use prompt tokens count as input.
///
/// The counts are read from the object as [`UsageMetadata`] reads them (a count that is there
/// is a non-negative integer, an optional one may be `null`; anything else and the record
/// has no usage), without copying the object into one: every record of a stream has one.
pub fn usage(value: &Value) -> Option<Usage> {
    let Value::Object(raw) = value else {
        return None;
    };
    // One pass over the members, no lookups: a lookup hashes its key.
    let (mut prompt, mut candidates, mut thoughts, mut cached, mut tool_use_prompt) =
        (0, 0, None, None, None);
    for (key, value) in raw {
        let optional = match key.as_str() {
            "promptTokenCount" | "candidatesTokenCount" | "totalTokenCount" => false,
            "thoughtsTokenCount" | "cachedContentTokenCount" | "toolUsePromptTokenCount" => true,
            _ => continue,
        };
        if optional && value.is_null() {
            continue;
        }
        let count = value.as_u64()?;
        match key.as_str() {
            "promptTokenCount" => prompt = count,
            "candidatesTokenCount" => candidates = count,
            "thoughtsTokenCount" => thoughts = Some(count),
            "cachedContentTokenCount" => cached = Some(count),
            "toolUsePromptTokenCount" => tool_use_prompt = Some(count),
            // The total is not used, but one that is not a count spoils the usage, as there.
            _ => {}
        }
    }
    Some(Usage {
        // Saturating: a provider's absurd count is not a reason to panic.
        input_tokens: prompt.saturating_add(tool_use_prompt.unwrap_or(0)),
        output_tokens: candidates.saturating_add(thoughts.unwrap_or(0)),
        cached_input_tokens: cached,
        cache_creation_input_tokens: None,
        reasoning_tokens: thoughts,
        extensions: Extensions::new(PROTOCOL, raw.clone()),
    })
}

/// An upstream `{"error":{code,message,status}}` as a chunk error.
pub fn upstream_error(error: &Value) -> ChunkError {
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| error.to_string());
    ChunkError::Upstream {
        message,
        error_type: error
            .get("status")
            .and_then(Value::as_str)
            .map(str::to_owned),
        code: error.get("code").map(|c| match c {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }),
    }
}

fn scoped(scope: &str, value: Value) -> Event {
    let mut fields = Map::new();
    fields.insert(scope.into(), value);
    Event::Extension(Extensions::new(PROTOCOL, fields))
}

/// Keeps the characters an id may hold everywhere (Anthropic: `[A-Za-z0-9_-]`).
fn id_safe(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect()
}

/// Reads the payloads of an upstream Gemini stream into events.
#[derive(Debug, Default)]
pub struct ChunkDecoder {
    started: bool,
    id: String,
    /// Top-level unknown fields as last sent, to pass on only what changes.
    top: Map<String, Value>,
    calls: u32,
    finished: bool,
}

impl ChunkDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes one record (an SSE `data:` payload or one element of the JSON array).
    pub fn push(&mut self, data: &str, out: &mut Vec<Event>) -> Result<(), ChunkError> {
        let data = data.trim();
        if data.is_empty() {
            return Ok(());
        }
        let record: GenerateContentResponse = serde_json::from_str(data).map_err(|e| {
            ChunkError::Garbage(format!(
                "stream record is not a GenerateContentResponse ({e}): {}",
                preview(data)
            ))
        })?;
        self.record(record, out)
    }

    fn record(
        &mut self,
        record: GenerateContentResponse,
        out: &mut Vec<Event>,
    ) -> Result<(), ChunkError> {
        // An error object first: it has no candidates, and reading it as an empty
        // record would turn a failure into an empty success.
        if let Some(error) = record.extra.get("error") {
            return Err(upstream_error(error));
        }
        let GenerateContentResponse {
            candidates,
            prompt_feedback,
            usage_metadata,
            model_version,
            response_id,
            mut extra,
        } = record;
        extra.retain(|_, v| !v.is_null());
        if !self.started {
            self.started = true;
            self.id = response_id
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| format!("gemini-{:016x}", fastrand::u64(..)));
            self.top = extra.clone();
            let mut fields = Map::new();
            if !extra.is_empty() {
                fields.insert("top".into(), Value::Object(extra));
            }
            out.push(Event::Start {
                id: self.id.clone(),
                model: model_version.unwrap_or_default(),
                created: None,
                extensions: Extensions::new(PROTOCOL, fields),
            });
        } else {
            let changed: Map<String, Value> = extra
                .into_iter()
                .filter(|(k, v)| self.top.get(k) != Some(v))
                .collect();
            if !changed.is_empty() {
                self.top.extend(changed.clone());
                out.push(scoped("top", Value::Object(changed)));
            }
        }
        let blocked = prompt_feedback
            .as_ref()
            .and_then(|f| f.get("blockReason"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        if let Some(feedback) = prompt_feedback {
            out.push(scoped("promptFeedback", feedback));
        }

        let mut finish = None;
        // Only the first candidate: llmux serves one choice.
        let candidate = candidates.into_iter().find(|c| c.index.unwrap_or(0) == 0);
        if let Some(candidate) = candidate {
            finish = self.candidate(candidate, out);
        } else if blocked.is_some() {
            // The prompt was blocked: no candidates at all.
            finish = Some(FinishReason::ContentFilter);
        }
        if let Some(u) = usage_metadata.as_ref().and_then(usage) {
            out.push(Event::Usage(u));
        }
        // Once: some servers repeat the finish reason on trailing records.
        if let Some(reason) = finish.filter(|_| !self.finished) {
            self.finished = true;
            out.push(Event::Finish {
                reason,
                stop_sequence: None,
            });
        }
        Ok(())
    }

    fn candidate(&mut self, candidate: Candidate, out: &mut Vec<Event>) -> Option<FinishReason> {
        let Candidate {
            content,
            finish_reason: reason,
            index: _,
            mut extra,
        } = candidate;
        extra.retain(|_, v| !v.is_null());
        if !extra.is_empty() {
            out.push(scoped("candidate", Value::Object(extra)));
        }
        if let Some(content) = content {
            let mut content_extra = content.extra;
            content_extra.retain(|_, v| !v.is_null());
            if !content_extra.is_empty() {
                out.push(scoped("content", Value::Object(content_extra)));
            }
            for part in content.parts {
                self.part(part, out);
            }
        }
        let reason = reason.filter(|r| !r.is_empty())?;
        if is_content_filter(&reason) && reason != "SAFETY" {
            out.push(scoped("finishReason", Value::String(reason.clone())));
        }
        Some(finish_reason(&reason, self.calls > 0))
    }

    fn part(&mut self, part: WirePart, out: &mut Vec<Event>) {
        let is_thought = part.thought == Some(true) && part.function_call.is_none();
        let modelled = part.inline_data.is_none()
            && part.file_data.is_none()
            && part.function_response.is_none()
            && part.data_field_count() <= 1
            && (part.text.is_some() || part.function_call.is_some() || is_thought);
        if !modelled {
            if let Ok(raw) = serde_json::to_value(&part) {
                out.push(scoped("parts", Value::Array(vec![raw])));
            }
            return;
        }
        let WirePart {
            text,
            function_call,
            thought_signature,
            mut extra,
            ..
        } = part;
        extra.retain(|_, v| !v.is_null());
        if !extra.is_empty() {
            out.push(scoped("part", Value::Object(extra)));
        }
        if is_thought {
            let text = text.unwrap_or_default();
            if !text.is_empty() || thought_signature.is_some() {
                out.push(Event::ThinkingDelta {
                    text,
                    signature: thought_signature,
                });
            }
            return;
        }
        if let Some(signature) = thought_signature {
            out.push(Event::ThinkingDelta {
                text: String::new(),
                signature: Some(signature),
            });
        }
        if let Some(text) = text {
            if !text.is_empty() {
                out.push(Event::TextDelta(text));
            }
            return;
        }
        if let Some(call) = function_call {
            let index = self.calls;
            self.calls += 1;
            let id = call
                .id
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| format!("{SYNTHETIC_ID_PREFIX}{}_{index}", id_safe(&self.id)));
            let arguments = match call.args {
                Some(Value::Object(args)) => Value::Object(args).to_string(),
                Some(Value::Null) | None => "{}".to_owned(),
                Some(other) => other.to_string(),
            };
            out.push(Event::ToolCallStart {
                index,
                id,
                name: call.name,
            });
            out.push(Event::ToolCallArgsDelta { index, arguments });
            out.push(Event::ToolCallEnd { index });
        }
    }

    /// Called when the upstream body ends: a stream without a finish reason was cut off.
    pub fn finish(&mut self) -> Result<(), ChunkError> {
        if self.finished {
            Ok(())
        } else {
            Err(ChunkError::Truncated)
        }
    }

    /// For a whole (non-streaming) response: one without a finish reason still ends.
    pub(crate) fn finish_lenient(&mut self, out: &mut Vec<Event>) {
        if !self.finished {
            self.finished = true;
            out.push(Event::Finish {
                reason: if self.calls > 0 {
                    FinishReason::ToolUse
                } else {
                    FinishReason::EndTurn
                },
                stop_sequence: None,
            });
        }
    }
}

fn preview(data: &str) -> String {
    let mut end = data.len().min(120);
    while !data.is_char_boundary(end) {
        end -= 1;
    }
    data[..end].to_owned()
}

/// How a client asked to stream: `?alt=sse` (what the Google SDKs and Gemini CLI use) or
/// the default streamed JSON array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFormat {
    /// `data: {..}\n\n` records.
    Sse,
    /// `[{..}`, `,\r\n{..}`, ..., `]`: valid JSON once complete.
    JsonArray,
}

impl StreamFormat {
    /// The format for a request's `alt` query parameter.
    pub fn from_alt(alt: Option<&str>) -> Self {
        match alt {
            Some(alt) if alt.eq_ignore_ascii_case("sse") => StreamFormat::Sse,
            _ => StreamFormat::JsonArray,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            StreamFormat::Sse => "text/event-stream",
            StreamFormat::JsonArray => "application/json",
        }
    }
}

#[derive(Debug)]
struct OpenCall {
    index: u32,
    id: String,
    name: String,
    arguments: String,
    /// A signature that arrived just before the call opened.
    signature: Option<String>,
    part: Map<String, Value>,
}

/// Encodes events as a Gemini client's stream.
///
/// Normalizations (the client still folds to the same answer): one record per text,
/// thought or call, with `modelVersion` and `responseId` on each; calls go out whole when
/// they end (other protocols stream their arguments); the finish reason and the final
/// `usageMetadata` travel in a last record of their own, whose content is an empty text
/// part (carrying a trailing signature when there is one), as Gemini's own last records
/// often are. A stream that never finished ends with an error record instead, so a
/// cut-off answer never looks whole (Gemini CLI insists on a final finish reason).
#[derive(Debug)]
pub struct ChunkEncoder {
    format: StreamFormat,
    id: String,
    model: String,
    top: Map<String, Value>,
    prompt_feedback: Option<Value>,
    candidate: Map<String, Value>,
    content: Map<String, Value>,
    part: Map<String, Value>,
    signature: Option<String>,
    calls: Vec<OpenCall>,
    usage: Option<Usage>,
    finish: Option<FinishReason>,
    finish_hint: Option<String>,
    records: usize,
    answered: bool,
    closed: bool,
}

impl ChunkEncoder {
    /// The format this encoder writes.
    pub fn format(&self) -> StreamFormat {
        self.format
    }

    pub fn new(format: StreamFormat) -> Self {
        Self {
            format,
            id: String::new(),
            model: String::new(),
            top: Map::new(),
            prompt_feedback: None,
            candidate: Map::new(),
            content: Map::new(),
            part: Map::new(),
            signature: None,
            calls: Vec::new(),
            usage: None,
            finish: None,
            finish_hint: None,
            records: 0,
            answered: false,
            closed: false,
        }
    }

    fn frame(&mut self, value: &Value) -> Bytes {
        self.records += 1;
        match self.format {
            StreamFormat::Sse => data_frame(value),
            StreamFormat::JsonArray => {
                let json = serde_json::to_vec(value).unwrap_or_else(|_| {
                    br#"{"error":{"code":500,"message":"llmux failed to encode a record","status":"INTERNAL"}}"#.to_vec()
                });
                let mut buf = BytesMut::with_capacity(json.len() + 3);
                buf.put_slice(if self.records == 1 { b"[" } else { b",\r\n" });
                buf.put_slice(&json);
                buf.freeze()
            }
        }
    }

    /// What [`Self::frame`] puts before a record's JSON.
    fn frame_start(&mut self, buf: &mut BytesMut) {
        self.records += 1;
        buf.put_slice(match self.format {
            StreamFormat::Sse => b"data: ",
            StreamFormat::JsonArray if self.records == 1 => b"[",
            StreamFormat::JsonArray => b",\r\n",
        });
    }

    /// A record of one text part (a thought when `thought`), written directly when nothing
    /// else rides on it, which is nearly every record of a stream: byte for byte what
    /// [`Self::part_record`] writes, which builds the record as a `Value` tree (with a copy
    /// of the stream's top-level fields) and serializes it, ~17k instructions a record.
    fn text_record(&mut self, text: String, thought: bool, signature: Option<String>) -> Bytes {
        const OWN_KEYS: [&str; 5] = [
            "promptFeedback",
            "candidates",
            "usageMetadata",
            "modelVersion",
            "responseId",
        ];
        let plain = signature.is_none()
            && self.part.is_empty()
            && self.candidate.is_empty()
            && self.content.is_empty()
            && self.prompt_feedback.is_none()
            && !OWN_KEYS.iter().any(|key| self.top.contains_key(*key));
        if !plain {
            let mut part = json_part("text", text);
            if thought {
                part.insert("thought".into(), Value::Bool(true));
            }
            return self.part_record(part, signature);
        }
        self.answered = true;
        let mut buf = BytesMut::with_capacity(text.len() + self.model.len() + 160);
        self.frame_start(&mut buf);
        if self.top.is_empty() {
            buf.put_slice(b"{");
        } else {
            let mut writer = buf.writer();
            // Serializing a map of JSON values into memory cannot fail.
            let _ = serde_json::to_writer(&mut writer, &self.top);
            buf = writer.into_inner();
            buf.truncate(buf.len() - 1);
            buf.put_slice(b",");
        }
        buf.put_slice(br#""candidates":[{"content":{"parts":[{"text":"#);
        push_json_string(&mut buf, &text);
        if thought {
            buf.put_slice(br#","thought":true"#);
        }
        buf.put_slice(br#"}],"role":"model"},"index":0}],"modelVersion":"#);
        push_json_string(&mut buf, &self.model);
        buf.put_slice(br#","responseId":"#);
        push_json_string(&mut buf, &self.id);
        buf.put_slice(b"}");
        if self.format == StreamFormat::Sse {
            buf.put_slice(b"\n\n");
        }
        buf.freeze()
    }

    /// A record holding `parts` (and the finish reason and usage on the last one).
    fn record(&mut self, parts: Vec<Value>, finish: Option<String>, usage: Option<Value>) -> Bytes {
        let mut body = self.top.clone();
        if let Some(feedback) = self.prompt_feedback.take() {
            body.insert("promptFeedback".into(), feedback);
        }
        let mut candidate = std::mem::take(&mut self.candidate);
        let mut content = std::mem::take(&mut self.content);
        content.insert("parts".into(), Value::Array(parts));
        content.insert("role".into(), Value::from("model"));
        candidate.insert("content".into(), Value::Object(content));
        if let Some(finish) = finish {
            candidate.insert("finishReason".into(), Value::from(finish));
        }
        candidate.insert("index".into(), Value::from(0));
        body.insert("candidates".into(), json!([candidate]));
        if let Some(usage) = usage {
            body.insert("usageMetadata".into(), usage);
        }
        body.insert("modelVersion".into(), Value::from(self.model.as_str()));
        body.insert("responseId".into(), Value::from(self.id.as_str()));
        let body = Value::Object(body);
        self.frame(&body)
    }

    /// One part, with the pending signature and unknown part fields.
    fn part_record(&mut self, mut part: Map<String, Value>, signature: Option<String>) -> Bytes {
        for (k, v) in std::mem::take(&mut self.part) {
            part.entry(k).or_insert(v);
        }
        if let Some(signature) = signature {
            part.insert("thoughtSignature".into(), Value::from(signature));
        }
        self.answered = true;
        self.record(vec![Value::Object(part)], None, None)
    }

    fn flush_signature(&mut self, out: &mut Vec<Bytes>) {
        if let Some(signature) = self.signature.take() {
            let mut part = Map::new();
            part.insert("thought".into(), Value::Bool(true));
            out.push(self.part_record(part, Some(signature)));
        }
    }

    fn close_call(&mut self, position: usize, out: &mut Vec<Bytes>) {
        let call = self.calls.remove(position);
        let mut part = call_part(&call.id, &call.name, &call.arguments);
        for (k, v) in call.part {
            part.entry(k).or_insert(v);
        }
        out.push(self.part_record(part, call.signature));
    }

    /// Encodes one event into zero or more records.
    pub fn push(&mut self, event: Event, out: &mut Vec<Bytes>) {
        if self.closed {
            return;
        }
        match event {
            Event::Start {
                id,
                model,
                extensions,
                ..
            } => {
                self.id = id;
                self.model = model;
                if let Some(fields) = extensions.for_protocol(PROTOCOL) {
                    self.extension(fields.clone(), out);
                }
            }
            Event::TextDelta(text) | Event::RefusalDelta(text) => {
                if !text.is_empty() {
                    let signature = self.signature.take();
                    out.push(self.text_record(text, false, signature));
                }
            }
            Event::ThinkingDelta { text, signature } => {
                if text.is_empty() {
                    if signature.is_some() {
                        self.flush_signature(out);
                        self.signature = signature;
                    }
                    return;
                }
                self.flush_signature(out);
                out.push(self.text_record(text, true, signature));
            }
            Event::RedactedThinking(_) => {}
            Event::ToolCallStart { index, id, name } => {
                let signature = self.signature.take();
                let part = std::mem::take(&mut self.part);
                self.calls.push(OpenCall {
                    index,
                    id,
                    name,
                    arguments: String::new(),
                    signature,
                    part,
                });
            }
            Event::ToolCallArgsDelta { index, arguments } => {
                if let Some(call) = self.calls.iter_mut().rev().find(|c| c.index == index) {
                    call.arguments.push_str(&arguments);
                }
            }
            Event::ToolCallEnd { index } => {
                if let Some(position) = self.calls.iter().position(|c| c.index == index) {
                    self.close_call(position, out);
                }
            }
            Event::Usage(usage) => self.usage = Some(usage),
            Event::Finish { reason, .. } => {
                while !self.calls.is_empty() {
                    self.close_call(0, out);
                }
                self.finish = Some(reason);
            }
            Event::Extension(extensions) => {
                if let Some(fields) = extensions.for_protocol(PROTOCOL) {
                    self.extension(fields.clone(), out);
                }
            }
            Event::Error(error) => {
                self.error(&error, out);
            }
        }
    }

    fn extension(&mut self, fields: Map<String, Value>, out: &mut Vec<Bytes>) {
        for (scope, value) in fields {
            match (scope.as_str(), value) {
                ("top", Value::Object(top)) => self.top.extend(top),
                ("candidate", Value::Object(c)) => self.candidate.extend(c),
                ("content", Value::Object(c)) => self.content.extend(c),
                ("part", Value::Object(p)) => self.part.extend(p),
                ("promptFeedback", feedback) => self.prompt_feedback = Some(feedback),
                ("finishReason", Value::String(hint)) => self.finish_hint = Some(hint),
                ("parts", Value::Array(parts)) => {
                    self.answered = true;
                    let frame = self.record(parts, None, None);
                    out.push(frame);
                }
                _ => {}
            }
        }
    }

    fn error(&mut self, error: &Error, out: &mut Vec<Bytes>) {
        self.closed = true;
        let body = error_body(error);
        out.push(self.frame(&body));
        if self.format == StreamFormat::JsonArray {
            out.push(Bytes::from_static(b"]"));
        }
    }

    /// Ends the stream: the last record (finish reason and usage), then `]` for arrays.
    pub fn finish(&mut self, out: &mut Vec<Bytes>) {
        if self.closed {
            return;
        }
        while !self.calls.is_empty() {
            self.close_call(0, out);
        }
        let Some(finish) = self.finish.clone() else {
            let error = Error::internal("the response ended without a finish reason");
            self.error(&error, out);
            return;
        };
        self.closed = true;
        let usage = self.usage.as_ref().map(usage_metadata);
        let blocked = !self.answered
            && self
                .prompt_feedback
                .as_ref()
                .is_some_and(|f| f.get("blockReason").is_some());
        if blocked {
            // A blocked prompt: Gemini sends promptFeedback and no candidates.
            let mut body = self.top.clone();
            if let Some(feedback) = self.prompt_feedback.take() {
                body.insert("promptFeedback".into(), feedback);
            }
            if let Some(usage) = usage {
                body.insert("usageMetadata".into(), usage);
            }
            body.insert("modelVersion".into(), Value::from(self.model.as_str()));
            body.insert("responseId".into(), Value::from(self.id.as_str()));
            let frame = self.frame(&Value::Object(body));
            out.push(frame);
        } else {
            let mut part = json_part("text", String::new());
            for (k, v) in std::mem::take(&mut self.part) {
                part.entry(k).or_insert(v);
            }
            if let Some(signature) = self.signature.take() {
                part.insert("thoughtSignature".into(), Value::from(signature));
            }
            let reason = wire_finish_reason(&finish, self.finish_hint.as_deref());
            let frame = self.record(vec![Value::Object(part)], Some(reason), usage);
            out.push(frame);
        }
        if self.format == StreamFormat::JsonArray {
            out.push(Bytes::from_static(b"]"));
        }
    }
}

fn json_part(key: &str, text: String) -> Map<String, Value> {
    let mut part = Map::new();
    part.insert(key.into(), Value::String(text));
    part
}

/// Cuts a streamed JSON array (`[{..},{..}]`, arriving in arbitrary pieces) into its
/// elements, each a complete JSON object text. Works on bytes, so a piece may end inside
/// a multi-byte character; only ASCII structure is looked at.
#[derive(Debug, Default)]
pub struct JsonArraySplitter {
    buffer: Vec<u8>,
    /// Where the element being read starts in `buffer`, once its `{` is seen.
    start: Option<usize>,
    depth: u32,
    lexer: JsonLexer,
    opened: bool,
    closed: bool,
}

impl JsonArraySplitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes, appending each completed element's text to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<String>) -> Result<(), ChunkError> {
        let from = self.buffer.len();
        self.buffer.extend_from_slice(bytes);
        for i in from..self.buffer.len() {
            let b = self.buffer[i];
            if let Some(start) = self.start {
                match self.lexer.step(b) {
                    Byte::Open(_) => self.depth += 1,
                    Byte::Close(_) => {
                        self.depth -= 1;
                        if self.depth == 0 {
                            let element =
                                std::str::from_utf8(&self.buffer[start..=i]).map_err(|e| {
                                    ChunkError::Garbage(format!("stream record is not UTF-8: {e}"))
                                })?;
                            out.push(element.to_owned());
                            self.start = None;
                        }
                    }
                    _ => {}
                }
                continue;
            }
            match b {
                _ if b.is_ascii_whitespace() => {}
                b'[' if !self.opened => self.opened = true,
                b',' if self.opened && !self.closed => {}
                b']' if self.opened && !self.closed => self.closed = true,
                b'{' if self.opened && !self.closed => {
                    self.start = Some(i);
                    self.depth = 1;
                }
                _ => {
                    return Err(ChunkError::Garbage(format!(
                        "a streamed Gemini response must be a JSON array of objects; \
                         unexpected '{}'",
                        char::from(b).escape_default()
                    )));
                }
            }
        }
        // Keep only the element being read.
        let keep_from = self.start.unwrap_or(self.buffer.len());
        self.buffer.drain(..keep_from);
        if self.start.is_some() {
            self.start = Some(0);
        }
        Ok(())
    }

    /// Called at the end of the body: an array that never closed was cut off.
    pub fn finish(&self) -> Result<(), ChunkError> {
        if self.closed {
            Ok(())
        } else {
            Err(ChunkError::Truncated)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::types::UsageMetadata;

    /// Read straight from the object, usage is what reading it as [`UsageMetadata`] gives,
    /// or none where that fails, for counts of every kind: absent, null, integers, negative
    /// and fractional numbers, text.
    #[test]
    fn usage_reads_the_counts_as_the_wire_type_does() {
        const KEYS: [&str; 6] = [
            "promptTokenCount",
            "candidatesTokenCount",
            "totalTokenCount",
            "thoughtsTokenCount",
            "cachedContentTokenCount",
            "toolUsePromptTokenCount",
        ];
        let values = [
            serde_json::json!(null),
            serde_json::json!(0),
            serde_json::json!(17),
            serde_json::json!(u64::MAX),
            serde_json::json!(-3),
            serde_json::json!(2.5),
            serde_json::json!("9"),
        ];
        let mut rng = fastrand::Rng::with_seed(33);
        let mut read = 0;
        for _ in 0..3000 {
            let mut object = serde_json::Map::new();
            for key in KEYS {
                if rng.u8(..3) > 0 {
                    object.insert(key.into(), values[rng.usize(..values.len())].clone());
                }
            }
            object.insert(
                "promptTokensDetails".into(),
                serde_json::json!([{"modality": "TEXT"}]),
            );
            let value = Value::Object(object);
            let expected = serde_json::from_value::<UsageMetadata>(value.clone())
                .ok()
                .map(|wire| {
                    let thoughts = wire.thoughts_token_count.unwrap_or(0);
                    (
                        wire.prompt_token_count
                            .saturating_add(wire.tool_use_prompt_token_count.unwrap_or(0)),
                        wire.candidates_token_count.saturating_add(thoughts),
                        wire.cached_content_token_count,
                        wire.thoughts_token_count,
                    )
                });
            let got = usage(&value).map(|u| {
                assert_eq!(u.extensions.for_protocol(PROTOCOL), value.as_object());
                (
                    u.input_tokens,
                    u.output_tokens,
                    u.cached_input_tokens,
                    u.reasoning_tokens,
                )
            });
            assert_eq!(got, expected, "{value}");
            read += usize::from(got.is_some());
        }
        assert!(read > 100, "only {read} objects had usage");
    }

    use super::*;

    #[test]
    fn a_text_record_is_written_byte_for_byte_as_the_value_tree_was() {
        let texts = crate::protocol::sse::AWKWARD_TEXTS;
        let tops = [
            Map::new(),
            json!({"x_vendor": {"a": [1, "b"]}, "z": null})
                .as_object()
                .unwrap()
                .clone(),
        ];
        let mut checked = 0;
        for format in [StreamFormat::Sse, StreamFormat::JsonArray] {
            for top in &tops {
                for thought in [false, true] {
                    for text in texts {
                        let (mut direct, mut tree) =
                            (ChunkEncoder::new(format), ChunkEncoder::new(format));
                        for encoder in [&mut direct, &mut tree] {
                            encoder.id = "resp-\"1\"".into();
                            encoder.model = "gemini-2.5-flash".into();
                            encoder.top = top.clone();
                            // The second record of a JSON array starts with its separator.
                            encoder.records = usize::from(text == "Hello");
                        }
                        let mut part = json_part("text", text.to_owned());
                        if thought {
                            part.insert("thought".into(), Value::Bool(true));
                        }
                        assert_eq!(
                            String::from_utf8_lossy(&direct.text_record(
                                text.into(),
                                thought,
                                None
                            )),
                            String::from_utf8_lossy(&tree.part_record(part, None))
                        );
                        assert_eq!(direct.records, tree.records);
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 2 * 2 * 2 * 3);
    }

    #[test]
    fn a_text_record_with_anything_riding_on_it_keeps_it() {
        // One rider at a time: a direct record that dropped or misplaced it would differ
        // from the tree.
        type Rider = fn(&mut ChunkEncoder);
        let riders: [(&str, Rider); 6] = [
            ("candidate", |e| {
                e.candidate.insert("safetyRatings".into(), json!([]));
            }),
            ("content", |e| {
                e.content.insert("x_content".into(), json!(1));
            }),
            ("part", |e| {
                e.part.insert("x_part".into(), json!("p"));
            }),
            ("feedback", |e| {
                e.prompt_feedback = Some(json!({"blockReason": "OTHER"}));
            }),
            ("top key of the record", |e| {
                e.top.insert("modelVersion".into(), json!("old"));
            }),
            ("signature", |_| {}),
        ];
        for (name, ride) in riders {
            let signature = (name == "signature").then(|| "sig".to_owned());
            let (mut direct, mut tree) = (
                ChunkEncoder::new(StreamFormat::Sse),
                ChunkEncoder::new(StreamFormat::Sse),
            );
            for encoder in [&mut direct, &mut tree] {
                encoder.model = "m".into();
                ride(encoder);
            }
            let record = direct.text_record("Hi".into(), false, signature.clone());
            assert_eq!(
                String::from_utf8_lossy(&record),
                String::from_utf8_lossy(
                    &tree.part_record(json_part("text", "Hi".into()), signature)
                ),
                "{name}"
            );
            let mut bare = ChunkEncoder::new(StreamFormat::Sse);
            bare.model = "m".into();
            assert_ne!(
                String::from_utf8_lossy(&record),
                String::from_utf8_lossy(&bare.text_record("Hi".into(), false, None)),
                "{name} rides on the record"
            );
        }
    }

    fn decode(records: &[&str]) -> (Vec<Event>, Result<(), ChunkError>) {
        let mut decoder = ChunkDecoder::new();
        let mut events = Vec::new();
        for record in records {
            if let Err(e) = decoder.push(record, &mut events) {
                return (events, Err(e));
            }
        }
        let end = decoder.finish();
        (events, end)
    }

    #[test]
    fn stop_after_function_calls_is_tool_use() {
        let (events, end) = decode(&[
            r#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"name":"f","args":{"a":1}}}]},"finishReason":"STOP","index":0}],"responseId":"r1"}"#,
        ]);
        end.unwrap();
        assert!(matches!(&events[1], Event::ToolCallStart { id, .. } if id == "gemini_call_r1_0"));
        assert!(
            matches!(&events[2], Event::ToolCallArgsDelta { arguments, .. } if arguments == r#"{"a":1}"#)
        );
        assert!(matches!(
            events.last(),
            Some(Event::Finish {
                reason: FinishReason::ToolUse,
                ..
            })
        ));
    }

    #[test]
    fn a_repeated_finish_reason_finishes_once() {
        let (events, end) = decode(&[
            r#"{"candidates":[{"content":{"parts":[{"text":"a"}]},"finishReason":"STOP"}]}"#,
            r#"{"candidates":[{"content":{"parts":[{"text":""}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":1,"candidatesTokenCount":1,"totalTokenCount":2}}"#,
        ]);
        end.unwrap();
        let finishes = events
            .iter()
            .filter(|e| matches!(e, Event::Finish { .. }))
            .count();
        assert_eq!(finishes, 1);
        assert!(events.iter().any(|e| matches!(e, Event::Usage(_))));
    }

    #[test]
    fn a_call_flagged_as_thought_is_still_a_call() {
        let (events, _) = decode(&[
            r#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"f","args":{}},"thought":true,"thoughtSignature":"s"}]},"finishReason":"STOP"}],"responseId":"r"}"#,
        ]);
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::ToolCallStart { name, .. } if name == "f"))
        );
    }

    #[test]
    fn foreign_signatures_go_on_the_next_part_or_stand_alone() {
        // Anthropic-style: thinking text, then its signature alone, then a second
        // thinking block, then a call.
        let mut encoder = ChunkEncoder::new(StreamFormat::Sse);
        let mut out = Vec::new();
        for event in [
            Event::ThinkingDelta {
                text: "one".into(),
                signature: None,
            },
            Event::ThinkingDelta {
                text: String::new(),
                signature: Some("sig1".into()),
            },
            Event::ThinkingDelta {
                text: "two".into(),
                signature: None,
            },
            Event::ThinkingDelta {
                text: String::new(),
                signature: Some("sig2".into()),
            },
            Event::ToolCallStart {
                index: 0,
                id: "toolu_1".into(),
                name: "f".into(),
            },
            Event::ToolCallArgsDelta {
                index: 0,
                arguments: "{\"a\":1}".into(),
            },
            Event::ToolCallEnd { index: 0 },
            Event::Finish {
                reason: FinishReason::ToolUse,
                stop_sequence: None,
            },
        ] {
            encoder.push(event, &mut out);
        }
        encoder.finish(&mut out);
        let parts: Vec<Value> = out
            .iter()
            .map(|frame| {
                let text = std::str::from_utf8(frame).unwrap();
                let record: Value =
                    serde_json::from_str(text.strip_prefix("data: ").unwrap().trim()).unwrap();
                record["candidates"][0]["content"]["parts"][0].clone()
            })
            .collect();
        assert_eq!(
            parts,
            [
                json!({"text": "one", "thought": true}),
                json!({"thought": true, "thoughtSignature": "sig1"}),
                json!({"text": "two", "thought": true}),
                json!({"functionCall": {"name": "f", "args": {"a": 1}, "id": "toolu_1"},
                       "thoughtSignature": "sig2"}),
                json!({"text": ""}),
            ]
        );
    }

    #[test]
    fn a_blocked_prompt_is_a_content_filter_not_an_empty_success() {
        let (events, end) = decode(&[
            r#"{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":8,"totalTokenCount":8},"responseId":"r"}"#,
        ]);
        end.unwrap();
        assert!(matches!(
            events.last(),
            Some(Event::Finish {
                reason: FinishReason::ContentFilter,
                ..
            })
        ));
    }

    #[test]
    fn the_last_usage_wins() {
        let (events, _) = decode(&[
            r#"{"candidates":[{"content":{"parts":[{"text":"a"}]}}],"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":1,"totalTokenCount":6}}"#,
            r#"{"candidates":[{"content":{"parts":[{"text":"b"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":2,"thoughtsTokenCount":7,"totalTokenCount":14}}"#,
        ]);
        let mut builder = crate::model::ResponseBuilder::new();
        for event in events {
            builder.push(event).unwrap();
        }
        let usage = builder.finish().usage.unwrap();
        assert_eq!((usage.input_tokens, usage.output_tokens), (5, 9));
        assert_eq!(usage.reasoning_tokens, Some(7));
    }

    #[test]
    fn an_error_record_is_an_error() {
        let (_, end) = decode(&[
            r#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#,
        ]);
        assert_eq!(
            end,
            Err(ChunkError::Upstream {
                message: "The model is overloaded.".into(),
                error_type: Some("UNAVAILABLE".into()),
                code: Some("503".into()),
            })
        );
    }

    #[test]
    fn a_stream_without_finish_reason_is_truncated() {
        let (_, end) = decode(&[r#"{"candidates":[{"content":{"parts":[{"text":"a"}]}}]}"#]);
        assert_eq!(end, Err(ChunkError::Truncated));
        let (_, end) = decode(&["not json"]);
        assert!(matches!(end, Err(ChunkError::Garbage(m)) if m.contains("not json")));
    }

    #[test]
    fn the_array_splitter_finds_elements_split_anywhere() {
        let body = "[{\"a\":\"x]}\\\"\"}\n,\r\n{\"b\":[1,{\"c\":\"é\"}]}\n]";
        let bytes = body.as_bytes();
        for cut in 0..bytes.len() {
            let mut splitter = JsonArraySplitter::new();
            let mut out = Vec::new();
            splitter.push(&bytes[..cut], &mut out).unwrap();
            splitter.push(&bytes[cut..], &mut out).unwrap();
            splitter.finish().unwrap();
            assert_eq!(
                out,
                [r#"{"a":"x]}\""}"#, r#"{"b":[1,{"c":"é"}]}"#],
                "cut {cut}"
            );
        }
        let mut splitter = JsonArraySplitter::new();
        let mut out = Vec::new();
        splitter.push(b"[{\"a\":1}", &mut out).unwrap();
        assert_eq!(splitter.finish(), Err(ChunkError::Truncated));
        assert!(
            JsonArraySplitter::new()
                .push(b"data: {}", &mut out)
                .is_err()
        );
    }

    #[test]
    fn the_array_encoder_makes_valid_json() {
        for events in [
            vec![
                Event::Start {
                    id: "r".into(),
                    model: "m".into(),
                    created: None,
                    extensions: Extensions::default(),
                },
                Event::TextDelta("hi".into()),
                Event::Finish {
                    reason: FinishReason::EndTurn,
                    stop_sequence: None,
                },
            ],
            vec![Event::Error(Error::internal("boom"))],
            vec![Event::TextDelta("cut".into())],
        ] {
            let mut encoder = ChunkEncoder::new(StreamFormat::JsonArray);
            let mut out = Vec::new();
            for event in events {
                encoder.push(event, &mut out);
            }
            encoder.finish(&mut out);
            let body: Vec<u8> = out.iter().flat_map(|b| b.to_vec()).collect();
            let value: Value = serde_json::from_slice(&body).unwrap();
            assert!(value.is_array(), "{value}");
        }
    }
}
