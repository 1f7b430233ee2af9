//! Each steering stage seen through the official SDKs (openai chat and responses,
//! anthropic, google-genai; tests/python/steering_sdk_client.py): the SDK parses llmux's
//! answer strictly and reports its text, reasoning, calls and finish, for all four client
//! protocols, streamed and not (alternating per stage so each protocol gets both).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::fake_openai::{FakeOpenAi, Mode};
use support::{config, fake_backend_config, start};

const KEY: &[(&str, &str)] = &[("FAKE_API_KEY", "sk-fake")];
const PROTOCOLS: [&str; 4] = ["chat", "responses", "anthropic", "gemini"];

/// What an SDK made of one turn.
#[derive(Debug)]
struct Turn {
    protocol: &'static str,
    /// Shown in failure messages.
    #[allow(dead_code)]
    stream: bool,
    answer: Value,
}

impl Turn {
    fn text(&self) -> &str {
        self.answer["text"].as_str().unwrap_or_default()
    }

    fn calls(&self) -> &Vec<Value> {
        self.answer["calls"].as_array().unwrap()
    }

    /// The finish each protocol reports for a normal end of turn.
    fn ended_normally(&self) -> bool {
        let finish = self.answer["finish"].as_str().unwrap_or_default();
        match self.protocol {
            "chat" => finish == "stop",
            "responses" => finish == "completed",
            "anthropic" => finish == "end_turn",
            _ => finish == "STOP",
        }
    }

    /// The finish each protocol reports for an answer that calls a tool.
    fn ended_with_a_call(&self) -> bool {
        let finish = self.answer["finish"].as_str().unwrap_or_default();
        match self.protocol {
            "chat" => finish == "tool_calls",
            "responses" => finish == "completed",
            "anthropic" => finish == "tool_use",
            _ => finish == "STOP",
        }
    }
}

/// One turn through each protocol's SDK, concurrently; `stage` picks which protocols
/// stream, so successive stages alternate.
async fn through_every_sdk(
    llmux: &support::Llmux,
    tool: &str,
    prompt: &str,
    stage: usize,
) -> Vec<Turn> {
    let runs = PROTOCOLS.iter().enumerate().map(|(i, protocol)| {
        let stream = (i + stage).is_multiple_of(2);
        let base_url = llmux.url("");
        let (tool, prompt) = (tool.to_owned(), prompt.to_owned());
        async move {
            let mut args = vec![
                "--protocol".to_owned(),
                (*protocol).to_owned(),
                "--base-url".into(),
                base_url.trim_end_matches('/').to_owned(),
                "--tool".into(),
                tool,
                "--prompt".into(),
                prompt,
            ];
            if stream {
                args.push("--stream".into());
            }
            let (ok, output) = support::python::run_script("steering_sdk_client.py", &args).await;
            assert!(ok, "{protocol} (stream {stream}) failed:\n{output}");
            let answer: Value = serde_json::from_str(output.trim())
                .unwrap_or_else(|e| panic!("{protocol}: {e}:\n{output}"));
            Turn {
                protocol,
                stream,
                answer,
            }
        }
    });
    futures::future::join_all(runs).await
}

async fn llmux_with(mode: Mode, extra: &str) -> (FakeOpenAi, support::Llmux) {
    let fake = FakeOpenAi::start(mode).await;
    let llmux = start(
        config(&fake_backend_config(&fake.base_url, extra), &[]),
        KEY,
    )
    .await;
    (fake, llmux)
}

/// A rules file in a directory the caller keeps alive.
fn rules_file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn dangerous_commands_through_every_sdk() {
    let (_fake, llmux) = llmux_with(
        Mode::CallWith(r#"{"command":"git reset --hard HEAD~3"}"#),
        "",
    )
    .await;
    for turn in through_every_sdk(&llmux, "Bash", "Start over.", 0).await {
        assert!(turn.calls().is_empty(), "{turn:?}");
        assert!(
            turn.text().contains("llmux stopped a tool call"),
            "{turn:?}"
        );
        assert!(turn.ended_normally(), "{turn:?}");
    }
}

#[tokio::test]
async fn the_tool_call_reactor_through_every_sdk() {
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(
        &dir,
        "reactor.toml",
        "[[rules]]\nname = \"diff\"\ntool_names = [\"apply_diff\"]\naction = \"steer\"\n\
         message = \"use patch_file instead\"\n",
    );
    let (_fake, llmux) = llmux_with(
        Mode::CallWith(r#"{"command":"patch"}"#),
        &format!("[tool_call_reactor]\nrules_file = \"{rules}\""),
    )
    .await;
    for turn in through_every_sdk(&llmux, "apply_diff", "Fix it.", 1).await {
        assert!(turn.calls().is_empty(), "{turn:?}");
        assert!(turn.text().contains("use patch_file instead"), "{turn:?}");
        assert!(turn.ended_normally(), "{turn:?}");
    }
}

#[tokio::test]
async fn tool_call_repair_through_every_sdk() {
    let written = "On it.\n<tool_call>\n{\"name\": \"Bash\", \"arguments\": {\"command\": \"ls -la\"}}\n</tool_call>";
    let (_fake, llmux) = llmux_with(Mode::Write(written), "").await;
    for turn in through_every_sdk(&llmux, "Bash", "What is here?", 0).await {
        assert_eq!(
            turn.calls(),
            &vec![json!({"name": "Bash", "arguments": {"command": "ls -la"}})],
            "{turn:?}"
        );
        assert_eq!(turn.text().trim(), "On it.", "{turn:?}");
        assert!(turn.ended_with_a_call(), "{turn:?}");
    }
}

#[tokio::test]
async fn think_tags_through_every_sdk() {
    let (_fake, llmux) = llmux_with(
        Mode::Write("<think>The user wants a greeting.</think>\n\nHello!"),
        "",
    )
    .await;
    for turn in through_every_sdk(&llmux, "Bash", "Greet me.", 1).await {
        assert_eq!(turn.text(), "Hello!", "{turn:?}");
        assert_eq!(
            turn.answer["reasoning"], "The user wants a greeting.",
            "{turn:?}"
        );
        assert!(turn.ended_normally(), "{turn:?}");
    }
}

#[tokio::test]
async fn loop_detection_through_every_sdk() {
    let (_fake, llmux) = llmux_with(Mode::Looping, "[loop_detection]\nenabled = true").await;
    // A looping stream is cut as it streams; a client that did not ask for a stream gets
    // the cut answer whole.
    for turn in through_every_sdk(&llmux, "Bash", "Read the config.", 0).await {
        assert!(
            turn.text().contains("llmux stopped this answer"),
            "{turn:?}"
        );
        assert!(
            turn.text()
                .starts_with("I should read the configuration file again"),
            "{turn:?}"
        );
        assert!(turn.ended_normally(), "{turn:?}");
    }
}

#[tokio::test]
async fn pytest_steering_through_every_sdk() {
    let (_fake, llmux) = llmux_with(
        Mode::CallWith(r#"{"command":"python -m pytest -q"}"#),
        "[session]\npytest_full_suite_steering_enabled = true",
    )
    .await;
    for turn in through_every_sdk(&llmux, "Bash", "Run the tests.", 1).await {
        assert!(turn.calls().is_empty(), "{turn:?}");
        assert!(turn.text().contains("whole pytest suite"), "{turn:?}");
    }
}

#[tokio::test]
async fn content_rewriting_and_prompt_redaction_through_every_sdk() {
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(
        &dir,
        "rewriting.toml",
        "[[rules]]\ndirection = \"outbound\"\ntarget = \"answer\"\naction = \"append\"\n\
         text = \" (checked by llmux)\"\n",
    );
    let (fake, llmux) = llmux_with(
        Mode::Write("All good."),
        &format!("[content_rewriting]\nrules_file = \"{rules}\"\n[redaction]\nprompts = true"),
    )
    .await;
    let secret = "sk-proj-Abcdefghijklmnopqrstuvwxyz0123456789ABCD";
    let prompt = format!("My key is {secret}, is it fine?");
    for turn in through_every_sdk(&llmux, "Bash", &prompt, 0).await {
        assert_eq!(turn.text(), "All good. (checked by llmux)", "{turn:?}");
    }
    let requests = fake.requests();
    assert_eq!(requests.len(), 4);
    for request in requests {
        let sent = request.body.to_string();
        assert!(!sent.contains(secret), "{sent}");
        assert!(sent.contains("My key is"), "{sent}");
    }
}
