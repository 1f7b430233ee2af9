//! Bad input gets a clear error in the client's protocol: never a panic, never a hang.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::{client, config, start};

async fn mock_llmux(extra: &str, env: &[(&str, &str)]) -> support::Llmux {
    let toml = format!("default_backend = \"mock\"\n{extra}");
    start(config(&toml, env), &[]).await
}

async fn post_raw(llmux: &support::Llmux, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let response = client()
        .post(llmux.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap()
}

#[tokio::test]
async fn invalid_json_is_a_400() {
    let llmux = mock_llmux("", &[]).await;
    let (status, body) = post_raw(&llmux, "{\"model\": \"mock-model\", \"messages\": [").await;
    assert_eq!(status, 400);
    assert!(message(&body).contains("not valid JSON"), "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn wrong_types_name_the_field() {
    let llmux = mock_llmux("", &[]).await;
    let cases = [
        (
            json!({"model": "mock-model", "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}),
            "temperature",
        ),
        (json!({"model": "mock-model", "messages": "hi"}), "messages"),
        (
            json!({"model": "mock-model", "messages": [{"role": "user", "content": 42}]}),
            "messages[0].content",
        ),
        (
            json!({"model": "mock-model", "messages": [{"role": "wizard", "content": "hi"}]}),
            "messages[0].role",
        ),
        (json!({"model": 7, "messages": []}), "model"),
        (
            json!({"messages": [{"role": "user", "content": "hi"}]}),
            "model",
        ),
        (
            json!({"model": "mock-model", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
            "messages[0].content[0].image_url",
        ),
    ];
    for (request, field) in cases {
        let (status, body) = post_raw(&llmux, request.to_string()).await;
        assert_eq!(status, 422, "{request}");
        assert!(
            message(&body).contains(field),
            "{field} not named in {body}"
        );
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413() {
    let llmux = mock_llmux("[proxy]\nmax_body_bytes = 4096\n", &[]).await;
    let big = "x".repeat(10_000);
    let request = json!({"model": "mock-model", "messages": [{"role": "user", "content": big}]});
    let (status, body) = post_raw(&llmux, request.to_string()).await;
    assert_eq!(status, 413);
    assert!(message(&body).contains("4096"), "{body}");

    // Without a Content-Length the limit still holds.
    let chunks: Vec<Result<String, std::io::Error>> = vec![
        Ok(request.to_string()[..5000].to_owned()),
        Ok(request.to_string()[5000..].to_owned()),
    ];
    let (status, _) = post_raw(
        &llmux,
        reqwest::Body::wrap_stream(futures::stream::iter(chunks)),
    )
    .await;
    assert_eq!(status, 413);
}

#[tokio::test]
async fn the_default_32_mib_limit_applies() {
    let llmux = mock_llmux("", &[]).await;
    assert_eq!(llmux.engine.config().max_body_bytes, 32 * 1024 * 1024);
    let big = "x".repeat(33 * 1024 * 1024);
    let request = format!(
        "{{\"model\":\"mock-model\",\"messages\":[{{\"role\":\"user\",\"content\":\"{big}\"}}]}}"
    );
    let (status, _) = post_raw(&llmux, request).await;
    assert_eq!(status, 413);
}

#[tokio::test]
async fn unknown_models_and_backends_are_404s_listing_valid_ones() {
    let llmux = mock_llmux("[backends.mock]\nmodels = [\"m-one\", \"m-two\"]\n", &[]).await;
    let request = json!({"model": "m-three", "messages": [{"role": "user", "content": "hi"}]});
    let (status, body) = post_raw(&llmux, request.to_string()).await;
    assert_eq!(status, 404);
    let text = message(&body);
    assert!(text.contains("m-one") && text.contains("m-two"), "{text}");
    assert!(text.contains("openrouter"), "lists back-ends: {text}");

    let response = client().get(llmux.url("/v2/nothing")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert!(message(&body).contains("/v2/nothing"));
}

#[tokio::test]
async fn missing_and_invalid_keys_are_401s() {
    let llmux = mock_llmux("", &[("LLM_INTERACTIVE_PROXY_API_KEY", "proxy-key")]).await;
    let request = json!({"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]});
    let send = |key: Option<&'static str>, header: &'static str| {
        let mut builder = client()
            .post(llmux.url("/v1/chat/completions"))
            .json(&request);
        if let Some(key) = key {
            let value = if header == "authorization" {
                format!("Bearer {key}")
            } else {
                key.to_owned()
            };
            builder = builder.header(header, value);
        }
        builder.send()
    };
    let response = send(None, "authorization").await.unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert!(message(&body).contains("missing API key"));
    let response = send(Some("wrong"), "authorization").await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        send(Some("proxy-key"), "authorization")
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        send(Some("proxy-key"), "x-api-key").await.unwrap().status(),
        200
    );
    // Health stays open for load balancers.
    assert_eq!(
        client()
            .get(llmux.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn repeated_bad_keys_are_blocked_with_retry_after_and_success_resets() {
    let llmux = mock_llmux(
        "[auth.brute_force_protection]\nmax_failed_attempts = 3\ninitial_block_seconds = 1\n",
        &[("LLM_INTERACTIVE_PROXY_API_KEY", "proxy-key")],
    )
    .await;
    let models = |key: &'static str| {
        client()
            .get(llmux.url("/v1/models"))
            .bearer_auth(key)
            .send()
    };
    // A success before the limit resets the count.
    assert_eq!(models("bad").await.unwrap().status(), 401);
    assert_eq!(models("bad").await.unwrap().status(), 401);
    assert_eq!(models("proxy-key").await.unwrap().status(), 200);
    for _ in 0..3 {
        assert_eq!(models("bad").await.unwrap().status(), 401);
    }
    let blocked = models("proxy-key").await.unwrap();
    assert_eq!(blocked.status(), 429);
    assert_eq!(blocked.headers()["retry-after"], "1");
    let body: Value = blocked.json().await.unwrap();
    assert!(message(&body).contains("retry after 1 seconds"), "{body}");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(models("proxy-key").await.unwrap().status(), 200);
}

#[tokio::test]
async fn trusted_ips_skip_auth() {
    let llmux = mock_llmux(
        "[auth]\ntrusted_ips = [\"127.0.0.0/8\"]\n",
        &[("LLM_INTERACTIVE_PROXY_API_KEY", "proxy-key")],
    )
    .await;
    let response = client().get(llmux.url("/v1/models")).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_backend_without_its_key_says_which_variable_to_set() {
    let llmux = start(config("", &[]), &[]).await;
    let request = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    let (status, body) = post_raw(&llmux, request.to_string()).await;
    assert_eq!(status, 503);
    assert!(message(&body).contains("OPENAI_API_KEY"), "{body}");
}
