//! Empty-response recovery over real HTTP: an answer with no text and no tool call is asked
//! for once more with a steering message, streamed or not, in every client protocol.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::fake_openai::{FakeOpenAi, Mode};
use support::{client, config, fake_backend_config, sse_data, start, streamed_text};

const KEY: &[(&str, &str)] = &[("FAKE_API_KEY", "sk-fake")];

async fn chat(llmux: &support::Llmux, stream: bool) -> reqwest::Response {
    client()
        .post(llmux.url("/v1/chat/completions"))
        .json(&json!({"model": "m", "stream": stream,
            "messages": [{"role": "user", "content": "Fix the test."}]}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_empty_answer_is_asked_for_once_more_with_a_steering_message() {
    for stream in [false, true] {
        let fake = FakeOpenAi::start(Mode::Script(vec![Mode::Answer("")])).await;
        let llmux = start(config(&fake_backend_config(&fake.base_url, ""), &[]), KEY).await;
        let response = chat(&llmux, stream).await;
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        let answer = if stream {
            streamed_text(&sse_data(&text))
        } else {
            let body: Value = serde_json::from_str(&text).unwrap();
            body["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(answer, "Hello from fake.", "stream={stream}");
        assert_eq!(fake.hit_count(), 2);
        let retry = fake.last_request().body;
        let messages = retry["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 2);
        assert!(
            messages[1]["content"]
                .as_str()
                .unwrap()
                .contains("Your previous response was empty"),
            "{retry}"
        );
    }
}

#[tokio::test]
async fn an_answer_that_stays_empty_is_passed_on_after_one_retry() {
    let fake = FakeOpenAi::start(Mode::Answer("")).await;
    let llmux = start(config(&fake_backend_config(&fake.base_url, ""), &[]), KEY).await;
    let response = chat(&llmux, false).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(fake.hit_count(), 2, "asked once more, not again and again");
}

#[tokio::test]
async fn answers_with_text_or_tool_calls_are_never_asked_again_and_recovery_can_be_off() {
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let llmux = start(config(&fake_backend_config(&fake.base_url, ""), &[]), KEY).await;
    assert_eq!(chat(&llmux, true).await.status(), 200);
    let tools = client()
        .post(llmux.url("/v1/chat/completions"))
        .json(
            &json!({"model": "m", "messages": [{"role": "user", "content": "Weather?"}],
            "tools": [{"type": "function", "function": {"name": "get_weather",
                "parameters": {"type": "object"}}}]}),
        )
        .send()
        .await
        .unwrap();
    let body: Value = tools.json().await.unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(fake.hit_count(), 2, "one call each");

    let empty = FakeOpenAi::start(Mode::Answer("")).await;
    let off = fake_backend_config(
        &empty.base_url,
        "[empty_response_recovery]\nenabled = false",
    );
    let llmux = start(config(&off, &[]), KEY).await;
    assert_eq!(chat(&llmux, false).await.status(), 200);
    assert_eq!(
        empty.hit_count(),
        1,
        "recovery off: the empty answer goes out as it is"
    );
}
