//! Loop detection over real HTTP: a provider that keeps repeating itself is cut off with a
//! protocol-correct end and cancelled; a session turns it on or off in chat.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;
use support::fake_openai::{FakeOpenAi, Mode};
use support::{client, config, fake_backend_config, sse_data, start, streamed_text};

const KEY: &[(&str, &str)] = &[("FAKE_API_KEY", "sk-fake")];

async fn stream(llmux: &support::Llmux, session: &str, text: &str) -> String {
    let response = client()
        .post(llmux.url("/v1/chat/completions"))
        .header("x-session-id", session)
        .json(&json!({"model": "m", "stream": true,
            "messages": [{"role": "user", "content": text}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

#[tokio::test]
async fn a_looping_answer_is_cut_with_a_note_and_a_normal_end_and_the_provider_cancelled() {
    let fake = FakeOpenAi::start(Mode::Looping).await;
    let toml = fake_backend_config(&fake.base_url, "[loop_detection]\nenabled = true");
    let llmux = start(config(&toml, &[]), KEY).await;
    let started = Instant::now();
    let body = stream(&llmux, "s1", "Check the config.").await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "cut early, not after 3,000 chunks"
    );
    let frames = sse_data(&body);
    let text = streamed_text(&frames);
    assert!(text.contains("llmux stopped this answer"), "{text}");
    assert!(text.len() < 3_000, "{} bytes streamed", text.len());
    assert!(body.contains("\"finish_reason\":\"stop\""), "{body}");
    assert_eq!(frames.last().map(String::as_str), Some("[DONE]"));
    let deadline = Instant::now() + Duration::from_secs(2);
    while !fake.disconnected.load(Ordering::SeqCst) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        fake.disconnected.load(Ordering::SeqCst),
        "the upstream call was cancelled"
    );
}

#[tokio::test]
async fn a_session_turns_it_on_in_chat_when_the_config_has_it_off() {
    let fake = FakeOpenAi::start(Mode::Looping).await;
    let llmux = start(config(&fake_backend_config(&fake.base_url, ""), &[]), KEY).await;
    let said = stream(&llmux, "s1", "!/loop-detection(on)").await;
    assert!(streamed_text(&sse_data(&said)).contains("loop detection on"));
    let body = stream(&llmux, "s1", "Check the config.").await;
    assert!(streamed_text(&sse_data(&body)).contains("llmux stopped this answer"));
}

#[tokio::test]
async fn an_answer_that_does_not_repeat_is_untouched() {
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let toml = fake_backend_config(&fake.base_url, "[loop_detection]\nenabled = true");
    let llmux = start(config(&toml, &[]), KEY).await;
    let body = stream(&llmux, "s1", "Hi.").await;
    assert_eq!(streamed_text(&sse_data(&body)), "Hello from fake.");
}

#[test]
fn non_positive_settings_are_refused_naming_the_key() {
    let err = support::config_error(&fake_backend_config(
        "http://127.0.0.1:9/v1",
        "[loop_detection]\nthreshold = 0",
    ));
    assert!(err.contains("loop_detection.threshold"), "{err}");
}

#[tokio::test]
async fn think_tags_from_a_model_without_a_reasoning_field_become_reasoning() {
    let fake = FakeOpenAi::start(Mode::Answer(
        "<think>The user says hi; answer briefly.</think>\n\nHello!",
    ))
    .await;
    let llmux = start(config(&fake_backend_config(&fake.base_url, ""), &[]), KEY).await;
    let response = client()
        .post(llmux.url("/v1/messages"))
        .json(&json!({"model": "m", "max_tokens": 100,
            "messages": [{"role": "user", "content": "Hi."}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["content"][0]["type"], "thinking", "{body}");
    assert_eq!(
        body["content"][0]["thinking"],
        "The user says hi; answer briefly."
    );
    assert_eq!(body["content"][1]["text"], "Hello!");
}
