//! The Z.AI back-ends on their own: `zai` (GLM over Z.AI's OpenAI-compatible API, its
//! `reasoning_content` read as reasoning) and `zai-coding-plan` (the coding plan's
//! Anthropic-compatible endpoint), both with the key in ZAI_API_KEY, each against a fake
//! of its wire protocol on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::fake_anthropic::{self, FakeAnthropic};
use support::fake_openai::{FakeOpenAi, Mode};
use support::{client, config, start};

const ZAI_KEY: &[(&str, &str)] = &[("ZAI_API_KEY", "zai-secret-key")];

#[tokio::test]
async fn zai_speaks_openai_chat_with_its_key_and_its_reasoning_becomes_thinking() {
    let fake = FakeOpenAi::start(Mode::Reasoning).await;
    let toml = format!(
        "default_backend = \"zai\"\n[backends.zai]\nbase_url = \"{}\"\n",
        fake.base_url
    );
    let llmux = start(config(&toml, &[]), ZAI_KEY).await;

    // An OpenAI client, the back-end named in the model.
    let response = client()
        .post(llmux.url("/v1/chat/completions"))
        .json(&json!({"model": "zai:glm-4.6",
            "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let sent = fake.last_request();
    assert_eq!(sent.body["model"], "glm-4.6");
    assert_eq!(sent.headers["authorization"], "Bearer zai-secret-key");

    // An Anthropic client (Claude Code on GLM): the streamed reasoning is a thinking block.
    let response = client()
        .post(llmux.url("/v1/messages"))
        .json(
            &json!({"model": "glm-4.6", "max_tokens": 100, "stream": true,
            "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    assert!(body.contains("\"type\":\"thinking\""), "{body}");
    assert!(body.contains("Thinking"), "{body}");
    assert!(body.contains("event: message_stop"), "{body}");
}

#[tokio::test]
async fn zai_coding_plan_speaks_anthropic_messages_with_its_key() {
    let fake = FakeAnthropic::start(fake_anthropic::Mode::Normal).await;
    let toml = format!(
        "default_backend = \"zai-coding-plan\"\n[backends.zai-coding-plan]\nbase_url = \"{}\"\n",
        fake.base_url
    );
    let llmux = start(config(&toml, &[]), ZAI_KEY).await;

    // An OpenAI client: translated to Anthropic Messages for the coding plan.
    let response = client()
        .post(llmux.url("/v1/chat/completions"))
        .json(&json!({"model": "glm-4.6", "max_tokens": 50,
            "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["choices"][0]["message"]["content"].as_str().is_some(),
        "{body}"
    );
    let sent = fake.last_request();
    assert_eq!(sent.body["model"], "glm-4.6");
    assert_eq!(sent.body["max_tokens"], 50);
    assert_eq!(sent.headers["x-api-key"], "zai-secret-key");
    assert!(sent.headers.get("anthropic-version").is_some());
}

#[tokio::test]
async fn without_the_key_both_answer_503_naming_the_variable() {
    let llmux = start(config("default_backend = \"mock\"\n", &[]), &[]).await;
    for model in ["zai:glm-4.6", "zai-coding-plan:glm-4.6"] {
        let response = client()
            .post(llmux.url("/v1/chat/completions"))
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 503, "{model}");
        let body = response.text().await.unwrap();
        assert!(body.contains("ZAI_API_KEY"), "{model}: {body}");
    }
}
