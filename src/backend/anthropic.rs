//! `anthropic`: Anthropic's Messages API (https://api.anthropic.com), key in
//! ANTHROPIC_API_KEY, sent as `x-api-key` with `anthropic-version`.
//!
//! The same wire serves `anthropic-compatible` (any provider with an Anthropic-style
//! endpoint; base URL required, key optional) and `zai-coding-plan`
//! (https://api.z.ai/api/anthropic, key in ZAI_API_KEY). `base_url` is the host root, as in
//! the Anthropic SDKs; llmux appends `/v1/messages`. The client's `anthropic-version` and
//! `anthropic-beta` headers are forwarded unchanged; other protocols never see them.

use reqwest::header::HeaderName;

use super::http::Wire;
use crate::Error;
use crate::model::{Event, Protocol, Request};
use crate::protocol::ChunkError;
use crate::protocol::anthropic::decode::decode_response_checked;
use crate::protocol::anthropic::{
    DEFAULT_VERSION, EventDecoder, decode_response, encode_request_body,
};
use crate::protocol::tools_out::Encoded;

pub struct AnthropicWire;

const VERSION: HeaderName = HeaderName::from_static("anthropic-version");

/// The status Anthropic gives each error type (https://docs.anthropic.com/en/api/errors).
fn status_of_error_type(error_type: Option<&str>) -> u16 {
    match error_type {
        Some("invalid_request_error") => 400,
        Some("authentication_error") => 401,
        Some("permission_error") => 403,
        Some("not_found_error") => 404,
        Some("request_too_large") => 413,
        Some("rate_limit_error") => 429,
        Some("api_error") => 500,
        Some("overloaded_error") => 529,
        _ => 502,
    }
}

impl Wire for AnthropicWire {
    type Decoder = EventDecoder;

    const STATUS_OF_ERROR_TYPE: fn(Option<&str>) -> u16 = status_of_error_type;
    const SENDS_CLIENT_BODIES_OF: Option<Protocol> = Some(Protocol::Anthropic);

    fn generate_url(&self, base_url: &str, _model: &str, _stream: bool) -> String {
        format!("{base_url}/v1/messages")
    }

    fn models_url(&self, base_url: &str) -> String {
        format!("{base_url}/v1/models")
    }

    fn encode(&self, request: &Request, model: &str) -> Result<Encoded, Error> {
        Ok(encode_request_body(request, model))
    }

    fn decode_body(&self, body: &[u8]) -> Result<Vec<Event>, ChunkError> {
        decode_response(body)
    }

    fn decode_body_checked(
        &self,
        body: &[u8],
    ) -> Result<(Vec<Event>, Option<Protocol>), ChunkError> {
        let (events, lossless) = decode_response_checked(body)?;
        Ok((events, lossless.then_some(Protocol::Anthropic)))
    }

    fn stream_decoder(&self) -> EventDecoder {
        EventDecoder::new()
    }

    fn auth_headers(&self, key: &str) -> Vec<(HeaderName, String)> {
        vec![(HeaderName::from_static("x-api-key"), key.to_owned())]
    }

    fn forwarded_headers(&self, request: &Request) -> Vec<(HeaderName, String)> {
        let mut headers = Vec::new();
        if let Some((Protocol::Anthropic, client)) = &request.client.protocol_headers {
            for (name, value) in client {
                if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
                    headers.push((name, value.clone()));
                }
            }
        }
        if !headers.iter().any(|(name, _)| *name == VERSION) {
            headers.push((VERSION, DEFAULT_VERSION.to_owned()));
        }
        headers
    }
}
