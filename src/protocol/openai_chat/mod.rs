//! OpenAI Chat Completions (`POST /v1/chat/completions`).
//!
//! Wire facts: `openai/openai-python` `types/chat/*` (field names), and
//! ../shared/reference/PROTOCOLS.md §1.2 (stream framing, reasoning fields of
//! OpenAI-compatible vendors, mid-stream error frames).

pub mod decode;
pub mod encode;
mod pass_through;
pub mod stream;
pub mod types;

#[cfg(test)]
mod pass_through_tests;
#[cfg(test)]
mod round_trip_tests;

pub use decode::ClientOptions;
pub use decode::{decode_request, decode_request_checked, decode_response};
pub use encode::{encode_request, encode_request_body, encode_response, error_body};
pub use stream::{ChunkDecoder, ChunkEncoder, ChunkError};
