//! A full run of the real binary with known keys, both captures on and debug logging: no key
//! appears in the log, the JSONL capture, the SQLite file or any response body, whatever
//! the request did (success, stream, upstream 401, wrong proxy key, keys pasted in prompts).
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use support::fake_openai::{FakeOpenAi, Mode};

const PROVIDER_KEY: &str = "sk-sweep-provider-key-0123456789";
const BROKEN_KEY: &str = "broken-provider-key-987654";
const PROXY_KEY: &str = "proxy-sweep-key-abcdef";

#[tokio::test]
async fn no_key_reaches_a_log_a_capture_or_a_response() {
    let dir = tempfile::tempdir().unwrap();
    let good = FakeOpenAi::start(Mode::Normal).await;
    let broken = FakeOpenAi::start(Mode::Status(401)).await;
    let config = dir.path().join("llmux.toml");
    std::fs::write(
        &config,
        format!(
            "default_backend = \"good\"\n\
             [backends.good]\ntype = \"openai-compatible\"\nbase_url = \"{}\"\napi_key_env = \"GOOD_KEY\"\n\
             [backends.broken]\ntype = \"openai-compatible\"\nbase_url = \"{}\"\napi_key_env = \"BROKEN_KEY\"\n",
            good.base_url, broken.base_url
        ),
    )
    .unwrap();
    let wire = dir.path().join("wire.jsonl");
    let db = dir.path().join("capture.sqlite");
    let mut child = Command::new(env!("CARGO_BIN_EXE_llmux"))
        .arg("--config")
        .arg(&config)
        .args(["--port", "0", "--log-level", "debug"])
        .arg("--capture-file")
        .arg(&wire)
        .arg("--capture-db")
        .arg(&db)
        .current_dir(dir.path())
        .env_clear()
        .env("HOME", dir.path())
        .env("GOOD_KEY", PROVIDER_KEY)
        .env("BROKEN_KEY", BROKEN_KEY)
        .env("LLM_INTERACTIVE_PROXY_API_KEY", PROXY_KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut log = String::new();
        let mut lines = BufReader::new(stderr);
        loop {
            let mut line = String::new();
            if lines.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let _ = addr_tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
            }
            log.push_str(&line);
        }
        let mut rest = String::new();
        let _ = lines.read_to_string(&mut rest);
        log + &rest
    });
    let addr = tokio::task::spawn_blocking(move || addr_rx.recv_timeout(Duration::from_secs(20)))
        .await
        .unwrap()
        .expect("llmux did not start");

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let pasted = format!("my keys are {PROVIDER_KEY} and {PROXY_KEY}, why?");
    let mut bodies = Vec::new();
    for (model, stream, key) in [
        ("fake-small", false, PROXY_KEY),
        ("fake-small", true, PROXY_KEY),
        ("broken:fake-small", false, PROXY_KEY),
        ("broken:fake-small", true, PROXY_KEY),
        ("fake-small", false, "wrong-key-for-the-proxy"),
    ] {
        let response = client
            .post(format!("http://{addr}/v1/chat/completions"))
            .bearer_auth(key)
            .json(&json!({"model": model, "stream": stream,
                "messages": [{"role": "user", "content": pasted}]}))
            .send()
            .await
            .unwrap();
        bodies.push(format!(
            "{} {}",
            response.status(),
            response.text().await.unwrap()
        ));
    }
    assert!(bodies[0].starts_with("200"), "{}", bodies[0]);
    assert!(bodies[2].starts_with("401"), "{}", bodies[2]);
    assert!(bodies[4].starts_with("401"), "{}", bodies[4]);

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    let log = reader.join().unwrap();
    assert!(status.success(), "exit {status}:\n{log}");

    let wire_text = std::fs::read_to_string(&wire).unwrap();
    assert!(wire_text.lines().count() >= 6, "{wire_text}");
    assert!(
        wire_text.contains("my keys are ****"),
        "the prompt is there, masked"
    );
    assert!(
        log.contains("status=401"),
        "the failures were logged:\n{log}"
    );
    // The raw database bytes, WAL folded in at shutdown: free pages included.
    let db_bytes = std::fs::read(&db).unwrap();
    let db_text = String::from_utf8_lossy(&db_bytes);
    assert!(db_text.contains("why?"), "the store holds the prompts");
    // Bodies are stored zstd-compressed: read every row back whole through the store too.
    let store =
        llmux::capture::store::Store::open(&db, Duration::from_millis(20), Vec::new()).unwrap();
    let rows = store
        .list(&llmux::capture::store::Query {
            limit: 1000,
            with_bodies: true,
            ..Default::default()
        })
        .unwrap();
    let rows_text = serde_json::to_string(&rows).unwrap();
    assert!(rows_text.contains("my keys are ****"), "{rows_text}");
    for key in [PROVIDER_KEY, BROKEN_KEY, PROXY_KEY] {
        assert!(!log.contains(key), "{key} in the log:\n{log}");
        assert!(!wire_text.contains(key), "{key} in the wire capture");
        assert!(!db_text.contains(key), "{key} in the capture store");
        assert!(!rows_text.contains(key), "{key} in a stored row");
        for body in &bodies {
            assert!(!body.contains(key), "{key} in a response: {body}");
        }
    }
}
