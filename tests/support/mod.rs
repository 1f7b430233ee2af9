//! Test support: a fake OpenAI-compatible provider and an llmux instance, both on
//! loopback ports picked by the OS.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod binary;
pub mod fake_anthropic;
pub mod fake_gemini;
pub mod fake_logins;
pub mod fake_openai;
pub mod nginx;
pub mod python;
pub mod redis_server;

use std::collections::HashMap;
use std::net::SocketAddr;

use llmux::config::ConfigLoader;
use llmux::credentials::EnvSecrets;
use llmux::{Config, Engine};

/// A running llmux, stopped when dropped.
pub struct Llmux {
    pub addr: SocketAddr,
    /// The dedicated Anthropic port.
    pub anthropic_addr: SocketAddr,
    pub engine: Engine,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Llmux {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A URL on the dedicated Anthropic port.
    pub fn anthropic_url(&self, path: &str) -> String {
        format!("http://{}{}", self.anthropic_addr, path)
    }

    /// Asks the server to stop, as SIGTERM would.
    pub fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for Llmux {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Loads a config from TOML text and an environment map (the process environment is
/// never read, so tests can run in parallel).
pub fn config(toml_text: &str, env: &[(&str, &str)]) -> Config {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("llmux.toml");
    std::fs::write(&path, toml_text).unwrap();
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ConfigLoader::new()
        .file(&path, true)
        .env(move |name| env.get(name).cloned())
        .load()
        .unwrap_or_else(|e| panic!("test config is invalid:\n{e}"))
        .config
}

/// A config file of `toml_text` loaded with no environment.
fn load_without_env(toml_text: &str) -> Result<llmux::config::Loaded, llmux::config::ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("llmux.toml");
    std::fs::write(&path, toml_text).unwrap();
    ConfigLoader::new().file(&path, true).env(|_| None).load()
}

/// The loaded config of a file of `toml_text` (no environment), for `print()` and friends.
#[allow(dead_code)]
pub fn config_loaded(toml_text: &str) -> llmux::config::Loaded {
    load_without_env(toml_text).unwrap_or_else(|e| panic!("test config is invalid:\n{e}"))
}

/// The problems llmux reports at start for a config file of `toml_text` (the process
/// environment is never read). Panics if the config is valid.
pub fn config_error(toml_text: &str) -> String {
    load_without_env(toml_text).unwrap_err().to_string()
}

/// Serves `app` on a loopback port: its address, and the count of TCP connections it
/// accepted (for tests of connection reuse).
pub async fn serve_counting_connections(
    app: axum::Router,
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = std::sync::Arc::new(AtomicUsize::new(0));
    let accepted = connections.clone();
    let listener = axum::serve::ListenerExt::tap_io(listener, move |_| {
        accepted.fetch_add(1, Ordering::SeqCst);
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, connections)
}

/// A certificate for `127.0.0.1`, signed by itself: its PEM text, and the rustls settings
/// of a server that presents it.
pub fn self_signed_tls() -> (String, std::sync::Arc<rustls::ServerConfig>) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
    (certified.cert.pem(), std::sync::Arc::new(config))
}

/// [`serve_counting_connections`] over TLS (HTTP/1.1) with `tls`.
pub async fn serve_tls_counting_connections(
    app: axum::Router,
    tls: std::sync::Arc<rustls::ServerConfig>,
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = std::sync::Arc::new(AtomicUsize::new(0));
    let accepted = connections.clone();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        tower::ServiceExt::oneshot(app.clone(), request.map(axum::body::Body::new))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, connections)
}

/// Starts llmux with `config`, provider keys taken from `secrets`.
pub async fn start(config: Config, secrets: &[(&str, &str)]) -> Llmux {
    let secrets = EnvSecrets::from_map(
        secrets
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    let engine = Engine::new(config.clone(), &secrets).unwrap();
    let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let listeners =
        llmux::server::Listeners::bind_at(&engine, loopback(0), Some(loopback(0))).unwrap();
    let (addr, anthropic_addr) = (listeners.main, listeners.anthropic.unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(listeners.serve(
        config.connections.clone(),
        async move {
            let _ = stopped.await;
        },
        config.shutdown_timeout,
    ));
    Llmux {
        addr,
        anthropic_addr,
        engine,
        stop: Some(stop),
        task,
    }
}

/// A TOML config with one openai-compatible back-end `fake` at `base_url`, the default.
pub fn fake_backend_config(base_url: &str, extra: &str) -> String {
    format!(
        r#"default_backend = "fake"
[backends.fake]
type = "openai-compatible"
base_url = "{base_url}"
api_key_env = "FAKE_API_KEY"
{extra}
"#
    )
}

/// A config whose default back-end `claude` is the fake Anthropic at `base_url`, its key
/// in `CLAUDE_KEY`, then `extra`.
pub fn fake_anthropic_config(base_url: &str, extra: &str) -> String {
    format!(
        "default_backend = \"claude\"\n[backends.claude]\ntype = \"anthropic-compatible\"\n\
         base_url = \"{base_url}\"\napi_key_env = \"CLAUDE_KEY\"\n{extra}"
    )
}

/// The `data:` payloads of an SSE body, in order.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|frame| {
            frame
                .lines()
                .find_map(|line| line.strip_prefix("data: ").map(str::to_owned))
        })
        .collect()
}

/// Joins the `delta.content` of chat chunks.
pub fn streamed_text(frames: &[String]) -> String {
    frames
        .iter()
        .filter(|f| *f != "[DONE]")
        .filter_map(|f| serde_json::from_str::<serde_json::Value>(f).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

/// GETs `path` from llmux with the proxy key: the status and the JSON body.
pub async fn get_json(llmux: &Llmux, path: &str, key: &str) -> (u16, serde_json::Value) {
    let response = client()
        .get(llmux.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// The text of a chat completion's body, streamed (joined deltas) or not (the message's
/// content; empty when it has none).
pub fn answer_text(body: &str, stream: bool) -> String {
    if stream {
        return streamed_text(&sse_data(body));
    }
    let value: serde_json::Value = serde_json::from_str(body).unwrap();
    value["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// The text of an Anthropic Messages answer's body, streamed (joined text deltas) or not.
pub fn anthropic_text(body: &str, stream: bool) -> String {
    if !stream {
        let value: serde_json::Value = serde_json::from_str(body).unwrap();
        return value["content"][0]["text"]
            .as_str()
            .unwrap_or("")
            .to_owned();
    }
    sse_data(body)
        .iter()
        .filter_map(|f| serde_json::from_str::<serde_json::Value>(f).ok())
        .filter_map(|v| v["delta"]["text"].as_str().map(str::to_owned))
        .collect()
}

/// POSTs an Anthropic Messages `body` to llmux's `/anthropic/v1/messages`: the status and
/// the body's text.
pub async fn anthropic_messages(llmux: &Llmux, body: serde_json::Value) -> (u16, String) {
    let response = client()
        .post(llmux.url("/anthropic/v1/messages"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// An OpenAI chat `tools` list of one function, `name`, taking a shell `command`.
pub fn function_tool(name: &str) -> serde_json::Value {
    serde_json::json!([{"type": "function", "function": {"name": name,
        "parameters": {"type": "object", "properties": {"command": {"type": "string"}}}}}])
}

/// A chat request in `session` saying `text` and offering `tools`: the answer's body (the
/// status must be 200).
pub async fn chat_with_tools(
    llmux: &Llmux,
    session: &str,
    tools: serde_json::Value,
    text: &str,
    stream: bool,
) -> String {
    let response = client()
        .post(llmux.url("/v1/chat/completions"))
        .header("x-session-id", session)
        .json(
            &serde_json::json!({"model": "m", "stream": stream, "tools": tools,
            "messages": [{"role": "user", "content": text}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// A Gemini `generateContent` request (not streamed) saying `text` and offering one function
/// tool named `tool`.
pub async fn gemini_with_tool(llmux: &Llmux, tool: &str, text: &str) -> reqwest::Response {
    client()
        .post(llmux.url("/v1beta/models/m:generateContent"))
        .json(&serde_json::json!({
            "contents": [{"role": "user", "parts": [{"text": text}]}],
            "tools": [{"functionDeclarations": [{"name": tool,
                "parameters": {"type": "object"}}]}]}))
        .send()
        .await
        .unwrap()
}

/// The capture store's row for an answer (read whole first, then the store flushed), fetched
/// through the admin API with the proxy key.
pub async fn captured_row(
    llmux: &Llmux,
    response: reqwest::Response,
    key: &str,
) -> serde_json::Value {
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    response.text().await.unwrap();
    llmux
        .engine
        .store()
        .unwrap()
        .flush(std::time::Duration::from_secs(5));
    let (status, row) = get_json(llmux, &format!("/admin/api/requests/{id}"), key).await;
    assert_eq!(status, 200, "{row}");
    row
}

/// The `x-llmux-attempts` header of an answer (empty when absent).
pub fn attempts_header(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-llmux-attempts")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}
