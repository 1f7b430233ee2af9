//! Serde types of the Chat Completions wire format.
//!
//! Every object keeps the fields we do not model in `extra`, so a same-protocol round trip
//! carries them through; the objects read in one pass (see `one_pass.rs`) keep them
//! without their `null`s, which mean what an absent member means. Polymorphic pieces (content parts, tools, tool_choice,
//! response_format) stay `Value` here and are read in `decode.rs`, where errors can name
//! the exact field.

use serde::de::{self, Deserializer, SeqAccess, Visitor};

use crate::protocol::{Spanned, TextOrList, text_or_list};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// A request. `model`, `stream` and `stream_options` keep where they sit in the body, for
/// the pass-through that patches them. The messages are read as `M`: decoded, or as their
/// JSON texts for a large request (see `decode::MESSAGE_MEMO`), and the tools as `T`: a list,
/// or the list's JSON text (see `protocol::tools_memo`).
#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest<'a, M = ChatMessage, T = Vec<Value>> {
    #[serde(borrow)]
    pub model: Spanned<'a, String>,
    pub messages: Vec<M>,
    #[serde(borrow, default)]
    pub stream: Option<Spanned<'a, bool>>,
    #[serde(borrow, default)]
    pub stream_options: Option<Spanned<'a, StreamOptions>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    /// Absent is `None` without `default`, which would ask `T` to have a default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct StreamOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `stop`: one string or a list of them.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s],
            Stop::Many(v) => v,
        }
    }
}

impl<'de> Deserialize<'de> for Stop {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StopVisitor;
        impl<'de> Visitor<'de> for StopVisitor {
            type Value = Stop;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Stop, E> {
                Ok(Stop::One(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Stop, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(Stop::Many(out))
            }
        }
        deserializer.deserialize_any(StopVisitor)
    }
}

#[derive(Debug, Clone, Default)]
pub struct ChatMessage {
    pub role: String,
    pub content: Content,
    pub name: Option<String>,
    pub tool_calls: Option<Vec<ChatToolCall>>,
    pub tool_call_id: Option<String>,
    pub refusal: Option<String>,
    /// DeepSeek, Z.ai, Qwen, vLLM and most OpenAI-compatible vendors.
    pub reasoning_content: Option<String>,
    /// OpenRouter.
    pub reasoning: Option<String>,
    pub extra: Map<String, Value>,
}

deserialize_in_one_pass!(ChatMessage {
    "role" => role: required,
    "content" => content: value,
    "name" => name: value,
    "tool_calls" => tool_calls: value,
    "tool_call_id" => tool_call_id: value,
    "refusal" => refusal: value,
    "reasoning_content" => reasoning_content: value,
    "reasoning" => reasoning: value,
});

/// A message's `content`: absent, `null`, a string, or an array of parts.
#[derive(Debug, Clone, Default)]
pub enum Content {
    #[default]
    Absent,
    Null,
    Text(String),
    Parts(Vec<Value>),
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let expecting = "a string, an array of content parts, or null";
        Ok(match text_or_list(deserializer, expecting, true)? {
            TextOrList::Null => Content::Null,
            TextOrList::Text(text) => Content::Text(text),
            TextOrList::List(parts) => Content::Parts(parts),
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct ChatToolCall {
    pub id: String,
    /// `function` when present; absent from some servers' answers.
    pub kind: Option<String>,
    pub function: ChatFunctionCall,
    pub extra: Map<String, Value>,
}

deserialize_in_one_pass!(ChatToolCall {
    "id" => id: required,
    "type" => kind: value,
    "function" => function: required,
});

#[derive(Debug, Clone, Default)]
pub struct ChatFunctionCall {
    pub name: String,
    pub arguments: String,
    pub extra: Map<String, Value>,
}

deserialize_in_one_pass!(ChatFunctionCall {
    "name" => name: required,
    "arguments" => arguments: value,
});

/// A non-streaming response.
#[derive(Debug, Clone, Default)]
pub struct ChatCompletion {
    pub id: String,
    /// `chat.completion`; read here rather than kept in `extra` (the encoder writes it).
    /// Any JSON: an odd value makes the answer one to re-encode, not an error.
    pub object: Option<Value>,
    pub created: Option<u64>,
    pub model: String,
    /// `null` or absent reads as none.
    pub choices: Vec<ResponseChoice>,
    pub usage: Option<Value>,
    pub extra: Map<String, Value>,
}

deserialize_in_one_pass!(ChatCompletion {
    "id" => id: value,
    "object" => object: value,
    "created" => created: value,
    "model" => model: value,
    "choices" => choices: list,
    "usage" => usage: value,
});

#[derive(Debug, Clone, Default)]
pub struct ResponseChoice {
    pub index: u32,
    pub message: ChatMessage,
    pub finish_reason: Option<String>,
    pub extra: Map<String, Value>,
}

deserialize_in_one_pass!(ResponseChoice {
    "index" => index: value,
    "message" => message: required,
    "finish_reason" => finish_reason: value,
});

/// One streamed chunk. Read in one pass (every chunk of every stream goes through here).
#[derive(Debug, Clone, Default)]
pub struct ChatChunk {
    pub id: String,
    pub created: Option<u64>,
    pub model: String,
    /// Some servers (vLLM) send the usage chunk with `choices: null` or none at all.
    pub choices: Vec<ChunkChoice>,
    pub usage: Option<Value>,
    pub extra: Map<String, Value>,
}

deserialize_in_one_pass!(ChatChunk {
    "id" => id: value,
    "created" => created: value,
    "model" => model: value,
    "choices" => choices: list,
    "usage" => usage: value,
});

/// A chunk after the first of its stream: only what a later chunk can add (its choices,
/// usage, or an error) is read; the id, model and extras the first chunk gave are skipped
/// rather than built and dropped.
#[derive(Debug, Clone, Default)]
pub struct LaterChunk {
    pub choices: Vec<ChunkChoice>,
    /// Boxed, as the error: a `Value` is 80 bytes, and a chunk read is moved several times
    /// on its way out of serde, while nearly every chunk has neither.
    pub usage: Option<Box<Value>>,
    pub error: Option<Box<Value>>,
}

deserialize_in_one_pass!(LaterChunk, others skipped {
    "choices" => choices: list,
    "usage" => usage: value,
    "error" => error: value,
});

impl From<LaterChunk> for ChatChunk {
    fn from(later: LaterChunk) -> Self {
        let mut extra = Map::new();
        if let Some(error) = later.error {
            extra.insert("error".into(), *error);
        }
        ChatChunk {
            choices: later.choices,
            usage: later.usage.map(|usage| *usage),
            extra,
            ..ChatChunk::default()
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ChunkChoice {
    pub index: u32,
    /// Boxed: a choice is moved several times on its way out of the decoder (serde's
    /// `Result`s, the list), and with the delta inline each move copied 320 bytes.
    pub delta: Option<Box<ChunkDelta>>,
    pub finish_reason: Option<String>,
    pub extra: Map<String, Value>,
}

deserialize_in_one_pass!(ChunkChoice {
    "index" => index: value,
    "delta" => delta: value,
    "finish_reason" => finish_reason: value,
});

#[derive(Debug, Clone, Default)]
pub struct ChunkDelta {
    pub role: Option<String>,
    pub content: Option<String>,
    pub refusal: Option<String>,
    pub reasoning_content: Option<String>,
    pub reasoning: Option<String>,
    pub tool_calls: Vec<ChunkToolCall>,
    pub extra: Map<String, Value>,
}

deserialize_in_one_pass!(ChunkDelta {
    "role" => role: value,
    "content" => content: value,
    "refusal" => refusal: value,
    "reasoning_content" => reasoning_content: value,
    "reasoning" => reasoning: value,
    "tool_calls" => tool_calls: list,
});

#[derive(Debug, Clone, Deserialize)]
pub struct ChunkToolCall {
    /// Keyed by index, never by position: parallel calls interleave.
    #[serde(default)]
    pub index: u32,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub function: Option<ChunkFunction>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChunkFunction {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub arguments: Option<String>,
}
