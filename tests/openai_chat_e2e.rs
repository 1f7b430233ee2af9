//! OpenAI chat end to end over real HTTP: client -> llmux -> fake provider, all on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};
use support::fake_openai::{FakeOpenAi, Mode};
use support::{client, config, fake_backend_config, sse_data, start, streamed_text};

const KEY: &[(&str, &str)] = &[("FAKE_API_KEY", "sk-fake-upstream-secret")];

async fn llmux_for(fake: &FakeOpenAi, extra: &str) -> support::Llmux {
    start(
        config(&fake_backend_config(&fake.base_url, extra), &[]),
        KEY,
    )
    .await
}

fn chat(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "stream": stream,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello."}
        ]
    })
}

#[tokio::test]
async fn non_streaming_chat_reaches_the_provider_and_comes_back() {
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let llmux = llmux_for(&fake, "").await;
    let response = client()
        .post(llmux.url("/v1/chat/completions"))
        .json(&chat("fake-small", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "Hello from fake.");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["total_tokens"], 16);
    // Provider extras survive the round trip.
    assert_eq!(body["system_fingerprint"], "fp_fake");
    assert_eq!(body["choices"][0]["message"]["annotations"], json!([]));

    let upstream = fake.last_request();
    assert_eq!(upstream.body["model"], "fake-small");
    assert_eq!(upstream.body["messages"][0]["content"], "You are terse.");
    assert_eq!(
        upstream.headers["authorization"],
        "Bearer sk-fake-upstream-secret"
    );
    assert_eq!(fake.hit_count(), 1);
}

#[tokio::test]
async fn streaming_chat_forwards_chunks_and_usage_only_when_asked() {
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let llmux = llmux_for(&fake, "").await;
    let body = client()
        .post(llmux.url("/v1/chat/completions"))
        .json(&chat("fake-small", true))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let frames = sse_data(&body);
    assert_eq!(streamed_text(&frames), "Hello from fake.");
    assert_eq!(frames.last().map(String::as_str), Some("[DONE]"));
    assert!(
        !body.contains("\"usage\":{"),
        "usage sent without include_usage: {body}"
    );
    // llmux always asks upstream for usage, for its logs.
    assert_eq!(
        fake.last_request().body["stream_options"]["include_usage"],
        true
    );

    let mut request = chat("fake-small", true);
    request["stream_options"] = json!({"include_usage": true});
    let body = client()
        .post(llmux.url("/v1/chat/completions"))
        .json(&request)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let frames = sse_data(&body);
    let usage: Value = serde_json::from_str(&frames[frames.len() - 2]).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["total_tokens"], 16);
}

#[tokio::test]
async fn tool_calls_survive_streaming_and_not() {
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let llmux = llmux_for(&fake, "").await;
    let mut request = chat("fake-small", false);
    request["tools"] = json!([{"type": "function", "function": {
        "name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);
    request["tool_choice"] = json!("auto");

    let body: Value = client()
        .post(llmux.url("/v1/chat/completions"))
        .json(&request)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let call = &body["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], "{\"city\":\"Paris\"}");
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    // The tool schema reached the provider as sent.
    assert_eq!(fake.last_request().body["tools"], request["tools"]);

    request["stream"] = json!(true);
    let text = client()
        .post(llmux.url("/v1/chat/completions"))
        .json(&request)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut arguments = String::new();
    let mut name = None;
    let mut finish = None;
    for frame in sse_data(&text).iter().filter(|f| *f != "[DONE]") {
        let chunk: Value = serde_json::from_str(frame).unwrap();
        let choice = &chunk["choices"][0];
        if let Some(calls) = choice["delta"]["tool_calls"].as_array() {
            for call in calls {
                assert_eq!(call["index"], 0);
                if let Some(n) = call["function"]["name"].as_str() {
                    name = Some(n.to_owned());
                }
                arguments.push_str(call["function"]["arguments"].as_str().unwrap_or(""));
            }
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            finish = Some(f.to_owned());
        }
    }
    assert_eq!(name.as_deref(), Some("get_weather"));
    assert_eq!(arguments, "{\"city\":\"Paris\"}");
    assert_eq!(finish.as_deref(), Some("tool_calls"));
}

#[tokio::test]
async fn images_and_reasoning_fields_are_intact() {
    let fake = FakeOpenAi::start(Mode::Reasoning).await;
    let llmux = llmux_for(&fake, "").await;
    let content = json!([
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    ]);
    let request = json!({"model": "fake-small", "reasoning_effort": "high",
        "messages": [{"role": "user", "content": content}]});
    let body: Value = client()
        .post(llmux.url("/v1/chat/completions"))
        .json(&request)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["choices"][0]["message"]["reasoning_content"],
        "Thinking it over."
    );
    let upstream = fake.last_request().body;
    assert_eq!(upstream["messages"][0]["content"], content);
    assert_eq!(upstream["reasoning_effort"], "high");

    let mut request = request;
    request["stream"] = json!(true);
    let text = client()
        .post(llmux.url("/v1/chat/completions"))
        .json(&request)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let reasoning: String = sse_data(&text)
        .iter()
        .filter_map(|f| serde_json::from_str::<Value>(f).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["reasoning_content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(reasoning, "Thinking it over.");
}

#[tokio::test]
async fn upstream_error_statuses_and_messages_reach_the_client() {
    for status in [400u16, 401, 429, 500] {
        let fake = FakeOpenAi::start(Mode::Status(status)).await;
        let llmux = llmux_for(&fake, "").await;
        for stream in [false, true] {
            let response = client()
                .post(llmux.url("/v1/chat/completions"))
                .json(&chat("fake-small", stream))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), status, "stream={stream}");
            if status == 429 {
                assert_eq!(response.headers()["retry-after"], "7");
            }
            let body: Value = response.json().await.unwrap();
            let message = body["error"]["message"].as_str().unwrap();
            assert!(
                message.contains(&format!("fake says {status}")),
                "{message}"
            );
            assert!(message.contains("'fake'"), "names the back-end: {message}");
            assert!(!message.contains("sk-fake-upstream-secret"));
        }
    }
}

#[tokio::test]
async fn slow_first_byte_is_a_504_naming_the_backend() {
    let fake = FakeOpenAi::start(Mode::SlowFirstByte(Duration::from_secs(5))).await;
    let llmux = llmux_for(&fake, "first_byte_timeout_seconds = 0.3").await;
    let started = std::time::Instant::now();
    let response = client()
        .post(llmux.url("/v1/chat/completions"))
        .json(&chat("fake-small", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(4));
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("'fake'") && message.contains("first byte"),
        "{message}"
    );
}

/// Reads a streamed response to its end and returns its text.
async fn stream_text(llmux: &support::Llmux) -> String {
    let response = client()
        .post(llmux.url("/v1/chat/completions"))
        .json(&chat("fake-small", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    tokio::time::timeout(Duration::from_secs(10), response.text())
        .await
        .expect("the stream must end, never hang")
        .unwrap()
}

#[tokio::test]
async fn a_stall_mid_stream_ends_with_an_error_frame_not_done() {
    let fake = FakeOpenAi::start(Mode::StallMidStream).await;
    let llmux = llmux_for(&fake, "idle_timeout_seconds = 0.3").await;
    let text = stream_text(&llmux).await;
    let frames = sse_data(&text);
    assert_eq!(streamed_text(&frames), "Hel");
    let last: Value = serde_json::from_str(frames.last().unwrap()).unwrap();
    let message = last["error"]["message"].as_str().unwrap();
    assert!(message.contains("next chunk"), "{message}");
    assert!(!text.contains("[DONE]"));
}

#[tokio::test]
async fn a_dropped_connection_mid_stream_ends_with_an_error_frame() {
    let fake = FakeOpenAi::start(Mode::DropMidStream).await;
    let llmux = llmux_for(&fake, "").await;
    let text = stream_text(&llmux).await;
    let frames = sse_data(&text);
    let last: Value = serde_json::from_str(frames.last().unwrap()).unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'fake'")
    );
    assert!(!text.contains("[DONE]"));
}

#[tokio::test]
async fn garbage_sse_before_any_data_is_a_502() {
    let fake = FakeOpenAi::start(Mode::Garbage).await;
    let llmux = llmux_for(&fake, "").await;
    let response = client()
        .post(llmux.url("/v1/chat/completions"))
        .json(&chat("fake-small", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("this is not json")
    );
}

/// An OpenAI chat stream whose text deltas are `pieces`, as raw bytes a provider sends.
fn chat_stream_bytes<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> bytes::Bytes {
    let mut body = Vec::new();
    let mut frame = |delta: &[u8], finish: &str| {
        body.extend_from_slice(
            b"data: {\"id\":\"chatcmpl-raw\",\"object\":\"chat.completion.chunk\",\
              \"created\":1700000000,\"model\":\"fake-small\",\"choices\":[{\"index\":0,\
              \"delta\":{\"content\":\"",
        );
        body.extend_from_slice(delta);
        body.extend_from_slice(b"\"},\"finish_reason\":");
        body.extend_from_slice(finish.as_bytes());
        body.extend_from_slice(b"}]}\n\n");
    };
    for piece in pieces {
        frame(piece, "null");
    }
    frame(b"", "\"stop\"");
    body.extend_from_slice(b"data: [DONE]\n\n");
    body.into()
}

/// Streams `body` from the fake provider through llmux and returns the client's text, with
/// the stream's status.
async fn stream_through(body: bytes::Bytes) -> (u16, String, Vec<String>) {
    let fake = FakeOpenAi::start(Mode::SseBody(body)).await;
    let llmux = llmux_for(&fake, "").await;
    let response = client()
        .post(llmux.url("/v1/chat/completions"))
        .json(&chat("fake-small", true))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let frames = sse_data(&response.text().await.unwrap());
    (status, streamed_text(&frames), frames)
}

#[tokio::test]
async fn bytes_of_a_stream_that_are_not_utf8_read_as_replacement_characters() {
    // As a browser's EventSource reads them (WHATWG "interpreting an event stream"): a
    // stray byte costs the client one character, not the whole answer.
    let (status, text, frames) =
        stream_through(chat_stream_bytes([&b"caf\xc3"[..], b"\xa9 ok ", b"\xff!"])).await;
    assert_eq!(status, 200);
    assert_eq!(text, "caf\u{fffd}\u{fffd} ok \u{fffd}!");
    assert_eq!(frames.last().map(String::as_str), Some("[DONE]"));
}

#[tokio::test]
async fn a_burst_of_thousands_of_frames_in_one_read_arrives_whole_and_in_order() {
    let pieces: Vec<String> = (0..5000).map(|i| format!("{i} ")).collect();
    let (status, text, frames) =
        stream_through(chat_stream_bytes(pieces.iter().map(|p| p.as_bytes()))).await;
    assert_eq!(status, 200);
    assert_eq!(text, pieces.concat());
    assert_eq!(frames.last().map(String::as_str), Some("[DONE]"));
}

#[tokio::test]
async fn a_client_that_disconnects_cancels_the_upstream_request() {
    let fake = FakeOpenAi::start(Mode::Endless).await;
    let llmux = llmux_for(&fake, "").await;
    let mut response = client()
        .post(llmux.url("/v1/chat/completions"))
        .json(&chat("fake-small", true))
        .send()
        .await
        .unwrap();
    let first = response.chunk().await.unwrap();
    assert!(first.is_some());
    drop(response);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !fake.disconnected.load(Ordering::SeqCst) {
        assert!(
            std::time::Instant::now() < deadline,
            "upstream was not cancelled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_unreachable_backend_is_a_503_naming_it() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = config(
        &fake_backend_config(&format!("http://127.0.0.1:{port}/v1"), ""),
        &[],
    );
    let llmux = start(config, KEY).await;
    let response = client()
        .post(llmux.url("/v1/chat/completions"))
        .json(&chat("fake-small", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'fake' is unreachable")
    );
}

#[tokio::test]
async fn models_lists_each_backend_prefixed_and_the_default_plain() {
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let llmux = llmux_for(&fake, "").await;
    let body: Value = client()
        .get(llmux.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    for id in [
        "fake-small",
        "fake-large",
        "fake:fake-small",
        "fake:fake-large",
        "mock:mock-model",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    // Keyless built-ins with no key are skipped rather than failing the list.
    assert!(!ids.iter().any(|id| id.starts_with("openai:")));
}

#[tokio::test]
async fn health_and_info_answer() {
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let llmux = llmux_for(&fake, "").await;
    let health = client().get(llmux.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let info: Value = client()
        .get(llmux.url("/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["name"], "llmux");
    assert_eq!(info["default_backend"], "fake");
    assert!(
        info["backends"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["id"] == "fake")
    );
}

#[tokio::test]
async fn running_streams_finish_after_shutdown_starts() {
    let config = config(
        "default_backend = \"mock\"\n[backends.mock]\nchunks = 5\nchunk_delay_ms = 100\n",
        &[],
    );
    let mut llmux = start(config, &[]).await;
    let response = client()
        .post(llmux.url("/v1/chat/completions"))
        .json(&chat("mock-model", true))
        .send()
        .await
        .unwrap();
    llmux.shutdown();
    let text = tokio::time::timeout(Duration::from_secs(10), response.text())
        .await
        .unwrap()
        .unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert_eq!(
        streamed_text(&sse_data(&text)),
        "Hello from the llmux mock back-end."
    );
    tokio::time::timeout(Duration::from_secs(5), &mut llmux.task)
        .await
        .expect("server stops once the stream ended")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn model_lists_are_fetched_once_and_cached() {
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let llmux = llmux_for(&fake, "").await;
    for _ in 0..3 {
        let response = client().get(llmux.url("/v1/models")).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(fake.model_list_hits.load(Ordering::SeqCst), 1);
    assert_eq!(
        fake.requests.lock().unwrap().len(),
        0,
        "listing models sends no chat request"
    );
}

#[tokio::test]
async fn openrouter_sends_attribution_and_configured_headers() {
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let toml = format!(
        r#"default_backend = "openrouter"
[backends.openrouter]
base_url = "{}"
app_url = "https://example.org/my-app"
app_title = "My App"
headers = {{ "X-Custom" = "yes" }}
"#,
        fake.base_url
    );
    let llmux = start(config(&toml, &[]), &[("OPENROUTER_API_KEY", "sk-or-test")]).await;
    let response = client()
        .post(llmux.url("/v1/chat/completions"))
        .json(&chat("qwen/qwen3-coder:free", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let upstream = fake.last_request();
    assert_eq!(upstream.body["model"], "qwen/qwen3-coder:free");
    assert_eq!(
        upstream.headers["http-referer"],
        "https://example.org/my-app"
    );
    assert_eq!(upstream.headers["x-title"], "My App");
    assert_eq!(upstream.headers["x-openrouter-title"], "My App");
    assert_eq!(upstream.headers["x-custom"], "yes");
    assert_eq!(upstream.headers["authorization"], "Bearer sk-or-test");
}

#[tokio::test]
async fn unknown_request_fields_reach_a_same_protocol_backend() {
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let llmux = llmux_for(&fake, "").await;
    let mut request = chat("fake-small", false);
    request["metadata"] = json!({"run": "42"});
    request["prediction"] = json!({"type": "content", "content": "Hello"});
    request["messages"][1]["x_vendor_hint"] = json!(true);
    let response = client()
        .post(llmux.url("/v1/chat/completions"))
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let upstream = fake.last_request().body;
    assert_eq!(upstream["metadata"], request["metadata"]);
    assert_eq!(upstream["prediction"], request["prediction"]);
    assert_eq!(upstream["messages"][1]["x_vendor_hint"], true);
}
