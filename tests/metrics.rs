//! `/metrics` in Prometheus' text format: requests counted by front-end, back-end and
//! outcome at their end, durations with the provider's share apart, tokens, connections;
//! behind the proxy key unless `[metrics] public = true`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use support::{Llmux, client, config, start};

async fn scrape(llmux: &Llmux, key: Option<&str>) -> (u16, String) {
    let mut request = client().get(llmux.url("/metrics"));
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The value of the sample named exactly `series` (name and labels as exported).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

async fn chat(llmux: &Llmux, model: &str, stream: bool) -> u16 {
    client()
        .post(llmux.url("/v1/chat/completions"))
        .json(&json!({"model": model, "stream": stream,
                      "messages": [{"role": "user", "content": "Hi"}]}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn requests_durations_and_tokens_are_exported_as_they_end() {
    let llmux = start(config("default_backend = \"mock\"\n", &[]), &[]).await;
    assert_eq!(chat(&llmux, "mock-model", false).await, 200);
    assert_eq!(chat(&llmux, "mock-model", true).await, 200);
    let refused = client()
        .post(llmux.url("/v1/chat/completions"))
        .json(&json!({"model": "mock-model"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 422, "a request without messages");
    let (status, text) = scrape(&llmux, None).await;
    assert_eq!(status, 200, "{text}");
    let ok = r#"llmux_requests_total{frontend="openai_chat",backend="mock",outcome="2xx"}"#;
    assert_eq!(sample(&text, ok), Some(2.0), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("llmux_requests_total{") && l.contains(r#"outcome="4xx""#)),
        "the refused request is counted as 4xx: {text}"
    );
    let streamed = r#"llmux_request_duration_seconds_count{frontend="openai_chat",stream="true"}"#;
    assert_eq!(sample(&text, streamed), Some(1.0), "{text}");
    assert_eq!(
        sample(&text, "llmux_overhead_seconds_count"),
        Some(1.0),
        "{text}"
    );
    let output = r#"llmux_tokens_total{backend="mock",direction="output"}"#;
    assert!(sample(&text, output).unwrap_or(0.0) > 0.0, "{text}");
    assert!(sample(&text, "llmux_open_connections").is_some(), "{text}");
    assert!(
        text.contains("# TYPE llmux_upstream_duration_seconds histogram"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
}

#[tokio::test]
async fn metrics_need_the_proxy_key_unless_public() {
    let key = [("LLM_INTERACTIVE_PROXY_API_KEY", "metrics-key")];
    let keyed = start(config("", &key), &[]).await;
    assert_eq!(scrape(&keyed, None).await.0, 401);
    assert_eq!(scrape(&keyed, Some("metrics-key")).await.0, 200);
    let public = start(config("[metrics]\npublic = true\n", &key), &[]).await;
    assert_eq!(scrape(&public, None).await.0, 200);
    // The rest still needs the key.
    assert_eq!(chat(&public, "mock-model", false).await, 401);
}
