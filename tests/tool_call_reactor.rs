//! The tool-call reactor over real HTTP: the user's rules steer, block, rate-limit and
//! rewrite the calls a provider makes, for each client protocol, streamed or not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::fake_openai::{FakeOpenAi, Mode};
use support::{client, config, fake_backend_config, sse_data, start};

const KEY: &[(&str, &str)] = &[("FAKE_API_KEY", "sk-fake")];
const DIFF: &str = r#"{"path":"src/app.py","diff":"@@ -1 +1 @@\n-a\n+b"}"#;

/// A config whose reactor reads these rules (and the fake provider behind it).
fn with_rules(fake: &FakeOpenAi, rules: &str) -> (tempfile::TempDir, llmux::config::Config) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reactor.toml");
    std::fs::write(&path, rules).unwrap();
    let extra = format!("[tool_call_reactor]\nrules_file = \"{}\"", path.display());
    let config = config(&fake_backend_config(&fake.base_url, &extra), &[]);
    (dir, config)
}

fn tool(name: &str) -> Value {
    support::function_tool(name)
}

async fn chat(llmux: &support::Llmux, tool_name: &str, session: &str, stream: bool) -> String {
    support::chat_with_tools(llmux, session, tool(tool_name), "Fix the bug.", stream).await
}

const STEER: &str = r#"
[[rules]]
name = "apply_diff_to_patch_file"
tool_names = ["apply_diff"]
action = "steer"
message = "use patch_file instead of {tool}"
rate_limit = { calls_per_window = 1, window_seconds = 60 }
"#;

#[tokio::test]
async fn a_steer_rule_replaces_the_first_call_of_a_session_and_lets_the_next_through() {
    let fake = FakeOpenAi::start(Mode::CallWith(DIFF)).await;
    let (_dir, config) = with_rules(&fake, STEER);
    let llmux = start(config, KEY).await;

    let body: Value = serde_json::from_str(&chat(&llmux, "apply_diff", "s1", false).await).unwrap();
    let message = &body["choices"][0]["message"];
    assert!(
        message.get("tool_calls").is_none_or(Value::is_null),
        "{body}"
    );
    assert_eq!(
        message["content"].as_str().unwrap().trim(),
        "[llmux: use patch_file instead of apply_diff]"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");

    // Within the window the same session's call passes, streamed as the provider sent it.
    let frames = sse_data(&chat(&llmux, "apply_diff", "s1", true).await).join("\n");
    assert!(frames.contains("\"name\":\"apply_diff\""), "{frames}");
    assert!(
        frames.contains("\"finish_reason\":\"tool_calls\""),
        "{frames}"
    );

    // Another session has its own budget: steered, streamed this time.
    let frames = sse_data(&chat(&llmux, "apply_diff", "s2", true).await).join("\n");
    assert!(frames.contains("use patch_file instead"), "{frames}");
    assert!(!frames.contains("\"tool_calls\":[{"), "{frames}");

    // A tool no rule names is not held and not changed.
    let body: Value = serde_json::from_str(&chat(&llmux, "Read", "s3", false).await).unwrap();
    assert_eq!(
        body["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        "Read"
    );
}

#[tokio::test]
async fn a_rewrite_renames_the_call_for_an_anthropic_client() {
    let fake = FakeOpenAi::start(Mode::CallWith(DIFF)).await;
    let rules = r#"
[[rules]]
name = "rename"
tool_names = ["apply_diff"]
action = "rewrite"
rename_to = "patch_file"
[[rules.replace]]
pattern = "^src/"
with = "lib/"
"#;
    let (_dir, config) = with_rules(&fake, rules);
    let llmux = start(config, KEY).await;
    for stream in [false, true] {
        let response = client()
            .post(llmux.url("/v1/messages"))
            .json(&json!({"model": "m", "max_tokens": 100, "stream": stream,
                "tools": [{"name": "apply_diff", "input_schema": {"type": "object"}}],
                "messages": [{"role": "user", "content": "Fix it."}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body = response.text().await.unwrap();
        if stream {
            assert!(body.contains("\"name\":\"patch_file\""), "{body}");
            assert!(body.contains("lib/app.py"), "{body}");
            assert!(body.contains("\"stop_reason\":\"tool_use\""), "{body}");
        } else {
            let body: Value = serde_json::from_str(&body).unwrap();
            let call = &body["content"][0];
            assert_eq!(call["type"], "tool_use", "{body}");
            assert_eq!(call["name"], "patch_file");
            assert_eq!(call["input"]["path"], "lib/app.py");
            assert_eq!(call["input"]["diff"], "@@ -1 +1 @@\n-a\n+b");
        }
    }
}

#[tokio::test]
async fn a_rate_limit_rule_passes_the_budget_then_answers_with_its_message() {
    let fake = FakeOpenAi::start(Mode::CallWith(r#"{"query":"rust"}"#)).await;
    let rules = r#"
[[rules]]
name = "searches"
tool_names = ["web_search"]
action = "rate-limit"
message = "two searches a minute"
rate_limit = { calls_per_window = 2, window_seconds = 60 }
"#;
    let (_dir, config) = with_rules(&fake, rules);
    let llmux = start(config, KEY).await;
    for _ in 0..2 {
        let body = chat(&llmux, "web_search", "s", false).await;
        assert!(body.contains("\"tool_calls\""), "{body}");
    }
    let body = chat(&llmux, "web_search", "s", false).await;
    assert!(!body.contains("\"tool_calls\""), "{body}");
    assert!(
        body.contains("over its limit: two searches a minute"),
        "{body}"
    );
}

#[tokio::test]
async fn a_block_rule_answers_gemini_and_responses_clients_in_their_protocol() {
    let fake = FakeOpenAi::start(Mode::CallWith(r#"{"command":"npm publish"}"#)).await;
    let rules = r#"
[[rules]]
name = "no publishing"
tool_names = ["@shell"]
commands = ["^npm publish"]
action = "block"
message = "publishing is for the user"
"#;
    let (_dir, config) = with_rules(&fake, rules);
    let llmux = start(config, KEY).await;

    let response = support::gemini_with_tool(&llmux, "run_shell_command", "ship it").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let parts = body["candidates"][0]["content"]["parts"].to_string();
    assert!(!parts.contains("functionCall"), "{body}");
    assert!(
        parts.contains("was blocked and not run: publishing is for the user"),
        "{body}"
    );

    let response = client()
        .post(llmux.url("/v1/responses"))
        .json(&json!({"model": "m", "stream": true, "input": "ship it",
            "tools": [{"type": "function", "name": "shell", "parameters": {"type": "object"}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    assert!(!body.contains("\"function_call\""), "{body}");
    assert!(body.contains("publishing is for the user"), "{body}");
    assert!(body.contains("response.completed"), "{body}");
}

#[tokio::test]
async fn a_rewrite_into_a_destructive_command_is_still_stopped() {
    let fake = FakeOpenAi::start(Mode::CallWith(r#"{"command":"git stash"}"#)).await;
    let rules = r#"
[[rules]]
name = "a bad idea"
tool_names = ["Bash"]
action = "rewrite"
[[rules.replace]]
pattern = "git stash"
with = "git reset --hard"
"#;
    let (_dir, config) = with_rules(&fake, rules);
    let llmux = start(config, KEY).await;
    let body = chat(&llmux, "Bash", "s", false).await;
    assert!(!body.contains("\"tool_calls\""), "{body}");
    assert!(body.contains("llmux stopped a tool call"), "{body}");
}

#[test]
fn a_broken_rules_file_is_refused_at_start_naming_the_key_and_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("reactor.toml");
    std::fs::write(
        &rules,
        "[[rules]]\nname = \"half\"\ntool_names = [\"x\"]\naction = \"steer\"\n",
    )
    .unwrap();
    let err = support::config_error(&fake_backend_config(
        "http://127.0.0.1:9/v1",
        &format!("[tool_call_reactor]\nrules_file = \"{}\"", rules.display()),
    ));
    assert!(err.contains("tool_call_reactor.rules_file"), "{err}");
    assert!(
        err.contains("rule 'half': this action needs a message"),
        "{err}"
    );

    let err = support::config_error(&fake_backend_config(
        "http://127.0.0.1:9/v1",
        "[tool_call_reactor]\nrules_file = \"/nonexistent/reactor.toml\"",
    ));
    assert!(err.contains("cannot read it"), "{err}");
}

#[tokio::test]
async fn the_capture_store_records_what_the_reactor_did() {
    let fake = FakeOpenAi::start(Mode::CallWith(DIFF)).await;
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("reactor.toml");
    std::fs::write(&rules, STEER).unwrap();
    let extra = format!(
        "[tool_call_reactor]\nrules_file = \"{}\"\n[capture]\ndb = \"{}\"\nflush_interval = 0.02",
        rules.display(),
        dir.path().join("capture.sqlite").display()
    );
    let llmux = start(
        config(&fake_backend_config(&fake.base_url, &extra), &[]),
        KEY,
    )
    .await;
    let response = client()
        .post(llmux.url("/v1/chat/completions"))
        .json(&json!({"model": "m", "tools": tool("apply_diff"),
            "messages": [{"role": "user", "content": "Fix the bug."}]}))
        .send()
        .await
        .unwrap();
    let row = support::captured_row(&llmux, response, "").await;
    assert_eq!(
        row["interventions"][0]["stage"], "tool-call-reactor",
        "{row}"
    );
    assert_eq!(
        row["interventions"][0]["detail"],
        "steered a call to apply_diff (apply_diff_to_patch_file)"
    );
}
