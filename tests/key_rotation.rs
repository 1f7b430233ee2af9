//! Key rotation over real HTTP: a back-end with several keys, a fake provider that rate
//! limits some of them, and what the client, the attempt chain and the admin API show.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::fake_openai::{FakeOpenAi, Mode};
use support::{client, config, start};

const PROXY_KEY: &str = "proxy-rotation-key";

/// Back-end `fake` with keys K1, K2 (numbered variants of FAKE_KEY) and the variables
/// `api_keys_env` names; `extra` lines go in its table.
fn backend(base_url: &str, extra: &str) -> String {
    format!(
        r#"default_backend = "fake"
[backends.fake]
type = "openai-compatible"
base_url = "{base_url}"
api_key_env = "FAKE_KEY"
{extra}
"#
    )
}

async fn llmux(toml: &str, keys: &[(&str, &str)]) -> support::Llmux {
    start(
        config(toml, &[("LLM_INTERACTIVE_PROXY_API_KEY", PROXY_KEY)]),
        keys,
    )
    .await
}

async fn chat(llmux: &support::Llmux) -> reqwest::Response {
    client()
        .post(llmux.url("/v1/chat/completions"))
        .bearer_auth(PROXY_KEY)
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "Hi."}]}))
        .send()
        .await
        .unwrap()
}

/// The bearer keys of the requests the fake received, in order.
fn keys_used(fake: &FakeOpenAi) -> Vec<String> {
    fake.requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.headers["authorization"].to_str().unwrap()[7..].to_owned())
        .collect()
}

async fn key_health(llmux: &support::Llmux) -> Vec<Value> {
    let (status, stats) = support::get_json(llmux, "/admin/api/stats", PROXY_KEY).await;
    assert_eq!(status, 200);
    stats["keys"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_rate_limited_key_rests_and_the_request_goes_on_with_the_next() {
    let fake = FakeOpenAi::start(Mode::LimitKeys(vec!["sk-one"])).await;
    let llmux = llmux(
        &backend(&fake.base_url, ""),
        &[("FAKE_KEY", "sk-one"), ("FAKE_KEY_2", "sk-two")],
    )
    .await;
    let response = chat(&llmux).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        support::attempts_header(&response),
        "fake:m[FAKE_KEY]=429; fake:m[FAKE_KEY_2]=200"
    );
    // The first key rests for the 30 s the provider asked: the next request skips it.
    let response = chat(&llmux).await;
    assert_eq!(
        support::attempts_header(&response),
        "",
        "one attempt, no failover route: no chain to explain"
    );
    assert_eq!(keys_used(&fake), ["sk-one", "sk-two", "sk-two"]);

    let health = key_health(&llmux).await;
    assert_eq!(health.len(), 2);
    assert_eq!(health[0]["name"], "FAKE_KEY");
    assert_eq!(health[0]["failures"], 1);
    let rest = health[0]["cooling_until"].as_f64().unwrap()
        - std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
    assert!((25.0..=31.0).contains(&rest), "{rest}");
    assert!(
        health[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("fake says 429")
    );
    assert_eq!(health[1]["name"], "FAKE_KEY_2");
    assert_eq!(health[1]["uses"], 2);
    assert!(health[1]["cooling_until"].is_null());
    let text = serde_json::to_string(&health).unwrap();
    assert!(!text.contains("sk-one") && !text.contains("sk-two"));
}

#[tokio::test]
async fn when_every_key_rests_the_client_is_told_when_to_come_back() {
    let fake = FakeOpenAi::start(Mode::LimitKeys(vec!["sk-one", "sk-two"])).await;
    let llmux = llmux(
        &backend(&fake.base_url, ""),
        &[("FAKE_KEY", "sk-one"), ("FAKE_KEY_2", "sk-two")],
    )
    .await;
    let response = chat(&llmux).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "30");
    assert_eq!(
        support::attempts_header(&response),
        "fake:m[FAKE_KEY]=429; fake:m[FAKE_KEY_2]=429"
    );
    // Both keys rest now: answered here, without asking the provider again.
    let response = chat(&llmux).await;
    assert_eq!(response.status(), 429);
    let wait: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((28..=30).contains(&wait), "{wait}");
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("all 2 keys of back-end 'fake' are cooling down"),
        "{body}"
    );
    assert_eq!(fake.hit_count(), 2);
}

#[tokio::test]
async fn round_robin_spreads_a_thousand_requests_evenly() {
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let llmux = llmux(
        &backend(
            &fake.base_url,
            r#"api_keys_env = ["WORK_KEY", "FREE_KEY"]
key_rotation = "round-robin""#,
        ),
        &[
            ("FAKE_KEY", "sk-one"),
            ("WORK_KEY", "sk-work"),
            ("FREE_KEY", "sk-free"),
        ],
    )
    .await;
    let requests = 999;
    let sends = (0..requests).map(|_| chat(&llmux));
    // Eight at a time: concurrent requests must not share a turn either.
    use futures::StreamExt;
    let statuses: Vec<u16> = futures::stream::iter(sends)
        .buffer_unordered(8)
        .map(|r| r.status().as_u16())
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 200));
    let used = keys_used(&fake);
    for key in ["sk-one", "sk-work", "sk-free"] {
        assert_eq!(used.iter().filter(|k| *k == key).count(), 333, "{key}");
    }
}

#[test]
fn a_bad_rotation_setting_is_refused_naming_the_key() {
    let err = support::config_error(&backend(
        "http://127.0.0.1:9/v1",
        r#"key_rotation = "sometimes""#,
    ));
    assert!(err.contains("backends.fake.key_rotation"), "{err}");
    assert!(err.contains("round-robin"), "{err}");
}

#[tokio::test]
async fn a_refused_key_is_announced_by_name_never_by_value() {
    let fake = FakeOpenAi::start(Mode::Status(401)).await;
    let llmux = llmux(
        &backend(&fake.base_url, ""),
        &[("FAKE_KEY", "sk-revoked-secret")],
    )
    .await;
    let mut notices = llmux.engine.notices();
    assert_eq!(chat(&llmux).await.status(), 401);
    match notices.try_recv() {
        Ok(llmux::router::breaker::Notice::KeyRefused {
            backend,
            key,
            status,
        }) => {
            assert_eq!(backend, "fake");
            assert_eq!(key.as_deref(), Some("FAKE_KEY"));
            assert_eq!(status, 401);
        }
        other => panic!("{other:?}"),
    }
}
