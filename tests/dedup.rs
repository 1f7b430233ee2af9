//! De-duplication over real HTTP: identical requests of one session within the window share
//! one provider call; other sessions, other requests and requests after the window do not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::fake_openai::{FakeOpenAi, Mode};
use support::{client, config, fake_backend_config, start};

async fn llmux_for(fake: &FakeOpenAi, window: &str) -> support::Llmux {
    let toml = format!(
        "dedup_window_seconds = {window}\n{}",
        fake_backend_config(&fake.base_url, "")
    );
    start(config(&toml, &[]), &[("FAKE_API_KEY", "sk-fake")]).await
}

fn send(
    llmux: &support::Llmux,
    session: &str,
    text: &str,
    stream: bool,
) -> impl std::future::Future<Output = String> + use<> {
    let request = client()
        .post(llmux.url("/v1/chat/completions"))
        .header("x-session-id", session)
        .json(&json!({"model": "m", "stream": stream,
            "messages": [{"role": "user", "content": text}]}))
        .send();
    async move {
        let response = request.await.unwrap();
        assert_eq!(response.status(), 200);
        let body = response.text().await.unwrap();
        support::answer_text(&body, stream)
    }
}

#[tokio::test]
async fn identical_requests_of_a_session_share_one_call_streamed_or_not() {
    // The provider takes 300 ms to answer: the duplicates arrive while it is in flight.
    let fake = FakeOpenAi::start(Mode::SlowFirstByte(Duration::from_millis(300))).await;
    let llmux = llmux_for(&fake, "6").await;
    let (a, b, c) = tokio::join!(
        send(&llmux, "s1", "Fix the test.", false),
        send(&llmux, "s1", "Fix the test.", true),
        send(&llmux, "s1", "Fix the test.", false),
    );
    assert_eq!([a, b, c], ["Hello from fake."; 3]);
    assert_eq!(fake.hit_count(), 1, "one call for three identical requests");

    // Within the window, after the answer: still shared.
    assert_eq!(
        send(&llmux, "s1", "Fix the test.", true).await,
        "Hello from fake."
    );
    assert_eq!(fake.hit_count(), 1);
    // Another session, or another request, calls the provider.
    send(&llmux, "s2", "Fix the test.", false).await;
    send(&llmux, "s1", "Now the docs.", false).await;
    assert_eq!(fake.hit_count(), 3);
}

#[tokio::test]
async fn after_the_window_or_with_it_off_every_request_calls_the_provider() {
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let llmux = llmux_for(&fake, "0.2").await;
    send(&llmux, "s1", "Fix the test.", false).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    send(&llmux, "s1", "Fix the test.", false).await;
    assert_eq!(fake.hit_count(), 2);

    let fake = FakeOpenAi::start(Mode::Normal).await;
    let llmux = llmux_for(&fake, "0").await;
    send(&llmux, "s1", "Fix the test.", false).await;
    send(&llmux, "s1", "Fix the test.", false).await;
    assert_eq!(fake.hit_count(), 2, "off by default");
}

#[tokio::test]
async fn duplicates_of_a_request_that_failed_fail_the_same_way_and_later_ones_try_again() {
    let fake = FakeOpenAi::start(Mode::Script(vec![Mode::Status(503)])).await;
    let llmux = llmux_for(&fake, "6").await;
    let failed = client()
        .post(llmux.url("/v1/chat/completions"))
        .header("x-session-id", "s1")
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "Hi."}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 503);
    // The failure is not kept: the next identical request asks the provider again.
    assert_eq!(send(&llmux, "s1", "Hi.", false).await, "Hello from fake.");
    assert_eq!(fake.hit_count(), 2);
}
