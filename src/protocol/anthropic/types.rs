//! Serde types of the Anthropic Messages wire format.
//!
//! Objects keep the fields we do not model in `extra`. Content blocks stay `Value` here and
//! are read in `decode.rs`, where errors can name the exact block.

use serde::de::{self, Deserializer};

use crate::protocol::{Spanned, TextOrList, text_or_list};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A request. `model` and `stream` keep where they sit in the body, for the pass-through
/// that patches them. The messages are read as `M`: decoded, or as their JSON texts for a
/// large request (see `decode::MESSAGE_MEMO`), and the tools as `T`: a list, or the list's
/// JSON text (see `protocol::tools_memo`).
#[derive(Debug, Clone, Deserialize)]
pub struct MessagesRequest<'a, M = WireMessage, T = Vec<Value>> {
    #[serde(borrow)]
    pub model: Spanned<'a, String>,
    pub messages: Vec<M>,
    /// Required by Anthropic; checked in decode so the error names it.
    #[serde(default)]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub system: Option<System>,
    /// Absent is `None` without `default`, which would ask `T` to have a default.
    pub tools: Option<T>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub thinking: Option<Value>,
    #[serde(default)]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub top_k: Option<u32>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(borrow, default)]
    pub stream: Option<Spanned<'a, bool>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `system`: a string or a list of text blocks.
pub type System = TextOrBlocks;

#[derive(Debug, Clone, Deserialize)]
pub struct WireMessage {
    pub role: String,
    pub content: MessageContent,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A message's `content`: a string or a list of blocks.
pub type MessageContent = TextOrBlocks;

/// A string or a list of content blocks, read with an error that says which was expected.
#[derive(Debug, Clone)]
pub enum TextOrBlocks {
    Text(String),
    Blocks(Vec<Value>),
}

impl<'de> Deserialize<'de> for TextOrBlocks {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let expecting = "a string or an array of content blocks";
        Ok(match text_or_list(deserializer, expecting, false)? {
            TextOrList::Text(text) => TextOrBlocks::Text(text),
            TextOrList::List(blocks) => TextOrBlocks::Blocks(blocks),
            // Not read when null is refused; kept an error rather than a panic.
            TextOrList::Null => {
                return Err(de::Error::invalid_type(de::Unexpected::Unit, &expecting));
            }
        })
    }
}

/// A non-streaming response.
#[derive(Debug, Clone, Deserialize)]
pub struct MessagesResponse {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub content: Vec<Value>,
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub stop_sequence: Option<String>,
    #[serde(default)]
    pub usage: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Usage as Anthropic reports it: input excludes cache reads and writes.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct WireUsage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CountTokensRequest {
    pub model: String,
    pub messages: Vec<WireMessage>,
    #[serde(default)]
    pub system: Option<System>,
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
