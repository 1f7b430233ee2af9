//! The engine: config, back-ends, router, pipeline, auth and captures. It knows nothing of
//! HTTP front-ends: `frontend::apps` builds those over it.

use std::sync::Arc;

use futures::StreamExt;

use crate::Error;
use crate::auth::Auth;
use crate::backend::{self, EventStream};
use crate::capture::redact::compile_patterns;
use crate::capture::store::{Recorder, Store};
use crate::capture::{Capture, Redactor};
use crate::config::Config;
use crate::credentials::SecretSource;
use crate::model::{Event, Request};
use crate::pipeline::{
    AfterResponse, Call, Completion, EventFilter, Flow, Pipeline, RequestContext, Shared, Upstream,
    apply_filters_with, end_filters,
};
use crate::router::Router;
use crate::router::health::Health;
use crate::state::MemoryStore;
use crate::state::redis::RedisStore;
use crate::state::responses::ResponseStore;

/// Every secret llmux knows, for masking: provider keys and proxy keys.
fn known_secrets(config: &Config, secrets: &dyn SecretSource) -> Vec<String> {
    config
        .backends
        .values()
        .flat_map(|backend| secrets.keys(backend))
        .map(|key| key.secret.expose().to_owned())
        .chain(config.auth.api_keys.iter().cloned())
        .collect()
}

/// What the captures mask: `known` keys, and the configured secret patterns.
fn redactor_for(config: &Config, known: &[String]) -> Redactor {
    // The patterns were checked when the config loaded.
    let patterns = compile_patterns(&config.capture_redact_patterns).unwrap_or_default();
    Redactor::new(known.to_vec(), patterns)
}

fn secrets_of(config: &Config, secrets: &dyn SecretSource) -> Redactor {
    redactor_for(config, &known_secrets(config, secrets))
}

/// The session store and, when it is Redis, the Redis store itself (the brute-force
/// records live in it too).
type StateStores = (Arc<dyn crate::state::StateStore>, Option<Arc<RedisStore>>);

/// The session store `config` asks for: this process's memory, or Redis (with this
/// process's memory behind it while Redis cannot be reached).
fn state_store_for(config: &Config) -> Result<StateStores, Error> {
    use crate::config::StateBackend;
    use crate::state::redis::Degradable;
    Ok(match &config.state.backend {
        StateBackend::Memory => (Arc::new(MemoryStore::new(config.session_max_age)), None),
        StateBackend::Redis { url } => {
            let redis = Arc::new(
                RedisStore::new(
                    url,
                    &config.state.key_prefix,
                    config.session_max_age,
                    config.state.timeout,
                )
                .map_err(Error::internal)?,
            );
            let sessions = Degradable::new(redis.clone(), config.session_max_age);
            (Arc::new(sessions), Some(redis))
        }
    })
}

/// What an engine built for saved settings takes over from the one serving before it, so
/// a change does not lose sessions, stored answers, the capture files or notices.
#[derive(Default)]
struct Carried {
    metrics: Option<Arc<crate::metrics::Metrics>>,
    state: Option<Arc<dyn crate::state::StateStore>>,
    /// The Redis store behind `state`, when it is one.
    redis: Option<Arc<RedisStore>>,
    responses: Option<Arc<ResponseStore>>,
    store: Option<Arc<Store>>,
    capture: Option<Arc<Capture>>,
    notices: Option<tokio::sync::broadcast::Sender<crate::router::breaker::Notice>>,
    /// The proxy keys and brute-force records, when the `[auth]` settings are unchanged:
    /// a save must not lift a block.
    auth: Option<Arc<Auth>>,
    /// Leg statistics and breakers, when the breaker settings are unchanged: a save must not
    /// close a breaker on a back-end that is down.
    health: Option<Arc<Health>>,
    /// Key cool-downs and open breakers (shared through Redis when the state is).
    rests: Option<crate::state::rests::Rests>,
    /// Keys the engines before knew: still masked (their requests may still be running).
    secrets: Vec<String>,
}

/// The proxy engine. Cheap to clone; every clone shares the same state.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    /// The config file and loader behind this engine, when its host lets it be changed.
    settings: std::sync::OnceLock<Arc<crate::admin::settings::SettingsSource>>,
    store: Option<Arc<Store>>,
    responses: Arc<ResponseStore>,
    /// What `/metrics` exports; one per process, kept by successors.
    metrics: Arc<crate::metrics::Metrics>,
    /// The session state, kept for a successor.
    state: Option<Arc<dyn crate::state::StateStore>>,
    redis: Option<Arc<RedisStore>>,
    /// Every key this engine (and those before it) masks.
    secrets: Vec<String>,
    capture: Option<Arc<Capture>>,
    config: Config,
    router: Router,
    pipeline: Pipeline,
    auth: Arc<Auth>,
    health: Arc<Health>,
    rests: crate::state::rests::Rests,
}

impl Drop for Inner {
    /// An engine replaced by saved settings ends its back-ends' processes (ACP agents) once
    /// its last request is done.
    fn drop(&mut self) {
        for backend in self.router.backends().values() {
            backend.close();
        }
    }
}

impl Engine {
    /// Builds the engine with the standard pipeline and in-memory state.
    pub fn new(config: Config, secrets: &dyn SecretSource) -> Result<Self, Error> {
        Self::standard(config, secrets, Carried::default())
    }

    fn standard(
        config: Config,
        secrets: &dyn SecretSource,
        carried: Carried,
    ) -> Result<Self, Error> {
        let mut carried = carried;
        let state = match carried.state.take() {
            Some(state) => state,
            None => {
                let (state, redis) = state_store_for(&config)?;
                carried.redis = redis;
                state
            }
        };
        let metrics = carried.metrics.take().unwrap_or_default();
        carried.metrics = Some(metrics.clone());
        let shared = Shared {
            metrics,
            state,
            responses: carried.responses.take().unwrap_or_else(|| {
                let store =
                    ResponseStore::new(config.responses_max_stored, config.responses_retention);
                Arc::new(match &carried.redis {
                    Some(redis) => store.with_shared(redis.clone()),
                    None => store,
                })
            }),
            prompt_redactor: config
                .redact_prompts
                .then(|| Arc::new(secrets_of(&config, secrets))),
            redis: carried.redis.clone(),
        };
        let pipeline = Pipeline::standard(&config, &shared)?;
        carried.state = Some(shared.state);
        Self::build(config, secrets, pipeline, shared.responses, carried)
    }

    /// What in `config` an engine cannot take over from this one while its listeners
    /// serve on: `None` when [`Engine::successor`] can serve it on the same listeners,
    /// else the setting whose change needs them restarted.
    pub fn restart_needed_for(&self, config: &Config) -> Option<&'static str> {
        let now = self.config();
        let differs = [
            (now.host != config.host, "proxy.host"),
            (now.port != config.port, "proxy.port"),
            (
                now.anthropic_port != config.anthropic_port,
                "proxy.anthropic_port",
            ),
            (
                now.connections != config.connections,
                "the [proxy] connection settings",
            ),
            (
                now.shutdown_timeout != config.shutdown_timeout,
                "proxy.shutdown_timeout",
            ),
            (now.capture != config.capture, "the capture file settings"),
            (
                now.capture_db != config.capture_db
                    || now.capture_db_read_only != config.capture_db_read_only
                    || now.capture_flush_interval != config.capture_flush_interval
                    || now.capture_db_retention != config.capture_db_retention,
                "the capture store settings",
            ),
        ];
        differs
            .into_iter()
            .find(|(changed, _)| *changed)
            .map(|(_, what)| what)
    }

    /// An engine for `config` that takes over this one's sessions, stored answers, capture
    /// writers and notice channel, to serve on the same listeners (see
    /// [`Engine::restart_needed_for`]). Requests running on this engine finish on it; its
    /// back-ends close when the last of them is done.
    pub fn successor(&self, config: Config, secrets: &dyn SecretSource) -> Result<Self, Error> {
        let now = self.config();
        let mut known = self.inner.secrets.clone();
        known.extend(known_secrets(&config, secrets));
        known.sort_unstable();
        known.dedup();
        let same_state = now.session_max_age == config.session_max_age && now.state == config.state;
        let carried = Carried {
            metrics: Some(self.inner.metrics.clone()),
            state: self.inner.state.clone().filter(|_| same_state),
            redis: self.inner.redis.clone().filter(|_| same_state),
            responses: Some(self.inner.responses.clone()).filter(|_| {
                same_state
                    && now.responses_max_stored == config.responses_max_stored
                    && now.responses_retention == config.responses_retention
            }),
            store: self.inner.store.clone(),
            capture: self.inner.capture.clone(),
            notices: Some(self.inner.health.sender()),
            auth: Some(self.inner.auth.clone()).filter(|_| now.auth == config.auth),
            health: Some(self.inner.health.clone())
                .filter(|_| same_state && now.circuit_breaker == config.circuit_breaker),
            rests: Some(self.inner.rests.clone()).filter(|_| same_state),
            secrets: known,
        };
        let engine = Self::standard(config, secrets, carried)?;
        if let Some(settings) = self.inner.settings.get() {
            engine.attach_settings(settings.clone());
        }
        Ok(engine)
    }

    /// The engine with `pipeline`, whose stages store Responses answers in `responses`
    /// (which `GET /v1/responses/{id}` reads).
    pub fn with_pipeline(
        config: Config,
        secrets: &dyn SecretSource,
        pipeline: Pipeline,
        responses: Arc<ResponseStore>,
    ) -> Result<Self, Error> {
        Self::build(config, secrets, pipeline, responses, Carried::default())
    }

    fn build(
        config: Config,
        secrets: &dyn SecretSource,
        pipeline: Pipeline,
        responses: Arc<ResponseStore>,
        carried: Carried,
    ) -> Result<Self, Error> {
        let backends = backend::build_all(&config, secrets)?;
        let router =
            Router::new(backends, config.default_backend.clone()).with_routes(&config.routes);
        let config_breaker = config.circuit_breaker;
        let rests = carried.rests.unwrap_or_else(|| match &carried.redis {
            Some(redis) => crate::state::rests::Rests::shared(redis.clone()),
            None => crate::state::rests::Rests::local(),
        });
        for backend in router.backends().values() {
            if let Some(keys) = backend.keys() {
                keys.share_rests(rests.clone());
            }
        }
        let auth = carried.auth.unwrap_or_else(|| {
            Arc::new(match &carried.redis {
                Some(redis) => Auth::new(&config.auth).with_shared_records(redis.clone()),
                None => Auth::new(&config.auth),
            })
        });
        if config.web.any_host {
            tracing::warn!(
                "proxy.allowed_hosts = [\"*\"]: the Host check is off, so any web page can \
                 reach llmux by rebinding its name to this address; the admin API needs the \
                 proxy key"
            );
        }
        let mut known = carried.secrets;
        if known.is_empty() {
            known = known_secrets(&config, secrets);
        }
        let redactor = redactor_for(&config, &known);
        if let Some(store) = &carried.store {
            store.set_redactor(redactor.clone());
        }
        if let Some(capture) = &carried.capture {
            capture.set_redactor(redactor.clone());
        }
        let health = carried.health.unwrap_or_else(|| {
            Arc::new(
                match carried.notices {
                    Some(notices) => Health::with_notices(config_breaker, notices),
                    None => Health::new(config_breaker),
                }
                .with_rests(rests.clone()),
            )
        });
        Ok(Self {
            inner: Arc::new(Inner {
                settings: std::sync::OnceLock::new(),
                store: match (carried.store, &config.capture_db) {
                    (Some(store), _) => Some(store),
                    (None, Some(path)) if config.capture_db_read_only => {
                        Some(Arc::new(Store::open_read_only(path).map_err(|e| {
                            Error::internal(format!("cannot open the capture store: {e}"))
                        })?))
                    }
                    (None, Some(path)) => Some(Arc::new(
                        Store::open_with(
                            path,
                            config.capture_flush_interval,
                            redactor.clone(),
                            config.capture_db_retention,
                        )
                        .map_err(|e| {
                            Error::internal(format!(
                                "cannot open the capture store {}: {e}",
                                path.display()
                            ))
                        })?,
                    )),
                    (None, None) => None,
                },
                capture: match (carried.capture, &config.capture) {
                    (Some(capture), _) => Some(capture),
                    (None, Some(settings)) => Some(Arc::new(
                        Capture::start(settings.clone(), redactor.clone()).map_err(|e| {
                            Error::internal(format!(
                                "cannot open the capture file {}: {e}",
                                settings.file.display()
                            ))
                        })?,
                    )),
                    (None, None) => None,
                },
                responses,
                metrics: carried.metrics.unwrap_or_default(),
                state: carried.state,
                redis: carried.redis,
                secrets: known,
                config,
                router,
                pipeline,
                auth,
                health,
                rests,
            }),
        })
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn routes(&self) -> &Router {
        &self.inner.router
    }

    pub fn auth(&self) -> &Auth {
        &self.inner.auth
    }

    pub fn pipeline(&self) -> &Pipeline {
        &self.inner.pipeline
    }

    /// What llmux has seen of each back-end and model since it started.
    pub fn health(&self) -> &Health {
        &self.inner.health
    }

    /// Failovers and circuit breakers opening and closing, as they happen (the desktop app
    /// shows them as notifications).
    pub fn notices(&self) -> tokio::sync::broadcast::Receiver<crate::router::breaker::Notice> {
        self.inner.health.subscribe()
    }

    /// The SQLite capture store, when it is on.
    /// Whether any back-end can reach a provider: a keyed one with a key, one the user
    /// added (a local server, ...), or a subscription login whose file exists. The mock and
    /// the built-in back-ends without credentials do not count.
    pub fn has_provider(&self) -> bool {
        self.routes().backends().values().any(|backend| {
            let config = backend.config();
            if config.kind == crate::config::BackendKind::Mock {
                return false;
            }
            if !backend.logins().is_empty() {
                return backend.logins().iter().any(|login| login.path().exists());
            }
            if config.kind.requires_key() {
                return backend.keys().is_some_and(|keys| !keys.is_empty());
            }
            !crate::config::is_builtin_backend(&config.id)
        })
    }

    pub fn store(&self) -> Option<&Arc<Store>> {
        self.inner.store.as_ref()
    }

    /// Starts the request's row in the capture store (when the store is on) with what the
    /// client sent, before decoding it: a request llmux refuses as unreadable is recorded
    /// too, so the inspector shows what the client sent and the error it got back.
    pub fn record_request(
        &self,
        ctx: &mut RequestContext,
        headers: &axum::http::HeaderMap,
        body: &bytes::Bytes,
    ) {
        if let Some(store) = &self.inner.store {
            let recorder = Recorder::new(store.clone());
            recorder.client_request(headers, body.clone());
            let id = ctx.request_id.clone();
            recorder.update(|row| row.id = id);
            ctx.recorder = Some(Arc::new(recorder));
        }
    }

    /// Ends a request that failed before it reached [`Engine::respond`] (unreadable,
    /// undecodable): the pipeline's `on_error` and `on_complete` phases run for it.
    pub fn fail(&self, ctx: &RequestContext, err: &Error) {
        Completion::new(ctx, &self.inner.pipeline).fail(err);
    }

    /// Lets the admin API show and change the config this engine came from; set once, by
    /// whoever serves the engine and restarts it on [`SettingsSource::reloads`].
    ///
    /// [`SettingsSource::reloads`]: crate::admin::settings::SettingsSource::reloads
    pub fn attach_settings(&self, settings: Arc<crate::admin::settings::SettingsSource>) {
        let _ = self.inner.settings.set(settings);
    }

    pub fn settings(&self) -> Option<&crate::admin::settings::SettingsSource> {
        self.inner.settings.get().map(Arc::as_ref)
    }

    /// The wire capture, when it is on.
    pub fn capture(&self) -> Option<&Arc<Capture>> {
        self.inner.capture.as_ref()
    }

    /// Writes out what the captures still hold (each writer gets up to five seconds), folds
    /// the store's write-ahead log in, and logs what the writers had to drop. Blocking: call
    /// it off the async threads, once the listeners have stopped.
    pub fn close(&self) {
        for backend in self.routes().backends().values() {
            backend.close();
        }
        let wait = std::time::Duration::from_secs(5);
        if let Some(capture) = self.capture() {
            capture.flush(wait);
            if capture.dropped() > 0 {
                tracing::warn!(
                    "{} capture records were dropped (the writer fell behind)",
                    capture.dropped()
                );
            }
        }
        if let Some(store) = self.store() {
            store.flush(wait);
            if let Err(err) = store.checkpoint() {
                tracing::warn!("capture store: the write-ahead log was not folded in: {err}");
            }
            if store.dropped() > 0 {
                tracing::warn!(
                    "{} requests were not recorded in the capture store (the writer fell behind)",
                    store.dropped()
                );
            }
        }
    }

    /// Why the session store serves with less than it should (Redis unreachable); `None`
    /// when it is whole. The health endpoint reports it.
    pub fn state_degraded(&self) -> Option<String> {
        self.inner.state.as_ref().and_then(|state| state.degraded())
    }

    /// The Prometheus text of `/metrics`.
    pub fn metrics_text(&self) -> String {
        self.inner.metrics.render(self)
    }

    /// Whether the session store can serve now (readiness).
    pub async fn state_ready(&self) -> Result<(), Error> {
        match &self.inner.state {
            Some(state) => state.check().await,
            None => Ok(()),
        }
    }

    /// Stored Responses-API answers.
    pub fn responses(&self) -> &ResponseStore {
        &self.inner.responses
    }

    /// Runs a decoded request through the pipeline's phases and its back-end, returning
    /// the answer's events. An error before the first event comes back as `Err`. Either
    /// way the request is completed (`on_error`, `on_complete`) exactly once: at the end of
    /// the events, at the error, or when the caller drops the events early.
    pub async fn respond(
        &self,
        ctx: &mut RequestContext,
        mut request: Request,
    ) -> Result<EventStream, Error> {
        ctx.stream = request.stream;
        let pipeline = &self.inner.pipeline;
        let events = match self.call(ctx, &mut request).await {
            Ok(events) => events,
            Err(err) => {
                Completion::new(ctx, pipeline).fail(&err);
                return Err(err);
            }
        };
        let filters = pipeline.response_filters(ctx, &request);
        Ok(answer(events, filters, Completion::new(ctx, pipeline)))
    }

    /// Phases 1 to 4: the request, its route, and the call (each attempt prepares the
    /// request for its back-end, phase 3, inside the chain of phase 4).
    async fn call(
        &self,
        ctx: &mut RequestContext,
        request: &mut Request,
    ) -> Result<EventStream, Error> {
        let pipeline = &self.inner.pipeline;
        if let Flow::Respond(events) = pipeline.on_request(ctx, request).await? {
            ctx.backend = Some("llmux".into());
            return Ok(Box::pin(futures::stream::iter(events)));
        }
        let plan = pipeline.on_route(ctx, request, &self.inner.router).await?;
        ctx.failover_route = plan.route.as_ref().map(|route| route.name.clone());
        let first = plan.first();
        ctx.backend = Some(first.backend.id().to_owned());
        ctx.model = Some(first.model.clone());
        ctx.key_name = first.backend.key_name().map(str::to_owned);
        let call = Call {
            ctx,
            plan: &plan,
            prepare: pipeline.upstream_request_stages(),
            capture: self.inner.capture.as_ref(),
            health: &self.inner.health,
        };
        let result = Upstream::new(pipeline.around_upstream_stages(), &call)
            .send(request)
            .await;
        // The leg that answered (or failed last) is where the request went.
        let trail = ctx.trail.clone();
        trail.with_last(|last| {
            if ctx.backend.as_deref() != Some(last.backend.as_str()) {
                ctx.backend = Some(last.backend.clone());
            }
            if ctx.model.as_deref() != Some(last.model.as_str()) {
                ctx.model = Some(last.model.clone());
            }
            if ctx.key_name != last.key_name {
                ctx.key_name.clone_from(&last.key_name);
            }
        });
        result
    }

    /// Every back-end's models, fetched concurrently; back-ends that cannot list are
    /// skipped (and logged at debug level).
    pub async fn models(&self) -> Vec<(String, Vec<String>)> {
        let backends = self.inner.router.backends();
        let fetches = backends.values().map(|backend| async move {
            let models =
                tokio::time::timeout(std::time::Duration::from_secs(10), backend.models()).await;
            match models {
                Ok(Ok(models)) => Some((backend.id().to_owned(), models)),
                Ok(Err(err)) => {
                    tracing::debug!(backend = backend.id(), error = %err, "model list unavailable");
                    None
                }
                Err(_) => {
                    tracing::debug!(backend = backend.id(), "model list timed out");
                    None
                }
            }
        });
        futures::future::join_all(fetches)
            .await
            .into_iter()
            .flatten()
            .collect()
    }
}

/// Phase 5 and the end: the events through the response filters, each event the client
/// gets noted in the request's [`Completion`], which completes at the end or at an error
/// event (before that event goes out: a caller that stops reading at an error never polls
/// the end). A plain `Stream` rather than a generator: it sits on every event of every
/// answer, and with no filters it only notes and passes each event on.
struct Answer {
    events: EventStream,
    filters: Vec<Box<dyn EventFilter>>,
    /// The filters' buffers, kept between events, and what they produced from the last one.
    scratch: Vec<Vec<Event>>,
    produced: Vec<Event>,
    /// Events the filters produced, not yet given out.
    pending: std::collections::VecDeque<Event>,
    /// The filters' work after the end (`EventFilter::after`), awaited before the tail.
    after: Option<AfterResponse>,
    /// What the filters appended at the end, given out once `after` is done.
    tail: Vec<Event>,
    ended: bool,
    completion: Option<Completion>,
}

fn answer(
    events: EventStream,
    filters: Vec<Box<dyn EventFilter>>,
    completion: Completion,
) -> EventStream {
    Box::pin(Answer {
        events,
        filters,
        scratch: Vec::new(),
        produced: Vec::new(),
        pending: std::collections::VecDeque::new(),
        after: None,
        tail: Vec::new(),
        ended: false,
        completion: Some(completion),
    })
}

impl Answer {
    /// Notes `event`; an error event completes the request.
    fn note(&mut self, event: &Event) {
        if let Some(completion) = &mut self.completion {
            completion.observe(event);
            if matches!(event, Event::Error(_))
                && let Some(done) = self.completion.take()
            {
                done.finish();
            }
        }
    }

    /// The upstream stream ended: the filters' last events, and their work after the end.
    fn end(&mut self) {
        self.ended = true;
        end_filters(&mut self.filters, &mut self.tail);
        let afters: Vec<AfterResponse> =
            self.filters.iter_mut().filter_map(|f| f.after()).collect();
        if !afters.is_empty() {
            self.after = Some(Box::pin(async move {
                for after in afters {
                    after.await;
                }
            }));
        }
    }
}

impl futures::Stream for Answer {
    type Item = Event;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Event>> {
        use std::task::Poll;
        let this = self.get_mut();
        loop {
            if let Some(event) = this.pending.pop_front() {
                this.note(&event);
                return Poll::Ready(Some(event));
            }
            if let Some(after) = &mut this.after {
                futures::ready!(after.as_mut().poll(cx));
                this.after = None;
            }
            if this.ended {
                if !this.tail.is_empty() {
                    this.pending.extend(this.tail.drain(..));
                    continue;
                }
                if let Some(completion) = this.completion.take() {
                    completion.finish();
                }
                return Poll::Ready(None);
            }
            match futures::ready!(this.events.poll_next_unpin(cx)) {
                Some(event) if this.filters.is_empty() => {
                    this.note(&event);
                    return Poll::Ready(Some(event));
                }
                Some(event) => {
                    apply_filters_with(
                        &mut this.filters,
                        &mut this.scratch,
                        event,
                        &mut this.produced,
                    );
                    this.pending.extend(this.produced.drain(..));
                    if this.filters.iter().any(|f| f.cut()) {
                        // A filter ended the answer: cancel the upstream call now.
                        this.events = Box::pin(futures::stream::empty());
                        this.end();
                    }
                }
                None => this.end(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::Duration;

    use super::*;
    use crate::config::ConfigLoader;
    use crate::credentials::EnvSecrets;

    fn config(cool_down_seconds: f64, extra_backend: bool) -> Config {
        let mut loader = ConfigLoader::new()
            .env(|name| (name == "LLM_INTERACTIVE_PROXY_API_KEY").then(|| "team-key".into()))
            .set("default_backend", "openai", "test")
            .set("circuit_breaker.failures", 1_i64, "test")
            .set(
                "circuit_breaker.cool_down_seconds",
                cool_down_seconds,
                "test",
            );
        if extra_backend {
            loader = loader.set("backends.spare.type", "mock", "test");
        }
        loader.load().unwrap().config
    }

    fn secrets() -> EnvSecrets {
        EnvSecrets::new(|name| match name {
            "OPENAI_API_KEY" => Some("sk-first".into()),
            "OPENAI_API_KEY_2" => Some("sk-second".into()),
            _ => None,
        })
    }

    async fn attempt(engine: &Engine, key: &str) -> Result<(), Error> {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("x-api-key", key.parse().unwrap());
        let client: IpAddr = [192, 0, 2, 7].into();
        engine
            .auth()
            .check("/v1/models", Some(client), &headers, None)
            .await
    }

    #[tokio::test]
    async fn saved_settings_keep_blocks_open_breakers_and_resting_keys() {
        let engine = Engine::new(config(60.0, false), &secrets()).unwrap();
        let outage = Error::upstream_status(503, None);
        engine.health().record("openai", "m", Err(&outage));
        let keys = engine.routes().backend("openai").unwrap().keys().unwrap();
        assert!(keys.failed(
            0,
            &Error::upstream_status(429, Some(Duration::from_secs(30)))
        ));
        for _ in 0..5 {
            assert_eq!(attempt(&engine, "a-guess").await.unwrap_err().status(), 401);
        }
        assert_eq!(
            attempt(&engine, "team-key").await.unwrap_err().status(),
            429
        );

        // Another back-end saved: nothing the engine knew of is forgotten.
        let next = engine.successor(config(60.0, true), &secrets()).unwrap();
        assert!(next.health().breakers().is_open("openai"));
        let keys = next.routes().backend("openai").unwrap().keys().unwrap();
        assert_eq!(keys.pick(&[]), Ok(Some(1)), "the first key still rests");
        assert_eq!(
            attempt(&next, "team-key").await.unwrap_err().status(),
            429,
            "still blocked"
        );
        assert_eq!(next.health().legs().len(), 1, "the statistics too");

        // New breaker settings start the breakers over, but the open one stays open.
        let changed = next.successor(config(90.0, true), &secrets()).unwrap();
        assert!(changed.health().legs().is_empty());
        assert!(changed.health().breakers().is_open("openai"));
    }
}
