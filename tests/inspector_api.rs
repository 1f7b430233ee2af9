//! What the inspector needs beyond listing: replay to another back-end or model, totals over
//! time, and the built UI at /ui.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use support::fake_openai::{FakeOpenAi, Mode};
use support::{client, config, fake_backend_config, start};

const PROXY_KEY: &str = "proxy-inspector-key";

async fn run(dir: &tempfile::TempDir) -> (support::Llmux, FakeOpenAi) {
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let toml = format!(
        "capture = {{ db = \"{}\", flush_interval = 0.02 }}\n{}",
        dir.path().join("capture.sqlite").display(),
        fake_backend_config(&fake.base_url, "")
    );
    let llmux = start(
        config(&toml, &[("LLM_INTERACTIVE_PROXY_API_KEY", PROXY_KEY)]),
        &[("FAKE_API_KEY", "sk-inspector-fake-key")],
    )
    .await;
    (llmux, fake)
}

async fn chat(llmux: &support::Llmux, prompt: &str) {
    let response = client()
        .post(llmux.url("/v1/chat/completions"))
        .bearer_auth(PROXY_KEY)
        .json(&json!({"model": "fake-small", "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": prompt}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap();
    llmux.engine.store().unwrap().flush(Duration::from_secs(5));
}

async fn get(llmux: &support::Llmux, path: &str) -> (u16, Value) {
    support::get_json(llmux, path, PROXY_KEY).await
}

async fn replay(llmux: &support::Llmux, id: &str, body: &str) -> (u16, Value) {
    let response = client()
        .post(llmux.url(&format!("/admin/api/requests/{id}/replay")))
        .bearer_auth(PROXY_KEY)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn newest_id(llmux: &support::Llmux) -> String {
    let (_, listed) = get(llmux, "/admin/api/requests?limit=1").await;
    listed["data"][0]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_replay_goes_to_the_chosen_backend_and_is_captured_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (llmux, fake) = run(&dir).await;
    chat(&llmux, "replay this streamed question").await;
    let original = newest_id(&llmux).await;
    assert_eq!(fake.hit_count(), 1);

    let (status, replayed) = replay(
        &llmux,
        &original,
        r#"{"backend": "mock", "model": "mock-model"}"#,
    )
    .await;
    assert_eq!(status, 200, "{replayed}");
    assert_eq!(replayed["status"], 200);
    assert_eq!(replayed["model"], "mock:mock-model");
    assert_eq!(
        replayed["body"]["object"], "chat.completion",
        "not streamed"
    );
    assert_eq!(fake.hit_count(), 1, "the mock answered, not the provider");

    // Readable as soon as the replay call returns: no flush by the caller.
    let id = replayed["request_id"].as_str().unwrap();
    let (status, row) = get(&llmux, &format!("/admin/api/requests/{id}")).await;
    assert_eq!(status, 200, "{row}");
    assert_eq!(row["backend"], "mock");
    assert_eq!(row["model_used"], "mock-model");
    assert_eq!(row["session_id"], format!("replay-{original}"));
    assert_eq!(row["user_agent"], "llmux-replay");
    assert_eq!(row["stream"], false);
    let sent: Value = serde_json::from_str(row["client_request"].as_str().unwrap()).unwrap();
    assert!(sent.get("stream_options").is_none(), "{sent}");

    // No target: the same request to the same back-end again.
    let (status, again) = replay(&llmux, &original, "{}").await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(fake.hit_count(), 2);
    assert_eq!(fake.last_request().body["model"], "fake-small");
    assert_eq!(fake.last_request().body["stream"], Value::Null);
}

#[tokio::test]
async fn replay_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let (llmux, _fake) = run(&dir).await;
    chat(&llmux, "something to replay").await;
    let id = newest_id(&llmux).await;

    let (status, body) = replay(&llmux, "req_missing", "{}").await;
    assert_eq!(status, 404);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no recorded request")
    );

    let (status, body) = replay(&llmux, &id, "{not json").await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bad replay body"),
        "{body}"
    );

    let (status, body) = replay(&llmux, &id, r#"{"backend": "nowhere"}"#).await;
    assert_eq!(status, 400);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("\"nowhere\"")
            && message.contains("fake, gemini,")
            && message.contains("mock"),
        "{message}"
    );

    let unauthenticated = client()
        .post(llmux.url(&format!("/admin/api/requests/{id}/replay")))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
}

#[tokio::test]
async fn the_timeline_totals_requests_per_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let (llmux, _fake) = run(&dir).await;
    chat(&llmux, "first").await;
    chat(&llmux, "second").await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();

    let (status, timeline) = get(
        &llmux,
        &format!("/admin/api/timeline?since={}&bucket=60", now - 300.0),
    )
    .await;
    assert_eq!(status, 200, "{timeline}");
    assert_eq!(timeline["bucket"], 60.0);
    let points = timeline["data"].as_array().unwrap();
    let requests: u64 = points.iter().map(|p| p["requests"].as_u64().unwrap()).sum();
    assert_eq!(requests, 2, "{timeline}");
    assert!(
        points
            .iter()
            .all(|p| p["start"].as_f64().unwrap() % 60.0 == 0.0)
    );
    assert!(
        points
            .iter()
            .any(|p| p["output_tokens"].as_u64().unwrap() > 0)
    );

    // Without parameters: the last day in about 60 buckets.
    let (_, day) = get(&llmux, "/admin/api/timeline").await;
    assert_eq!(day["bucket"], 1440.0);

    let (status, body) = get(&llmux, "/admin/api/timeline?bucket=wide").await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bad query")
    );
}

#[tokio::test]
async fn the_ui_is_served_at_ui_without_auth_and_only_its_own_files() {
    let dir = tempfile::tempdir().unwrap();
    let (llmux, _fake) = run(&dir).await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let bare = no_redirects.get(llmux.url("/ui")).send().await.unwrap();
    assert_eq!(bare.status(), 308);
    assert_eq!(bare.headers()["location"], "/ui/");

    let page = client().get(llmux.url("/ui/")).send().await.unwrap();
    let built = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("ui/dist/index.html")
        .exists();
    if built {
        assert_eq!(page.status(), 200);
        assert_eq!(page.headers()["content-type"], "text/html");
        assert_eq!(page.headers()["cache-control"], "no-cache");
        assert!(page.text().await.unwrap().contains("<div id=\"root\">"));
    } else {
        assert_eq!(page.status(), 503);
        assert!(page.text().await.unwrap().contains("The UI is not built"));
    }

    for path in [
        "/ui/%2e%2e/Cargo.toml",
        "/ui/..%2fCargo.toml",
        "/ui/assets/missing.js",
    ] {
        let response = client().get(llmux.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        assert!(
            !response.text().await.unwrap().contains("[package]"),
            "{path}"
        );
    }
    // The data behind the pages still needs the key.
    let stats = client()
        .get(llmux.url("/admin/api/stats"))
        .send()
        .await
        .unwrap();
    assert_eq!(stats.status(), 401);
}

#[tokio::test]
async fn requests_llmux_cannot_read_are_recorded_with_their_error() {
    let dir = tempfile::tempdir().unwrap();
    let (llmux, fake) = run(&dir).await;
    // Bodies that are not JSON are 400s, a field of the wrong type a 422.
    for (path, body, status) in [
        (
            "/v1/chat/completions",
            "{\"model\": \"fake-small\", \"messages\": ",
            400,
        ),
        ("/v1/messages", "{\"model\": 5}", 422),
        ("/v1beta/models/fake-small:generateContent", "[1, 2]", 400),
        ("/v1/responses", "not json at all", 400),
    ] {
        let response = client()
            .post(llmux.url(path))
            .bearer_auth(PROXY_KEY)
            .header("content-type", "application/json")
            .header("x-session-id", "broken-client")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{path}");
    }
    assert_eq!(fake.hit_count(), 0, "nothing reached the provider");
    llmux.engine.store().unwrap().flush(Duration::from_secs(5));

    let mut listed: Vec<Value> = Vec::new();
    for status in [400, 422] {
        let export = client()
            .get(llmux.url(&format!("/admin/api/export?status={status}")))
            .bearer_auth(PROXY_KEY)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        listed.extend(export.lines().map(|line| {
            let row: Value = serde_json::from_str(line).unwrap();
            assert_eq!(row["status"], status, "{row}");
            row
        }));
    }
    assert_eq!(listed.len(), 4, "{listed:?}");
    let frontends: Vec<&str> = listed
        .iter()
        .map(|r| r["frontend"].as_str().unwrap())
        .collect();
    for frontend in ["openai_chat", "anthropic", "gemini", "openai_responses"] {
        assert!(frontends.contains(&frontend), "{frontends:?}");
    }
    for row in &listed {
        assert!(!row["error"].as_str().unwrap().is_empty(), "{row}");
        assert!(!row["client_request"].as_str().unwrap().is_empty(), "{row}");
        // What the client got back is there too, in its own protocol's error shape.
        assert!(
            row["client_response"].as_str().unwrap().contains("error"),
            "{row}"
        );
        assert_eq!(row["upstream_request"], "");
    }
}

#[tokio::test]
async fn anthropic_and_gemini_requests_replay_in_their_own_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let (llmux, _fake) = run(&dir).await;
    let anthropic = client()
        .post(llmux.url("/v1/messages"))
        .bearer_auth(PROXY_KEY)
        .header("anthropic-version", "2023-06-01")
        .json(
            &json!({"model": "fake-small", "max_tokens": 50, "stream": true,
            "messages": [{"role": "user", "content": "replay me, anthropic"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(anthropic.status(), 200);
    anthropic.text().await.unwrap();
    let gemini = client()
        .post(llmux.url("/v1beta/models/fake-small:streamGenerateContent?alt=sse"))
        .bearer_auth(PROXY_KEY)
        .json(&json!({"contents": [{"role": "user", "parts": [{"text": "replay me, gemini"}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(gemini.status(), 200);
    gemini.text().await.unwrap();
    llmux.engine.store().unwrap().flush(Duration::from_secs(5));

    let id_of = |listed: &Value| listed["data"][0]["id"].as_str().unwrap().to_owned();
    let (_, listed) = get(&llmux, "/admin/api/requests?q=anthropic").await;
    let (status, replayed) = replay(
        &llmux,
        &id_of(&listed),
        r#"{"backend": "mock", "model": "mock-model"}"#,
    )
    .await;
    assert_eq!(status, 200, "{replayed}");
    assert_eq!(replayed["status"], 200, "{replayed}");
    assert_eq!(
        replayed["body"]["type"], "message",
        "an Anthropic answer: {replayed}"
    );
    let id = replayed["request_id"].as_str().unwrap();
    let (_, row) = get(&llmux, &format!("/admin/api/requests/{id}")).await;
    assert_eq!(row["frontend"], "anthropic");
    assert!(
        row["client_headers"]
            .as_str()
            .unwrap()
            .contains("2023-06-01"),
        "the protocol version goes along: {row}"
    );

    let (_, listed) = get(&llmux, "/admin/api/requests?q=gemini").await;
    let (status, replayed) = replay(
        &llmux,
        &id_of(&listed),
        r#"{"backend": "mock", "model": "mock-model"}"#,
    )
    .await;
    assert_eq!(status, 200, "{replayed}");
    assert_eq!(replayed["status"], 200, "{replayed}");
    assert!(
        replayed["body"]["candidates"].is_array(),
        "a Gemini answer: {replayed}"
    );
    assert_eq!(replayed["model"], "mock:mock-model");
    let id = replayed["request_id"].as_str().unwrap();
    let (_, row) = get(&llmux, &format!("/admin/api/requests/{id}")).await;
    assert_eq!(
        (row["frontend"].as_str(), row["backend"].as_str()),
        (Some("gemini"), Some("mock"))
    );
    assert_eq!(row["stream"], false);
}
