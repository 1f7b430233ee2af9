//! gemini-cli-acp against a fake ACP agent (tests/fixtures/acp/fake_agent.py, a script
//! speaking the protocol over stdio): the answer streamed from its updates, one process
//! per session reused across turns, the workspace from `project_dir` and
//! `!/project-dir(...)`, permissions, errors, and processes ended when idle and when
//! llmux stops (checked by pid).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use support::{Llmux, client, config, start};

fn fake_agent() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/acp/fake_agent.py")
        .display()
        .to_string()
}

struct Setup {
    llmux: Llmux,
    workspace: tempfile::TempDir,
    pids: tempfile::TempDir,
}

async fn setup(extra: &str) -> Setup {
    let workspace = tempfile::tempdir().unwrap();
    let pids = tempfile::tempdir().unwrap();
    let toml = format!(
        r#"default_backend = "agent"
[backends.agent]
type = "gemini-cli-acp"
command = "{}"
args = ["{}", "--experimental-acp", "--pid-dir", "{}"]
project_dir = "{}"
{extra}
"#,
        support::python::python().display(),
        fake_agent(),
        pids.path().display(),
        workspace.path().display()
    );
    Setup {
        llmux: start(config(&toml, &[]), &[]).await,
        workspace,
        pids,
    }
}

impl Setup {
    /// The pids of every agent started so far.
    fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = std::fs::read_dir(self.pids.path())
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        pids.sort_unstable();
        pids
    }
}

/// Whether `pid` runs (a zombie waiting to be reaped does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        })
        .unwrap_or(false)
}

async fn until_dead(pid: u32) {
    for _ in 0..200 {
        if !alive(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("agent {pid} still runs");
}

async fn chat(
    llmux: &Llmux,
    session: &str,
    messages: serde_json::Value,
    stream: bool,
) -> (u16, String) {
    let response = client()
        .post(llmux.url("/v1/chat/completions"))
        .header("x-session-id", session)
        .json(&json!({"model": "gemini-2.5-pro", "stream": stream, "messages": messages}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    (
        status,
        support::answer_text(&body, stream).to_owned() + if status == 200 { "" } else { &body },
    )
}

#[tokio::test]
async fn a_session_streams_the_agents_answer_and_keeps_its_agent_for_the_next_turn() {
    let s = setup("").await;
    let first = json!([{"role": "system", "content": "Be terse."}, {"role": "user", "content": "List the files."}]);
    let (status, answer) = chat(&s.llmux, "s1", first, true).await;
    assert_eq!(status, 200, "{answer}");
    let workspace = s.workspace.path().canonicalize().unwrap();
    assert!(answer.contains("model=gemini-2.5-pro"), "{answer}");
    assert!(
        answer.contains(&format!("cwd={}", workspace.display())),
        "{answer}"
    );
    assert!(
        answer.contains("permission=proceed_once"),
        "auto-accept allows: {answer}"
    );
    assert!(
        answer.contains("> Run ls"),
        "the tool it ran is shown: {answer}"
    );
    assert!(
        answer.contains("## System") && answer.contains("List the files."),
        "{answer}"
    );

    let assistant = answer.clone();
    let second = json!([{"role": "system", "content": "Be terse."}, {"role": "user", "content": "List the files."},
        {"role": "assistant", "content": assistant}, {"role": "user", "content": "Now the tests."}]);
    let (status, answer) = chat(&s.llmux, "s1", second, false).await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer.contains("session=sess-1"),
        "the same ACP session: {answer}"
    );
    assert!(
        answer.contains("prompt='Now the tests.'"),
        "only the new message: {answer}"
    );
    assert_eq!(s.pids().len(), 1, "one agent for the session");

    // Another session gets its own agent.
    let (status, _) = chat(
        &s.llmux,
        "s2",
        json!([{"role": "user", "content": "Hi"}]),
        false,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(s.pids().len(), 2);
}

#[tokio::test]
async fn project_dir_moves_the_session_to_another_workspace() {
    let s = setup("").await;
    let other = tempfile::tempdir().unwrap();
    let other_path: PathBuf = other.path().canonicalize().unwrap();
    let command = format!("!/project-dir({})", other_path.display());
    let (status, said) = chat(
        &s.llmux,
        "s1",
        json!([{"role": "user", "content": command}]),
        false,
    )
    .await;
    assert_eq!(status, 200, "{said}");
    let (status, answer) = chat(
        &s.llmux,
        "s1",
        json!([{"role": "user", "content": "Where are you?"}]),
        false,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer.contains(&format!("cwd={}", other_path.display())),
        "{answer}"
    );

    // A workspace removed after it was chosen is refused before any agent starts.
    let doomed = tempfile::tempdir().unwrap();
    let command = format!("!/project-dir({})", doomed.path().display());
    chat(
        &s.llmux,
        "s3",
        json!([{"role": "user", "content": command}]),
        false,
    )
    .await;
    drop(doomed);
    let (status, body) = chat(
        &s.llmux,
        "s3",
        json!([{"role": "user", "content": "Hi"}]),
        false,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("does not exist"), "{body}");
}

#[tokio::test]
async fn first_requests_that_arrive_together_share_one_agent() {
    let s = setup("").await;
    let turns = (0..4).map(|n| {
        let llmux = &s.llmux;
        async move {
            chat(
                llmux,
                "together",
                json!([{"role": "user", "content": format!("Hi {n}")}]),
                n % 2 == 0,
            )
            .await
        }
    });
    for (status, answer) in futures::future::join_all(turns).await {
        assert_eq!(status, 200, "{answer}");
    }
    let pids = s.pids();
    assert_eq!(
        pids.len(),
        1,
        "one agent started, not one per request: {pids:?}"
    );
    assert!(alive(pids[0]));
}

/// Streams a turn that never ends and leaves once the agent has shown it is working.
async fn leave_a_hanging_turn(llmux: &Llmux, session: &str) {
    let mut response = client()
        .post(llmux.url("/v1/chat/completions"))
        .header("x-session-id", session)
        .json(&json!({"model": "gemini-2.5-pro", "stream": true,
                      "messages": [{"role": "user", "content": "hang on"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut seen = String::new();
    while !seen.contains("Run ls") {
        let chunk = response.chunk().await.unwrap().expect("the turn streams");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn a_turn_the_client_leaves_is_cancelled_and_nothing_of_it_reaches_the_next() {
    let s = setup("").await;
    leave_a_hanging_turn(&s.llmux, "left").await;
    // The next turn waits for the cancelled one to end, then runs in a new ACP session
    // of the same agent (it acknowledged the cancel, so it was not ended).
    let (status, answer) = chat(
        &s.llmux,
        "left",
        json!([{"role": "user", "content": "Hi again"}]),
        true,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("session=sess-2"), "a new session: {answer}");
    assert!(
        !answer.contains("LATE"),
        "the cancelled turn's late update is not in this answer: {answer}"
    );
    assert!(
        answer.contains("Hi again"),
        "the new session gets the conversation: {answer}"
    );
    assert_eq!(s.pids().len(), 1, "the same agent");
}

#[tokio::test]
async fn a_turn_that_goes_quiet_times_out_and_is_cancelled() {
    let s = setup("idle_timeout_seconds = 0.5").await;
    let (status, body) = chat(
        &s.llmux,
        "quiet",
        json!([{"role": "user", "content": "hang on"}]),
        false,
    )
    .await;
    assert_ne!(status, 200, "{body}");
    assert!(body.contains("the agent sent nothing"), "{body}");
    let (status, answer) = chat(
        &s.llmux,
        "quiet",
        json!([{"role": "user", "content": "Are you back?"}]),
        false,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("session=sess-2"), "{answer}");
    assert!(!answer.contains("LATE"), "{answer}");
    assert_eq!(s.pids().len(), 1, "the agent acknowledged the cancel");
}

#[tokio::test]
async fn without_auto_accept_the_agent_is_refused_its_tools() {
    let s = setup("auto_accept = false").await;
    let (status, answer) = chat(
        &s.llmux,
        "s1",
        json!([{"role": "user", "content": "Delete it."}]),
        false,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("permission=cancel"), "{answer}");
}

#[tokio::test]
async fn agent_errors_reach_the_client_with_their_cause() {
    let s = setup("").await;
    let (status, body) = chat(
        &s.llmux,
        "s1",
        json!([{"role": "user", "content": "use up the quota"}]),
        false,
    )
    .await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body.contains("RESOURCE_EXHAUSTED"),
        "the error's data is kept: {body}"
    );

    let (status, body) = chat(
        &s.llmux,
        "s2",
        json!([{"role": "user", "content": "crash now"}]),
        false,
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("boom: the agent ran out of memory"), "{body}");
    // The session starts a new agent next time.
    let (status, _) = chat(
        &s.llmux,
        "s2",
        json!([{"role": "user", "content": "Hi again"}]),
        false,
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn agents_end_when_idle_and_when_llmux_stops() {
    let s = setup("agent_idle_seconds = 0.3").await;
    chat(
        &s.llmux,
        "idle",
        json!([{"role": "user", "content": "Hi"}]),
        false,
    )
    .await;
    let idle = s.pids()[0];
    until_dead(idle).await;

    let s = setup("").await;
    chat(
        &s.llmux,
        "a",
        json!([{"role": "user", "content": "Hi"}]),
        false,
    )
    .await;
    chat(
        &s.llmux,
        "b",
        json!([{"role": "user", "content": "Hi"}]),
        false,
    )
    .await;
    let running = s.pids();
    assert_eq!(running.len(), 2);
    assert!(running.iter().all(|pid| alive(*pid)));
    s.llmux.engine.close();
    for pid in running {
        until_dead(pid).await;
    }
}

#[tokio::test]
async fn a_missing_agent_says_how_to_install_it() {
    let workspace = tempfile::tempdir().unwrap();
    let toml = format!(
        "default_backend = \"agent\"\n[backends.agent]\ntype = \"gemini-cli-acp\"\ncommand = \"/nonexistent/gemini\"\nproject_dir = \"{}\"\n",
        workspace.path().display()
    );
    let llmux = start(config(&toml, &[]), &[]).await;
    let (status, body) = chat(
        &llmux,
        "s",
        json!([{"role": "user", "content": "Hi"}]),
        false,
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("npm install -g @google/gemini-cli"), "{body}");
}
