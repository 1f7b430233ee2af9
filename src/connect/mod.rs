//! `llmux connect claude|codex|gemini [--undo]`: points a coding agent's own settings at
//! llmux, with minimal edits that keep everything else in the files.
//!
//! - Claude Code: `~/.claude/settings.json` → `env.ANTHROPIC_BASE_URL` (llmux's Anthropic
//!   route) and `env.ANTHROPIC_AUTH_TOKEN` (the proxy key, sent as a bearer; a placeholder
//!   when llmux takes none, so Claude Code does not ask for a login).
//! - Codex CLI: `$CODEX_HOME/config.toml` → `[model_providers.llmux]` (`wire_api =
//!   "responses"`, `env_key` naming the proxy key's variable when one is needed) and
//!   `model_provider = "llmux"`; comments and layout kept (`toml_edit`).
//! - Gemini CLI: `~/.gemini/settings.json` → `security.auth.selectedType = "gemini-api-key"`
//!   (with `GOOGLE_GEMINI_BASE_URL` set, headless runs otherwise pick an auth type it then
//!   refuses), and `~/.gemini/.env` → `GOOGLE_GEMINI_BASE_URL`, `GEMINI_API_KEY`.
//!
//! Every edit is a list of (key path, value). Before the first edit of a file its original
//! is saved beside it (`FILE.llmux-backup`); `--undo` sets each key back to its value there
//! (or removes it), so changes the user made since are kept.

mod edit;

use std::path::{Path, PathBuf};

use serde_json::Value;

pub use edit::Format;

/// The agents llmux can connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    Claude,
    Codex,
    Gemini,
}

impl Client {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "claude" | "claude-code" => Some(Client::Claude),
            "codex" => Some(Client::Codex),
            "gemini" | "gemini-cli" => Some(Client::Gemini),
            _ => None,
        }
    }

    /// What `llmux connect` calls it.
    pub fn id(self) -> &'static str {
        match self {
            Client::Claude => "claude",
            Client::Codex => "codex",
            Client::Gemini => "gemini",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Client::Claude => "Claude Code",
            Client::Codex => "Codex CLI",
            Client::Gemini => "Gemini CLI",
        }
    }
}

/// Where llmux listens and what clients must send it.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://127.0.0.1:8000`
    pub base_url: String,
    /// llmux's Anthropic route (the dedicated port, else `/anthropic`).
    pub anthropic_url: String,
    /// The proxy key clients must send, when llmux takes one.
    pub proxy_key: Option<String>,
}

impl Target {
    /// Where `config` has llmux listen, as clients on this machine reach it.
    pub fn for_config(config: &crate::Config) -> Self {
        let host = match config.host {
            ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        let base_url = format!("http://{host}:{}", config.port);
        Target {
            anthropic_url: match config.anthropic_port {
                Some(port) => format!("http://{host}:{port}"),
                None => format!("{base_url}/anthropic"),
            },
            base_url,
            proxy_key: config.auth.api_keys.first().cloned(),
        }
    }
}

/// The variable Codex reads the proxy key from.
pub const CODEX_KEY_VARIABLE: &str = "LLMUX_API_KEY";
/// What a client sends when llmux takes no key (they refuse to start without one).
const NO_KEY: &str = "llmux-no-key-needed";

/// One file's change: what it holds now and what it would hold.
#[derive(Debug, Clone)]
pub struct Change {
    pub file: PathBuf,
    pub before: Option<String>,
    pub after: String,
}

impl Change {
    /// A unified diff of the change, for the user to read before it is applied, with
    /// the values of key-like settings masked: the diff is shown on screen and sent to
    /// the settings window, and the files hold the user's own provider keys.
    pub fn diff(&self) -> String {
        let before = mask_secrets(self.before.as_deref().unwrap_or(""));
        let after = mask_secrets(&self.after);
        let name = self.file.display().to_string();
        similar::TextDiff::from_lines(before.as_ref(), after.as_ref())
            .unified_diff()
            .context_radius(2)
            .header(&name, &name)
            .to_string()
    }

    pub fn is_noop(&self) -> bool {
        self.before.as_deref() == Some(self.after.as_str())
    }
}

/// The files of `client` under `home` (its own home variables honoured through `env`).
fn files(
    client: Client,
    home: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<(PathBuf, Format)> {
    match client {
        Client::Claude => {
            let dir = env("CLAUDE_CONFIG_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join(".claude"));
            vec![(dir.join("settings.json"), Format::Json)]
        }
        Client::Codex => {
            let dir = env("CODEX_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join(".codex"));
            vec![(dir.join("config.toml"), Format::Toml)]
        }
        Client::Gemini => {
            let dir = env("GEMINI_CLI_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| home.to_owned())
                .join(".gemini");
            vec![
                (dir.join("settings.json"), Format::Json),
                (dir.join(".env"), Format::DotEnv),
            ]
        }
    }
}

/// The keys `client` needs in the file of `format`, as (path, value).
fn wanted(client: Client, format: Format, target: &Target) -> Vec<(Vec<&'static str>, Value)> {
    let key = target.proxy_key.clone();
    match (client, format) {
        (Client::Claude, _) => vec![
            (
                vec!["env", "ANTHROPIC_BASE_URL"],
                Value::from(target.anthropic_url.clone()),
            ),
            (
                vec!["env", "ANTHROPIC_AUTH_TOKEN"],
                Value::from(key.unwrap_or_else(|| NO_KEY.into())),
            ),
        ],
        (Client::Codex, _) => {
            let mut provider = serde_json::json!({
                "name": "llmux",
                "base_url": format!("{}/v1", target.base_url),
                "wire_api": "responses",
            });
            if key.is_some() {
                provider["env_key"] = Value::from(CODEX_KEY_VARIABLE);
            }
            vec![
                (vec!["model_provider"], Value::from("llmux")),
                (vec!["model_providers", "llmux"], provider),
            ]
        }
        (Client::Gemini, Format::Json) => vec![(
            vec!["security", "auth", "selectedType"],
            Value::from("gemini-api-key"),
        )],
        (Client::Gemini, _) => vec![
            (
                vec!["GOOGLE_GEMINI_BASE_URL"],
                Value::from(target.base_url.clone()),
            ),
            (
                vec!["GEMINI_API_KEY"],
                Value::from(key.unwrap_or_else(|| NO_KEY.into())),
            ),
        ],
    }
}

/// A setting whose name says it holds a secret (`GEMINI_API_KEY=`, `"ANTHROPIC_AUTH_TOKEN":`,
/// `api_key = `, `password:`), and its value.
static SECRET_SETTING: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    regex::Regex::new(
        r#"(?i)((?:key|token|secret|password|passwd|credentials?)["']?\s*[:=]\s*["']?)([^"'\s,#}]+)"#,
    )
    .expect("a valid pattern")
});

/// `text` with the values of secret-looking settings shown as `****` and their last four
/// characters. The placeholder llmux writes and names of environment variables
/// (`env_key = "LLMUX_API_KEY"`) are not secrets and stay readable.
fn mask_secrets(text: &str) -> std::borrow::Cow<'_, str> {
    SECRET_SETTING.replace_all(text, |captures: &regex::Captures| {
        let value = &captures[2];
        let is_variable_name = value
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if value == NO_KEY || is_variable_name {
            return captures[0].to_owned();
        }
        let chars: Vec<char> = value.chars().collect();
        let tail: String = match chars.len() {
            n if n >= 12 => chars[n - 4..].iter().collect(),
            _ => String::new(),
        };
        format!("{}****{tail}", &captures[1])
    })
}

fn backup_of(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_owned();
    name.push(".llmux-backup");
    file.with_file_name(name)
}

fn read(file: &Path) -> Result<Option<String>, String> {
    match std::fs::read_to_string(file) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(format!("cannot read {}: {err}", file.display())),
    }
}

/// The changes that connect `client` to `target`.
pub fn plan_connect(
    client: Client,
    home: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    target: &Target,
) -> Result<Vec<Change>, String> {
    files(client, home, env)
        .into_iter()
        .map(|(file, format)| {
            let before = read(&file)?;
            let mut after = before.clone().unwrap_or_default();
            for (path, value) in wanted(client, format, target) {
                after = edit::set(format, &after, &path, Some(&value))
                    .map_err(|why| format!("{}: {why}", file.display()))?;
            }
            Ok(Change {
                file,
                before,
                after,
            })
        })
        .collect()
}

/// The changes that undo `connect`: each key llmux set goes back to its value in the
/// backup (or away, when the file did not have it).
pub fn plan_undo(
    client: Client,
    home: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Change>, String> {
    let placeholder = Target {
        base_url: String::new(),
        anthropic_url: String::new(),
        proxy_key: Some(String::new()),
    };
    let mut changes = Vec::new();
    for (file, format) in files(client, home, env) {
        let Some(before) = read(&file)? else { continue };
        let backup = read(&backup_of(&file))?;
        let Some(original) = backup else {
            return Err(format!(
                "{} has no {} from llmux: nothing to undo",
                file.display(),
                backup_of(&file).display()
            ));
        };
        let mut after = before.clone();
        for (path, _) in wanted(client, format, &placeholder) {
            let old = edit::get(format, &original, &path);
            after = edit::set(format, &after, &path, old.as_ref())
                .map_err(|why| format!("{}: {why}", file.display()))?;
        }
        changes.push(Change {
            file,
            before: Some(before),
            after,
        });
    }
    Ok(changes)
}

/// Applies `changes`: the first time a file is changed its original is kept beside it
/// (an empty backup for a file that did not exist); on undo the backup goes away.
///
/// Files are replaced atomically (a client starting meanwhile reads the old file or the
/// new one) with their mode kept; new files, backups among them (they hold the user's
/// keys), are readable by the owner only.
pub fn apply(changes: &[Change], undo: bool) -> Result<(), String> {
    use crate::credentials::login::file::write_atomically;
    for change in changes {
        let backup = backup_of(&change.file);
        if let Some(dir) = change.file.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        if !undo && !backup.exists() {
            write_atomically(&backup, change.before.as_deref().unwrap_or("").as_bytes())
                .map_err(|e| format!("cannot back up {}: {e}", change.file.display()))?;
        }
        if !change.is_noop() {
            write_atomically(&change.file, change.after.as_bytes())
                .map_err(|e| format!("cannot write {}: {e}", change.file.display()))?;
        }
        if undo {
            let _ = std::fs::remove_file(&backup);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
