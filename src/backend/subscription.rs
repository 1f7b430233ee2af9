//! The wires of the subscription-login back-ends: the public protocols with the changes
//! the subscription endpoints insist on. Tokens come from the CLIs' login files
//! (`credentials::login`); these only shape requests.
//!
//! - `openai-oauth` calls the ChatGPT back-end the Codex CLI calls
//!   (`https://chatgpt.com/backend-api/codex/responses`): the Responses API, always
//!   streamed, never stored, with non-blank `instructions`, without the sampling fields it
//!   refuses, and with the account in `chatgpt-account-id` (CLIProxyAPI
//!   `codex_executor_*.go`, LIP `openai_codex/payload.py`).
//! - `anthropic-oauth` calls the Messages API with the token as a bearer (never
//!   `x-api-key`), the `oauth-2025-04-20` beta, and Claude Code's identity sentence as the
//!   first system block, without which the API refuses OAuth tokens for most models
//!   (anthropics/claude-code#40515).
//! - `qwen-oauth` calls an OpenAI chat endpoint at the login's `resource_url`, with the
//!   headers Qwen Code sends (its rate limits are stricter for other clients,
//!   QwenLM/qwen-code#1742).

use std::sync::LazyLock;

use reqwest::header::{AUTHORIZATION, HeaderName};
use serde_json::{Value, json};

use super::anthropic::AnthropicWire;
use super::http::Wire;
use super::openai::ResponsesWire;
use crate::Error;
use crate::config::BackendConfig;
use crate::credentials::login::Tokens;
use crate::model::{Event, Part, Protocol, Request, Role};
use crate::protocol::ChunkError;
use crate::protocol::tools_out::Encoded;

/// What Claude Code puts first in every system prompt; Anthropic checks for it.
pub const CLAUDE_CODE_IDENTITY: &str = "You are Claude Code, Anthropic's official CLI for Claude.";
/// The betas an OAuth token needs, merged into the client's own.
const CLAUDE_OAUTH_BETAS: [&str; 2] = ["claude-code-20250219", "oauth-2025-04-20"];
/// What Codex is told when the client gave no system prompt: the endpoint refuses a
/// request without instructions.
const DEFAULT_CODEX_INSTRUCTIONS: &str = "You are a helpful coding assistant.";
/// Responses fields the ChatGPT back-end refuses with 400 "Unsupported parameter".
const CODEX_REFUSED_FIELDS: [&str; 7] = [
    "temperature",
    "top_p",
    "max_output_tokens",
    "previous_response_id",
    "prompt_cache_retention",
    "safety_identifier",
    "stream_options",
];

/// The quoted names whose presence in a client's body would have the ChatGPT shaping change
/// it: the refused fields, and `system` (a role it rewrites).
static CODEX_SHAPED_NAMES: LazyLock<Vec<memchr::memmem::Finder<'static>>> = LazyLock::new(|| {
    CODEX_REFUSED_FIELDS
        .iter()
        .chain(&["system"])
        .map(|name| memchr::memmem::Finder::new(format!("\"{name}\"").as_bytes()).into_owned())
        .collect()
});

fn bearer(token: &str) -> Vec<(HeaderName, String)> {
    vec![(AUTHORIZATION, format!("Bearer {token}"))]
}

pub fn codex_identity(_: &BackendConfig) -> Vec<(&'static str, String)> {
    vec![
        // DEFAULT_ORIGINATOR in codex-rs/login/src/auth/default_client.rs.
        ("originator", "codex_cli_rs".into()),
        (
            "user-agent",
            format!(
                "codex_cli_rs/0.63.0 ({} ; {}) llmux/{}",
                std::env::consts::OS,
                std::env::consts::ARCH,
                env!("CARGO_PKG_VERSION")
            ),
        ),
    ]
}

pub fn claude_identity(_: &BackendConfig) -> Vec<(&'static str, String)> {
    vec![
        ("user-agent", "claude-cli/2.1.22 (external, cli)".into()),
        ("x-app", "cli".into()),
    ]
}

pub fn qwen_identity(_: &BackendConfig) -> Vec<(&'static str, String)> {
    vec![
        (
            "user-agent",
            format!(
                "QwenCode/0.2.0 ({}; {})",
                std::env::consts::OS,
                std::env::consts::ARCH
            ),
        ),
        ("x-dashscope-authtype", "qwen-oauth".into()),
        ("x-dashscope-cachecontrol", "enable".into()),
    ]
}

/// `openai-oauth`: the Responses wire, shaped for the ChatGPT back-end.
pub struct CodexWire;

impl Wire for CodexWire {
    type Decoder = <ResponsesWire as Wire>::Decoder;

    const ALWAYS_STREAMS: bool = true;
    const SENDS_CLIENT_BODIES_OF: Option<Protocol> = Some(Protocol::OpenAiResponses);

    /// Codex CLI's own requests are already shaped for the ChatGPT back-end: they go as
    /// they came.
    fn encodes_as_its_protocol(&self, request: &Request) -> bool {
        shaped_for_chatgpt(request)
    }

    /// No refused field even as `null`, and no `"system"` anywhere (an item's role the
    /// shaping would make `developer`, on an item the decoder keeps whole): the body is
    /// searched for the quoted names, and a mention in the structure sends it encoded.
    fn sends_client_bytes(&self, body: &[u8]) -> bool {
        !CODEX_SHAPED_NAMES
            .iter()
            .any(|name| name.find(body).is_some())
    }

    fn generate_url(&self, base_url: &str, model: &str, stream: bool) -> String {
        ResponsesWire.generate_url(base_url, model, stream)
    }

    fn models_url(&self, base_url: &str) -> String {
        ResponsesWire.models_url(base_url)
    }

    fn encode(&self, request: &Request, model: &str) -> Result<Encoded, Error> {
        let mut encoded = ResponsesWire.encode(request, model)?;
        shape_for_chatgpt(&mut encoded.body);
        Ok(encoded)
    }

    fn decode_body(&self, body: &[u8]) -> Result<Vec<Event>, ChunkError> {
        ResponsesWire.decode_body(body)
    }

    fn stream_decoder(&self) -> Self::Decoder {
        ResponsesWire.stream_decoder()
    }

    fn auth_headers(&self, token: &str) -> Vec<(HeaderName, String)> {
        bearer(token)
    }

    fn login_headers(&self, tokens: &Tokens, request: &Request) -> Vec<(HeaderName, String)> {
        let mut headers = Vec::new();
        if let Some(account) = &tokens.account.id {
            headers.push((
                HeaderName::from_static("chatgpt-account-id"),
                account.clone(),
            ));
        }
        // The conversation's id doubles as the prompt-cache key.
        if let Some(session) = &request.client.session_id {
            headers.push((HeaderName::from_static("session_id"), session.clone()));
        }
        headers
    }

    fn model_ids(&self, body: &Value) -> Vec<String> {
        // {"models":[{"slug":...}]} from the ChatGPT back-end; {"data":[...]} elsewhere.
        match body.get("models").and_then(Value::as_array) {
            Some(models) => models
                .iter()
                .filter_map(|m| m.get("slug").and_then(Value::as_str).map(str::to_owned))
                .collect(),
            None => ResponsesWire.model_ids(body),
        }
    }
}

/// Removes the system messages at the start of a Responses `input` and returns their
/// text: chat clients send the system prompt as a message, Codex wants it as
/// `instructions`.
fn leading_system_text(input: &mut Vec<Value>) -> String {
    let leading = input
        .iter()
        .take_while(|item| item.get("role").and_then(Value::as_str) == Some("system"))
        .count();
    let texts: Vec<String> = input
        .drain(..leading)
        .map(|item| match &item["content"] {
            Value::String(text) => text.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        })
        .collect();
    texts.join("\n\n")
}

/// Whether the Responses encoding of `request` is a body [`shape_for_chatgpt`] leaves as
/// it is: streamed, `store: false`, instructions that are not blank, no system message, no
/// field the back-end refuses, and the encrypted reasoning asked for with any reasoning.
/// Codex CLI's requests are: they go to the ChatGPT back-end as the client sent them.
fn shaped_for_chatgpt(request: &Request) -> bool {
    let ext = request.extensions.for_protocol(Protocol::OpenAiResponses);
    let has = |key: &str| ext.is_some_and(|ext| ext.contains_key(key));
    let sampling = &request.sampling;
    let refused = CODEX_REFUSED_FIELDS.iter().any(|field| has(field))
        || sampling.temperature.is_some()
        || sampling.top_p.is_some()
        || sampling.max_tokens.is_some();
    let unstored = ext.and_then(|ext| ext.get("store")) == Some(&Value::Bool(false));
    let instructions = request
        .system
        .iter()
        .filter_map(Part::as_text)
        .any(|text| !text.trim().is_empty());
    let reasoning = has("reasoning")
        || request
            .reasoning
            .as_ref()
            .is_some_and(|r| r.effort.is_some());
    request.stream
        && unstored
        && instructions
        && !refused
        && (!reasoning || has("include"))
        && request.messages.iter().all(|m| m.role != Role::System)
}

/// A Responses body as the ChatGPT back-end takes it: the fields it refuses left out, a
/// stream, nothing stored, instructions never blank, later system messages as developer
/// ones.
fn shape_for_chatgpt(body: &mut Value) {
    if let Some(fields) = body.as_object_mut() {
        for field in CODEX_REFUSED_FIELDS {
            fields.remove(field);
        }
        fields.insert("stream".into(), Value::Bool(true));
        fields.insert("store".into(), Value::Bool(false));
        let blank = fields
            .get("instructions")
            .and_then(Value::as_str)
            .is_none_or(|text| text.trim().is_empty());
        if blank {
            let hoisted = fields
                .get_mut("input")
                .and_then(Value::as_array_mut)
                .map(leading_system_text)
                .filter(|text| !text.trim().is_empty());
            let instructions = hoisted.unwrap_or_else(|| DEFAULT_CODEX_INSTRUCTIONS.into());
            fields.insert("instructions".into(), instructions.into());
        }
        // Later system messages go as developer messages, the role Codex itself sends.
        for item in fields
            .get_mut("input")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if item.get("role").and_then(Value::as_str) == Some("system") {
                item["role"] = Value::from("developer");
            }
        }
        // Reasoning is not stored server-side (store: false): ask for it encrypted so
        // the next turn can send it back.
        if fields.contains_key("reasoning") && !fields.contains_key("include") {
            fields.insert("include".into(), json!(["reasoning.encrypted_content"]));
        }
    }
}

/// `anthropic-oauth`: the Messages wire with a bearer token and Claude Code's identity.
pub struct ClaudeOAuthWire;

/// Claude Code's identity as the body's first system text.
fn put_identity(body: &mut Value) {
    if let Some(fields) = body.as_object_mut() {
        let system = fields.remove("system");
        fields.insert("system".into(), system_with_identity(system));
    }
}

impl Wire for ClaudeOAuthWire {
    type Decoder = <AnthropicWire as Wire>::Decoder;

    const STATUS_OF_ERROR_TYPE: fn(Option<&str>) -> u16 = AnthropicWire::STATUS_OF_ERROR_TYPE;

    fn generate_url(&self, base_url: &str, model: &str, stream: bool) -> String {
        AnthropicWire.generate_url(base_url, model, stream)
    }

    fn models_url(&self, base_url: &str) -> String {
        AnthropicWire.models_url(base_url)
    }

    fn encode(&self, request: &Request, model: &str) -> Result<Encoded, Error> {
        let mut encoded = AnthropicWire.encode(request, model)?;
        put_identity(&mut encoded.body);
        Ok(encoded)
    }

    fn decode_body(&self, body: &[u8]) -> Result<Vec<Event>, ChunkError> {
        AnthropicWire.decode_body(body)
    }

    /// The identity goes into the request only: answers are plain Anthropic messages.
    fn decode_body_checked(
        &self,
        body: &[u8],
    ) -> Result<(Vec<Event>, Option<Protocol>), ChunkError> {
        AnthropicWire.decode_body_checked(body)
    }

    fn stream_decoder(&self) -> Self::Decoder {
        AnthropicWire.stream_decoder()
    }

    fn auth_headers(&self, token: &str) -> Vec<(HeaderName, String)> {
        bearer(token)
    }

    fn forwarded_headers(&self, request: &Request) -> Vec<(HeaderName, String)> {
        let beta = HeaderName::from_static("anthropic-beta");
        let mut headers = AnthropicWire.forwarded_headers(request);
        let mut betas: Vec<String> = headers
            .iter()
            .filter(|(name, _)| *name == beta)
            .flat_map(|(_, value)| value.split(',').map(|b| b.trim().to_owned()))
            .filter(|b| !b.is_empty())
            .collect();
        headers.retain(|(name, _)| *name != beta);
        for needed in CLAUDE_OAUTH_BETAS {
            if !betas.iter().any(|b| b == needed) {
                betas.push(needed.to_owned());
            }
        }
        headers.push((beta, betas.join(",")));
        headers
    }
}

/// The system prompt as blocks, Claude Code's identity sentence first (once).
fn system_with_identity(system: Option<Value>) -> Value {
    let mut blocks = match system {
        Some(Value::String(text)) if !text.is_empty() => {
            vec![json!({"type": "text", "text": text})]
        }
        Some(Value::Array(blocks)) => blocks,
        _ => Vec::new(),
    };
    let first_is_identity = blocks
        .first()
        .and_then(|b| b.get("text"))
        .and_then(Value::as_str)
        .is_some_and(|text| text.starts_with(CLAUDE_CODE_IDENTITY));
    if !first_is_identity {
        blocks.insert(0, json!({"type": "text", "text": CLAUDE_CODE_IDENTITY}));
    }
    Value::Array(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Message;

    /// What the decoded request cannot tell is read from the bytes: a refused field sent as
    /// `null`, and a `system` role on an item the decoder keeps whole, make the body go
    /// encoded (and shaped); Codex CLI's own body goes.
    #[test]
    fn a_body_naming_what_the_shaping_changes_is_not_sent_as_it_came() {
        let codex = br#"{"model":"m","instructions":"You are Codex.","input":[{"type":"message","role":"user","content":"say \"system\""}],"store":false,"stream":true}"#;
        assert!(CodexWire.sends_client_bytes(codex));
        let shaped: [&[u8]; 3] = [
            br#"{"model":"m","temperature":null,"store":false,"stream":true}"#,
            br#"{"model":"m","previous_response_id":null,"store":false,"stream":true}"#,
            br#"{"model":"m","input":[{"type":"custom_tool_call_output","role":"system"}]}"#,
        ];
        for body in shaped {
            assert!(
                !CodexWire.sends_client_bytes(body),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    /// The property behind Codex requests going to the ChatGPT back-end as they came:
    /// whenever the decoder says a Responses request may go as it came and
    /// `shaped_for_chatgpt` says the ChatGPT shaping leaves its encoding alone, the client's
    /// body (patched) is, in the encoder's words, what the Codex wire would send. Random
    /// requests, most of them with what Codex CLI always sends.
    #[test]
    fn a_codex_request_sent_as_it_came_is_what_the_codex_wire_writes() {
        use crate::model::ClientBody;
        use crate::protocol::openai_responses::decode_request_checked;
        use crate::protocol::openai_responses::request_pass_through_tests::{as_encoded, request};
        use crate::protocol::round_trip_support::same_json;

        let (mut passed, mut reshaped) = (0, 0);
        for seed in 0..4000 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut body: Value = serde_json::from_slice(&request(&mut rng)).unwrap();
            let fields = body.as_object_mut().unwrap();
            let mostly = |rng: &mut fastrand::Rng| rng.u8(..8) != 0;
            if mostly(&mut rng) {
                fields.insert("stream".into(), json!(true));
            }
            if mostly(&mut rng) {
                fields.insert("store".into(), json!(false));
            }
            if mostly(&mut rng) {
                fields.insert("instructions".into(), json!("You are Codex."));
            }
            if mostly(&mut rng) {
                for field in [
                    "temperature",
                    "top_p",
                    "max_output_tokens",
                    "stream_options",
                ] {
                    fields.remove(field);
                }
            }
            if rng.bool() && fields.contains_key("reasoning") {
                fields.insert("include".into(), json!(["reasoning.encrypted_content"]));
            }
            let bytes = bytes::Bytes::from(serde_json::to_vec(&body).unwrap());
            let Ok((request, _, Some(edits))) = decode_request_checked(&bytes) else {
                continue;
            };
            if !shaped_for_chatgpt(&request) {
                reshaped += 1;
                continue;
            }
            passed += 1;
            let client = ClientBody::new(Protocol::OpenAiResponses, bytes, &request, edits);
            let sent = client
                .body_for(Protocol::OpenAiResponses, &request, "gpt-5")
                .unwrap();
            if !CodexWire.sends_client_bytes(&sent) {
                reshaped += 1;
                passed -= 1;
                continue;
            }
            let sent: Value = serde_json::from_slice(&sent).unwrap();
            let encoded = CodexWire.encode(&request, "gpt-5").unwrap().to_value();
            assert_eq!(
                same_json(as_encoded(sent)),
                same_json(encoded),
                "seed {seed}: {body}"
            );
        }
        assert!(
            passed > 500 && reshaped > 300,
            "{passed} sent as they came, {reshaped} reshaped"
        );
    }

    #[test]
    fn codex_bodies_are_streamed_unstored_with_instructions_and_no_refused_fields() {
        let mut request = Request::new(
            "gpt-5",
            vec![Message::new(Role::User, vec![Part::text("Hi")])],
        );
        request.sampling.temperature = Some(0.2);
        let body = CodexWire.encode(&request, "gpt-5").unwrap().to_value();
        assert_eq!(body["stream"], true);
        assert_eq!(body["store"], false);
        assert_eq!(body["instructions"], DEFAULT_CODEX_INSTRUCTIONS);
        assert!(body.get("temperature").is_none(), "{body}");
        request.system = vec![Part::text("Be terse.")].into();
        let body = CodexWire.encode(&request, "gpt-5").unwrap().to_value();
        assert_eq!(body["instructions"], "Be terse.");
        // A chat client's system message becomes the instructions.
        request.system.clear();
        request
            .messages
            .insert(0, Message::new(Role::System, vec![Part::text("Be kind.")]));
        let body = CodexWire.encode(&request, "gpt-5").unwrap().to_value();
        assert_eq!(body["instructions"], "Be kind.");
        assert_eq!(body["input"].as_array().unwrap().len(), 1, "{body}");
    }

    /// The login wires send what their protocol's encoder gives with the tools as values,
    /// shaped as they shape it, their tools written from the text kept for the list (a
    /// refused field removed around the tools' place, the system moved).
    #[test]
    fn login_wires_send_their_encoded_body_with_kept_tools() {
        let mut request = Request::new(
            "gpt-5",
            vec![Message::new(Role::User, vec![Part::text("Hi")])],
        );
        request.system = vec![Part::text("Be terse.")].into();
        request.sampling.temperature = Some(0.2);
        request.sampling.top_p = Some(0.5);
        request.tools = vec![crate::model::Tool::Function {
            name: "shell".into(),
            description: Some("Runs \"a\"\ncommand".into()),
            parameters: Some(json!({"type": "object"})),
            strict: None,
            extensions: Default::default(),
        }]
        .into();
        // Against the protocol's encoder with the tools as values, shaped the same way.
        let same = |as_values: Value, encode: &dyn Fn() -> Result<Encoded, Error>| {
            let expected = serde_json::to_vec(&as_values).unwrap();
            for _ in 0..2 {
                let sent = encode().unwrap().to_vec(0);
                assert_eq!(
                    String::from_utf8_lossy(&sent),
                    String::from_utf8_lossy(&expected)
                );
            }
            as_values
        };
        let mut responses = crate::protocol::openai_responses::encode_request(&request, "gpt-5");
        shape_for_chatgpt(&mut responses);
        let codex = same(responses, &|| CodexWire.encode(&request, "gpt-5"));
        assert_eq!(codex["tools"][0]["name"], "shell");
        let mut messages = crate::protocol::anthropic::encode_request(&request, "claude");
        put_identity(&mut messages);
        let claude = same(messages, &|| ClaudeOAuthWire.encode(&request, "claude"));
        assert_eq!(claude["tools"][0]["name"], "shell");
    }

    #[test]
    fn claude_code_identity_comes_first_once_and_betas_merge() {
        assert_eq!(
            system_with_identity(Some(json!("Be terse."))),
            json!([{"type": "text", "text": CLAUDE_CODE_IDENTITY}, {"type": "text", "text": "Be terse."}])
        );
        let already = json!([{"type": "text", "text": CLAUDE_CODE_IDENTITY}]);
        assert_eq!(system_with_identity(Some(already.clone())), already);
        let mut request = Request::new(
            "claude",
            vec![Message::new(Role::User, vec![Part::text("Hi")])],
        );
        request.client.protocol_headers = Some((
            crate::model::Protocol::Anthropic,
            vec![(
                "anthropic-beta".into(),
                "oauth-2025-04-20, files-api-2025-04-14".into(),
            )],
        ));
        let headers = ClaudeOAuthWire.forwarded_headers(&request);
        let beta: Vec<&str> = headers
            .iter()
            .filter(|(n, _)| n.as_str() == "anthropic-beta")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(
            beta,
            ["oauth-2025-04-20,files-api-2025-04-14,claude-code-20250219"]
        );
    }
}
