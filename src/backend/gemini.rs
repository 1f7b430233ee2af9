//! `gemini`: Google's Gemini API (https://generativelanguage.googleapis.com), key in
//! GEMINI_API_KEY, sent as `x-goog-api-key`.
//!
//! `base_url` is the host root, as in the google-genai SDKs; llmux appends
//! `/v1beta/models/{model}:generateContent`, or `:streamGenerateContent?alt=sse` when
//! streaming: without `alt=sse` Gemini streams a JSON array that SSE readers cannot see
//! (PROTOCOLS.md pitfall 12).

use reqwest::header::HeaderName;
use serde_json::Value;

use super::http::Wire;
use crate::Error;
use crate::model::{Event, Request};
use crate::protocol::gemini::{self, ChunkDecoder};
use crate::protocol::tools_out::Encoded;
use crate::protocol::{ChunkError, StreamDecoder};

pub struct GeminiWire;

/// The HTTP status of each Google RPC status name
/// (https://ai.google.dev/gemini-api/docs/troubleshooting).
pub(crate) fn status_of(status: Option<&str>) -> u16 {
    match status {
        Some("INVALID_ARGUMENT" | "FAILED_PRECONDITION") => 400,
        Some("UNAUTHENTICATED") => 401,
        Some("PERMISSION_DENIED") => 403,
        Some("NOT_FOUND") => 404,
        Some("RESOURCE_EXHAUSTED") => 429,
        Some("INTERNAL") => 500,
        Some("UNAVAILABLE") => 503,
        Some("DEADLINE_EXCEEDED") => 504,
        _ => 502,
    }
}

impl StreamDecoder for ChunkDecoder {
    fn push(&mut self, _event: &str, data: &str, out: &mut Vec<Event>) -> Result<(), ChunkError> {
        ChunkDecoder::push(self, data, out)
    }

    fn is_done(&self) -> bool {
        // Gemini streams have no terminator; the body simply ends.
        false
    }

    fn finish(&mut self) -> Result<(), ChunkError> {
        ChunkDecoder::finish(self)
    }
}

impl Wire for GeminiWire {
    type Decoder = ChunkDecoder;

    const STATUS_OF_ERROR_TYPE: fn(Option<&str>) -> u16 = status_of;
    const URL_VARIES: bool = true;

    fn generate_url(&self, base_url: &str, model: &str, stream: bool) -> String {
        let model = gemini::decode::model_name(model);
        if stream {
            format!("{base_url}/v1beta/models/{model}:streamGenerateContent?alt=sse")
        } else {
            format!("{base_url}/v1beta/models/{model}:generateContent")
        }
    }

    fn models_url(&self, base_url: &str) -> String {
        format!("{base_url}/v1beta/models")
    }

    fn encode(&self, request: &Request, model: &str) -> Result<Encoded, Error> {
        gemini::encode_request_body(request, gemini::decode::model_name(model))
    }

    fn decode_body(&self, body: &[u8]) -> Result<Vec<Event>, ChunkError> {
        gemini::decode_response(body)
    }

    fn stream_decoder(&self) -> ChunkDecoder {
        ChunkDecoder::new()
    }

    fn auth_headers(&self, key: &str) -> Vec<(HeaderName, String)> {
        vec![(HeaderName::from_static("x-goog-api-key"), key.to_owned())]
    }

    /// `{"models":[{"name":"models/gemini-2.5-pro", ...}]}`.
    fn model_ids(&self, body: &Value) -> Vec<String> {
        body.get("models")
            .and_then(Value::as_array)
            .map(|models| {
                models
                    .iter()
                    .filter_map(|m| m.get("name").and_then(Value::as_str))
                    .map(|name| gemini::decode::model_name(name).to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}
