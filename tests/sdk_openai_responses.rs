//! The official `openai` Python SDK (installed into .venv by scripts/setup) reading every
//! Responses client fixture: each stream through `client.responses.stream()`, the SDK's
//! typed accumulator, each event and Response object validated strictly against the SDK's
//! models (`tests/python/responses_sdk_check.py`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};

use support::python::python;

#[test]
fn the_openai_python_sdk_reads_every_responses_client_fixture() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fixtures = root.join("tests/fixtures/openai_responses");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&fixtures)
        .unwrap()
        .flat_map(|case| {
            std::fs::read_dir(case.unwrap().path())
                .into_iter()
                .flatten()
        })
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_string_lossy();
            name.starts_with("expected") && (name.ends_with(".sse") || name.ends_with(".json"))
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 20,
        "found only {} client fixtures",
        files.len()
    );
    let output = std::process::Command::new(python())
        .arg(root.join("tests/python/responses_sdk_check.py"))
        .args(&files)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("ok ")).count(),
        files.len(),
        "{text}"
    );
}
