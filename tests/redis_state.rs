//! Session state shared through Redis (`[state] backend = "redis"`), against a redis-server
//! of the test's own on loopback: the store passes the same conformance suite as the
//! in-memory one, two llmux instances share a session's choices, and losing Redis degrades
//! to this instance's memory (health says so) instead of failing requests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use llmux::state::StateStore;
use llmux::state::redis::RedisStore;
use serde_json::{Value, json};
use support::redis_server::RedisServer;
use support::{Llmux, client, config, config_error, start};

fn two_mocks(state: &str) -> String {
    format!(
        r#"default_backend = "a"
[state]
{state}
[backends.a]
type = "mock"
response_text = "from a"
[backends.b]
type = "mock"
response_text = "from b"
"#
    )
}

async fn say(llmux: &Llmux, session: &str, text: &str) -> String {
    let response = client()
        .post(llmux.url("/v1/chat/completions"))
        .header("x-session-id", session)
        .timeout(Duration::from_secs(10))
        .json(&json!({"model": "any", "messages": [{"role": "user", "content": text}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn ready(llmux: &Llmux) -> u16 {
    client()
        .get(llmux.url("/ready"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn health(llmux: &Llmux) -> Value {
    client()
        .get(llmux.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_redis_store_passes_the_conformance_suite() {
    let redis = RedisServer::start().await;
    let store = RedisStore::new(
        &redis.url(),
        "conformance:",
        Duration::from_secs(60),
        Duration::from_secs(2),
    )
    .unwrap();
    llmux::state::conformance::check(&store).await;
    assert_eq!(store.degraded(), None);
}

#[tokio::test]
async fn two_instances_share_a_sessions_choices_through_redis() {
    let redis = RedisServer::start().await;
    let toml = two_mocks(&format!("backend = \"redis\"\nurl = \"{}\"", redis.url()));
    let (one, two) = (
        start(config(&toml, &[]), &[]).await,
        start(config(&toml, &[]), &[]).await,
    );
    say(&one, "shared", "!/backend(b)").await;
    assert_eq!(
        say(&two, "shared", "Hi").await,
        "from b",
        "the other instance sees it"
    );
    assert_eq!(
        say(&two, "other", "Hi").await,
        "from a",
        "sessions stay apart"
    );
    // The environment names the server as well.
    let from_env = config(
        &two_mocks("backend = \"redis\""),
        &[("REDIS_URL", redis.url().as_str())],
    );
    let three = start(from_env, &[]).await;
    assert_eq!(say(&three, "shared", "Hi").await, "from b");
    assert_eq!(health(&three).await["status"], "ok");
}

#[tokio::test]
async fn losing_redis_serves_from_local_memory_and_health_says_degraded() {
    let redis = RedisServer::start().await;
    let toml = two_mocks(&format!(
        "backend = \"redis\"\nurl = \"{}\"\ntimeout_ms = 200",
        redis.url()
    ));
    let llmux = start(config(&toml, &[]), &[]).await;
    say(&llmux, "s", "!/backend(b)").await;
    assert_eq!(health(&llmux).await["status"], "ok");

    assert_eq!(ready(&llmux).await, 200);

    let port = redis.stop().await;
    assert_eq!(
        ready(&llmux).await,
        503,
        "not ready without its shared store"
    );
    // Requests go on, from this instance's memory, within the timeout.
    say(&llmux, "during", "!/backend(b)").await;
    assert_eq!(say(&llmux, "during", "Hi").await, "from b");
    let degraded = health(&llmux).await;
    assert_eq!(degraded["status"], "degraded", "{degraded}");
    assert!(
        degraded["state"].as_str().unwrap().contains("Redis"),
        "{degraded}"
    );

    // Back: the shared state serves again (a fresh server: the session starts over).
    let _redis = RedisServer::start_on(port).await;
    let mut status = Value::Null;
    for _ in 0..100 {
        say(&llmux, "after", "Hi").await;
        status = health(&llmux).await;
        if status["status"] == "ok" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status["status"], "ok", "{status}");
    assert_eq!(ready(&llmux).await, 200);
}

#[tokio::test]
async fn an_instance_on_memory_is_ready_at_once() {
    let llmux = start(config(&two_mocks(""), &[]), &[]).await;
    assert_eq!(ready(&llmux).await, 200);
    assert_eq!(health(&llmux).await["status"], "ok");
}

#[test]
fn state_settings_are_checked_naming_the_key() {
    let missing = config_error("[state]\nbackend = \"redis\"\n");
    assert!(
        missing.contains("state.backend") && missing.contains("state.url"),
        "{missing}"
    );
    let bad = config_error("[state]\nbackend = \"redis\"\nurl = \"http://127.0.0.1:6379\"\n");
    assert!(
        bad.contains("state.url") && bad.contains("not a Redis URL"),
        "{bad}"
    );
    let unknown = config_error("[state]\nbackend = \"etcd\"\n");
    assert!(unknown.contains("must be memory or redis"), "{unknown}");
}
