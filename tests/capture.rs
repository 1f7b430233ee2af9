//! Wire capture in the seed's JSON Lines format: fields, directions, rotation, and the
//! seed's jq recipes run on a captured file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use support::fake_openai::{FakeOpenAi, Mode};
use support::{client, config, fake_backend_config, start};

const KEY: &str = "sk-capture-secret-key-123";

async fn capture_run(
    extra: &str,
    requests: usize,
) -> (support::Llmux, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wire.jsonl");
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let toml = format!(
        "capture = {{ file = \"{}\", flush_interval = 0.05 {extra} }}\n{}",
        file.display(),
        fake_backend_config(&fake.base_url, "")
    );
    let llmux = start(config(&toml, &[]), &[("FAKE_API_KEY", KEY)]).await;
    for i in 0..requests {
        for stream in [false, true] {
            let request = json!({"model": "fake-small", "stream": stream,
                "messages": [{"role": "user", "content": format!("question {i}")}]});
            let response = client()
                .post(llmux.url("/v1/chat/completions"))
                .header("user-agent", "Cline/1.0")
                .header("x-session-id", "session-123")
                .json(&request)
                .send()
                .await
                .unwrap();
            response.text().await.unwrap();
        }
    }
    llmux
        .engine
        .capture()
        .unwrap()
        .flush(Duration::from_secs(5));
    (llmux, file, dir)
}

fn records(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn records_carry_the_seeds_fields_and_directions() {
    let (_llmux, file, _dir) = capture_run("", 1).await;
    let records = records(&file);
    let directions: Vec<&str> = records
        .iter()
        .map(|r| r["direction"].as_str().unwrap())
        .collect();
    assert_eq!(&directions[..2], ["outbound_request", "inbound_response"]);
    assert_eq!(directions[2], "outbound_request");
    assert_eq!(directions[3], "stream_start");
    assert!(
        directions[4..directions.len() - 1]
            .iter()
            .all(|d| *d == "stream_chunk")
    );
    assert_eq!(*directions.last().unwrap(), "stream_end");

    let first = &records[0];
    for field in [
        "timestamp_iso",
        "timestamp_unix",
        "direction",
        "source",
        "destination",
        "session_id",
        "backend",
        "model",
        "key_name",
        "content_type",
        "content_length",
        "payload",
        "metadata",
    ] {
        assert!(first.get(field).is_some(), "{field} missing: {first}");
    }
    assert_eq!(first["source"], "127.0.0.1(Cline/1.0)");
    assert_eq!(first["destination"], "fake");
    assert_eq!(first["backend"], "fake");
    assert_eq!(first["session_id"], "session-123");
    assert_eq!(first["model"], "fake-small");
    assert_eq!(first["key_name"], "FAKE_API_KEY");
    assert_eq!(first["content_type"], "json");
    assert_eq!(first["payload"]["messages"][0]["content"], "question 0");
    assert_eq!(first["metadata"]["user_agent"], "Cline/1.0");
    assert!(
        first["metadata"]["request_id"]
            .as_str()
            .unwrap()
            .starts_with("req_")
    );
    assert!(first["timestamp_iso"].as_str().unwrap().ends_with("+00:00"));
    assert_eq!(
        records[1]["payload"]["choices"][0]["message"]["content"],
        "Hello from fake."
    );
    let chunk = records
        .iter()
        .find(|r| r["direction"] == "stream_chunk")
        .unwrap();
    assert_eq!(chunk["payload"]["object"], "chat.completion.chunk");
    // Keys travel in headers, which are not captured.
    assert!(!std::fs::read_to_string(&file).unwrap().contains(KEY));
}

fn jq(filter: &str, file: &Path) -> String {
    let out = Command::new("jq")
        .args(["-r", filter])
        .arg(file)
        .output()
        .expect("jq (installed by scripts/setup)");
    assert!(
        out.status.success(),
        "jq failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn the_seeds_jq_recipes_work_on_our_files() {
    let (_llmux, file, _dir) = capture_run("", 2).await;
    // Count requests by backend.
    let backends = jq(
        r#"select(.direction=="outbound_request") | .backend"#,
        &file,
    );
    assert_eq!(backends.lines().filter(|l| *l == "fake").count(), 4);
    // Extract all user messages.
    let users = jq(
        r#"select(.direction=="outbound_request") | .payload.messages[]? | select(.role=="user") | .content"#,
        &file,
    );
    assert_eq!(
        users.lines().collect::<Vec<_>>(),
        ["question 0", "question 0", "question 1", "question 1"]
    );
    // Find failed requests (none here).
    let failed = jq(
        r#"select(.direction=="inbound_response" and (.payload.error or .payload.choices == null))"#,
        &file,
    );
    assert!(failed.trim().is_empty(), "{failed}");
    // Token usage by model.
    let usage = jq(
        r#"select(.direction=="inbound_response" and .payload.usage) | "\(.model) \(.payload.usage.total_tokens // (.payload.usage.prompt_tokens + .payload.usage.completion_tokens))""#,
        &file,
    );
    assert_eq!(
        usage.lines().collect::<Vec<_>>(),
        ["fake-small 16", "fake-small 16"]
    );
}

#[tokio::test]
async fn files_rotate_and_stay_under_their_caps() {
    let (_llmux, file, dir) = capture_run(
        ", max_bytes = 3000, max_files = 2, total_max_bytes = 9000, max_entries_per_flush = 1",
        12,
    )
    .await;
    let name = file.file_name().unwrap().to_str().unwrap().to_owned();
    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [name.clone(), format!("{name}.1"), format!("{name}.2")]
    );
    let total: u64 = files
        .iter()
        .map(|f| std::fs::metadata(dir.path().join(f)).unwrap().len())
        .sum();
    // Each file may exceed max_bytes by one flush (one record here).
    assert!(total < 9000 + 3 * 4000, "{total}");
    for f in &files {
        for line in std::fs::read_to_string(dir.path().join(f)).unwrap().lines() {
            serde_json::from_str::<Value>(line).expect("every line is whole JSON");
        }
    }
}

#[tokio::test]
async fn keys_pasted_into_prompts_are_masked_in_the_capture() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wire.jsonl");
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let toml = format!(
        "capture = {{ file = \"{}\", flush_interval = 0.05 }}\n{}",
        file.display(),
        fake_backend_config(&fake.base_url, "")
    );
    let proxy_key = "proxy-key-abcdef-987";
    let llmux = start(
        config(&toml, &[("LLM_INTERACTIVE_PROXY_API_KEY", proxy_key)]),
        &[("FAKE_API_KEY", KEY)],
    )
    .await;
    let request = json!({"model": "fake-small", "messages": [{"role": "user",
        "content": format!("my keys are {KEY} and {proxy_key}, keep them safe")}]});
    let response = client()
        .post(llmux.url("/v1/chat/completions"))
        .bearer_auth(proxy_key)
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    llmux
        .engine
        .capture()
        .unwrap()
        .flush(Duration::from_secs(5));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("my keys are **** and ****, keep them safe"),
        "{text}"
    );
    assert!(!text.contains(KEY) && !text.contains(proxy_key));
}
