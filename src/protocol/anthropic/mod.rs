//! Anthropic Messages (`POST /v1/messages`).
//!
//! Wire facts: https://docs.anthropic.com/en/api/messages and /messages-streaming (event
//! order, ping, error events, delta types), `anthropics/anthropic-sdk-python` `types/*`
//! (field names), ../shared/reference/PROTOCOLS.md §1.3, §3, §4.1 and §5 (what Claude Code
//! relies on and where other translators broke).

pub mod decode;
pub mod encode;
pub mod json_tool;
mod pass_through;
#[cfg(test)]
mod pass_through_tests;
#[cfg(test)]
mod round_trip_tests;
pub mod stream;
pub mod types;

pub use decode::{decode_request, decode_request_checked, decode_response, estimate_input_tokens};
pub use encode::{encode_request, encode_request_body, encode_response, error_body};
pub use json_tool::JSON_RESPONSE_TOOL;
pub use stream::{EventDecoder, EventEncoder};

/// Marks a thinking signature llmux made up because the upstream had none (OpenAI-style
/// reasoning). Clients such as Claude Code drop unsigned thinking blocks; Anthropic rejects
/// signatures it did not make, so thinking blocks carrying this mark are dropped before a
/// request goes to an Anthropic back-end.
pub const SYNTHETIC_SIGNATURE: &str = "llmux:unsigned";

/// The API version sent to Anthropic back-ends when the client named none.
pub const DEFAULT_VERSION: &str = "2023-06-01";
