//! The real Gemini CLI (npm @google/gemini-cli, installed by scripts/setup) driving llmux
//! in headless mode (`gemini -p`) through `GOOGLE_GEMINI_BASE_URL`, with an OpenAI fake
//! and a Gemini fake behind it: the CLI's `streamGenerateContent?alt=sse` stream is
//! translated from OpenAI chat or passed through from Gemini, including a tool round trip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use support::fake_gemini::{self, FakeGemini};
use support::fake_openai::{self, FakeOpenAi};
use support::{Llmux, config, fake_backend_config, start};

fn gemini_cli() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("node_modules/.bin/gemini");
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup (it installs the npm dev dependencies)",
        path.display()
    );
    path
}

/// Runs `gemini -p PROMPT -m MODEL --output-format json` against llmux with a fresh HOME,
/// and returns the CLI's JSON result.
async fn run_gemini(llmux: &Llmux, key: &str, model: &str, prompt: &str) -> Value {
    let home = tempfile::tempdir().unwrap();
    let settings = home.path().join(".gemini");
    std::fs::create_dir_all(&settings).unwrap();
    // Headless runs pick the "gateway" auth type when GOOGLE_GEMINI_BASE_URL is set, which
    // Gemini CLI 0.61 then rejects ("Invalid auth method selected"); naming the API-key
    // method keeps the base URL and sends the key as x-goog-api-key. Everything that would
    // call Google (usage statistics, telemetry, update checks) is off.
    std::fs::write(
        settings.join("settings.json"),
        r#"{
  "security": {"auth": {"selectedType": "gemini-api-key"}},
  "privacy": {"usageStatisticsEnabled": false},
  "telemetry": {"enabled": false},
  "general": {"enableAutoUpdate": false, "enableAutoUpdateNotification": false}
}"#,
    )
    .unwrap();
    let run = tokio::process::Command::new(gemini_cli())
        .args(["-p", prompt, "-m", model, "--output-format", "json"])
        .current_dir(home.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("GOOGLE_GEMINI_BASE_URL", llmux.url(""))
        .env("GEMINI_API_KEY", key)
        .env("GEMINI_CLI_TRUST_WORKSPACE", "true")
        .env("GEMINI_TELEMETRY_ENABLED", "false")
        .env("NO_COLOR", "1")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("gemini -p did not finish")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "gemini failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"))
}

#[tokio::test]
async fn gemini_cli_runs_through_llmux_to_an_openai_backend() {
    let fake = FakeOpenAi::start(fake_openai::Mode::Normal).await;
    let llmux = start(
        config(
            &fake_backend_config(&fake.base_url, ""),
            &[("LLM_INTERACTIVE_PROXY_API_KEY", "proxy-key")],
        ),
        &[("FAKE_API_KEY", "sk-upstream")],
    )
    .await;
    let result = run_gemini(
        &llmux,
        "proxy-key",
        "fake-small",
        "Use a tool, then say hello.",
    )
    .await;
    assert_eq!(result["response"], "Hello from fake.", "{result}");
    assert!(result.get("error").is_none_or(Value::is_null), "{result}");
    // The CLI read the usage llmux sent on the last record.
    let tokens = &result["stats"]["models"]["fake-small"]["tokens"];
    assert!(tokens["prompt"].as_u64().unwrap_or(0) > 0, "{result}");

    // The CLI ran the tool the fake asked for and sent its result back; llmux matched it
    // to the call by id (or, without one, by name and order).
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
    for request in &requests {
        assert_eq!(request.headers["authorization"], "Bearer sk-upstream");
        assert!(request.headers.get("x-goog-api-key").is_none());
    }
}

#[tokio::test]
async fn gemini_cli_runs_through_llmux_to_a_gemini_backend() {
    let fake = FakeGemini::start(fake_gemini::Mode::Normal).await;
    let toml = format!(
        "default_backend = \"gem\"\n[backends.gem]\ntype = \"gemini\"\nbase_url = \"{}\"\napi_key_env = \"GEM_KEY\"\n",
        fake.base_url
    );
    let llmux = start(
        config(&toml, &[("LLM_INTERACTIVE_PROXY_API_KEY", "proxy-key")]),
        &[("GEM_KEY", "goog-upstream-key")],
    )
    .await;
    // A Gemini 3 model: the fake rejects a call sent back without its thought signature.
    let result = run_gemini(
        &llmux,
        "proxy-key",
        "gemini-3-fake-pro",
        "Use a tool, then say hello.",
    )
    .await;
    assert_eq!(result["response"], "Hello from fake Gemini.", "{result}");

    let calls = fake.all_calls();
    assert!(calls.len() >= 2, "{} calls", calls.len());
    for call in &calls {
        assert_eq!(call.api_key(), Some("goog-upstream-key"));
        if call.method == "streamGenerateContent" {
            assert_eq!(call.query.as_deref(), Some("alt=sse"));
        }
    }
    // The function response went back after the call, with Gemini's signature on it.
    let followup = calls
        .iter()
        .find(|c| c.body.to_string().contains("\"functionResponse\""))
        .expect("no function response reached the provider");
    let signed = followup.body["contents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["role"] == "model")
        .flat_map(|c| c["parts"].as_array().cloned().unwrap_or_default())
        .any(|p| {
            p.get("functionCall").is_some() && p["thoughtSignature"] == fake_gemini::CALL_SIGNATURE
        });
    assert!(signed, "{}", followup.body);
}
