//! Dangerous command prevention over real HTTP: a provider asks to run a destructive shell
//! command; the client gets a message instead of the call, in its own protocol, streamed or
//! not. A safe command passes as the call it is.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::fake_openai::{FakeOpenAi, Mode};
use support::{client, config, fake_backend_config, sse_data, start};

const KEY: &[(&str, &str)] = &[("FAKE_API_KEY", "sk-fake")];
const RESET: &str = r#"{"command":"cd /repo && git reset --hard origin/main"}"#;
const STATUS: &str = r#"{"command":"git status"}"#;

fn bash_tool() -> Value {
    support::function_tool("Bash")
}

async fn chat(llmux: &support::Llmux, stream: bool) -> String {
    support::chat_with_tools(llmux, "s", bash_tool(), "Start over.", stream).await
}

#[tokio::test]
async fn a_destructive_command_reaches_the_client_as_a_message_not_a_call() {
    let fake = FakeOpenAi::start(Mode::CallWith(RESET)).await;
    let llmux = start(config(&fake_backend_config(&fake.base_url, ""), &[]), KEY).await;

    let body: Value = serde_json::from_str(&chat(&llmux, false).await).unwrap();
    let message = &body["choices"][0]["message"];
    assert!(
        message.get("tool_calls").is_none_or(Value::is_null),
        "{body}"
    );
    let text = message["content"].as_str().unwrap();
    assert!(text.contains("llmux stopped a tool call"), "{text}");
    assert!(text.contains("git reset --hard origin/main"), "{text}");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");

    let frames = sse_data(&chat(&llmux, true).await);
    let joined = frames.join("\n");
    assert!(
        !joined.contains("tool_calls\":[{"),
        "no call streamed: {joined}"
    );
    assert!(joined.contains("llmux stopped a tool call"), "{joined}");
    assert!(joined.contains("\"finish_reason\":\"stop\""), "{joined}");
    assert_eq!(frames.last().map(String::as_str), Some("[DONE]"));
}

#[tokio::test]
async fn an_anthropic_client_gets_a_text_block_and_end_turn() {
    let fake = FakeOpenAi::start(Mode::CallWith(RESET)).await;
    let llmux = start(config(&fake_backend_config(&fake.base_url, ""), &[]), KEY).await;
    let response = client()
        .post(llmux.url("/v1/messages"))
        .json(&json!({"model": "m", "max_tokens": 100, "stream": true,
            "tools": [{"name": "Bash", "input_schema": {"type": "object"}}],
            "messages": [{"role": "user", "content": "Start over."}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    assert!(!body.contains("\"tool_use\""), "{body}");
    assert!(body.contains("llmux stopped a tool call"), "{body}");
    assert!(body.contains("\"stop_reason\":\"end_turn\""), "{body}");
    assert!(body.contains("event: message_stop"), "{body}");
}

#[tokio::test]
async fn a_safe_command_passes_and_the_stage_can_be_off() {
    let fake = FakeOpenAi::start(Mode::CallWith(STATUS)).await;
    let llmux = start(config(&fake_backend_config(&fake.base_url, ""), &[]), KEY).await;
    let body: Value = serde_json::from_str(&chat(&llmux, false).await).unwrap();
    let call = &body["choices"][0]["message"]["tool_calls"][0]["function"];
    assert_eq!(call["name"], "Bash");
    assert_eq!(call["arguments"], STATUS);

    let reset = FakeOpenAi::start(Mode::CallWith(RESET)).await;
    let off = fake_backend_config(
        &reset.base_url,
        "[dangerous_command_prevention]\nenabled = false",
    );
    let llmux = start(config(&off, &[]), KEY).await;
    let body: Value = serde_json::from_str(&chat(&llmux, false).await).unwrap();
    assert_eq!(
        body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        RESET
    );
}

#[test]
fn a_broken_rules_file_is_refused_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, "[[rules]]\nname = \"x\"\n").unwrap();
    let err = support::config_error(&fake_backend_config(
        "http://127.0.0.1:9/v1",
        &format!(
            "[dangerous_command_prevention]\nrules_file = \"{}\"",
            rules.display()
        ),
    ));
    assert!(
        err.contains("dangerous_command_prevention.rules_file"),
        "{err}"
    );
}

#[tokio::test]
async fn responses_and_gemini_clients_get_the_message_too() {
    let fake = FakeOpenAi::start(Mode::CallWith(RESET)).await;
    let llmux = start(config(&fake_backend_config(&fake.base_url, ""), &[]), KEY).await;
    let responses = client()
        .post(llmux.url("/v1/responses"))
        .json(&json!({"model": "m", "input": "Start over.",
            "tools": [{"type": "function", "name": "Bash", "parameters": {"type": "object"}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(responses.status(), 200);
    let body = responses.text().await.unwrap();
    assert!(!body.contains("\"function_call\""), "{body}");
    assert!(body.contains("llmux stopped a tool call"), "{body}");

    let gemini = support::gemini_with_tool(&llmux, "Bash", "Start over.").await;
    assert_eq!(gemini.status(), 200);
    let body = gemini.text().await.unwrap();
    assert!(!body.contains("functionCall"), "{body}");
    assert!(body.contains("llmux stopped a tool call"), "{body}");
    assert!(body.contains("\"finishReason\":\"STOP\""), "{body}");
}

#[tokio::test]
async fn the_capture_store_records_what_the_stage_did() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeOpenAi::start(Mode::CallWith(RESET)).await;
    let toml = fake_backend_config(
        &fake.base_url,
        &format!(
            "[capture]\ndb = \"{}\"\nflush_interval = 0.02",
            dir.path().join("capture.sqlite").display()
        ),
    );
    let llmux = start(config(&toml, &[]), KEY).await;
    let response = client()
        .post(llmux.url("/v1/chat/completions"))
        .json(&json!({"model": "m", "tools": bash_tool(),
            "messages": [{"role": "user", "content": "Start over."}]}))
        .send()
        .await
        .unwrap();
    let row = support::captured_row(&llmux, response, "").await;
    assert_eq!(
        row["interventions"][0]["stage"], "dangerous-commands",
        "{row}"
    );
    assert!(
        row["interventions"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("git reset --hard origin/main")
    );
}
