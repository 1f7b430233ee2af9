//! `gemini-cli-acp`: the Gemini CLI run as an agent over the Agent Client Protocol
//! (`gemini --experimental-acp`), its messages streamed back as the answer.
//!
//! One agent process per client session, model and workspace, with one ACP session in
//! it; turns in a session take their turn. ACP is JSON-RPC 2.0 as one JSON object per line
//! on the agent's stdin and stdout (gemini-cli `docs/cli/acp-mode.md`; the schema crate
//! `agent-client-protocol-schema`):
//! - `initialize`, then `session/new {cwd, mcpServers}` → `sessionId`;
//! - a turn is `session/prompt {sessionId, prompt: [{type: "text", text}]}`: the agent
//!   sends `session/update` notifications (`agent_message_chunk` text becomes the
//!   answer, `agent_thought_chunk` reasoning, `tool_call` a line saying what it runs)
//!   and ends the turn by answering the prompt with a `stopReason`;
//! - the agent asks `session/request_permission` before a tool runs: with `auto_accept`
//!   (the seed's default) llmux picks the offered "allow" option, else a "reject" one.
//!   Every request the agent makes is answered, or its turn would stall.
//!
//! ACP sessions keep their history and chat clients resend theirs: when a request only
//! adds to what the session has seen, only the new messages are sent; otherwise a new
//! session gets the whole conversation as a transcript. The workspace is
//! `!/project-dir(...)`, else `project_dir` / GEMINI_CLI_WORKSPACE, else llmux's directory.
//! Agents idle longer than `agent_idle_seconds` are ended, and all are ended when llmux
//! stops; every process is started with kill-on-drop as a last resort.
//!
//! A turn the client walks away from (or that goes quiet for the idle timeout) is
//! cancelled with `session/cancel`, and the session stays taken until the agent answers
//! the prompt (or is ended when it does not within [`CANCEL_GRACE`]), so nothing of it
//! reaches the next turn, which starts a new ACP session. Updates are only passed on for
//! the running turn's session. All writes to the agent go through one writer task, so
//! the task reading the agent's output never waits on its input (a large prompt while the
//! agent writes would otherwise deadlock both pipes).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};

use super::{Backend, EventStream};
use crate::Error;
use crate::capture::{Direction, Payload, Tap};
use crate::config::{AcpSettings, BackendConfig};
use crate::error::ErrorKind;
use crate::model::{Event, Extensions, FinishReason, Part, Request, Role};

/// How long the agent may take to start and open a session.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of the agent's stderr is kept for error messages.
const STDERR_TAIL: usize = 16 * 1024;
/// How long a cancelled turn may take to end before its agent is ended instead.
const CANCEL_GRACE: Duration = Duration::from_secs(10);
/// How long the agent may leave a line unread before it counts as stuck.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// One key's agent. The async lock makes one request start it while others wait.
type Slot = Arc<tokio::sync::Mutex<Option<Arc<Agent>>>>;
type Agents = Arc<Mutex<HashMap<AgentKey, Slot>>>;

pub struct AcpBackend {
    config: BackendConfig,
    settings: AcpSettings,
    agents: Agents,
    reaper_started: AtomicBool,
    closed: AtomicBool,
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct AgentKey {
    session: String,
    model: String,
    cwd: PathBuf,
}

/// What the reader task and the callers share about one agent.
#[derive(Default)]
struct Calls {
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, oneshot::Sender<Result<Value, RpcError>>>>,
    /// Where the running turn's `session/update`s go, with its session's id.
    updates: Mutex<Option<(String, mpsc::UnboundedSender<Value>)>>,
    /// Why the agent is gone, once it is.
    gone: Mutex<Option<String>>,
    stderr: Mutex<String>,
}

impl Calls {
    /// Marks the agent gone for `why` and fails every call waiting on it.
    fn fail(&self, why: &str) {
        if let Ok(mut gone) = self.gone.lock() {
            gone.get_or_insert_with(|| why.to_owned());
        }
        if let Ok(mut pending) = self.pending.lock() {
            for (_, waiter) in pending.drain() {
                let _ = waiter.send(Err(RpcError {
                    code: -32000,
                    message: why.to_owned(),
                }));
            }
        }
        self.stop_updates();
    }

    fn stop_updates(&self) {
        if let Ok(mut updates) = self.updates.lock() {
            updates.take();
        }
    }

    /// Where an update of `session` goes: the running turn's sink when it is that
    /// session's (a late update of a cancelled turn goes nowhere).
    fn sink_for(&self, session: &str) -> Option<mpsc::UnboundedSender<Value>> {
        let updates = self.updates.lock().ok()?;
        let (current, sink) = updates.as_ref()?;
        (current == session).then(|| sink.clone())
    }
}

#[derive(Debug, Clone)]
struct RpcError {
    code: i64,
    message: String,
}

/// The ACP session of an agent and what it has been sent.
struct Conversation {
    id: String,
    /// A hash of each message the session has seen, in order.
    seen: Vec<u64>,
    /// The session saw a turn that did not end well: the next one opens a new session.
    spoiled: bool,
}

struct Agent {
    pid: Option<u32>,
    child: Mutex<Option<tokio::process::Child>>,
    /// Lines for the writer task, in order.
    outbox: mpsc::UnboundedSender<String>,
    calls: Arc<Calls>,
    conversation: Arc<tokio::sync::Mutex<Conversation>>,
    last_used: Mutex<Instant>,
    cwd: PathBuf,
}

impl Agent {
    fn gone(&self) -> Option<String> {
        self.calls.gone.lock().ok().and_then(|g| g.clone())
    }

    fn touch(&self) {
        if let Ok(mut at) = self.last_used.lock() {
            *at = Instant::now();
        }
    }

    /// Kills the process; the agent counts as gone at once (not only once its output
    /// ends), so nobody is handed a dying agent.
    fn end(&self) {
        self.calls.fail("the agent was ended");
        if let Ok(mut child) = self.child.lock()
            && let Some(child) = child.as_mut()
        {
            let _ = child.start_kill();
        }
    }

    fn write(&self, message: &Value) -> Result<(), String> {
        send_line(&self.outbox, message).map_err(|()| {
            self.gone()
                .unwrap_or_else(|| "the agent no longer reads its input".into())
        })
    }

    /// Sends a request; the receiver gets its answer.
    fn request(
        &self,
        method: &str,
        params: Value,
    ) -> Result<oneshot::Receiver<Result<Value, RpcError>>, String> {
        if let Some(why) = self.gone() {
            return Err(why);
        }
        let id = self.calls.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        if let Ok(mut pending) = self.calls.pending.lock() {
            pending.insert(id, tx);
        }
        self.write(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))?;
        Ok(rx)
    }

    /// Sends a request and waits up to `timeout` for its answer.
    async fn call(&self, method: &str, params: Value, timeout: Duration) -> Result<Value, String> {
        let answer = self.request(method, params)?;
        match tokio::time::timeout(timeout, answer).await {
            Err(_) => Err(format!(
                "the agent did not answer {method} within {timeout:?}"
            )),
            Ok(Err(_)) => Err(self.gone().unwrap_or_else(|| "the agent went away".into())),
            Ok(Ok(Err(err))) => Err(format!("{method} failed: {} ({})", err.message, err.code)),
            Ok(Ok(Ok(value))) => Ok(value),
        }
    }

    async fn new_session(&self) -> Result<String, String> {
        let result = self
            .call(
                "session/new",
                json!({"cwd": self.cwd, "mcpServers": []}),
                HANDSHAKE_TIMEOUT,
            )
            .await?;
        result["sessionId"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "session/new answered without a sessionId".into())
    }
}

/// Queues `message` as one line for the writer task.
fn send_line(outbox: &mpsc::UnboundedSender<String>, message: &Value) -> Result<(), ()> {
    let mut line = message.to_string();
    line.push('\n');
    outbox.send(line).map_err(|_| ())
}

impl AcpBackend {
    pub fn new(config: BackendConfig, settings: AcpSettings) -> Self {
        Self {
            config,
            settings,
            agents: Arc::new(Mutex::new(HashMap::new())),
            reaper_started: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        }
    }

    fn not_usable(&self, message: String) -> Error {
        ErrorKind::BackendNotConfigured {
            backend: self.config.id.clone(),
            message,
        }
        .into()
    }

    /// The PIDs of the agents running now.
    pub fn agent_pids(&self) -> Vec<u32> {
        let Ok(agents) = self.agents.lock() else {
            return Vec::new();
        };
        agents
            .values()
            .filter_map(|slot| slot.try_lock().ok()?.as_ref()?.pid)
            .collect()
    }

    fn workspace(&self, request: &Request) -> PathBuf {
        request
            .client
            .project_dir
            .clone()
            .or_else(|| self.settings.workspace.clone())
            .or_else(|| std::env::current_dir().ok())
            .unwrap_or_else(|| PathBuf::from("."))
    }

    /// The session's agent, started (and its ACP session opened) when there is none or
    /// the last one is gone. Requests that arrive together wait for one start.
    async fn agent_for(&self, key: AgentKey) -> Result<Arc<Agent>, Error> {
        let slot = self
            .agents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        let mut slot = slot.lock().await;
        if let Some(agent) = slot.as_ref()
            && agent.gone().is_none()
        {
            agent.touch();
            return Ok(agent.clone());
        }
        if let Some(old) = slot.take() {
            old.end();
        }
        if !key.cwd.is_dir() {
            return Err(Error::invalid_request(format!(
                "the project directory {} does not exist (set it with !/project-dir(path))",
                key.cwd.display()
            )));
        }
        let agent = Arc::new(
            self.start_agent(&key)
                .await
                .map_err(|why| self.not_usable(why))?,
        );
        if self.closed.load(Ordering::Acquire) {
            agent.end();
            return Err(self.not_usable("llmux is stopping".into()));
        }
        *slot = Some(agent.clone());
        self.start_reaper();
        Ok(agent)
    }

    async fn start_agent(&self, key: &AgentKey) -> Result<Agent, String> {
        let mut args = self.settings.args.clone();
        if !key.model.is_empty() {
            args.extend(["--model".to_owned(), key.model.clone()]);
        }
        if self.settings.auto_accept {
            args.push("--yolo".to_owned());
        }
        let mut child = tokio::process::Command::new(&self.settings.command)
            .args(&args)
            .current_dir(&key.cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start the agent `{}`: {e} (install the Gemini CLI: npm install -g @google/gemini-cli)",
                    self.settings.command
                )
            })?;
        let pid = child.id();
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err("the agent's pipes are missing".into());
        };
        let calls = Arc::new(Calls::default());
        let (outbox, lines) = mpsc::unbounded_channel();
        tokio::spawn(keep_stderr_tail(stderr, calls.clone()));
        tokio::spawn(write_agent(stdin, lines, calls.clone()));
        tokio::spawn(read_agent(
            stdout,
            calls.clone(),
            outbox.clone(),
            self.settings.auto_accept,
        ));
        let agent = Agent {
            pid,
            child: Mutex::new(Some(child)),
            outbox,
            calls,
            conversation: Arc::new(tokio::sync::Mutex::new(Conversation {
                id: String::new(),
                seen: Vec::new(),
                spoiled: false,
            })),
            last_used: Mutex::new(Instant::now()),
            cwd: key.cwd.clone(),
        };
        let handshake = async {
            agent
                .call(
                    "initialize",
                    json!({"protocolVersion": 1, "clientCapabilities": {},
                           "clientInfo": {"name": "llmux", "version": env!("CARGO_PKG_VERSION")}}),
                    HANDSHAKE_TIMEOUT,
                )
                .await?;
            agent.new_session().await
        };
        match handshake.await {
            Ok(id) => {
                agent.conversation.lock().await.id = id;
                tracing::info!(backend = %self.config.id, pid, cwd = %key.cwd.display(), "started an ACP agent");
                Ok(agent)
            }
            Err(why) => {
                agent.end();
                let tail = agent
                    .calls
                    .stderr
                    .lock()
                    .map(|s| s.clone())
                    .unwrap_or_default();
                Err(format!(
                    "the agent did not start a session: {why}{}",
                    stderr_note(&tail)
                ))
            }
        }
    }

    /// Ends agents idle longer than `agent_idle`, while the back-end lives.
    fn start_reaper(&self) {
        if self.reaper_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let agents: Weak<Mutex<HashMap<AgentKey, Slot>>> = Arc::downgrade(&self.agents);
        let idle = self.settings.agent_idle;
        let every = (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(60));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(agents) = agents.upgrade() else {
                    return;
                };
                let Ok(mut agents) = agents.lock() else {
                    return;
                };
                agents.retain(|_, slot| reap(slot, idle));
            }
        });
    }
}

/// Ends the slot's agent when it is idle longer than `idle` (or gone) and no turn runs;
/// whether the slot stays. A slot someone else holds stays: they may be starting an agent
/// in it, which must not end up in a slot nobody can find.
fn reap(slot: &Slot, idle: Duration) -> bool {
    let Ok(mut agent) = slot.try_lock() else {
        return true;
    };
    if let Some(running) = agent.as_ref() {
        let idle_for = running
            .last_used
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or_default();
        let busy = running.conversation.try_lock().is_err();
        if busy || (idle_for < idle && running.gone().is_none()) {
            return true;
        }
        running.end();
        agent.take();
    }
    drop(agent);
    Arc::strong_count(slot) > 1
}

/// Writes the queued lines to the agent's stdin. An agent that stops reading for
/// [`WRITE_TIMEOUT`], or whose stdin closed, is marked gone.
async fn write_agent(
    mut stdin: tokio::process::ChildStdin,
    mut lines: mpsc::UnboundedReceiver<String>,
    calls: Arc<Calls>,
) {
    while let Some(line) = lines.recv().await {
        let written = tokio::time::timeout(WRITE_TIMEOUT, async {
            stdin.write_all(line.as_bytes()).await?;
            stdin.flush().await
        })
        .await;
        let why = match written {
            Ok(Ok(())) => continue,
            Ok(Err(err)) => format!("cannot write to the agent: {err}"),
            Err(_) => format!("the agent did not read its input for {WRITE_TIMEOUT:?}"),
        };
        calls.fail(&why);
        return;
    }
}

/// Keeps the last [`STDERR_TAIL`] bytes the agent wrote to stderr.
async fn keep_stderr_tail(mut stderr: tokio::process::ChildStderr, calls: Arc<Calls>) {
    let mut buffer = [0u8; 4096];
    while let Ok(n) = stderr.read(&mut buffer).await {
        if n == 0 {
            break;
        }
        if let Ok(mut tail) = calls.stderr.lock() {
            tail.push_str(&String::from_utf8_lossy(&buffer[..n]));
            if tail.len() > STDERR_TAIL {
                let mut cut = tail.len() - STDERR_TAIL;
                while !tail.is_char_boundary(cut) {
                    cut += 1;
                }
                tail.drain(..cut);
            }
        }
    }
}

fn stderr_note(tail: &str) -> String {
    let tail = tail.trim();
    if tail.is_empty() {
        String::new()
    } else {
        let start = tail.len().saturating_sub(500);
        let mut start = start;
        while !tail.is_char_boundary(start) {
            start += 1;
        }
        format!("; the agent said: {}", &tail[start..])
    }
}

/// Reads the agent's messages: answers to llmux's requests, updates of the running turn,
/// and the agent's own requests, each answered.
async fn read_agent(
    stdout: tokio::process::ChildStdout,
    calls: Arc<Calls>,
    outbox: mpsc::UnboundedSender<String>,
    auto_accept: bool,
) {
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(message) = serde_json::from_str::<Value>(&line) else {
            continue; // a stray log line on stdout
        };
        let method = message.get("method").and_then(Value::as_str);
        match (method, message.get("id")) {
            (None, Some(id)) => {
                let Some(id) = id.as_u64() else { continue };
                let waiter = calls.pending.lock().ok().and_then(|mut p| p.remove(&id));
                if let Some(waiter) = waiter {
                    let answer = match message.get("error") {
                        Some(error) => Err(RpcError {
                            code: error["code"].as_i64().unwrap_or(0),
                            message: rpc_message(error),
                        }),
                        None => Ok(message.get("result").cloned().unwrap_or(Value::Null)),
                    };
                    let _ = waiter.send(answer);
                }
            }
            (Some("session/update"), None) => {
                let session = message["params"]["sessionId"].as_str().unwrap_or_default();
                if let Some(sink) = calls.sink_for(session) {
                    let _ = sink.send(message["params"]["update"].clone());
                }
            }
            (Some(method), Some(id)) => {
                let reply = answer_agent_request(method, &message["params"], auto_accept);
                let reply = match reply {
                    Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
                    Err((code, text)) => {
                        json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": text}})
                    }
                };
                let _ = send_line(&outbox, &reply);
            }
            _ => {}
        }
    }
    let tail = calls.stderr.lock().map(|s| s.clone()).unwrap_or_default();
    calls.fail(&format!("the agent exited{}", stderr_note(&tail)));
}

/// A JSON-RPC error's message with its `data`, which often holds the real cause.
fn rpc_message(error: &Value) -> String {
    let message = error["message"].as_str().unwrap_or("error").to_owned();
    match error.get("data").filter(|d| !d.is_null()) {
        Some(Value::String(data)) => format!("{message}: {data}"),
        Some(data) => format!("{message}: {data}"),
        None => message,
    }
}

/// What llmux answers the agent's own requests: permissions by option kind (the ids
/// differ between agents), nothing else offered.
fn answer_agent_request(
    method: &str,
    params: &Value,
    auto_accept: bool,
) -> Result<Value, (i64, String)> {
    if method != "session/request_permission" {
        return Err((-32601, format!("llmux does not offer {method}")));
    }
    let options = params["options"].as_array().cloned().unwrap_or_default();
    let wanted: &[&str] = if auto_accept {
        &["allow_once", "allow_always"]
    } else {
        &["reject_once", "reject_always"]
    };
    let chosen = wanted.iter().find_map(|kind| {
        options
            .iter()
            .find(|o| o["kind"] == *kind)
            .and_then(|o| o["optionId"].as_str())
    });
    Ok(match chosen {
        Some(id) => json!({"outcome": {"outcome": "selected", "optionId": id}}),
        None => json!({"outcome": {"outcome": "cancelled"}}),
    })
}

fn message_text(parts: &[Part]) -> String {
    let mut text = String::new();
    for part in parts {
        match part {
            Part::Text { text: t, .. } | Part::Refusal { text: t } => text.push_str(t),
            Part::ToolCall {
                name, arguments, ..
            } => {
                text.push_str(&format!("\n[called {name} with {arguments}]\n"));
            }
            Part::ToolResult { content, .. } => {
                text.push_str(&format!("\n[tool result]\n{}\n", message_text(content)));
            }
            _ => {}
        }
    }
    text
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::System | Role::Developer => "System",
        Role::User | Role::Tool => "User",
        Role::Assistant => "Assistant",
    }
}

/// Each message's hash, so the next request can tell what the session has seen.
fn message_hashes(request: &Request) -> Vec<u64> {
    request
        .messages
        .iter()
        .map(|m| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            role_name(m.role).hash(&mut hasher);
            message_text(&m.parts).hash(&mut hasher);
            hasher.finish()
        })
        .collect()
}

/// The whole conversation as one prompt, for a new session.
fn transcript(request: &Request) -> String {
    let mut out = String::new();
    let system: Vec<&str> = request.system.iter().filter_map(Part::as_text).collect();
    if !system.is_empty() {
        out.push_str(&format!("## System\n\n{}\n\n", system.join("\n\n")));
    }
    for message in &request.messages {
        out.push_str(&format!(
            "## {}\n\n{}\n\n",
            role_name(message.role),
            message_text(&message.parts).trim()
        ));
    }
    out.trim_end().to_owned()
}

/// What to send a session that has seen `seen`: the new user messages when the request
/// only adds to it (the agent's own answers, resent by the client, are skipped); `None`
/// when the conversation went another way.
fn new_messages(request: &Request, seen: &[u64], hashes: &[u64]) -> Option<String> {
    if seen.is_empty() || hashes.len() <= seen.len() || hashes[..seen.len()] != *seen {
        return None;
    }
    let text: Vec<String> = request.messages[seen.len()..]
        .iter()
        .filter(|m| m.role != Role::Assistant)
        .map(|m| message_text(&m.parts).trim().to_owned())
        .collect();
    Some(text.join("\n\n"))
}

fn stop_reason(reason: Option<&str>) -> FinishReason {
    match reason {
        Some("max_tokens") => FinishReason::MaxTokens,
        Some("refusal") => FinishReason::Refusal,
        Some("end_turn" | "cancelled") | None => FinishReason::EndTurn,
        Some(other) => FinishReason::Other(other.to_owned()),
    }
}

/// The events one `session/update` becomes.
fn update_events(update: &Value) -> Vec<Event> {
    let text = || {
        update["content"]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    match update["sessionUpdate"].as_str() {
        Some("agent_message_chunk") => vec![Event::TextDelta(text())],
        Some("agent_thought_chunk") => vec![Event::ThinkingDelta {
            text: text(),
            signature: None,
        }],
        // Tools run inside the agent: the answer says what ran.
        Some("tool_call") => {
            let title = update["title"].as_str().unwrap_or("a tool");
            vec![Event::TextDelta(format!("\n\n> {title}\n\n"))]
        }
        Some("tool_call_update") if update["status"] == "failed" => {
            vec![Event::TextDelta("\n\n> (the tool failed)\n\n".into())]
        }
        _ => Vec::new(),
    }
}

/// A running turn: it holds the session until the agent has answered the prompt. One
/// that is dropped unanswered (the client walked away, or the agent went quiet) is
/// cancelled, and the session stays held until the agent acknowledges.
struct Turn {
    agent: Arc<Agent>,
    conversation: Option<tokio::sync::OwnedMutexGuard<Conversation>>,
    answer: Option<oneshot::Receiver<Result<Value, RpcError>>>,
}

impl Turn {
    /// The agent's answer to the prompt (`None`: it went away without one); pending
    /// forever once taken.
    async fn answered(&mut self) -> Option<Result<Value, RpcError>> {
        let result = match self.answer.as_mut() {
            Some(answer) => answer.await.ok(),
            None => std::future::pending().await,
        };
        // Resolved: a receiver must not be polled again, and there is nothing to cancel.
        self.answer = None;
        result
    }

    /// The agent answered: the session has seen `seen` (`None`: the turn failed, and the
    /// next one starts a new session).
    fn end(&mut self, seen: Option<Vec<u64>>) {
        self.answer = None;
        self.agent.calls.stop_updates();
        if let Some(mut conversation) = self.conversation.take() {
            match seen {
                Some(seen) => conversation.seen = seen,
                None => conversation.spoiled = true,
            }
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let Some(mut conversation) = self.conversation.take() else {
            return;
        };
        self.agent.calls.stop_updates();
        conversation.spoiled = true;
        let Some(answer) = self.answer.take() else {
            // The agent answered; the client left before the answer was out. Nothing runs.
            return;
        };
        let agent = self.agent.clone();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            agent.end();
            return;
        };
        runtime.spawn(async move {
            let cancel = json!({"jsonrpc": "2.0", "method": "session/cancel",
                                "params": {"sessionId": conversation.id}});
            let acknowledged = match agent.write(&cancel) {
                Ok(()) => tokio::time::timeout(CANCEL_GRACE, answer).await.is_ok(),
                Err(_) => false,
            };
            if !acknowledged && agent.gone().is_none() {
                tracing::warn!(
                    pid = agent.pid,
                    "the ACP agent did not end a cancelled turn; ending it"
                );
                agent.end();
            }
            drop(conversation);
        });
    }
}

#[async_trait]
impl Backend for AcpBackend {
    fn config(&self) -> &BackendConfig {
        &self.config
    }

    async fn models(&self) -> Result<Vec<String>, Error> {
        Ok(self.config.models.clone().unwrap_or_default())
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let slots: Vec<Slot> = match self.agents.lock() {
            Ok(mut agents) => agents.drain().map(|(_, slot)| slot).collect(),
            Err(_) => return,
        };
        // A slot that is locked is being started: its starter sees `closed` and ends it.
        for slot in slots {
            if let Ok(Some(agent)) = slot.try_lock().as_deref() {
                agent.end();
            }
        }
    }

    async fn send(
        &self,
        request: &Request,
        model: &str,
        tap: Option<&Tap>,
    ) -> Result<EventStream, Error> {
        let key = AgentKey {
            session: request.client.session_id.clone().unwrap_or_default(),
            model: model.to_owned(),
            cwd: self.workspace(request),
        };
        let mut agent = self.agent_for(key.clone()).await?;
        let mut conversation = agent.conversation.clone().lock_owned().await;
        if agent.gone().is_some() {
            // Ended while this request waited for the session (a cancelled turn that was
            // never acknowledged): a new agent serves it.
            drop(conversation);
            agent = self.agent_for(key).await?;
            conversation = agent.conversation.clone().lock_owned().await;
        }
        let hashes = message_hashes(request);
        let continued = match conversation.spoiled {
            true => None,
            false => new_messages(request, &conversation.seen, &hashes),
        };
        let prompt = match continued {
            Some(tail) => tail,
            None => {
                if !conversation.seen.is_empty() || conversation.spoiled {
                    // The client edited or restarted the conversation, or the last turn
                    // did not end well: a fresh session.
                    conversation.id = agent
                        .new_session()
                        .await
                        .map_err(|why| self.not_usable(why))?;
                    conversation.seen.clear();
                    conversation.spoiled = false;
                }
                transcript(request)
            }
        };
        let params = json!({"sessionId": conversation.id,
                            "prompt": [{"type": "text", "text": prompt}]});
        if let Some(tap) = tap {
            tap.request_sent(&bytes::Bytes::from(params.to_string()));
        }
        let (sink, mut updates) = mpsc::unbounded_channel();
        if let Ok(mut current) = agent.calls.updates.lock() {
            *current = Some((conversation.id.clone(), sink));
        }
        let answer = match agent.request("session/prompt", params) {
            Ok(answer) => answer,
            Err(why) => {
                agent.calls.stop_updates();
                return Err(self.not_usable(why));
            }
        };
        let mut turn = Turn {
            agent: agent.clone(),
            conversation: Some(conversation),
            answer: Some(answer),
        };
        let backend = self.config.id.clone();
        let idle = self.config.timeouts.idle;
        let model = model.to_owned();
        let tap = tap.cloned();
        let stream = async_stream::stream! {
            yield Event::Start {
                id: format!("acp-{:016x}", fastrand::u64(..)),
                model,
                created: None,
                extensions: Extensions::default(),
            };
            let ended = loop {
                tokio::select! {
                    biased;
                    update = updates.recv() => match update {
                        Some(update) => {
                            if let Some(tap) = &tap {
                                tap.record(Direction::StreamChunk, Payload::Text(&update.to_string()));
                            }
                            for event in update_events(&update) {
                                yield event;
                            }
                        }
                        // The agent is gone; its answer says why.
                        None => break turn.answered().await,
                    },
                    result = turn.answered() => break result,
                    _ = tokio::time::sleep(idle) => break None,
                }
            };
            // Updates sent just before the answer.
            while let Ok(update) = updates.try_recv() {
                for event in update_events(&update) {
                    yield event;
                }
            }
            agent.touch();
            match ended {
                Some(Ok(result)) => {
                    turn.end(Some(hashes));
                    yield Event::Finish {
                        reason: stop_reason(result["stopReason"].as_str()),
                        stop_sequence: None,
                    };
                }
                Some(Err(err)) => {
                    turn.end(None);
                    let lower = err.message.to_lowercase();
                    let limited = ["429", "quota", "resource exhausted", "rate limit"]
                        .iter()
                        .any(|m| lower.contains(m));
                    yield Event::Error(ErrorKind::Upstream {
                        backend: backend.clone(),
                        status: if limited { 429 } else { 502 },
                        message: err.message,
                        error_type: None,
                        code: Some(err.code.to_string()),
                        retry_after: None,
                    }.into());
                }
                // Quiet for the idle timeout: the turn is cancelled when it is dropped.
                None => {
                    yield Event::Error(ErrorKind::StreamInterrupted {
                        backend: backend.clone(),
                        message: agent.gone().unwrap_or_else(|| format!("the agent sent nothing for {idle:?}")),
                    }.into());
                }
            }
            drop(turn);
        };
        Ok(Box::pin(stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Message;

    fn said(role: Role, text: &str) -> Message {
        Message::new(role, vec![Part::text(text)])
    }

    #[test]
    fn a_conversation_that_only_grows_sends_only_the_new_user_messages() {
        let first = Request::new("m", vec![said(Role::User, "Hi")]);
        let seen = message_hashes(&first);
        let next = Request::new(
            "m",
            vec![
                said(Role::User, "Hi"),
                said(Role::Assistant, "Hello"),
                said(Role::User, "More"),
            ],
        );
        assert_eq!(
            new_messages(&next, &seen, &message_hashes(&next)).as_deref(),
            Some("More")
        );
        let edited = Request::new("m", vec![said(Role::User, "Bye"), said(Role::User, "More")]);
        assert_eq!(new_messages(&edited, &seen, &message_hashes(&edited)), None);
        assert!(transcript(&next).contains("## Assistant\n\nHello"));
    }

    #[test]
    fn permissions_are_answered_by_option_kind() {
        let params = json!({"options": [
            {"optionId": "proceed_once", "kind": "allow_once"},
            {"optionId": "cancel", "kind": "reject_once"}]});
        let allow = answer_agent_request("session/request_permission", &params, true).unwrap();
        assert_eq!(allow["outcome"]["optionId"], "proceed_once");
        let deny = answer_agent_request("session/request_permission", &params, false).unwrap();
        assert_eq!(deny["outcome"]["optionId"], "cancel");
        assert!(answer_agent_request("fs/read_text_file", &params, true).is_err());
    }
}
