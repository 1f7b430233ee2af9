//! The canonical response stream.
//!
//! Every back-end produces a stream of [`Event`]s, streaming or not; a front-end either
//! encodes them as its protocol's stream frames or folds them into one body
//! ([`super::ResponseBuilder`]). Translation is written once per protocol, never per pair.

use super::Extensions;
use crate::Error;

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FinishReason {
    EndTurn,
    StopSequence,
    MaxTokens,
    ToolUse,
    ContentFilter,
    Refusal,
    PauseTurn,
    ContextWindowExceeded,
    /// A reason the model does not know, kept verbatim for a same-protocol client.
    Other(String),
}

impl FinishReason {
    /// The reason of an answer that does not follow the JSON schema its request asked for
    /// (structured output gave up on it); Responses clients see it as `status: incomplete`.
    pub const SCHEMA_MISMATCH: &str = "json_schema_mismatch";

    /// [`Self::SCHEMA_MISMATCH`] as a reason.
    pub fn schema_mismatch() -> Self {
        FinishReason::Other(Self::SCHEMA_MISMATCH.to_owned())
    }
}

/// Token counts. `input_tokens` includes cached input and `output_tokens` includes
/// reasoning, as OpenAI counts them; protocols that count otherwise convert.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: Option<u64>,
    pub cache_creation_input_tokens: Option<u64>,
    pub reasoning_tokens: Option<u64>,
    pub extensions: Extensions,
}

impl Usage {
    pub fn total_tokens(&self) -> u64 {
        // Saturating: the counts come from the provider, and a garbage one must not panic.
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

#[derive(Debug, Clone)]
pub enum Event {
    /// First event of every response.
    Start {
        id: String,
        model: String,
        /// Unix seconds, when the provider said.
        created: Option<u64>,
        extensions: Extensions,
    },
    TextDelta(String),
    RefusalDelta(String),
    /// Reasoning text; a signature may arrive with the text or alone (empty text).
    ThinkingDelta {
        text: String,
        signature: Option<String>,
    },
    /// An opaque, encrypted reasoning block.
    RedactedThinking(String),
    /// A tool call opens. `index` orders calls within the response.
    ToolCallStart {
        index: u32,
        id: String,
        name: String,
    },
    /// A fragment of a call's JSON arguments, never parsed on its own.
    ToolCallArgsDelta {
        index: u32,
        arguments: String,
    },
    ToolCallEnd {
        index: u32,
    },
    Usage(Usage),
    Finish {
        reason: FinishReason,
        stop_sequence: Option<String>,
    },
    /// Fields of an upstream frame the model has no slot for (logprobs, fingerprints,
    /// provider extras). Only an encoder of the same protocol uses them.
    Extension(Extensions),
    /// The response failed; nothing follows.
    Error(Error),
}

impl Event {
    /// Whether two events say the same thing. An error is never the same as anything: an
    /// answer that failed is never passed through (errors carry no equality).
    pub fn same_as(&self, other: &Event) -> bool {
        use Event::*;
        match (self, other) {
            (
                Start {
                    id,
                    model,
                    created,
                    extensions,
                },
                Start {
                    id: id2,
                    model: model2,
                    created: created2,
                    extensions: extensions2,
                },
            ) => id == id2 && model == model2 && created == created2 && extensions == extensions2,
            (TextDelta(a), TextDelta(b))
            | (RefusalDelta(a), RefusalDelta(b))
            | (RedactedThinking(a), RedactedThinking(b)) => a == b,
            (
                ThinkingDelta { text, signature },
                ThinkingDelta {
                    text: text2,
                    signature: signature2,
                },
            ) => text == text2 && signature == signature2,
            (
                ToolCallStart { index, id, name },
                ToolCallStart {
                    index: index2,
                    id: id2,
                    name: name2,
                },
            ) => index == index2 && id == id2 && name == name2,
            (
                ToolCallArgsDelta { index, arguments },
                ToolCallArgsDelta {
                    index: index2,
                    arguments: arguments2,
                },
            ) => index == index2 && arguments == arguments2,
            (ToolCallEnd { index }, ToolCallEnd { index: index2 }) => index == index2,
            (Usage(a), Usage(b)) => a == b,
            (
                Finish {
                    reason,
                    stop_sequence,
                },
                Finish {
                    reason: reason2,
                    stop_sequence: stop_sequence2,
                },
            ) => reason == reason2 && stop_sequence == stop_sequence2,
            (Extension(a), Extension(b)) => a == b,
            _ => false,
        }
    }
}
