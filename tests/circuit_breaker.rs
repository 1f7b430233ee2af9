//! Circuit breakers over real HTTP: a back-end that fails too often in a row is left alone
//! (503 at once, or its route's other legs first), probed after its cool-down, closed by an
//! answer; every change is announced.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use llmux::router::breaker::Notice;
use serde_json::{Value, json};
use support::fake_openai::{FakeOpenAi, Mode};
use support::{client, config, start};

/// Back-ends `a` and `b`, a route `sturdy` over them, and a breaker that opens after two
/// outages for `cool_down` seconds.
fn two_backends(a: &str, b: &str, cool_down: f64) -> String {
    format!(
        r#"default_backend = "a"
[circuit_breaker]
failures = 2
cool_down_seconds = {cool_down}
[backends.a]
type = "openai-compatible"
base_url = "{a}"
[backends.b]
type = "openai-compatible"
base_url = "{b}"
[routes.sturdy]
legs = ["a:m", "b:m"]
"#
    )
}

async fn chat(llmux: &support::Llmux, model: &str) -> reqwest::Response {
    client()
        .post(llmux.url("/v1/chat/completions"))
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "Hi."}]}))
        .send()
        .await
        .unwrap()
}

async fn breakers(llmux: &support::Llmux) -> Vec<Value> {
    let (_, stats) = support::get_json(llmux, "/admin/api/stats", "").await;
    stats["breakers"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_failing_back_end_is_left_alone_then_probed_and_closed_by_an_answer() {
    // a fails twice, then answers.
    let a = FakeOpenAi::start(Mode::Script(vec![Mode::Status(503), Mode::Status(502)])).await;
    let b = FakeOpenAi::start(Mode::Normal).await;
    let llmux = start(
        config(&two_backends(&a.base_url, &b.base_url, 0.3), &[]),
        &[],
    )
    .await;
    let mut notices = llmux.engine.notices();

    assert_eq!(chat(&llmux, "a:m").await.status(), 503);
    assert_eq!(chat(&llmux, "a:m").await.status(), 502);
    match notices.try_recv() {
        Ok(Notice::BreakerOpened { backend, .. }) => assert_eq!(backend, "a"),
        other => panic!("{other:?}"),
    }
    // Open: refused here, at once, with the cool-down as Retry-After.
    let started = Instant::now();
    let refused = chat(&llmux, "a:m").await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("circuit breaker open"),
        "{body}"
    );
    assert!(started.elapsed() < Duration::from_millis(200));
    assert_eq!(a.hit_count(), 2, "the open back-end was not called");
    let states = breakers(&llmux).await;
    assert_eq!(states[0]["backend"], "a");
    assert_eq!(states[0]["state"], "open");

    // After the cool-down the next request probes, and its answer closes the breaker.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(chat(&llmux, "a:m").await.status(), 200);
    assert_eq!(a.hit_count(), 3);
    assert_eq!(
        notices.try_recv().unwrap(),
        Notice::BreakerClosed {
            backend: "a".into()
        }
    );
    assert_eq!(breakers(&llmux).await[0]["state"], "closed");
}

#[tokio::test]
async fn a_route_tries_an_open_leg_last_and_says_it_failed_over() {
    let a = FakeOpenAi::start(Mode::Status(500)).await;
    let b = FakeOpenAi::start(Mode::Normal).await;
    let llmux = start(
        config(&two_backends(&a.base_url, &b.base_url, 60.0), &[]),
        &[],
    )
    .await;
    let mut notices = llmux.engine.notices();

    for _ in 0..2 {
        let response = chat(&llmux, "sturdy").await;
        assert_eq!(response.status(), 200);
        assert_eq!(support::attempts_header(&response), "a:m=500; b:m=200");
    }
    let mut seen = Vec::new();
    while let Ok(notice) = notices.try_recv() {
        seen.push(notice);
    }
    assert!(seen.contains(&Notice::FailedOver {
        route: "sturdy".into(),
        from: "a:m".into(),
        to: "b:m".into(),
        failure: "500".into(),
    }));
    assert!(
        seen.iter()
            .any(|n| matches!(n, Notice::BreakerOpened { backend, .. } if backend == "a"))
    );
    // a is open now: the route goes to b first and never calls a.
    let response = chat(&llmux, "sturdy").await;
    assert_eq!(support::attempts_header(&response), "b:m=200");
    assert_eq!(a.hit_count(), 2);
}

#[tokio::test]
async fn a_request_s_own_errors_never_open_a_breaker_and_it_can_be_off() {
    let a = FakeOpenAi::start(Mode::Status(400)).await;
    let llmux = start(
        config(&two_backends(&a.base_url, &a.base_url, 60.0), &[]),
        &[],
    )
    .await;
    for _ in 0..4 {
        assert_eq!(chat(&llmux, "a:m").await.status(), 400);
    }
    assert_eq!(a.hit_count(), 4);

    let down = FakeOpenAi::start(Mode::Status(503)).await;
    let off = two_backends(&down.base_url, &down.base_url, 60.0)
        .replace("failures = 2", "failures = 2\nenabled = false");
    let llmux = start(config(&off, &[]), &[]).await;
    for _ in 0..4 {
        assert_eq!(chat(&llmux, "a:m").await.status(), 503);
    }
    assert_eq!(down.hit_count(), 4, "every request reached the provider");
}
