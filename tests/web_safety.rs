//! What a web page in the user's browser can do to llmux on 127.0.0.1, tried as such a
//! page would (raw HTTP, so the Host and Origin are exactly what a browser sends after DNS
//! rebinding or in a cross-site form post), and the connection hygiene that keeps a few
//! bad clients from taking llmux down.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use llmux::admin::settings::SettingsSource;
use llmux::config::ConfigLoader;
use serde_json::{Value, json};
use support::fake_openai::{FakeOpenAi, Mode};
use support::{config, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An answer read off the wire.
struct Answer {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    fn has_cors_headers(&self) -> bool {
        self.headers
            .keys()
            .any(|k| k.starts_with("access-control-"))
    }
}

/// Sends one request as raw HTTP/1.1 with exactly these headers (plus Content-Length and
/// Connection: close) and reads the whole answer.
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(body.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut raw))
        .await
        .expect("llmux did not answer")
        .unwrap();
    parse(&String::from_utf8_lossy(&raw))
}

fn parse(raw: &str) -> Answer {
    let (head, body) = raw.split_once("\r\n\r\n").expect("no end of head");
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body = if headers
        .get("transfer-encoding")
        .is_some_and(|v| v == "chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

fn chat_body(text: &str) -> String {
    json!({"model": "gpt-test", "messages": [{"role": "user", "content": text}]}).to_string()
}

/// llmux with a capture store and a settings file, over a fake OpenAI provider.
struct Served {
    llmux: support::Llmux,
    provider: FakeOpenAi,
    file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

async fn served(extra: &str, env: &[(&str, &str)]) -> Served {
    let provider = FakeOpenAi::start(Mode::Normal).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("llmux.toml");
    let store = dir.path().join("capture.sqlite");
    let text = support::fake_backend_config(
        &provider.base_url,
        &format!(
            "{extra}\n[capture]\ndb = {:?}\n",
            store.display().to_string()
        ),
    );
    std::fs::write(&file, &text).unwrap();
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let loader = ConfigLoader::new()
        .file(&file, true)
        .env(move |name| env.get(name).cloned());
    let config = loader.clone().load().unwrap().config;
    let llmux = start(config, &[("FAKE_API_KEY", "sk-fake-provider-key")]).await;
    llmux
        .engine
        .attach_settings(Arc::new(SettingsSource::new(loader)));
    Served {
        llmux,
        provider,
        file,
        _dir: dir,
    }
}

const SECRET_PROMPT: &str = "the launch code is 0000";

#[tokio::test]
async fn a_rebinding_page_cannot_read_prompts_settings_or_change_them() {
    let s = served("", &[]).await;
    let addr = s.llmux.addr;
    let own = format!("127.0.0.1:{}", addr.port());
    let evil = format!("evil.example:{}", addr.port());

    // The user's own traffic, through the front door.
    let answer = send(
        addr,
        "POST",
        "/v1/chat/completions",
        &[("host", &own), ("content-type", "application/json")],
        &chat_body(SECRET_PROMPT),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    s.llmux
        .engine
        .store()
        .unwrap()
        .flush(Duration::from_secs(5));
    let listed = send(addr, "GET", "/admin/api/requests", &[("host", &own)], "").await;
    assert_eq!(listed.status, 200);
    assert!(
        listed.body.contains(SECRET_PROMPT),
        "the store has the prompt"
    );

    // The page, rebound to 127.0.0.1, reads the captured prompts: refused.
    let stolen = send(addr, "GET", "/admin/api/requests", &[("host", &evil)], "").await;
    assert_eq!(stolen.status, 403);
    assert!(!stolen.body.contains(SECRET_PROMPT));
    let error = &stolen.json()["error"];
    assert_eq!(error["type"], "permission_error");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains(&format!("'{evil}'")), "{message}");
    assert!(message.contains("proxy.allowed_hosts"), "{message}");
    assert!(!stolen.has_cors_headers());

    // ... reads the configuration: refused.
    let settings = send(addr, "GET", "/admin/api/settings", &[("host", &evil)], "").await;
    assert_eq!(settings.status, 403);
    assert!(!settings.body.contains(&s.provider.base_url));

    // ... points the OpenAI back-end at itself: refused, and the file is untouched.
    let before = std::fs::read(&s.file).unwrap();
    let change = json!({"set": {"backends.fake.base_url": "http://evil.example/v1"}});
    let changed = send(
        addr,
        "PUT",
        "/admin/api/settings",
        &[
            ("host", &evil),
            ("content-type", "application/json"),
            ("origin", &format!("http://{evil}")),
        ],
        &change.to_string(),
    )
    .await;
    assert_eq!(changed.status, 403);
    assert_eq!(
        std::fs::read(&s.file).unwrap(),
        before,
        "the config file changed"
    );

    // A cross-site form post (text/plain needs no preflight) to spend the user's tokens.
    let hits = s.provider.hit_count();
    let posted = send(
        addr,
        "POST",
        "/v1/chat/completions",
        &[
            ("host", &own),
            ("origin", "http://evil.example"),
            ("content-type", "text/plain"),
        ],
        &chat_body("!/backend(fake) spend it"),
    )
    .await;
    assert_eq!(posted.status, 403, "{}", posted.body);
    assert!(
        posted.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("proxy.allowed_origins")
    );
    assert!(!posted.has_cors_headers());
    assert_eq!(s.provider.hit_count(), hits, "the provider was called");

    // The inspector's own page still works: same origin, and a page on localhost.
    for origin in [format!("http://{own}"), "http://localhost:5173".to_owned()] {
        let ok = send(
            addr,
            "GET",
            "/admin/api/stats",
            &[("host", &own), ("origin", &origin)],
            "",
        )
        .await;
        assert_eq!(ok.status, 200, "{origin}: {}", ok.body);
        assert!(!ok.has_cors_headers(), "no CORS header for {origin}");
    }
    let saved = send(
        addr,
        "PUT",
        "/admin/api/settings",
        &[
            ("host", &own),
            ("origin", &format!("http://{own}")),
            ("content-type", "application/json"),
        ],
        &json!({"set": {"command_prefix": "!!/"}}).to_string(),
    )
    .await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    assert!(std::fs::read_to_string(&s.file).unwrap().contains("!!/"));
}

#[tokio::test]
async fn every_port_and_route_refuses_a_foreign_host_in_its_clients_shape() {
    let s = served("", &[]).await;
    let port = s.llmux.addr.port();
    let evil = format!("attacker.example:{port}");
    let body = chat_body("hi");
    let cases = [
        (s.llmux.addr, "POST", "/v1/chat/completions", "openai"),
        (s.llmux.addr, "POST", "/v1/responses", "openai"),
        (s.llmux.addr, "GET", "/v1/models", "openai"),
        (s.llmux.addr, "POST", "/v1/messages", "anthropic"),
        (s.llmux.addr, "POST", "/anthropic/v1/messages", "anthropic"),
        (
            s.llmux.addr,
            "POST",
            "/v1beta/models/gemini-pro:generateContent",
            "gemini",
        ),
        (s.llmux.addr, "GET", "/ui/", "openai"),
        (s.llmux.addr, "GET", "/health", "openai"),
        (s.llmux.addr, "GET", "/no/such/route", "openai"),
        (s.llmux.anthropic_addr, "POST", "/v1/messages", "anthropic"),
        (s.llmux.anthropic_addr, "GET", "/v1/models", "anthropic"),
    ];
    for (addr, method, path, shape) in cases {
        let answer = send(
            addr,
            method,
            path,
            &[("host", &evil), ("content-type", "application/json")],
            &body,
        )
        .await;
        assert_eq!(answer.status, 403, "{method} {path}: {}", answer.body);
        let json = answer.json();
        match shape {
            "openai" => assert_eq!(json["error"]["type"], "permission_error", "{path}"),
            "anthropic" => {
                assert_eq!(json["type"], "error", "{path}");
                assert_eq!(json["error"]["type"], "permission_error", "{path}");
            }
            _ => {
                assert_eq!(json["error"]["code"], 403, "{path}");
                assert_eq!(json["error"]["status"], "PERMISSION_DENIED", "{path}");
            }
        }
    }
    assert_eq!(s.provider.hit_count(), 0);

    // Loopback names and IP literals stay open, on both ports.
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let answer = send(s.llmux.addr, "GET", "/health", &[("host", &host)], "").await;
        assert_eq!(answer.status, 200, "{host}");
    }
    let anthropic = format!("[::1]:{}", s.llmux.anthropic_addr.port());
    let answer = send(
        s.llmux.anthropic_addr,
        "GET",
        "/health",
        &[("host", &anthropic)],
        "",
    )
    .await;
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn a_listed_host_is_answered_and_a_listed_origin_gets_cors() {
    let s = served(
        "[proxy]\nallowed_hosts = [\"llmux.test\"]",
        &[("ALLOWED_ORIGINS", "http://chat.example.com:3000")],
    )
    .await;
    let addr = s.llmux.addr;
    let answer = send(
        addr,
        "POST",
        "/v1/chat/completions",
        &[
            ("host", "LLMUX.test:8000"),
            ("content-type", "application/json"),
        ],
        &chat_body("hi"),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);

    // The browser's preflight for a JSON post with a key.
    let origin = "http://chat.example.com:3000";
    let preflight = send(
        addr,
        "OPTIONS",
        "/v1/chat/completions",
        &[
            ("host", "127.0.0.1"),
            ("origin", origin),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization, content-type",
            ),
        ],
        "",
    )
    .await;
    assert!(preflight.status < 300, "{}", preflight.status);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some(origin)
    );
    let allowed_headers = preflight
        .header("access-control-allow-headers")
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        allowed_headers.contains("authorization"),
        "{allowed_headers}"
    );
    assert!(
        preflight
            .header("access-control-allow-methods")
            .unwrap()
            .contains("POST")
    );
    assert_eq!(
        s.provider.hit_count(),
        1,
        "a preflight reached the provider"
    );

    let posted = send(
        addr,
        "POST",
        "/v1/chat/completions",
        &[
            ("host", "127.0.0.1"),
            ("origin", origin),
            ("content-type", "application/json"),
        ],
        &chat_body("from the web app"),
    )
    .await;
    assert_eq!(posted.status, 200, "{}", posted.body);
    assert_eq!(posted.header("access-control-allow-origin"), Some(origin));
    let exposed = posted.header("access-control-expose-headers").unwrap();
    assert!(exposed.contains("x-request-id"), "{exposed}");

    // Anyone else: a preflight from another origin is refused without a CORS header, and
    // a page on localhost passes the check but gets no CORS header either.
    let other = send(
        addr,
        "OPTIONS",
        "/v1/chat/completions",
        &[
            ("host", "127.0.0.1"),
            ("origin", "http://chat.example.com:3001"),
            ("access-control-request-method", "POST"),
        ],
        "",
    )
    .await;
    assert_eq!(other.status, 403);
    assert!(!other.has_cors_headers());
    let local = send(
        addr,
        "OPTIONS",
        "/v1/chat/completions",
        &[
            ("host", "127.0.0.1"),
            ("origin", "http://localhost:3000"),
            ("access-control-request-method", "POST"),
        ],
        "",
    )
    .await;
    assert!(!local.has_cors_headers(), "{:?}", local.headers);
}

#[tokio::test]
async fn with_the_host_check_off_the_admin_api_takes_only_the_key() {
    // Without a key, llmux refuses to start this way.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("llmux.toml");
    std::fs::write(&file, "[proxy]\nallowed_hosts = [\"*\"]\n").unwrap();
    let err = ConfigLoader::new()
        .file(&file, true)
        .env(|_| None)
        .load()
        .unwrap_err()
        .to_string();
    assert!(err.contains("proxy.allowed_hosts"), "{err}");
    assert!(err.contains("LLM_INTERACTIVE_PROXY_API_KEY"), "{err}");

    let s = served(
        "[proxy]\nallowed_hosts = [\"*\"]\n[auth]\ntrusted_ips = [\"127.0.0.1\"]",
        &[("LLM_INTERACTIVE_PROXY_API_KEY", "proxy-key-1")],
    )
    .await;
    let addr = s.llmux.addr;
    let host = [("host", "anything.example")];
    // The trusted network still skips the key for the proxy routes ...
    let models = send(addr, "GET", "/v1/models", &host, "").await;
    assert_eq!(models.status, 200, "{}", models.body);
    // ... not for captured prompts and settings.
    for path in ["/admin/api/requests", "/admin/api/settings"] {
        let refused = send(addr, "GET", path, &host, "").await;
        assert_eq!(refused.status, 401, "{path}: {}", refused.body);
        let allowed = send(
            addr,
            "GET",
            path,
            &[
                ("host", "anything.example"),
                ("authorization", "Bearer proxy-key-1"),
            ],
            "",
        )
        .await;
        assert_eq!(allowed.status, 200, "{path}: {}", allowed.body);
    }
}

#[test]
fn bad_allowed_hosts_and_origins_are_refused_naming_the_setting() {
    let problems = |toml: &str| {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("llmux.toml");
        std::fs::write(&file, toml).unwrap();
        ConfigLoader::new()
            .file(&file, true)
            .env(|_| None)
            .load()
            .unwrap_err()
            .to_string()
    };
    let err = problems("[proxy]\nallowed_hosts = [\"http://llmux.test:8000\"]\n");
    assert!(err.contains("proxy.allowed_hosts"), "{err}");
    assert!(err.contains("not a URL"), "{err}");
    let err = problems("[proxy]\nallowed_origins = [\"*\"]\n");
    assert!(err.contains("proxy.allowed_origins"), "{err}");
    let err = problems("[proxy]\nallowed_origins = [\"localhost:3000\"]\n");
    assert!(err.contains("scheme://host"), "{err}");
    let err = problems("[proxy]\nheader_read_timeout_seconds = 0\n");
    assert!(err.contains("proxy.header_read_timeout_seconds"), "{err}");
}

/// llmux on the mock back-end with these `[proxy]` lines.
async fn mock_llmux(proxy: &str) -> support::Llmux {
    let toml = format!(
        "default_backend = \"mock\"\n[proxy]\n{proxy}\n[backends.mock]\ntype = \"mock\"\n\
         response_text = \"one two three four five six\"\nchunks = 6\nchunk_delay_ms = 250\n"
    );
    start(config(&toml, &[]), &[]).await
}

/// Whether the peer closed the connection within `within` (reads nothing but EOF).
async fn closed_within(tcp: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, tcp.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn a_half_sent_head_and_an_idle_connection_are_closed_but_a_slow_stream_is_not() {
    let llmux =
        mock_llmux("header_read_timeout_seconds = 0.5\nkeep_alive_timeout_seconds = 1.0").await;
    let addr = llmux.addr;

    // Slowloris: half a head, then nothing.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\nx-a: ")
        .await
        .unwrap();
    let started = Instant::now();
    assert!(closed_within(&mut slow, Duration::from_secs(5)).await);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(400), "closed after {took:?}");

    // Connected and silent: the header timeout too.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(5)).await);

    // A kept-alive connection: open past the header timeout, closed after the keep-alive one.
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = kept.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(!closed_within(&mut kept, Duration::from_millis(700)).await);
    assert!(closed_within(&mut kept, Duration::from_secs(5)).await);

    // A stream that takes longer than both timeouts runs to its end.
    let body = json!({"model": "mock-model", "stream": true,
        "messages": [{"role": "user", "content": "count"}]})
    .to_string();
    let answer = send(
        addr,
        "POST",
        "/v1/chat/completions",
        &[("host", "127.0.0.1"), ("content-type", "application/json")],
        &body,
    )
    .await;
    assert_eq!(answer.status, 200);
    let text = support::streamed_text(&support::sse_data(&answer.body));
    assert_eq!(text, "one two three four five six");
    assert!(answer.body.contains("[DONE]"));

    // llmux still answers, and the closed connections are gone.
    let health = send(addr, "GET", "/health", &[("host", "127.0.0.1")], "").await;
    assert_eq!(health.status, 200);
}

#[tokio::test]
async fn at_the_connection_cap_new_clients_wait_until_one_closes() {
    let llmux = mock_llmux("max_connections = 2\nheader_read_timeout_seconds = 30").await;
    let addr = llmux.addr;
    let first = TcpStream::connect(addr).await.unwrap();
    let _second = TcpStream::connect(addr).await.unwrap();
    // Give the accept loop a moment to take both.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let waiting =
        tokio::spawn(
            async move { send(addr, "GET", "/health", &[("host", "127.0.0.1")], "").await },
        );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!waiting.is_finished(), "a third connection was served");
    drop(first);
    let answer = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the waiting client was not served after a slot freed")
        .unwrap();
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn one_address_cannot_run_more_requests_than_its_share() {
    let llmux = mock_llmux("max_concurrent_requests_per_ip = 1").await;
    let addr = llmux.addr;
    let stream_body = json!({"model": "mock-model", "stream": true,
        "messages": [{"role": "user", "content": "count"}]})
    .to_string();
    let long = tokio::spawn({
        let body = stream_body.clone();
        async move {
            send(
                addr,
                "POST",
                "/v1/chat/completions",
                &[("host", "127.0.0.1"), ("content-type", "application/json")],
                &body,
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = send(
        addr,
        "POST",
        "/v1/messages",
        &[("host", "127.0.0.1"), ("content-type", "application/json")],
        &json!({"model": "mock-model", "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}]})
        .to_string(),
    )
    .await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.json()["error"]["type"], "rate_limit_error");
    assert!(refused.header("retry-after").is_some());
    assert!(refused.body.contains("max_concurrent_requests_per_ip"));

    assert_eq!(long.await.unwrap().status, 200);
    let after = send(addr, "GET", "/v1/models", &[("host", "127.0.0.1")], "").await;
    assert_eq!(after.status, 200, "the slot was not freed");
}
