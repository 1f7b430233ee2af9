//! The official `openai` and `anthropic` Python SDKs (installed into .venv by
//! scripts/setup) driving llmux, which forwards to the fake providers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::fake_anthropic::{self, FakeAnthropic};
use support::fake_openai::{FakeOpenAi, Mode};
use support::{config, fake_backend_config, start};

async fn run_client(args: Vec<String>) -> (bool, String) {
    run_script("openai_sdk_client.py", args).await
}

async fn run_script(name: &str, args: Vec<String>) -> (bool, String) {
    support::python::run_script(name, &args).await
}

#[tokio::test]
async fn the_openai_python_sdk_chats_streams_calls_tools_and_lists_models() {
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let config = config(
        &fake_backend_config(&fake.base_url, ""),
        &[("LLM_INTERACTIVE_PROXY_API_KEY", "sdk-proxy-key")],
    );
    let llmux = start(config, &[("FAKE_API_KEY", "sk-upstream")]).await;
    let (ok, output) = run_client(vec![
        "--base-url".into(),
        llmux.url("/v1"),
        "--api-key".into(),
        "sdk-proxy-key".into(),
        "--model".into(),
        "fake-small".into(),
        "--expect-model".into(),
        "fake-small".into(),
        "--expect-model".into(),
        "fake:fake-large".into(),
    ])
    .await;
    assert!(ok, "the SDK client failed:\n{output}");
    for check in [
        "chat",
        "chat_stream",
        "tool_call",
        "tool_call_stream",
        "tool_result",
        "models_list",
    ] {
        assert!(
            output.contains(&format!("ok {check}")),
            "{check} did not pass:\n{output}"
        );
    }
    assert!(fake.hit_count() >= 5);
}

#[tokio::test]
async fn the_sdk_sees_a_wrong_proxy_key_as_an_authentication_error() {
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let config = config(
        &fake_backend_config(&fake.base_url, ""),
        &[("LLM_INTERACTIVE_PROXY_API_KEY", "sdk-proxy-key")],
    );
    let llmux = start(config, &[]).await;
    let (ok, output) = run_client(vec![
        "--base-url".into(),
        llmux.url("/v1"),
        "--api-key".into(),
        "wrong".into(),
        "--model".into(),
        "fake-small".into(),
        "--only".into(),
        "chat".into(),
    ])
    .await;
    assert!(!ok);
    assert!(output.contains("401"), "{output}");
    assert_eq!(fake.hit_count(), 0);
}

#[tokio::test]
async fn the_anthropic_python_sdk_works_through_anthropic_and_the_dedicated_port() {
    let fake = FakeAnthropic::start(fake_anthropic::Mode::Normal).await;
    let toml = format!(
        "default_backend = \"claude\"\n[backends.claude]\ntype = \"anthropic-compatible\"\nbase_url = \"{}\"\n",
        fake.base_url
    );
    let llmux = start(
        config(&toml, &[("LLM_INTERACTIVE_PROXY_API_KEY", "sdk-proxy-key")]),
        &[],
    )
    .await;
    for base in [llmux.url("/anthropic"), llmux.anthropic_url("")] {
        let (ok, output) = run_script(
            "anthropic_sdk_client.py",
            vec![
                "--base-url".into(),
                base.clone(),
                "--api-key".into(),
                "sdk-proxy-key".into(),
                "--model".into(),
                "claude-fake-1".into(),
                "--expect-model".into(),
                "claude:claude-fake-1".into(),
            ],
        )
        .await;
        assert!(ok, "the Anthropic SDK client failed at {base}:\n{output}");
        for check in [
            "create",
            "stream",
            "tool_use",
            "count_tokens",
            "models_list",
        ] {
            assert!(
                output.contains(&format!("ok {check}")),
                "{check} at {base}:\n{output}"
            );
        }
    }
}

#[tokio::test]
async fn the_anthropic_python_sdk_works_against_an_openai_backend() {
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let llmux = start(
        config(&fake_backend_config(&fake.base_url, ""), &[]),
        &[("FAKE_API_KEY", "k")],
    )
    .await;
    let (ok, output) = run_script(
        "anthropic_sdk_client.py",
        vec![
            "--base-url".into(),
            llmux.anthropic_url(""),
            "--api-key".into(),
            "unused".into(),
            "--model".into(),
            "fake-small".into(),
            "--expect-model".into(),
            "fake:fake-small".into(),
        ],
    )
    .await;
    assert!(
        ok,
        "the Anthropic SDK client failed over an OpenAI back-end:\n{output}"
    );
}

#[tokio::test]
async fn the_openai_sdk_responses_api_works_over_chat_and_responses_backends() {
    for api in ["chat", "responses"] {
        let fake = FakeOpenAi::start(Mode::Normal).await;
        let llmux = start(
            config(
                &fake_backend_config(&fake.base_url, &format!("api = \"{api}\"")),
                &[],
            ),
            &[("FAKE_API_KEY", "k")],
        )
        .await;
        let (ok, output) = run_script(
            "responses_sdk_client.py",
            vec![
                "--base-url".into(),
                llmux.url("/v1"),
                "--api-key".into(),
                "unused".into(),
                "--model".into(),
                "fake-small".into(),
                "--only".into(),
                "create".into(),
                "--only".into(),
                "stream".into(),
                "--only".into(),
                "tool_call".into(),
                "--only".into(),
                "previous".into(),
            ],
        )
        .await;
        assert!(
            ok,
            "the Responses SDK client failed over a {api} back-end:\n{output}"
        );
    }
}

#[tokio::test]
async fn the_openai_sdk_parses_structured_output_repaired_by_llmux() {
    // The model wraps its JSON in a code fence with a trailing comma; llmux repairs it.
    let fake = FakeOpenAi::start(Mode::Answer("```json\n{\"greeting\": \"hello\",}\n```")).await;
    let llmux = start(
        config(&fake_backend_config(&fake.base_url, ""), &[]),
        &[("FAKE_API_KEY", "k")],
    )
    .await;
    let (ok, output) = run_script(
        "responses_sdk_client.py",
        vec![
            "--base-url".into(),
            llmux.url("/v1"),
            "--api-key".into(),
            "unused".into(),
            "--model".into(),
            "fake-small".into(),
            "--only".into(),
            "parse".into(),
        ],
    )
    .await;
    assert!(ok, "responses.parse failed:\n{output}");
}
