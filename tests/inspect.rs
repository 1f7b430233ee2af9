//! `llmux inspect FILE`: a capture store browsed read-only, against the real binary. The
//! inspector's API lists what the file holds; requests through this llmux are not
//! recorded, a delete is refused, and the file is byte for byte what it was.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use llmux::capture::store::{RequestRow, Store};
use serde_json::{Value, json};
use support::binary::{Llmux, free_port};

/// A capture store with `ids`, written the way a running llmux writes it.
fn store_with(path: &std::path::Path, ids: &[&str]) {
    let store = Store::open(path, Duration::from_millis(10), Vec::new()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for (n, id) in ids.iter().enumerate() {
        store.insert(RequestRow {
            id: (*id).into(),
            started_at: now - n as f64,
            backend: "openai".into(),
            model_used: "gpt-5".into(),
            status: 200,
            prompt_text: format!("prompt of {id}"),
            response_text: "an answer".into(),
            ..RequestRow::default()
        });
    }
    store.flush(Duration::from_secs(5));
    store.checkpoint().unwrap();
}

fn digest(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[tokio::test]
async fn a_store_is_browsed_read_only_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("from-the-team-server.sqlite");
    store_with(&file, &["req_a", "req_b"]);
    let before = digest(&file);
    let port = free_port().to_string();
    let llmux = Llmux::start_args(
        &[
            "inspect",
            file.to_str().unwrap(),
            "--port",
            &port,
            "--anthropic-port",
            "0",
        ],
        dir.path(),
        &[],
    );
    let addr = llmux.next_address();
    let client = reqwest::Client::new();
    let listed: Value = client
        .get(format!("http://{addr}/admin/api/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, ["req_a", "req_b"], "{listed}");

    // A request through this llmux is answered and not recorded.
    let answered = client
        .post(format!("http://{addr}/v1/chat/completions"))
        .json(&json!({"model": "mock:mock-model", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), 200);
    let deleted = client
        .delete(format!("http://{addr}/admin/api/requests/req_a"))
        .send()
        .await
        .unwrap();
    assert_ne!(deleted.status(), 200, "a delete is refused");
    let refusal = deleted.text().await.unwrap();
    assert!(refusal.contains("read-only"), "{refusal}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again: Value = client
        .get(format!("http://{addr}/admin/api/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["data"].as_array().unwrap().len(), 2, "{again}");
    assert!(
        llmux.log().contains("read-only"),
        "the command says it records nothing: {}",
        llmux.log()
    );
    drop(llmux);
    assert!(digest(&file) == before, "the file changed");
}

#[test]
fn a_file_that_is_not_a_capture_store_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_store = dir.path().join("notes.txt");
    std::fs::write(&not_a_store, "hello").unwrap();
    let missing = dir.path().join("missing.sqlite");
    for (file, why) in [
        (&not_a_store, "not a capture store"),
        (&missing, "no such capture store"),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_llmux"))
            .args(["inspect", file.to_str().unwrap(), "--port", "0"])
            .env_clear()
            .env("HOME", dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert!(stderr.contains(why), "{stderr}");
        assert!(
            stderr.contains(file.file_name().unwrap().to_str().unwrap()),
            "{stderr}"
        );
    }
    assert_eq!(std::fs::read_to_string(&not_a_store).unwrap(), "hello");
    assert!(!missing.exists(), "nothing is created");
}
