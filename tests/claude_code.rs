//! The real Claude Code CLI (npm @anthropic-ai/claude-code, installed by scripts/setup)
//! driving llmux in print mode, with an OpenAI-protocol fake provider behind it: Claude
//! Code's Anthropic stream is translated from OpenAI chat, including a tool round trip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::fake_openai::{FakeOpenAi, Mode};
use support::{config, fake_backend_config, start};

#[tokio::test]
async fn claude_code_print_mode_runs_through_llmux_to_an_openai_backend() {
    let claude = Path::new(env!("CARGO_MANIFEST_DIR")).join("node_modules/.bin/claude");
    assert!(
        claude.exists(),
        "{} is missing: run scripts/setup (it installs the npm dev dependencies)",
        claude.display()
    );
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let llmux = start(
        config(
            &fake_backend_config(&fake.base_url, ""),
            &[("LLM_INTERACTIVE_PROXY_API_KEY", "proxy-key")],
        ),
        &[("FAKE_API_KEY", "sk-upstream")],
    )
    .await;
    let home = tempfile::tempdir().unwrap();
    let run = tokio::process::Command::new(&claude)
        .args([
            "-p",
            "Use a tool, then say hello.",
            "--model",
            "fake-small",
            "--output-format",
            "json",
            "--max-turns",
            "4",
        ])
        .current_dir(home.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("ANTHROPIC_BASE_URL", llmux.anthropic_url(""))
        .env("ANTHROPIC_API_KEY", "proxy-key")
        // Keep the CLI off the network apart from llmux.
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("DISABLE_ERROR_REPORTING", "1")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("claude -p did not finish")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "claude failed:\n{stdout}\n{stderr}"
    );
    let result: Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(result["is_error"], false, "{result}");
    assert_eq!(result["result"], "Hello from fake.", "{result}");

    // Claude Code called the tool the fake asked for, and sent its result back under the
    // same id, through both translations.
    let requests = fake.requests.lock().unwrap().clone();
    assert!(requests.len() >= 2, "{} requests", requests.len());
    let answered = requests.iter().any(|r| {
        r.body["messages"].as_array().is_some_and(|messages| {
            messages
                .iter()
                .any(|m| m["role"] == "tool" && m["tool_call_id"] == "call_fake_1")
        })
    });
    assert!(answered, "no tool result reached the provider");
    assert!(
        requests
            .iter()
            .all(|r| r.headers.get("anthropic-beta").is_none())
    );
}
