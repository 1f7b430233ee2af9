//! Google Gemini `generateContent` (`POST /v1beta/models/{model}:generateContent`,
//! `:streamGenerateContent`, `:countTokens`).
//!
//! Decodes into and encodes from the canonical model like every protocol; there is no
//! pairwise translator. Module map:
//! - [`types`]: serde wire types, unknown fields kept in `extra`.
//! - [`decode`]: request body -> [`crate::model::Request`] (with the function-call id
//!   rule), non-streaming response -> events.
//! - [`encode`]: request -> upstream body (schema strategy, thought signatures), folded
//!   response -> body, error body.
//! - [`stream`]: upstream records -> events; events -> client records as SSE or as the
//!   streamed JSON array.
//! - [`schema`]: JSON Schema <-> the OpenAPI subset of Gemini's `parameters`.
//! - [`thinking`]: reasoning effort <-> thinking budgets and levels.
//!
//! Wire facts: https://ai.google.dev/api/generate-content and
//! ../shared/reference/PROTOCOLS.md §1.5, §2, §3 and pitfalls 8, 9, 11, 12, 13, 19, 21, 25.

pub mod decode;
pub mod encode;
pub mod schema;
pub mod stream;
pub mod thinking;
pub mod types;

use crate::model::Protocol;

const PROTOCOL: Protocol = Protocol::Gemini;

pub use decode::{decode_count_tokens_request, decode_request, decode_response};
pub use encode::{
    EncodeOptions, SchemaMode, encode_count_tokens_response, encode_request, encode_request_body,
    encode_request_with, encode_response, error_body, http_status,
};
pub use stream::{ChunkDecoder, ChunkEncoder, JsonArraySplitter, StreamFormat};
