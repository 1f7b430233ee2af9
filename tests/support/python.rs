//! The test venv's Python (created by scripts/setup with the official OpenAI, Anthropic and
//! Google Gen AI SDKs) and the SDK client scripts in tests/python/.

use std::path::{Path, PathBuf};

/// The venv's interpreter (`LLMUX_TEST_PYTHON` overrides it).
pub fn python() -> PathBuf {
    let path = std::env::var_os("LLMUX_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup to create the test venv with the provider SDKs",
        path.display()
    );
    path
}

/// Runs tests/python/NAME with `args`: whether it succeeded, and its stdout then stderr.
/// The host's provider keys and base URLs are kept out of it.
pub async fn run_script<S: AsRef<std::ffi::OsStr>>(name: &str, args: &[S]) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name);
    let mut command = tokio::process::Command::new(python());
    command
        .arg(script)
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    for var in [
        "GOOGLE_API_KEY",
        "GEMINI_API_KEY",
        "GOOGLE_GEMINI_BASE_URL",
        "GOOGLE_GENAI_USE_VERTEXAI",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
    ] {
        command.env_remove(var);
    }
    let output = command.output().await.unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}
