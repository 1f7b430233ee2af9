//! Subscription logins as back-ends (openai-oauth, anthropic-oauth, qwen-oauth), over real
//! HTTP to fakes of the token endpoint and the APIs (`support::fake_logins`), with the
//! credential files in a temporary directory: what clients of each protocol get, and how
//! tokens are refreshed, rotated, written back, re-read and reported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use support::fake_logins::{CLAUDE_CODE_IDENTITY, CLAUDE_MESSAGE, FakeLogins, jwt, unix_now};
use support::{Llmux, client, config, start};

const ACCOUNT_CLAIMS: &str = "https://api.openai.com/auth";

fn now_ms() -> u64 {
    unix_now() * 1000
}

/// A Codex CLI `auth.json` with this access token (a JWT expiring `expires_in` seconds from
/// now) and refresh token.
fn codex_file(access: &str, refresh: &str) -> Value {
    json!({
        "auth_mode": "chatgpt",
        "OPENAI_API_KEY": null,
        "tokens": {
            "id_token": jwt(json!({"email": "dev@example.com", ACCOUNT_CLAIMS:
                {"chatgpt_plan_type": "plus", "chatgpt_account_id": "acct-1"}})),
            "access_token": access,
            "refresh_token": refresh,
            "account_id": "acct-1",
        },
        "last_refresh": "2026-01-01T00:00:00Z",
        "agent_identity": {"kept": "as written"},
    })
}

fn codex_token(expires_in: u64, tag: &str) -> String {
    jwt(json!({"exp": unix_now() + expires_in, "tag": tag}))
}

/// A Claude Code `.credentials.json`.
fn claude_file(access: &str, refresh: &str, expires_at_ms: u64) -> Value {
    json!({
        "claudeAiOauth": {
            "accessToken": access,
            "refreshToken": refresh,
            "expiresAt": expires_at_ms,
            "scopes": ["user:inference", "user:profile"],
            "subscriptionType": "max",
        },
        "mcpOAuth": {"some-server": {"accessToken": "mcp-token"}},
    })
}

fn write(path: &Path, value: &Value) {
    std::fs::write(path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
}

fn read(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn toml_paths(paths: &[&Path]) -> String {
    let quoted: Vec<String> = paths
        .iter()
        .map(|p| format!("{:?}", p.display().to_string()))
        .collect();
    format!("[{}]", quoted.join(", "))
}

/// llmux with back-end `sub` of `kind` over the fake, `sub` the default.
async fn llmux(kind: &str, fake: &FakeLogins, paths: &[&Path], extra: &str) -> Llmux {
    let base = match kind {
        "openai-oauth" => format!("{}/codex", fake.base_url),
        "qwen-oauth" => format!("{}/qwen/v1", fake.base_url),
        _ => fake.base_url.clone(),
    };
    let toml = format!(
        r#"default_backend = "sub"
[backends.sub]
type = "{kind}"
base_url = "{base}"
token_url = "{}/oauth/token"
credentials_path = {}
{extra}
"#,
        fake.base_url,
        toml_paths(paths)
    );
    start(config(&toml, &[]), &[]).await
}

async fn chat(llmux: &Llmux, stream: bool) -> (u16, String) {
    let response = client()
        .post(llmux.url("/v1/chat/completions"))
        .header("x-session-id", "conv-1")
        .json(&json!({"model": "model-x", "stream": stream, "temperature": 0.3,
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn anthropic(llmux: &Llmux, stream: bool) -> (u16, String) {
    let body = json!({"model": "model-x", "max_tokens": 100, "stream": stream,
        "system": "Be brief.", "messages": [{"role": "user", "content": "Hi"}]});
    support::anthropic_messages(llmux, body).await
}

/// A Claude Code login whose access token has expired, at `.credentials.json` in a new
/// directory, with the fake refreshing slowly (`refresh_delay`).
async fn expired_claude_login(refresh_delay: Duration) -> (FakeLogins, tempfile::TempDir, PathBuf) {
    let fake = FakeLogins::start().await;
    fake.slow_refreshes(refresh_delay);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".credentials.json");
    fake.issue("sk-ant-oat01-old", "sk-ant-ort01-old");
    fake.revoke("sk-ant-oat01-old");
    write(
        &path,
        &claude_file("sk-ant-oat01-old", "sk-ant-ort01-old", now_ms() - 1_000),
    );
    (fake, dir, path)
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test]
async fn a_chatgpt_login_serves_openai_and_anthropic_clients_streamed_or_not() {
    let fake = FakeLogins::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.json");
    let access = codex_token(3600, "a");
    fake.issue(&access, "rt-1");
    write(&path, &codex_file(&access, "rt-1"));
    let llmux = llmux("openai-oauth", &fake, &[&path], "").await;

    for stream in [false, true] {
        let (status, body) = chat(&llmux, stream).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(support::answer_text(&body, stream), "Hello from ChatGPT.");
        let (status, body) = anthropic(&llmux, stream).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            support::anthropic_text(&body, stream),
            "Hello from ChatGPT."
        );
    }
    let seen = fake.requests("/codex/responses");
    assert_eq!(seen.len(), 4);
    for request in &seen {
        assert_eq!(request.headers["authorization"], format!("Bearer {access}"));
        assert_eq!(request.headers["chatgpt-account-id"], "acct-1");
        assert_eq!(request.headers["originator"], "codex_cli_rs");
        assert_eq!(request.body["instructions"], "Be brief.");
        assert_eq!(request.body["store"], false);
        assert_eq!(
            request.body["stream"], true,
            "streamed even for a whole answer"
        );
        assert!(request.body.get("temperature").is_none());
    }
    assert_eq!(seen[0].headers["session_id"], "conv-1");
    assert_eq!(fake.token_calls(), 0, "a fresh token is not refreshed");
}

/// Codex CLI's own request (streamed, unstored, with instructions and the encrypted
/// reasoning asked for) reaches the ChatGPT back-end as the client's bytes; a request the
/// ChatGPT shaping changes is encoded.
#[tokio::test]
async fn a_codex_request_reaches_the_chatgpt_back_end_as_the_clients_bytes() {
    let fake = FakeLogins::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.json");
    let access = codex_token(3600, "a");
    fake.issue(&access, "rt-1");
    write(&path, &codex_file(&access, "rt-1"));
    let llmux = llmux("openai-oauth", &fake, &[&path], "").await;
    let codex = r#"{"model":"gpt-5-codex","instructions":"You are Codex.","input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"List files."}]}],"tools":[{"type":"function","name":"shell","description":"Runs a command","strict":false,"parameters":{"type":"object","properties":{"command":{"type":"array","items":{"type":"string"}}}}}],"tool_choice":"auto","parallel_tool_calls":false,"reasoning":{"effort":"medium","summary":"auto"},"store":false,"stream":true,"include":["reasoning.encrypted_content"],"prompt_cache_key":"conv-1"}"#;
    // A chat client's way of saying the same: a system message instead of instructions.
    let reshaped = r#"{"model":"gpt-5-codex","input":[{"role":"system","content":"You are Codex."},{"role":"user","content":"List files."}],"store":false,"stream":true}"#;
    for body in [codex, reshaped] {
        let response = client()
            .post(llmux.url("/v1/responses"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap();
    }
    let seen = fake.requests("/codex/responses");
    assert_eq!(seen.len(), 2);
    assert_eq!(std::str::from_utf8(&seen[0].raw).unwrap(), codex);
    assert_eq!(
        seen[1].body["instructions"], "You are Codex.",
        "{}",
        seen[1].body
    );
    assert_eq!(seen[1].body["input"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_claude_login_is_sent_as_a_bearer_with_claude_codes_identity() {
    let fake = FakeLogins::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".credentials.json");
    fake.issue("sk-ant-oat01-first", "sk-ant-ort01-first");
    write(
        &path,
        &claude_file(
            "sk-ant-oat01-first",
            "sk-ant-ort01-first",
            now_ms() + 8 * 3_600_000,
        ),
    );
    let llmux = llmux("anthropic-oauth", &fake, &[&path], "").await;

    for stream in [false, true] {
        let (status, body) = anthropic(&llmux, stream).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(support::anthropic_text(&body, stream), "Hello from Claude.");
        if !stream {
            // Nothing changed the answer: the client gets Anthropic's own bytes.
            assert_eq!(body, CLAUDE_MESSAGE.replace("MODEL", "model-x"));
        }
        let (status, body) = chat(&llmux, stream).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(support::answer_text(&body, stream), "Hello from Claude.");
    }
    for request in fake.requests("/v1/messages") {
        assert!(request.headers.get("x-api-key").is_none());
        assert_eq!(
            request.headers["authorization"],
            "Bearer sk-ant-oat01-first"
        );
        assert_eq!(request.body["system"][0]["text"], CLAUDE_CODE_IDENTITY);
        assert_eq!(request.body["system"][1]["text"], "Be brief.");
        let betas = request.headers["anthropic-beta"].to_str().unwrap();
        assert!(betas.contains("oauth-2025-04-20"), "{betas}");
    }
}

#[tokio::test]
async fn a_qwen_login_calls_the_api_its_resource_url_names() {
    let fake = FakeLogins::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("oauth_creds.json");
    fake.issue("qwen-access", "qwen-refresh");
    write(
        &path,
        &json!({"access_token": "qwen-access", "refresh_token": "qwen-refresh", "token_type": "Bearer",
            "expiry_date": now_ms() + 3_600_000, "resource_url": format!("{}/qwen", fake.base_url)}),
    );
    // The back-end's own base is wrong on purpose: the login's resource_url wins.
    let toml = format!(
        r#"default_backend = "sub"
[backends.sub]
type = "qwen-oauth"
base_url = "http://127.0.0.1:9/v1"
token_url = "{0}/oauth/token"
credentials_path = "{1}"
"#,
        fake.base_url,
        path.display()
    );
    let llmux = start(config(&toml, &[]), &[]).await;
    for stream in [false, true] {
        let (status, body) = chat(&llmux, stream).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(support::answer_text(&body, stream), "Hello from Qwen.");
        let (status, body) = anthropic(&llmux, stream).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(support::anthropic_text(&body, stream), "Hello from Qwen.");
    }
    assert_eq!(
        fake.bearers("/qwen/v1/chat/completions"),
        ["qwen-access"; 4]
    );
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_for_fifty_waiting_requests_and_written_back() {
    let (fake, _dir, path) = expired_claude_login(Duration::from_millis(200)).await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let llmux = llmux("anthropic-oauth", &fake, &[&path], "").await;

    let burst = (0..50).map(|_| anthropic(&llmux, false));
    let answers = futures::future::join_all(burst).await;
    assert!(
        answers.iter().all(|(status, _)| *status == 200),
        "{answers:?}"
    );
    assert_eq!(fake.token_calls(), 1, "one refresh for the whole burst");
    let refresh = &fake.requests("/oauth/token")[0];
    assert_eq!(refresh.headers["content-type"], "application/json");
    assert_eq!(refresh.body["refresh_token"], "sk-ant-ort01-old");
    assert!(refresh.body["client_id"].as_str().is_some());

    let written = read(&path);
    let oauth = &written["claudeAiOauth"];
    assert_eq!(
        oauth["refreshToken"], "rt-rotated-1",
        "the rotated refresh token is kept"
    );
    assert_ne!(oauth["accessToken"], "sk-ant-oat01-old");
    assert!(oauth["expiresAt"].as_u64().unwrap() > now_ms() + 3_000_000);
    assert_eq!(
        oauth["subscriptionType"], "max",
        "fields llmux does not change stay"
    );
    assert_eq!(
        written["mcpOAuth"]["some-server"]["accessToken"],
        "mcp-token"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let bearers = fake.bearers("/v1/messages");
    assert!(
        bearers.iter().all(|b| *b == oauth["accessToken"]),
        "only the new token was sent"
    );
}

#[tokio::test]
async fn a_token_inside_the_refresh_window_serves_now_and_is_renewed_in_the_background() {
    let fake = FakeLogins::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.json");
    let access = codex_token(120, "soon");
    fake.issue(&access, "rt-1");
    write(&path, &codex_file(&access, "rt-1"));
    let llmux = llmux(
        "openai-oauth",
        &fake,
        &[&path],
        "refresh_ahead_seconds = 600",
    )
    .await;

    let (status, body) = chat(&llmux, false).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        fake.bearers("/codex/responses"),
        [access],
        "the still-valid token served"
    );
    eventually("the background refresh wrote the file", || {
        read(&path)["tokens"]["refresh_token"] == "rt-rotated-1"
    })
    .await;
    let written = read(&path);
    assert_ne!(written["last_refresh"], "2026-01-01T00:00:00Z");
    assert_eq!(written["agent_identity"]["kept"], "as written");
    let (status, _) = chat(&llmux, true).await;
    assert_eq!(status, 200);
    let bearers = fake.bearers("/codex/responses");
    assert_eq!(
        bearers[1],
        written["tokens"]["access_token"].as_str().unwrap()
    );
    assert_eq!(fake.token_calls(), 1);
}

#[tokio::test]
async fn a_refused_token_is_refreshed_and_the_request_sent_again_once() {
    let fake = FakeLogins::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.json");
    // Valid for an hour by its own claim, but the provider has revoked it.
    let access = codex_token(3600, "revoked");
    fake.issue(&access, "rt-1");
    fake.revoke(&access);
    write(&path, &codex_file(&access, "rt-1"));
    let llmux = llmux("openai-oauth", &fake, &[&path], "").await;

    let (status, body) = chat(&llmux, true).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(support::answer_text(&body, true), "Hello from ChatGPT.");
    let bearers = fake.bearers("/codex/responses");
    assert_eq!(bearers.len(), 2);
    assert_eq!(bearers[0], access);
    assert_eq!(fake.token_calls(), 1);

    // The rotated refresh token was written and is the one read next time: revoke the new
    // access token too, and the second refresh must present rt-rotated-1.
    fake.revoke(&bearers[1]);
    let (status, body) = chat(&llmux, false).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(fake.token_calls(), 2);
    assert_eq!(
        fake.requests("/oauth/token")[1].body["refresh_token"],
        "rt-rotated-1"
    );
    assert_eq!(read(&path)["tokens"]["refresh_token"], "rt-rotated-2");
}

#[tokio::test]
async fn a_refused_refresh_token_asks_for_a_new_login_without_retrying() {
    let fake = FakeLogins::start().await;
    fake.refuse_refreshes("refresh_token_reused");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.json");
    let access = codex_token(0, "expired");
    write(&path, &codex_file(&access, "rt-burned"));
    let llmux = llmux("openai-oauth", &fake, &[&path], "").await;

    let (status, body) = chat(&llmux, false).await;
    assert_eq!(status, 401, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("codex login"), "{message}");
    assert!(message.contains("refresh_token_reused"), "{message}");
    assert!(
        !body.contains("rt-burned") && !body.contains(&access),
        "{body}"
    );
    let mut notices = llmux.engine.notices();
    let (status, body) = anthropic(&llmux, true).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("codex login"), "{body}");
    // The desktop app hears that only the user can fix this, and how.
    match notices.try_recv() {
        Ok(llmux::router::breaker::Notice::LoginNeeded {
            backend,
            login,
            message,
        }) => {
            assert_eq!(backend, "sub");
            assert!(login.unwrap().ends_with("auth.json"));
            assert!(message.contains("codex login"), "{message}");
        }
        other => panic!("expected a LoginNeeded notice, got {other:?}"),
    }
    assert_eq!(
        fake.requests("/codex/responses").len(),
        0,
        "an expired token is never sent"
    );
    assert_eq!(
        fake.token_calls(),
        1,
        "a refused refresh token is not offered again"
    );
    // A new login (a new refresh token in the file) is tried at once.
    fake.refuse_refreshes_no_more();
    fake.issue(&codex_token(3600, "unused"), "rt-new-login");
    write(&path, &codex_file(&access, "rt-new-login"));
    // The watcher marks the file changed; the next request reads it.
    let mut status = 0;
    for _ in 0..100 {
        status = chat(&llmux, false).await.0;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(status, 200, "the new login is used");
    assert_eq!(
        fake.requests("/oauth/token")[1].body["refresh_token"],
        "rt-new-login"
    );
}

#[tokio::test]
async fn a_token_endpoint_that_is_down_is_called_once_for_all_waiting_requests_then_paused() {
    let (fake, _dir, path) = expired_claude_login(Duration::from_millis(200)).await;
    fake.token_endpoint_down(true);
    let llmux = llmux("anthropic-oauth", &fake, &[&path], "").await;
    let burst = (0..5).map(|_| anthropic(&llmux, false));
    for (status, body) in futures::future::join_all(burst).await {
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("could not be refreshed now"), "{body}");
        assert!(
            body.contains("503"),
            "the endpoint's answer is named: {body}"
        );
    }
    assert_eq!(fake.token_calls(), 1, "the waiters did not each call it");
    // Back up, but inside the pause: not called yet.
    fake.token_endpoint_down(false);
    let (status, _) = anthropic(&llmux, false).await;
    assert_eq!(status, 503);
    assert_eq!(fake.token_calls(), 1);
}

#[tokio::test]
async fn a_logout_during_a_refresh_is_not_undone_and_an_unclear_refusal_is_not_final() {
    let (fake, _dir, path) = expired_claude_login(Duration::from_millis(400)).await;
    let first = llmux("anthropic-oauth", &fake, &[&path], "").await;
    let logout = {
        let path = path.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            std::fs::remove_file(&path).unwrap();
        })
    };
    let (status, body) = anthropic(&first, false).await;
    logout.await.unwrap();
    assert_eq!(
        status, 200,
        "the refreshed token serves this request: {body}"
    );
    assert!(
        !path.exists(),
        "the logout is not undone by writing the login back"
    );

    // A refusal that does not say the refresh token is dead (a firewall, a bad request)
    // is a passing failure: 503, not "log in again".
    let (fake, _dir, path) = expired_claude_login(Duration::ZERO).await;
    fake.refuse_refreshes("invalid_request");
    let second = llmux("anthropic-oauth", &fake, &[&path], "").await;
    let (status, body) = anthropic(&second, false).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("could not be refreshed now"), "{body}");
}

#[tokio::test]
async fn two_backends_on_one_login_file_share_one_refresh() {
    let (fake, dir, path) = expired_claude_login(Duration::from_millis(200)).await;
    // The same file, spelled two ways.
    let other_spelling = dir.path().join(".").join(".credentials.json");
    let toml = format!(
        r#"default_backend = "one"
[backends.one]
type = "anthropic-oauth"
base_url = "{base}"
token_url = "{base}/oauth/token"
credentials_path = {first}
[backends.two]
type = "anthropic-oauth"
base_url = "{base}"
token_url = "{base}/oauth/token"
credentials_path = {second}
"#,
        base = fake.base_url,
        first = toml_paths(&[&path]),
        second = toml_paths(&[&other_spelling]),
    );
    let llmux = start(config(&toml, &[]), &[]).await;
    let ask = |model: &'static str| {
        let llmux = &llmux;
        async move {
            support::anthropic_messages(
                llmux,
                json!({"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}),
            )
            .await
        }
    };
    let burst = (0..6).map(|n| {
        ask(if n % 2 == 0 {
            "one:model-x"
        } else {
            "two:model-x"
        })
    });
    for (status, body) in futures::future::join_all(burst).await {
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(
        fake.token_calls(),
        1,
        "one refresh for both back-ends (two would burn the rotating refresh token)"
    );
}

#[tokio::test]
async fn a_login_made_during_a_refresh_wins_over_it() {
    let (fake, _dir, path) = expired_claude_login(Duration::from_millis(400)).await;
    let llmux = llmux("anthropic-oauth", &fake, &[&path], "").await;
    let relogin = {
        let (fake, path) = (fake.clone(), path.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            // `claude /login` while llmux waits for the token endpoint.
            fake.issue("sk-ant-oat01-new", "sk-ant-ort01-old");
            write(
                &path,
                &claude_file("sk-ant-oat01-new", "sk-ant-ort01-new", now_ms() + 3_600_000),
            );
        })
    };
    let (status, body) = anthropic(&llmux, false).await;
    relogin.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(fake.token_calls(), 1);
    assert_eq!(
        read(&path)["claudeAiOauth"]["refreshToken"],
        "sk-ant-ort01-new",
        "the new login was not overwritten"
    );
    assert_eq!(fake.bearers("/v1/messages"), ["sk-ant-oat01-new"]);
}

#[tokio::test]
async fn the_first_byte_timeout_starts_after_the_token_is_ready() {
    let (fake, _dir, path) = expired_claude_login(Duration::from_millis(700)).await;
    let llmux = llmux(
        "anthropic-oauth",
        &fake,
        &[&path],
        "first_byte_timeout_seconds = 0.5",
    )
    .await;
    let (status, body) = anthropic(&llmux, true).await;
    assert_eq!(
        status, 200,
        "a slow refresh is not the provider's first byte: {body}"
    );
}

#[tokio::test]
async fn a_relogin_while_running_is_picked_up_and_a_deleted_login_is_reported() {
    let fake = FakeLogins::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.json");
    let first = codex_token(3600, "first");
    fake.issue(&first, "rt-1");
    write(&path, &codex_file(&first, "rt-1"));
    let llmux = llmux("openai-oauth", &fake, &[&path], "").await;
    assert_eq!(chat(&llmux, false).await.0, 200);

    // `codex login` again: the CLI truncates and writes in place.
    let second = codex_token(3600, "second");
    fake.issue(&second, "rt-2");
    write(&path, &codex_file(&second, "rt-2"));
    let mut used_second = false;
    for _ in 0..40 {
        assert_eq!(chat(&llmux, false).await.0, 200);
        if fake.bearers("/codex/responses").last() == Some(&second) {
            used_second = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(used_second, "the re-login was picked up without a restart");

    // Half-written: a request that reads it waits for the rest.
    let third = codex_token(3600, "third");
    fake.issue(&third, "rt-3");
    let whole = serde_json::to_vec_pretty(&codex_file(&third, "rt-3")).unwrap();
    std::fs::write(&path, &whole[..whole.len() / 2]).unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let finisher = {
        let path = path.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            std::fs::write(&path, &whole).unwrap();
        })
    };
    let (status, body) = chat(&llmux, false).await;
    finisher.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(fake.bearers("/codex/responses").last(), Some(&third));

    // Logged out: the file is gone.
    std::fs::remove_file(&path).unwrap();
    let mut reported = String::new();
    for _ in 0..40 {
        let (status, body) = chat(&llmux, false).await;
        if status == 401 {
            reported = body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reported.contains("no login at"), "{reported}");
    assert!(reported.contains("codex login"), "{reported}");
}

#[tokio::test]
async fn two_accounts_take_turns_when_one_is_rate_limited() {
    let fake = FakeLogins::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (one, two): (PathBuf, PathBuf) = (dir.path().join("one.json"), dir.path().join("two.json"));
    let (a, b) = (codex_token(3600, "one"), codex_token(3600, "two"));
    fake.issue(&a, "rt-a");
    fake.issue(&b, "rt-b");
    fake.limit(&a);
    write(&one, &codex_file(&a, "rt-a"));
    write(&two, &codex_file(&b, "rt-b"));
    let llmux = llmux("openai-oauth", &fake, &[&one, &two], "").await;

    let response = client()
        .post(llmux.url("/v1/chat/completions"))
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "Hi"}]}))
        .send()
        .await
        .unwrap();
    let attempts = support::attempts_header(&response);
    assert_eq!(response.status(), 200);
    assert!(
        attempts.contains("one.json]=429") && attempts.contains("two.json]=200"),
        "{attempts}"
    );
    assert_eq!(fake.bearers("/codex/responses"), [a, b]);
}

#[tokio::test]
async fn the_admin_api_shows_each_login_and_never_a_token() {
    let fake = FakeLogins::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.json");
    let access = codex_token(3600, "admin");
    fake.issue(&access, "rt-1");
    fake.revoke(&access);
    write(&path, &codex_file(&access, "rt-1"));
    let missing = dir.path().join("never-logged-in.json");
    let llmux = llmux(
        "openai-oauth",
        &fake,
        &[&path],
        &format!(
            "[backends.claude]\ntype = \"anthropic-oauth\"\ncredentials_path = \"{}\"",
            missing.display()
        ),
    )
    .await;
    assert_eq!(
        chat(&llmux, false).await.0,
        200,
        "served after a 401 and a refresh"
    );

    let (status, stats) = support::get_json(&llmux, "/admin/api/stats", "").await;
    assert_eq!(status, 200, "{stats}");
    let logins = stats["logins"].as_array().unwrap();
    let login = |backend: &str| logins.iter().find(|l| l["backend"] == backend).unwrap();
    let chatgpt = login("sub");
    assert_eq!(chatgpt["kind"], "openai-oauth");
    assert_eq!(chatgpt["email"], "dev@example.com");
    assert_eq!(chatgpt["plan"], "plus");
    assert_eq!(chatgpt["refreshes"], 1);
    assert_eq!(chatgpt["login_command"], "codex login");
    let valid_until = chatgpt["valid_until"].as_f64().unwrap();
    assert!(valid_until > unix_now() as f64 + 3000.0, "{chatgpt}");
    assert!(chatgpt["last_refresh"].as_f64().is_some());
    assert!(chatgpt["last_error"].is_null(), "{chatgpt}");

    // Never used and never logged in: not an error, just no login yet.
    let claude = login("claude");
    assert_eq!(claude["found"], false, "{claude}");
    assert!(claude["last_error"].is_null(), "{claude}");
    assert_eq!(claude["login_command"], "claude /login");
    assert_eq!(chatgpt["found"], true);

    let text = stats.to_string();
    let written = read(&path);
    for secret in [
        access.as_str(),
        "rt-1",
        written["tokens"]["access_token"].as_str().unwrap(),
        written["tokens"]["refresh_token"].as_str().unwrap(),
    ] {
        assert!(!text.contains(secret), "a token in the stats: {secret}");
    }
}

#[tokio::test]
async fn a_qwen_refresh_waits_for_qwen_codes_lock_and_sends_a_form() {
    let fake = FakeLogins::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("oauth_creds.json");
    fake.issue("qwen-old", "qwen-refresh");
    fake.revoke("qwen-old");
    write(
        &path,
        &json!({"access_token": "qwen-old", "refresh_token": "qwen-refresh", "token_type": "Bearer",
            "expiry_date": now_ms() - 1_000, "resource_url": format!("{}/qwen", fake.base_url)}),
    );
    // Qwen Code is refreshing: its lock stays 300 ms.
    let lock = dir.path().join("oauth_creds.lock");
    std::fs::write(&lock, "4242").unwrap();
    let release = {
        let lock = lock.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            std::fs::remove_file(&lock).unwrap();
        })
    };
    let llmux = llmux("qwen-oauth", &fake, &[&path], "").await;
    let started = std::time::Instant::now();
    let (status, body) = chat(&llmux, false).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        started.elapsed() >= Duration::from_millis(290),
        "waited for the lock"
    );
    release.await.unwrap();
    assert!(!lock.exists(), "llmux's own lock is gone");
    let refresh = &fake.requests("/oauth/token")[0];
    assert_eq!(
        refresh.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(refresh.body["refresh_token"], "qwen-refresh");
    let written = read(&path);
    assert!(written["expiry_date"].as_u64().unwrap() > now_ms() + 3_000_000);
    assert_eq!(written["token_type"], "Bearer");
}

#[tokio::test]
async fn a_login_on_disk_counts_as_a_provider_for_the_first_run_state() {
    let fake = FakeLogins::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.json");
    let llmux = llmux("openai-oauth", &fake, &[&path], "").await;
    assert!(
        !llmux.engine.has_provider(),
        "no keys and no login file yet"
    );
    write(&path, &codex_file(&codex_token(3600, "x"), "rt"));
    assert!(llmux.engine.has_provider());
}
