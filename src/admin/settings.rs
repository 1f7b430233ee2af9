//! Settings: the config file behind a running llmux, shown with every value's source,
//! changed through the engine's own validation, saved, and applied by restarting the
//! listeners (whoever serves the engine watches [`SettingsSource::reloads`]).
//!
//! A change is checked by loading the changed file with the same environment and flags
//! llmux started with, so the UI shows exactly the messages `llmux config check` would,
//! next to the fields they name. Secrets are never written: provider keys come from the
//! environment or the OS keychain, and the proxy keys show masked.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{Mutex, watch};

use crate::Error;
use crate::config::{ConfigError, ConfigLoader, Loaded, Source, keys};
use crate::engine::Engine;

/// Where a running llmux's config comes from, and how to ask it to apply a saved change.
pub struct SettingsSource {
    loader: ConfigLoader,
    reload: watch::Sender<u64>,
    /// One change at a time: read, check and write the file as one step.
    saving: Mutex<()>,
}

impl SettingsSource {
    /// `loader` is the one llmux started with: its file, environment and flags.
    pub fn new(loader: ConfigLoader) -> Self {
        Self {
            loader,
            reload: watch::channel(0).0,
            saving: Mutex::new(()),
        }
    }

    /// Bumped after every saved change: restart the listeners with [`Self::load`]'s config.
    pub fn reloads(&self) -> watch::Receiver<u64> {
        self.reload.subscribe()
    }

    /// The config as the file on disk, the environment and the flags make it now.
    pub fn load(&self) -> Result<Loaded, ConfigError> {
        self.loader.clone().load()
    }

    /// The config file settings are saved to, when there is one.
    pub fn path(&self) -> Option<PathBuf> {
        self.loader.file_path().map(PathBuf::from)
    }

    /// A first run: no config file yet.
    pub fn is_first_run(&self) -> bool {
        self.path().is_none_or(|path| !path.exists())
    }
}

/// The settings a window shows.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Settings {
    /// The file changes are saved to; `null` when llmux has none (no home directory).
    pub file: Option<String>,
    /// Every effective value outside `[backends]`, with its source.
    pub values: Vec<SettingValue>,
    pub backends: Vec<BackendSetting>,
    /// The back-end types a new back-end can have.
    pub backend_types: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SettingValue {
    /// Dotted, as in `llmux config print`: `proxy.port`.
    pub key: String,
    #[cfg_attr(test, ts(type = "unknown"))]
    pub value: Value,
    /// `default`, `file ...`, `environment NAME` or `command line --flag`.
    pub source: String,
    /// Set by an environment variable or a flag: a value saved in the file does not apply
    /// while that is so.
    pub overridden: bool,
    /// What the settings table says of the key (its kind for the editor, help, variable
    /// and flags), for keys in the table.
    pub about: Option<crate::config::keys::SettingInfo>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct BackendSetting {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub base_url: String,
    /// The environment variable its key is read from.
    pub api_key_env: Option<String>,
    pub models: Vec<String>,
    /// The name of the key in use (its environment variable, or its name in the keychain),
    /// or `null`: no key.
    pub key_source: Option<String>,
    pub requires_key: bool,
    /// One of the back-ends llmux always has; its file entry can be removed, not it.
    pub builtin: bool,
    /// It has a table in the config file.
    pub in_file: bool,
}

/// A change: dotted keys to set (a `null` value removes the key) and keys or tables to
/// remove, e.g. `{"set": {"proxy.port": 9000, "backends.local.type": "openai-compatible"},
/// "remove": ["backends.old"]}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SettingsChange {
    #[serde(default)]
    #[cfg_attr(test, ts(type = "Record<string, unknown>"))]
    pub set: BTreeMap<String, Value>,
    #[serde(default)]
    pub remove: Vec<String>,
}

/// One thing wrong with a change, with the key it is about when the message names one.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SettingsProblem {
    pub key: Option<String>,
    pub message: String,
}

/// A saved change.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Saved {
    pub file: String,
    /// Changed keys an environment variable or flag overrides: saved, not in effect.
    pub overridden: Vec<String>,
}

/// Why a change was not saved.
#[derive(Debug)]
pub enum ChangeError {
    /// The change does not make a valid config; nothing was written.
    Invalid(Vec<SettingsProblem>),
    Other(Error),
}

impl From<Error> for ChangeError {
    fn from(err: Error) -> Self {
        Self::Other(err)
    }
}

fn source_of(engine: &Engine) -> Result<&SettingsSource, Error> {
    engine.settings().ok_or_else(|| {
        Error::not_found(
            "settings cannot be changed here: this llmux was not started from a config",
        )
    })
}

fn overridden(source: &Source) -> bool {
    matches!(source, Source::Env(_) | Source::Cli(_))
}

/// The settings as they are now.
pub async fn settings(engine: &Engine) -> Result<Settings, Error> {
    settings_of(source_of(engine)?, Some(engine))
}

/// The settings of `source`; `engine`, when one is serving, tells which keys are in use.
pub fn settings_of(source: &SettingsSource, engine: Option<&Engine>) -> Result<Settings, Error> {
    let loaded = source
        .load()
        .map_err(|e| Error::internal(format!("the config does not load: {e}")))?;
    let entries = loaded.entries().map_err(Error::internal)?;
    let mut values: Vec<SettingValue> = entries
        .into_iter()
        .filter(|e| !e.key.starts_with("backends."))
        .map(|e| SettingValue {
            value: serde_json::to_value(&e.value).unwrap_or(Value::Null),
            overridden: overridden(&e.source),
            source: e.source.to_string(),
            about: keys::find(&e.key).map(Into::into),
            key: e.key,
        })
        .collect();
    // The table's keys that have no value (no default, not set), so they can be set here.
    for setting in keys::SETTINGS {
        let unset = !setting.key.starts_with("backends.")
            && !values
                .iter()
                .any(|v| v.key == setting.key || v.key.starts_with(&format!("{}.", setting.key)));
        if unset {
            values.push(SettingValue {
                key: setting.key.to_owned(),
                value: Value::Null,
                source: Source::Default.to_string(),
                overridden: false,
                about: Some(setting.into()),
            });
        }
    }
    let backends = loaded
        .config
        .backends
        .values()
        .map(|b| {
            let in_use = engine.and_then(|e| e.routes().backends().get(&b.id));
            BackendSetting {
                id: b.id.clone(),
                kind: b.kind.name().to_owned(),
                base_url: b.base_url.clone(),
                api_key_env: b.api_key_env.clone(),
                models: b.models.clone().unwrap_or_default(),
                key_source: in_use
                    .and_then(|backend| backend.key_name())
                    .map(str::to_owned),
                requires_key: b.kind.requires_key(),
                builtin: crate::config::is_builtin_backend(&b.id),
                in_file: {
                    let table = format!("backends.{}", b.id);
                    loaded.layered.sources.iter().any(|(key, source)| {
                        matches!(source, Source::File(_))
                            && (*key == table || key.starts_with(&format!("{table}.")))
                    })
                },
            }
        })
        .collect();
    Ok(Settings {
        file: source.path().map(|p| p.display().to_string()),
        values,
        backends,
        backend_types: crate::config::BackendKind::all()
            .map(|kind| kind.name().to_owned())
            .collect(),
    })
}

/// The key a config problem is about: the dotted key before ` = ` or `: ` at its start.
fn problem_key(problem: &str) -> Option<String> {
    let end = [" = ", ": "]
        .iter()
        .filter_map(|separator| problem.find(separator))
        .min()?;
    let key = &problem[..end];
    let looks_like_key = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    looks_like_key.then(|| key.to_owned())
}

fn problems_of(err: ConfigError) -> Vec<SettingsProblem> {
    err.problems
        .into_iter()
        .map(|message| SettingsProblem {
            key: problem_key(&message),
            message,
        })
        .collect()
}

fn invalid(key: &str, message: impl Into<String>) -> ChangeError {
    ChangeError::Invalid(vec![SettingsProblem {
        key: Some(key.to_owned()),
        message: message.into(),
    }])
}

/// A JSON value as TOML; `None` for `null` (remove the key).
fn toml_value(key: &str, value: &Value) -> Result<Option<toml_edit::Value>, ChangeError> {
    Ok(Some(match value {
        Value::Null => return Ok(None),
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.into(),
            (None, Some(f)) => f.into(),
            _ => return Err(invalid(key, format!("{key}: {n} is out of range"))),
        },
        Value::String(s) => s.as_str().into(),
        Value::Array(items) => {
            let mut array = toml_edit::Array::new();
            for item in items {
                match toml_value(key, item)? {
                    Some(value) => array.push(value),
                    None => return Err(invalid(key, format!("{key}: a list cannot hold null"))),
                }
            }
            array.into()
        }
        Value::Object(_) => {
            return Err(invalid(
                key,
                format!("{key}: set the table's keys one by one (\"{key}.name\")"),
            ));
        }
    }))
}

/// The table at `path` in `doc`, created (as a standard `[table]`) when missing.
fn table_at<'d>(
    doc: &'d mut toml_edit::DocumentMut,
    path: &[&str],
    key: &str,
) -> Result<&'d mut toml_edit::Table, ChangeError> {
    let mut table = doc.as_table_mut();
    for segment in path {
        let entry = table.entry(segment).or_insert_with(|| {
            // Implicit: `[backends.local]` alone, without an empty `[backends]` above it.
            let mut created = toml_edit::Table::new();
            created.set_implicit(true);
            toml_edit::Item::Table(created)
        });
        table = entry
            .as_table_mut()
            .ok_or_else(|| invalid(key, format!("{key}: {segment} is not a table")))?;
    }
    Ok(table)
}

fn segments(key: &str) -> Result<Vec<&str>, ChangeError> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.trim().is_empty()) {
        return Err(invalid(
            key,
            format!("{key:?} is not a dotted key like proxy.port"),
        ));
    }
    Ok(parts)
}

/// `change` applied to the file's text, comments and layout kept.
fn changed_text(text: &str, change: &SettingsChange) -> Result<String, ChangeError> {
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| {
        ChangeError::Invalid(vec![SettingsProblem {
            key: None,
            message: format!("the config file is not valid TOML, fix it by hand first: {e}"),
        }])
    })?;
    for key in &change.remove {
        let parts = segments(key)?;
        let (last, path) = parts.split_last().unwrap_or((&"", &[]));
        if let Ok(table) = table_at(&mut doc, path, key) {
            table.remove(last);
        }
    }
    for (key, value) in &change.set {
        let parts = segments(key)?;
        let (last, path) = parts.split_last().unwrap_or((&"", &[]));
        let value = toml_value(key, value)?;
        let table = table_at(&mut doc, path, key)?;
        match value {
            Some(value) => {
                table.insert(last, toml_edit::Item::Value(value));
            }
            None => {
                table.remove(last);
            }
        }
    }
    Ok(doc.to_string())
}

/// Checks `change` against the engine's own validation, saves it to the config file and
/// asks for the listeners to restart with it. Nothing is written when it is invalid.
pub async fn change_settings(
    engine: &Engine,
    change: SettingsChange,
) -> Result<Saved, ChangeError> {
    change_source(source_of(engine)?, change).await
}

/// [`change_settings`] for a source with no engine serving it.
pub async fn change_source(
    source: &SettingsSource,
    change: SettingsChange,
) -> Result<Saved, ChangeError> {
    let path = source
        .path()
        .ok_or_else(|| Error::not_found("llmux has no config file to save settings to"))?;
    let _saving = source.saving.lock().await;
    let current = match tokio::fs::read_to_string(&path).await {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(err) => {
            return Err(Error::internal(format!("cannot read {}: {err}", path.display())).into());
        }
    };
    let text = changed_text(&current, &change)?;
    let loaded = source
        .loader
        .clone()
        .file_contents(&path, text.clone())
        .load()
        .map_err(|err| ChangeError::Invalid(problems_of(err)))?;
    check_shadowed_values(&path, &text, &change)?;
    if let Ok(before) = source.load() {
        for moved in moved_backends(&before.config, &loaded.config) {
            tracing::warn!("settings: {moved}");
        }
    }
    write_atomically(&path, &text).await?;
    let overridden = change
        .set
        .keys()
        .filter(|key| overridden(&loaded.layered.source_of(key)))
        .cloned()
        .collect();
    source.reload.send_modify(|n| *n += 1);
    Ok(Saved {
        file: path.display().to_string(),
        overridden,
    })
}

/// Back-ends a change sends to another host: the keys of a back-end go wherever its base
/// URL points, so such a change is worth a line in the log, naming both hosts.
pub fn moved_backends(before: &crate::Config, after: &crate::Config) -> Vec<String> {
    let host = |url: &str| {
        reqwest::Url::parse(url)
            .ok()
            .and_then(|u| {
                u.host_str()
                    .map(|h| format!("{h}:{}", u.port_or_known_default().unwrap_or(0)))
            })
            .unwrap_or_else(|| url.to_owned())
    };
    after
        .backends
        .values()
        .filter_map(|new| {
            let old = before.backends.get(&new.id)?;
            let (from, to) = (host(&old.base_url), host(&new.base_url));
            (from != to).then(|| {
                format!(
                    "back-end '{}' moves from {from} to {to} (base URL {} -> {}); its key goes there with the next request",
                    new.id, old.base_url, new.base_url
                )
            })
        })
        .collect()
}

/// A value an environment variable or flag overrides is not checked by loading the layers
/// together, yet it is written to the file and applies once the override goes: check the
/// file with the defaults alone too, and report the problems about the changed keys.
fn check_shadowed_values(
    path: &std::path::Path,
    text: &str,
    change: &SettingsChange,
) -> Result<(), ChangeError> {
    let Err(err) = ConfigLoader::new()
        .env(|_| None)
        .file_contents(path, text)
        .load()
    else {
        return Ok(());
    };
    let related = |key: &str| {
        change.set.keys().any(|changed| {
            key == changed
                || key.starts_with(&format!("{changed}."))
                || changed.starts_with(&format!("{key}."))
        })
    };
    let problems: Vec<SettingsProblem> = problems_of(err)
        .into_iter()
        .filter(|p| p.key.as_deref().is_some_and(related))
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ChangeError::Invalid(problems))
    }
}

/// Writes `text` to a temporary file beside `path`, then renames it over `path`: a crash
/// leaves the old file or the new one, never half of one.
async fn write_atomically(path: &std::path::Path, text: &str) -> Result<(), Error> {
    let cannot =
        |e: std::io::Error| Error::internal(format!("cannot save {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(cannot)?;
    }
    let temporary = path.with_extension("toml.saving");
    tokio::fs::write(&temporary, text).await.map_err(cannot)?;
    tokio::fs::rename(&temporary, path).await.map_err(cannot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_run_is_one_without_a_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("llmux.toml");
        let source = SettingsSource::new(ConfigLoader::new().file(&file, false));
        assert!(source.is_first_run());
        std::fs::write(&file, "default_backend = \"mock\"\n").unwrap();
        assert!(!source.is_first_run());
        assert!(SettingsSource::new(ConfigLoader::new()).is_first_run());
    }

    fn change(set: &[(&str, Value)], remove: &[&str]) -> SettingsChange {
        SettingsChange {
            set: set
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            remove: remove.iter().map(|k| (*k).to_owned()).collect(),
        }
    }

    #[test]
    fn changes_keep_the_file_comments_and_create_tables() {
        let text = "# my settings\ndefault_backend = \"openai\" # chosen by hand\n\n[proxy]\nport = 8000\n";
        let out = changed_text(
            text,
            &change(
                &[
                    ("proxy.port", Value::from(9000)),
                    ("backends.local.type", Value::from("openai-compatible")),
                    ("backends.local.models", serde_json::json!(["a", "b"])),
                ],
                &[],
            ),
        )
        .map_err(|_| ())
        .unwrap();
        assert!(out.starts_with("# my settings\ndefault_backend = \"openai\" # chosen by hand"));
        assert!(out.contains("port = 9000"), "{out}");
        assert!(out.contains("\n[backends.local]\n"), "{out}");
        assert!(!out.contains("[backends]"), "{out}");
        assert!(out.contains("\ntype = \"openai-compatible\"\n"), "{out}");
        assert!(out.contains("\nmodels = [\"a\", \"b\"]\n"), "{out}");
        let removed = changed_text(
            &out,
            &change(&[("proxy.port", Value::Null)], &["backends.local"]),
        )
        .map_err(|_| ())
        .unwrap();
        assert!(!removed.contains("port ="), "{removed}");
        assert!(!removed.contains("backends.local"), "{removed}");
    }

    #[test]
    fn a_back_end_moved_to_another_host_is_named_with_both_hosts() {
        let load = |toml: &str| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("llmux.toml");
            std::fs::write(&path, toml).unwrap();
            ConfigLoader::new()
                .file(&path, true)
                .env(|_| None)
                .load()
                .unwrap()
                .config
        };
        let before = load("[backends.openai]\nbase_url = \"https://api.openai.com/v1\"\n");
        let same_host = load("[backends.openai]\nbase_url = \"https://api.openai.com/v2\"\n");
        assert!(moved_backends(&before, &same_host).is_empty());
        let moved = load("[backends.openai]\nbase_url = \"http://evil.example/v1\"\n");
        let lines = moved_backends(&before, &moved);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains("'openai' moves from api.openai.com:443 to evil.example:80"),
            "{}",
            lines[0]
        );
    }

    #[test]
    fn bad_changes_name_their_key() {
        let problem = |result: Result<String, ChangeError>| match result {
            Err(ChangeError::Invalid(problems)) => problems[0].clone(),
            other => panic!("expected a problem, got {:?}", other.map_err(|_| ())),
        };
        let p = problem(changed_text(
            "",
            &change(&[("proxy..port", Value::from(1))], &[]),
        ));
        assert_eq!(p.key.as_deref(), Some("proxy..port"));
        let p = problem(changed_text(
            "",
            &change(&[("proxy", serde_json::json!({"port": 1}))], &[]),
        ));
        assert!(p.message.contains("one by one"), "{}", p.message);
        let p = problem(changed_text(
            "port = 1\n",
            &change(&[("port.x", Value::from(1))], &[]),
        ));
        assert!(p.message.contains("not a table"), "{}", p.message);
        let p = problem(changed_text("[broken", &change(&[], &[])));
        assert!(p.key.is_none() && p.message.contains("not valid TOML"));
    }

    #[test]
    fn problem_keys_come_from_the_message() {
        assert_eq!(
            problem_key("proxy.port = 70000 (from file x): out of range").as_deref(),
            Some("proxy.port")
        );
        assert_eq!(
            problem_key("backends.local: missing field `type` (from file x)").as_deref(),
            Some("backends.local")
        );
        assert_eq!(problem_key("cannot read config file /x: denied"), None);
        assert_eq!(problem_key("no separator at all"), None);
    }
}
