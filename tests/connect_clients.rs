//! `llmux connect claude|codex|gemini` (the real binary) in a scratch HOME, then the real
//! CLIs (npm, installed by scripts/setup) with nothing but that HOME: each reaches llmux,
//! and through it a fake provider. `--undo` puts the files back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::fake_openai::{FakeOpenAi, Mode};
use support::{Llmux, config, fake_backend_config, start};

const PROXY_KEY: &str = "proxy-connect-key";

fn npm_bin(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("node_modules/.bin")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup",
        path.display()
    );
    path
}

/// An llmux with a fake OpenAI provider behind it and a proxy key, plus a config file for
/// `llmux connect` that names its ports and key.
async fn setup(home: &Path) -> (FakeOpenAi, Llmux, PathBuf) {
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let llmux = start(
        config(
            &fake_backend_config(&fake.base_url, ""),
            &[("LLM_INTERACTIVE_PROXY_API_KEY", PROXY_KEY)],
        ),
        &[("FAKE_API_KEY", "sk-upstream")],
    )
    .await;
    let file = home.join("llmux.toml");
    std::fs::write(
        &file,
        format!(
            "[proxy]\nport = {}\nanthropic_port = {}\n\n[auth]\napi_keys = [\"{PROXY_KEY}\"]\n",
            llmux.addr.port(),
            llmux.anthropic_addr.port()
        ),
    )
    .unwrap();
    (fake, llmux, file)
}

/// `llmux connect ARGS` with HOME set to `home`: its stdout (it must succeed).
fn llmux_connect(home: &Path, config: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_llmux"))
        .arg("connect")
        .args(args)
        .args(["--config", config.to_str().unwrap()])
        .env_clear()
        .env("HOME", home)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "llmux connect {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs a CLI with only HOME, PATH and `env`; its stdout (it must succeed).
async fn run_cli(cli: &Path, args: &[&str], home: &Path, env: &[(&str, &str)]) -> String {
    let run = tokio::process::Command::new(cli)
        .args(args)
        .current_dir(home)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the CLI did not finish")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{} failed:\n{stdout}\n{}",
        cli.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test]
async fn claude_code_reaches_llmux_after_connect_and_undo_puts_its_settings_back() {
    let home = tempfile::tempdir().unwrap();
    let (fake, _llmux, config) = setup(home.path()).await;
    let settings = home.path().join(".claude/settings.json");
    std::fs::create_dir_all(settings.parent().unwrap()).unwrap();
    std::fs::write(&settings, "{\"model\": \"fake-small\"}").unwrap();

    let said = llmux_connect(home.path(), &config, &["claude"]);
    assert!(
        said.contains("+    \"ANTHROPIC_BASE_URL\""),
        "the diff is shown: {said}"
    );
    let out = run_cli(
        &npm_bin("claude"),
        &[
            "-p",
            "Use a tool, then say hello.",
            "--output-format",
            "json",
            "--max-turns",
            "4",
        ],
        home.path(),
        // Only to keep the CLI off the network; nothing about llmux.
        &[
            ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
            ("DISABLE_AUTOUPDATER", "1"),
        ],
    )
    .await;
    assert!(out.contains("Hello from fake."), "{out}");
    assert!(!fake.requests.lock().unwrap().is_empty());

    llmux_connect(home.path(), &config, &["claude", "--undo"]);
    let back: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&settings).unwrap()).unwrap();
    assert_eq!(back, serde_json::json!({"model": "fake-small", "env": {}}));
}

#[tokio::test]
async fn codex_reaches_llmux_after_connect() {
    let home = tempfile::tempdir().unwrap();
    let (fake, _llmux, config) = setup(home.path()).await;
    let codex_config = home.path().join(".codex/config.toml");
    std::fs::create_dir_all(codex_config.parent().unwrap()).unwrap();
    std::fs::write(&codex_config, "# mine\nmodel = \"fake-small\"\n").unwrap();

    let said = llmux_connect(home.path(), &config, &["codex"]);
    assert!(said.contains("LLMUX_API_KEY"), "{said}");
    let out = run_cli(
        &npm_bin("codex"),
        &[
            "exec",
            "--skip-git-repo-check",
            "Use a tool, then say hello.",
        ],
        home.path(),
        &[("LLMUX_API_KEY", PROXY_KEY)],
    )
    .await;
    assert!(out.contains("Hello from fake."), "{out}");
    assert!(!fake.requests.lock().unwrap().is_empty());
    assert!(
        std::fs::read_to_string(&codex_config)
            .unwrap()
            .starts_with("# mine\n")
    );
}

#[tokio::test]
async fn gemini_cli_reaches_llmux_after_connect() {
    let home = tempfile::tempdir().unwrap();
    let (fake, _llmux, config) = setup(home.path()).await;
    llmux_connect(home.path(), &config, &["gemini"]);
    let out = run_cli(
        &npm_bin("gemini"),
        &[
            "-p",
            "Use a tool, then say hello.",
            "-m",
            "fake-small",
            "--output-format",
            "json",
        ],
        home.path(),
        // Only to keep the CLI off the network and out of its trust prompt.
        &[
            ("GEMINI_CLI_TRUST_WORKSPACE", "true"),
            ("GEMINI_TELEMETRY_ENABLED", "false"),
            ("NO_COLOR", "1"),
        ],
    )
    .await;
    assert!(out.contains("Hello from fake."), "{out}");
    assert!(!fake.requests.lock().unwrap().is_empty());
}
