//! The coding agents on this machine and whether they use llmux (`GET /admin/api/clients`),
//! and connecting or disconnecting one (`POST /admin/api/clients/{id}`), for the settings
//! page's "Clients" section. The edits are `llmux connect`'s (`crate::connect`).

use serde::{Deserialize, Serialize};

use std::sync::Arc;

use crate::capture::store::Store;
use crate::connect::{self, Change, Client, Target};
use crate::{Config, Error};

/// One agent and its link to llmux.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ClientStatus {
    /// `claude`, `codex` or `gemini`.
    pub id: String,
    pub name: String,
    /// Its command is on llmux's PATH.
    pub installed: bool,
    /// Its settings already point at this llmux.
    pub connected: bool,
    /// The files connect edits.
    pub files: Vec<String>,
    /// Unix seconds of the last request llmux stored from it (its user agent), when the
    /// capture store is on.
    pub last_seen: Option<f64>,
    /// Why its settings cannot be read or edited, when they cannot.
    pub problem: Option<String>,
}

/// What the page asks: connect (or `undo`), and whether only to show the diff.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ClientAction {
    #[serde(default)]
    pub undo: bool,
    #[serde(default)]
    pub dry_run: bool,
}

/// The diff of each changed file, whether it was applied, and the agent's state after.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ClientChanges {
    pub diffs: Vec<String>,
    pub applied: bool,
    pub status: ClientStatus,
}

const CLIENTS: [(&str, Client, &str, &str); 3] = [
    ("claude", Client::Claude, "claude", "claude-cli/"),
    ("codex", Client::Codex, "codex", "codex_"),
    ("gemini", Client::Gemini, "gemini", "GeminiCLI/"),
];

fn home() -> Result<std::path::PathBuf, Error> {
    directories::BaseDirs::new()
        .map(|b| b.home_dir().to_owned())
        .ok_or_else(|| Error::internal("no home directory to find the agents' settings in"))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn on_path(command: &str) -> bool {
    crate::config::find_on_path(command, env("PATH").as_deref()).is_some()
}

/// What the agents are checked against: llmux's config, and its capture store when one is
/// open (the desktop app answers with the proxy off too).
pub struct Context {
    pub config: Config,
    pub store: Option<Arc<Store>>,
}

impl Context {
    pub fn of(engine: &crate::engine::Engine) -> Self {
        Self {
            config: engine.config().clone(),
            store: engine.store().cloned(),
        }
    }
}

async fn status(
    context: &Context,
    id: &str,
    client: Client,
    command: &str,
    agent: &str,
) -> Result<ClientStatus, Error> {
    let target = Target::for_config(&context.config);
    let planned = connect::plan_connect(client, &home()?, &env, &target);
    let last_seen = match context.store.clone() {
        Some(store) => {
            let agent = agent.to_owned();
            tokio::task::spawn_blocking(move || store.last_seen(&agent))
                .await
                .ok()
                .and_then(Result::ok)
                .flatten()
        }
        None => None,
    };
    let (connected, files, problem) = match &planned {
        Ok(changes) => (
            changes.iter().all(Change::is_noop),
            changes
                .iter()
                .map(|c| c.file.display().to_string())
                .collect(),
            None,
        ),
        Err(why) => (false, Vec::new(), Some(why.clone())),
    };
    Ok(ClientStatus {
        id: id.to_owned(),
        name: client.name().to_owned(),
        installed: on_path(command),
        connected,
        files,
        last_seen,
        problem,
    })
}

/// Every agent llmux can connect, and how each stands.
pub async fn clients(context: &Context) -> Result<Vec<ClientStatus>, Error> {
    let mut out = Vec::new();
    for (id, client, command, agent) in CLIENTS {
        out.push(status(context, id, client, command, agent).await?);
    }
    Ok(out)
}

/// Connects agent `id` (or undoes it), or with `dry_run` only says what would change.
pub async fn change(
    context: &Context,
    id: &str,
    action: ClientAction,
) -> Result<ClientChanges, Error> {
    let Some((id, client, command, agent)) = CLIENTS.iter().copied().find(|(c, ..)| *c == id)
    else {
        return Err(Error::not_found(format!(
            "no client '{id}'; the clients are claude, codex and gemini"
        )));
    };
    let home = home()?;
    let planned = if action.undo {
        connect::plan_undo(client, &home, &env)
    } else {
        connect::plan_connect(client, &home, &env, &Target::for_config(&context.config))
    };
    let changes = planned.map_err(Error::invalid_request)?;
    let diffs = changes
        .iter()
        .filter(|c| !c.is_noop())
        .map(Change::diff)
        .collect();
    if !action.dry_run {
        connect::apply(&changes, action.undo).map_err(Error::internal)?;
        tracing::info!(
            "{} {} llmux",
            client.name(),
            if action.undo {
                "disconnected from"
            } else {
                "connected to"
            }
        );
    }
    Ok(ClientChanges {
        diffs,
        applied: !action.dry_run,
        status: status(context, id, client, command, agent).await?,
    })
}
