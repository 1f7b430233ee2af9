//! The proxy controller: starts and stops the engine's listeners inside the app, without
//! restarting it, and reports the state the tray shows (running, stopped, error).
//!
//! One [`Proxy`] owns at most one listener task at a time, plus the channel that shuts it
//! down. Each start builds a fresh [`Engine`] from the config and the secret source. Saved
//! settings and keys are applied by a successor engine on the running listeners (running
//! streams finish on the old one), or by a restart when the address, a port or the capture
//! files changed. A bind error (port in use, address not available) becomes
//! [`State::Error`] with the reason, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use llmux::admin::settings::SettingsSource;
use llmux::config::BackendConfig;
use llmux::credentials::{NamedKey, SecretSource};
use llmux::router::breaker::Notice;
use llmux::{Config, Engine};
use serde::Serialize;
use tokio::sync::{Mutex, oneshot, watch};
use tokio::task::JoinHandle;

/// What the tray icon shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum State {
    Running,
    Stopped,
    Error,
}

/// The proxy's state with what the tray's status line and the UI show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Status {
    pub state: State,
    /// The main port's address: the bound one when running, else the configured one.
    #[cfg_attr(test, ts(type = "string"))]
    pub address: SocketAddr,
    /// The dedicated Anthropic port, when configured.
    #[cfg_attr(test, ts(type = "string | null"))]
    pub anthropic_address: Option<SocketAddr>,
    pub default_backend: String,
    /// Model requests served since the app started (both ports, every start): chat,
    /// messages, responses and generateContent calls, not health checks, model lists, token
    /// counts, the UI or the admin API.
    pub requests_served: u64,
    /// Input and output tokens of today's requests (local time), from the capture store;
    /// none without one, or while the proxy is stopped.
    #[cfg_attr(test, ts(type = "number | null"))]
    pub tokens_today: Option<u64>,
    /// Why the proxy is in the error state.
    pub error: Option<String>,
    /// Running, but no back-end can reach a provider yet (no key, no login, nothing
    /// added): only the mock answers.
    pub no_provider: bool,
}

impl Status {
    /// The base URL an OpenAI client uses.
    pub fn openai_base_url(&self) -> String {
        format!("http://{}/v1", reachable(self.address))
    }

    /// The base URL an Anthropic client (Claude Code) uses: the dedicated port when there
    /// is one, else the main port's `/anthropic` prefix.
    pub fn anthropic_base_url(&self) -> String {
        match self.anthropic_address {
            Some(addr) => format!("http://{}", reachable(addr)),
            None => format!("http://{}/anthropic", reachable(self.address)),
        }
    }

    /// The base URL a Gemini client (Gemini CLI, google-genai) uses.
    pub fn gemini_base_url(&self) -> String {
        format!("http://{}", reachable(self.address))
    }
}

/// A wildcard listen address is reached through loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

struct Listening {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
    engine: Engine,
    /// Puts a successor engine on the running listeners.
    switch: llmux::server::Switch,
}

/// Starts and stops the engine's listeners; see the module docs.
pub struct Proxy {
    /// Replaced when settings are saved; each start serves the config of that moment.
    config: std::sync::RwLock<Config>,
    /// The config file and loader behind `config`, for the settings window.
    settings: Option<Arc<SettingsSource>>,
    secrets: Arc<dyn SecretSource>,
    served: Arc<AtomicU64>,
    listening: Mutex<Option<Listening>>,
    status: watch::Sender<Status>,
    /// Why the proxy may not start (an invalid config file), shown as the error state.
    blocked: Option<String>,
    /// The engine's notices (failovers, circuit breakers), whichever engine is serving.
    notices: tokio::sync::broadcast::Sender<Notice>,
}

impl Proxy {
    pub fn new(config: Config, secrets: Arc<dyn SecretSource>) -> Self {
        let status = Status {
            state: State::Stopped,
            address: SocketAddr::new(config.host, config.port),
            anthropic_address: config
                .anthropic_port
                .map(|port| SocketAddr::new(config.host, port)),
            default_backend: config.default_backend.clone(),
            requests_served: 0,
            tokens_today: None,
            error: None,
            no_provider: false,
        };
        Self {
            config: std::sync::RwLock::new(config),
            settings: None,
            secrets,
            served: Arc::new(AtomicU64::new(0)),
            listening: Mutex::new(None),
            status: watch::Sender::new(status),
            blocked: None,
            notices: tokio::sync::broadcast::channel(64).0,
        }
    }

    /// A proxy that cannot start because the configuration is invalid: it stays in the
    /// error state with `reason` (the app keeps running so the user can fix the settings).
    pub fn blocked(config: Config, secrets: Arc<dyn SecretSource>, reason: String) -> Self {
        let mut proxy = Self::new(config, secrets);
        proxy.status.send_modify(|s| {
            s.state = State::Error;
            s.error = Some(reason.clone());
        });
        proxy.blocked = Some(reason);
        proxy
    }

    /// The config the next start serves.
    pub fn config(&self) -> Config {
        self.config
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Lets the settings window show and change the config file; see [`Self::set_config`].
    pub fn with_settings(mut self, settings: Arc<SettingsSource>) -> Self {
        self.settings = Some(settings);
        self
    }

    pub fn settings(&self) -> Option<&Arc<SettingsSource>> {
        self.settings.as_ref()
    }

    /// Serves `config` from the next start on (saved settings; [`Self::apply_if_running`]
    /// applies them now).
    pub fn set_config(&self, config: Config) {
        *self
            .config
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = config;
    }

    /// The current status, with an up-to-date request count.
    pub fn status(&self) -> Status {
        let mut status = self.status.borrow().clone();
        status.requests_served = self.served.load(Ordering::Relaxed);
        status.tokens_today = self.tokens_today();
        status.no_provider = status.state == State::Running && !self.has_provider();
        status
    }

    /// Whether the serving engine has a provider; true when that cannot be told right now.
    fn has_provider(&self) -> bool {
        match self.listening.try_lock() {
            Ok(listening) => listening.as_ref().is_none_or(|l| l.engine.has_provider()),
            Err(_) => true,
        }
    }

    /// Today's tokens from the serving engine's capture store. A start or stop holding the
    /// lock right now means none this time; the next refresh reads them.
    fn tokens_today(&self) -> Option<u64> {
        let listening = self.listening.try_lock().ok()?;
        let store = listening.as_ref()?.engine.store()?.clone();
        drop(listening);
        store.tokens_today().ok()
    }

    /// Failovers and circuit breakers of the engine serving, from now on, across restarts.
    pub fn notices(&self) -> tokio::sync::broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }

    /// The engine serving now, for the admin commands; `None` when stopped.
    pub async fn engine(&self) -> Option<Engine> {
        self.listening
            .lock()
            .await
            .as_ref()
            .filter(|l| !l.task.is_finished())
            .map(|l| l.engine.clone())
    }

    /// Changes of state (not of the request count, which [`Proxy::status`] reads fresh).
    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    /// Starts or stops the listeners; returns the status after the change.
    pub async fn set_enabled(&self, enabled: bool) -> Status {
        if enabled {
            self.start().await
        } else {
            self.stop().await
        }
    }

    /// Binds the listeners and serves the engine on them. Already running: no change.
    /// A bind or engine error leaves the proxy in [`State::Error`].
    pub async fn start(&self) -> Status {
        if let Some(reason) = &self.blocked {
            return self.set_error(reason.clone());
        }
        let mut listening = self.listening.lock().await;
        if let Some(current) = listening.as_ref() {
            if !current.task.is_finished() {
                return self.status();
            }
            *listening = None;
        }
        match self.bind_and_serve().await {
            Ok((running, main, anthropic)) => {
                *listening = Some(running);
                self.status.send_modify(|s| {
                    s.state = State::Running;
                    s.address = main;
                    s.anthropic_address = anthropic;
                    s.error = None;
                });
                tracing::info!(
                    "proxy listening on http://{main}{}",
                    anthropic
                        .map(|a| format!(" (Anthropic: http://{a})"))
                        .unwrap_or_default()
                );
            }
            Err(message) => {
                tracing::error!("proxy not started: {message}");
                return self.set_error(message);
            }
        }
        self.status()
    }

    fn set_error(&self, message: String) -> Status {
        self.status.send_modify(|s| {
            s.state = State::Error;
            s.error = Some(message);
        });
        self.status()
    }

    async fn bind_and_serve(&self) -> Result<(Listening, SocketAddr, Option<SocketAddr>), String> {
        // The secret source may ask the OS keychain (D-Bus on Linux): off the async threads.
        let config = self.config();
        let (for_engine, secrets) = (config.clone(), self.secrets.clone());
        let engine = tokio::task::spawn_blocking(move || {
            let config = for_engine;
            let started = std::time::Instant::now();
            // The engine asks for each back-end's keys more than once; ask the source once.
            let snapshot = Snapshot::of(secrets.as_ref(), &config);
            let engine = Engine::new(config, &snapshot);
            tracing::info!("engine built in {} ms", started.elapsed().as_millis());
            engine
        })
        .await
        .map_err(|e| format!("cannot start the engine: {e}"))?
        .map_err(|e| format!("cannot start the engine: {e}"))?;
        if let Some(settings) = &self.settings {
            engine.attach_settings(settings.clone());
        }
        forward_notices(&engine, self.notices.clone());
        let served = self.served.clone();
        let listeners = llmux::server::Listeners::bind(&engine)
            .map_err(|e| e.to_string())?
            .layer(move |app| counted(app, &served));
        let switch = listeners.switch();
        let (main_addr, anthropic_addr) = (listeners.main, listeners.anthropic);
        let (stop, stopped) = oneshot::channel::<()>();
        let grace = config.shutdown_timeout;
        let limits = config.connections.clone();
        let status = self.status.clone();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(err) = listeners.serve(limits, shutdown, grace).await {
                tracing::error!("proxy stopped: {err}");
                status.send_modify(|s| {
                    s.state = State::Error;
                    s.error = Some(format!("the proxy stopped: {err}"));
                });
            }
        });
        Ok((
            Listening {
                stop,
                task,
                engine,
                switch,
            },
            main_addr,
            anthropic_addr,
        ))
    }

    /// Closes the listeners (the port refuses connections once this returns) and lets
    /// running requests finish for up to the configured shutdown timeout.
    pub async fn stop(&self) -> Status {
        let running = self.listening.lock().await.take();
        if let Some(Listening {
            stop, task, engine, ..
        }) = running
        {
            // The port refuses connections once the serve task has dropped its listeners.
            let _ = stop.send(());
            let limit = self.config().shutdown_timeout + Duration::from_secs(1);
            if tokio::time::timeout(limit, task).await.is_err() {
                tracing::warn!("proxy listeners did not stop within {}s", limit.as_secs());
            }
            flush_captures(engine).await;
            tracing::info!("proxy stopped");
        }
        self.status.send_modify(|s| {
            if self.blocked.is_none() {
                s.state = State::Stopped;
                s.error = None;
            }
            let config = self.config();
            s.address = SocketAddr::new(config.host, config.port);
            s.anthropic_address = config
                .anthropic_port
                .map(|port| SocketAddr::new(config.host, port));
            s.default_backend = config.default_backend.clone();
        });
        self.status()
    }

    /// Applies the config (and the keys) of now when running: on the same listeners when
    /// they can serve it, so running requests and streams finish unbroken; else by
    /// stopping and starting again. Stopped: no change.
    pub async fn apply_if_running(&self) -> Status {
        if self.status.borrow().state != State::Running {
            return self.status();
        }
        match self.swap_engine().await {
            Ok(()) => self.status(),
            Err(why) => {
                tracing::info!("restarting the proxy: {why}");
                self.stop().await;
                self.start().await
            }
        }
    }

    /// Serves the config of now with a successor of the running engine; why not, when it
    /// cannot (the address or a port changed, the new engine does not build).
    async fn swap_engine(&self) -> Result<(), String> {
        let config = self.config();
        let mut listening = self.listening.lock().await;
        let Some(current) = listening.as_mut().filter(|l| !l.task.is_finished()) else {
            return Err("the listeners are not running".into());
        };
        if let Some(what) = current.engine.restart_needed_for(&config) {
            return Err(format!("{what} changed"));
        }
        let (running, secrets, next) =
            (current.engine.clone(), self.secrets.clone(), config.clone());
        // The secret source may ask the OS keychain: off the async threads.
        let successor = tokio::task::spawn_blocking(move || {
            let snapshot = Snapshot::of(secrets.as_ref(), &next);
            running.successor(next, &snapshot)
        })
        .await
        .map_err(|e| format!("the new engine did not build: {e}"))?
        .map_err(|e| format!("the new engine did not build: {e}"))?;
        current.switch.serve(&successor);
        current.engine = successor;
        self.status
            .send_modify(|s| s.default_backend = config.default_backend.clone());
        tracing::info!("settings applied without a restart");
        Ok(())
    }
}

/// Every back-end's keys, read once from a source.
struct Snapshot(std::collections::HashMap<String, Vec<NamedKey>>);

impl Snapshot {
    fn of(source: &dyn SecretSource, config: &Config) -> Self {
        Self(
            config
                .backends
                .values()
                .map(|backend| (backend.id.clone(), source.keys(backend)))
                .collect(),
        )
    }
}

impl SecretSource for Snapshot {
    fn keys(&self, backend: &BackendConfig) -> Vec<NamedKey> {
        self.0.get(&backend.id).cloned().unwrap_or_default()
    }
}

/// Counts the model requests the app answers (not health checks, the UI or the admin API).
fn counted(app: axum::Router, served: &Arc<AtomicU64>) -> axum::Router {
    app.layer(axum::middleware::from_fn_with_state(
        served.clone(),
        |axum::extract::State(served): axum::extract::State<Arc<AtomicU64>>,
         request: axum::extract::Request,
         next: axum::middleware::Next| async move {
            if llmux::frontend::is_model_call(request.method(), request.uri().path()) {
                served.fetch_add(1, Ordering::Relaxed);
            }
            next.run(request).await
        },
    ))
}

/// Writes what the captures still hold, as the CLI does at shutdown.
/// Passes `engine`'s notices on to the app's channel until the engine is gone.
fn forward_notices(engine: &Engine, to: tokio::sync::broadcast::Sender<Notice>) {
    let mut from = engine.notices();
    tokio::spawn(async move {
        loop {
            match from.recv().await {
                Ok(notice) => {
                    let _ = to.send(notice);
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!("{missed} notices missed");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });
}

async fn flush_captures(engine: Engine) {
    if tokio::task::spawn_blocking(move || engine.close())
        .await
        .is_err()
    {
        tracing::warn!("capture flush did not finish");
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use llmux::config::ConfigLoader;
    use llmux::credentials::EnvSecrets;
    use std::collections::HashMap;

    /// A config on a free loopback port, no Anthropic port, default back-end `mock`.
    pub(crate) fn test_config(port: u16) -> Config {
        let port = i64::from(port);
        ConfigLoader::new()
            .env(|_| None)
            .set("proxy.port", toml::Value::Integer(port), "test")
            .set("proxy.anthropic_port", toml::Value::Integer(0), "test")
            .set(
                "proxy.shutdown_timeout_seconds",
                toml::Value::Integer(1),
                "test",
            )
            .set("default_backend", "mock", "test")
            .load()
            .unwrap()
            .config
    }

    pub(crate) fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    pub(crate) fn test_proxy(port: u16) -> Proxy {
        Proxy::new(
            test_config(port),
            Arc::new(EnvSecrets::from_map(HashMap::new())),
        )
    }

    async fn chat(port: u16) -> Result<String, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        client
            .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
            .json(&serde_json::json!({
                "model": "mock:mock-model",
                "messages": [{"role": "user", "content": "hi"}]
            }))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await
    }

    #[tokio::test]
    async fn toggling_off_closes_the_port_and_on_serves_again() {
        let port = free_port();
        let proxy = test_proxy(port);
        assert_eq!(proxy.status().state, State::Stopped);

        let status = proxy.set_enabled(true).await;
        assert_eq!(status.state, State::Running, "{status:?}");
        assert_eq!(status.address.port(), port);
        let body = chat(port).await.unwrap();
        assert!(body.contains("mock back-end"), "{body}");
        // Health checks and model lists are not model requests: the counter stays.
        for path in ["/health", "/v1/models"] {
            reqwest::get(format!("http://127.0.0.1:{port}{path}"))
                .await
                .unwrap();
        }
        assert_eq!(proxy.status().requests_served, 1);
        assert!(proxy.engine().await.is_some());

        let status = proxy.set_enabled(false).await;
        assert!(proxy.engine().await.is_none());
        assert_eq!(status.state, State::Stopped);
        let refused = tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
        assert!(refused.is_err(), "port {port} still accepts connections");
        assert!(chat(port).await.is_err());

        let status = proxy.set_enabled(true).await;
        assert_eq!(status.state, State::Running, "{status:?}");
        chat(port).await.unwrap();
        assert_eq!(proxy.status().requests_served, 2);
        proxy.stop().await;
    }

    /// `test_config` with a slow mock back-end `slow` (eight words, 150 ms apart) and
    /// `default` as the default back-end.
    fn slow_config(port: u16, default: &str) -> Config {
        ConfigLoader::new()
            .env(|_| None)
            .set("proxy.port", toml::Value::Integer(i64::from(port)), "test")
            .set("proxy.anthropic_port", toml::Value::Integer(0), "test")
            .set("backends.slow.type", "mock", "test")
            .set(
                "backends.slow.response_text",
                "one two three four five six seven eight",
                "test",
            )
            .set("backends.slow.chunks", toml::Value::Integer(8), "test")
            .set(
                "backends.slow.chunk_delay_ms",
                toml::Value::Integer(150),
                "test",
            )
            .set("default_backend", default, "test")
            .load()
            .unwrap()
            .config
    }

    #[tokio::test]
    async fn saved_settings_apply_on_the_running_listeners_without_cutting_a_stream() {
        let port = free_port();
        let proxy = Proxy::new(
            slow_config(port, "slow"),
            Arc::new(EnvSecrets::from_map(HashMap::new())),
        );
        assert_eq!(proxy.start().await.state, State::Running);
        let mut stream = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
            .json(&serde_json::json!({"model": "any", "stream": true,
                "messages": [{"role": "user", "content": "Count."}]}))
            .send()
            .await
            .unwrap();
        let mut body = String::new();
        while !body.contains("one") {
            body.push_str(&String::from_utf8_lossy(
                &stream.chunk().await.unwrap().unwrap(),
            ));
        }

        proxy.set_config(slow_config(port, "mock"));
        let status = proxy.apply_if_running().await;
        assert_eq!(status.state, State::Running);
        assert_eq!(status.default_backend, "mock");
        let answer = chat(port).await.unwrap();
        assert!(answer.contains("mock back-end"), "{answer}");

        while let Some(chunk) = stream.chunk().await.unwrap() {
            body.push_str(&String::from_utf8_lossy(&chunk));
        }
        let text: String = body
            .lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .filter_map(|data| serde_json::from_str::<serde_json::Value>(data).ok())
            .filter_map(|chunk| {
                chunk["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        assert_eq!(text, "one two three four five six seven eight", "{body}");
        assert!(body.contains("data: [DONE]"), "{body}");
        assert_eq!(
            proxy.status().requests_served,
            2,
            "the request counter wraps the new engine's apps too"
        );
        proxy.stop().await;
    }

    #[tokio::test]
    async fn a_port_in_use_is_the_error_state_and_frees_up_on_retry() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let proxy = test_proxy(port);

        let status = proxy.start().await;
        assert_eq!(status.state, State::Error);
        let error = status.error.unwrap();
        assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
        assert!(error.to_lowercase().contains("in use"), "{error}");

        drop(taken);
        let status = proxy.start().await;
        assert_eq!(status.state, State::Running, "{status:?}");
        assert_eq!(status.error, None);
        chat(port).await.unwrap();
        proxy.stop().await;
    }

    #[tokio::test]
    async fn start_twice_keeps_one_listener_and_subscribers_see_each_change() {
        let port = free_port();
        let proxy = test_proxy(port);
        let mut changes = proxy.subscribe();
        proxy.start().await;
        assert!(changes.has_changed().unwrap());
        assert_eq!(changes.borrow_and_update().state, State::Running);
        assert_eq!(proxy.start().await.state, State::Running);
        chat(port).await.unwrap();
        proxy.stop().await;
        assert_eq!(changes.borrow_and_update().state, State::Stopped);
    }

    #[tokio::test]
    async fn an_invalid_config_keeps_the_error_state_through_toggles() {
        let port = free_port();
        let proxy = Proxy::blocked(
            test_config(port),
            Arc::new(EnvSecrets::from_map(HashMap::new())),
            "invalid configuration: proxy.port: bad".into(),
        );
        assert_eq!(proxy.status().state, State::Error);
        let status = proxy.start().await;
        assert_eq!(status.state, State::Error);
        assert_eq!(
            status.error.as_deref(),
            Some("invalid configuration: proxy.port: bad")
        );
        assert!(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
        );
        assert_eq!(proxy.stop().await.state, State::Error);
    }

    #[test]
    fn base_urls_for_each_client() {
        let mut status = test_proxy(8000).status();
        status.address = "0.0.0.0:8000".parse().unwrap();
        status.anthropic_address = Some("0.0.0.0:8001".parse().unwrap());
        assert_eq!(status.openai_base_url(), "http://127.0.0.1:8000/v1");
        assert_eq!(status.anthropic_base_url(), "http://127.0.0.1:8001");
        assert_eq!(status.gemini_base_url(), "http://127.0.0.1:8000");
        status.anthropic_address = None;
        assert_eq!(
            status.anthropic_base_url(),
            "http://127.0.0.1:8000/anthropic"
        );
    }
}
