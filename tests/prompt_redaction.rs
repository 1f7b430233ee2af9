//! Redaction of prompts over real HTTP: with `[redaction] prompts`, a provider key and a
//! secret-shaped string pasted into the chat or read into a tool result reach the provider
//! masked; without it, prompts go as they are.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use support::fake_openai::{FakeOpenAi, Mode};
use support::{client, config, fake_backend_config, start};

const PROVIDER_KEY: &str = "sk-fake-provider-key-0123456789";
const PASTED: &str = "sk-proj-ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

async fn send(llmux: &support::Llmux) {
    let response = client()
        .post(llmux.url("/v1/chat/completions"))
        .json(&json!({"model": "m", "messages": [
            {"role": "system", "content": format!("Deploy key: {PROVIDER_KEY}")},
            {"role": "user", "content": format!("Why does {PASTED} not work?")},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                "function": {"name": "Read", "arguments": "{\"path\":\".env\"}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": format!("OPENAI_API_KEY={PASTED}\nDEBUG=1")}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn keys_and_secret_shaped_text_are_masked_before_the_provider_sees_them() {
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let toml = fake_backend_config(&fake.base_url, "[redaction]\nprompts = true");
    let llmux = start(config(&toml, &[]), &[("FAKE_API_KEY", PROVIDER_KEY)]).await;
    send(&llmux).await;
    let sent = fake.last_request().body["messages"].to_string();
    assert!(!sent.contains(PROVIDER_KEY), "{sent}");
    assert!(!sent.contains(PASTED), "{sent}");
    assert!(sent.contains("Deploy key: ****"), "{sent}");
    assert!(sent.contains("Why does **** not work?"), "{sent}");
    assert!(sent.contains("OPENAI_API_KEY=****\\nDEBUG=1"), "{sent}");
}

#[tokio::test]
async fn without_it_prompts_go_as_they_are() {
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let llmux = start(
        config(&fake_backend_config(&fake.base_url, ""), &[]),
        &[("FAKE_API_KEY", PROVIDER_KEY)],
    )
    .await;
    send(&llmux).await;
    let sent = fake.last_request().body["messages"].to_string();
    assert!(sent.contains(PASTED));
}
