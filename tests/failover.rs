//! Failover routes over real HTTP: a client asks for a route, llmux tries its legs (fake
//! providers on loopback with scripted faults) and explains every attempt.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::fake_openai::{FakeOpenAi, Mode};
use support::{client, config, sse_data, start, streamed_text};

const PROXY_KEY: &str = "proxy-failover-key";
const KEYS: &[(&str, &str)] = &[("A_KEY", "sk-leg-a"), ("B_KEY", "sk-leg-b")];

/// Back-ends `a` and `b` at the two fakes, a route `coder` over them, and `extra` TOML.
fn two_legs(a: &str, b: &str, route: &str, extra: &str) -> String {
    format!(
        r#"default_backend = "a"
[backends.a]
type = "openai-compatible"
base_url = "{a}"
api_key_env = "A_KEY"
first_byte_timeout_seconds = 1
[backends.b]
type = "openai-compatible"
base_url = "{b}"
api_key_env = "B_KEY"
[routes.coder]
{route}
{extra}
"#
    )
}

async fn start_llmux(toml: &str) -> support::Llmux {
    start(
        config(toml, &[("LLM_INTERACTIVE_PROXY_API_KEY", PROXY_KEY)]),
        KEYS,
    )
    .await
}

async fn chat(llmux: &support::Llmux, model: &str, stream: bool) -> reqwest::Response {
    client()
        .post(llmux.url("/v1/chat/completions"))
        .bearer_auth(PROXY_KEY)
        .json(&json!({"model": model, "stream": stream,
            "messages": [{"role": "user", "content": "Say hello."}]}))
        .send()
        .await
        .unwrap()
}

/// llmux with route `coder` (`route` holds its keys) over fakes `a` and `b` in these modes.
async fn route(a: Mode, b: Mode, route: &str) -> (support::Llmux, FakeOpenAi, FakeOpenAi) {
    let (a, b) = (FakeOpenAi::start(a).await, FakeOpenAi::start(b).await);
    let llmux = start_llmux(&two_legs(&a.base_url, &b.base_url, route, "")).await;
    (llmux, a, b)
}

#[tokio::test]
async fn a_rate_limited_leg_passes_the_request_to_the_next_and_says_so() {
    let (llmux, a, b) = route(
        Mode::Status(429),
        Mode::Normal,
        r#"legs = ["a:qwen3-coder", "b:glm-4.6"]"#,
    )
    .await;
    for (model, stream) in [("coder", false), ("route:coder", true)] {
        let response = chat(&llmux, model, stream).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            support::attempts_header(&response),
            "a:qwen3-coder=429; b:glm-4.6=200",
            "{model}"
        );
        let body = response.text().await.unwrap();
        if stream {
            assert_eq!(streamed_text(&sse_data(&body)), "Hello from fake.");
        } else {
            let body: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(body["choices"][0]["message"]["content"], "Hello from fake.");
        }
    }
    assert_eq!((a.hit_count(), b.hit_count()), (2, 2));
    assert_eq!(b.last_request().body["model"], "glm-4.6");
    assert_eq!(
        b.last_request().headers["authorization"],
        "Bearer sk-leg-b",
        "each leg uses its own back-end's key"
    );

    // The admin API counts every leg's attempts and failures.
    let (status, stats) = support::get_json(&llmux, "/admin/api/stats", PROXY_KEY).await;
    assert_eq!(status, 200);
    let legs = stats["legs"].as_array().unwrap();
    let leg = |backend: &str| legs.iter().find(|l| l["backend"] == backend).unwrap();
    assert_eq!(leg("a")["attempts"], 2);
    assert_eq!(leg("a")["failed"]["429"], 2);
    assert_eq!(leg("a")["answered"], 0);
    assert!(
        leg("a")["last_error"]
            .as_str()
            .unwrap()
            .contains("fake says 429")
    );
    assert_eq!(leg("b")["answered"], 2);
    assert_eq!(leg("b")["consecutive_failures"], 0);
}

#[tokio::test]
async fn outages_unreachable_providers_and_slow_ones_fail_over_too() {
    let b = FakeOpenAi::start(Mode::Normal).await;
    let cases = [
        (FakeOpenAi::start(Mode::Status(503)).await.base_url, "503"),
        (FakeOpenAi::start(Mode::Status(529)).await.base_url, "529"),
        (
            // Nothing listens there.
            format!("http://127.0.0.1:{}/v1", support::binary::free_port()),
            "connect",
        ),
        (
            // Slower than a's first-byte timeout of one second.
            FakeOpenAi::start(Mode::SlowFirstByte(Duration::from_secs(3)))
                .await
                .base_url,
            "timeout",
        ),
    ];
    for (a_url, label) in cases {
        let llmux = start_llmux(&two_legs(
            &a_url,
            &b.base_url,
            r#"legs = ["a:m1", "b:m2"]"#,
            "",
        ))
        .await;
        let response = chat(&llmux, "coder", false).await;
        assert_eq!(response.status(), 200, "{label}");
        assert_eq!(
            support::attempts_header(&response),
            format!("a:m1={label}; b:m2=200")
        );
    }
}

#[tokio::test]
async fn a_request_the_provider_refuses_for_its_content_never_fails_over() {
    // Even when the route asks for every 4xx.
    let (llmux, _a, b) = route(
        Mode::Status(400),
        Mode::Normal,
        r#"legs = ["a:m1", "b:m2"]
retry_on = ["4xx", "5xx"]"#,
    )
    .await;
    let response = chat(&llmux, "coder", false).await;
    assert_eq!(response.status(), 400);
    assert_eq!(support::attempts_header(&response), "a:m1=400");
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("fake says 400")
    );
    assert_eq!(b.hit_count(), 0);
}

#[tokio::test]
async fn retry_on_decides_which_failures_move_on() {
    let (llmux, _a, b) = route(
        Mode::Status(503),
        Mode::Normal,
        r#"legs = ["a:m1", "b:m2"]
retry_on = ["429"]"#,
    )
    .await;
    let response = chat(&llmux, "coder", false).await;
    assert_eq!(response.status(), 503);
    assert_eq!(support::attempts_header(&response), "a:m1=503");
    assert_eq!(b.hit_count(), 0);
}

#[tokio::test]
async fn a_stream_that_breaks_after_its_first_event_is_never_sent_twice() {
    let (llmux, _a, b) = route(
        Mode::DropMidStream,
        Mode::Normal,
        r#"legs = ["a:m1", "b:m2"]"#,
    )
    .await;
    let response = chat(&llmux, "coder", true).await;
    assert_eq!(response.status(), 200);
    assert_eq!(support::attempts_header(&response), "a:m1=200");
    let body = response.text().await.unwrap();
    let frames = sse_data(&body);
    assert_eq!(streamed_text(&frames), "Hel", "the first leg's text, once");
    assert!(body.contains("\"error\""), "the break is reported: {body}");
    assert_eq!(b.hit_count(), 0, "nothing after the first byte fails over");
}

#[tokio::test]
async fn a_leg_may_be_tried_again_before_the_next_and_the_last_failure_is_the_answer() {
    let a = FakeOpenAi::start(Mode::Script(vec![Mode::Status(502), Mode::Normal])).await;
    let b = FakeOpenAi::start(Mode::Normal).await;
    let llmux = start_llmux(&two_legs(
        &a.base_url,
        &b.base_url,
        r#"legs = ["a:m1", "b:m2"]
attempts_per_leg = 2"#,
        "",
    ))
    .await;
    let response = chat(&llmux, "coder", false).await;
    assert_eq!(response.status(), 200);
    assert_eq!(support::attempts_header(&response), "a:m1=502; a:m1=200");
    assert_eq!(b.hit_count(), 0);

    // Every leg failing: the client gets the last failure, and the whole chain.
    let (llmux, _a, _b) = route(
        Mode::Status(500),
        Mode::StatusRetryAfter(429, 30),
        r#"legs = ["a:m1", "b:m2"]
attempts_per_leg = 2"#,
    )
    .await;
    let started = std::time::Instant::now();
    let response = chat(&llmux, "coder", false).await;
    assert_eq!(response.status(), 429);
    // b asked for 30 s: longer than a retry may wait, so it is not asked twice.
    assert_eq!(
        support::attempts_header(&response),
        "a:m1=500; a:m1=500; b:m2=429"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("30")
    );
}

#[tokio::test]
async fn a_static_route_may_name_a_failover_route() {
    let (a, b) = (
        FakeOpenAi::start(Mode::Status(429)).await,
        FakeOpenAi::start(Mode::Normal).await,
    );
    let llmux = start_llmux(
        &two_legs(&a.base_url, &b.base_url, r#"legs = ["a:m1", "b:m2"]"#, "").replace(
            "default_backend = \"a\"",
            "default_backend = \"a\"\nstatic_route = \"route:coder\"",
        ),
    )
    .await;
    let response = chat(&llmux, "whatever-the-client-says", false).await;
    assert_eq!(response.status(), 200);
    assert_eq!(support::attempts_header(&response), "a:m1=429; b:m2=200");
}

#[tokio::test]
async fn every_client_protocol_gets_failover() {
    let (llmux, _a, _b) = route(
        Mode::Status(429),
        Mode::Normal,
        r#"legs = ["a:m1", "b:m2"]"#,
    )
    .await;
    let anthropic = client()
        .post(llmux.url("/v1/messages"))
        .header("x-api-key", PROXY_KEY)
        .json(&json!({"model": "coder", "max_tokens": 64,
            "messages": [{"role": "user", "content": "Say hello."}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(anthropic.status(), 200);
    assert_eq!(support::attempts_header(&anthropic), "a:m1=429; b:m2=200");
    let body: Value = anthropic.json().await.unwrap();
    assert_eq!(body["content"][0]["text"], "Hello from fake.");

    let gemini = client()
        .post(llmux.url("/v1beta/models/coder:generateContent"))
        .header("x-goog-api-key", PROXY_KEY)
        .json(&json!({"contents": [{"role": "user", "parts": [{"text": "Say hello."}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(gemini.status(), 200);
    assert_eq!(support::attempts_header(&gemini), "a:m1=429; b:m2=200");
}

#[tokio::test]
async fn routes_made_in_chat_fail_over_for_their_session_only() {
    let (llmux, _a, _b) = route(Mode::Status(503), Mode::Normal, r#"legs = ["a:m1"]"#).await;
    let say = |session: &'static str, text: &'static str, model: &'static str| {
        let url = llmux.url("/v1/chat/completions");
        async move {
            client()
                .post(url)
                .bearer_auth(PROXY_KEY)
                .header("x-session-id", session)
                .json(&json!({"model": model,
                    "messages": [{"role": "user", "content": text}]}))
                .send()
                .await
                .unwrap()
        }
    };
    let answer = |response: reqwest::Response| async move {
        let body: Value = response.json().await.unwrap();
        body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let said = answer(say("s1", "!/failover-route(create mine)", "x").await).await;
    assert!(said.contains("failover route 'mine' created"), "{said}");
    say("s1", "!/failover-route(append mine a:m1)", "x").await;
    let said = answer(say("s1", "!/failover-route(append mine b/m2)", "x").await).await;
    assert!(said.contains("a:m1 -> b:m2"), "{said}");
    let said = answer(say("s1", "!/failover-route(append mine nowhere:m)", "x").await).await;
    assert!(said.contains("'nowhere:m' is not backend:model"), "{said}");
    let said = answer(say("s1", "!/failover-route(list)", "x").await).await;
    assert!(said.contains("mine (this session): a:m1 -> b:m2"), "{said}");
    assert!(said.contains("coder (configured): a:m1"), "{said}");

    let response = say("s1", "Say hello.", "mine").await;
    assert_eq!(response.status(), 200);
    assert_eq!(support::attempts_header(&response), "a:m1=503; b:m2=200");
    // Another session does not have the route: `mine` is a model of the default back-end.
    let response = say("s2", "Say hello.", "route:mine").await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown failover route 'mine'")
    );

    let said = answer(say("s1", "!/failover-route(delete mine)", "x").await).await;
    assert!(said.contains("deleted"), "{said}");
    let response = say("s1", "Say hello.", "route:mine").await;
    assert_eq!(response.status(), 404);
    let said = answer(say("s1", "!/failover-route(explode)", "x").await).await;
    assert!(said.contains("failover-route(create NAME)"), "{said}");
}

#[tokio::test]
async fn the_capture_store_keeps_the_attempt_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        FakeOpenAi::start(Mode::Status(429)).await,
        FakeOpenAi::start(Mode::Normal).await,
    );
    let extra = format!(
        "[capture]\ndb = \"{}\"\nflush_interval = 0.02",
        dir.path().join("capture.sqlite").display()
    );
    let llmux = start_llmux(&two_legs(
        &a.base_url,
        &b.base_url,
        r#"legs = ["a:m1", "b:m2"]"#,
        &extra,
    ))
    .await;
    let response = chat(&llmux, "coder", false).await;
    let row = support::captured_row(&llmux, response, PROXY_KEY).await;
    assert_eq!(row["attempts"], "a:m1=429; b:m2=200");
    assert_eq!(row["backend"], "b", "the leg that answered");
    assert_eq!(row["model_used"], "m2");
    assert_eq!(row["key_name"], "B_KEY");
    let (_, list) = support::get_json(&llmux, "/admin/api/requests", PROXY_KEY).await;
    assert_eq!(list["data"][0]["attempts"], "a:m1=429; b:m2=200", "{list}");
}

#[test]
fn bad_routes_are_refused_at_start_naming_the_key() {
    let base = "http://127.0.0.1:9/v1";
    for (route, expected) in [
        (r#"legs = ["nowhere:m1"]"#, "routes.coder.legs"),
        (r#"legs = []"#, "name at least one leg"),
        (
            r#"legs = ["a:m1"]
retry_on = ["sometimes"]"#,
            "routes.coder.retry_on",
        ),
        (
            r#"legs = ["a:m1"]
attempts_per_leg = 0"#,
            "routes.coder.attempts_per_leg",
        ),
    ] {
        let err = support::config_error(&two_legs(base, base, route, ""));
        assert!(err.contains(expected), "{route}: {err}");
    }
    let hiding_a_backend = format!(
        "{}\n[routes.a]\nlegs = [\"b:m\"]\n",
        two_legs(base, base, r#"legs = ["a:m1"]"#, "")
    );
    let err = support::config_error(&hiding_a_backend);
    assert!(err.contains("'a' is a back-end"), "{err}");
}

#[tokio::test]
async fn the_request_log_line_lists_every_attempt() {
    let (a, b) = (
        FakeOpenAi::start(Mode::Status(429)).await,
        FakeOpenAi::start(Mode::Normal).await,
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("llmux.toml");
    let port = support::binary::free_port();
    let toml = two_legs(&a.base_url, &b.base_url, r#"legs = ["a:m1", "b:m2"]"#, "").replacen(
        "[backends.a]",
        &format!("[proxy]\nport = {port}\nanthropic_port = 0\n[backends.a]"),
        1,
    );
    std::fs::write(&path, toml).unwrap();
    let llmux = support::binary::Llmux::start(&path, KEYS);
    let addr = llmux.next_address();
    let response = client()
        .post(format!("http://{addr}/v1/chat/completions"))
        .json(&json!({"model": "coder", "messages": [{"role": "user", "content": "Hi."}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !llmux.log().contains("attempts=") && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = llmux.log();
    let line = log
        .lines()
        .find(|l| l.contains("attempts="))
        .unwrap_or_else(|| panic!("no request line:\n{log}"));
    assert!(line.contains("attempts=a:m1=429; b:m2=200"), "{line}");
    assert!(
        line.contains("backend=\"b\""),
        "the leg that answered: {line}"
    );
}
