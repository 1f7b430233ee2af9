//! Per-model limits over real HTTP: input tokens counted with tiktoken and refused with the
//! seed's `input_limit_exceeded` error in each client's protocol, output tokens capped,
//! requests and tokens per minute answered locally or queued.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::fake_openai::{FakeOpenAi, Mode};
use support::{client, config, fake_backend_config, start};

async fn llmux_with(toml: &str, env: &[(&str, &str)]) -> support::Llmux {
    start(config(toml, env), &[("FAKE_API_KEY", "sk-fake")]).await
}

async fn chat(
    llmux: &support::Llmux,
    model: &str,
    text: &str,
    max_tokens: u64,
) -> reqwest::Response {
    client()
        .post(llmux.url("/v1/chat/completions"))
        .json(&json!({"model": model, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": text}]}))
        .send()
        .await
        .unwrap()
}

/// The reference count of a one-message chat request: the text with OpenAI's o200k
/// tokenizer, plus 3 tokens for the message and 3 for priming the answer (OpenAI cookbook,
/// "How to count tokens with tiktoken").
fn reference_tokens(text: &str) -> u64 {
    tiktoken_rs::o200k_base()
        .unwrap()
        .encode_ordinary(text)
        .len() as u64
        + 6
}

#[tokio::test]
async fn a_request_over_the_input_limit_is_refused_in_each_protocol_before_any_call() {
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let llmux = llmux_with(
        &fake_backend_config(
            &fake.base_url,
            r#"[models."fake:small".limits]
max_input_tokens = 40"#,
        ),
        &[],
    )
    .await;
    let long = "The quick brown fox jumps over the lazy dog. ".repeat(10);
    let measured = reference_tokens(&long);
    assert!(measured > 40);

    let response = chat(&llmux, "small", &long, 100).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "input_limit_exceeded", "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("prompt is too long")
    );
    // The seed's body, for scripts written against it.
    assert_eq!(
        body["detail"],
        json!({"code": "input_limit_exceeded", "message": "Input token limit exceeded",
               "details": {"model": "small", "limit": 40, "measured": measured}})
    );

    let anthropic = client()
        .post(llmux.url("/v1/messages"))
        .json(&json!({"model": "small", "max_tokens": 100,
            "messages": [{"role": "user", "content": long}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(anthropic.status(), 400);
    let body: Value = anthropic.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["detail"]["code"], "input_limit_exceeded");

    let gemini = client()
        .post(llmux.url("/v1beta/models/small:generateContent"))
        .json(&json!({"contents": [{"role": "user", "parts": [{"text": long}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(gemini.status(), 400);
    let body: Value = gemini.json().await.unwrap();
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(body["detail"]["details"]["limit"], 40);

    let streamed = client()
        .post(llmux.url("/v1/chat/completions"))
        .json(&json!({"model": "small", "stream": true,
            "messages": [{"role": "user", "content": long}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 400, "refused before the stream starts");

    assert_eq!(fake.hit_count(), 0, "no provider was called");
    // A short request, and the same long one to a model without a limit, pass.
    assert_eq!(chat(&llmux, "small", "Hi.", 100).await.status(), 200);
    assert_eq!(chat(&llmux, "large", &long, 100).await.status(), 200);
}

#[tokio::test]
async fn force_context_window_limits_every_model_and_model_defaults_fill_in() {
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let text = "one two three four five six seven eight nine ten ".repeat(4);
    let llmux = llmux_with(
        &fake_backend_config(&fake.base_url, ""),
        &[("FORCE_CONTEXT_WINDOW", "20")],
    )
    .await;
    let response = chat(&llmux, "any-model", &text, 10).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["detail"]["details"]["limit"], 20);
    assert_eq!(chat(&llmux, "any-model", "Hi.", 10).await.status(), 200);

    let llmux = llmux_with(
        &fake_backend_config(
            &fake.base_url,
            r#"[model_defaults."any-model".limits]
context_window = 20"#,
        ),
        &[],
    )
    .await;
    assert_eq!(chat(&llmux, "any-model", &text, 10).await.status(), 400);
    assert_eq!(chat(&llmux, "other-model", &text, 10).await.status(), 200);
}

#[tokio::test]
async fn a_request_asking_for_more_output_than_the_model_gives_gets_the_limit() {
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let llmux = llmux_with(
        &fake_backend_config(
            &fake.base_url,
            r#"[models."small".limits]
max_output_tokens = 100"#,
        ),
        &[],
    )
    .await;
    assert_eq!(chat(&llmux, "small", "Hi.", 5000).await.status(), 200);
    assert_eq!(fake.last_request().body["max_tokens"], 100);
    assert_eq!(chat(&llmux, "small", "Hi.", 50).await.status(), 200);
    assert_eq!(fake.last_request().body["max_tokens"], 50);
}

#[tokio::test]
async fn requests_per_minute_are_answered_locally_with_the_wait() {
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let llmux = llmux_with(
        &fake_backend_config(
            &fake.base_url,
            r#"[models."small".limits]
requests_per_minute = 2"#,
        ),
        &[],
    )
    .await;
    assert_eq!(chat(&llmux, "small", "Hi.", 10).await.status(), 200);
    assert_eq!(chat(&llmux, "small", "Hi.", 10).await.status(), 200);
    let refused = chat(&llmux, "small", "Hi.", 10).await;
    assert_eq!(refused.status(), 429);
    let wait: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((25..=30).contains(&wait), "one turn every 30 s: {wait}");
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("over its rate limit"),
        "{body}"
    );
    assert_eq!(fake.hit_count(), 2);
    // Another model has its own rate.
    assert_eq!(chat(&llmux, "large", "Hi.", 10).await.status(), 200);
}

#[tokio::test]
async fn a_request_over_tokens_per_minute_waits_for_its_turn_within_the_queue_timeout() {
    let fake = FakeOpenAi::start(Mode::Normal).await;
    // 600 tokens a minute: 10 a second.
    let llmux = llmux_with(
        &fake_backend_config(
            &fake.base_url,
            r#"[models."small".limits]
tokens_per_minute = 600
queue_timeout_seconds = 10"#,
        ),
        &[],
    )
    .await;
    let big = "word ".repeat(580);
    assert_eq!(chat(&llmux, "small", &big, 10).await.status(), 200);
    // 37 tokens, 24 more than the minute has left: a wait of about 2.4 s.
    let started = Instant::now();
    let more = "word ".repeat(30);
    assert_eq!(chat(&llmux, "small", &more, 10).await.status(), 200);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    // More tokens than a minute allows can never be served.
    let huge = "word ".repeat(700);
    let refused = chat(&llmux, "small", &huge, 10).await;
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exceed its tokens_per_minute"),
        "{body}"
    );
}

#[tokio::test]
async fn a_failover_route_moves_on_from_a_leg_over_its_rate() {
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let llmux = llmux_with(
        &fake_backend_config(
            &fake.base_url,
            r#"[models."fake:small".limits]
requests_per_minute = 1
[routes.sturdy]
legs = ["fake:small", "fake:large"]"#,
        ),
        &[],
    )
    .await;
    let first = chat(&llmux, "sturdy", "Hi.", 10).await;
    assert_eq!(support::attempts_header(&first), "fake:small=200");
    let second = chat(&llmux, "sturdy", "Hi.", 10).await;
    assert_eq!(second.status(), 200);
    assert_eq!(
        support::attempts_header(&second),
        "fake:small=429; fake:large=200"
    );
    assert_eq!(
        fake.hit_count(),
        2,
        "the rate-limited leg never reached the provider"
    );
}

#[test]
fn bad_limits_are_refused_at_start_naming_the_key() {
    for (extra, expected) in [
        (
            "[models.\"small\".limits]\nmax_input_tokens = 0",
            "models.\"small\".limits.max_input_tokens",
        ),
        (
            "[models.\"small\".limits]\ncontext_window = 100\nmax_input_tokens = 200",
            "is larger than context_window",
        ),
        (
            "[model_defaults.\"small\".limits]\nqueue_timeout_seconds = -1",
            "queue_timeout_seconds",
        ),
        ("force_context_window = 0", "force_context_window"),
        ("[models.\"small\".limits]\nwindow = 5", "window"),
    ] {
        // Top-level keys go before the back-end's table.
        let toml = if extra.starts_with('[') {
            fake_backend_config("http://127.0.0.1:9/v1", extra)
        } else {
            format!(
                "{extra}\n{}",
                fake_backend_config("http://127.0.0.1:9/v1", "")
            )
        };
        let err = support::config_error(&toml);
        assert!(err.contains(expected), "{extra}: {err}");
    }
}
