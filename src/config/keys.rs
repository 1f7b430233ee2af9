//! Every setting that has an environment variable or a command-line flag, defined once: its
//! TOML key, its kind, the variable, the flags and the help. The loader reads the
//! environment from this table, the `llmux` command builds its flags and their help from
//! it, and the settings API hands each entry to the settings page (help text, editor kind,
//! and what overrides a saved value). Adding such a setting is one entry here (plus its
//! field in `raw.rs` and, when it needs checking, a line in `validate`).
//!
//! Settings that live only in the config file (per-back-end tables, file paths of pattern
//! files) have no entry: the file's own structure documents them.

use serde::Serialize;

/// What a setting's value is, and so how its variable, its flag and its editor read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Text,
    Integer,
    Number,
    Bool,
    /// Strings; comma-separated in a variable, a repeated flag on the command line.
    List,
    /// Model aliases: a JSON list in `MODEL_ALIASES`, `PATTERN=REPLACEMENT` per flag.
    Aliases,
}

/// A command-line flag of a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// `--long VALUE`: the value as the setting's kind reads it (repeatable for lists).
    Value {
        long: &'static str,
        value_name: &'static str,
    },
    /// `--long` alone sets a boolean setting to `value`.
    Switch { long: &'static str, value: bool },
}

impl Flag {
    pub fn long(&self) -> &'static str {
        match self {
            Flag::Value { long, .. } | Flag::Switch { long, .. } => long,
        }
    }
}

/// One setting.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// Dotted, as in the config file and `llmux config print`.
    pub key: &'static str,
    pub kind: Kind,
    /// The environment variable that sets it (the seed's names).
    pub env: Option<&'static str>,
    pub flags: &'static [Flag],
    /// One line for `--help` and the settings page.
    pub help: &'static str,
}

impl Setting {
    /// `--help`'s text: the help, then where else the value can come from.
    pub fn long_help(&self) -> String {
        match self.env {
            Some(env) => format!("{} [{}, {env}]", self.help, self.key),
            None => format!("{} [{}]", self.help, self.key),
        }
    }
}

/// The setting at `key`, if it is in the table.
pub fn find(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.key == key)
}

const fn value(long: &'static str, value_name: &'static str) -> Flag {
    Flag::Value { long, value_name }
}

const fn on(long: &'static str) -> Flag {
    Flag::Switch { long, value: true }
}

const fn off(long: &'static str) -> Flag {
    Flag::Switch { long, value: false }
}

const fn setting(
    key: &'static str,
    kind: Kind,
    env: Option<&'static str>,
    flags: &'static [Flag],
    help: &'static str,
) -> Setting {
    Setting {
        key,
        kind,
        env,
        flags,
        help,
    }
}

use Kind::{Aliases, Bool, Integer, List, Number, Text};

/// The table, grouped as the config file is.
pub const SETTINGS: &[Setting] = &[
    // [proxy]
    setting(
        "proxy.host",
        Text,
        Some("APP_HOST"),
        &[value("host", "ADDRESS")],
        "Address to listen on",
    ),
    setting(
        "proxy.port",
        Integer,
        Some("APP_PORT"),
        &[value("port", "PORT")],
        "Port to listen on",
    ),
    setting(
        "proxy.anthropic_port",
        Integer,
        Some("ANTHROPIC_PORT"),
        &[value("anthropic-port", "PORT")],
        "Dedicated Anthropic port; default port + 1, 0 turns it off",
    ),
    setting(
        "proxy.allowed_hosts",
        List,
        Some("ALLOWED_HOSTS"),
        &[value("allowed-host", "NAME")],
        "A host name llmux answers besides loopback names and IP addresses; repeatable; \
         \"*\" turns the Host check off",
    ),
    setting(
        "proxy.allowed_origins",
        List,
        Some("ALLOWED_ORIGINS"),
        &[value("allowed-origin", "ORIGIN")],
        "A web origin (scheme://host[:port]) allowed to call llmux from a browser, with \
         CORS; repeatable",
    ),
    setting(
        "proxy.header_read_timeout_seconds",
        Number,
        Some("HEADER_READ_TIMEOUT_SECONDS"),
        &[value("header-read-timeout", "SECONDS")],
        "Seconds a client has to send a whole request head (default 10)",
    ),
    setting(
        "proxy.keep_alive_timeout_seconds",
        Number,
        Some("KEEP_ALIVE_TIMEOUT_SECONDS"),
        &[value("keep-alive-timeout", "SECONDS")],
        "Seconds an idle keep-alive connection stays open (default 60)",
    ),
    setting(
        "proxy.max_connections",
        Integer,
        Some("MAX_CONNECTIONS"),
        &[value("max-connections", "N")],
        "Open client connections at most; 0 sizes it from the open-file limit (default)",
    ),
    setting(
        "proxy.max_concurrent_requests_per_ip",
        Integer,
        Some("MAX_CONCURRENT_REQUESTS_PER_IP"),
        &[value("max-concurrent-requests-per-ip", "N")],
        "Requests one client address may have running at once; 0 is no limit (default)",
    ),
    setting(
        "proxy.max_body_bytes",
        Integer,
        None,
        &[value("max-body-bytes", "BYTES")],
        "Request bodies above this many bytes get 413",
    ),
    // Routing
    setting(
        "default_backend",
        Text,
        Some("LLM_BACKEND"),
        &[value("default-backend", "NAME")],
        "Back-end for models without a `backend:` prefix",
    ),
    setting(
        "static_route",
        Text,
        Some("STATIC_ROUTE"),
        &[value("static-route", "BACKEND:MODEL")],
        "Send every request to BACKEND:MODEL (session overrides still win)",
    ),
    setting(
        "force_model",
        Text,
        Some("FORCE_MODEL"),
        &[value("force-model", "MODEL")],
        "Replace every client's model with MODEL",
    ),
    setting(
        "model_aliases",
        Aliases,
        Some("MODEL_ALIASES"),
        &[value("model-alias", "PATTERN=REPLACEMENT")],
        "Rewrite model names: PATTERN=REPLACEMENT, a regex with \\1 groups; repeatable, the \
         first match wins",
    ),
    setting(
        "force_context_window",
        Integer,
        Some("FORCE_CONTEXT_WINDOW"),
        &[value("force-context-window", "TOKENS")],
        "Refuse requests of more than TOKENS input tokens, whatever the model's own limit",
    ),
    setting(
        "dedup_window_seconds",
        Number,
        Some("DEDUP_WINDOW_SECONDS"),
        &[value("dedup-window", "SECONDS")],
        "Answer a request identical to one its session sent less than SECONDS ago with that \
         one's answer (0: off)",
    ),
    // In-chat commands and sessions
    setting(
        "command_prefix",
        Text,
        Some("COMMAND_PREFIX"),
        &[value("command-prefix", "PREFIX")],
        "What starts an in-chat command (default \"!/\")",
    ),
    setting(
        "strict_command_detection",
        Bool,
        Some("STRICT_COMMAND_DETECTION"),
        &[on("strict-command-detection")],
        "Only commands on the last non-blank line of a message count",
    ),
    setting(
        "session.max_age",
        Integer,
        Some("SESSION_MAX_AGE"),
        &[],
        "Seconds an idle session's state is kept",
    ),
    setting(
        "state.backend",
        Text,
        Some("STATE_BACKEND"),
        &[value("state-backend", "memory|redis")],
        "Where session state lives: memory (this process) or redis (shared by instances)",
    ),
    setting(
        "state.url",
        Text,
        Some("REDIS_URL"),
        &[value("state-url", "URL")],
        "The Redis server for state.backend = redis (redis://host:port/db)",
    ),
    setting(
        "state.timeout_ms",
        Integer,
        Some("STATE_TIMEOUT_MS"),
        &[value("state-timeout-ms", "MS")],
        "Longest wait for Redis before serving from this instance's memory (default 250)",
    ),
    setting(
        "session.pytest_compression_enabled",
        Bool,
        Some("PYTEST_COMPRESSION_ENABLED"),
        &[
            on("enable-pytest-compression"),
            off("disable-pytest-compression"),
        ],
        "Drop passing tests and timings from pytest output in tool results",
    ),
    setting(
        "session.pytest_full_suite_steering_enabled",
        Bool,
        Some("PYTEST_FULL_SUITE_STEERING_ENABLED"),
        &[
            on("enable-pytest-full-suite-steering"),
            off("disable-pytest-full-suite-steering"),
        ],
        "A tool call running the whole pytest suite runs only when made twice",
    ),
    // Planning phase
    setting(
        "session.planning_phase.enabled",
        Bool,
        Some("PLANNING_PHASE_ENABLED"),
        &[on("enable-planning-phase")],
        "Route the first turns of a session to a strong model",
    ),
    setting(
        "session.planning_phase.strong_model",
        Text,
        Some("PLANNING_PHASE_STRONG_MODEL"),
        &[value("planning-phase-strong-model", "BACKEND:MODEL")],
        "The planning phase's model",
    ),
    setting(
        "session.planning_phase.max_turns",
        Integer,
        Some("PLANNING_PHASE_MAX_TURNS"),
        &[value("planning-phase-max-turns", "N")],
        "Planning turns before switching back",
    ),
    setting(
        "session.planning_phase.max_file_writes",
        Integer,
        Some("PLANNING_PHASE_MAX_FILE_WRITES"),
        &[value("planning-phase-max-file-writes", "N")],
        "File-writing tool calls that end the planning phase",
    ),
    setting(
        "session.planning_phase.overrides.temperature",
        Number,
        Some("PLANNING_PHASE_TEMPERATURE"),
        &[value("planning-phase-temperature", "FLOAT")],
        "Temperature during planning",
    ),
    setting(
        "session.planning_phase.overrides.top_p",
        Number,
        Some("PLANNING_PHASE_TOP_P"),
        &[value("planning-phase-top-p", "FLOAT")],
        "top_p during planning",
    ),
    setting(
        "session.planning_phase.overrides.reasoning_effort",
        Text,
        Some("PLANNING_PHASE_REASONING_EFFORT"),
        &[value("planning-phase-reasoning-effort", "EFFORT")],
        "Reasoning effort during planning",
    ),
    setting(
        "session.planning_phase.overrides.thinking_budget",
        Integer,
        Some("PLANNING_PHASE_THINKING_BUDGET"),
        &[value("planning-phase-thinking-budget", "TOKENS")],
        "Thinking budget during planning",
    ),
    // Edit precision
    setting(
        "edit_precision.enabled",
        Bool,
        Some("EDIT_PRECISION_ENABLED"),
        &[on("enable-edit-precision"), off("disable-edit-precision")],
        "Lower the temperature after a failed file edit (on by default)",
    ),
    setting(
        "edit_precision.temperature",
        Number,
        Some("EDIT_PRECISION_TEMPERATURE"),
        &[value("edit-precision-temperature", "FLOAT")],
        "Temperature after a failed edit (default 0.1)",
    ),
    setting(
        "edit_precision.min_top_p",
        Number,
        Some("EDIT_PRECISION_MIN_TOP_P"),
        &[value("edit-precision-min-top-p", "FLOAT")],
        "top_p cap after a failed edit, with --edit-precision-override-top-p (default 0.3)",
    ),
    setting(
        "edit_precision.override_top_p",
        Bool,
        Some("EDIT_PRECISION_OVERRIDE_TOP_P"),
        &[on("edit-precision-override-top-p")],
        "Also cap top_p after a failed edit",
    ),
    setting(
        "edit_precision.exclude_agents_regex",
        Text,
        Some("EDIT_PRECISION_EXCLUDE_AGENTS_REGEX"),
        &[value("edit-precision-exclude-agents", "REGEX")],
        "User agents edit-precision tuning never applies to",
    ),
    // Captures
    setting(
        "capture.file",
        Text,
        Some("CAPTURE_FILE"),
        &[value("capture-file", "FILE")],
        "Write the provider traffic to FILE as JSON Lines (the seed's format)",
    ),
    setting(
        "capture.db",
        Text,
        Some("CAPTURE_DB"),
        &[value("capture-db", "FILE")],
        "Record every request (prompt, answer, both wire legs, status, tokens) in the SQLite \
         file FILE, browsable from the admin API",
    ),
    setting(
        "capture.db_retention_days",
        Integer,
        Some("CAPTURE_DB_RETENTION_DAYS"),
        &[],
        "Days the capture store keeps a request (default 30)",
    ),
    setting(
        "capture.db_max_bytes",
        Integer,
        Some("CAPTURE_DB_MAX_BYTES"),
        &[],
        "Size the capture store is kept under, oldest requests first (default 1 GiB)",
    ),
    setting(
        "capture.buffer_size",
        Integer,
        Some("CAPTURE_BUFFER_SIZE"),
        &[value("capture-buffer-size", "BYTES")],
        "Capture bytes buffered before a write (default 65536)",
    ),
    setting(
        "capture.flush_interval",
        Number,
        Some("CAPTURE_FLUSH_INTERVAL"),
        &[value("capture-flush-interval", "SECONDS")],
        "Seconds a capture record may wait in the buffer (default 1.0)",
    ),
    setting(
        "capture.max_entries_per_flush",
        Integer,
        Some("CAPTURE_MAX_ENTRIES_PER_FLUSH"),
        &[value("capture-max-entries-per-flush", "N")],
        "Capture records per write at most (default 100)",
    ),
    setting(
        "capture.max_bytes",
        Integer,
        Some("CAPTURE_MAX_BYTES"),
        &[value("capture-max-bytes", "BYTES")],
        "Capture file size that triggers rotation (default 100 MB)",
    ),
    setting(
        "capture.max_files",
        Integer,
        Some("CAPTURE_MAX_FILES"),
        &[value("capture-max-files", "N")],
        "Rotated capture files kept (default 5)",
    ),
    setting(
        "capture.total_max_bytes",
        Integer,
        Some("CAPTURE_TOTAL_MAX_BYTES"),
        &[value("capture-total-max-bytes", "BYTES")],
        "All capture files together at most (default 500 MB)",
    ),
    // Auth
    setting(
        "auth.api_keys",
        List,
        Some("LLM_INTERACTIVE_PROXY_API_KEY"),
        &[],
        "Proxy keys clients must send; comma-separated in the variable",
    ),
    setting(
        "auth.disable_auth",
        Bool,
        Some("DISABLE_AUTH"),
        &[on("disable-auth")],
        "Turn proxy auth off; forces host 127.0.0.1",
    ),
    setting(
        "auth.trusted_ips",
        List,
        Some("TRUSTED_IPS"),
        &[value("trusted-ip", "IP_OR_CIDR")],
        "An IP or CIDR range that skips auth; repeatable",
    ),
    setting(
        "auth.brute_force_protection.enabled",
        Bool,
        Some("BRUTE_FORCE_PROTECTION_ENABLED"),
        &[
            on("enable-brute-force-protection"),
            off("disable-brute-force-protection"),
        ],
        "Block addresses that keep sending invalid proxy keys",
    ),
    setting(
        "auth.brute_force_protection.max_failed_attempts",
        Integer,
        Some("BRUTE_FORCE_MAX_FAILED_ATTEMPTS"),
        &[value("auth-max-failed-attempts", "N")],
        "Invalid keys allowed per address within the window",
    ),
    setting(
        "auth.brute_force_protection.ttl_seconds",
        Integer,
        Some("BRUTE_FORCE_TTL_SECONDS"),
        &[value("auth-brute-force-ttl", "SECONDS")],
        "Window for counting invalid keys, seconds",
    ),
    setting(
        "auth.brute_force_protection.initial_block_seconds",
        Integer,
        Some("BRUTE_FORCE_INITIAL_BLOCK_SECONDS"),
        &[value("auth-brute-force-initial-block", "SECONDS")],
        "First block, seconds",
    ),
    setting(
        "auth.brute_force_protection.block_multiplier",
        Number,
        Some("BRUTE_FORCE_BLOCK_MULTIPLIER"),
        &[value("auth-brute-force-multiplier", "FACTOR")],
        "Growth of each further block",
    ),
    setting(
        "auth.brute_force_protection.max_block_seconds",
        Integer,
        Some("BRUTE_FORCE_MAX_BLOCK_SECONDS"),
        &[value("auth-brute-force-max-block", "SECONDS")],
        "Longest block, seconds",
    ),
    // Logging
    setting(
        "logging.level",
        Text,
        Some("LOG_LEVEL"),
        &[value("log-level", "LEVEL")],
        "Log level or filter, e.g. debug or llmux=debug,hyper=warn",
    ),
    setting(
        "logging.format",
        Text,
        None,
        &[value("log-format", "FORMAT")],
        "Log format: text or json",
    ),
    // The seed's base-URL variables of the built-in back-ends
    setting(
        "backends.openai.base_url",
        Text,
        Some("OPENAI_API_BASE_URL"),
        &[],
        "The OpenAI back-end's API root",
    ),
    setting(
        "backends.openrouter.base_url",
        Text,
        Some("OPENROUTER_API_BASE_URL"),
        &[],
        "The OpenRouter back-end's API root",
    ),
    setting(
        "backends.zai.base_url",
        Text,
        Some("ZAI_API_BASE_URL"),
        &[],
        "The ZAI back-end's API root",
    ),
];

/// A setting as the settings page gets it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SettingInfo {
    pub kind: Kind,
    pub help: String,
    pub env: Option<String>,
    pub flags: Vec<String>,
}

impl From<&Setting> for SettingInfo {
    fn from(setting: &Setting) -> Self {
        Self {
            kind: setting.kind,
            help: setting.help.to_owned(),
            env: setting.env.map(str::to_owned),
            flags: setting
                .flags
                .iter()
                .map(|f| format!("--{}", f.long()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn keys_variables_and_flags_are_each_defined_once() {
        let mut keys = HashSet::new();
        let mut envs = HashSet::new();
        let mut flags = HashSet::new();
        for s in SETTINGS {
            assert!(keys.insert(s.key), "{} twice", s.key);
            if let Some(env) = s.env {
                assert!(envs.insert(env), "{env} twice");
            }
            for flag in s.flags {
                assert!(flags.insert(flag.long()), "--{} twice", flag.long());
                if let Flag::Switch { .. } = flag {
                    assert_eq!(
                        s.kind,
                        Kind::Bool,
                        "--{} switches a non-boolean",
                        flag.long()
                    );
                }
            }
        }
    }

    /// A value of `kind` (valid or not for the key: only the key's existence is tested).
    fn sample(kind: Kind) -> toml::Value {
        match kind {
            Kind::Text => "x".into(),
            Kind::Integer => 1.into(),
            Kind::Number => 0.5.into(),
            Kind::Bool => true.into(),
            Kind::List => toml::Value::Array(vec!["x".into()]),
            Kind::Aliases => {
                let mut alias = toml::Table::new();
                alias.insert("pattern".into(), "a".into());
                alias.insert("replacement".into(), "b".into());
                toml::Value::Array(vec![toml::Value::Table(alias)])
            }
        }
    }

    #[test]
    fn every_key_is_one_the_config_reads_with_the_kind_it_says() {
        for s in SETTINGS {
            let loaded = super::super::ConfigLoader::new()
                .env(|_| None)
                .set(s.key, sample(s.kind), "--test")
                .load();
            if let Err(err) = loaded {
                let text = err.to_string();
                assert!(
                    !text.contains("unknown field") && !text.contains("invalid type"),
                    "{}: {text}",
                    s.key
                );
            }
        }
    }
}

#[cfg(test)]
mod readme {
    use super::SETTINGS;

    /// The README documents every variable and flag (the table is where they come from, the
    /// README is where people look).
    #[test]
    fn the_readme_names_every_variable_and_flag() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        for setting in SETTINGS {
            if let Some(env) = setting.env {
                assert!(readme.contains(env), "README.md does not mention {env}");
            }
            for flag in setting.flags {
                let flag = format!("--{}", flag.long());
                assert!(readme.contains(&flag), "README.md does not mention {flag}");
            }
        }
    }
}
