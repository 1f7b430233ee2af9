//! Back-ends: the providers llmux calls.
//!
//! Each provider is one file saying where it lives, how it authenticates, which protocol it
//! speaks and what quirks it has. Network back-ends share the HTTP client in [`http`],
//! parameterised by the wire protocol they speak. Every back-end turns its answer into a
//! stream of [`Event`]s.

pub mod acp;
pub mod anthropic;
pub mod code_assist;
mod driven_http;
pub mod gemini;
pub mod http;
pub mod keys;
pub mod mock;
pub mod openai;
pub mod openai_compatible;
pub mod openrouter;
pub mod providers;
pub mod subscription;
pub mod zai;

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Stream;

use crate::Error;
use crate::capture::Tap;
use crate::config::{BackendConfig, Config};
use crate::credentials::SecretSource;
use crate::model::Protocol;
use crate::model::{Event, Request};

/// A response as a stream of events. It ends after `Finish` (and maybe `Usage`), or after
/// one `Error`. Dropping it cancels the upstream request.
pub type EventStream = Pin<Box<dyn Stream<Item = Event> + Send>>;

#[async_trait]
pub trait Backend: Send + Sync {
    fn config(&self) -> &BackendConfig;

    fn id(&self) -> &str {
        &self.config().id
    }

    /// The models this back-end serves, from configuration or from the provider.
    async fn models(&self) -> Result<Vec<String>, Error>;

    /// Sends `request` for `model`. Resolves once the provider has answered with its first
    /// event, so an early failure is still an `Err` the front-end can turn into a status.
    /// `tap`, when capture is on, receives the wire traffic.
    async fn send(
        &self,
        request: &Request,
        model: &str,
        tap: Option<&Tap>,
    ) -> Result<EventStream, Error>;

    /// The configured model list, when requests for other models should be refused.
    fn known_models(&self) -> Option<&[String]> {
        self.config().models.as_deref()
    }

    /// The name of the key in use (never the key), for logs and captures.
    fn key_name(&self) -> Option<&str> {
        None
    }

    /// Ends what the back-end runs (agent processes) when llmux stops.
    fn close(&self) {}

    /// The subscription logins it authenticates with, in rotation order.
    fn logins(&self) -> &[Arc<crate::credentials::login::Login>] {
        &[]
    }

    /// The back-end's keys, when it uses provider keys: the caller picks one per attempt
    /// (rotation, cool-downs) and sends with [`Backend::send_with_key`].
    fn keys(&self) -> Option<&keys::KeyRing> {
        None
    }

    /// Sends with key `key` of [`Backend::keys`]; [`Backend::send`] uses the first.
    async fn send_with_key(
        &self,
        request: &Request,
        model: &str,
        tap: Option<&Tap>,
        _key: usize,
    ) -> Result<EventStream, Error> {
        self.send(request, model, tap).await
    }
}

/// Builds every configured back-end: the wire its kind's descriptor names, with its keys
/// and identity headers.
pub fn build_all(
    config: &Config,
    secrets: &dyn SecretSource,
) -> Result<BTreeMap<String, Arc<dyn Backend>>, Error> {
    let mut backends: BTreeMap<String, Arc<dyn Backend>> = BTreeMap::new();
    for (id, backend) in &config.backends {
        backends.insert(id.clone(), build(backend, secrets)?);
    }
    Ok(backends)
}

/// The headers that identify the client to `backend`'s provider: its kind's (OpenRouter
/// attribution), then `[backends.ID.identity]` over them (the seed's identity override).
fn identity(backend: &BackendConfig) -> Vec<(&'static str, String)> {
    let mut headers = (backend.kind.provider().identity)(backend);
    let own = &backend.identity;
    let openrouter = backend.kind == crate::config::BackendKind::OpenRouter;
    let overrides = [
        ("x-title", own.title.as_ref()),
        (
            "x-openrouter-title",
            own.title.as_ref().filter(|_| openrouter),
        ),
        ("http-referer", own.referer.as_ref()),
        ("referer", own.referer.as_ref()),
        ("user-agent", own.user_agent.as_ref()),
    ];
    for (name, value) in overrides {
        if let Some(value) = value {
            headers.retain(|(existing, _)| *existing != name);
            headers.push((name, value.clone()));
        }
    }
    headers
}

fn build(backend: &BackendConfig, secrets: &dyn SecretSource) -> Result<Arc<dyn Backend>, Error> {
    let provider = backend.kind.provider();
    if let Some(acp) = &backend.acp {
        return Ok(Arc::new(acp::AcpBackend::new(backend.clone(), acp.clone())));
    }
    if let (Some(login), Some(settings)) = (&provider.login, &backend.login) {
        return build_login_backend(backend, login, settings);
    }
    let (keys, identity) = (secrets.keys(backend), identity(backend));
    let config = backend.clone();
    Ok(match provider.wire {
        None => Arc::new(mock::MockBackend::new(config)),
        Some(Protocol::OpenAiChat | Protocol::OpenAiResponses)
            if backend.api == crate::config::OpenAiApi::Responses =>
        {
            Arc::new(http::HttpBackend::new(
                config,
                openai::ResponsesWire,
                keys,
                identity,
            )?)
        }
        Some(Protocol::OpenAiChat | Protocol::OpenAiResponses) => Arc::new(http::HttpBackend::new(
            config,
            openai::ChatWire,
            keys,
            identity,
        )?),
        Some(Protocol::Anthropic) => Arc::new(http::HttpBackend::new(
            config,
            anthropic::AnthropicWire,
            keys,
            identity,
        )?),
        Some(Protocol::Gemini) => Arc::new(http::HttpBackend::new(
            config,
            gemini::GeminiWire,
            keys,
            identity,
        )?),
    })
}

/// A subscription-login back-end: its kind's wire, with one [`Login`] per credential file
/// taking turns as keys do.
///
/// [`Login`]: crate::credentials::login::Login
fn build_login_backend(
    backend: &BackendConfig,
    defaults: &providers::LoginDefaults,
    settings: &crate::credentials::login::LoginSettings,
) -> Result<Arc<dyn Backend>, Error> {
    use crate::config::BackendKind;
    use crate::credentials::login::Login;
    let token_client = reqwest::Client::builder()
        .connect_timeout(backend.timeouts.connect)
        .user_agent(concat!("llmux/", env!("CARGO_PKG_VERSION")));
    // The token endpoint sits behind the same firewall as the provider.
    let token_client = http::trusting_extra_roots(token_client, backend)?
        .build()
        .map_err(|e| Error::internal(format!("cannot build the HTTP client: {e}")))?;
    let logins = settings
        .paths
        .iter()
        .map(|path| {
            Login::new(
                &backend.id,
                backend.kind.name(),
                path.clone(),
                defaults.format,
                settings,
                token_client.clone(),
            )
        })
        .collect();
    let (config, identity) = (backend.clone(), identity(backend));
    Ok(match backend.kind {
        BackendKind::OpenAiOAuth => Arc::new(
            http::HttpBackend::new(config, subscription::CodexWire, Vec::new(), identity)?
                .with_logins(logins),
        ),
        BackendKind::GeminiCliOAuthPersonal | BackendKind::GeminiCliCloudProject => {
            let wire = code_assist::CodeAssistWire {
                backend: backend.id.clone(),
                project: settings.project.clone(),
                cloud: backend.kind == BackendKind::GeminiCliCloudProject,
                poll: settings.onboard_poll,
            };
            Arc::new(
                http::HttpBackend::new(config, wire, Vec::new(), identity)?.with_logins(logins),
            )
        }
        BackendKind::AnthropicOAuth => Arc::new(
            http::HttpBackend::new(config, subscription::ClaudeOAuthWire, Vec::new(), identity)?
                .with_logins(logins),
        ),
        _ => Arc::new(
            http::HttpBackend::new(config, openai::ChatWire, Vec::new(), identity)?
                .with_logins(logins),
        ),
    })
}
