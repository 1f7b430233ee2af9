//! The seed's identity header override: `[backends.ID.identity]` decides the title,
//! referer and user agent the provider sees.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use support::fake_openai::{FakeOpenAi, Mode};
use support::{client, config, fake_backend_config, start};

#[tokio::test]
async fn identity_headers_replace_llmuxs_own() {
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let send = |llmux: &support::Llmux| {
        client()
            .post(llmux.url("/v1/chat/completions"))
            .json(&json!({"model": "m", "messages": [{"role": "user", "content": "Hi."}]}))
            .send()
    };
    let plain = start(
        config(&fake_backend_config(&fake.base_url, ""), &[]),
        &[("FAKE_API_KEY", "sk-fake")],
    )
    .await;
    assert_eq!(send(&plain).await.unwrap().status(), 200);
    let headers = fake.last_request().headers;
    assert!(
        headers["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("llmux/")
    );
    assert!(!headers.contains_key("x-title"));

    let identity = r#"[backends.fake.identity]
title = "my-agent"
referer = "https://example.com/my-agent"
user_agent = "my-agent/1.0""#;
    let llmux = start(
        config(&fake_backend_config(&fake.base_url, identity), &[]),
        &[("FAKE_API_KEY", "sk-fake")],
    )
    .await;
    assert_eq!(send(&llmux).await.unwrap().status(), 200);
    let headers = fake.last_request().headers;
    assert_eq!(headers["user-agent"], "my-agent/1.0");
    assert_eq!(headers["x-title"], "my-agent");
    assert_eq!(headers["http-referer"], "https://example.com/my-agent");
    assert_eq!(headers["referer"], "https://example.com/my-agent");
}

#[test]
fn an_identity_that_is_not_a_header_value_is_refused_naming_the_key() {
    let err = support::config_error(&fake_backend_config(
        "http://127.0.0.1:9/v1",
        "[backends.fake.identity]\ntitle = \"line\\nbreak\"",
    ));
    assert!(err.contains("backends.fake.identity.title"), "{err}");
}
