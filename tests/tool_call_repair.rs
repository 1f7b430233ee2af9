//! Tool-call repair over real HTTP: a provider that writes its tool call as text, or sends
//! malformed arguments; each client protocol gets a proper tool call, streamed or not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::fake_openai::{FakeOpenAi, Mode};
use support::{client, config, fake_backend_config, sse_data, start};

const KEY: &[(&str, &str)] = &[("FAKE_API_KEY", "sk-fake")];
const WRITTEN: &str = "I'll look.\n<tool_call>\n{\"name\": \"Bash\", \"arguments\": {\"command\": \"ls -la\"}}\n</tool_call>";

fn bash_tool() -> Value {
    support::function_tool("Bash")
}

async fn llmux_behind(mode: Mode, extra: &str) -> (FakeOpenAi, support::Llmux) {
    let fake = FakeOpenAi::start(mode).await;
    let llmux = start(
        config(&fake_backend_config(&fake.base_url, extra), &[]),
        KEY,
    )
    .await;
    (fake, llmux)
}

async fn chat(llmux: &support::Llmux, tools: Value, stream: bool) -> String {
    support::chat_with_tools(llmux, "s", tools, "What is here?", stream).await
}

#[tokio::test]
async fn a_call_written_as_text_reaches_a_chat_client_as_a_tool_call() {
    let (_fake, llmux) = llmux_behind(Mode::Write(WRITTEN), "").await;

    let body: Value = serde_json::from_str(&chat(&llmux, bash_tool(), false).await).unwrap();
    let message = &body["choices"][0]["message"];
    assert_eq!(message["content"], "I'll look.\n", "{body}");
    let call = &message["tool_calls"][0];
    assert_eq!(call["function"]["name"], "Bash");
    let arguments: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"command": "ls -la"}));
    assert!(call["id"].as_str().unwrap().starts_with("call_"), "{call}");
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");

    let frames = sse_data(&chat(&llmux, bash_tool(), true).await);
    let joined = frames.join("\n");
    assert!(joined.contains("\"name\":\"Bash\""), "{joined}");
    assert!(!joined.contains("tool_call>"), "{joined}");
    assert!(
        joined.contains("\"finish_reason\":\"tool_calls\""),
        "{joined}"
    );
    assert_eq!(frames.last().map(String::as_str), Some("[DONE]"));
}

#[tokio::test]
async fn anthropic_gemini_and_responses_clients_get_their_own_call_shape() {
    let (_fake, llmux) = llmux_behind(Mode::Write(WRITTEN), "").await;

    let response = client()
        .post(llmux.url("/v1/messages"))
        .json(&json!({"model": "m", "max_tokens": 100, "stream": true,
            "tools": [{"name": "Bash", "input_schema": {"type": "object"}}],
            "messages": [{"role": "user", "content": "What is here?"}]}))
        .send()
        .await
        .unwrap();
    let body = response.text().await.unwrap();
    assert!(body.contains("\"type\":\"tool_use\""), "{body}");
    assert!(body.contains("\"name\":\"Bash\""), "{body}");
    assert!(body.contains("\"stop_reason\":\"tool_use\""), "{body}");

    let response = support::gemini_with_tool(&llmux, "Bash", "What is here?").await;
    let body: Value = response.json().await.unwrap();
    let parts = &body["candidates"][0]["content"]["parts"];
    assert_eq!(parts[1]["functionCall"]["name"], "Bash", "{body}");
    assert_eq!(parts[1]["functionCall"]["args"]["command"], "ls -la");

    let response = client()
        .post(llmux.url("/v1/responses"))
        .json(&json!({"model": "m", "input": "What is here?",
            "tools": [{"type": "function", "name": "Bash", "parameters": {"type": "object"}}]}))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    let call = body["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["type"] == "function_call")
        .unwrap_or_else(|| panic!("no function_call: {body}"));
    assert_eq!(call["name"], "Bash");
}

#[tokio::test]
async fn text_is_left_alone_without_tools_or_when_repair_is_off() {
    let (_fake, llmux) = llmux_behind(Mode::Write(WRITTEN), "").await;
    let body: Value = serde_json::from_str(&chat(&llmux, json!([]), false).await).unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], WRITTEN);

    let (_fake, llmux) =
        llmux_behind(Mode::Write(WRITTEN), "[tool_call_repair]\nenabled = false").await;
    let body: Value = serde_json::from_str(&chat(&llmux, bash_tool(), false).await).unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], WRITTEN);
}

#[tokio::test]
async fn malformed_arguments_are_repaired_streamed_or_not() {
    let (_fake, llmux) =
        llmux_behind(Mode::CallWith("{'command': 'ls -la', 'timeout': 5,}"), "").await;
    let body: Value = serde_json::from_str(&chat(&llmux, bash_tool(), false).await).unwrap();
    let arguments = body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
        .as_str()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(arguments).unwrap(),
        json!({"command": "ls -la", "timeout": 5})
    );

    let frames = sse_data(&chat(&llmux, bash_tool(), true).await);
    let streamed: String = frames
        .iter()
        .filter_map(|f| serde_json::from_str::<Value>(f).ok())
        .filter_map(|f| {
            f["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&streamed).unwrap(),
        json!({"command": "ls -la", "timeout": 5})
    );
}

#[tokio::test]
async fn a_destructive_call_written_as_text_is_still_stopped() {
    let (_fake, llmux) = llmux_behind(
        Mode::Write(
            "<tool_call>{\"name\": \"Bash\", \"arguments\": {\"command\": \"git reset --hard\"}}</tool_call>",
        ),
        "",
    )
    .await;
    let body = chat(&llmux, bash_tool(), false).await;
    assert!(!body.contains("\"tool_calls\""), "{body}");
    assert!(body.contains("llmux stopped a tool call"), "{body}");
}

#[test]
fn a_non_positive_buffer_is_refused_naming_the_key() {
    let err = support::config_error(&fake_backend_config(
        "http://127.0.0.1:9/v1",
        "[tool_call_repair]\nbuffer_bytes = 0",
    ));
    assert!(err.contains("tool_call_repair.buffer_bytes"), "{err}");
    assert!(err.contains("must be a positive number"), "{err}");
}
