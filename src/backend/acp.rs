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

pub struct AcpBackend {
    config: BackendConfig,
    settings: AcpSettings,
    agents: Arc<Mutex<HashMap<AgentKey, Arc<Agent>>>>,
    reaper_started: AtomicBool,
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
    /// Where the running turn's `session/update`s go.
    updates: Mutex<Option<mpsc::UnboundedSender<Value>>>,
    /// Why the agent is gone, once it is.
    gone: Mutex<Option<String>>,
    stderr: Mutex<String>,
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
}

struct Agent {
    pid: Option<u32>,
    child: Mutex<Option<tokio::process::Child>>,
    stdin: Arc<tokio::sync::Mutex<tokio::process::ChildStdin>>,
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

    fn end(&self) {
        if let Ok(mut child) = self.child.lock()
            && let Some(child) = child.as_mut()
        {
            let _ = child.start_kill();
        }
    }

    async fn write(&self, message: &Value) -> Result<(), String> {
        let mut line = message.to_string();
        line.push('\n');
        let mut stdin = self.stdin.lock().await;
        stdin
            .write_all(line.as_bytes())
            .await
            .map_err(|e| format!("cannot write to the agent: {e}"))?;
        stdin
            .flush()
            .await
            .map_err(|e| format!("cannot write to the agent: {e}"))
    }

    /// Sends a request; the receiver gets its answer.
    async fn request(
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
        self.write(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await?;
        Ok(rx)
    }

    /// Sends a request and waits up to `timeout` for its answer.
    async fn call(&self, method: &str, params: Value, timeout: Duration) -> Result<Value, String> {
        let answer = self.request(method, params).await?;
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

impl AcpBackend {
    pub fn new(config: BackendConfig, settings: AcpSettings) -> Self {
        Self {
            config,
            settings,
            agents: Arc::new(Mutex::new(HashMap::new())),
            reaper_started: AtomicBool::new(false),
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
        self.agents
            .lock()
            .map(|agents| agents.values().filter_map(|a| a.pid).collect())
            .unwrap_or_default()
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
    /// the last one is gone.
    async fn agent_for(&self, key: AgentKey) -> Result<Arc<Agent>, Error> {
        let existing = self.agents.lock().ok().and_then(|a| a.get(&key).cloned());
        if let Some(agent) = existing
            && agent.gone().is_none()
        {
            agent.touch();
            return Ok(agent);
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
        if let Ok(mut agents) = self.agents.lock()
            && let Some(old) = agents.insert(key, agent.clone())
        {
            old.end();
        }
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
        let stdin = Arc::new(tokio::sync::Mutex::new(stdin));
        tokio::spawn(keep_stderr_tail(stderr, calls.clone()));
        tokio::spawn(read_agent(
            stdout,
            calls.clone(),
            stdin.clone(),
            self.settings.auto_accept,
        ));
        let agent = Agent {
            pid,
            child: Mutex::new(Some(child)),
            stdin,
            calls,
            conversation: Arc::new(tokio::sync::Mutex::new(Conversation {
                id: String::new(),
                seen: Vec::new(),
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
        let agents: Weak<Mutex<HashMap<AgentKey, Arc<Agent>>>> = Arc::downgrade(&self.agents);
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
                agents.retain(|_, agent| {
                    let idle_for = agent
                        .last_used
                        .lock()
                        .map(|t| t.elapsed())
                        .unwrap_or_default();
                    let busy = agent.conversation.try_lock().is_err();
                    let keep = busy || (idle_for < idle && agent.gone().is_none());
                    if !keep {
                        agent.end();
                    }
                    keep
                });
            }
        });
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
    stdin: Arc<tokio::sync::Mutex<tokio::process::ChildStdin>>,
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
                let sink = calls.updates.lock().ok().and_then(|u| u.clone());
                if let Some(sink) = sink {
                    let _ = sink.send(message["params"]["update"].clone());
                }
            }
            (Some(method), Some(id)) => {
                let reply = answer_agent_request(method, &message["params"], auto_accept);
                let mut reply = match reply {
                    Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
                    Err((code, text)) => {
                        json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": text}})
                    }
                };
                let mut line = std::mem::take(&mut reply).to_string();
                line.push('\n');
                let mut stdin = stdin.lock().await;
                let _ = stdin.write_all(line.as_bytes()).await;
                let _ = stdin.flush().await;
            }
            _ => {}
        }
    }
    let tail = calls.stderr.lock().map(|s| s.clone()).unwrap_or_default();
    let why = format!("the agent exited{}", stderr_note(&tail));
    if let Ok(mut gone) = calls.gone.lock() {
        *gone = Some(why.clone());
    }
    if let Ok(mut pending) = calls.pending.lock() {
        for (_, waiter) in pending.drain() {
            let _ = waiter.send(Err(RpcError {
                code: -32000,
                message: why.clone(),
            }));
        }
    }
    if let Ok(mut updates) = calls.updates.lock() {
        updates.take();
    }
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

/// Ends a turn the client walked away from: the agent is told to cancel.
struct CancelOnDrop {
    agent: Option<Arc<Agent>>,
    session: String,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(agent) = self.agent.take() {
            let session = std::mem::take(&mut self.session);
            tokio::spawn(async move {
                let _ = agent
                    .write(&json!({"jsonrpc": "2.0", "method": "session/cancel",
                                   "params": {"sessionId": session}}))
                    .await;
            });
        }
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
        if let Ok(mut agents) = self.agents.lock() {
            for (_, agent) in agents.drain() {
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
        let agent = self.agent_for(key).await?;
        let mut conversation = agent.conversation.clone().lock_owned().await;
        let hashes = message_hashes(request);
        let prompt = match new_messages(request, &conversation.seen, &hashes) {
            Some(tail) => tail,
            None => {
                if !conversation.seen.is_empty() {
                    // The client edited or restarted the conversation: a fresh session.
                    conversation.id = agent
                        .new_session()
                        .await
                        .map_err(|why| self.not_usable(why))?;
                }
                transcript(request)
            }
        };
        let params = json!({"sessionId": conversation.id,
                            "prompt": [{"type": "text", "text": prompt}]});
        if let Some(tap) = tap {
            tap.record(
                Direction::OutboundRequest,
                Payload::Json(params.to_string().as_bytes()),
            );
        }
        let (sink, mut updates) = mpsc::unbounded_channel();
        if let Ok(mut current) = agent.calls.updates.lock() {
            *current = Some(sink);
        }
        let answer = agent
            .request("session/prompt", params)
            .await
            .map_err(|why| self.not_usable(why))?;
        let backend = self.config.id.clone();
        let idle = self.config.timeouts.idle;
        let model = model.to_owned();
        let tap = tap.cloned();
        let stream = async_stream::stream! {
            let mut cancel = CancelOnDrop { agent: Some(agent.clone()), session: conversation.id.clone() };
            yield Event::Start {
                id: format!("acp-{:016x}", fastrand::u64(..)),
                model,
                created: None,
                extensions: Extensions::default(),
            };
            let mut answer = answer;
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
                        None => {
                            break (&mut answer).await.ok();
                        }
                    },
                    result = &mut answer => break result.ok(),
                    _ = tokio::time::sleep(idle) => break None,
                }
            };
            // Updates sent just before the answer.
            while let Ok(update) = updates.try_recv() {
                for event in update_events(&update) {
                    yield event;
                }
            }
            cancel.agent = None;
            agent.touch();
            match ended {
                Some(Ok(result)) => {
                    conversation.seen = hashes;
                    yield Event::Finish {
                        reason: stop_reason(result["stopReason"].as_str()),
                        stop_sequence: None,
                    };
                }
                Some(Err(err)) => {
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
                None => {
                    yield Event::Error(ErrorKind::StreamInterrupted {
                        backend: backend.clone(),
                        message: agent.gone().unwrap_or_else(|| format!("the agent sent nothing for {idle:?}")),
                    }.into());
                }
            }
            drop(conversation);
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
