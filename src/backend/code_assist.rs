//! The Code Assist API, the back-end the Gemini CLI calls with a Google login
//! (`gemini-cli-oauth-personal`, `gemini-cli-cloud-project`):
//! `https://cloudcode-pa.googleapis.com/v1internal:{method}`.
//!
//! Requests are the public `generateContent` body wrapped in an envelope naming the model
//! and the Google Cloud project that pays (`{"model", "project", "user_prompt_id",
//! "request": {...}}`); answers, streamed or not, are the public response wrapped in
//! `{"response": {...}}` (gemini-cli `packages/core/src/code_assist/converter.ts`).
//!
//! The project is learned once per login before its first request (gemini-cli
//! `code_assist/setup.ts`, `setupUser`): `loadCodeAssist` tells whether the account is
//! set up and its project; otherwise `onboardUser` sets it up (a long-running operation,
//! polled) on the default tier, or for a Cloud project on standard-tier with that project,
//! never free-tier.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderName};
use serde_json::{Value, json};

use super::http::Wire;
use crate::Error;
use crate::config::BackendConfig;
use crate::error::ErrorKind;
use crate::model::{Event, Request};
use crate::protocol::gemini::{self, ChunkDecoder};
use crate::protocol::tools_out::Encoded;
use crate::protocol::{ChunkError, StreamDecoder};

/// How many times an onboarding operation is polled before llmux gives up.
const ONBOARD_POLLS: u32 = 60;

pub struct CodeAssistWire {
    pub backend: String,
    /// The project requests bill to, when configured; else the one the account has.
    pub project: Option<String>,
    /// A Cloud project account (standard or enterprise tier), not a personal one.
    pub cloud: bool,
    /// How often an onboarding operation is polled (5 s, as the Gemini CLI does).
    pub poll: Duration,
}

pub fn identity(_: &BackendConfig) -> Vec<(&'static str, String)> {
    vec![(
        "user-agent",
        format!(
            "GeminiCLI/0.20.0 ({}; {}) llmux/{}",
            std::env::consts::OS,
            std::env::consts::ARCH,
            env!("CARGO_PKG_VERSION")
        ),
    )]
}

impl CodeAssistWire {
    fn setup_error(&self, message: String) -> Error {
        ErrorKind::BackendNotConfigured {
            backend: self.backend.clone(),
            message,
        }
        .into()
    }

    /// POSTs a Code Assist method (`loadCodeAssist`, `onboardUser`) or GETs an operation.
    async fn call(
        &self,
        http: &reqwest::Client,
        url: String,
        token: &str,
        body: Option<Value>,
    ) -> Result<Value, Error> {
        let request = match &body {
            Some(body) => http
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string()),
            None => http.get(&url),
        };
        let response = request
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .map_err(|e| self.setup_error(format!("Code Assist is unreachable: {e}")))?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !(200..300).contains(&status) {
            let message = value["error"]["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| text.chars().take(300).collect());
            let method = url.rsplit([':', '/']).next().unwrap_or_default().to_owned();
            return Err(ErrorKind::Upstream {
                backend: self.backend.clone(),
                status,
                message: format!("setting up the account ({method}) failed: {message}"),
                error_type: value["error"]["status"].as_str().map(str::to_owned),
                code: None,
                retry_after: None,
            }
            .into());
        }
        Ok(value)
    }

    /// The account's project, as `{"project": ...}`: from `loadCodeAssist` when it is set
    /// up, else after onboarding it.
    async fn learn_project(
        &self,
        http: &reqwest::Client,
        base: &str,
        token: &str,
    ) -> Result<Value, Error> {
        let project = self.project.clone();
        let metadata = json!({
            "ideType": "IDE_UNSPECIFIED",
            "platform": "PLATFORM_UNSPECIFIED",
            "pluginType": "GEMINI",
            "duetProject": project,
        });
        let load = self
            .call(
                http,
                format!("{base}:loadCodeAssist"),
                token,
                Some(json!({"cloudaicompanionProject": project, "metadata": metadata})),
            )
            .await?;
        if load.get("currentTier").is_some_and(|t| !t.is_null()) {
            let found = project_id(&load["cloudaicompanionProject"]).or(project);
            return found
                .map(|project| json!({"project": project}))
                .ok_or_else(|| self.setup_error(ineligible(&load)));
        }
        let tier = self.onboarding_tier(&load);
        if self.cloud && project.is_none() {
            return Err(self.setup_error(
                "a Cloud project account needs its project: set `project` in the back-end or \
                 GOOGLE_CLOUD_PROJECT"
                    .into(),
            ));
        }
        let mut onboard = json!({"tierId": tier, "metadata": metadata});
        if tier == "free-tier" {
            // The free tier brings its own project; naming one makes onboarding fail.
            onboard["metadata"]
                .as_object_mut()
                .map(|m| m.remove("duetProject"));
        } else {
            onboard["cloudaicompanionProject"] = json!(project);
        }
        let mut operation = self
            .call(http, format!("{base}:onboardUser"), token, Some(onboard))
            .await?;
        for _ in 0..ONBOARD_POLLS {
            if operation["done"] == true {
                break;
            }
            tokio::time::sleep(self.poll).await;
            let name = operation["name"].as_str().unwrap_or_default().to_owned();
            if name.is_empty() {
                return Err(self.setup_error("onboarding answered without an operation".into()));
            }
            operation = self
                .call(http, format!("{base}/{name}"), token, None)
                .await?;
        }
        if operation["done"] != true {
            return Err(self.setup_error("onboarding the account did not finish".into()));
        }
        project_id(&operation["response"]["cloudaicompanionProject"])
            .or(project)
            .map(|project| json!({"project": project}))
            .ok_or_else(|| self.setup_error(ineligible(&load)))
    }

    /// Personal: the tier `loadCodeAssist` marks default (legacy-tier otherwise); Cloud:
    /// standard-tier, else enterprise-tier when only that is offered.
    fn onboarding_tier(&self, load: &Value) -> String {
        let allowed: Vec<&Value> = load["allowedTiers"]
            .as_array()
            .map(|tiers| tiers.iter().collect())
            .unwrap_or_default();
        let id = |tier: &&Value| tier["id"].as_str().map(str::to_owned);
        if self.cloud {
            let offered = |name: &str| allowed.iter().any(|t| t["id"] == name);
            return if !offered("standard-tier") && offered("enterprise-tier") {
                "enterprise-tier".into()
            } else {
                "standard-tier".into()
            };
        }
        allowed
            .iter()
            .find(|t| t["isDefault"] == true)
            .and_then(id)
            .unwrap_or_else(|| "legacy-tier".into())
    }
}

/// A project id given as a string or as `{"id": ...}`.
fn project_id(value: &Value) -> Option<String> {
    value
        .as_str()
        .or_else(|| value["id"].as_str())
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
}

/// Why an account has no project: the reasons `loadCodeAssist` gives, else what to set.
fn ineligible(load: &Value) -> String {
    let reasons: Vec<&str> = load["ineligibleTiers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["reasonMessage"].as_str())
        .collect();
    if reasons.is_empty() {
        "the account has no Code Assist project: set `project` in the back-end or \
         GOOGLE_CLOUD_PROJECT"
            .into()
    } else {
        format!("the account cannot use Code Assist: {}", reasons.join("; "))
    }
}

/// The public Gemini answer inside a Code Assist one (`{"response": {...}}`); an error
/// answer stays as it is.
fn unwrap_response(value: Value) -> Value {
    match value {
        Value::Object(mut fields) if fields.contains_key("response") => {
            fields.remove("response").unwrap_or(Value::Null)
        }
        other => other,
    }
}

/// Gemini's stream decoder over the unwrapped events.
pub struct CodeAssistDecoder(ChunkDecoder);

impl StreamDecoder for CodeAssistDecoder {
    fn push(&mut self, _event: &str, data: &str, out: &mut Vec<Event>) -> Result<(), ChunkError> {
        match serde_json::from_str::<Value>(data) {
            Ok(value) => self.0.push(&unwrap_response(value).to_string(), out),
            Err(_) => self.0.push(data, out),
        }
    }

    fn is_done(&self) -> bool {
        false
    }

    fn finish(&mut self) -> Result<(), ChunkError> {
        self.0.finish()
    }
}

/// A Gemini body as Code Assist takes it: inside `request`, with the account's project and
/// the conversation's session.
fn wrapped_for_code_assist(
    request: &Request,
    model: &str,
    setup: &Value,
    mut inner: Value,
) -> Value {
    if let (Some(session), Some(fields)) = (&request.client.session_id, inner.as_object_mut()) {
        fields.insert("session_id".into(), Value::from(session.as_str()));
    }
    json!({
        "model": model,
        "project": setup["project"],
        "user_prompt_id": format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)),
        "request": inner,
    })
}

impl Wire for CodeAssistWire {
    type Decoder = CodeAssistDecoder;

    const STATUS_OF_ERROR_TYPE: fn(Option<&str>) -> u16 = super::gemini::status_of;
    const URL_VARIES: bool = true;

    fn generate_url(&self, base_url: &str, _model: &str, stream: bool) -> String {
        if stream {
            format!("{base_url}:streamGenerateContent?alt=sse")
        } else {
            format!("{base_url}:generateContent")
        }
    }

    fn models_url(&self, base_url: &str) -> String {
        base_url.to_owned()
    }

    fn encode(&self, request: &Request, model: &str) -> Result<Encoded, Error> {
        self.encode_for_login(request, model, &json!({"project": self.project}))
    }

    fn encode_for_login(
        &self,
        request: &Request,
        model: &str,
        setup: &Value,
    ) -> Result<Encoded, Error> {
        let model = gemini::decode::model_name(model);
        let inner = gemini::encode_request_body(request, model)?;
        Ok(inner.wrapped(&["request", "tools"], |inner| {
            wrapped_for_code_assist(request, model, setup, inner)
        }))
    }

    fn decode_body(&self, body: &[u8]) -> Result<Vec<Event>, ChunkError> {
        match serde_json::from_slice::<Value>(body) {
            Ok(value) => gemini::decode_response(unwrap_response(value).to_string().as_bytes()),
            Err(_) => gemini::decode_response(body),
        }
    }

    fn stream_decoder(&self) -> CodeAssistDecoder {
        CodeAssistDecoder(ChunkDecoder::new())
    }

    fn auth_headers(&self, token: &str) -> Vec<(HeaderName, String)> {
        vec![(AUTHORIZATION, format!("Bearer {token}"))]
    }

    fn login_setup<'a>(
        &'a self,
        http: &'a reqwest::Client,
        base_url: &'a str,
        token: &'a str,
    ) -> Option<futures::future::BoxFuture<'a, Result<Value, Error>>> {
        Some(Box::pin(self.learn_project(http, base_url, token)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(cloud: bool) -> CodeAssistWire {
        CodeAssistWire {
            backend: "b".into(),
            project: None,
            cloud,
            poll: Duration::ZERO,
        }
    }

    #[test]
    fn tiers_follow_the_account_kind() {
        let load = json!({"allowedTiers": [{"id": "free-tier", "isDefault": true},
                                           {"id": "standard-tier"}]});
        assert_eq!(wire(false).onboarding_tier(&load), "free-tier");
        assert_eq!(wire(true).onboarding_tier(&load), "standard-tier");
        assert_eq!(wire(false).onboarding_tier(&json!({})), "legacy-tier");
        let enterprise = json!({"allowedTiers": [{"id": "enterprise-tier"}]});
        assert_eq!(wire(true).onboarding_tier(&enterprise), "enterprise-tier");
    }

    #[test]
    fn answers_are_unwrapped_and_requests_wrapped() {
        let body =
            br#"{"response":{"candidates":[{"content":{"role":"model","parts":[{"text":"Hi"}]},
            "finishReason":"STOP"}]},"traceId":"t"}"#;
        let events = wire(false).decode_body(body).unwrap();
        assert!(format!("{events:?}").contains("Hi"), "{events:?}");
        let request = Request::new(
            "gemini-2.5-pro",
            vec![crate::model::Message::new(
                crate::model::Role::User,
                vec![crate::model::Part::text("Hello")],
            )],
        );
        let body = wire(false)
            .encode_for_login(&request, "gemini-2.5-pro", &json!({"project": "p-1"}))
            .unwrap()
            .to_value();
        assert_eq!(body["model"], "gemini-2.5-pro");
        assert_eq!(body["project"], "p-1");
        assert_eq!(body["request"]["contents"][0]["parts"][0]["text"], "Hello");
    }

    /// The body sent has the tools, written from the text kept for the list, inside
    /// `request`, where Gemini's encoder with the tools as values puts them: the same JSON but
    /// the random prompt id.
    #[test]
    fn a_wrapped_request_has_its_kept_tools_inside_it() {
        let mut request = Request::new(
            "gemini-2.5-pro",
            vec![crate::model::Message::new(
                crate::model::Role::User,
                vec![crate::model::Part::text("Hello")],
            )],
        );
        request.tools = vec![crate::model::Tool::Function {
            name: "shell".into(),
            description: Some("Runs a command".into()),
            parameters: Some(json!({"type": "object", "properties": {"cmd": {"type": "string"}}})),
            strict: None,
            extensions: Default::default(),
        }]
        .into();
        let setup = json!({"project": "p-1"});
        let without_id = |mut body: Value| {
            body["user_prompt_id"] = Value::Null;
            body
        };
        // Against Gemini's encoder with the tools as values, wrapped the same way.
        let as_values = gemini::encode_request(&request, "gemini-2.5-pro").unwrap();
        let expected = without_id(wrapped_for_code_assist(
            &request,
            "gemini-2.5-pro",
            &setup,
            as_values,
        ));
        for _ in 0..2 {
            let sent = wire(false)
                .encode_for_login(&request, "gemini-2.5-pro", &setup)
                .unwrap()
                .to_vec(0);
            let sent = without_id(serde_json::from_slice(&sent).unwrap());
            assert_eq!(sent, expected);
            assert_eq!(
                sent["request"]["tools"][0]["functionDeclarations"][0]["name"],
                "shell"
            );
        }
    }
}
