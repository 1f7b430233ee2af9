//! Gemini through Code Assist with Google logins (gemini-cli-oauth-personal,
//! gemini-cli-cloud-project), over real HTTP to a fake of Google's token endpoint and of
//! Code Assist (`support::fake_logins`): the account's project learned once (onboarding
//! when needed), the envelope, refreshes that need the client secret, service-account
//! assertions, quota errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;

use serde_json::{Value, json};
use support::fake_logins::{FakeLogins, jwt, unix_now};
use support::{Llmux, client, config, start};

fn now_ms() -> u64 {
    unix_now() * 1000
}

/// The Gemini CLI's `oauth_creds.json`.
fn gemini_file(access: &str, refresh: &str, expiry_ms: u64) -> Value {
    json!({
        "access_token": access,
        "refresh_token": refresh,
        "scope": "https://www.googleapis.com/auth/cloud-platform",
        "token_type": "Bearer",
        "id_token": jwt(json!({"email": "gemini-user@example.com"})),
        "expiry_date": expiry_ms,
    })
}

fn write(path: &Path, value: &Value) {
    std::fs::write(path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
}

async fn llmux(
    kind: &str,
    fake: &FakeLogins,
    path: &Path,
    extra: &str,
    env: &[(&str, &str)],
) -> Llmux {
    let toml = format!(
        r#"default_backend = "gem"
[backends.gem]
type = "{kind}"
base_url = "{0}/v1internal"
token_url = "{0}/oauth/token"
credentials_path = "{1}"
onboard_poll_seconds = 0
{extra}
"#,
        fake.base_url,
        path.display()
    );
    start(config(&toml, env), &[]).await
}

async fn gemini(llmux: &Llmux, stream: bool) -> (u16, String) {
    let method = if stream {
        "streamGenerateContent?alt=sse"
    } else {
        "generateContent"
    };
    let response = client()
        .post(llmux.url(&format!("/v1beta/models/gemini-2.5-pro:{method}")))
        .json(&json!({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The text of a Gemini answer, streamed (SSE) or not.
fn gemini_text(body: &str, stream: bool) -> String {
    let answers: Vec<Value> = if stream {
        support::sse_data(body)
            .iter()
            .filter_map(|f| serde_json::from_str(f).ok())
            .collect()
    } else {
        vec![serde_json::from_str(body).unwrap()]
    };
    answers
        .iter()
        .flat_map(|a| {
            a["candidates"][0]["content"]["parts"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|p| p["text"].as_str().map(str::to_owned))
        .collect()
}

async fn chat(llmux: &Llmux, stream: bool) -> reqwest::Response {
    client()
        .post(llmux.url("/v1/chat/completions"))
        .json(&json!({"model": "gemini-2.5-pro", "stream": stream,
            "messages": [{"role": "user", "content": "Hi"}]}))
        .send()
        .await
        .unwrap()
}

async fn anthropic(llmux: &Llmux, stream: bool) -> (u16, String) {
    let body = json!({"model": "gemini-2.5-pro", "max_tokens": 64, "stream": stream,
        "messages": [{"role": "user", "content": "Hi"}]});
    support::anthropic_messages(llmux, body).await
}

#[tokio::test]
async fn a_personal_login_is_onboarded_once_then_serves_gemini_and_openai_clients() {
    let fake = FakeLogins::start().await;
    fake.code_assist_account(
        None,
        json!([{"id": "free-tier", "isDefault": true}, {"id": "standard-tier"}]),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("oauth_creds.json");
    fake.issue("ya29.personal", "1//refresh");
    write(
        &path,
        &gemini_file("ya29.personal", "1//refresh", now_ms() + 3_600_000),
    );
    let llmux = llmux("gemini-cli-oauth-personal", &fake, &path, "", &[]).await;

    for stream in [false, true] {
        let (status, body) = gemini(&llmux, stream).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(gemini_text(&body, stream), "Hello from Code Assist.");
        let response = chat(&llmux, stream).await;
        assert_eq!(response.status(), 200);
        let body = response.text().await.unwrap();
        assert_eq!(
            support::answer_text(&body, stream),
            "Hello from Code Assist."
        );
        let (status, body) = anthropic(&llmux, stream).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            support::anthropic_text(&body, stream),
            "Hello from Code Assist."
        );
    }
    let onboard = fake.requests("onboardUser");
    assert_eq!(onboard.len(), 1, "the project is learned once");
    assert_eq!(onboard[0].body["tierId"], "free-tier");
    assert!(onboard[0].body.get("cloudaicompanionProject").is_none());
    assert_eq!(fake.onboard_polls(), 1);
    let generated: Vec<_> = ["generateContent", "streamGenerateContent"]
        .iter()
        .flat_map(|path| fake.requests(path))
        .collect();
    assert_eq!(generated.len(), 6);
    for request in generated {
        assert_eq!(request.body["project"], "proj-onboarded");
        assert_eq!(request.body["model"], "gemini-2.5-pro");
        assert_eq!(request.headers["authorization"], "Bearer ya29.personal");
        assert!(request.body["user_prompt_id"].as_str().is_some());
    }
}

#[tokio::test]
async fn an_expired_personal_login_is_refreshed_only_with_the_client_secret() {
    let fake = FakeLogins::start().await;
    fake.code_assist_account(Some("proj-personal"), json!([]));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("oauth_creds.json");
    fake.issue("ya29.expired", "1//refresh");
    fake.revoke("ya29.expired");
    write(
        &path,
        &gemini_file("ya29.expired", "1//refresh", now_ms() - 1_000),
    );

    // Without the secret: the token is never sent, and the user is told what to do.
    let without = llmux("gemini-cli-oauth-personal", &fake, &path, "", &[]).await;
    let (status, body) = gemini(&without, false).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("GEMINI_CLI_OAUTH_CLIENT_SECRET"), "{body}");
    assert_eq!(fake.token_calls(), 0);

    let with = llmux(
        "gemini-cli-oauth-personal",
        &fake,
        &path,
        "",
        &[(
            "GEMINI_CLI_OAUTH_CLIENT_SECRET",
            "public-installed-app-secret",
        )],
    )
    .await;
    let (status, body) = gemini(&with, true).await;
    assert_eq!(status, 200, "{body}");
    let refresh = &fake.requests("/oauth/token")[0];
    assert_eq!(
        refresh.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(refresh.body["client_secret"], "public-installed-app-secret");
    assert!(
        refresh.body["client_id"]
            .as_str()
            .unwrap()
            .ends_with(".apps.googleusercontent.com")
    );
    let written: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_ne!(written["access_token"], "ya29.expired");
    assert!(written["expiry_date"].as_u64().unwrap() > now_ms() + 3_000_000);
    assert!(
        written["id_token"].as_str().is_some(),
        "fields the answer lacks stay"
    );
    assert!(!body.contains("public-installed-app-secret"));
}

/// A throwaway RSA key pair made with openssl: (private PKCS#8 PEM, public PEM).
fn rsa_key_pair(dir: &Path) -> (String, Vec<u8>) {
    let private = dir.join("key.pem");
    let public = dir.join("pub.pem");
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        private.to_str().unwrap(),
    ]);
    run(&[
        "pkey",
        "-in",
        private.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    (
        std::fs::read_to_string(private).unwrap(),
        std::fs::read(public).unwrap(),
    )
}

#[tokio::test]
async fn a_cloud_project_service_account_signs_for_its_tokens_and_onboards_its_project() {
    let fake = FakeLogins::start().await;
    fake.code_assist_account(
        None,
        json!([{"id": "free-tier", "isDefault": true}, {"id": "standard-tier"}]),
    );
    let dir = tempfile::tempdir().unwrap();
    let (private_pem, public_pem) = rsa_key_pair(dir.path());
    fake.trust_service_account(&public_pem);
    let path = dir.path().join("service-account.json");
    let key = json!({
        "type": "service_account",
        "project_id": "my-project",
        "private_key_id": "key-1",
        "private_key": private_pem,
        "client_email": "llmux@my-project.iam.gserviceaccount.com",
        "client_id": "1234",
        "token_uri": "https://oauth2.googleapis.com/token",
    });
    write(&path, &key);
    let llmux = llmux(
        "gemini-cli-cloud-project",
        &fake,
        &path,
        "",
        &[("GOOGLE_CLOUD_PROJECT", "my-project")],
    )
    .await;

    let (status, body) = gemini(&llmux, false).await;
    assert_eq!(status, 200, "{body}");
    let response = chat(&llmux, true).await;
    assert_eq!(response.status(), 200);
    let grant = &fake.requests("/oauth/token")[0];
    assert_eq!(
        grant.body["grant_type"],
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    );
    assert_eq!(
        fake.token_calls(),
        1,
        "the token is reused while it is good"
    );
    let onboard = &fake.requests("onboardUser")[0];
    assert_eq!(
        onboard.body["tierId"], "standard-tier",
        "never the free tier"
    );
    assert_eq!(onboard.body["cloudaicompanionProject"], "my-project");
    for request in fake.requests("generateContent") {
        assert_eq!(request.body["project"], "my-project");
        assert_eq!(request.headers["authorization"], "Bearer ya29.service-1");
    }
    let unchanged: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(unchanged, key, "a key file is never written");
}

#[tokio::test]
async fn a_cloud_project_without_a_project_says_what_to_set() {
    let fake = FakeLogins::start().await;
    fake.code_assist_account(None, json!([{"id": "standard-tier"}]));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("adc.json");
    fake.issue("ya29.user", "1//user");
    write(
        &path,
        &json!({"type": "authorized_user", "client_id": "gcloud-client.apps.googleusercontent.com",
            "client_secret": "gcloud-secret", "refresh_token": "1//user"}),
    );
    let llmux = llmux("gemini-cli-cloud-project", &fake, &path, "", &[]).await;
    let response = chat(&llmux, false).await;
    assert_eq!(response.status(), 503);
    let body = response.text().await.unwrap();
    assert!(body.contains("GOOGLE_CLOUD_PROJECT"), "{body}");
    let refresh = &fake.requests("/oauth/token")[0];
    assert_eq!(
        refresh.body["client_id"], "gcloud-client.apps.googleusercontent.com",
        "the file's own client"
    );
    assert_eq!(refresh.body["client_secret"], "gcloud-secret");
}

#[tokio::test]
async fn an_exhausted_quota_is_a_429_with_the_wait_google_gave() {
    let fake = FakeLogins::start().await;
    fake.code_assist_account(Some("proj-personal"), json!([]));
    fake.exhaust_quota(17);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("oauth_creds.json");
    fake.issue("ya29.limited", "1//refresh");
    write(
        &path,
        &gemini_file("ya29.limited", "1//refresh", now_ms() + 3_600_000),
    );
    let llmux = llmux("gemini-cli-oauth-personal", &fake, &path, "", &[]).await;
    let response = chat(&llmux, true).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "17");
    let body = response.text().await.unwrap();
    assert!(body.contains("quota will reset"), "{body}");
}

/// A global npm install of the Gemini CLI under `dir`: `bin/gemini` links into its package,
/// whose core module holds `OAUTH_CLIENT_SECRET = secret`. Returns the `bin` directory.
#[cfg(unix)]
fn installed_gemini_cli(dir: &Path, secret: &str) -> std::path::PathBuf {
    let package = dir.join("lib/node_modules/@google/gemini-cli");
    let core = package.join("node_modules/@google/gemini-cli-core/dist/src/code_assist");
    std::fs::create_dir_all(package.join("dist")).unwrap();
    std::fs::create_dir_all(&core).unwrap();
    std::fs::write(package.join("dist/index.js"), "#!/usr/bin/env node\n").unwrap();
    std::fs::write(
        core.join("oauth2.js"),
        format!("export const OAUTH_CLIENT_SECRET = '{secret}';\n"),
    )
    .unwrap();
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(package.join("dist/index.js"), bin.join("gemini")).unwrap();
    bin
}

#[cfg(unix)]
#[tokio::test]
async fn without_the_variable_the_secret_comes_from_the_installed_gemini_cli() {
    let fake = FakeLogins::start().await;
    fake.code_assist_account(Some("proj-personal"), json!([]));
    let dir = tempfile::tempdir().unwrap();
    let bin = installed_gemini_cli(dir.path(), "secret-from-the-install");
    let path = dir.path().join("oauth_creds.json");
    fake.issue("ya29.expired", "1//refresh");
    fake.revoke("ya29.expired");
    write(
        &path,
        &gemini_file("ya29.expired", "1//refresh", now_ms() - 1_000),
    );
    let search = format!("/nonexistent:{}", bin.display());
    let llmux = llmux(
        "gemini-cli-oauth-personal",
        &fake,
        &path,
        "",
        &[("PATH", &search)],
    )
    .await;
    let (status, body) = gemini(&llmux, false).await;
    assert_eq!(status, 200, "{body}");
    let refresh = &fake.requests("/oauth/token")[0];
    assert_eq!(refresh.body["client_secret"], "secret-from-the-install");
}
