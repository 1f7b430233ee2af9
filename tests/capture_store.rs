//! The SQLite capture store: every request recorded with both wire legs, searchable through
//! the admin API, kept across restarts, with keys masked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use llmux::capture::store::{Query, Store};
use serde_json::{Value, json};
use support::fake_openai::{FakeOpenAi, Mode};
use support::{client, config, fake_backend_config, start};

const KEY: &str = "sk-store-secret-key-456";
const PROXY_KEY: &str = "proxy-store-key";

async fn store_run(mode: Mode, dir: &tempfile::TempDir) -> support::Llmux {
    let db = dir.path().join("capture.sqlite");
    let fake = FakeOpenAi::start(mode).await;
    let toml = format!(
        "capture = {{ db = \"{}\", flush_interval = 0.02 }}\n{}",
        db.display(),
        fake_backend_config(&fake.base_url, "")
    );
    start(
        config(&toml, &[("LLM_INTERACTIVE_PROXY_API_KEY", PROXY_KEY)]),
        &[("FAKE_API_KEY", KEY)],
    )
    .await
}

async fn chat(llmux: &support::Llmux, prompt: &str, stream: bool) -> u16 {
    let request = json!({"model": "fake-small", "stream": stream,
        "messages": [{"role": "user", "content": prompt}]});
    let response = client()
        .post(llmux.url("/v1/chat/completions"))
        .bearer_auth(PROXY_KEY)
        .header("user-agent", "Cline/1.0")
        .header("x-session-id", "session-store")
        .json(&request)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    response.text().await.unwrap();
    status
}

async fn admin(llmux: &support::Llmux, path: &str) -> (u16, Value) {
    support::get_json(llmux, path, PROXY_KEY).await
}

async fn delete(llmux: &support::Llmux, id: &str) {
    let deleted = client()
        .delete(llmux.url(&format!("/admin/api/requests/{id}")))
        .bearer_auth(PROXY_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
}

fn flush(llmux: &support::Llmux) {
    llmux.engine.store().unwrap().flush(Duration::from_secs(5));
}

#[tokio::test]
async fn requests_are_recorded_and_searchable() {
    let dir = tempfile::tempdir().unwrap();
    let llmux = store_run(Mode::Normal, &dir).await;
    assert_eq!(chat(&llmux, "tell me about pelicans", false).await, 200);
    assert_eq!(chat(&llmux, "and now about herons", true).await, 200);
    // A key llmux does not know, pasted into a prompt, is masked by its shape.
    let pasted = "sk-ant-api03-pastedPastedPASTED0123456789";
    assert_eq!(
        chat(&llmux, &format!("why does {pasted} fail"), false).await,
        200
    );
    flush(&llmux);

    let (_, masked) = admin(&llmux, "/admin/api/export?q=fail").await;
    assert!(!masked.to_string().contains("pastedPasted"), "{masked}");
    let (_, masked) = admin(&llmux, "/admin/api/requests?q=fail").await;
    let masked_id = masked["data"][0]["id"].as_str().unwrap();
    let (_, masked) = admin(&llmux, &format!("/admin/api/requests/{masked_id}")).await;
    assert!(
        masked["client_request"]
            .as_str()
            .unwrap()
            .contains("why does **** fail")
    );
    assert!(!masked.to_string().contains("pastedPasted"));
    delete(&llmux, masked_id).await;

    let (status, listed) = admin(&llmux, "/admin/api/requests").await;
    assert_eq!(status, 200);
    let rows = listed["data"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    // Newest first.
    assert_eq!(rows[0]["prompt_text"], "and now about herons");
    assert_eq!(rows[0]["stream"], true);
    assert_eq!(rows[1]["stream"], false);
    for row in rows {
        assert_eq!(row["status"], 200);
        assert_eq!(row["backend"], "fake");
        assert_eq!(row["model_used"], "fake-small");
        assert_eq!(row["frontend"], "openai_chat");
        assert_eq!(row["session_id"], "session-store");
        assert_eq!(row["user_agent"], "Cline/1.0");
        assert!(!row["response_text"].as_str().unwrap().is_empty());
        assert!(row["output_tokens"].as_u64().unwrap() > 0);
        assert_eq!(
            row["tokens_estimated"], false,
            "the provider reported usage"
        );
        let (latency, ttfb, upstream) = (
            row["latency_ms"].as_f64().unwrap(),
            row["ttfb_ms"].as_f64().unwrap(),
            row["upstream_ms"].as_f64().unwrap(),
        );
        assert!(
            ttfb > 0.0 && ttfb <= latency,
            "ttfb {ttfb} latency {latency}"
        );
        assert!(upstream > 0.0 && upstream <= latency, "upstream {upstream}");
        // The list leaves the bodies out.
        assert_eq!(row["client_request"], "");
    }

    let (_, found) = admin(&llmux, "/admin/api/requests?q=herons").await;
    let found = found["data"].as_array().unwrap();
    assert_eq!(found.len(), 1);
    let id = found[0]["id"].as_str().unwrap();

    let (status, row) = admin(&llmux, &format!("/admin/api/requests/{id}")).await;
    assert_eq!(status, 200);
    assert!(row["client_request"].as_str().unwrap().contains("herons"));
    assert!(row["upstream_request"].as_str().unwrap().contains("herons"));
    // The provider's status and headers, credentials masked.
    let upstream_headers: Value =
        serde_json::from_str(row["upstream_headers"].as_str().unwrap()).unwrap();
    assert_eq!(upstream_headers[":status"], 200, "{upstream_headers}");
    assert!(
        upstream_headers["content-type"]
            .as_str()
            .unwrap()
            .starts_with("text/event-stream"),
        "{upstream_headers}"
    );
    // The stream's frames, one per line after their arrival time.
    let frames: Vec<&str> = row["upstream_response"].as_str().unwrap().lines().collect();
    assert!(frames.len() > 2);
    let mut last_ms = 0.0;
    for frame in &frames {
        let (ms, data) = frame.split_once('\t').unwrap();
        let ms: f64 = ms.parse().unwrap();
        assert!(ms >= last_ms, "arrival times only grow: {frame}");
        last_ms = ms;
        assert!(data.starts_with('{') || data == "[DONE]", "{data}");
    }
    // The client leg: the SSE the client got, through its end.
    let sent = row["client_response"].as_str().unwrap();
    assert!(sent.starts_with("data: {"), "{sent}");
    assert!(sent.trim_end().ends_with("data: [DONE]"), "{sent}");

    let (_, first) = admin(&llmux, "/admin/api/requests?q=pelicans").await;
    let first_id = first["data"][0]["id"].as_str().unwrap();
    let (_, plain) = admin(&llmux, &format!("/admin/api/requests/{first_id}")).await;
    let sent: Value = serde_json::from_str(plain["client_response"].as_str().unwrap()).unwrap();
    assert_eq!(sent["object"], "chat.completion");
    assert!(!row.to_string().contains(KEY));
    assert!(!row.to_string().contains(PROXY_KEY));
    let headers: Value = serde_json::from_str(row["client_headers"].as_str().unwrap()).unwrap();
    assert_eq!(headers["user-agent"], "Cline/1.0");
    assert_eq!(headers["x-session-id"], "session-store");
    assert_eq!(
        headers["authorization"], "****",
        "credentials are masked whole"
    );

    let (_, none) = admin(&llmux, "/admin/api/requests?q=flamingo").await;
    assert!(none["data"].as_array().unwrap().is_empty());
    let (_, filtered) = admin(&llmux, "/admin/api/requests?status=500").await;
    assert!(filtered["data"].as_array().unwrap().is_empty());
    let started = rows[1]["started_at"].as_f64().unwrap();
    let (_, later) = admin(
        &llmux,
        &format!("/admin/api/requests?since={}", started + 0.0001),
    )
    .await;
    assert_eq!(
        later["data"].as_array().unwrap().len(),
        1,
        "only the newer one"
    );
    let (_, earlier) = admin(
        &llmux,
        &format!("/admin/api/requests?until={}", started + 0.0001),
    )
    .await;
    assert_eq!(earlier["data"][0]["prompt_text"], "tell me about pelicans");
    let (_, paged) = admin(&llmux, "/admin/api/requests?limit=1&offset=1").await;
    assert_eq!(paged["data"][0]["prompt_text"], "tell me about pelicans");

    let export = client()
        .get(llmux.url("/admin/api/export?q=pelicans"))
        .bearer_auth(PROXY_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(export.headers()["content-type"], "application/x-ndjson");
    let exported: Vec<Value> = export
        .text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(exported.len(), 1);
    assert!(
        exported[0]["client_request"]
            .as_str()
            .unwrap()
            .contains("pelicans")
    );

    let (status, by_backend) = admin(&llmux, "/admin/api/usage?by=backend").await;
    assert_eq!(status, 200);
    assert_eq!(by_backend["data"][0]["group"], "fake");
    assert_eq!(by_backend["data"][0]["requests"], 2);
    let (_, by_day) = admin(&llmux, "/admin/api/usage").await;
    assert_eq!(by_day["by"], "day");
    assert_eq!(by_day["data"].as_array().unwrap().len(), 1);
    let (status, bad) = admin(&llmux, "/admin/api/usage?by=weather").await;
    assert_eq!(status, 400);
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap()
            .contains("weather")
    );

    let (status, stats) = admin(&llmux, "/admin/api/stats").await;
    assert_eq!(status, 200);
    assert_eq!(stats["requests"], 2);
    assert_eq!(stats["dropped"], 0);
    assert_eq!(stats["backends"][0]["backend"], "fake");
    assert_eq!(stats["backends"][0]["errors"], 0);

    delete(&llmux, id).await;
    let (status, _) = admin(&llmux, &format!("/admin/api/requests/{id}")).await;
    assert_eq!(status, 404);
    let (_, gone) = admin(&llmux, "/admin/api/requests?q=herons").await;
    assert!(gone["data"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn provider_errors_are_recorded_with_their_status() {
    let dir = tempfile::tempdir().unwrap();
    let llmux = store_run(Mode::Status(503), &dir).await;
    assert_eq!(chat(&llmux, "will this fail", false).await, 503);
    flush(&llmux);
    let (_, listed) = admin(&llmux, "/admin/api/requests?status=503").await;
    let rows = listed["data"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert!(!rows[0]["error"].as_str().unwrap().is_empty());
    assert_eq!(rows[0]["prompt_text"], "will this fail");
}

#[tokio::test]
async fn recorded_requests_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut llmux = store_run(Mode::Normal, &dir).await;
    chat(&llmux, "remember this one", false).await;
    flush(&llmux);
    llmux.shutdown();
    drop(llmux);

    let store = Store::open(
        dir.path().join("capture.sqlite"),
        Duration::from_millis(20),
        Vec::new(),
    )
    .unwrap();
    assert_eq!(store.count().unwrap(), 1);
    let rows = store
        .list(&Query {
            text: Some("remember".into()),
            limit: 10,
            ..Query::default()
        })
        .unwrap();
    assert_eq!(rows.len(), 1);
}

#[tokio::test]
async fn admin_api_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let llmux = store_run(Mode::Normal, &dir).await;
    let (status, body) = admin(&llmux, "/admin/api/requests/no-such-id").await;
    assert_eq!(status, 404);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no recorded request")
    );
    let (status, body) = admin(&llmux, "/admin/api/requests?limit=lots").await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("limit"));

    let response = client()
        .get(llmux.url("/admin/api/requests"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401, "the admin API needs the proxy key");

    // Without a store the API says how to turn it on.
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let plain = start(
        config(&fake_backend_config(&fake.base_url, ""), &[]),
        &[("FAKE_API_KEY", KEY)],
    )
    .await;
    let response = client()
        .get(plain.url("/admin/api/requests"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--capture-db")
    );
}

#[tokio::test]
async fn a_captured_request_replays_as_a_curl_command() {
    let dir = tempfile::tempdir().unwrap();
    let llmux = store_run(Mode::Normal, &dir).await;
    chat(&llmux, "replay me please", false).await;
    flush(&llmux);
    let (_, listed) = admin(&llmux, "/admin/api/requests").await;
    let id = listed["data"][0]["id"].as_str().unwrap().to_owned();
    let command = client()
        .get(llmux.url(&format!("/admin/api/requests/{id}/curl")))
        .bearer_auth(PROXY_KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(command.starts_with("curl "), "{command}");
    assert!(
        !command.contains(PROXY_KEY),
        "the key stays in the environment"
    );
    let output = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(&command)
        .env("LLMUX_API_KEY", PROXY_KEY)
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["object"], "chat.completion");
    flush(&llmux);
    let (_, again) = admin(&llmux, "/admin/api/requests?q=replay").await;
    assert_eq!(
        again["data"].as_array().unwrap().len(),
        2,
        "the replay was recorded too"
    );
}

#[tokio::test]
async fn a_stream_the_client_abandons_is_recorded_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let llmux = store_run(Mode::Endless, &dir).await;
    let request = json!({"model": "fake-small", "stream": true,
        "messages": [{"role": "user", "content": "never ending story"}]});
    let mut response = client()
        .post(llmux.url("/v1/chat/completions"))
        .bearer_auth(PROXY_KEY)
        .json(&request)
        .send()
        .await
        .unwrap();
    // Two chunks arrive, then the client leaves.
    for _ in 0..2 {
        response.chunk().await.unwrap().unwrap();
    }
    drop(response);
    // The row is written once the server notices; bounded wait.
    let mut rows = Vec::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        flush(&llmux);
        let (_, listed) = admin(&llmux, "/admin/api/requests?q=never").await;
        rows = listed["data"].as_array().unwrap().clone();
        if !rows.is_empty() {
            break;
        }
    }
    assert_eq!(rows.len(), 1, "the abandoned request was recorded");
    assert_eq!(rows[0]["error"], "client disconnected");
    assert!(!rows[0]["response_text"].as_str().unwrap().is_empty());
    // No usage came from the provider: the counts are the o200k tokenizer's, marked as an
    // estimate.
    assert_eq!(rows[0]["tokens_estimated"], true);
    let tokenizer = tiktoken_rs::o200k_base_singleton();
    let answer = rows[0]["response_text"].as_str().unwrap();
    assert_eq!(
        rows[0]["input_tokens"].as_u64().unwrap(),
        tokenizer.count_ordinary("never ending story") as u64
    );
    assert_eq!(
        rows[0]["output_tokens"].as_u64().unwrap(),
        tokenizer.count_ordinary(answer) as u64
    );
}

/// One request with one function tool, in `frontend`'s wire (path, body), streamed or not.
fn tool_request(frontend: &str, stream: bool) -> (String, Value) {
    let schema = json!({"type": "object", "properties": {"path": {"type": "string"}}});
    let user = "read the file";
    match frontend {
        "anthropic" => (
            "/v1/messages".into(),
            json!({"model": "mock:mock-model", "max_tokens": 64, "stream": stream,
                "tools": [{"name": "read_file", "input_schema": schema}],
                "messages": [{"role": "user", "content": user}]}),
        ),
        "openai_responses" => (
            "/v1/responses".into(),
            json!({"model": "mock:mock-model", "stream": stream, "input": user,
                "tools": [{"type": "function", "name": "read_file", "parameters": schema}]}),
        ),
        "gemini" => {
            // Gemini's default stream is one JSON array, which the inspector used to be
            // unable to read back.
            let method = if stream {
                "streamGenerateContent"
            } else {
                "generateContent"
            };
            (
                format!("/v1beta/models/mock:mock-model:{method}"),
                json!({"contents": [{"role": "user", "parts": [{"text": user}]}],
                    "tools": [{"functionDeclarations": [{"name": "read_file",
                        "parameters": schema}]}]}),
            )
        }
        _ => (
            "/v1/chat/completions".into(),
            json!({"model": "mock:mock-model", "stream": stream,
                "tools": [{"type": "function", "function": {"name": "read_file",
                    "parameters": schema}}],
                "messages": [{"role": "user", "content": user}]}),
        ),
    }
}

#[tokio::test]
async fn the_answers_tool_calls_are_recorded_whatever_the_client_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let llmux = store_run(Mode::Normal, &dir).await;
    for frontend in ["openai_chat", "openai_responses", "anthropic", "gemini"] {
        for stream in [false, true] {
            let (path, body) = tool_request(frontend, stream);
            let response = client()
                .post(llmux.url(&path))
                .bearer_auth(PROXY_KEY)
                .header("x-api-key", PROXY_KEY)
                .header("x-session-id", format!("tools-{frontend}-{stream}"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{frontend} stream={stream}");
            response.text().await.unwrap();
        }
    }
    flush(&llmux);
    let (status, listed) = admin(&llmux, "/admin/api/requests?limit=20").await;
    assert_eq!(status, 200);
    let rows = listed["data"].as_array().unwrap();
    assert_eq!(rows.len(), 8, "{listed}");
    for row in rows {
        let id = row["id"].as_str().unwrap();
        let (_, full) = admin(&llmux, &format!("/admin/api/requests/{id}")).await;
        let calls = full["tool_calls"].as_array().unwrap();
        let what = format!("{} stream={}", full["frontend"], full["stream"]);
        assert_eq!(calls.len(), 1, "{what}: {full}");
        assert_eq!(calls[0]["name"], "read_file", "{what}");
        assert_eq!(
            calls[0]["arguments"], "{}",
            "{what}: the mock calls with {{}}"
        );
    }
}
