//! OpenAI Responses (`POST /v1/responses`).
//!
//! Wire facts: `openai/openai-python` `types/responses/*` (field names), and
//! ../shared/reference/PROTOCOLS.md §1.4 (stream events), §2 (tools: flat shape, two ids
//! per call), §3 (finish, usage, reasoning, images), §4.2 (what Codex CLI needs).
//!
//! Decoding and encoding go through the canonical model like every protocol. What the
//! model has no slot for travels in Responses-tagged [`Extensions`](crate::model::Extensions),
//! so a Responses client talking to a Responses back-end loses nothing. Every other encoder
//! ignores them. Where they live:
//!
//! | Where | Keys |
//! |---|---|
//! | `Request.extensions` | unknown top-level fields; `store`, `previous_response_id`, `include`, `metadata`; `reasoning` and `text` objects holding what is not effort or format (`summary`, `verbosity`, unknown values); `stream_options` |
//! | user/system/developer/tool `Message.extensions` | the item's own fields (`id`, `status`, unknown ones) |
//! | `Part::Text` / `Part::Image` | the content part's fields (`annotations`, ...); `item` (the assistant message item's fields) on the first text part of each assistant item |
//! | `Part::Thinking` | `reasoning_part` (`summary` or `content`) on every part, `item` on the first of each reasoning item; `encrypted_content` is the signature of the last part |
//! | `Part::ToolCall` | the `function_call` item's fields (`id` `fc_…`, `status`, ...); the part's id is the `call_id` |
//! | `Tool::Function` | `type` (marks a Responses tool) and unknown tool fields |
//! | `Part::Opaque`, `Tool::Opaque`, `ToolChoice::Opaque` | items, content parts, tools and tool choices the model does not know, whole |
//!
//! Response events carry `Event::Extension` scopes, read by [`EventEncoder`] and
//! [`encode_response`]: `top` (the Response's top-level fields), `item` (`output_index`,
//! `type`, `id`, unknown fields of the next item of that type), `part` (a content part's
//! annotations and logprobs), `summary_part` (where the next reasoning summary part
//! starts), `opaque_item` (an item the model does not know, as it starts and when done),
//! and `event` (an upstream event the model has no shape for, forwarded whole).
//!
//! Upstream stream failures use the Chat module's [`ChunkError`], so one back-end error
//! mapper serves both protocols.

pub mod decode;
pub mod encode;
mod memo;
mod pass_through;
mod request_pass_through;
#[cfg(test)]
pub(crate) mod request_pass_through_tests;
#[cfg(test)]
mod round_trip_tests;
pub mod stream;
pub mod types;

pub use decode::{
    ClientOptions, decode_request, decode_request_checked, decode_response, decode_response_checked,
};
pub use encode::{encode_request, encode_request_body, encode_response, error_body};
pub(crate) use pass_through::echo_is_answered;
pub use stream::{ChunkError, EventDecoder, EventEncoder};
