//! Session state shared through Redis (`[state] backend = "redis"`), against a redis-server
//! of the test's own on loopback: the store passes the same conformance suite as the
//! in-memory one, two llmux instances share a session's choices, and losing Redis degrades
//! to this instance's memory (health says so) instead of failing requests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use llmux::state::StateStore;
use llmux::state::redis::RedisStore;
use llmux::state::responses::{ResponseStore, StoredResponse};
use serde_json::{Value, json};
use support::fake_openai::{FakeOpenAi, Mode};
use support::nginx::Nginx;
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

/// A chat turn at `url` (an instance's or the balancer's): the status and the answer.
async fn turn(url: &str, session: &str, text: &str) -> (u16, String) {
    let response = client()
        .post(url)
        .header("x-session-id", session)
        .timeout(Duration::from_secs(10))
        .json(&json!({"model": "any", "messages": [{"role": "user", "content": text}]}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    (status, support::answer_text(&body, false))
}

async fn say(llmux: &Llmux, session: &str, text: &str) -> String {
    let (status, answer) = turn(&llmux.url("/v1/chat/completions"), session, text).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

/// Sends requests until the instance has found Redis again and its health is `ok`.
async fn until_healthy(llmux: &Llmux) {
    let mut status = Value::Null;
    for _ in 0..100 {
        say(llmux, "after", "Hi").await;
        status = health(llmux).await;
        if status["status"] == "ok" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("health never came back to ok: {status}");
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

/// A store on `redis` under `prefix`: a minute's idle expiry, 2 s timeouts.
fn store_on(redis: &RedisServer, prefix: &str) -> RedisStore {
    RedisStore::new(
        &redis.url(),
        prefix,
        Duration::from_secs(60),
        Duration::from_secs(2),
    )
    .unwrap()
}

#[tokio::test]
async fn the_redis_store_passes_the_conformance_suite() {
    let redis = RedisServer::start().await;
    let store = store_on(&redis, "conformance:");
    llmux::state::conformance::check(&store).await;
    assert_eq!(store.degraded(), None);
}

/// A request's start counts its turn apart: the session's value is not rewritten (so one
/// session's requests on many instances do not race), and what it holds is kept.
#[tokio::test]
async fn a_turn_is_counted_without_rewriting_the_session() {
    let redis = RedisServer::start().await;
    let store = store_on(&redis, "turns:");
    store
        .update("s", &|s| s.backend = Some("a".into()))
        .await
        .unwrap();
    let written: Value = store.get_json("session:s").await.unwrap().unwrap();
    for _ in 0..3 {
        store.begin_turn("s").await.unwrap();
    }
    let stored: Value = store.get_json("session:s").await.unwrap().unwrap();
    assert_eq!(stored, written, "the session's value is as it was written");
    let session = store.session("s").await.unwrap();
    assert_eq!((session.turns, session.backend.as_deref()), (3, Some("a")));
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
    until_healthy(&llmux).await;
    assert_eq!(ready(&llmux).await, 200);
}

#[tokio::test]
async fn an_instance_on_memory_is_ready_at_once() {
    let llmux = start(config(&two_mocks(""), &[]), &[]).await;
    assert_eq!(ready(&llmux).await, 200);
    assert_eq!(health(&llmux).await["status"], "ok");
}

#[tokio::test]
async fn three_instances_behind_nginx_share_sessions_through_an_instance_loss_and_a_redis_restart()
{
    let redis = RedisServer::start().await;
    let toml = two_mocks(&format!(
        "backend = \"redis\"\nurl = \"{}\"\ntimeout_ms = 200",
        redis.url()
    ));
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(start(config(&toml, &[]), &[]).await);
    }
    let addrs: Vec<_> = instances.iter().map(|i| i.addr).collect();
    let nginx = Nginx::balance(&addrs).await;
    let chat = nginx.url("/v1/chat/completions");

    // Set through one instance, seen by all three (round robin, no sticky sessions).
    assert_eq!(turn(&chat, "team", "!/backend(b)").await.0, 200);
    for _ in 0..6 {
        assert_eq!(turn(&chat, "team", "Hi").await, (200, "from b".to_owned()));
        assert_eq!(turn(&chat, "solo", "Hi").await, (200, "from a".to_owned()));
    }

    // An instance dies: the others carry its sessions on.
    let dead = instances.remove(0);
    dead.task.abort();
    while tokio::net::TcpStream::connect(dead.addr).await.is_ok() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..6 {
        assert_eq!(turn(&chat, "team", "Hi").await, (200, "from b".to_owned()));
    }

    // Redis stops and starts again under load: every request is still answered (from each
    // instance's memory meanwhile), and the instances find Redis again.
    let load = {
        let chat = chat.clone();
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for n in 0..40 {
                statuses.push(turn(&chat, &format!("load-{}", n % 4), "Hi").await.0);
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            statuses
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let port = redis.stop().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _redis = RedisServer::start_on(port).await;
    let statuses = load.await.unwrap();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    for instance in &instances {
        until_healthy(instance).await;
    }
}

#[tokio::test]
async fn a_brute_force_block_earned_on_one_instance_holds_on_the_other() {
    let redis = RedisServer::start().await;
    let toml = two_mocks(&format!("backend = \"redis\"\nurl = \"{}\"", redis.url()));
    let keyed = |toml: &str| config(toml, &[("LLM_INTERACTIVE_PROXY_API_KEY", "the-team-key")]);
    let (one, two) = (
        start(keyed(&toml), &[]).await,
        start(keyed(&toml), &[]).await,
    );
    let models = |llmux: &Llmux, key: &'static str| {
        client()
            .get(llmux.url("/v1/models"))
            .header("authorization", format!("Bearer {key}"))
            .send()
    };
    assert_eq!(models(&two, "the-team-key").await.unwrap().status(), 200);
    // Failures counted on both instances add up: three here, two there.
    for (llmux, n) in [(&one, 3), (&two, 2)] {
        for _ in 0..n {
            assert_eq!(models(llmux, "a-guess").await.unwrap().status(), 401);
        }
    }
    for llmux in [&one, &two] {
        let blocked = models(llmux, "the-team-key").await.unwrap();
        assert_eq!(
            blocked.status(),
            429,
            "blocked on every instance, right key or not"
        );
        assert!(blocked.headers().contains_key("retry-after"));
    }
}

/// Back-end `fake` at `base_url` with keys FAKE_KEY and FAKE_KEY_2, state in `redis`, and
/// `extra` settings.
fn fake_backend_on_redis(redis: &RedisServer, base_url: &str, extra: &str) -> String {
    format!(
        r#"default_backend = "fake"
{extra}
[state]
backend = "redis"
url = "{}"
[backends.fake]
type = "openai-compatible"
base_url = "{base_url}"
api_key_env = "FAKE_KEY"
"#,
        redis.url()
    )
}

async fn ask(llmux: &Llmux, model: &str) -> reqwest::Response {
    client()
        .post(llmux.url("/v1/chat/completions"))
        .timeout(Duration::from_secs(10))
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "Hi"}]}))
        .send()
        .await
        .unwrap()
}

/// Polls `llmux`'s admin stats until `found` holds of them (a rest reaches the team within
/// a sync, about a second).
async fn until_stats(llmux: &Llmux, found: impl Fn(&Value) -> bool) -> Value {
    let mut stats = Value::Null;
    for _ in 0..50 {
        stats = support::get_json(llmux, "/admin/api/stats", "").await.1;
        if found(&stats) {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the stats never showed it: {stats}");
}

#[tokio::test]
async fn a_key_rate_limited_on_one_instance_rests_on_the_other() {
    let redis = RedisServer::start().await;
    let fake = FakeOpenAi::start(Mode::LimitKeys(vec!["sk-one"])).await;
    let toml = fake_backend_on_redis(&redis, &fake.base_url, "");
    let keys = [("FAKE_KEY", "sk-one"), ("FAKE_KEY_2", "sk-two")];
    let (one, two) = (
        start(config(&toml, &[]), &keys).await,
        start(config(&toml, &[]), &keys).await,
    );
    let first = ask(&one, "m").await;
    assert_eq!(
        support::attempts_header(&first),
        "fake:m[FAKE_KEY]=429; fake:m[FAKE_KEY_2]=200"
    );
    let stats = until_stats(&two, |stats| {
        stats["keys"][0]["cooling_until"].as_f64().is_some()
    })
    .await;
    assert_eq!(stats["keys"][0]["name"], "FAKE_KEY", "{stats}");
    let before = fake.hit_count();
    let second = ask(&two, "m").await;
    assert_eq!(second.status(), 200);
    assert_eq!(
        support::attempts_header(&second),
        "",
        "straight to the key that works"
    );
    assert_eq!(fake.hit_count(), before + 1);
    let used = fake.last_request().headers["authorization"].clone();
    assert_eq!(used.to_str().unwrap(), "Bearer sk-two");
}

#[tokio::test]
async fn a_breaker_opened_on_one_instance_keeps_the_others_off_the_back_end() {
    let redis = RedisServer::start().await;
    let down = FakeOpenAi::start(Mode::Status(503)).await;
    let toml = fake_backend_on_redis(
        &redis,
        &down.base_url,
        "[circuit_breaker]\nfailures = 1\ncool_down_seconds = 30",
    );
    let keys = [("FAKE_KEY", "sk-one")];
    let (one, two) = (
        start(config(&toml, &[]), &keys).await,
        start(config(&toml, &[]), &keys).await,
    );
    assert_eq!(ask(&one, "m").await.status(), 503);
    let stats = until_stats(&two, |stats| stats["breakers"][0]["state"] == "open").await;
    assert_eq!(stats["breakers"][0]["backend"], "fake", "{stats}");
    let refused = ask(&two, "m").await;
    assert_eq!(refused.status(), 503);
    let wait: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((25..=30).contains(&wait), "the team's cool-down: {wait}");
    assert_eq!(
        down.hit_count(),
        1,
        "only the first instance called the provider"
    );
}

#[tokio::test]
async fn a_models_rate_is_the_teams_across_instances() {
    let redis = RedisServer::start().await;
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let toml = fake_backend_on_redis(
        &redis,
        &fake.base_url,
        "[models.\"small\".limits]\nrequests_per_minute = 3",
    );
    let keys = [("FAKE_KEY", "sk-one")];
    let (one, two) = (
        start(config(&toml, &[]), &keys).await,
        start(config(&toml, &[]), &keys).await,
    );
    for llmux in [&one, &two, &one] {
        assert_eq!(ask(llmux, "small").await.status(), 200);
    }
    let refused = ask(&two, "small").await;
    assert_eq!(
        refused.status(),
        429,
        "three turns a minute for the whole team"
    );
    let wait: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((15..=20).contains(&wait), "one turn every 20 s: {wait}");
    assert_eq!(fake.hit_count(), 3);
    // While Redis is away each instance counts on its own again.
    drop(redis);
    assert_eq!(ask(&two, "small").await.status(), 200);
}

#[tokio::test]
async fn an_answer_stored_by_one_instance_is_continued_and_deleted_on_another() {
    let redis = RedisServer::start().await;
    let toml = two_mocks(&format!("backend = \"redis\"\nurl = \"{}\"", redis.url()));
    let (one, two) = (
        start(config(&toml, &[]), &[]).await,
        start(config(&toml, &[]), &[]).await,
    );
    let respond =
        |llmux: &Llmux, body: Value| client().post(llmux.url("/v1/responses")).json(&body).send();
    let first: Value = respond(&one, json!({"model": "any", "input": "Hi", "store": true}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = first["id"].as_str().unwrap().to_owned();
    // The shared copy is written in the background: wait until the other instance sees it.
    let mut seen = 0;
    for _ in 0..100 {
        seen = client()
            .get(two.url(&format!("/v1/responses/{id}")))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if seen == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, 200, "the other instance reads the stored answer");
    let next = respond(
        &two,
        json!({"model": "any", "input": "And then?", "previous_response_id": id}),
    )
    .await
    .unwrap();
    assert_eq!(next.status(), 200, "{}", next.text().await.unwrap());

    let deleted = client()
        .delete(two.url(&format!("/v1/responses/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    let gone = client()
        .get(one.url(&format!("/v1/responses/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        gone.status(),
        404,
        "deleted on one instance, gone on the other"
    );
}

/// Two instances' stores of Responses answers on `redis`, and a raw view of it.
fn answer_stores(redis: &RedisServer) -> (ResponseStore, ResponseStore, Arc<RedisStore>) {
    let raw = || {
        Arc::new(
            RedisStore::new(
                &redis.url(),
                "answers:",
                Duration::from_secs(60),
                Duration::from_millis(500),
            )
            .unwrap(),
        )
    };
    let store = || ResponseStore::new(10, Duration::from_secs(60)).with_shared(raw());
    (store(), store(), raw())
}

fn an_answer() -> StoredResponse {
    StoredResponse {
        system: Vec::new(),
        messages: Vec::new(),
        response: llmux::model::Response::default(),
        echo: serde_json::Map::new(),
    }
}

#[tokio::test]
async fn an_answer_deleted_before_its_shared_write_lands_stays_deleted() {
    let redis = RedisServer::start().await;
    let (one, two, raw) = answer_stores(&redis);
    // `two` deletes the answer while `one` has yet to write it (its write is in the
    // background): the late write must not bring it back.
    assert!(!two.forget("resp_late").await, "nothing to delete yet");
    one.put("resp_late", an_answer());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stored: Value = raw.get_json("response:resp_late").await.unwrap().unwrap();
    assert_eq!(
        stored,
        json!({"deleted": true}),
        "the marker outlived the write"
    );
    assert!(two.fetch("resp_late").await.is_none());
    assert!(
        one.fetch("resp_late").await.is_none(),
        "and its own copy is let go"
    );
    assert!(one.is_empty());
    // The usual order: written, then deleted anywhere, gone everywhere.
    one.put("resp_usual", an_answer());
    until_shared(&two, "resp_usual").await;
    assert!(two.forget("resp_usual").await);
    assert!(one.fetch("resp_usual").await.is_none());
}

async fn until_shared(store: &ResponseStore, id: &str) {
    for _ in 0..100 {
        if store.fetch(id).await.is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{id} never reached the other instance");
}

#[tokio::test]
async fn an_answer_whose_shared_write_failed_is_written_when_it_is_asked_for() {
    let redis = RedisServer::start().await;
    let (one, two, _raw) = answer_stores(&redis);
    let port = redis.stop().await;
    one.put("resp_outage", an_answer());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        one.fetch("resp_outage").await.is_some(),
        "its own copy, Redis or not"
    );
    let _redis = RedisServer::start_on(port).await;
    // Past the stores' 2 s rest after a failure, asking for it writes it again.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert!(one.fetch("resp_outage").await.is_some());
    until_shared(&two, "resp_outage").await;
}

#[tokio::test]
async fn a_choice_made_during_an_outage_is_written_to_redis_when_it_is_back() {
    let redis = RedisServer::start().await;
    let toml = two_mocks(&format!(
        "backend = \"redis\"\nurl = \"{}\"\ntimeout_ms = 200",
        redis.url()
    ));
    let (one, two) = (
        start(config(&toml, &[]), &[]).await,
        start(config(&toml, &[]), &[]).await,
    );
    let port = redis.stop().await;
    say(&one, "outage", "!/backend(b)").await;
    let _redis = RedisServer::start_on(port).await;
    // The first request after the retry pause finds Redis back on `one`, which then writes
    // what changed meanwhile; `two` sees it.
    let mut seen = String::new();
    for _ in 0..100 {
        say(&one, "poke", "Hi").await;
        seen = say(&two, "outage", "Hi").await;
        if seen == "from b" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, "from b");
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
    // A password in the URL is never shown.
    let with_password =
        "[state]\nbackend = \"redis\"\nurl = \"http://:hunter2-secret@127.0.0.1\"\n";
    let refused = config_error(with_password);
    assert!(!refused.contains("hunter2-secret"), "{refused}");
    let printed = support::config_loaded(
        "[state]\nbackend = \"redis\"\nurl = \"redis://:hunter2-secret@127.0.0.1:6379/0\"\n",
    )
    .print();
    assert!(
        printed.contains("redis://:****@127.0.0.1:6379/0"),
        "{printed}"
    );
    assert!(!printed.contains("hunter2-secret"), "{printed}");
}
