//! The real Codex CLI (npm @openai/codex, installed by scripts/setup) driving llmux's
//! Responses front-end with `codex exec`, with an OpenAI-chat fake provider behind it:
//! Codex's Responses stream is translated from chat, including a tool round trip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use support::fake_openai::{FakeOpenAi, Mode};
use support::{config, fake_backend_config, start};

#[tokio::test]
async fn codex_exec_runs_through_llmux_to_an_openai_chat_backend() {
    let codex = Path::new(env!("CARGO_MANIFEST_DIR")).join("node_modules/.bin/codex");
    assert!(
        codex.exists(),
        "{} is missing: run scripts/setup (it installs the npm dev dependencies)",
        codex.display()
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
    let codex_home = home.path().join(".codex");
    std::fs::create_dir_all(&codex_home).unwrap();
    std::fs::write(
        codex_home.join("config.toml"),
        format!(
            "model = \"fake-small\"\nmodel_provider = \"llmux\"\n\n[model_providers.llmux]\n\
             name = \"llmux\"\nbase_url = \"{}\"\nwire_api = \"responses\"\nenv_key = \"LLMUX_KEY\"\n",
            llmux.url("/v1")
        ),
    )
    .unwrap();
    let run = tokio::process::Command::new(&codex)
        .args([
            "exec",
            "--skip-git-repo-check",
            "Use a tool, then say hello.",
        ])
        .current_dir(home.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("CODEX_HOME", &codex_home)
        .env("LLMUX_KEY", "proxy-key")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("codex exec did not finish")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "codex failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("Hello from fake."), "{stdout}\n{stderr}");

    // Codex ran the tool the fake asked for and sent the output back under the same id.
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
}
