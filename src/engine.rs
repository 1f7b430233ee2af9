//! The engine: config, back-ends, router, pipeline, auth and captures. It knows nothing of
//! HTTP front-ends: `frontend::apps` builds those over it.

use std::sync::Arc;

use futures::StreamExt;

use crate::Error;
use crate::auth::Auth;
use crate::backend::{self, EventStream};
use crate::capture::redact::compile_patterns;
use crate::capture::store::{Recorder, Store};
use crate::capture::{Capture, Redactor, Tap, TapInfo};
use crate::config::Config;
use crate::credentials::SecretSource;
use crate::model::Request;
use crate::pipeline::structured_output;
use crate::pipeline::{
    Flow, Pipeline, RequestContext, apply_filters, derive_session_id, end_filters,
};
use crate::router::Router;
use crate::state::responses::ResponseStore;
use crate::state::{MemoryStore, StateStore};

/// Every secret llmux knows, for masking: provider keys and proxy keys.
/// What the captures mask: every key llmux knows, and the configured secret patterns.
fn secrets_of(config: &Config, secrets: &dyn SecretSource) -> Redactor {
    let keys = config
        .backends
        .values()
        .flat_map(|backend| secrets.keys(backend))
        .map(|key| key.secret.expose().to_owned())
        .chain(config.auth.api_keys.iter().cloned())
        .collect();
    // The patterns were checked when the config loaded.
    let patterns = compile_patterns(&config.capture_redact_patterns).unwrap_or_default();
    Redactor::new(keys, patterns)
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
    responses: ResponseStore,
    capture: Option<Arc<Capture>>,
    config: Config,
    router: Router,
    pipeline: Pipeline,
    auth: Auth,
}

impl Engine {
    /// Builds the engine with the standard pipeline and in-memory state.
    pub fn new(config: Config, secrets: &dyn SecretSource) -> Result<Self, Error> {
        let state: Arc<dyn StateStore> = Arc::new(MemoryStore::new(config.session_max_age));
        let pipeline = Pipeline::standard(&config, state)?;
        Self::with_pipeline(config, secrets, pipeline)
    }

    pub fn with_pipeline(
        config: Config,
        secrets: &dyn SecretSource,
        pipeline: Pipeline,
    ) -> Result<Self, Error> {
        let backends = backend::build_all(&config, secrets)?;
        let router = Router::new(backends, config.default_backend.clone());
        let auth = Auth::new(&config.auth);
        if config.web.any_host {
            tracing::warn!(
                "proxy.allowed_hosts = [\"*\"]: the Host check is off, so any web page can \
                 reach llmux by rebinding its name to this address; the admin API needs the \
                 proxy key"
            );
        }
        Ok(Self {
            inner: Arc::new(Inner {
                settings: std::sync::OnceLock::new(),
                store: match &config.capture_db {
                    Some(path) => Some(Arc::new(
                        Store::open_with(
                            path,
                            config.capture_flush_interval,
                            secrets_of(&config, secrets),
                            config.capture_db_retention,
                        )
                        .map_err(|e| {
                            Error::internal(format!(
                                "cannot open the capture store {}: {e}",
                                path.display()
                            ))
                        })?,
                    )),
                    None => None,
                },
                capture: match &config.capture {
                    Some(settings) => Some(Arc::new(
                        Capture::start(settings.clone(), secrets_of(&config, secrets)).map_err(
                            |e| {
                                Error::internal(format!(
                                    "cannot open the capture file {}: {e}",
                                    settings.file.display()
                                ))
                            },
                        )?,
                    )),
                    None => None,
                },
                responses: ResponseStore::new(
                    config.responses_max_stored,
                    config.responses_retention,
                ),
                config,
                router,
                pipeline,
                auth,
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

    /// The SQLite capture store, when it is on.
    pub fn store(&self) -> Option<&Arc<Store>> {
        self.inner.store.as_ref()
    }

    /// Starts this request's row in the capture store, when the store is on.
    pub fn begin_capture(
        &self,
        ctx: &mut RequestContext,
        headers: &axum::http::HeaderMap,
        body: &[u8],
        request: &Request,
    ) {
        self.capture_rejected(ctx, headers, body);
        if let Some(recorder) = &ctx.recorder {
            let prompt = request.last_user_text().unwrap_or_default();
            let model = request.model.clone();
            let estimated_input = request.estimated_input_tokens();
            recorder.update(|row| {
                row.prompt_text = prompt;
                row.model_requested = model;
                // Replaced by the provider's count when it reports usage.
                row.input_tokens = estimated_input;
                row.tokens_estimated = true;
            });
        }
    }

    /// Starts the store's row with what the client sent, before (or without) decoding it:
    /// a request llmux refuses as unreadable is recorded too, so the inspector shows what
    /// the client sent and the error it got back.
    pub fn capture_rejected(
        &self,
        ctx: &mut RequestContext,
        headers: &axum::http::HeaderMap,
        body: &[u8],
    ) {
        if let Some(store) = &self.inner.store {
            let recorder = Recorder::new(store.clone());
            recorder.client_request(headers, body);
            let id = ctx.request_id.clone();
            recorder.update(|row| row.id = id);
            ctx.recorder = Some(Arc::new(recorder));
        }
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

    /// Stored Responses-API answers.
    pub fn responses(&self) -> &ResponseStore {
        &self.inner.responses
    }

    /// Runs a decoded request through the pipeline and its back-end, returning the
    /// response events. Errors before the first event come back as `Err`.
    pub async fn respond(
        &self,
        ctx: &mut RequestContext,
        mut request: Request,
    ) -> Result<EventStream, Error> {
        let pipeline = &self.inner.pipeline;
        ctx.session_id = match &request.client.session_id {
            Some(id) if !id.is_empty() => id.clone(),
            _ => derive_session_id(&request),
        };
        if let Flow::Respond(events) = pipeline.on_request(ctx, &mut request).await? {
            ctx.backend = Some("llmux".into());
            return Ok(Box::pin(futures::stream::iter(events)));
        }
        let target = self.inner.router.resolve(&request.model)?;
        ctx.backend = Some(target.backend.id().to_owned());
        ctx.model = Some(target.model.clone());
        ctx.key_name = target.backend.key_name().map(str::to_owned);
        let tap = (self.inner.capture.is_some() || ctx.recorder.is_some()).then(|| {
            Tap::new(
                self.inner.capture.clone(),
                ctx.recorder.clone(),
                TapInfo {
                    request_id: ctx.request_id.clone(),
                    session_id: ctx.session_id.clone(),
                    client_host: ctx.client_ip.map(|ip| ip.to_string()).unwrap_or_default(),
                    user_agent: ctx.user_agent.clone().unwrap_or_default(),
                    backend: target.backend.id().to_owned(),
                    model: target.model.clone(),
                    key_name: ctx.key_name.clone(),
                },
            )
        });
        let tap = tap.as_ref();
        let config = &self.inner.config;
        let events = if config.validate_structured_output
            && structured_output::requested_schema(&request).is_some()
        {
            let (backend, model) = (&target.backend, target.model.as_str());
            structured_output::respond(
                &request,
                config.retry_structured_output,
                |request| async move { backend.send(&request, model, tap).await },
            )
            .await?
        } else {
            target.backend.send(&request, &target.model, tap).await?
        };

        let mut filters = pipeline.response_filters(ctx);
        if filters.is_empty() {
            return Ok(events);
        }
        let filtered = async_stream::stream! {
            let mut events = events;
            let mut out = Vec::new();
            while let Some(event) = events.next().await {
                apply_filters(&mut filters, event, &mut out);
                for event in out.drain(..) {
                    yield event;
                }
            }
            end_filters(&mut filters, &mut out);
            for after in filters.iter_mut().filter_map(|f| f.after()) {
                after.await;
            }
            for event in out.drain(..) {
                yield event;
            }
        };
        Ok(Box::pin(filtered))
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
