//! `openai`: OpenAI's own API (https://api.openai.com/v1), key in OPENAI_API_KEY.
//!
//! Speaks Chat Completions. OpenAI rejects unknown request fields, which is why the chat
//! encoder only sends reasoning text back to servers that sent it in that field.

use super::chat_http::Profile;

pub fn profile() -> Profile {
    Profile {
        identity_headers: |_| Vec::new(),
    }
}
