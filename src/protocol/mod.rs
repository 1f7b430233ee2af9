//! Wire protocols. Each folder holds one protocol's serde types, its decoder (wire to
//! model), its encoder (model to wire) and its stream framing, shared by the front-end
//! that serves it and every back-end that speaks it. There are no pairwise translators:
//! Anthropic-to-OpenAI is Anthropic decode followed by OpenAI encode.

pub mod openai_chat;
pub mod openai_responses;
pub mod sse;
