//! The same-protocol pass-through, end to end: an OpenAI chat client of an OpenAI chat
//! back-end, an Anthropic client of an Anthropic back-end and a Responses client of a
//! Responses back-end get the provider's own answer bytes when nothing on the way changed the
//! answer, and llmux's encoding when something did (or when the encoder would not write that
//! body).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::fake_anthropic::{self, FakeAnthropic};
use support::fake_openai::{FakeOpenAi, Mode};
use support::{client, config, fake_anthropic_config, fake_backend_config, start};

const KEY: &[(&str, &str)] = &[("FAKE_API_KEY", "sk-fake-upstream-secret")];

/// An answer as a provider might format it: its own key order and spacing, fields llmux
/// has no slot for.
const PROVIDER_BODY: &str = r#"{"object": "chat.completion", "id":"chatcmpl-v1",
  "created":1741569952, "model":"fake-small",
  "choices":[{"index":0,"finish_reason":"stop","logprobs":null,
    "message":{"role":"assistant","content":"Plain text, \u00e9 and \"quotes\".","refusal":null,
      "annotations":[]}}],
  "usage":{"prompt_tokens":12,"completion_tokens":4,"total_tokens":16,
    "prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0}},
  "service_tier":"default","x_vendor":{"region":"eu","latency_ms":12.5}}"#;

/// The answer to a chat request whose provider answers `provider_body`, with the fake and
/// llmux, which must live while the answer is read.
async fn answer_to(provider_body: &'static str) -> (reqwest::Response, FakeOpenAi, support::Llmux) {
    let fake = FakeOpenAi::start(Mode::Body(provider_body)).await;
    let llmux = start(config(&fake_backend_config(&fake.base_url, ""), &[]), KEY).await;
    let response = client()
        .post(llmux.url("/v1/chat/completions"))
        .json(&json!({
            "model": "fake-small",
            "stream": false,
            "messages": [{"role": "user", "content": "Say hello."}]
        }))
        .send()
        .await
        .unwrap();
    (response, fake, llmux)
}

/// Asserts that `response` is a JSON answer with llmux's request id whose body is `body`,
/// byte for byte.
async fn assert_providers_own_bytes(response: reqwest::Response, body: &str) {
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert!(response.headers().contains_key("x-request-id"));
    assert_eq!(response.text().await.unwrap(), body);
}

#[tokio::test]
async fn an_unchanged_answer_is_the_providers_own_bytes() {
    let (response, fake, _llmux) = answer_to(PROVIDER_BODY).await;
    assert_providers_own_bytes(response, PROVIDER_BODY).await;
    assert_eq!(fake.hit_count(), 1);
}

#[tokio::test]
async fn an_answer_a_stage_changed_is_encoded_by_llmux() {
    // The think-tags stage turns `<think>` text into reasoning.
    const THINKING: &str = r#"{"id":"chatcmpl-v2","object":"chat.completion","created":1,
      "model":"fake-small","choices":[{"index":0,"finish_reason":"stop",
      "message":{"role":"assistant","content":"<think>plan</think>Answer"}}]}"#;
    let (response, _fake, _llmux) = answer_to(THINKING).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let message = &body["choices"][0]["message"];
    assert_eq!(message["content"], "Answer");
    assert_eq!(message["reasoning_content"], "plan");
    assert_eq!(body["id"], "chatcmpl-v2");
}

#[tokio::test]
async fn an_answer_the_encoder_would_not_write_is_encoded_by_llmux() {
    // Two choices: llmux answers with the first, as it always has.
    const TWO_CHOICES: &str = r#"{"id":"chatcmpl-v3","object":"chat.completion","created":1,
      "model":"fake-small","choices":[
        {"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"one"}},
        {"index":1,"finish_reason":"stop","message":{"role":"assistant","content":"two"}}]}"#;
    let (response, _fake, _llmux) = answer_to(TWO_CHOICES).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["choices"].as_array().unwrap().len(), 1);
    assert_eq!(body["choices"][0]["message"]["content"], "one");
}

/// The status and OpenAI error message of an error answer.
async fn error_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap_or_default();
    (status, message.to_owned())
}

#[tokio::test]
async fn a_provider_error_inside_a_200_is_still_an_error() {
    const ERROR: &str = r#"{"error":{"message":"overloaded","type":"server_error","code":null}}"#;
    let (response, _fake, _llmux) = answer_to(ERROR).await;
    let (status, message) = error_of(response).await;
    assert_eq!(status, 502);
    assert!(message.contains("overloaded"), "{message}");
}

#[tokio::test]
async fn a_body_that_is_not_a_completion_is_a_clear_error() {
    let (response, _fake, _llmux) = answer_to(r#"{"choices": "not a list"}"#).await;
    let (status, message) = error_of(response).await;
    assert_eq!(status, 502);
    assert!(message.contains("not a chat completion"), "{message}");
}

// ---- Anthropic client -> Anthropic back-end ----

/// A message as Anthropic formats it (its Messages reference), with its own spacing and a
/// member llmux has no slot for.
const ANTHROPIC_BODY: &str = r#"{"id":"msg_013Zva2CMHLNnXjNJJKqJ2EF","type":"message",
  "role":"assistant","model":"claude-fake-1",
  "content":[{"type":"thinking","thinking":"Short.","signature":"sig-1"},
    {"type":"text","text":"Hi! My name is \u00c9 \"Claude\"."},
    {"type":"tool_use","id":"toolu_01","name":"get_weather","input":{"city":"Paris","days":1.5}}],
  "stop_reason":"tool_use","stop_sequence":null,
  "usage":{"input_tokens":2095,"output_tokens":503,"cache_creation_input_tokens":0,
    "cache_read_input_tokens":10,"service_tier":"standard"},
  "container":null}"#;

/// The answer to a Messages request whose Anthropic provider answers `provider_body`.
async fn anthropic_answer_to(
    provider_body: &'static str,
) -> (reqwest::Response, FakeAnthropic, support::Llmux) {
    let fake = FakeAnthropic::start(fake_anthropic::Mode::Body(provider_body)).await;
    let toml = fake_anthropic_config(&fake.base_url, "");
    let llmux = start(config(&toml, &[]), &[("CLAUDE_KEY", "sk-ant-upstream")]).await;
    let response = client()
        .post(llmux.anthropic_url("/v1/messages"))
        .header("anthropic-version", "2023-06-01")
        .json(&json!({
            "model": "claude-fake-1",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": "Say hello."}]
        }))
        .send()
        .await
        .unwrap();
    (response, fake, llmux)
}

#[tokio::test]
async fn an_unchanged_anthropic_answer_is_the_providers_own_bytes() {
    let (response, fake, _llmux) = anthropic_answer_to(ANTHROPIC_BODY).await;
    assert_providers_own_bytes(response, ANTHROPIC_BODY).await;
    assert_eq!(fake.hit_count(), 1);
}

#[tokio::test]
async fn an_anthropic_answer_without_cache_counts_is_encoded_by_llmux() {
    // llmux writes both cache counts; this body has neither, so it is re-encoded.
    const NO_CACHE_COUNTS: &str = r#"{"id":"msg_2","type":"message","role":"assistant",
      "model":"claude-fake-1","content":[{"type":"text","text":"Hello."}],
      "stop_reason":"end_turn","stop_sequence":null,
      "usage":{"input_tokens":5,"output_tokens":2}}"#;
    let (response, _fake, _llmux) = anthropic_answer_to(NO_CACHE_COUNTS).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["content"][0]["text"], "Hello.");
    assert_eq!(body["usage"]["cache_read_input_tokens"], 0);
    assert_eq!(body["id"], "msg_2");
}

#[tokio::test]
async fn an_anthropic_answer_a_stage_changed_is_encoded_by_llmux() {
    // The think-tags stage turns `<think>` text into a thinking block.
    const THINKING: &str = r#"{"id":"msg_3","type":"message","role":"assistant",
      "model":"claude-fake-1","content":[{"type":"text","text":"<think>plan</think>Answer"}],
      "stop_reason":"end_turn","stop_sequence":null,
      "usage":{"input_tokens":5,"output_tokens":2,"cache_creation_input_tokens":0,
        "cache_read_input_tokens":0}}"#;
    let (response, _fake, _llmux) = anthropic_answer_to(THINKING).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let content = body["content"].as_array().unwrap();
    assert_eq!(content[0]["type"], "thinking", "{body}");
    assert_eq!(content[0]["thinking"], "plan");
    assert_eq!(content.last().unwrap()["text"], "Answer");
}

#[tokio::test]
async fn an_anthropic_error_inside_a_200_is_still_an_error() {
    const ERROR: &str =
        r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    let (response, _fake, _llmux) = anthropic_answer_to(ERROR).await;
    assert_eq!(response.status(), 529);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "overloaded_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Overloaded"),
        "{body}"
    );
}

#[tokio::test]
async fn an_anthropic_body_that_is_not_a_message_is_a_clear_error() {
    let (response, _fake, _llmux) = anthropic_answer_to(r#"{"content": "not a list"}"#).await;
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("not a message"), "{message}");
}

// ---- Responses client -> Responses back-end ----

/// A Response as OpenAI formats one (its Responses reference): every parameter echoed, a
/// reasoning item, a message and a call, its own spacing and number forms.
const RESPONSES_BODY: &str = r#"{
  "id": "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",
  "object": "response", "created_at": 1741476542, "status": "completed",
  "background": false, "error": null, "incomplete_details": null,
  "instructions": "Be brief.", "max_output_tokens": null, "max_tool_calls": null,
  "model": "gpt-5-2025-08-07",
  "output": [
    {"id": "rs_1", "type": "reasoning", "summary": [{"type": "summary_text", "text": "**Greeting**"}],
     "encrypted_content": "gAAAAB-opaque"},
    {"id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
     "content": [{"type": "output_text", "text": "Hello, \u00e9 and \"quotes\".", "annotations": [],
                  "logprobs": []}]},
    {"id": "fc_1", "type": "function_call", "status": "completed", "call_id": "call_1",
     "name": "shell", "arguments": "{\"command\":[\"ls\"]}"}
  ],
  "parallel_tool_calls": true, "previous_response_id": null, "prompt_cache_key": null,
  "reasoning": {"effort": "low", "summary": "auto"}, "safety_identifier": null,
  "service_tier": "default", "store": false, "temperature": 1.0,
  "text": {"format": {"type": "text"}, "verbosity": "medium"},
  "tool_choice": "auto", "tools": [], "top_logprobs": 0, "top_p": 1.0, "truncation": "disabled",
  "usage": {"input_tokens": 36, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": 87, "output_tokens_details": {"reasoning_tokens": 64},
            "total_tokens": 123},
  "user": null, "metadata": {}
}"#;

/// The answer to a Responses request `request` whose Responses provider answers
/// `provider_body`.
async fn responses_answer_to(
    provider_body: &'static str,
    request: Value,
) -> (reqwest::Response, FakeOpenAi, support::Llmux) {
    let fake = FakeOpenAi::start(Mode::Body(provider_body)).await;
    let toml = fake_backend_config(&fake.base_url, "api = \"responses\"");
    let llmux = start(config(&toml, &[]), KEY).await;
    let response = client()
        .post(llmux.url("/v1/responses"))
        .json(&request)
        .send()
        .await
        .unwrap();
    (response, fake, llmux)
}

fn responses_request() -> Value {
    json!({"model": "fake-small", "input": "Say hello.", "instructions": "Be brief.",
           "store": false, "reasoning": {"effort": "low", "summary": "auto"}})
}

#[tokio::test]
async fn an_unchanged_responses_answer_is_the_providers_own_bytes() {
    let (response, fake, _llmux) = responses_answer_to(RESPONSES_BODY, responses_request()).await;
    assert_providers_own_bytes(response, RESPONSES_BODY).await;
    assert_eq!(fake.hit_count(), 1);
}

#[tokio::test]
async fn a_parameter_the_response_does_not_echo_comes_from_the_request() {
    // The body has no `conversation` member: llmux encodes, echoing the client's.
    let mut request = responses_request();
    request["conversation"] = json!("conv_1");
    let (response, _fake, _llmux) = responses_answer_to(RESPONSES_BODY, request).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert_ne!(text, RESPONSES_BODY);
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["conversation"], "conv_1");
    assert_eq!(
        body["output"][1]["content"][0]["text"],
        "Hello, é and \"quotes\"."
    );
    assert_eq!(
        body["id"],
        "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b"
    );
}

#[tokio::test]
async fn a_responses_answer_a_stage_changed_is_encoded_by_llmux() {
    // The think-tags stage turns `<think>` text into reasoning.
    const THINKING: &str = r#"{"id":"resp_2","object":"response","created_at":1,
      "status":"completed","model":"fake-small","parallel_tool_calls":true,
      "tool_choice":"auto","tools":[],
      "output":[{"id":"msg_2","type":"message","status":"completed","role":"assistant",
        "content":[{"type":"output_text","text":"<think>plan</think>Answer",
                    "annotations":[],"logprobs":[]}]}],
      "usage":{"input_tokens":5,"input_tokens_details":{"cached_tokens":0,"cache_write_tokens":0},
        "output_tokens":2,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":7}}"#;
    let request = json!({"model": "fake-small", "input": "Say hello."});
    let (response, _fake, _llmux) = responses_answer_to(THINKING, request).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let output = body["output"].as_array().unwrap();
    assert_eq!(output[0]["type"], "reasoning", "{body}");
    assert_eq!(output[0]["summary"][0]["text"], "plan");
    assert_eq!(output.last().unwrap()["content"][0]["text"], "Answer");
}

#[tokio::test]
async fn a_failed_response_inside_a_200_is_still_an_error() {
    const FAILED: &str = r#"{"id":"resp_3","object":"response","status":"failed",
      "model":"fake-small","output":[],
      "error":{"code":"server_error","message":"The model is overloaded."}}"#;
    let request = json!({"model": "fake-small", "input": "Say hello."});
    let (response, _fake, _llmux) = responses_answer_to(FAILED, request).await;
    let (status, message) = error_of(response).await;
    assert_eq!(status, 502);
    assert!(message.contains("overloaded"), "{message}");
}
