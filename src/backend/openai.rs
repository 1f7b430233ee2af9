//! `openai`: OpenAI's own API (https://api.openai.com/v1), key in OPENAI_API_KEY.
//!
//! Speaks Chat Completions ([`ChatWire`], shared by every OpenAI-chat provider), or the
//! Responses API with `api = "responses"` ([`ResponsesWire`]). OpenAI
//! rejects unknown request fields, which is why the chat encoder only sends reasoning text
//! back to servers that sent it in that field.

use reqwest::header::{AUTHORIZATION, HeaderName};

use super::http::Wire;
use crate::Error;
use crate::model::{Event, Protocol, Request};
use crate::protocol::ChunkError;
use crate::protocol::openai_chat::decode::decode_response_checked;
use crate::protocol::openai_chat::{ChunkDecoder, decode_response, encode_request_body};
use crate::protocol::openai_responses as responses;
use crate::protocol::tools_out::Encoded;

/// The OpenAI Chat Completions wire: `POST {base}/chat/completions`, Bearer auth.
pub struct ChatWire;

impl Wire for ChatWire {
    type Decoder = ChunkDecoder;
    const SENDS_CLIENT_BODIES_OF: Option<Protocol> = Some(Protocol::OpenAiChat);

    fn generate_url(&self, base_url: &str, _model: &str, _stream: bool) -> String {
        format!("{base_url}/chat/completions")
    }

    fn models_url(&self, base_url: &str) -> String {
        format!("{base_url}/models")
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
        Ok((events, lossless.then_some(Protocol::OpenAiChat)))
    }

    fn stream_decoder(&self) -> ChunkDecoder {
        ChunkDecoder::new()
    }

    fn auth_headers(&self, key: &str) -> Vec<(HeaderName, String)> {
        vec![(AUTHORIZATION, format!("Bearer {key}"))]
    }
}

/// The OpenAI Responses wire (`api = "responses"`): `POST {base}/responses`, Bearer auth.
/// Lossless when the client speaks Responses too.
pub struct ResponsesWire;

impl crate::protocol::StreamDecoder for responses::EventDecoder {
    fn push(&mut self, _event: &str, data: &str, out: &mut Vec<Event>) -> Result<(), ChunkError> {
        responses::EventDecoder::push(self, data, out)
    }

    fn is_done(&self) -> bool {
        responses::EventDecoder::is_done(self)
    }

    fn finish(&mut self) -> Result<(), ChunkError> {
        responses::EventDecoder::finish(self)
    }
}

impl Wire for ResponsesWire {
    type Decoder = responses::EventDecoder;
    const SENDS_CLIENT_BODIES_OF: Option<Protocol> = Some(Protocol::OpenAiResponses);

    fn generate_url(&self, base_url: &str, _model: &str, _stream: bool) -> String {
        format!("{base_url}/responses")
    }

    fn models_url(&self, base_url: &str) -> String {
        format!("{base_url}/models")
    }

    fn encode(&self, request: &Request, model: &str) -> Result<Encoded, Error> {
        Ok(responses::encode_request_body(request, model))
    }

    fn decode_body(&self, body: &[u8]) -> Result<Vec<Event>, ChunkError> {
        responses::decode_response(body)
    }

    fn decode_body_checked(
        &self,
        body: &[u8],
    ) -> Result<(Vec<Event>, Option<Protocol>), ChunkError> {
        let (events, lossless) = responses::decode_response_checked(body)?;
        Ok((events, lossless.then_some(Protocol::OpenAiResponses)))
    }

    fn stream_decoder(&self) -> responses::EventDecoder {
        responses::EventDecoder::new()
    }

    fn auth_headers(&self, key: &str) -> Vec<(HeaderName, String)> {
        vec![(AUTHORIZATION, format!("Bearer {key}"))]
    }
}
