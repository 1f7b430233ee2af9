//! Fault suite against the real binary: providers that reset, stall, send garbage or leak
//! the key in a 5xx body, clients that walk away mid-stream, slowloris heads, ten thousand
//! idle connections and a flood past the connection cap. After each, llmux answers
//! `/health`, and its open file descriptors and async tasks (`/admin/api/stats`) come back
//! to where they were: nothing leaks. Every loop is bounded and targets loopback only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use serde_json::{Value, json};
use support::binary::{Llmux, free_port};
use support::fake_openai::{FakeOpenAi, Mode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY: &str = "sk-fault-suite-provider-key-0123456789";

/// A provider that answers 500 with the caller's key in the body, as some proxies do.
async fn leaky_provider() -> String {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(|headers: HeaderMap| async move {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(
                    json!({"error": {"message": format!("upstream rejected {auth}"),
                    "type": "server_error"}}),
                ),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn backend(id: &str, url: &str) -> String {
    format!(
        "[backends.{id}]\ntype = \"openai-compatible\"\nbase_url = \"{url}\"\n\
         api_key_env = \"FAULT_KEY\"\nidle_timeout_seconds = 1\n"
    )
}

struct Suite {
    llmux: Llmux,
    addr: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

fn start(proxy: &str, backends: &str) -> Suite {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("llmux.toml");
    let port = free_port();
    std::fs::write(
        &config,
        format!(
            "default_backend = \"mock\"\n[proxy]\nport = {port}\nanthropic_port = 0\n{proxy}\n{backends}"
        ),
    )
    .unwrap();
    let llmux = Llmux::start(&config, &[("FAULT_KEY", KEY)]);
    let addr = llmux.next_address();
    Suite {
        llmux,
        addr,
        client: reqwest::Client::new(),
        _dir: dir,
    }
}

/// What leaks would grow.
#[derive(Debug, Clone, Copy)]
struct Held {
    fds: u64,
    tasks: u64,
}

impl Suite {
    async fn held(&self) -> Held {
        let stats: Value = self
            .client
            .get(format!("http://{}/admin/api/stats", self.addr))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let process = &stats["process"];
        Held {
            fds: process["open_fds"].as_u64().expect("open_fds"),
            tasks: process["tokio_tasks"].as_u64().expect("tokio_tasks"),
        }
    }

    /// Waits (bounded) until llmux answers /health and holds no more than `baseline`.
    async fn settles_to(&self, baseline: Held, after: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let health = self
                .client
                .get(format!("http://{}/health", self.addr))
                .send()
                .await
                .map(|r| r.status().as_u16());
            let held = self.held().await;
            if matches!(health, Ok(200)) && held.fds <= baseline.fds && held.tasks <= baseline.tasks
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "after {after}: holds {held:?}, baseline {baseline:?}, health {health:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn stream(&self, model: &str) -> String {
        let response = self
            .client
            .post(format!("http://{}/v1/chat/completions", self.addr))
            .json(&json!({"model": model, "stream": true,
                "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        response.text().await.unwrap_or_default()
    }
}

#[tokio::test]
async fn provider_faults_and_walking_clients_leave_nothing_behind() {
    let reset = FakeOpenAi::start(Mode::DropMidStream).await;
    let stall = FakeOpenAi::start(Mode::StallMidStream).await;
    let garbage = FakeOpenAi::start(Mode::Garbage).await;
    let endless = FakeOpenAi::start(Mode::Endless).await;
    let leaky = leaky_provider().await;
    let backends = [
        backend("reset", &reset.base_url),
        backend("stall", &stall.base_url),
        backend("garbage", &garbage.base_url),
        backend("endless", &endless.base_url),
        backend("leaky", &leaky),
    ]
    .concat();
    // The faults must reach the client every round: no breaker may stand in for them.
    let suite = start(
        "",
        &format!("[circuit_breaker]\nenabled = false\n{backends}"),
    );

    let faults = |round: usize| {
        let suite = &suite;
        let endless = &endless;
        async move {
            let broken = suite.stream("reset:gpt").await;
            assert!(
                broken.contains("\"error\""),
                "reset, round {round}: {broken}"
            );
            assert!(
                !broken.contains("[DONE]"),
                "a cut-off answer looked complete"
            );

            let stalled = suite.stream("stall:gpt").await;
            assert!(stalled.contains("\"error\""), "stall: {stalled}");
            assert!(!stalled.contains("[DONE]"));

            let junk = suite.stream("garbage:gpt").await;
            assert!(junk.contains("\"error\""), "garbage: {junk}");

            let leaked = suite
                .client
                .post(format!("http://{}/v1/chat/completions", suite.addr))
                .json(&json!({"model": "leaky:gpt",
                    "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .unwrap();
            assert_eq!(leaked.status().as_u16(), 500);
            let text = leaked.text().await.unwrap();
            assert!(!text.contains(KEY), "the key reached the client: {text}");

            // A client that reads two chunks and walks away: the upstream call is cancelled.
            endless
                .disconnected
                .store(false, std::sync::atomic::Ordering::SeqCst);
            let mut response = suite
                .client
                .post(format!("http://{}/v1/chat/completions", suite.addr))
                .json(&json!({"model": "endless:gpt", "stream": true,
                    "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .unwrap();
            for _ in 0..2 {
                response.chunk().await.unwrap();
            }
            drop(response);
            let deadline = Instant::now() + Duration::from_secs(10);
            while !endless
                .disconnected
                .load(std::sync::atomic::Ordering::SeqCst)
            {
                assert!(
                    Instant::now() < deadline,
                    "the provider still streams to a client that left"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // The first round opens what llmux keeps open by design (pooled provider connections).
    faults(0).await;
    let baseline = suite.held().await;
    for round in 1..=5 {
        faults(round).await;
    }
    suite
        .settles_to(baseline, "five rounds of provider faults")
        .await;
    assert!(!suite.llmux.log().contains(KEY), "the key reached the log");
    assert!(!suite.llmux.log().contains("panicked"));
}

/// Opens `n` connections to `addr`, in small batches with a pause between them: a full
/// listen backlog makes the kernel answer SYNs with cookies, leaving the client a
/// connection the server never saw (and so can never close).
async fn connect_many(addr: &str, n: usize) -> Vec<TcpStream> {
    let mut all = Vec::with_capacity(n);
    for batch in (0..n).collect::<Vec<_>>().chunks(200) {
        let opened =
            futures::future::join_all(batch.iter().map(|_| TcpStream::connect(addr))).await;
        all.extend(opened.into_iter().map(Result::unwrap));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    all
}

/// Waits until every connection was closed by llmux (a read sees the end).
async fn all_closed(connections: Vec<TcpStream>, within: Duration) -> bool {
    let reads = connections.into_iter().map(|mut tcp| async move {
        let mut buf = [0u8; 256];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    tokio::time::timeout(within, futures::future::join_all(reads))
        .await
        .is_ok()
}

#[tokio::test]
async fn slowloris_heads_and_ten_thousand_idle_connections_are_shed() {
    // The test holds its side of every connection too.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    // Above the default cap on a machine whose hard open-file limit is 20,000; the cap
    // itself is another test's business.
    let suite = start(
        "header_read_timeout_seconds = 1.0\nkeep_alive_timeout_seconds = 2.0\n\
         max_connections = 12000",
        "",
    );
    let baseline = suite.held().await;

    let mut slow = connect_many(&suite.addr, 200).await;
    for tcp in &mut slow {
        tcp.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-")
            .await
            .unwrap();
    }
    assert!(
        all_closed(slow, Duration::from_secs(15)).await,
        "slowloris connections were kept open"
    );
    suite.settles_to(baseline, "200 slowloris heads").await;

    let started = Instant::now();
    let idle = connect_many(&suite.addr, 10_000).await;
    println!(
        "# 10,000 idle connections opened in {} ms",
        started.elapsed().as_millis()
    );
    let health = suite
        .client
        .get(format!("http://{}/health", suite.addr))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let closing = Instant::now();
    assert!(
        all_closed(idle, Duration::from_secs(30)).await,
        "idle connections were kept open"
    );
    println!(
        "# all closed {} ms after the last was opened",
        closing.elapsed().as_millis()
    );
    suite.settles_to(baseline, "10,000 idle connections").await;
}

#[tokio::test]
async fn a_flood_past_the_connection_cap_waits_and_is_served() {
    let suite = start("max_connections = 16", "");
    let baseline = suite.held().await;
    let addr = Arc::new(suite.addr.clone());
    let requests = (0..300).map(|_| {
        let addr = addr.clone();
        async move {
            let mut tcp = TcpStream::connect(addr.as_str()).await.unwrap();
            tcp.write_all(b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut answer = String::new();
            tcp.read_to_string(&mut answer).await.unwrap();
            answer.starts_with("HTTP/1.1 200")
        }
    });
    let answered =
        tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(requests))
            .await
            .expect("the flood was not served");
    assert!(
        answered.iter().all(|ok| *ok),
        "some requests of the flood failed"
    );
    assert!(
        suite.llmux.log().contains("connection limit reached"),
        "{}",
        suite.llmux.log()
    );
    suite
        .settles_to(baseline, "a flood of 300 connections")
        .await;
}
