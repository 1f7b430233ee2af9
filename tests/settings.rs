//! Settings over the admin API, against the real binary: every value with its source, a
//! change checked by the engine's own validation, saved with the file's comments kept, and
//! applied: by a new engine on the same listeners (running streams unbroken), or by
//! restarting the listeners when the address or a port changed.
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

    // Removing the back-end's table takes it away again, without a restart.
    let (status, _) = put(&moved, json!({"remove": ["backends.local"]})).await;
    assert_eq!(status, 200);
    until_applied(&llmux, 1).await;
    let (_, models) = get(&moved, "/v1/models").await;
    assert!(!models.to_string().contains("local-model"), "{models}");
}

/// Waits until llmux has logged `count` changes applied without a restart.
async fn until_applied(llmux: &Llmux, count: usize) {
    for _ in 0..200 {
        if llmux
            .log()
            .matches("settings applied without a restart")
            .count()
            >= count
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the change was not applied:\n{}", llmux.log());
}

#[tokio::test]
async fn a_saved_change_is_served_next_while_a_running_stream_finishes_unbroken() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("llmux.toml");
    let port = free_port();
    std::fs::write(
        &config,
        format!(
            r#"default_backend = "slow"
[proxy]
port = {port}
anthropic_port = 0
[backends.slow]
type = "mock"
response_text = "one two three four five six seven eight"
chunks = 8
chunk_delay_ms = 150
[backends.fast]
type = "mock"
response_text = "from the new settings"
"#
        ),
    )
    .unwrap();
    let llmux = Llmux::start(&config, &[]);
    let addr = llmux.next_address();
    let client = reqwest::Client::new();
    let chat = |session: &str, content: &str, stream: bool| {
        client
            .post(format!("http://{addr}/v1/chat/completions"))
            .header("x-session-id", session)
            .json(&json!({"model": "any", "stream": stream,
                          "messages": [{"role": "user", "content": content}]}))
            .send()
    };
    // A session that chose its back-end before the change keeps it after.
    let chose = chat("kept", "!/backend(slow)", false).await.unwrap();
    assert_eq!(chose.status(), 200);

    let mut stream = chat("streaming", "Count.", true).await.unwrap();
    assert_eq!(stream.status(), 200);
    let mut body = String::new();
    while !body.contains("one") {
        body.push_str(&String::from_utf8_lossy(
            &stream.chunk().await.unwrap().unwrap(),
        ));
    }
    let (status, saved) = put(&addr, json!({"set": {"default_backend": "fast"}})).await;
    assert_eq!(status, 200, "{saved}");
    until_applied(&llmux, 1).await;

    let answer = |session: &'static str| {
        let reply = chat(session, "Hi", false);
        async move { support::answer_text(&reply.await.unwrap().text().await.unwrap(), false) }
    };
    assert_eq!(
        answer("new").await,
        "from the new settings",
        "the next request is served by the saved settings"
    );
    assert_eq!(
        answer("kept").await,
        "one two three four five six seven eight",
        "the session's own choice survived the change"
    );
    while let Some(chunk) = stream.chunk().await.unwrap() {
        body.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert_eq!(
        support::answer_text(&body, true),
        "one two three four five six seven eight",
        "{body}"
    );
    assert!(
        body.contains("data: [DONE]"),
        "the stream ended normally: {body}"
    );
    assert!(
        !llmux.log().contains("restarting the listeners"),
        "{}",
        llmux.log()
    );
    let (_, health) = get(&addr, "/health").await;
    assert_eq!(health["status"], "ok", "the same port serves on");
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
    until_applied(&llmux, 1).await;
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
