//! Settings over the admin API, against the real binary: every value with its source, a
//! change checked by the engine's own validation, saved with the file's comments kept, and
//! applied by restarting the listeners.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::binary::{Llmux, free_port};

async fn get(addr: &str, path: &str) -> (u16, Value) {
    let response = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn put(addr: &str, change: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .put(format!("http://{addr}/admin/api/settings"))
        .json(&change)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// Whether this llmux no longer serves `addr`. Tests run in parallel, so a port freed here
/// may already belong to another test's llmux: that one is told apart by its config file.
async fn old_port_closed_or_reused(addr: &str, config: &std::path::Path) -> bool {
    let Ok(response) = reqwest::get(format!("http://{addr}/admin/api/settings")).await else {
        return true;
    };
    let settings: Value = response.json().await.unwrap_or_default();
    settings["file"] != config.display().to_string()
}

fn value_of<'a>(settings: &'a Value, key: &str) -> &'a Value {
    settings["values"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["key"] == key)
        .unwrap_or_else(|| panic!("no {key} in {settings}"))
}

#[tokio::test]
async fn changes_are_checked_saved_with_comments_kept_and_served() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("llmux.toml");
    let (first, second) = (free_port(), free_port());
    let original = format!(
        "# written by hand\ndefault_backend = \"mock\" # keyless\n\n[proxy]\nport = {first}\nanthropic_port = 0\n"
    );
    std::fs::write(&config, &original).unwrap();
    let llmux = Llmux::start(&config, &[]);
    let addr = llmux.next_address();
    assert_eq!(addr, format!("127.0.0.1:{first}"));

    let (status, settings) = get(&addr, "/admin/api/settings").await;
    assert_eq!(status, 200, "{settings}");
    assert_eq!(settings["file"], config.display().to_string());
    let port = value_of(&settings, "proxy.port");
    assert_eq!(port["value"], first);
    assert!(
        port["source"].as_str().unwrap().starts_with("file "),
        "{port}"
    );
    assert_eq!(value_of(&settings, "proxy.host")["source"], "default");
    let mock = settings["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == "mock")
        .unwrap();
    assert_eq!(
        (mock["builtin"].as_bool(), mock["requires_key"].as_bool()),
        (Some(true), Some(false))
    );

    // Invalid: the engine's own messages, each with its key; the file is untouched.
    let (status, refused) = put(
        &addr,
        json!({"set": {"proxy.port": 70000, "backends.local.type": "no-such-kind"}}),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["code"], "invalid_settings");
    let keys: Vec<&str> = refused["error"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["key"].as_str())
        .collect();
    assert!(
        keys.iter()
            .any(|k| k.starts_with("proxy.port") || k.starts_with("backends.local")),
        "{refused}"
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), original);

    // Valid: saved, comments kept, and served on the new port.
    let (status, saved) = put(
        &addr,
        json!({"set": {
            "proxy.port": second,
            "backends.local.type": "openai-compatible",
            "backends.local.base_url": "http://127.0.0.1:9/v1",
            "backends.local.models": ["local-model"],
        }}),
    )
    .await;
    assert_eq!(status, 200, "{saved}");
    let written = std::fs::read_to_string(&config).unwrap();
    assert!(
        written.starts_with("# written by hand\ndefault_backend = \"mock\" # keyless"),
        "{written}"
    );
    assert!(written.contains(&format!("port = {second}")), "{written}");
    assert!(written.contains("[backends.local]"), "{written}");
    let moved = llmux.next_address();
    assert_eq!(moved, format!("127.0.0.1:{second}"));
    let (_, health) = get(&moved, "/health").await;
    assert_eq!(health["status"], "ok");
    assert!(
        old_port_closed_or_reused(&addr, &config).await,
        "the old port still serves this llmux"
    );
    let (_, settings) = get(&moved, "/admin/api/settings").await;
    let local = settings["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == "local")
        .unwrap();
    assert_eq!(local["in_file"], true, "{local}");
    assert_eq!(local["builtin"], false);
    assert_eq!(local["models"], json!(["local-model"]));
    let (_, models) = get(&moved, "/v1/models").await;
    assert!(models.to_string().contains("local-model"), "{models}");

    // Removing the back-end's table takes it away again.
    let (status, _) = put(&moved, json!({"remove": ["backends.local"]})).await;
    assert_eq!(status, 200);
    let again = llmux.next_address();
    let (_, settings) = get(&again, "/admin/api/settings").await;
    assert!(!settings.to_string().contains("\"local\""), "{settings}");
}

#[tokio::test]
async fn values_an_environment_variable_sets_are_marked_and_a_change_to_them_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("llmux.toml");
    let port = free_port().to_string();
    std::fs::write(&config, "[proxy]\nport = 8000\nanthropic_port = 0\n").unwrap();
    let llmux = Llmux::start(&config, &[("LLM_BACKEND", "mock"), ("APP_PORT", &port)]);
    let addr = llmux.next_address();
    assert_eq!(addr, format!("127.0.0.1:{port}"), "APP_PORT beats the file");

    // A bad value under an override is still refused: it would apply once the override goes.
    let (status, refused) = put(&addr, json!({"set": {"proxy.port": 70000}})).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["problems"][0]["key"], "proxy.port");
    assert!(
        std::fs::read_to_string(&config)
            .unwrap()
            .contains("port = 8000")
    );

    let (_, settings) = get(&addr, "/admin/api/settings").await;
    let backend = value_of(&settings, "default_backend");
    assert_eq!(backend["source"], "environment LLM_BACKEND");
    assert_eq!(backend["overridden"], true);

    let (status, saved) = put(&addr, json!({"set": {"default_backend": "openai"}})).await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved["overridden"], json!(["default_backend"]));
    let addr = llmux.next_address();
    let (_, info) = get(&addr, "/").await;
    assert_eq!(
        info["default_backend"], "mock",
        "the environment still wins"
    );

    // A bad request body is refused in the OpenAI shape, naming what to send.
    let response = reqwest::Client::new()
        .put(format!("http://{addr}/admin/api/settings"))
        .header("content-type", "application/json")
        .body("{\"set\": 5}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bad settings change")
    );
}
