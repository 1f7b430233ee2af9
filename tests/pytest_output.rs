//! Pytest output compression over real HTTP: a tool result holding pytest's verbose output
//! reaches the provider without its passing lines, from OpenAI chat, Anthropic, Responses
//! and Gemini clients alike.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::fake_openai::{FakeOpenAi, Mode};
use support::{client, config, fake_backend_config, start};

const KEY: &[(&str, &str)] = &[("FAKE_API_KEY", "sk-fake")];

fn pytest_output() -> String {
    pytest_output_of(200)
}

/// pytest's verbose output of `passes` passing tests and one failure.
fn pytest_output_of(passes: usize) -> String {
    let mut out = String::from(
        "============================= test session starts ==============================\n\
         collected 201 items\n\n",
    );
    for i in 0..passes {
        out.push_str(&format!(
            "tests/test_api.py::test_case_{i} PASSED                              [ {:>2}%]\n",
            i * 100 / (passes + 1)
        ));
    }
    out.push_str(
        "tests/test_api.py::test_broken FAILED                               [100%]\n\n\
         =================================== FAILURES ===================================\n\
         E       AssertionError: expected 200, got 500\n\
         ",
    );
    out.push_str(&format!(
        "========================= 1 failed, {passes} passed in 9.12s =========================\n"
    ));
    out
}

/// The tool result the provider received, in OpenAI chat form.
fn sent_tool_result(fake: &FakeOpenAi) -> String {
    let body = fake.last_request().body;
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .expect("a tool message")
}

#[tokio::test]
async fn pytest_output_in_a_tool_result_reaches_the_provider_without_its_passes() {
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let llmux = start(config(&fake_backend_config(&fake.base_url, ""), &[]), KEY).await;
    let output = pytest_output();
    let response = client()
        .post(llmux.url("/v1/chat/completions"))
        .json(&json!({"model": "m", "messages": [
            {"role": "user", "content": "Run the tests."},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1",
                "type": "function", "function": {"name": "Bash",
                "arguments": "{\"command\":\"pytest -v\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": output}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let sent = sent_tool_result(&fake);
    assert!(!sent.contains("test_case_7 PASSED"), "{sent}");
    assert!(sent.contains("tests/test_api.py::test_broken FAILED"));
    assert!(sent.contains("AssertionError: expected 200, got 500"));
    assert!(sent.contains("1 failed, 200 passed in 9.12s"));
    assert!(sent.contains("[llmux removed 200 lines"));
    assert!(
        sent.len() * 5 < output.len(),
        "{} -> {}",
        output.len(),
        sent.len()
    );

    let anthropic = client()
        .post(llmux.url("/v1/messages"))
        .json(&json!({"model": "m", "max_tokens": 100, "messages": [
            {"role": "user", "content": "Run the tests."},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1",
                "name": "Bash", "input": {"command": "pytest -v"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                "content": output}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(anthropic.status(), 200);
    let sent = sent_tool_result(&fake);
    assert!(!sent.contains("test_case_7 PASSED"));
    assert!(sent.contains("test_broken FAILED"));

    // Codex (Responses): a function_call_output.
    let responses = client()
        .post(llmux.url("/v1/responses"))
        .json(&json!({"model": "m", "input": [
            {"role": "user", "content": "Run the tests."},
            {"type": "function_call", "call_id": "call_9", "name": "shell",
                "arguments": "{\"command\":[\"pytest\",\"-v\"]}"},
            {"type": "function_call_output", "call_id": "call_9", "output": output}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(responses.status(), 200);
    let sent = sent_tool_result(&fake);
    assert!(!sent.contains("test_case_7 PASSED"), "{sent}");
    assert!(sent.contains("test_broken FAILED"));

    // Gemini CLI: a functionResponse whose `output` holds what the shell printed.
    let gemini = client()
        .post(llmux.url("/v1beta/models/m:generateContent"))
        .json(&json!({"contents": [
            {"role": "user", "parts": [{"text": "Run the tests."}]},
            {"role": "model", "parts": [{"functionCall": {"name": "run_shell_command",
                "args": {"command": "pytest -v"}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "run_shell_command",
                "response": {"output": output}}}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(gemini.status(), 200);
    let sent = sent_tool_result(&fake);
    assert!(!sent.contains("test_case_7 PASSED"), "{sent}");
    assert!(sent.contains("test_broken FAILED"));
}

#[tokio::test]
async fn compression_can_be_turned_off() {
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let llmux = start(
        config(
            &fake_backend_config(&fake.base_url, ""),
            &[("PYTEST_COMPRESSION_ENABLED", "false")],
        ),
        KEY,
    )
    .await;
    let output = pytest_output();
    let response = client()
        .post(llmux.url("/v1/chat/completions"))
        .json(&json!({"model": "m", "messages": [
            {"role": "user", "content": "Run the tests."},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1",
                "type": "function", "function": {"name": "Bash", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": output}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = fake.last_request().body;
    assert_eq!(body["messages"][2]["content"], output);
}

const WHOLE_SUITE: &str = r#"{"command":"python -m pytest -q"}"#;

async fn run_tests(llmux: &support::Llmux, history: Vec<Value>) -> Value {
    let mut messages = vec![json!({"role": "user", "content": "Make sure it all works."})];
    messages.extend(history);
    let response = client()
        .post(llmux.url("/v1/chat/completions"))
        .json(&json!({"model": "m", "messages": messages,
            "tools": [{"type": "function", "function": {"name": "Bash",
                "parameters": {"type": "object"}}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_whole_suite_run_is_steered_once_and_runs_when_asked_again() {
    let fake = FakeOpenAi::start(Mode::CallWith(WHOLE_SUITE)).await;
    let toml = fake_backend_config(&fake.base_url, "");
    let llmux = start(
        config(&toml, &[("PYTEST_FULL_SUITE_STEERING_ENABLED", "true")]),
        KEY,
    )
    .await;
    let first = run_tests(&llmux, vec![]).await;
    let message = &first["choices"][0]["message"];
    assert!(
        message.get("tool_calls").is_none_or(Value::is_null),
        "{first}"
    );
    let text = message["content"].as_str().unwrap();
    assert!(text.contains("would run the whole pytest suite"), "{text}");

    // The model calls it again: now it goes to the client to run.
    let again = run_tests(
        &llmux,
        vec![
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_1",
                "type": "function", "function": {"name": "Bash", "arguments": WHOLE_SUITE}}]}),
            json!({"role": "tool", "tool_call_id": "call_1", "content": text}),
        ],
    )
    .await;
    assert_eq!(
        again["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        WHOLE_SUITE
    );
}

/// An agent's conversation is sent whole with every turn, and a large one is read through
/// llmux's message memo, which hands on what was found in a message repeated from the
/// request before: a repeated pytest output, and one new in the later request, reach the
/// provider compressed each time, and a repeated listing untouched.
#[tokio::test]
async fn pytest_output_repeated_in_a_growing_agent_conversation_is_compressed_every_turn() {
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let llmux = start(config(&fake_backend_config(&fake.base_url, ""), &[]), KEY).await;
    // Over the memo's 32 KB with the listing alone.
    let listing = "drwxr-xr-x  2 root root 4096 src\n".repeat(1200);
    let output = pytest_output_of(500);
    let call = |id: &str, command: &str| {
        json!({"role": "assistant", "content": null, "tool_calls": [{"id": id,
            "type": "function", "function": {"name": "Bash",
            "arguments": json!({"command": command}).to_string()}}]})
    };
    let mut messages = vec![
        json!({"role": "system", "content": "You are a coding agent."}),
        json!({"role": "user", "content": "Fix the failing test."}),
        call("call_1", "ls -l"),
        json!({"role": "tool", "tool_call_id": "call_1", "content": listing}),
        call("call_2", "pytest -v"),
        json!({"role": "tool", "tool_call_id": "call_2", "content": output}),
    ];
    let tool_results = |fake: &FakeOpenAi| -> Vec<String> {
        fake.last_request().body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "tool")
            .map(|m| m["content"].as_str().unwrap().to_owned())
            .collect()
    };
    for turn in 0..3 {
        let response = client()
            .post(llmux.url("/v1/chat/completions"))
            .json(&json!({"model": "m", "messages": messages}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "turn {turn}");
        let sent = tool_results(&fake);
        assert_eq!(sent.len(), 2 + turn, "turn {turn}");
        assert_eq!(sent[0], listing, "turn {turn}");
        for (index, result) in sent.iter().enumerate().skip(1) {
            assert!(
                result.contains("[llmux removed 500 lines") && !result.contains("test_case_7 "),
                "turn {turn}, tool result {index}: {}",
                &result[..result.len().min(300)]
            );
        }
        let id = format!("call_{}", turn + 3);
        messages.push(call(&id, "pytest -v"));
        messages.push(json!({"role": "tool", "tool_call_id": id, "content": output}));
    }
}
