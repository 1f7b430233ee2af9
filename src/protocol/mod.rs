//! Wire protocols. Each folder holds one protocol's serde types, its decoder (wire to
//! model), its encoder (model to wire) and its stream framing, shared by the front-end
//! that serves it and every back-end that speaks it. There are no pairwise translators:
//! Anthropic-to-OpenAI is Anthropic decode followed by OpenAI encode.

pub mod anthropic;
pub mod gemini;
pub mod openai_chat;
pub mod openai_responses;
pub mod sse;

use crate::model::Event;

/// Why an upstream response could not be read.
#[derive(Debug, Clone, PartialEq)]
pub enum ChunkError {
    /// Not the protocol (bad JSON, wrong shape).
    Garbage(String),
    /// The provider reported an error inside the body or stream.
    Upstream {
        message: String,
        error_type: Option<String>,
        code: Option<String>,
    },
    /// The stream ended before the protocol's end.
    Truncated,
}

/// Reads an upstream SSE stream of one protocol into events, one frame at a time.
pub trait StreamDecoder: Send {
    /// Decodes one SSE frame (`event` is its `event:` name, empty when it has none).
    fn push(&mut self, event: &str, data: &str, out: &mut Vec<Event>) -> Result<(), ChunkError>;
    /// True once the protocol's terminator arrived; nothing more is read after it.
    fn is_done(&self) -> bool;
    /// Called when the body ends: errors if the stream was cut off.
    fn finish(&mut self) -> Result<(), ChunkError>;
}
