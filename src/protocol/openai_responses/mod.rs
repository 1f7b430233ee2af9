//! OpenAI Responses (`POST /v1/responses`).
//!
//! Wire facts: `openai/openai-python` `types/responses/*` (field names), and
//! ../shared/reference/PROTOCOLS.md §1.4 (stream events), §2 (tools: flat shape, two ids
//! per call), §3 (finish, usage, reasoning, images), §4.2 (what Codex CLI needs).
//!
//! Decoding and encoding go through the canonical model like every protocol. What the
//! model has no slot for travels in Responses-tagged extensions, so a Responses client
//! talking to a Responses back-end loses nothing: unknown request fields, item ids,
//! `phase`, annotations, reasoning `encrypted_content`, built-in tool items. The shapes of
//! those extensions are internal to this module (see `decode.rs`).

pub mod decode;
pub mod encode;
pub mod stream;
pub mod types;

pub use decode::{ClientOptions, decode_request, decode_response};
pub use encode::{encode_request, encode_response, error_body};
pub use stream::{ChunkError, EventDecoder, EventEncoder};
