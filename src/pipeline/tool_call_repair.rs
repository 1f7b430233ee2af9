//! Tool-call repair: the calls a model meant to make reach the client as calls.
//!
//! - **Calls written as text.** Some models (Hermes and Qwen templates behind vLLM or
//!   Ollama, Mistral, Llama 3.1, models prompted without native tool support) print a call
//!   instead of making it: `<tool_call>{"name": ..., "arguments": ...}</tool_call>`,
//!   Qwen3-Coder's `<function=NAME><parameter=KEY>value</parameter></function>`, a
//!   ```` ```json ```` block, `[TOOL_CALLS][...]`, `<|python_tag|>{...}`, or an answer that is
//!   nothing but the call's JSON. When the request offered tools, such a block that names an
//!   offered tool becomes a tool call, streamed or not. Text is held only from a possible
//!   block's opening on, up to `buffer_bytes`; a block that turns out not to be a call (or
//!   grows past the bound) is given out as the text it was. Requests that offer no tools
//!   (Cline's XML tools live in its prompt) are never touched.
//! - **Malformed arguments.** A native call's arguments that are not a JSON object (trailing
//!   commas, single quotes, unquoted keys, cut off, JSON encoded twice, empty) are repaired
//!   with the structured-output repairer ([`super::structured_output::repairs`]). A call's
//!   arguments are held until the call ends, to be checked whole.
//!
//! Its filter sees the answer right after the `<think>` filter, before the other stages, so
//! the tool-call reactor and the dangerous-command check see the repaired calls.

use serde_json::Value;

use super::structured_output::repairs;
use super::think_tags::partial_tag_at_end;
use super::tool_match::normalized_name;
use super::{EventFilter, Phases, Reads, RequestContext, Stage, Trail};
use crate::model::json_scan::{Byte, JsonLexer};
use crate::model::{Event, FinishReason, Request, Shared, Tool};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepairSettings {
    pub enabled: bool,
    /// The most text held while a possible call written as text is read.
    pub buffer_bytes: usize,
}

impl Default for RepairSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            buffer_bytes: 65_536,
        }
    }
}

/// How a block that may hold a call begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opener {
    /// `<tool_call>` ... `</tool_call>` (Hermes, Qwen).
    ToolCallTag,
    /// `<function=NAME>` ... `</function>` (Qwen3-Coder, without the outer tag).
    FunctionTag,
    /// ```` ```json ```` or ```` ```tool_call ```` ... ```` ``` ````.
    Fence,
    /// `[TOOL_CALLS]` then JSON (Mistral).
    MistralTag,
    /// `<|python_tag|>` then JSON (Llama 3.1).
    PythonTag,
    /// The answer's text starts with `{`: it may be nothing but a call.
    BareJson,
}

const OPENERS: &[(&str, Opener)] = &[
    ("<tool_call>", Opener::ToolCallTag),
    ("<function=", Opener::FunctionTag),
    ("```json", Opener::Fence),
    ("```tool_call", Opener::Fence),
    ("[TOOL_CALLS]", Opener::MistralTag),
    ("<|python_tag|>", Opener::PythonTag),
];

/// The bytes an opener can start with: text without any of them passes untouched.
fn may_open(text: &str) -> bool {
    text.bytes().any(|b| matches!(b, b'<' | b'`' | b'['))
}

/// The tools the request offered, the request's own list: an agent's schemas are tens of
/// KB, and copying them for every answer cost more than the rest of a large request
/// (bench/callgrind.sh with `--extra-tools 20`).
struct Offered {
    tools: Shared<Tool>,
    /// Whether any is a function (a call written as text can name one).
    functions: bool,
}

impl Offered {
    fn of(request: &Request) -> Self {
        let functions = request.tools.iter().any(|tool| function(tool).is_some());
        Self {
            tools: request.tools.clone(),
            functions,
        }
    }

    fn functions(&self) -> impl Iterator<Item = (&String, Option<&Value>)> {
        self.tools.iter().filter_map(function)
    }

    /// The offered function a written name means (exactly, else compared as the tool
    /// matcher compares names): its name and argument schema.
    fn resolve(&self, name: &str) -> Option<(&String, Option<&Value>)> {
        self.functions().find(|(n, _)| *n == name).or_else(|| {
            let wanted = normalized_name(name);
            self.functions().find(|(n, _)| normalized_name(n) == wanted)
        })
    }
}

/// A function's name and argument schema.
fn function(tool: &Tool) -> Option<(&String, Option<&Value>)> {
    match tool {
        Tool::Function {
            name, parameters, ..
        } => Some((name, parameters.as_ref())),
        Tool::Opaque { .. } => None,
    }
}

/// What a block is, once its end is known.
enum BlockEnd {
    /// Not yet: more text is needed.
    Open,
    /// The block ends at this byte of the held text.
    At(usize),
    /// It is not a call after all.
    NotACall,
}

/// An incremental scan for the end of the first JSON value in a text: depth and string
/// state carried from chunk to chunk, so each byte is read once.
#[derive(Debug, Default)]
struct JsonScan {
    /// Bytes of the held text read so far.
    read: usize,
    started: bool,
    depth: usize,
    lexer: JsonLexer,
}

impl JsonScan {
    /// Reads `text[self.read..]`; the end of the value when it closes, `NotACall` when the
    /// first thing after `from` is not an object or array.
    fn advance(&mut self, text: &str, from: usize) -> BlockEnd {
        let bytes = text.as_bytes();
        self.read = self.read.max(from);
        while self.read < bytes.len() {
            let b = bytes[self.read];
            self.read += 1;
            if !self.started {
                match b {
                    b'{' | b'[' => {
                        self.started = true;
                        self.depth = 1;
                    }
                    b if b.is_ascii_whitespace() => {}
                    _ => return BlockEnd::NotACall,
                }
                continue;
            }
            match self.lexer.step(b) {
                Byte::Open(_) => self.depth += 1,
                Byte::Close(_) => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        return BlockEnd::At(self.read);
                    }
                }
                Byte::Other => {}
            }
        }
        BlockEnd::Open
    }
}

/// A block being read: its kind, the opener's length, and how far the search got.
struct Block {
    opener: Opener,
    opener_len: usize,
    searched: usize,
    json: JsonScan,
}

impl Block {
    fn new(opener: Opener, opener_len: usize) -> Self {
        Self {
            opener,
            opener_len,
            searched: opener_len,
            json: JsonScan::default(),
        }
    }

    /// Where the block in `held` (which starts with the opener) ends.
    fn end(&mut self, held: &str) -> BlockEnd {
        let closer = match self.opener {
            Opener::ToolCallTag => "</tool_call>",
            Opener::FunctionTag => "</function>",
            Opener::Fence => "```",
            Opener::MistralTag | Opener::PythonTag | Opener::BareJson => {
                return self.json.advance(held, self.opener_len);
            }
        };
        let from = self
            .searched
            .saturating_sub(closer.len() - 1)
            .max(self.opener_len);
        self.searched = held.len();
        match held.get(from..).and_then(|rest| rest.find(closer)) {
            Some(at) => BlockEnd::At(from + at + closer.len()),
            None => BlockEnd::Open,
        }
    }
}

/// The calls a block holds, each as an offered tool's name and JSON arguments; `None`
/// unless every call in it names an offered tool.
fn calls_in(block: &str, offered: &Offered) -> Option<Vec<(String, String)>> {
    if block.contains("<function=") {
        return xml_calls(block, offered);
    }
    let inner = strip_block(block);
    let value = parse_lenient(inner)?;
    let objects = match value {
        Value::Array(items) => items,
        object @ Value::Object(_) => vec![object],
        _ => return None,
    };
    let calls: Option<Vec<_>> = objects.iter().map(|o| json_call(o, offered)).collect();
    calls.filter(|c| !c.is_empty())
}

/// A block without its opener and closer.
fn strip_block(block: &str) -> &str {
    let mut inner = block.trim();
    for (opener, _) in OPENERS {
        if let Some(rest) = inner.strip_prefix(opener) {
            inner = rest;
            break;
        }
    }
    for closer in ["</tool_call>", "```"] {
        if let Some(rest) = inner.trim_end().strip_suffix(closer) {
            inner = rest;
        }
    }
    inner.trim()
}

/// JSON as written, or the first of its repairs that parses.
fn parse_lenient(text: &str) -> Option<Value> {
    serde_json::from_str(text).ok().or_else(|| {
        repairs(text)
            .iter()
            .find_map(|c| serde_json::from_str(c).ok())
    })
}

/// One call object in any of the shapes models print: `name`/`tool`/`tool_name`/`function`
/// with `arguments`/`parameters`/`input`/`args`, or `function: {name, arguments}`.
fn json_call(object: &Value, offered: &Offered) -> Option<(String, String)> {
    let object = match object.get("function") {
        Some(inner @ Value::Object(_)) => inner,
        _ => object,
    };
    let name = ["name", "tool", "tool_name", "function"]
        .iter()
        .find_map(|k| object.get(*k).and_then(Value::as_str))?;
    let (name, _) = offered.resolve(name)?;
    let arguments = ["arguments", "parameters", "input", "args", "params"]
        .iter()
        .find_map(|k| object.get(*k))
        .cloned()
        .unwrap_or_else(|| Value::Object(Default::default()));
    let arguments = match arguments {
        Value::String(text) => parse_lenient(&text).filter(Value::is_object)?,
        Value::Object(_) => arguments,
        _ => return None,
    };
    Some((name.clone(), arguments.to_string()))
}

/// Qwen3-Coder's calls: `<function=NAME>` with `<parameter=KEY>value</parameter>` inside.
/// A value is a string when the tool's schema says so, else JSON if it reads as JSON.
fn xml_calls(text: &str, offered: &Offered) -> Option<Vec<(String, String)>> {
    let mut calls = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("<function=") {
        let after = &rest[start + "<function=".len()..];
        let name_end = after.find('>')?;
        let (name, schema) = offered.resolve(after[..name_end].trim())?;
        let body_end = after.find("</function>").unwrap_or(after.len());
        let mut arguments = serde_json::Map::new();
        let mut body = &after[name_end + 1..body_end];
        while let Some(p) = body.find("<parameter=") {
            let param = &body[p + "<parameter=".len()..];
            let key_end = param.find('>')?;
            let key = param[..key_end].trim().to_owned();
            let value_end = param.find("</parameter>").unwrap_or(param.len());
            let raw = param[key_end + 1..value_end].trim_matches('\n');
            arguments.insert(key.clone(), parameter_value(raw, schema, &key));
            body = param.get(value_end + "</parameter>".len()..).unwrap_or("");
        }
        calls.push((name.clone(), Value::Object(arguments).to_string()));
        rest = after.get(body_end + "</function>".len()..).unwrap_or("");
    }
    (!calls.is_empty()).then_some(calls)
}

fn parameter_value(raw: &str, schema: Option<&Value>, key: &str) -> Value {
    let declared = schema
        .and_then(|s| s.pointer(&format!("/properties/{key}/type")))
        .and_then(Value::as_str);
    if declared == Some("string") {
        return Value::String(raw.to_owned());
    }
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()))
}

/// A native call's arguments as a JSON object, when they are not one already and can be
/// made one; `None` leaves them as they are.
pub fn repaired_arguments(arguments: &str) -> Option<String> {
    let trimmed = arguments.trim();
    if trimmed.is_empty() {
        return Some("{}".to_owned());
    }
    match serde_json::from_str::<Value>(trimmed) {
        Ok(Value::Object(_)) => None,
        // Encoded twice: a JSON string holding the object.
        Ok(Value::String(inner)) => serde_json::from_str::<Value>(&inner)
            .ok()
            .filter(Value::is_object)
            .map(|v| v.to_string()),
        Ok(_) => None,
        Err(_) => repairs(trimmed)
            .into_iter()
            .find(|c| serde_json::from_str::<Value>(c).is_ok_and(|v| v.is_object())),
    }
}

pub struct ToolCallRepair {
    settings: RepairSettings,
}

impl ToolCallRepair {
    pub fn new(settings: RepairSettings) -> Self {
        Self { settings }
    }
}

impl Stage for ToolCallRepair {
    fn name(&self) -> &'static str {
        "tool-call-repair"
    }

    fn reads(&self) -> Reads {
        Reads::ALL
    }

    fn phases(&self) -> Phases {
        Phases::RESPONSE_FILTER.when(self.settings.enabled)
    }

    fn response_filter(
        &self,
        ctx: &RequestContext,
        request: &Request,
    ) -> Option<Box<dyn EventFilter>> {
        if request.tools.is_empty() {
            return None;
        }
        Some(Box::new(Repair {
            offered: Offered::of(request),
            limit: self.settings.buffer_bytes,
            held: String::new(),
            block: None,
            seen_text: false,
            next_index: 0,
            written_calls: 0,
            arguments: Vec::new(),
            trail: ctx.trail.clone(),
            call_prefix: format!("call_{:012x}", fastrand::u64(..) >> 16),
        }))
    }
}

/// The filter; see the module docs.
struct Repair {
    /// The request's functions: calls written as text are looked for when there are any.
    offered: Offered,
    limit: usize,
    /// Text not yet given out: the end of a chunk that may begin an opener, or a block.
    held: String,
    block: Option<Block>,
    /// Whether the answer's text has begun (a bare JSON call is only read at its start).
    seen_text: bool,
    /// The index the next call written as text gets.
    next_index: u32,
    written_calls: u32,
    /// The arguments of native calls not yet ended, by index.
    arguments: Vec<(u32, String)>,
    trail: Trail,
    call_prefix: String,
}

impl EventFilter for Repair {
    fn on_event(&mut self, event: Event, out: &mut Vec<Event>) {
        match event {
            Event::TextDelta(text) if self.offered.functions => self.on_text(text, out),
            Event::ToolCallStart { index, id, name } => {
                self.settle_text(out);
                self.next_index = self.next_index.max(index + 1);
                self.arguments.push((index, String::new()));
                out.push(Event::ToolCallStart { index, id, name });
            }
            Event::ToolCallArgsDelta { index, arguments } => {
                match self.arguments.iter_mut().find(|(i, _)| *i == index) {
                    Some((_, held)) => held.push_str(&arguments),
                    None => out.push(Event::ToolCallArgsDelta { index, arguments }),
                }
            }
            Event::ToolCallEnd { index } => {
                self.release_arguments(Some(index), out);
                out.push(Event::ToolCallEnd { index });
            }
            Event::Finish {
                reason,
                stop_sequence,
            } => {
                self.settle_text(out);
                self.release_arguments(None, out);
                let reason = match reason {
                    FinishReason::EndTurn | FinishReason::StopSequence
                        if self.written_calls > 0 =>
                    {
                        FinishReason::ToolUse
                    }
                    other => other,
                };
                out.push(Event::Finish {
                    reason,
                    stop_sequence,
                });
            }
            Event::Error(error) => {
                self.flush_text(out);
                self.release_arguments(None, out);
                out.push(Event::Error(error));
            }
            other => out.push(other),
        }
    }

    fn on_end(&mut self, out: &mut Vec<Event>) {
        self.settle_text(out);
        self.release_arguments(None, out);
    }
}

impl Repair {
    fn on_text(&mut self, text: String, out: &mut Vec<Event>) {
        if self.held.is_empty() && self.block.is_none() && self.seen_text && !may_open(&text) {
            out.push(Event::TextDelta(text));
            return;
        }
        self.held.push_str(&text);
        self.scan(out);
    }

    /// Gives out what is surely text, reads blocks as far as the held text goes.
    fn scan(&mut self, out: &mut Vec<Event>) {
        loop {
            if let Some(block) = &mut self.block {
                match block.end(&self.held) {
                    BlockEnd::Open if self.held.len() <= self.limit => return,
                    BlockEnd::Open | BlockEnd::NotACall => {
                        // Past the bound, or not a call: it was text.
                        self.block = None;
                        let text = std::mem::take(&mut self.held);
                        emit_text(text, out);
                        return;
                    }
                    BlockEnd::At(end) => {
                        self.block = None;
                        let rest = self.held.split_off(end);
                        let block = std::mem::replace(&mut self.held, rest);
                        self.give_block(block, out);
                        continue;
                    }
                }
            }
            if !self.seen_text {
                let start = self.held.trim_start();
                if start.is_empty() {
                    return;
                }
                self.seen_text = true;
                if start.starts_with('{') {
                    let leading = self.held.len() - start.len();
                    let whitespace: String = self.held.drain(..leading).collect();
                    emit_text(whitespace, out);
                    self.block = Some(Block::new(Opener::BareJson, 0));
                    continue;
                }
            }
            let found = OPENERS
                .iter()
                .filter_map(|(tag, opener)| self.held.find(tag).map(|at| (at, tag.len(), *opener)))
                .min_by_key(|(at, ..)| *at);
            if let Some((at, len, opener)) = found {
                let text: String = self.held.drain(..at).collect();
                emit_text(text, out);
                self.block = Some(Block::new(opener, len));
                continue;
            }
            let keep = OPENERS
                .iter()
                .map(|(tag, _)| partial_tag_at_end(&self.held, tag))
                .max()
                .unwrap_or(0);
            let ready = self.held.len() - keep;
            let text: String = self.held.drain(..ready).collect();
            emit_text(text, out);
            return;
        }
    }

    /// A complete block: its calls, or its text.
    fn give_block(&mut self, block: String, out: &mut Vec<Event>) {
        let Some(calls) = calls_in(&block, &self.offered) else {
            emit_text(block, out);
            return;
        };
        for (name, arguments) in calls {
            let index = self.next_index;
            self.next_index += 1;
            self.written_calls += 1;
            self.trail.intervene(
                "tool-call-repair",
                format!("a call to {name} written as text became a tool call"),
            );
            tracing::info!(tool = %name, "a call written as text became a tool call");
            out.push(Event::ToolCallStart {
                index,
                id: format!("{}_{index}", self.call_prefix),
                name,
            });
            out.push(Event::ToolCallArgsDelta { index, arguments });
            out.push(Event::ToolCallEnd { index });
        }
    }

    /// At the answer's end (or before a native call): a block still open is read as it is
    /// (a closing tag the model left out), the rest is text.
    fn settle_text(&mut self, out: &mut Vec<Event>) {
        if self.block.take().is_some() {
            let block = std::mem::take(&mut self.held);
            self.give_block(block, out);
        }
        self.flush_text(out);
    }

    fn flush_text(&mut self, out: &mut Vec<Event>) {
        self.block = None;
        emit_text(std::mem::take(&mut self.held), out);
    }

    /// The held arguments of the call `index` (or of every call), repaired where needed.
    fn release_arguments(&mut self, index: Option<u32>, out: &mut Vec<Event>) {
        let mut released = Vec::new();
        self.arguments.retain_mut(|(i, held)| {
            if index.is_some_and(|index| index != *i) {
                return true;
            }
            released.push((*i, std::mem::take(held)));
            false
        });
        for (index, arguments) in released {
            let arguments = match repaired_arguments(&arguments) {
                Some(repaired) => {
                    if !arguments.trim().is_empty() {
                        self.trail
                            .intervene("tool-call-repair", "repaired a call's malformed arguments");
                        tracing::info!(index, "repaired a tool call's malformed arguments");
                    }
                    repaired
                }
                None => arguments,
            };
            out.push(Event::ToolCallArgsDelta { index, arguments });
        }
    }
}

fn emit_text(text: String, out: &mut Vec<Event>) {
    if !text.is_empty() {
        out.push(Event::TextDelta(text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Message;

    fn request() -> Request {
        let mut request = Request::new(
            "m",
            vec![Message::new(
                crate::model::Role::User,
                vec![crate::model::Part::text("list files")],
            )],
        );
        request.tools = vec![
            tool(
                "Bash",
                serde_json::json!({"type": "object",
                "properties": {"command": {"type": "string"}, "timeout": {"type": "number"}}}),
            ),
            tool("read_file", serde_json::json!({"type": "object"})),
        ]
        .into();
        request
    }

    fn tool(name: &str, parameters: Value) -> Tool {
        Tool::Function {
            name: name.into(),
            description: None,
            parameters: Some(parameters),
            strict: None,
            extensions: Default::default(),
        }
    }

    fn filter(limit: usize) -> Box<dyn EventFilter> {
        let stage = ToolCallRepair::new(RepairSettings {
            enabled: true,
            buffer_bytes: limit,
        });
        let ctx = RequestContext::new(crate::model::Protocol::OpenAiChat);
        stage.response_filter(&ctx, &request()).unwrap()
    }

    /// The answer's text, its calls (name, arguments) and finish reason, after the filter
    /// saw `chunks` as text deltas.
    fn run(chunks: &[&str], limit: usize) -> (String, Vec<(String, String)>, String) {
        let mut filter = filter(limit);
        let mut out = Vec::new();
        for chunk in chunks {
            filter.on_event(Event::TextDelta((*chunk).to_owned()), &mut out);
        }
        filter.on_event(
            Event::Finish {
                reason: FinishReason::EndTurn,
                stop_sequence: None,
            },
            &mut out,
        );
        filter.on_end(&mut out);
        summary(out)
    }

    fn summary(events: Vec<Event>) -> (String, Vec<(String, String)>, String) {
        let (mut text, mut calls, mut finish) = (String::new(), Vec::new(), String::new());
        for event in events {
            match event {
                Event::TextDelta(t) => text.push_str(&t),
                Event::ToolCallStart { name, .. } => calls.push((name, String::new())),
                Event::ToolCallArgsDelta { arguments, .. } => {
                    if let Some(call) = calls.last_mut() {
                        call.1.push_str(&arguments);
                    }
                }
                Event::Finish { reason, .. } => finish = format!("{reason:?}"),
                _ => {}
            }
        }
        (text, calls, finish)
    }

    /// `text` cut into pieces at pseudo-random places (a fixed seed per case).
    fn chunks(text: &str, seed: u64) -> Vec<String> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut pieces = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let mut cut = rng.usize(1..=rest.len().min(12));
            while !rest.is_char_boundary(cut) {
                cut += 1;
            }
            pieces.push(rest[..cut].to_owned());
            rest = &rest[cut..];
        }
        pieces
    }

    fn run_split(text: &str, seed: u64) -> (String, Vec<(String, String)>, String) {
        let pieces = chunks(text, seed);
        let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
        run(&refs, 65_536)
    }

    fn bash(command: &str) -> (String, String) {
        (
            "Bash".into(),
            serde_json::json!({ "command": command }).to_string(),
        )
    }

    #[test]
    fn each_written_form_becomes_a_call_whatever_the_chunks() {
        let cases = [
            (
                "I will list them.\n<tool_call>\n{\"name\": \"Bash\", \"arguments\": {\"command\": \"ls -la\"}}\n</tool_call>",
                "I will list them.\n",
            ),
            (
                "<tool_call>\n<function=Bash>\n<parameter=command>\nls -la\n</parameter>\n</function>\n</tool_call>",
                "",
            ),
            (
                "Listing:\n```json\n{\"tool\": \"bash\", \"parameters\": {\"command\": \"ls -la\"}}\n```",
                "Listing:\n",
            ),
            (
                "[TOOL_CALLS][{\"name\": \"Bash\", \"arguments\": {\"command\": \"ls -la\"}}]",
                "",
            ),
            (
                "<|python_tag|>{\"name\": \"Bash\", \"parameters\": {\"command\": \"ls -la\"}}",
                "",
            ),
            (
                "  {\"function\": {\"name\": \"Bash\", \"arguments\": \"{\\\"command\\\": \\\"ls -la\\\"}\"}}",
                "  ",
            ),
            (
                // Malformed JSON inside the tag: repaired.
                "<tool_call>{'name': 'Bash', 'arguments': {'command': 'ls -la'},}</tool_call>",
                "",
            ),
        ];
        for (text, before) in cases {
            for seed in 0..40 {
                let (got_text, calls, finish) = run_split(text, seed);
                assert_eq!(got_text, before, "{text} (seed {seed})");
                assert_eq!(calls, vec![bash("ls -la")], "{text} (seed {seed})");
                assert_eq!(finish, "ToolUse", "{text}");
            }
        }
    }

    #[test]
    fn text_that_is_not_a_call_comes_out_unchanged_whatever_the_chunks() {
        for text in [
            "Use `<tool_call>` tags? No: call tools natively.",
            "Here is JSON:\n```json\n{\"name\": \"Ada\", \"age\": 36}\n```\nDone.",
            "<tool_call>{\"name\": \"rm_everything\", \"arguments\": {}}</tool_call>",
            "{\"result\": 42}",
            "Arrays [1, 2] and <b>tags</b> and `code` stay.",
            "An unclosed <tool_call> at the very end",
            "Ünïcödé ✓ <tool_call ✓",
        ] {
            for seed in 0..40 {
                let (got, calls, finish) = run_split(text, seed);
                assert_eq!(got, text, "seed {seed}");
                assert!(calls.is_empty(), "{text}: {calls:?}");
                assert_eq!(finish, "EndTurn");
            }
        }
    }

    #[test]
    fn a_block_past_the_bound_is_given_out_as_text() {
        let long = format!(
            "<tool_call>{{\"name\": \"Bash\", \"arguments\": {{\"command\": \"{}\"}}}}</tool_call>",
            "x".repeat(300)
        );
        let (text, calls, _) = run(&[&long[..100], &long[100..200], &long[200..]], 128);
        assert_eq!(text, long);
        assert!(calls.is_empty());
        let (_, calls, _) = run(&[&long[..100], &long[100..200], &long[200..]], 1024);
        assert_eq!(calls.len(), 1);
    }

    #[test]
    fn xml_parameters_follow_the_schema_and_several_calls_are_numbered_in_order() {
        let text = "<function=Bash>\n<parameter=command>\n42\n</parameter>\n<parameter=timeout>\n30\n</parameter>\n</function>\n<function=read_file>\n<parameter=path>\na.txt\n</parameter>\n</function>";
        let mut filter = filter(65_536);
        let mut out = Vec::new();
        filter.on_event(Event::TextDelta(text.into()), &mut out);
        filter.on_end(&mut out);
        let starts: Vec<(u32, String)> = out
            .iter()
            .filter_map(|e| match e {
                Event::ToolCallStart { index, name, .. } => Some((*index, name.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(starts, [(0, "Bash".into()), (1, "read_file".into())]);
        let (_, calls, _) = summary(out);
        let args: Value = serde_json::from_str(&calls[0].1).unwrap();
        assert_eq!(args, serde_json::json!({"command": "42", "timeout": 30}));
    }

    #[test]
    fn malformed_native_arguments_are_repaired_when_the_call_ends() {
        for (sent, expected) in [
            (r#"{"command": "ls",}"#, Some(r#"{"command":"ls"}"#)),
            (r#"{'command': 'ls'}"#, Some(r#"{"command":"ls"}"#)),
            (r#"{command: "ls"}"#, Some(r#"{"command":"ls"}"#)),
            (r#"{"command": "ls -la"#, Some(r#"{"command": "ls -la"}"#)),
            (r#""{\"command\": \"ls\"}""#, Some(r#"{"command":"ls"}"#)),
            ("", Some("{}")),
            (r#"{"command": "ls"}"#, None),
        ] {
            let mut filter = filter(65_536);
            let mut out = Vec::new();
            filter.on_event(
                Event::ToolCallStart {
                    index: 0,
                    id: "c".into(),
                    name: "Bash".into(),
                },
                &mut out,
            );
            let half = sent.len() / 2;
            let half = (half..=sent.len())
                .find(|i| sent.is_char_boundary(*i))
                .unwrap_or(0);
            for piece in [&sent[..half], &sent[half..]] {
                filter.on_event(
                    Event::ToolCallArgsDelta {
                        index: 0,
                        arguments: piece.into(),
                    },
                    &mut out,
                );
            }
            assert_eq!(out.len(), 1, "arguments held until the call ends");
            filter.on_event(Event::ToolCallEnd { index: 0 }, &mut out);
            let (_, calls, _) = summary(out);
            let got: Value = serde_json::from_str(&calls[0].1).unwrap_or(Value::Null);
            let want: Value = serde_json::from_str(expected.unwrap_or(sent)).unwrap();
            assert_eq!(got, want, "{sent}");
        }
    }

    #[test]
    fn a_request_without_tools_gets_no_filter() {
        let stage = ToolCallRepair::new(RepairSettings::default());
        let ctx = RequestContext::new(crate::model::Protocol::OpenAiChat);
        let request = Request::new("m", vec![Message::new(crate::model::Role::User, vec![])]);
        assert!(stage.response_filter(&ctx, &request).is_none());
    }
}
