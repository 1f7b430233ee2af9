//! Content rewriting over real HTTP: inbound rules change the system prompt and user
//! messages the provider gets, outbound rules add to and replace in the answer (a match
//! split across stream chunks included), each only where its back-end, model and client
//! filters match.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use support::fake_openai::{FakeOpenAi, Mode};
use support::{client, config, fake_backend_config, start};

const RULES: &str = r#"
[[rules]]
direction = "inbound"
target = "system"
action = "replace"
pattern = "You are (\\w+)"
text = "You are a careful $1"

[[rules]]
direction = "inbound"
target = "system"
action = "append"
text = " Keep answers short."
model = "^small$"

[[rules]]
direction = "inbound"
target = "user"
action = "prepend"
text = "[from the IDE] "
client = "(?i)vscode"

[[rules]]
direction = "outbound"
target = "answer"
action = "append"
text = " (via llmux)"
backend = "^fake$"

[[rules]]
direction = "outbound"
target = "answer"
action = "replace"
pattern = "from (fake)"
text = "from the $1 provider"
"#;

async fn ask(llmux: &support::Llmux, model: &str, agent: &str, stream: bool) -> String {
    let response = client()
        .post(llmux.url("/v1/chat/completions"))
        .header("user-agent", agent)
        .json(&json!({"model": model, "stream": stream, "messages": [
            {"role": "system", "content": "You are Claude. Be nice."},
            {"role": "user", "content": "Hi."}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    support::answer_text(&body, stream)
}

#[tokio::test]
async fn rules_rewrite_what_goes_in_and_add_to_what_comes_out_where_they_apply() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, RULES).unwrap();
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let toml = fake_backend_config(
        &fake.base_url,
        &format!("[content_rewriting]\nrules_file = \"{}\"", rules.display()),
    );
    let llmux = start(config(&toml, &[]), &[("FAKE_API_KEY", "sk-fake")]).await;

    let answer = ask(&llmux, "small", "vscode-extension/1.0", false).await;
    assert_eq!(answer, "Hello from the fake provider. (via llmux)");
    let sent = fake.last_request().body;
    assert_eq!(
        sent["messages"][0]["content"],
        "You are a careful Claude. Be nice. Keep answers short."
    );
    assert_eq!(sent["messages"][1]["content"], "[from the IDE] Hi.");

    // Another model and client: only the rules without filters apply; streamed too.
    let answer = ask(&llmux, "large", "curl/8", true).await;
    assert_eq!(answer, "Hello from the fake provider. (via llmux)");
    let sent = fake.last_request().body;
    assert_eq!(
        sent["messages"][0]["content"],
        "You are a careful Claude. Be nice."
    );
    assert_eq!(sent["messages"][1]["content"], "Hi.");
}

#[test]
fn the_shipped_examples_parse_and_a_broken_file_is_refused_naming_the_key() {
    let examples = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/content_rewriting.toml"),
    )
    .unwrap();
    assert_eq!(
        llmux::pipeline::content_rewriting::parse_rules(&examples)
            .unwrap()
            .len(),
        3
    );
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, "[[rules]]\ndirection = \"inbound\"\ntarget = \"user\"\naction = \"replace\"\ntext = \"x\"\n").unwrap();
    let err = support::config_error(&fake_backend_config(
        "http://127.0.0.1:9/v1",
        &format!("[content_rewriting]\nrules_file = \"{}\"", rules.display()),
    ));
    assert!(err.contains("content_rewriting.rules_file"), "{err}");
    assert!(err.contains("needs a pattern"), "{err}");
}
