//! The HTTP client every network back-end shares, generic over the wire protocol it
//! speaks ([`Wire`]): URLs, auth headers, encoding and decoding come from the protocol;
//! connection reuse, timeouts, error mapping and key scrubbing live here once.
//!
//! Timeouts, in the order they can fire: `connect` (TCP/TLS), `first_byte` (from sending
//! until the first decoded event), `idle` (between body chunks once the stream has
//! started). The first event is awaited before `send` returns, so a failure that arrives
//! before any data is still an error with a status, which failover can act on.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use super::{Backend, EventStream};
use crate::Error;
use crate::capture::{Direction, Payload, Tap};
use crate::config::BackendConfig;
use crate::credentials::NamedKey;
use crate::credentials::login::{Loaded, Login, Tokens};
use crate::error::{ErrorKind, TimeoutPhase};
use crate::model::{Event, Protocol, Request};
use crate::protocol::tools_out::Encoded;
use crate::protocol::{ChunkError, StreamDecoder};
use crate::quiet_timer::{QuietTimer, next_unless_quiet};

/// What a wire protocol contributes to an HTTP back-end.
pub trait Wire: Send + Sync + 'static {
    type Decoder: StreamDecoder + 'static;

    /// The HTTP status of an error the provider reported inside a 200 body or stream,
    /// from its error type.
    const STATUS_OF_ERROR_TYPE: fn(Option<&str>) -> u16 = |_| 502;

    /// Whether the generation URL depends on the model or on streaming (Gemini's does);
    /// when not, it is parsed once.
    const URL_VARIES: bool = false;

    /// Whether the provider is always asked for a stream (the ChatGPT back-end streams
    /// only); a client that did not ask for one still gets one whole answer.
    const ALWAYS_STREAMS: bool = false;

    /// The client protocol whose request bodies this wire may send as they came, when
    /// nothing changed the request (see [`crate::model::ClientBody`]): set only by a wire
    /// whose [`Wire::encode`] is that protocol's own request encoder and nothing more, or
    /// nothing more for the requests [`Wire::encodes_as_its_protocol`] names.
    const SENDS_CLIENT_BODIES_OF: Option<Protocol> = None;

    /// Whether [`Wire::encode`] writes `request` as the protocol of
    /// [`Wire::SENDS_CLIENT_BODIES_OF`] does, so its client's body may go as it came: a wire
    /// that reshapes that encoding says for which requests the reshaping changes nothing.
    fn encodes_as_its_protocol(&self, _request: &Request) -> bool {
        true
    }

    /// A last look at the client's bytes `body` before they go as they came, for what the
    /// decoded request cannot tell (a member sent as `null` reads as none).
    fn sends_client_bytes(&self, _body: &[u8]) -> bool {
        true
    }

    /// The URL of a generation request.
    fn generate_url(&self, base_url: &str, model: &str, stream: bool) -> String;
    /// The URL that lists models.
    fn models_url(&self, base_url: &str) -> String;
    /// The request body for `model`: its encoder's, which writes the text it kept for a
    /// shared list of tools again (`protocol::tools_out`).
    fn encode(&self, request: &Request, model: &str) -> Result<Encoded, Error>;
    /// A whole (non-streamed) response body as events.
    fn decode_body(&self, body: &[u8]) -> Result<Vec<Event>, ChunkError>;
    /// [`Wire::decode_body`], and the protocol whose clients may get `body` as it came,
    /// when this wire's own encoding of those events would give the same body back.
    fn decode_body_checked(
        &self,
        body: &[u8],
    ) -> Result<(Vec<Event>, Option<Protocol>), ChunkError> {
        Ok((self.decode_body(body)?, None))
    }
    /// A fresh decoder for a streamed response.
    fn stream_decoder(&self) -> Self::Decoder;
    /// The headers that carry the provider key.
    fn auth_headers(&self, key: &str) -> Vec<(HeaderName, String)>;
    /// What a login must learn from the provider once before its requests (Code Assist:
    /// the account's project), given to [`Wire::encode_for_login`]. `None`: nothing.
    fn login_setup<'a>(
        &'a self,
        _http: &'a reqwest::Client,
        _base_url: &'a str,
        _token: &'a str,
    ) -> Option<futures::future::BoxFuture<'a, Result<Value, Error>>> {
        None
    }
    /// The request body for a login whose setup said `setup`.
    fn encode_for_login(
        &self,
        request: &Request,
        model: &str,
        _setup: &Value,
    ) -> Result<Encoded, Error> {
        self.encode(request, model)
    }
    /// Headers that come from a subscription login (its account id).
    fn login_headers(&self, _tokens: &Tokens, _request: &Request) -> Vec<(HeaderName, String)> {
        Vec::new()
    }
    /// Headers from the client request that this protocol forwards.
    fn forwarded_headers(&self, _request: &Request) -> Vec<(HeaderName, String)> {
        Vec::new()
    }
    /// Model ids out of a model-list body (`{"data":[{"id":...}]}` by default).
    fn model_ids(&self, body: &Value) -> Vec<String> {
        body.get("data")
            .and_then(Value::as_array)
            .map(|models| {
                models
                    .iter()
                    .filter_map(|m| m.get("id").and_then(Value::as_str).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The user agent llmux sends to providers.
pub(super) const USER_AGENT_VALUE: &str = concat!("llmux/", env!("CARGO_PKG_VERSION"));

/// The room an upstream request body starts with.
const UPSTREAM_BODY_CAPACITY: usize = 16 * 1024;

/// An encoded request as the body's bytes.
fn to_body(encoded: &Encoded) -> Bytes {
    // Room for a typical agent request at once, rather than a dozen regrowths (each a
    // copy of everything written so far).
    Bytes::from(encoded.to_vec(UPSTREAM_BODY_CAPACITY))
}

/// Upper bound on how much of an error body is read.
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// How long a failed model-list fetch is remembered before trying again.
const MODELS_FAILURE_CACHE: Duration = Duration::from_secs(60);

pub struct HttpBackend<W: Wire> {
    config: BackendConfig,
    wire: W,
    client: reqwest::Client,
    /// The generation requests' client when no proxy applies to the back-end (see
    /// [`super::driven_http`]).
    driven: Option<super::driven_http::DrivenHttp>,
    keys: super::keys::KeyRing,
    /// The auth headers of each key, built once.
    auth: Vec<Vec<(HeaderName, HeaderValue)>>,
    headers: HeaderMap,
    models_url: String,
    /// The generation URL, parsed once when it is the same for every request.
    fixed_url: Option<reqwest::Url>,
    models_cache: Mutex<Option<(Instant, Option<Vec<String>>)>>,
    errors: ErrorMapper,
    /// Subscription logins, in key-ring order, used instead of keys.
    logins: Vec<Arc<Login>>,
}

/// `client` trusting the back-end's `ca_file` besides reqwest's built-in roots.
pub(super) fn trusting_extra_roots(
    mut client: reqwest::ClientBuilder,
    config: &BackendConfig,
) -> Result<reqwest::ClientBuilder, Error> {
    for root in &config.extra_roots {
        let root = reqwest::Certificate::from_der(root).map_err(|e| {
            Error::from(ErrorKind::BackendNotConfigured {
                backend: config.id.clone(),
                message: format!("a certificate of ca_file: {e}"),
            })
        })?;
        client = client.add_root_certificate(root);
    }
    Ok(client)
}

impl<W: Wire> HttpBackend<W> {
    /// `identity` are headers that identify the app to the provider (OpenRouter attribution).
    pub fn new(
        config: BackendConfig,
        wire: W,
        keys: Vec<NamedKey>,
        identity: Vec<(&'static str, String)>,
    ) -> Result<Self, Error> {
        let mut client = reqwest::Client::builder()
            .connect_timeout(config.timeouts.connect)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(USER_AGENT_VALUE);
        // Without a proxy of its own, a back-end follows HTTP_PROXY, HTTPS_PROXY, ALL_PROXY
        // and NO_PROXY (reqwest reads them); with one, NO_PROXY still exempts its hosts.
        if let Some(url) = &config.proxy_url {
            let proxy = reqwest::Proxy::all(url).map_err(|e| {
                Error::from(ErrorKind::BackendNotConfigured {
                    backend: config.id.clone(),
                    message: format!("invalid proxy_url: {e}"),
                })
            })?;
            client = client.proxy(proxy.no_proxy(reqwest::NoProxy::from_env()));
        }
        let client = trusting_extra_roots(client, &config)?
            .build()
            .map_err(|e| Error::internal(format!("cannot build the HTTP client: {e}")))?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in identity {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
        for (name, value) in &config.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.insert(name, value);
            }
        }
        let mut auth = Vec::with_capacity(keys.len());
        for key in &keys {
            let mut key_headers = Vec::new();
            for (name, value) in wire.auth_headers(key.secret.expose()) {
                let mut value = HeaderValue::from_str(&value).map_err(|_| {
                    Error::from(ErrorKind::BackendNotConfigured {
                        backend: config.id.clone(),
                        message: format!("the key in {} is not a valid header value", key.name),
                    })
                })?;
                value.set_sensitive(true);
                key_headers.push((name, value));
            }
            auth.push(key_headers);
        }
        let errors = ErrorMapper {
            backend: config.id.clone(),
            keys: keys.clone().into(),
            token: None,
            idle: config.timeouts.idle,
            status_of: W::STATUS_OF_ERROR_TYPE,
        };
        let fixed_url = if W::URL_VARIES {
            None
        } else {
            reqwest::Url::parse(&wire.generate_url(&config.base_url, "", false)).ok()
        };
        // A wire whose URL names the model is sent at the origin of any of its URLs.
        let origin_url = fixed_url.clone().or_else(|| {
            reqwest::Url::parse(&wire.generate_url(&config.base_url, "model", false)).ok()
        });
        let driven = origin_url.as_ref().and_then(|url| {
            super::driven_http::DrivenHttp::for_url(
                url,
                config.proxy_url.as_deref(),
                config.timeouts.connect,
                &config.extra_roots,
                |name| std::env::var(name).ok(),
            )
        });
        Ok(Self {
            errors,
            driven,
            fixed_url,
            models_url: wire.models_url(&config.base_url),
            wire,
            keys: super::keys::KeyRing::new(
                &config.id,
                keys.iter().map(|k| k.name.clone()).collect(),
                config.key_rotation,
            ),
            auth,
            config,
            client,
            headers,
            models_cache: Mutex::new(None),
            logins: Vec::new(),
        })
    }

    /// Authenticates with subscription logins instead of keys: each is a turn in the key
    /// ring, so accounts rotate on rate limits as keys do.
    pub fn with_logins(mut self, logins: Vec<Arc<Login>>) -> Self {
        self.keys = super::keys::KeyRing::new(
            &self.config.id,
            logins.iter().map(|login| login.name()).collect(),
            self.config.key_rotation,
        );
        self.logins = logins;
        self
    }

    fn require_key(&self) -> Result<(), Error> {
        if self.config.login.is_some() && self.logins.is_empty() {
            return Err(ErrorKind::BackendNotConfigured {
                backend: self.config.id.clone(),
                message: "no credential file: set credentials_path (HOME is not set, so the \
                          CLI's own file cannot be found)"
                    .into(),
            }
            .into());
        }
        if self.keys.is_empty() && self.config.kind.requires_key() {
            let var = self
                .config
                .api_key_env
                .as_deref()
                .unwrap_or("its key variable");
            return Err(ErrorKind::BackendNotConfigured {
                backend: self.config.id.clone(),
                message: format!("no API key; set {var}"),
            }
            .into());
        }
        Ok(())
    }

    /// Removes the provider key from text that may echo it.
    fn scrub(&self, text: &str) -> String {
        self.errors.scrub(text.to_owned())
    }

    fn timeout(&self, phase: TimeoutPhase) -> Error {
        let after = match phase {
            TimeoutPhase::Connect => self.config.timeouts.connect,
            TimeoutPhase::FirstByte => self.config.timeouts.first_byte,
            TimeoutPhase::Idle => self.config.timeouts.idle,
        };
        ErrorKind::Timeout {
            backend: self.config.id.clone(),
            phase,
            after,
        }
        .into()
    }

    fn transport_error(&self, err: &reqwest::Error) -> Error {
        if err.is_timeout() {
            return self.timeout(TimeoutPhase::Connect);
        }
        let mut message = err.to_string();
        let mut source = std::error::Error::source(err);
        while let Some(inner) = source {
            message = format!("{message}: {inner}");
            source = inner.source();
        }
        ErrorKind::BackendUnreachable {
            backend: self.config.id.clone(),
            message: self.scrub(&message),
        }
        .into()
    }

    /// Reads a non-2xx answer into an error that keeps the provider's status and message.
    async fn status_error(
        &self,
        response: reqwest::Response,
        deadline: tokio::time::Instant,
        tap: Option<&Tap>,
    ) -> Error {
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = tokio::time::timeout_at(deadline, read_limited(response, ERROR_BODY_LIMIT))
            .await
            .unwrap_or_default();
        if let Some(tap) = tap {
            tap.record(Direction::InboundResponse, Payload::Json(&body));
        }
        let (message, error_type, code) = parse_error_body(&body);
        let retry_after = retry_after.or_else(|| retry_delay_in_body(&body));
        ErrorKind::Upstream {
            backend: self.config.id.clone(),
            status,
            message: self.scrub(&message),
            error_type,
            code,
            retry_after,
        }
        .into()
    }

    async fn stream_events(
        &self,
        response: reqwest::Response,
        deadline: tokio::time::Instant,
        tap: Option<Tap>,
        errors: ErrorMapper,
    ) -> Result<EventStream, Error> {
        if let Some(tap) = &tap {
            tap.record(Direction::StreamStart, Payload::None);
        }
        let bytes = idle_guard(Box::pin(response.bytes_stream()), self.config.timeouts.idle);
        let mut frames = Box::pin(sse_parse::EventStream::new(bytes));
        let mut decoder = FrameDecoder::new(self.wire.stream_decoder(), errors.clone());
        let mut first = Vec::new();
        while first.is_empty() {
            match tokio::time::timeout_at(deadline, frames.next()).await {
                Err(_) => return Err(self.timeout(TimeoutPhase::FirstByte)),
                Ok(None) => return Err(errors.chunk(ChunkError::Truncated)),
                Ok(Some(Err(err))) => return Err(errors.sse(err)),
                Ok(Some(Ok(frame))) => {
                    if let Some(tap) = &tap {
                        tap.record(Direction::StreamChunk, Payload::Text(&frame.data));
                    }
                    decoder.push(&frame.event, &frame.data, &mut first)?;
                }
            }
            if decoder.is_done() && first.is_empty() {
                return Err(errors.chunk(ChunkError::Truncated));
            }
        }

        let stream = async_stream::stream! {
            for event in first {
                yield event;
            }
            let mut batch = Vec::new();
            loop {
                if decoder.is_done() {
                    // Before the error, if any: a consumer stops at an error event.
                    let finished = decoder.finish();
                    read_past_terminator(frames);
                    if let Err(err) = finished {
                        yield Event::Error(err);
                    }
                    break;
                }
                match frames.next().await {
                    None => {
                        if let Err(err) = decoder.finish() {
                            yield Event::Error(err);
                        }
                        break;
                    }
                    Some(Err(err)) => {
                        yield Event::Error(errors.sse(err));
                        break;
                    }
                    Some(Ok(frame)) => {
                        if let Some(tap) = &tap {
                            tap.record(Direction::StreamChunk, Payload::Text(&frame.data));
                        }
                        let result = decoder.push(&frame.event, &frame.data, &mut batch);
                        for event in batch.drain(..) {
                            yield event;
                        }
                        if let Err(err) = result {
                            yield Event::Error(err);
                            break;
                        }
                    }
                }
            }
            if let Some(tap) = &tap {
                tap.record(Direction::StreamEnd, Payload::None);
            }
        };
        Ok(Box::pin(stream))
    }

    /// The generation URL: the login's own API root when it names one (Qwen's
    /// `resource_url`), else the back-end's.
    fn url_for(
        &self,
        request: &Request,
        model: &str,
        api_base: Option<&str>,
    ) -> Result<reqwest::Url, Error> {
        if api_base.is_none()
            && let Some(url) = &self.fixed_url
        {
            return Ok(url.clone());
        }
        let base = api_base.unwrap_or(&self.config.base_url);
        let url = self.wire.generate_url(base, model, request.stream);
        reqwest::Url::parse(&url).map_err(|e| {
            Error::from(ErrorKind::BackendNotConfigured {
                backend: self.config.id.clone(),
                message: format!("invalid URL {url}: {e}"),
            })
        })
    }

    /// The client's own body with the model patched in, when the client speaks the
    /// protocol this wire encodes and nothing changed its request.
    fn client_body(&self, request: &Request, model: &str) -> Option<Bytes> {
        let protocol = W::SENDS_CLIENT_BODIES_OF?;
        if !self.wire.encodes_as_its_protocol(request) {
            return None;
        }
        request
            .client
            .original
            .as_ref()?
            .body_for(protocol, request, model)
            .filter(|body| self.wire.sends_client_bytes(body))
    }

    /// Posts `body` with key `key`, or with `login`'s token; resolves at the response
    /// headers.
    async fn post(
        &self,
        request: &Request,
        model: &str,
        body: Bytes,
        key: usize,
        login: Option<&Arc<Loaded>>,
        deadline: tokio::time::Instant,
    ) -> Result<reqwest::Response, Error> {
        let api_base = login.and_then(|l| l.tokens.api_base.as_deref());
        let headers = self.request_headers(request, key, login)?;
        let send = async {
            // The back-end's one URL goes to the driven client. Another URL (a wire whose URL
            // names the model, a login's own API root) goes there too when it is at the same
            // origin, else to reqwest.
            let driven = self.driven.as_ref();
            if let (Some(driven), None, Some(_)) = (driven, api_base, &self.fixed_url) {
                return driven
                    .post(headers, body)
                    .await
                    .map_err(|err| self.driven_error(&err));
            }
            let url = self.url_for(request, model, api_base)?;
            match driven.filter(|driven| driven.serves(&url)) {
                Some(driven) => driven
                    .post_to(&url, headers, body)
                    .await
                    .map_err(|err| self.driven_error(&err)),
                None => self
                    .client
                    .post(url)
                    .headers(headers)
                    .body(body)
                    .send()
                    .await
                    .map_err(|err| self.transport_error(&err)),
            }
        };
        match tokio::time::timeout_at(deadline, send).await {
            Err(_) => Err(self.timeout(TimeoutPhase::FirstByte)),
            Ok(result) => result,
        }
    }

    /// The headers of a generation request: the back-end's own, `accept`, the key's or the
    /// login's auth, and what the wire forwards from the client.
    fn request_headers(
        &self,
        request: &Request,
        key: usize,
        login: Option<&Arc<Loaded>>,
    ) -> Result<HeaderMap, Error> {
        let accept = if request.stream || W::ALWAYS_STREAMS {
            "text/event-stream"
        } else {
            "application/json"
        };
        let mut headers = self.headers.clone();
        headers.append(ACCEPT, HeaderValue::from_static(accept));
        match login {
            Some(loaded) => {
                let tokens = &loaded.tokens;
                let login_headers = self
                    .wire
                    .auth_headers(tokens.access.expose())
                    .into_iter()
                    .chain(self.wire.login_headers(tokens, request));
                for (name, value) in login_headers {
                    let mut value = HeaderValue::from_str(&value).map_err(|_| {
                        Error::from(ErrorKind::BackendNotConfigured {
                            backend: self.config.id.clone(),
                            message: format!("the login's {name} is not a valid header value"),
                        })
                    })?;
                    value.set_sensitive(true);
                    headers.append(name, value);
                }
            }
            None => {
                for (name, value) in self.auth.get(key).into_iter().flatten() {
                    headers.append(name.clone(), value.clone());
                }
            }
        }
        for (name, value) in self.wire.forwarded_headers(request) {
            // Client headers arrive as text, so they are valid header values.
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.append(name, value);
            }
        }
        Ok(headers)
    }

    /// A send on the driven client that failed, as [`HttpBackend::transport_error`]
    /// says one on reqwest.
    fn driven_error(&self, err: &super::driven_http::SendError) -> Error {
        if err.is_connect_timeout() {
            return self.timeout(TimeoutPhase::Connect);
        }
        ErrorKind::BackendUnreachable {
            backend: self.config.id.clone(),
            message: self.scrub(&err.to_string()),
        }
        .into()
    }

    async fn fetch_models(&self) -> Result<Vec<String>, Error> {
        let mut fetch = self
            .client
            .get(&self.models_url)
            .headers(self.headers.clone())
            .timeout(self.config.timeouts.first_byte.min(Duration::from_secs(15)));
        for (name, value) in self.auth.first().into_iter().flatten() {
            fetch = fetch.header(name.clone(), value.clone());
        }
        let response = fetch.send().await.map_err(|e| self.transport_error(&e))?;
        if !response.status().is_success() {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            return Err(self.status_error(response, deadline, None).await);
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(&e))?;
        let body: Value = serde_json::from_slice(&body).map_err(|e| {
            Error::from(ErrorKind::UpstreamProtocol {
                backend: self.config.id.clone(),
                message: format!("model list is not JSON: {e}"),
            })
        })?;
        let ids = self.wire.model_ids(&body);
        Ok(ids)
    }
}

/// Maps upstream failures to engine errors with the key scrubbed; cloned into streams,
/// which outlive the back-end borrow.
/// A wire's stream decoder with its back-end's error mapping: what [`HttpBackend`] runs on
/// each SSE frame of a provider's stream.
pub struct FrameDecoder<D: StreamDecoder> {
    decoder: D,
    errors: ErrorMapper,
}

impl<D: StreamDecoder> FrameDecoder<D> {
    fn new(decoder: D, errors: ErrorMapper) -> Self {
        Self { decoder, errors }
    }

    /// Decodes one frame into `out` (events decoded before a failure stay there); an error
    /// ends the stream.
    pub fn push(&mut self, event: &str, data: &str, out: &mut Vec<Event>) -> Result<(), Error> {
        self.decoder
            .push(event, data, out)
            .map_err(|e| self.errors.chunk(e))
    }

    /// The protocol's terminator arrived: read no further.
    pub fn is_done(&self) -> bool {
        self.decoder.is_done()
    }

    /// The body ended: an error if the stream was cut off.
    pub fn finish(&mut self) -> Result<(), Error> {
        self.decoder.finish().map_err(|e| self.errors.chunk(e))
    }
}

/// Decodes recorded SSE frames (`(event, data)`) exactly as a back-end of `wire` called
/// `backend` decodes a provider's stream: it stops at the protocol's terminator, and a
/// failure, with the status the provider's error type maps to, is the last event. For
/// tests and tools that replay provider streams.
pub fn decode_frames<W: Wire>(wire: &W, backend: &str, frames: &[(String, String)]) -> Vec<Event> {
    let errors = ErrorMapper {
        backend: backend.to_owned(),
        keys: Vec::new().into(),
        token: None,
        idle: Duration::ZERO,
        status_of: W::STATUS_OF_ERROR_TYPE,
    };
    let mut decoder = FrameDecoder::new(wire.stream_decoder(), errors);
    let mut events = Vec::new();
    for (event, data) in frames {
        if decoder.is_done() {
            break;
        }
        if let Err(err) = decoder.push(event, data, &mut events) {
            events.push(Event::Error(err));
            return events;
        }
    }
    if let Err(err) = decoder.finish() {
        events.push(Event::Error(err));
    }
    events
}

#[derive(Clone)]
struct ErrorMapper {
    backend: String,
    /// Every key of the back-end, scrubbed from provider text.
    keys: std::sync::Arc<[NamedKey]>,
    /// The login token a request was sent with, scrubbed too.
    token: Option<crate::credentials::Secret>,
    idle: Duration,
    status_of: fn(Option<&str>) -> u16,
}

impl ErrorMapper {
    fn with_secret(&self, token: crate::credentials::Secret) -> Self {
        Self {
            token: Some(token),
            ..self.clone()
        }
    }

    fn scrub(&self, mut text: String) -> String {
        let secrets = self.keys.iter().map(|key| &key.secret).chain(&self.token);
        for secret in secrets {
            let secret = secret.expose();
            if !secret.is_empty() && text.contains(secret) {
                text = text.replace(secret, "****");
            }
        }
        text
    }

    fn chunk(&self, err: ChunkError) -> Error {
        let backend = self.backend.clone();
        match err {
            ChunkError::Garbage(message) => ErrorKind::UpstreamProtocol {
                backend,
                message: self.scrub(message),
            },
            ChunkError::Upstream {
                message,
                error_type,
                code,
            } => ErrorKind::Upstream {
                backend,
                status: (self.status_of)(error_type.as_deref()),
                message: self.scrub(message),
                error_type,
                code,
                retry_after: None,
            },
            ChunkError::Truncated => ErrorKind::StreamInterrupted {
                backend,
                message: "the stream ended before a finish reason".into(),
            },
        }
        .into()
    }

    /// The parser's only error is the transport's: every byte sequence is an event stream
    /// (text that is not UTF-8 reads as U+FFFD, as a browser's `EventSource` reads it).
    fn sse(&self, err: sse_parse::Error<TransportError>) -> Error {
        let backend = self.backend.clone();
        let sse_parse::Error::Transport(err) = err;
        match err {
            TransportError::Idle => ErrorKind::Timeout {
                backend,
                phase: TimeoutPhase::Idle,
                after: self.idle,
            },
            TransportError::Http(message) => ErrorKind::StreamInterrupted {
                backend,
                message: self.scrub(message),
            },
        }
        .into()
    }
}

#[derive(Debug)]
enum TransportError {
    Idle,
    Http(String),
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportError::Idle => f.write_str("no data within the idle timeout"),
            TransportError::Http(message) => f.write_str(message),
        }
    }
}

/// Passes body chunks through, failing when the gap between two chunks exceeds `idle`.
/// The wait for the first chunk is bounded by the caller's first-byte deadline instead.
fn idle_guard<S>(mut inner: S, idle: Duration) -> impl Stream<Item = Result<Bytes, TransportError>>
where
    S: Stream<Item = reqwest::Result<Bytes>> + Send + Unpin,
{
    async_stream::stream! {
        // Armed by the first chunk; until then the first-byte deadline applies.
        let mut quiet: Option<QuietTimer> = None;
        loop {
            let Some(next) = next_unless_quiet(&mut inner, quiet.as_mut()).await else {
                yield Err(TransportError::Idle);
                break;
            };
            match next {
                None => break,
                Some(Ok(bytes)) => {
                    quiet.get_or_insert_with(|| QuietTimer::new(idle));
                    yield Ok(bytes);
                }
                Some(Err(err)) => {
                    let mut message = err.to_string();
                    let mut source = std::error::Error::source(&err);
                    while let Some(inner) = source {
                        message = format!("{message}: {inner}");
                        source = inner.source();
                    }
                    yield Err(TransportError::Http(message));
                    break;
                }
            }
        }
    }
}

/// How long the rest of a stream's body may take to arrive after the protocol's
/// terminator before its connection is given up.
const AFTER_TERMINATOR_WAIT: Duration = Duration::from_secs(2);

/// At most this many frames after the terminator are read (and dropped), at once and on
/// the task together, before the connection is given up: a provider that goes on sending
/// is not waited for.
const AFTER_TERMINATOR_FRAMES: usize = 16;

/// Reads the rest of a stream's body after the protocol's terminator (`[DONE]`,
/// `message_stop`, `response.completed` or `.incomplete`), so that the connection can
/// carry the next request. A body dropped before its end closes its connection, and the
/// next request pays a new connection (and, over HTTPS, a TLS handshake): every streamed
/// answer did, until this. The end (the chunked encoding's last chunk) usually came with
/// the terminator and is read here at once, without waiting; otherwise a task waits for
/// it a little while. The client's stream ends at the terminator either way.
fn read_past_terminator<S>(mut frames: std::pin::Pin<Box<S>>)
where
    S: Stream + Send + 'static,
{
    use futures::FutureExt;
    let mut frames_left = AFTER_TERMINATOR_FRAMES;
    while frames_left > 0 {
        match frames.next().now_or_never() {
            Some(Some(_)) => frames_left -= 1,
            Some(None) => return,
            None => break,
        }
    }
    if frames_left == 0 {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let rest = async {
            while frames_left > 0 && frames.next().await.is_some() {
                frames_left -= 1;
            }
        };
        let _ = tokio::time::timeout(AFTER_TERMINATOR_WAIT, rest).await;
    });
}

/// `err` with `secret` masked in its message (a login token a provider echoed).
fn scrub_error(err: Error, secret: &str) -> Error {
    match err.kind() {
        ErrorKind::Upstream {
            backend,
            status,
            message,
            error_type,
            code,
            retry_after,
        } if !secret.is_empty() && message.contains(secret) => ErrorKind::Upstream {
            backend: backend.clone(),
            status: *status,
            message: message.replace(secret, "****"),
            error_type: error_type.clone(),
            code: code.clone(),
            retry_after: *retry_after,
        }
        .into(),
        _ => err,
    }
}

async fn read_limited(response: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        let room = limit.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    body
}

/// Google puts the wait in the error body instead of a Retry-After header:
/// `{"error":{"details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"30s"}]}}`.
fn retry_delay_in_body(body: &[u8]) -> Option<Duration> {
    let value: Value = serde_json::from_slice(body).ok()?;
    value
        .get("error")?
        .get("details")?
        .as_array()?
        .iter()
        .filter(|d| {
            d.get("@type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with("RetryInfo"))
        })
        .find_map(|d| {
            d.get("retryDelay")?
                .as_str()?
                .strip_suffix('s')?
                .parse::<f64>()
                .ok()
        })
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.ceil()))
}

/// Reads the message, type and code out of the error bodies providers send:
/// `{"error":{"message",...}}`, `{"error":"text"}`, `{"message":...}`, `{"detail":...}`.
fn parse_error_body(body: &[u8]) -> (String, Option<String>, Option<String>) {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        let error = value.get("error").unwrap_or(&value);
        if let Some(message) = error
            .get("message")
            .or_else(|| error.get("detail"))
            .map(text)
            .or_else(|| error.as_str().map(str::to_owned))
        {
            let field = |key: &str| error.get(key).filter(|v| !v.is_null()).map(text);
            return (message, field("type"), field("code"));
        }
    }
    let raw = String::from_utf8_lossy(body);
    let raw = raw.trim();
    let mut end = raw.len().min(500);
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    let message = if raw.is_empty() {
        "no error message".to_owned()
    } else {
        raw[..end].to_owned()
    };
    (message, None, None)
}

#[async_trait]
impl<W: Wire> Backend for HttpBackend<W> {
    fn config(&self) -> &BackendConfig {
        &self.config
    }

    fn key_name(&self) -> Option<&str> {
        self.keys.name(0)
    }

    fn keys(&self) -> Option<&super::keys::KeyRing> {
        Some(&self.keys)
    }

    fn logins(&self) -> &[Arc<Login>] {
        &self.logins
    }

    async fn models(&self) -> Result<Vec<String>, Error> {
        if let Some(models) = &self.config.models {
            return Ok(models.clone());
        }
        if self.config.login.is_some() {
            // Listing would read the user's login file for every /v1/models call, whether
            // or not this back-end is in use.
            return Err(ErrorKind::BackendNotConfigured {
                backend: self.config.id.clone(),
                message: "a subscription back-end lists the models its `models` key names".into(),
            }
            .into());
        }
        self.require_key()?;
        if let Ok(cache) = self.models_cache.lock()
            && let Some((at, models)) = cache.as_ref()
        {
            let ttl = if models.is_some() {
                self.config.models_cache
            } else {
                MODELS_FAILURE_CACHE
            };
            if at.elapsed() < ttl {
                return models.clone().ok_or_else(|| {
                    ErrorKind::BackendUnreachable {
                        backend: self.config.id.clone(),
                        message: "the model list could not be fetched recently".into(),
                    }
                    .into()
                });
            }
        }
        let fetched = self.fetch_models().await;
        if let Ok(mut cache) = self.models_cache.lock() {
            *cache = Some((Instant::now(), fetched.as_ref().ok().cloned()));
        }
        fetched
    }

    async fn send(
        &self,
        request: &Request,
        model: &str,
        tap: Option<&Tap>,
    ) -> Result<EventStream, Error> {
        self.send_with_key(request, model, tap, 0).await
    }

    async fn send_with_key(
        &self,
        request: &Request,
        model: &str,
        tap: Option<&Tap>,
        key: usize,
    ) -> Result<EventStream, Error> {
        self.require_key()?;
        let login = self.logins.get(key);
        let token = match login {
            Some(login) => Some(login.token().await?),
            None => None,
        };
        let setup = match (login, &token) {
            (Some(login), Some(loaded)) => match self.wire.login_setup(
                &self.client,
                &self.config.base_url,
                loaded.tokens.access.expose(),
            ) {
                Some(learn) => Some(login.setup(loaded, learn).await?),
                None => None,
            },
            _ => None,
        };
        let body = match &setup {
            Some(setup) => to_body(&self.wire.encode_for_login(request, model, setup)?),
            None => match self.client_body(request, model) {
                Some(body) => body,
                None => to_body(&self.wire.encode(request, model)?),
            },
        };
        if let Some(tap) = tap {
            tap.request_sent(&body);
        }
        // The first-byte timeout is the provider's: it starts once the token and the
        // account setup are ready, and again for the retry after a refused token.
        let mut deadline = tokio::time::Instant::now() + self.config.timeouts.first_byte;
        let mut response = self
            .post(request, model, body.clone(), key, token.as_ref(), deadline)
            .await?;
        // A login token the provider refuses is replaced (by another request's refresh,
        // the CLI's, or a refresh now) and the request sent once more, before anything
        // reached the client.
        let mut token = token;
        if response.status() == reqwest::StatusCode::UNAUTHORIZED
            && let (Some(login), Some(used)) = (login, &token)
        {
            let fresh = login.refused(used).await?;
            deadline = tokio::time::Instant::now() + self.config.timeouts.first_byte;
            response = self
                .post(request, model, body, key, Some(&fresh), deadline)
                .await?;
            token = Some(fresh);
        }
        let login_secret = token.as_ref().map(|t| t.tokens.access.clone());
        // A login's token is masked in provider text as keys are, streams included.
        let errors = match &login_secret {
            Some(secret) => self.errors.with_secret(secret.clone()),
            None => self.errors.clone(),
        };
        if let Some(tap) = tap {
            tap.upstream_headers(response.status().as_u16(), response.headers());
        }
        if !response.status().is_success() {
            let err = self.status_error(response, deadline, tap).await;
            return Err(match &login_secret {
                Some(secret) => scrub_error(err, secret.expose()),
                None => err,
            });
        }
        let is_sse = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if is_sse {
            return self
                .stream_events(response, deadline, tap.cloned(), errors)
                .await;
        }
        let body = match tokio::time::timeout_at(deadline, response.bytes()).await {
            Err(_) => return Err(self.timeout(TimeoutPhase::FirstByte)),
            Ok(Err(err)) => return Err(self.transport_error(&err)),
            Ok(Ok(body)) => body,
        };
        if let Some(tap) = tap {
            tap.record(Direction::InboundResponse, Payload::Json(&body));
        }
        let events = match &request.client.verbatim {
            None => self.wire.decode_body(&body).map_err(|e| errors.chunk(e))?,
            Some(slot) => {
                let (events, verbatim) = self
                    .wire
                    .decode_body_checked(&body)
                    .map_err(|e| errors.chunk(e))?;
                if let Some(protocol) = verbatim {
                    slot.offer(protocol, &body, &events);
                }
                events
            }
        };
        Ok(Box::pin(futures::stream::iter(events)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_retry_info_gives_the_wait() {
        let body =
            br#"{"error":{"code":429,"message":"Quota","status":"RESOURCE_EXHAUSTED","details":[
            {"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"12.3s"}]}}"#;
        assert_eq!(retry_delay_in_body(body), Some(Duration::from_secs(13)));
        assert_eq!(retry_delay_in_body(br#"{"error":{"message":"x"}}"#), None);
    }

    #[test]
    fn error_bodies_of_every_common_shape_give_a_message() {
        let (m, t, c) = parse_error_body(
            br#"{"error":{"message":"Incorrect API key","type":"invalid_request_error","code":"invalid_api_key"}}"#,
        );
        assert_eq!(m, "Incorrect API key");
        assert_eq!(t.as_deref(), Some("invalid_request_error"));
        assert_eq!(c.as_deref(), Some("invalid_api_key"));
        assert_eq!(
            parse_error_body(br#"{"error":"model not found"}"#).0,
            "model not found"
        );
        assert_eq!(
            parse_error_body(br#"{"detail":"Not Found"}"#).0,
            "Not Found"
        );
        assert_eq!(parse_error_body(b"Bad Gateway").0, "Bad Gateway");
        assert_eq!(parse_error_body(b"").0, "no error message");
    }
}
