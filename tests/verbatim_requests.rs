//! The same-protocol request pass-through, end to end: an OpenAI chat request that nothing
//! on the way changed reaches an OpenAI chat back-end as the client's own bytes, with only
//! the routed model patched in (and what llmux always sets: no `"stream": false`, usage
//! asked for on a stream), and an Anthropic request an Anthropic back-end; a request a stage
//! changed, or one llmux's encoder would write differently, goes as llmux's encoding. The
//! same for a Responses request and a Responses back-end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use support::fake_anthropic::{self, FakeAnthropic};
use support::fake_openai::{FakeOpenAi, Mode};
use support::{client, config, fake_anthropic_config, fake_backend_config, start};

const KEY: &[(&str, &str)] = &[("FAKE_API_KEY", "sk-fake-upstream-secret")];

/// The model `cheap` goes to the fake back-end's `fake-small`.
const ALIAS: &str = r#"model_aliases = [{ pattern = "^cheap$", replacement = "fake:fake-small" }]"#;

/// Sends `body` (as bytes) to llmux in front of a fake OpenAI back-end; gives the status,
/// the answer and the bytes the fake got.
async fn forward(body: &str) -> (u16, String, bytes::Bytes) {
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let toml = format!("{ALIAS}\n{}", fake_backend_config(&fake.base_url, ""));
    let llmux = start(config(&toml, &[]), KEY).await;
    let (status, answer) = post(llmux.url("/v1/chat/completions"), &[], body).await;
    (status, answer, fake.last_request().raw)
}

/// Posts `body` as it is, with `headers`; gives the status and the answer.
async fn post(url: String, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut request = client()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// That `upstream` is the client's `body` with the model `cheap` routed to `routed` and its
/// `"stream": false` left out (llmux never sends it), byte for byte.
fn assert_clients_bytes(body: &str, upstream: &[u8], routed: &str) {
    let expected = body
        .replace(r#""model":"cheap""#, &format!(r#""model":"{routed}""#))
        .replace(r#""stream": false,"#, "");
    assert_eq!(std::str::from_utf8(upstream).unwrap(), expected);
}

#[tokio::test]
async fn an_unchanged_request_reaches_the_provider_as_the_clients_bytes() {
    // The client's own spacing and member order, fields llmux has no slot for, and
    // `"stream": false`, which llmux never sends.
    let body = r#"{ "messages" : [ {"role":"system","content":"Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Say hello, \u00e9."}]} ],
      "stream": false, "model":"cheap", "temperature": 1, "metadata": {"run": "a7"},
      "x_vendor_flag": [1, 2.50, "three"] }"#;
    let (status, answer, upstream) = forward(body).await;
    assert_eq!(status, 200, "{answer}");
    assert_clients_bytes(body, &upstream, "fake-small");
}

#[tokio::test]
async fn a_streamed_request_asks_for_usage_and_is_otherwise_the_clients_bytes() {
    let body =
        r#"{"model": "cheap", "stream": true, "messages": [{"role": "user", "content": "Hi"}]}"#;
    let (status, answer, upstream) = forward(body).await;
    assert_eq!(status, 200);
    assert!(answer.contains("data: [DONE]"), "{answer}");
    assert_eq!(
        std::str::from_utf8(&upstream).unwrap(),
        r#"{"stream_options":{"include_usage":true},"model": "fake-small", "stream": true, "messages": [{"role": "user", "content": "Hi"}]}"#
    );
}

#[tokio::test]
async fn a_request_a_command_changed_is_encoded_by_llmux() {
    let body = r#"{"model": "cheap", "messages": [{"role": "user", "content": "!/set(temperature=0.3) Say hi"}]}"#;
    let (status, _, upstream) = forward(body).await;
    assert_eq!(status, 200);
    let sent: Value = serde_json::from_slice(&upstream).unwrap();
    assert_eq!(sent["messages"][0]["content"], "Say hi");
    assert_eq!(sent["temperature"], 0.3);
    assert_eq!(sent["model"], "fake-small");
    // llmux's own encoding: compact, its member order.
    assert!(
        upstream.starts_with(br#"{"model":"fake-small","messages":"#),
        "{sent}"
    );
}

#[tokio::test]
async fn a_request_the_encoder_would_write_differently_is_encoded_by_llmux() {
    // A tool without `"type"`: llmux's encoder writes `"type": "function"`.
    let body = r#"{"model": "cheap", "messages": [{"role": "user", "content": "Hi"}],
        "tools": [{"function": {"name": "shell", "parameters": {"type": "object"}}}]}"#;
    let (status, _, upstream) = forward(body).await;
    assert_eq!(status, 200);
    let sent: Value = serde_json::from_slice(&upstream).unwrap();
    assert_eq!(sent["tools"][0]["type"], "function");
    assert_eq!(sent["tools"][0]["function"]["name"], "shell");
    assert!(
        upstream.starts_with(br#"{"model":"fake-small","messages":"#),
        "{sent}"
    );
}

/// Sends `body` to llmux's Messages endpoint in front of a fake Anthropic back-end, where
/// the model `cheap` goes to `claude-fake-1`; gives the status, the answer and the bytes
/// the fake got.
async fn forward_anthropic(body: &str) -> (u16, String, bytes::Bytes) {
    let fake = FakeAnthropic::start(fake_anthropic::Mode::Normal).await;
    let alias =
        r#"model_aliases = [{ pattern = "^cheap$", replacement = "claude:claude-fake-1" }]"#;
    let toml = format!("{alias}\n{}", fake_anthropic_config(&fake.base_url, ""));
    let llmux = start(config(&toml, &[]), &[("CLAUDE_KEY", "sk-ant-upstream")]).await;
    let url = llmux.anthropic_url("/v1/messages");
    let (status, answer) = post(url, &[("anthropic-version", "2023-06-01")], body).await;
    (status, answer, fake.last_request().raw)
}

#[tokio::test]
async fn an_unchanged_anthropic_request_reaches_the_provider_as_the_clients_bytes() {
    // Claude Code's shape: system blocks with cache_control, a tool, metadata.user_id,
    // members llmux has no slot for, and `"stream": false`.
    let body = r#"{"model":"cheap","max_tokens":32000,"stream": false,
      "system":[{"type":"text","text":"You are Claude Code."},
                {"type":"text","text":"Long instructions.","cache_control":{"type":"ephemeral"}}],
      "messages":[{"role":"user","content":[{"type":"text","text":"List files, \u00e9."}]}],
      "tools":[{"name":"Bash","description":"Run a command","input_schema":{"type":"object",
        "properties":{"command":{"type":"string"}},"required":["command"]}}],
      "metadata":{"user_id":"user_abc_account_1"}, "context_management": {"edits": []}}"#;
    let (status, answer, upstream) = forward_anthropic(body).await;
    assert_eq!(status, 200, "{answer}");
    assert_clients_bytes(body, &upstream, "claude-fake-1");
}

#[tokio::test]
async fn an_anthropic_request_the_encoder_would_write_differently_is_encoded_by_llmux() {
    // Two user turns in a row: llmux's encoder merges them into one.
    let body = r#"{"model": "cheap", "max_tokens": 100, "messages": [
        {"role": "user", "content": "First."}, {"role": "user", "content": "Second."}]}"#;
    let (status, _, upstream) = forward_anthropic(body).await;
    assert_eq!(status, 200);
    let sent: Value = serde_json::from_slice(&upstream).unwrap();
    assert_eq!(sent["model"], "claude-fake-1");
    assert_eq!(sent["messages"].as_array().unwrap().len(), 1, "{sent}");
}

/// Sends `body` to llmux's Responses endpoint in front of a fake OpenAI back-end speaking
/// the Responses API; gives the status, the answer and the bytes the fake got.
async fn forward_responses(body: &str) -> (u16, String, bytes::Bytes) {
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let toml = format!(
        "{ALIAS}\n{}",
        fake_backend_config(&fake.base_url, "api = \"responses\"")
    );
    let llmux = start(config(&toml, &[]), KEY).await;
    let (status, answer) = post(llmux.url("/v1/responses"), &[], body).await;
    (status, answer, fake.last_request().raw)
}

#[tokio::test]
async fn an_unchanged_responses_request_reaches_the_provider_as_the_clients_bytes() {
    // Codex CLI's shape: instructions, reasoning carried back encrypted, a call and its
    // output, a tool, `store: false`, the reasoning include; and `"stream": false`.
    let body = r#"{"model":"cheap","instructions":"You are Codex.","stream": false,
      "input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"List files, \u00e9."}]},
        {"type":"reasoning","summary":[{"type":"summary_text","text":"**Listing**"}],"encrypted_content":"gAAA"},
        {"type":"function_call","name":"shell","arguments":"{\"command\":[\"ls\"]}","call_id":"call_1"},
        {"type":"function_call_output","call_id":"call_1","output":"a\nb"}],
      "tools":[{"type":"function","name":"shell","description":"Run a command","strict":false,
        "parameters":{"type":"object","properties":{"command":{"type":"array"}}}}],
      "tool_choice":"auto","parallel_tool_calls":false,"store":false,
      "reasoning":{"effort":"medium","summary":"auto"},
      "include":["reasoning.encrypted_content"],"prompt_cache_key":"conv-1"}"#;
    let (status, answer, upstream) = forward_responses(body).await;
    assert_eq!(status, 200, "{answer}");
    assert_clients_bytes(body, &upstream, "fake-small");
}

#[tokio::test]
async fn a_responses_request_the_encoder_would_write_differently_is_encoded_by_llmux() {
    // A string input: llmux's encoder writes it as a user message item.
    let body = r#"{"model": "cheap", "input": "Say hi", "instructions": "Be brief."}"#;
    let (status, answer, upstream) = forward_responses(body).await;
    assert_eq!(status, 200, "{answer}");
    let sent: Value = serde_json::from_slice(&upstream).unwrap();
    assert_eq!(sent["model"], "fake-small");
    assert_eq!(sent["input"][0]["type"], "message", "{sent}");
    assert_eq!(sent["input"][0]["content"], "Say hi", "{sent}");
}

#[tokio::test]
async fn a_responses_request_a_command_changed_is_encoded_by_llmux() {
    let body = r#"{"model": "cheap", "input": [{"type": "message", "role": "user",
        "content": "!/set(temperature=0.3) Say hi"}]}"#;
    let (status, answer, upstream) = forward_responses(body).await;
    assert_eq!(status, 200, "{answer}");
    let sent: Value = serde_json::from_slice(&upstream).unwrap();
    assert_eq!(sent["input"][0]["content"], "Say hi", "{sent}");
    assert_eq!(sent["temperature"], 0.3, "{sent}");
}
