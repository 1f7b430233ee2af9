//! Provider connections carry one request after another, streamed answers included: a
//! stream's body is read to its end after the protocol's terminator, so its connection can
//! be reused (dropped half-read, it would be closed, and every streamed answer would pay a
//! new connection, over HTTPS a TLS handshake too). Both ways llmux reaches a provider are
//! counted: plain HTTP on its own client, and through an HTTP proxy on reqwest's pool.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use support::fake_anthropic::{self, FakeAnthropic};
use support::fake_openai::{FakeOpenAi, Mode};
use support::{
    Llmux, anthropic_messages, client, config, fake_anthropic_config, fake_backend_config,
    sse_data, start,
};

/// Sends a chat request (`stream` or not) and reads the whole answer: its text.
async fn chat(llmux: &Llmux, stream: bool) -> String {
    let response = client()
        .post(llmux.url("/v1/chat/completions"))
        .json(&json!({"model": "m", "stream": stream,
            "messages": [{"role": "user", "content": "Hi."}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    if stream {
        assert_eq!(sse_data(&body).last().map(String::as_str), Some("[DONE]"));
    }
    support::answer_text(&body, stream)
}

/// Sends a streamed Responses request and reads the whole answer: its event names.
async fn responses_stream(llmux: &Llmux) -> Vec<String> {
    let response = client()
        .post(llmux.url("/v1/responses"))
        .json(&json!({"model": "m", "stream": true, "input": "Hi."}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    body.lines()
        .filter_map(|line| line.strip_prefix("event: ").map(str::to_owned))
        .collect()
}

/// Streamed and whole answers in turn, then the connections the provider accepted. The
/// pause between requests is an agent's between turns; it gives a connection read to its
/// end on another task (reqwest's) time to reach the pool.
async fn connections_after_turns(llmux: &Llmux, fake: &FakeOpenAi) -> usize {
    for stream in [true, true, false, true] {
        assert_eq!(chat(llmux, stream).await, "Hello from fake.");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events = responses_stream(llmux).await;
    assert_eq!(
        events.last().map(String::as_str),
        Some("response.completed")
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(chat(llmux, true).await, "Hello from fake.");
    assert_eq!(fake.hit_count(), 6);
    fake.connections.load(Ordering::SeqCst)
}

/// The ends of a provider's body: right behind the terminator (in the same read, most
/// often), and a moment after it (hyper alone then closes a connection whose body was
/// dropped at the terminator: it drains only what already arrived).
fn body_ends() -> [Mode; 2] {
    [Mode::Normal, Mode::EndAfterDone(Duration::from_millis(30))]
}

#[tokio::test]
async fn streamed_answers_leave_their_driven_http_connection_for_the_next_request() {
    for mode in body_ends() {
        let fake = FakeOpenAi::start(mode.clone()).await;
        let llmux = start(
            config(&fake_backend_config(&fake.base_url, ""), &[]),
            &[("FAKE_API_KEY", "k")],
        )
        .await;
        assert_eq!(connections_after_turns(&llmux, &fake).await, 1, "{mode:?}");
    }
}

#[tokio::test]
async fn https_answers_reach_a_provider_whose_ca_file_is_given_on_one_connection() {
    let (certificate, tls) = support::self_signed_tls();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, certificate).unwrap();
    for mode in body_ends() {
        let fake = FakeOpenAi::start_tls(mode.clone(), tls.clone()).await;
        assert!(fake.base_url.starts_with("https://127.0.0.1:"));
        let llmux = start(
            config(
                &fake_backend_config(
                    &fake.base_url,
                    &format!("ca_file = {:?}", ca_file.to_str().unwrap()),
                ),
                &[],
            ),
            &[("FAKE_API_KEY", "k")],
        )
        .await;
        assert_eq!(connections_after_turns(&llmux, &fake).await, 1, "{mode:?}");
    }
}

#[tokio::test]
async fn an_https_provider_whose_certificate_nobody_vouches_for_is_unreachable_saying_why() {
    let (_, tls) = support::self_signed_tls();
    let fake = FakeOpenAi::start_tls(Mode::Normal, tls).await;
    let llmux = start(
        config(&fake_backend_config(&fake.base_url, ""), &[]),
        &[("FAKE_API_KEY", "fake-key-0123456789")],
    )
    .await;
    for stream in [false, true] {
        let response = client()
            .post(llmux.url("/v1/chat/completions"))
            .json(&serde_json::json!({"model": "fake-small", "stream": stream,
                "messages": [{"role": "user", "content": "Hi"}]}))
            .send()
            .await
            .unwrap();
        // As any back-end that cannot be reached (the next leg of a failover route would be
        // tried), with the reason in the message.
        assert_eq!(response.status(), 503);
        let body: serde_json::Value = response.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("invalid peer certificate") && message.contains("UnknownIssuer"),
            "{message}"
        );
    }
    assert_eq!(fake.hit_count(), 0);
}

#[tokio::test]
async fn streamed_answers_leave_their_connection_in_reqwests_pool_too() {
    for mode in body_ends() {
        // The fake is also the HTTP proxy: reqwest sends it absolute-form requests for a
        // provider whose name does not resolve, on connections from its own pool.
        let fake = FakeOpenAi::start(mode.clone()).await;
        let proxy = fake.base_url.trim_end_matches("/v1");
        let llmux = start(
            config(
                &fake_backend_config(
                    "http://provider.invalid/v1",
                    &format!("proxy_url = \"{proxy}\""),
                ),
                &[],
            ),
            &[("FAKE_API_KEY", "k")],
        )
        .await;
        assert_eq!(connections_after_turns(&llmux, &fake).await, 1, "{mode:?}");
        assert!(
            fake.uris
                .lock()
                .unwrap()
                .iter()
                .all(|uri| uri.starts_with("http://provider.invalid/")),
            "every request went through the proxy"
        );
    }
}

#[tokio::test]
async fn anthropic_streams_end_at_message_stop_and_leave_their_connection() {
    let fake = FakeAnthropic::start(fake_anthropic::Mode::Normal).await;
    let llmux = start(
        config(&fake_anthropic_config(&fake.base_url, ""), &[]),
        &[("CLAUDE_KEY", "k")],
    )
    .await;
    for stream in [true, true, false, true] {
        let (status, body) = anthropic_messages(
            &llmux,
            json!({"model": "claude-fake-1", "max_tokens": 64, "stream": stream,
                "messages": [{"role": "user", "content": "Hi."}]}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        if stream {
            assert!(
                body.trim_end().ends_with(r#"{"type":"message_stop"}"#),
                "{body}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(fake.hit_count(), 4);
    assert_eq!(fake.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_provider_that_keeps_the_body_open_after_done_holds_neither_client_nor_connection() {
    let fake = FakeOpenAi::start(Mode::HoldAfterDone).await;
    let llmux = start(
        config(&fake_backend_config(&fake.base_url, ""), &[]),
        &[("FAKE_API_KEY", "k")],
    )
    .await;
    // The client's stream ends at `[DONE]`, not when the provider ends its body (never).
    let text = tokio::time::timeout(Duration::from_secs(10), chat(&llmux, true))
        .await
        .expect("the client's stream ended at [DONE]");
    assert_eq!(text, "Hello from fake.");
    // llmux waits a little for the body's end, then lets the connection go.
    let mut waited = Duration::ZERO;
    while !fake.disconnected.load(Ordering::SeqCst) {
        assert!(
            waited < Duration::from_secs(15),
            "llmux still holds the provider's connection"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    }
    // The next request gets a new connection and a whole answer.
    let text = tokio::time::timeout(Duration::from_secs(10), chat(&llmux, true))
        .await
        .expect("the second stream ended at [DONE]");
    assert_eq!(text, "Hello from fake.");
    assert_eq!(fake.connections.load(Ordering::SeqCst), 2);
}

#[test]
fn a_ca_file_that_holds_no_usable_certificate_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let garbled = "-----BEGIN CERTIFICATE-----\nnot base64 !!\n-----END CERTIFICATE-----\n";
    let not_a_certificate =
        "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
    let cases = [
        (
            dir.path().join("missing.pem").to_str().unwrap().to_owned(),
            "cannot be read",
        ),
        (write("empty.pem", "just text\n"), "no certificate in it"),
        (
            write("garbled.pem", garbled),
            "not a PEM file of certificates",
        ),
        (
            write("bytes.pem", not_a_certificate),
            "certificate 1 cannot be a root",
        ),
    ];
    for (path, why) in cases {
        let err = support::config_error(&fake_backend_config(
            "https://127.0.0.1:1/v1",
            &format!("ca_file = {path:?}"),
        ));
        assert!(
            err.contains("backends.fake.ca_file") && err.contains(why),
            "{err}"
        );
    }
}
