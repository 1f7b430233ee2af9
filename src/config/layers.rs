//! Layering: defaults < TOML file < environment < CLI, remembering where each value came from.
//!
//! Layers are merged as TOML tables before serde reads them, so every layer goes through
//! the same parsing and the same error messages, and `config print` can name each value's
//! source.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use toml::{Table, Value};

/// Where a config value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    Env(String),
    Cli(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(path) => write!(f, "file {}", path.display()),
            Source::Env(name) => write!(f, "environment {name}"),
            Source::Cli(flag) => write!(f, "command line {flag}"),
        }
    }
}

/// How an environment variable's text becomes a TOML value.
#[derive(Debug, Clone, Copy)]
pub enum EnvKind {
    Str,
    Int,
    Float,
    Bool,
    /// Comma-separated strings.
    List,
}

/// The seed's environment variables and the keys they set.
pub const ENV_KEYS: &[(&str, &str, EnvKind)] = &[
    ("APP_HOST", "proxy.host", EnvKind::Str),
    ("APP_PORT", "proxy.port", EnvKind::Int),
    ("ANTHROPIC_PORT", "proxy.anthropic_port", EnvKind::Int),
    ("ALLOWED_HOSTS", "proxy.allowed_hosts", EnvKind::List),
    ("ALLOWED_ORIGINS", "proxy.allowed_origins", EnvKind::List),
    (
        "HEADER_READ_TIMEOUT_SECONDS",
        "proxy.header_read_timeout_seconds",
        EnvKind::Float,
    ),
    (
        "KEEP_ALIVE_TIMEOUT_SECONDS",
        "proxy.keep_alive_timeout_seconds",
        EnvKind::Float,
    ),
    ("MAX_CONNECTIONS", "proxy.max_connections", EnvKind::Int),
    (
        "MAX_CONCURRENT_REQUESTS_PER_IP",
        "proxy.max_concurrent_requests_per_ip",
        EnvKind::Int,
    ),
    ("LLM_BACKEND", "default_backend", EnvKind::Str),
    ("COMMAND_PREFIX", "command_prefix", EnvKind::Str),
    (
        "STRICT_COMMAND_DETECTION",
        "strict_command_detection",
        EnvKind::Bool,
    ),
    ("SESSION_MAX_AGE", "session.max_age", EnvKind::Int),
    ("STATIC_ROUTE", "static_route", EnvKind::Str),
    ("CAPTURE_FILE", "capture.file", EnvKind::Str),
    ("CAPTURE_DB", "capture.db", EnvKind::Str),
    (
        "CAPTURE_DB_RETENTION_DAYS",
        "capture.db_retention_days",
        EnvKind::Int,
    ),
    ("CAPTURE_DB_MAX_BYTES", "capture.db_max_bytes", EnvKind::Int),
    ("CAPTURE_BUFFER_SIZE", "capture.buffer_size", EnvKind::Int),
    (
        "CAPTURE_FLUSH_INTERVAL",
        "capture.flush_interval",
        EnvKind::Float,
    ),
    (
        "CAPTURE_MAX_ENTRIES_PER_FLUSH",
        "capture.max_entries_per_flush",
        EnvKind::Int,
    ),
    ("CAPTURE_MAX_BYTES", "capture.max_bytes", EnvKind::Int),
    ("CAPTURE_MAX_FILES", "capture.max_files", EnvKind::Int),
    (
        "CAPTURE_TOTAL_MAX_BYTES",
        "capture.total_max_bytes",
        EnvKind::Int,
    ),
    (
        "EDIT_PRECISION_ENABLED",
        "edit_precision.enabled",
        EnvKind::Bool,
    ),
    (
        "EDIT_PRECISION_TEMPERATURE",
        "edit_precision.temperature",
        EnvKind::Float,
    ),
    (
        "EDIT_PRECISION_MIN_TOP_P",
        "edit_precision.min_top_p",
        EnvKind::Float,
    ),
    (
        "EDIT_PRECISION_OVERRIDE_TOP_P",
        "edit_precision.override_top_p",
        EnvKind::Bool,
    ),
    (
        "EDIT_PRECISION_EXCLUDE_AGENTS_REGEX",
        "edit_precision.exclude_agents_regex",
        EnvKind::Str,
    ),
    (
        "PLANNING_PHASE_ENABLED",
        "session.planning_phase.enabled",
        EnvKind::Bool,
    ),
    (
        "PLANNING_PHASE_STRONG_MODEL",
        "session.planning_phase.strong_model",
        EnvKind::Str,
    ),
    (
        "PLANNING_PHASE_MAX_TURNS",
        "session.planning_phase.max_turns",
        EnvKind::Int,
    ),
    (
        "PLANNING_PHASE_MAX_FILE_WRITES",
        "session.planning_phase.max_file_writes",
        EnvKind::Int,
    ),
    (
        "PLANNING_PHASE_TEMPERATURE",
        "session.planning_phase.overrides.temperature",
        EnvKind::Float,
    ),
    (
        "PLANNING_PHASE_TOP_P",
        "session.planning_phase.overrides.top_p",
        EnvKind::Float,
    ),
    (
        "PLANNING_PHASE_REASONING_EFFORT",
        "session.planning_phase.overrides.reasoning_effort",
        EnvKind::Str,
    ),
    (
        "PLANNING_PHASE_THINKING_BUDGET",
        "session.planning_phase.overrides.thinking_budget",
        EnvKind::Int,
    ),
    ("FORCE_MODEL", "force_model", EnvKind::Str),
    (
        "LLM_INTERACTIVE_PROXY_API_KEY",
        "auth.api_keys",
        EnvKind::List,
    ),
    ("DISABLE_AUTH", "auth.disable_auth", EnvKind::Bool),
    ("TRUSTED_IPS", "auth.trusted_ips", EnvKind::List),
    ("LOG_LEVEL", "logging.level", EnvKind::Str),
    (
        "BRUTE_FORCE_PROTECTION_ENABLED",
        "auth.brute_force_protection.enabled",
        EnvKind::Bool,
    ),
    (
        "BRUTE_FORCE_MAX_FAILED_ATTEMPTS",
        "auth.brute_force_protection.max_failed_attempts",
        EnvKind::Int,
    ),
    (
        "BRUTE_FORCE_TTL_SECONDS",
        "auth.brute_force_protection.ttl_seconds",
        EnvKind::Int,
    ),
    (
        "BRUTE_FORCE_INITIAL_BLOCK_SECONDS",
        "auth.brute_force_protection.initial_block_seconds",
        EnvKind::Int,
    ),
    (
        "BRUTE_FORCE_BLOCK_MULTIPLIER",
        "auth.brute_force_protection.block_multiplier",
        EnvKind::Float,
    ),
    (
        "BRUTE_FORCE_MAX_BLOCK_SECONDS",
        "auth.brute_force_protection.max_block_seconds",
        EnvKind::Int,
    ),
    (
        "OPENAI_API_BASE_URL",
        "backends.openai.base_url",
        EnvKind::Str,
    ),
    (
        "OPENROUTER_API_BASE_URL",
        "backends.openrouter.base_url",
        EnvKind::Str,
    ),
    ("ZAI_API_BASE_URL", "backends.zai.base_url", EnvKind::Str),
];

/// A merged TOML table plus the source of every leaf.
#[derive(Debug, Default)]
pub struct Layered {
    pub table: Table,
    pub sources: BTreeMap<String, Source>,
}

impl Layered {
    /// Merges a whole table (a config file) into this one.
    pub fn merge_table(&mut self, table: Table, source: &Source) {
        let mut leaves = Vec::new();
        collect_leaves(String::new(), &Value::Table(table), &mut leaves);
        for (path, value) in leaves {
            self.set(&path, value, source.clone());
        }
    }

    /// Sets one dotted key, creating tables on the way.
    pub fn set(&mut self, path: &str, value: Value, source: Source) {
        let mut keys: Vec<&str> = split_path(path);
        let Some(last) = keys.pop() else { return };
        let mut table = &mut self.table;
        for key in keys {
            let entry = table
                .entry(key.to_owned())
                .or_insert_with(|| Value::Table(Table::new()));
            if !entry.is_table() {
                *entry = Value::Table(Table::new());
            }
            let Value::Table(next) = entry else { return };
            table = next;
        }
        table.insert(last.to_owned(), value);
        self.sources.insert(path.to_owned(), source);
    }

    /// The source of the value at `path`, or of the nearest enclosing key that has one.
    pub fn source_of(&self, path: &str) -> Source {
        let mut path = path.to_owned();
        loop {
            if let Some(source) = self.sources.get(&path) {
                return source.clone();
            }
            // A key inside a recorded array or table inherits its source.
            if let Some(found) = self.sources.iter().find(|(k, _)| {
                path.starts_with(k.as_str()) && path[k.len()..].starts_with(['.', '['])
            }) {
                return found.1.clone();
            }
            match path.rfind(['.', '[']) {
                Some(cut) => path.truncate(cut),
                None => return Source::Default,
            }
        }
    }
}

/// Splits `backends.local-llama.base_url` into keys. Backend ids may not contain dots.
fn split_path(path: &str) -> Vec<&str> {
    path.split('.').collect()
}

fn collect_leaves(prefix: String, value: &Value, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Table(table) if !table.is_empty() || prefix.is_empty() => {
            for (key, value) in table {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                collect_leaves(path, value, out);
            }
        }
        _ => out.push((prefix, value.clone())),
    }
}

/// Parses an environment variable's text as the kind its key expects.
pub fn parse_env(name: &str, text: &str, kind: EnvKind) -> Result<Value, String> {
    let text = text.trim();
    match kind {
        EnvKind::Str => Ok(Value::String(text.to_owned())),
        EnvKind::Int => text
            .parse::<i64>()
            .map(Value::Integer)
            .map_err(|_| format!("{name}='{text}' is not an integer")),
        EnvKind::Float => text
            .parse::<f64>()
            .map(Value::Float)
            .map_err(|_| format!("{name}='{text}' is not a number")),
        EnvKind::Bool => match text.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(Value::Boolean(true)),
            "0" | "false" | "no" | "off" | "" => Ok(Value::Boolean(false)),
            _ => Err(format!("{name}='{text}' is not a boolean (true/false)")),
        },
        EnvKind::List => Ok(Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_layers_win_and_remember_their_source() {
        let mut layered = Layered::default();
        let file: Table = toml::from_str("[proxy]\nport = 9000\nhost = \"127.0.0.1\"").unwrap();
        layered.merge_table(file, &Source::File("a.toml".into()));
        layered.set(
            "proxy.port",
            Value::Integer(9100),
            Source::Env("APP_PORT".into()),
        );
        assert_eq!(layered.table["proxy"]["port"].as_integer(), Some(9100));
        assert_eq!(
            layered.source_of("proxy.port"),
            Source::Env("APP_PORT".into())
        );
        assert_eq!(
            layered.source_of("proxy.host"),
            Source::File("a.toml".into())
        );
        assert_eq!(layered.source_of("auth.disable_auth"), Source::Default);
    }

    #[test]
    fn env_values_are_typed() {
        assert_eq!(
            parse_env("APP_PORT", "80", EnvKind::Int),
            Ok(Value::Integer(80))
        );
        assert!(
            parse_env("APP_PORT", "eighty", EnvKind::Int)
                .unwrap_err()
                .contains("APP_PORT='eighty'")
        );
        assert_eq!(
            parse_env("K", "a, b,,", EnvKind::List),
            Ok(Value::Array(vec!["a".into(), "b".into()]))
        );
    }
}
