//! Configuration: defaults < TOML file < environment < CLI, validated into [`Config`].
//!
//! Reading happens in two steps (STYLE rule 8): the layers merge into one TOML table that
//! serde reads as [`raw::RawConfig`] (unknown keys rejected, errors carry the key path),
//! then [`validate`] turns it into the runtime [`Config`], naming the key, the bad value
//! and where it came from for every problem.

mod import;
pub mod keys;
mod layers;
pub mod limits;
mod print;
pub mod proxy;
pub mod raw;
pub mod routes;
mod seed_file;

pub use import::import;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

pub use layers::{Layered, Source};
pub use print::Entry;
use raw::{RawBackend, RawConfig};

use crate::backend::providers;

/// The back-end kinds llmux knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    OpenAi,
    OpenRouter,
    Zai,
    OpenAiCompatible,
    Anthropic,
    AnthropicCompatible,
    ZaiCodingPlan,
    Gemini,
    Mock,
    /// Subscription logins of the official CLIs.
    OpenAiOAuth,
    AnthropicOAuth,
    QwenOAuth,
    GeminiCliOAuthPersonal,
    GeminiCliCloudProject,
    /// The Gemini CLI as an agent over ACP.
    GeminiCliAcp,
}

impl BackendKind {
    /// Every kind, in the order of their descriptors.
    pub fn all() -> impl Iterator<Item = BackendKind> {
        providers::PROVIDERS.iter().map(|p| p.kind)
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::all().find(|k| k.name() == name)
    }

    /// What llmux knows about this kind (`backend/providers.rs`).
    pub fn provider(self) -> &'static providers::Provider {
        providers::of(self)
    }

    pub fn name(self) -> &'static str {
        self.provider().name
    }

    /// The protocol the kind's provider speaks (`None` for the mock, which speaks none).
    pub fn protocol(self) -> Option<crate::model::Protocol> {
        self.provider().wire
    }

    /// The provider's API root, when the kind has a fixed provider.
    pub fn default_base_url(self) -> Option<&'static str> {
        self.provider().default_base_url
    }

    /// The environment variable that holds the provider key by default.
    pub fn default_key_env(self) -> Option<&'static str> {
        self.provider().key_env
    }

    /// Whether requests fail without a key.
    pub fn requires_key(self) -> bool {
        self.provider().requires_key
    }

    fn names() -> String {
        Self::all().map(Self::name).collect::<Vec<_>>().join(", ")
    }
}

/// Whether `id` is one of the back-ends that exist without configuration.
pub fn is_builtin_backend(id: &str) -> bool {
    providers::builtin().any(|builtin| builtin == id)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub idle: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MockConfig {
    pub response_text: String,
    pub chunks: u32,
    pub chunk_delay: Duration,
}

/// `[backends.ID]` settings of an ACP agent (gemini-cli-acp; `backend/acp.rs` runs it).
#[derive(Debug, Clone, PartialEq)]
pub struct AcpSettings {
    /// The agent's executable and its arguments (`gemini --experimental-acp`).
    pub command: String,
    pub args: Vec<String>,
    /// The workspace when the session names none.
    pub workspace: Option<PathBuf>,
    /// Approve the agent's tool calls (`--yolo`, and "allow" to its permission requests).
    pub auto_accept: bool,
    /// An agent idle this long is ended.
    pub agent_idle: Duration,
}

/// Which OpenAI API an OpenAI-protocol back-end is called with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenAiApi {
    Chat,
    Responses,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    pub id: String,
    pub kind: BackendKind,
    pub api: OpenAiApi,
    /// API root without a trailing slash (`.../v1`); empty for `mock`.
    pub base_url: String,
    pub api_key_env: Option<String>,
    /// More key variables, after `api_key_env` and its numbered variants.
    pub api_keys_env: Vec<String>,
    /// How the keys take turns.
    pub key_rotation: KeyRotation,
    pub models: Option<Vec<String>>,
    pub headers: Vec<(String, String)>,
    pub timeouts: Timeouts,
    pub models_cache: Duration,
    pub app_url: String,
    pub app_title: String,
    /// `[backends.ID.identity]`: title, referer and user agent sent instead of llmux's.
    pub identity: raw::RawIdentity,
    /// The outbound proxy; `None`: the proxy environment variables decide.
    pub proxy_url: Option<String>,
    /// `ca_file`'s certificates, trusted besides the built-in roots.
    pub extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    pub mock: MockConfig,
    /// For subscription-login kinds: the credential files and the OAuth client.
    pub login: Option<crate::credentials::login::LoginSettings>,
    /// For agent kinds (gemini-cli-acp): the agent to run and how.
    pub acp: Option<AcpSettings>,
}

/// `[circuit_breaker]`: a back-end that fails too often in a row is left alone a while
/// (the breakers themselves are in `router::breaker`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerSettings {
    pub enabled: bool,
    /// Outages in a row that open the breaker.
    pub failures: u32,
    pub cool_down: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            failures: 5,
            cool_down: Duration::from_secs(30),
        }
    }
}

/// How a back-end with several keys uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyRotation {
    /// The first key that is not cooling down: the next one only after a rate limit.
    #[default]
    OnFailure,
    /// Each request the next key, skipping keys that are cooling down.
    RoundRobin,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BruteForceConfig {
    pub enabled: bool,
    pub max_failed_attempts: u32,
    pub ttl: Duration,
    pub initial_block: Duration,
    pub multiplier: f64,
    pub max_block: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuthConfig {
    /// Client keys; empty means no auth (allowed on loopback only).
    pub api_keys: Vec<String>,
    pub trusted: Vec<IpNet>,
    pub brute_force: BruteForceConfig,
    /// The admin API needs a key even from trusted networks: the Host check is off or
    /// llmux listens beyond loopback.
    pub admin_requires_key: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    /// The dedicated Anthropic port; `None` when disabled.
    pub anthropic_port: Option<u16>,
    pub max_body_bytes: usize,
    pub shutdown_timeout: Duration,
    /// Host, Origin and per-address checks of every request.
    pub web: proxy::WebSafetySettings,
    /// Connection timeouts and caps of the listeners.
    pub connections: proxy::ConnectionLimits,
    pub default_backend: String,
    pub auth: AuthConfig,
    pub log_level: String,
    pub log_format: LogFormat,
    pub backends: BTreeMap<String, BackendConfig>,
    pub command_prefix: String,
    pub strict_command_detection: bool,
    /// `backend:model` every request goes to, below session overrides.
    pub static_route: Option<String>,
    /// The model that replaces every client's model.
    pub force_model: Option<String>,
    /// Model rewrites (pattern, replacement), checked to compile.
    pub model_aliases: Vec<(String, String)>,
    pub planning: crate::pipeline::planning::PlanningSettings,
    pub edit_precision: crate::pipeline::edit_precision::EditPrecisionSettings,
    pub reasoning_modes: Vec<crate::pipeline::reasoning_modes::ModelModes>,
    /// Check answers against a requested JSON schema.
    pub validate_structured_output: bool,
    /// Ask once more when a checked answer cannot be repaired.
    pub retry_structured_output: bool,
    /// Stored Responses answers: how many, and for how long.
    pub responses_max_stored: usize,
    /// Wire capture; `None` when off.
    pub capture: Option<crate::capture::CaptureSettings>,
    /// The SQLite capture store; `None` when off.
    pub capture_db: Option<PathBuf>,
    /// The capture store is only browsed: nothing is recorded or deleted in it.
    pub capture_db_read_only: bool,
    /// How long capture writers may hold records before writing.
    pub capture_flush_interval: Duration,
    /// Regexes of secret-shaped text masked in both captures (checked at load).
    pub capture_redact_patterns: Vec<String>,
    /// How long capture store rows are kept and how large the store may grow.
    pub capture_db_retention: crate::capture::store::Retention,
    pub responses_retention: Duration,
    /// Sessions idle this long are forgotten.
    pub session_max_age: Duration,
    /// `[state]`: where session state lives.
    pub state: StateSettings,
    /// `/metrics` answers without the proxy key.
    pub metrics_public: bool,
    /// Failover routes by name (`[routes.NAME]`).
    pub routes: BTreeMap<String, routes::FailoverRoute>,
    /// Per-model limits and `force_context_window`.
    pub limits: limits::Limits,
    /// An empty answer is asked for once more with this prompt, when on.
    pub empty_response_recovery: Option<String>,
    pub circuit_breaker: BreakerSettings,
    /// Identical requests of a session within this window share one answer; zero: off.
    pub dedup_window: Duration,
    /// The rules of dangerous command prevention; empty when it is off.
    pub dangerous_commands: Vec<crate::pipeline::dangerous_commands::Rule>,
    pub tool_call_repair: crate::pipeline::tool_call_repair::RepairSettings,
    /// The tool-call reactor's enabled rules, highest priority first; empty when it is off.
    pub tool_call_reactor: Vec<crate::pipeline::tool_call_reactor::Rule>,
    pub loop_detection: crate::pipeline::loop_detection::LoopSettings,
    /// Tool results that are pytest output are compressed.
    pub pytest_compression: bool,
    /// A call running the whole pytest suite is steered once.
    pub pytest_full_suite_steering: bool,
    /// `<think>...</think>` opening an answer becomes reasoning.
    pub think_tags: bool,
    /// `[notifications]`: which kinds the desktop app shows.
    pub notifications: raw::RawNotifications,
    /// Known keys and secret patterns are masked in prompts before they go out.
    pub redact_prompts: bool,
    /// Content rewriting rules; empty when there are none.
    pub content_rewriting: Vec<crate::pipeline::content_rewriting::Rule>,
}

impl Config {
    /// A config with built-in defaults only, as if no file, environment or flag were set.
    pub fn defaults() -> Result<Self, ConfigError> {
        Ok(ConfigLoader::new().env(|_| None).load()?.config)
    }
}

/// Every problem found while loading, each naming the key, value and source.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "- {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The effective config with what produced it, for `config print`.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub raw: RawConfig,
    pub layered: Layered,
    /// Notes worth a log line (an adjusted value, a file that was read).
    pub notes: Vec<String>,
    /// Warnings worth a warning line: the seed's key names, deprecated in llmux.
    pub warnings: Vec<String>,
    /// The seed's keys the file used, moved to llmux's names: (seed name, llmux name).
    pub renamed: Vec<(&'static str, &'static str)>,
}

impl Loaded {
    /// The effective config as TOML lines, each with its source; secrets masked.
    pub fn print(&self) -> String {
        print::render(self)
    }

    /// Every effective value with its source, secrets masked (what `print` shows).
    pub fn entries(&self) -> Result<Vec<Entry>, String> {
        print::entries(self)
    }
}

type EnvLookup = std::sync::Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Builds a config from its layers. Cloneable, so a running llmux can check a changed
/// config file against the same environment and flags it started with.
#[derive(Clone)]
pub struct ConfigLoader {
    /// The file, whether it must exist, and its text when given instead of read.
    file: Option<(PathBuf, bool, Option<String>)>,
    env: EnvLookup,
    overrides: Vec<(String, toml::Value, String)>,
}

impl Default for ConfigLoader {
    fn default() -> Self {
        Self::new()
    }
}

impl ConfigLoader {
    pub fn new() -> Self {
        Self {
            file: None,
            env: std::sync::Arc::new(|name| std::env::var(name).ok()),
            overrides: Vec::new(),
        }
    }

    /// A config file; `required` makes a missing file an error (an explicit `--config`).
    pub fn file(mut self, path: impl Into<PathBuf>, required: bool) -> Self {
        self.file = Some((path.into(), required, None));
        self
    }

    /// The config file's path, when there is one.
    pub fn file_path(&self) -> Option<&Path> {
        self.file.as_ref().map(|(path, _, _)| path.as_path())
    }

    /// Uses `text` as the config file's contents instead of reading it (a change being
    /// checked before it is saved); sources still name `path`.
    pub fn file_contents(mut self, path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        self.file = Some((path.into(), true, Some(text.into())));
        self
    }

    /// Where environment variables are read from (the process environment by default).
    pub fn env(mut self, lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        self.env = std::sync::Arc::new(lookup);
        self
    }

    /// A command-line value for `key`, set by `flag`.
    pub fn set(mut self, key: &str, value: impl Into<toml::Value>, flag: &str) -> Self {
        self.overrides
            .push((key.to_owned(), value.into(), flag.to_owned()));
        self
    }

    pub fn load(self) -> Result<Loaded, ConfigError> {
        let mut problems = Vec::new();
        let mut notes = Vec::new();
        let mut warnings = Vec::new();
        let mut renamed = Vec::new();
        let mut layered = Layered::default();

        if let Some((path, required, contents)) = &self.file {
            let table = match contents {
                Some(text) => parse_file(path, text).map(Some),
                None => read_file(path, *required),
            };
            match table {
                Ok(Some(mut table)) => {
                    renamed = seed_file::rename_seed_keys(&mut table, &mut warnings);
                    // The seed's back-end files first: the config file's own keys win.
                    merge_backend_files(
                        path,
                        &mut layered,
                        &mut problems,
                        &mut warnings,
                        &mut notes,
                    );
                    layered.merge_table(table, &Source::File(path.clone()));
                    notes.push(format!("read config file {}", path.display()));
                }
                Ok(None) => {}
                Err(problem) => problems.push(problem),
            }
        }
        for setting in keys::SETTINGS {
            let Some(name) = setting.env else { continue };
            let Some(text) = (self.env)(name) else {
                continue;
            };
            match layers::parse_env(name, &text, setting.kind) {
                Ok(value) => layered.set(setting.key, value, Source::Env(name.to_owned())),
                // MODEL_ALIASES is JSON; as in the seed, a malformed one is a warning.
                Err(why) if setting.kind == keys::Kind::Aliases => {
                    notes.push(format!("ignoring {why}"));
                }
                Err(problem) => problems.push(format!("{problem} (sets {})", setting.key)),
            }
        }
        for (key, value, flag) in self.overrides {
            layered.set(&key, value, Source::Cli(flag));
        }
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }

        let mut raw: RawConfig = {
            let value = toml::Value::Table(layered.table.clone());
            serde_path_to_error::deserialize(value).map_err(|err| {
                let path = err.path().to_string();
                let source = layered.source_of(&path);
                ConfigError {
                    problems: vec![describe_serde_error(&path, err.inner(), &source)],
                }
            })?
        };
        for id in providers::builtin() {
            raw.backends.entry(id.to_owned()).or_default();
        }
        let config = validate(&raw, &layered, &*self.env, &mut problems, &mut notes);
        match config {
            Some(config) if problems.is_empty() => Ok(Loaded {
                config,
                raw,
                layered,
                notes,
                warnings,
                renamed,
            }),
            _ => Err(ConfigError { problems }),
        }
    }
}

/// Merges the seed's `backends/NAME/backend.yaml` files beside the config file at `path`.
fn merge_backend_files(
    path: &Path,
    layered: &mut Layered,
    problems: &mut Vec<String>,
    warnings: &mut Vec<String>,
    notes: &mut Vec<String>,
) {
    for (name, file) in seed_file::backend_files(path) {
        let table = std::fs::read_to_string(&file)
            .map_err(|e| format!("cannot read it: {e}"))
            .and_then(|text| seed_file::backend_file_table(&name, &text, warnings, &file));
        match table {
            Ok(table) => {
                layered.merge_table(table, &Source::File(file.clone()));
                notes.push(format!("read back-end file {}", file.display()));
            }
            Err(why) => problems.push(format!("back-end file {}: {why}", file.display())),
        }
    }
}

fn read_file(path: &Path, required: bool) -> Result<Option<toml::Table>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && !required => return Ok(None),
        Err(err) => return Err(format!("cannot read config file {}: {err}", path.display())),
    };
    parse_file(path, &text).map(Some)
}

/// A config file's table: YAML for `.yaml` / `.yml` files (the seed's format), else TOML.
fn parse_file(path: &Path, text: &str) -> Result<toml::Table, String> {
    if seed_file::is_yaml(path) {
        return seed_file::parse_yaml(text)
            .map_err(|err| format!("config file {} is not valid YAML: {err}", path.display()));
    }
    text.parse::<toml::Table>()
        .map_err(|err| format!("config file {} is not valid TOML: {err}", path.display()))
}

fn describe_serde_error(path: &str, err: &toml::de::Error, source: &Source) -> String {
    let message = err.message().trim_end_matches('.').to_owned();
    // An unknown key in a file: the line it is on.
    let line = match (source, unknown_field(&message)) {
        (Source::File(file), Some(key)) => line_of_key(file, key)
            .map(|n| format!(", line {n}"))
            .unwrap_or_default(),
        _ => String::new(),
    };
    if path == "." || path.is_empty() {
        format!("{message} (from {source}{line})")
    } else {
        format!("{path}: {message} (from {source}{line})")
    }
}

/// The key serde names in "unknown field `KEY`, expected ...".
fn unknown_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
}

/// The first line of `file` that sets `key` (TOML `key =`, YAML `key:`, quoted or not).
fn line_of_key(file: &Path, key: &str) -> Option<usize> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .position(|line| {
            let line = line.trim_start().trim_start_matches("- ");
            let rest = line
                .strip_prefix(key)
                .or_else(|| line.strip_prefix(&format!("\"{key}\"")))
                .or_else(|| line.strip_prefix(&format!("'{key}'")));
            rest.is_some_and(|rest| rest.trim_start().starts_with([':', '=']))
        })
        .map(|index| index + 1)
}

/// A problem with the value at `key`, in the one format every check uses.
fn bad(layered: &Layered, key: &str, value: impl fmt::Display, why: impl fmt::Display) -> String {
    format!("{key} = {value} (from {}): {why}", layered.source_of(key))
}

/// A stage's rules file at `key`: the file at `path`, else the `shipped` text, parsed; a
/// problem naming the key (and an empty list) when it cannot be read or parsed.
fn rules_file<T>(
    key: &str,
    path: Option<&str>,
    shipped: &str,
    parse: fn(&str) -> Result<Vec<T>, String>,
    layered: &Layered,
    problems: &mut Vec<String>,
) -> Vec<T> {
    let text = match path {
        None => Ok(shipped.to_owned()),
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}")),
    };
    match text.and_then(|t| parse(&t)) {
        Ok(rules) => rules,
        Err(why) => {
            let shown = path.unwrap_or("(shipped file)");
            problems.push(bad(layered, key, format!("'{shown}'"), why));
            Vec::new()
        }
    }
}

/// `proxy.allowed_hosts`, `allowed_origins` and the per-address request limit.
fn validate_web_safety(
    proxy: &raw::RawProxy,
    layered: &Layered,
    problems: &mut Vec<String>,
) -> proxy::WebSafetySettings {
    use proxy::{HostRule, WebSafetySettings, parse_allowed_origin};
    let mut web = WebSafetySettings {
        max_requests_per_ip: usize::try_from(proxy.max_concurrent_requests_per_ip)
            .ok()
            .filter(|n| *n > 0),
        ..WebSafetySettings::default()
    };
    for entry in &proxy.allowed_hosts {
        if entry.trim() == "*" {
            web.any_host = true;
            continue;
        }
        match HostRule::parse(entry) {
            Ok(rule) => web.allowed_hosts.push(rule),
            Err(why) => problems.push(bad(
                layered,
                "proxy.allowed_hosts",
                format!("{entry:?}"),
                why,
            )),
        }
    }
    for entry in &proxy.allowed_origins {
        match parse_allowed_origin(entry) {
            Ok(origin) => web.allowed_origins.push(origin),
            Err(why) => problems.push(bad(
                layered,
                "proxy.allowed_origins",
                format!("{entry:?}"),
                why,
            )),
        }
    }
    web
}

/// The listeners' timeouts and connection cap.
/// Where session state lives (`[state]`).
#[derive(Debug, Clone, PartialEq)]
pub enum StateBackend {
    Memory,
    Redis { url: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct StateSettings {
    pub backend: StateBackend,
    /// The longest wait for the shared store before serving from local memory.
    pub timeout: Duration,
    pub key_prefix: String,
}

/// `url` with its password (`redis://:secret@host`) shown as `****`, for anything a person
/// reads: `config print`, the settings page, error messages.
pub fn url_without_password(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("****"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        // Unparseable: it may still hold a secret; show its scheme only.
        Err(_) => format!("{}://…", url.split("://").next().unwrap_or("?")),
    }
}

fn validate_state(
    raw: &raw::RawState,
    layered: &Layered,
    problems: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> StateSettings {
    let url = raw.url.as_deref().map(str::trim).filter(|u| !u.is_empty());
    let backend = match (raw.backend.trim(), url) {
        ("memory", None) => StateBackend::Memory,
        ("memory", Some(_)) => {
            notes.push(
                "state.url is set but state.backend is memory: sessions stay in this process \
                 (set state.backend = \"redis\" to share them)"
                    .into(),
            );
            StateBackend::Memory
        }
        ("redis", Some(url)) => match redis::parse_redis_url(url) {
            Some(parsed)
                if matches!(parsed.scheme(), "redis" | "rediss" | "redis+unix" | "unix") =>
            {
                StateBackend::Redis {
                    url: url.to_owned(),
                }
            }
            _ => {
                problems.push(bad(
                    layered,
                    "state.url",
                    format!("'{}'", url_without_password(url)),
                    "not a Redis URL (redis://host:port/db, rediss:// for TLS)",
                ));
                StateBackend::Memory
            }
        },
        ("redis", None) => {
            problems.push(bad(
                layered,
                "state.backend",
                "'redis'",
                "needs state.url (REDIS_URL, --state-url): redis://host:port/db",
            ));
            StateBackend::Memory
        }
        (other, _) => {
            problems.push(bad(
                layered,
                "state.backend",
                format!("'{other}'"),
                "must be memory or redis",
            ));
            StateBackend::Memory
        }
    };
    if raw.timeout_ms == 0 {
        problems.push(bad(layered, "state.timeout_ms", 0, "must be at least 1"));
    }
    StateSettings {
        backend,
        timeout: Duration::from_millis(raw.timeout_ms.max(1)),
        key_prefix: raw.key_prefix.clone(),
    }
}

fn validate_connections(
    proxy: &raw::RawProxy,
    layered: &Layered,
    problems: &mut Vec<String>,
) -> proxy::ConnectionLimits {
    let mut seconds = |key: &str, value: f64| {
        if value.is_finite() && value > 0.0 && value <= 86_400.0 {
            Duration::from_secs_f64(value)
        } else {
            problems.push(bad(
                layered,
                &format!("proxy.{key}"),
                value,
                "must be more than 0 and at most 86400 seconds",
            ));
            Duration::from_secs(10)
        }
    };
    proxy::ConnectionLimits {
        header_read_timeout: seconds(
            "header_read_timeout_seconds",
            proxy.header_read_timeout_seconds,
        ),
        keep_alive_timeout: seconds(
            "keep_alive_timeout_seconds",
            proxy.keep_alive_timeout_seconds,
        ),
        max_connections: usize::try_from(proxy.max_connections)
            .ok()
            .filter(|n| *n > 0),
    }
}

fn validate(
    raw: &RawConfig,
    layered: &Layered,
    env: &(dyn Fn(&str) -> Option<String> + Send + Sync),
    problems: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> Option<Config> {
    let mut host = match raw.proxy.host.as_str() {
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        text => match text.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => {
                problems.push(bad(
                    layered,
                    "proxy.host",
                    format!("'{text}'"),
                    "not an IP address (use 127.0.0.1, 0.0.0.0, ::1 or localhost)",
                ));
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            }
        },
    };

    let api_keys: Vec<String> = if raw.auth.disable_auth {
        Vec::new()
    } else {
        raw.auth
            .api_keys
            .iter()
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty())
            .collect()
    };
    if raw.auth.disable_auth && !host.is_loopback() {
        notes.push(format!(
            "auth is disabled, so llmux listens on 127.0.0.1 instead of {host}"
        ));
        host = IpAddr::V4(Ipv4Addr::LOCALHOST);
    }
    if api_keys.is_empty() && !raw.auth.disable_auth && !host.is_loopback() {
        problems.push(bad(
            layered,
            "proxy.host",
            format!("'{host}'"),
            "refusing to listen on a non-loopback address without an API key; set \
             LLM_INTERACTIVE_PROXY_API_KEY (or auth.api_keys) or listen on 127.0.0.1",
        ));
    }

    let web = validate_web_safety(&raw.proxy, layered, problems);
    if web.any_host && api_keys.is_empty() {
        problems.push(bad(
            layered,
            "proxy.allowed_hosts",
            "[\"*\"]",
            "turns the Host check off, so any web page can reach llmux by rebinding its \
             name to this address; the admin API (captured prompts, settings) then needs a \
             proxy key: set LLM_INTERACTIVE_PROXY_API_KEY (or auth.api_keys), or list the \
             host names instead of \"*\"",
        ));
    }
    let connections = validate_connections(&raw.proxy, layered, problems);
    let state = validate_state(&raw.state, layered, problems, notes);
    let admin_requires_key = web.any_host || !host.is_loopback();

    let capture_redact_patterns = raw.capture.redact_patterns.clone();
    for pattern in &capture_redact_patterns {
        if let Err(err) = regex::Regex::new(pattern) {
            problems.push(bad(
                layered,
                "capture.redact_patterns",
                format!("{pattern:?}"),
                format!("not a regular expression: {err}"),
            ));
        }
    }

    let mut trusted = Vec::new();
    for (i, text) in raw.auth.trusted_ips.iter().enumerate() {
        let parsed = text
            .parse::<IpNet>()
            .or_else(|_| text.parse::<IpAddr>().map(IpNet::from));
        match parsed {
            Ok(net) => trusted.push(net),
            Err(_) => problems.push(bad(
                layered,
                &format!("auth.trusted_ips[{i}]"),
                format!("'{text}'"),
                "not an IP address or CIDR range",
            )),
        }
    }

    let bf = &raw.auth.brute_force_protection;
    if bf.block_multiplier < 1.0 || !bf.block_multiplier.is_finite() {
        problems.push(bad(
            layered,
            "auth.brute_force_protection.block_multiplier",
            bf.block_multiplier,
            "must be a number of at least 1.0",
        ));
    }
    for (key, value) in [
        ("max_failed_attempts", u64::from(bf.max_failed_attempts)),
        ("ttl_seconds", bf.ttl_seconds),
        ("initial_block_seconds", bf.initial_block_seconds),
        ("max_block_seconds", bf.max_block_seconds),
    ] {
        if value == 0 {
            problems.push(bad(
                layered,
                &format!("auth.brute_force_protection.{key}"),
                value,
                "must be at least 1",
            ));
        }
    }

    let log_format = match raw.logging.format.as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            problems.push(bad(
                layered,
                "logging.format",
                format!("'{other}'"),
                "expected 'text' or 'json'",
            ));
            LogFormat::Text
        }
    };
    if let Err(err) = tracing_subscriber::EnvFilter::try_new(&raw.logging.level) {
        problems.push(bad(
            layered,
            "logging.level",
            format!("'{}'", raw.logging.level),
            format!("not a log level or filter ({err}); use error, warn, info, debug or trace"),
        ));
    }
    if raw.command_prefix.trim().is_empty() || raw.command_prefix.chars().any(char::is_whitespace) {
        problems.push(bad(
            layered,
            "command_prefix",
            format!("'{}'", raw.command_prefix),
            "must be non-empty and hold no spaces",
        ));
    }
    if !(0.0..=3600.0).contains(&raw.dedup_window_seconds) {
        problems.push(bad(
            layered,
            "dedup_window_seconds",
            raw.dedup_window_seconds,
            "must be 0 (off) to 3600 seconds",
        ));
    }
    let breaker = &raw.circuit_breaker;
    if breaker.failures == 0 {
        problems.push(bad(
            layered,
            "circuit_breaker.failures",
            0,
            "must be at least 1",
        ));
    }
    if !(breaker.cool_down_seconds > 0.0 && breaker.cool_down_seconds <= 86_400.0) {
        problems.push(bad(
            layered,
            "circuit_breaker.cool_down_seconds",
            breaker.cool_down_seconds,
            "must be more than 0 and at most 86400 seconds",
        ));
    }
    let breaker = BreakerSettings {
        enabled: breaker.enabled,
        failures: breaker.failures.max(1),
        cool_down: Duration::from_secs_f64(breaker.cool_down_seconds.clamp(0.001, 86_400.0)),
    };
    let backend_ids: Vec<&str> = raw.backends.keys().map(String::as_str).collect();
    let failover_routes = routes::validate(&raw.routes, &backend_ids, layered, problems);
    let model_limits = limits::validate(
        &raw.models,
        &raw.model_defaults,
        raw.force_context_window,
        layered,
        problems,
    );
    let mut model_aliases = Vec::new();
    for (i, alias) in raw.model_aliases.iter().enumerate() {
        match crate::pipeline::model_aliases::AliasRule::new(&alias.pattern, &alias.replacement) {
            Ok(_) => model_aliases.push((alias.pattern.clone(), alias.replacement.clone())),
            Err(why) => problems.push(format!(
                "model_aliases[{i}] (from {}): {why}",
                layered.source_of(&format!("model_aliases[{i}]"))
            )),
        }
    }
    if let Some(route) = &raw.static_route {
        let known = match route.split_once(':') {
            Some(("route", name)) => raw.routes.contains_key(name),
            Some((b, m)) => !m.is_empty() && raw.backends.contains_key(b),
            None => false,
        };
        if !known {
            problems.push(bad(
                layered,
                "static_route",
                format!("'{route}'"),
                format!(
                    "expected backend:model with a configured back-end ({}), or \
                     route:NAME with a configured failover route",
                    raw.backends.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    if raw
        .force_model
        .as_deref()
        .is_some_and(|m| m.trim().is_empty())
    {
        problems.push(bad(layered, "force_model", "''", "must name a model"));
    }
    let planning_raw = &raw.session.planning_phase;
    let reasoning_effort = match planning_raw.overrides.reasoning_effort.as_deref() {
        None => None,
        Some(text) => match crate::model::ReasoningEffort::parse(text) {
            Some(effort) => Some(effort),
            None => {
                problems.push(bad(
                    layered,
                    "session.planning_phase.overrides.reasoning_effort",
                    format!("'{text}'"),
                    "expected none, minimal, low, medium, high or xhigh",
                ));
                None
            }
        },
    };
    if planning_raw.enabled
        && planning_raw
            .strong_model
            .as_deref()
            .is_none_or(str::is_empty)
    {
        problems.push(bad(
            layered,
            "session.planning_phase.enabled",
            true,
            "the planning phase needs session.planning_phase.strong_model (backend:model)",
        ));
    }
    let planning = crate::pipeline::planning::PlanningSettings {
        enabled: planning_raw.enabled,
        strong_model: planning_raw.strong_model.clone(),
        max_turns: planning_raw.max_turns,
        max_file_writes: planning_raw.max_file_writes,
        temperature: planning_raw.overrides.temperature,
        top_p: planning_raw.overrides.top_p,
        reasoning_effort,
        thinking_budget: planning_raw.overrides.thinking_budget,
    };
    let content_rewriting = match raw.content_rewriting.rules_file.as_deref() {
        None => Vec::new(),
        path => rules_file(
            "content_rewriting.rules_file",
            path,
            "",
            crate::pipeline::content_rewriting::parse_rules,
            layered,
            problems,
        ),
    };
    let ld = &raw.loop_detection;
    let mut positive = |field: &str, value: i64| -> usize {
        if value <= 0 {
            problems.push(bad(
                layered,
                &format!("loop_detection.{field}"),
                value,
                "must be a positive number",
            ));
            return 1;
        }
        usize::try_from(value).unwrap_or(usize::MAX)
    };
    let loop_detection = crate::pipeline::loop_detection::LoopSettings {
        enabled: ld.enabled,
        buffer_size: positive("buffer_size", ld.buffer_size),
        max_pattern_length: positive("max_pattern_length", ld.max_pattern_length),
        analysis_interval: positive("analysis_interval", ld.analysis_interval),
        chunk_size: positive("chunk_size", ld.chunk_size),
        threshold: positive("threshold", ld.threshold),
        long_pattern_length: positive("long_pattern_length", ld.long_pattern_length),
        long_pattern_repetitions: positive("long_pattern_repetitions", ld.long_pattern_repetitions),
        tool_call_repetitions: positive("tool_call_repetitions", ld.tool_call_repetitions),
    };
    let dc = &raw.dangerous_command_prevention;
    let dangerous_commands = if dc.enabled {
        rules_file(
            "dangerous_command_prevention.rules_file",
            dc.rules_file.as_deref(),
            crate::pipeline::dangerous_commands::DEFAULT_RULES,
            crate::pipeline::dangerous_commands::parse_rules,
            layered,
            problems,
        )
    } else {
        Vec::new()
    };
    let reactor = &raw.tool_call_reactor;
    let tool_call_reactor = if reactor.enabled {
        rules_file(
            "tool_call_reactor.rules_file",
            reactor.rules_file.as_deref(),
            crate::pipeline::tool_call_reactor::DEFAULT_RULES,
            crate::pipeline::tool_call_reactor::parse_rules,
            layered,
            problems,
        )
    } else {
        Vec::new()
    };
    let repair = &raw.tool_call_repair;
    if repair.buffer_bytes <= 0 {
        problems.push(bad(
            layered,
            "tool_call_repair.buffer_bytes",
            repair.buffer_bytes,
            "must be a positive number",
        ));
    }
    let tool_call_repair = crate::pipeline::tool_call_repair::RepairSettings {
        enabled: repair.enabled,
        buffer_bytes: usize::try_from(repair.buffer_bytes.max(1)).unwrap_or(usize::MAX),
    };
    let ep = &raw.edit_precision;
    let patterns = rules_file(
        "edit_precision.patterns_file",
        ep.patterns_file.as_deref(),
        crate::pipeline::edit_precision::DEFAULT_PATTERNS,
        crate::pipeline::edit_precision::parse_patterns,
        layered,
        problems,
    );
    if let Some(pattern) = &ep.exclude_agents_regex
        && let Err(e) = regex::Regex::new(pattern)
    {
        problems.push(bad(
            layered,
            "edit_precision.exclude_agents_regex",
            format!("'{pattern}'"),
            format!("invalid regex: {e}"),
        ));
    }
    for (key, value) in [("temperature", ep.temperature), ("min_top_p", ep.min_top_p)] {
        if !(0.0..=2.0).contains(&value) {
            problems.push(bad(
                layered,
                &format!("edit_precision.{key}"),
                value,
                "must be between 0 and 2",
            ));
        }
    }
    let edit_precision = crate::pipeline::edit_precision::EditPrecisionSettings {
        enabled: ep.enabled,
        temperature: ep.temperature,
        min_top_p: ep.min_top_p,
        override_top_p: ep.override_top_p,
        exclude_agents_regex: ep.exclude_agents_regex.clone(),
        patterns,
    };
    let modes_text = match &raw.reasoning_aliases_file {
        None => Ok(crate::pipeline::reasoning_modes::DEFAULT_FILE.to_owned()),
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}")),
    };
    let reasoning_modes = match modes_text.and_then(|t| crate::pipeline::reasoning_modes::parse(&t))
    {
        Ok(modes) => modes,
        Err(why) => {
            problems.push(bad(
                layered,
                "reasoning_aliases_file",
                format!(
                    "'{}'",
                    raw.reasoning_aliases_file
                        .as_deref()
                        .unwrap_or("(shipped file)")
                ),
                why,
            ));
            Vec::new()
        }
    };
    let cap = &raw.capture;
    if !(cap.flush_interval > 0.0 && cap.flush_interval.is_finite()) {
        problems.push(bad(
            layered,
            "capture.flush_interval",
            cap.flush_interval,
            "must be a positive number of seconds",
        ));
    }
    for (key, value) in [
        ("max_bytes", cap.max_bytes),
        ("max_entries_per_flush", cap.max_entries_per_flush),
    ] {
        if value == 0 {
            problems.push(bad(
                layered,
                &format!("capture.{key}"),
                value,
                "must be at least 1",
            ));
        }
    }
    let capture =
        cap.file
            .as_ref()
            .filter(|f| !f.is_empty())
            .map(|file| crate::capture::CaptureSettings {
                file: PathBuf::from(file),
                buffer_size: usize::try_from(cap.buffer_size).unwrap_or(usize::MAX),
                flush_interval: Duration::from_secs_f64(cap.flush_interval.max(0.001)),
                max_entries_per_flush: usize::try_from(cap.max_entries_per_flush.max(1))
                    .unwrap_or(usize::MAX),
                max_bytes: cap.max_bytes.max(1),
                max_files: usize::try_from(cap.max_files).unwrap_or(usize::MAX),
                total_max_bytes: cap.total_max_bytes,
            });
    if raw.session.max_age == 0 {
        problems.push(bad(
            layered,
            "session.max_age",
            0,
            "must be at least 1 second",
        ));
    }
    if raw.proxy.max_body_bytes == 0 {
        problems.push(bad(
            layered,
            "proxy.max_body_bytes",
            0,
            "must be at least 1",
        ));
    }

    let mut backends = BTreeMap::new();
    for (id, backend) in &raw.backends {
        if let Some(config) = validate_backend(id, backend, layered, env, problems) {
            backends.insert(id.clone(), config);
        }
    }
    if !raw.backends.contains_key(&raw.default_backend) {
        problems.push(bad(
            layered,
            "default_backend",
            format!("'{}'", raw.default_backend),
            format!(
                "not a configured back-end; known: {}",
                raw.backends.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        ));
    }

    // Main port + 1 by default, as in the seed; 0 disables it (and so does an ephemeral
    // main port, which has no "next" port).
    let anthropic_port = match raw.proxy.anthropic_port {
        Some(0) => None,
        Some(port) => Some(port),
        None => match raw.proxy.port {
            0 | u16::MAX => None,
            port => Some(port + 1),
        },
    };
    if anthropic_port.is_some() && anthropic_port == Some(raw.proxy.port) {
        problems.push(bad(
            layered,
            "proxy.anthropic_port",
            raw.proxy.port,
            "must differ from proxy.port (0 disables the dedicated Anthropic port)",
        ));
    }

    Some(Config {
        host,
        port: raw.proxy.port,
        anthropic_port,
        max_body_bytes: usize::try_from(raw.proxy.max_body_bytes).unwrap_or(usize::MAX),
        shutdown_timeout: Duration::from_secs(raw.proxy.shutdown_timeout_seconds),
        web,
        connections,
        default_backend: raw.default_backend.clone(),
        auth: AuthConfig {
            api_keys,
            trusted,
            brute_force: BruteForceConfig {
                enabled: bf.enabled,
                max_failed_attempts: bf.max_failed_attempts.max(1),
                ttl: Duration::from_secs(bf.ttl_seconds.max(1)),
                initial_block: Duration::from_secs(bf.initial_block_seconds.max(1)),
                multiplier: bf.block_multiplier.max(1.0),
                max_block: Duration::from_secs(bf.max_block_seconds.max(1)),
            },
            admin_requires_key,
        },
        log_level: raw.logging.level.clone(),
        log_format,
        backends,
        command_prefix: raw.command_prefix.clone(),
        static_route: raw.static_route.clone(),
        force_model: raw.force_model.clone(),
        model_aliases,
        planning,
        edit_precision,
        reasoning_modes,
        validate_structured_output: raw.structured_output.validate,
        retry_structured_output: raw.structured_output.retry,
        capture,
        capture_db: raw
            .capture
            .db
            .as_ref()
            .filter(|d| !d.is_empty())
            .map(PathBuf::from),
        capture_db_read_only: raw.capture.db_read_only,
        capture_flush_interval: Duration::from_secs_f64(raw.capture.flush_interval.max(0.001)),
        capture_redact_patterns,
        capture_db_retention: crate::capture::store::Retention {
            max_age: (raw.capture.db_retention_days > 0)
                .then(|| Duration::from_secs(raw.capture.db_retention_days.saturating_mul(86_400))),
            max_bytes: (raw.capture.db_max_bytes > 0).then_some(raw.capture.db_max_bytes),
        },
        responses_max_stored: usize::try_from(raw.responses.max_stored).unwrap_or(usize::MAX),
        responses_retention: Duration::from_secs(raw.responses.retention_seconds),
        strict_command_detection: raw.strict_command_detection,
        session_max_age: Duration::from_secs(raw.session.max_age),
        state,
        metrics_public: raw.metrics.public,
        routes: failover_routes,
        limits: model_limits,
        circuit_breaker: breaker,
        dangerous_commands,
        tool_call_reactor,
        tool_call_repair,
        loop_detection,
        pytest_compression: raw.session.pytest_compression_enabled,
        pytest_full_suite_steering: raw.session.pytest_full_suite_steering_enabled,
        think_tags: raw.think_tags.enabled,
        notifications: raw.notifications,
        redact_prompts: raw.redaction.prompts,
        content_rewriting,
        dedup_window: Duration::from_secs_f64(raw.dedup_window_seconds.clamp(0.0, 3600.0)),
        empty_response_recovery: raw
            .empty_response_recovery
            .enabled
            .then(|| raw.empty_response_recovery.prompt.clone()),
    })
}

fn validate_backend(
    id: &str,
    raw: &RawBackend,
    layered: &Layered,
    env: &(dyn Fn(&str) -> Option<String> + Send + Sync),
    problems: &mut Vec<String>,
) -> Option<BackendConfig> {
    let key = |field: &str| format!("backends.{id}.{field}");
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
    {
        problems.push(format!(
            "backends.{id} (from {}): a back-end id may only hold letters, digits, '-' and '_'",
            layered.source_of(&format!("backends.{id}"))
        ));
        return None;
    }
    let kind_name = raw.kind.clone().unwrap_or_else(|| id.to_owned());
    let Some(kind) = BackendKind::parse(&kind_name) else {
        let why = format!(
            "unknown back-end type; expected one of {}",
            BackendKind::names()
        );
        problems.push(match &raw.kind {
            Some(kind) => bad(layered, &key("type"), format!("'{kind}'"), why),
            None => format!(
                "backends.{id}.type is missing (from {}): {why}",
                layered.source_of(&format!("backends.{id}"))
            ),
        });
        return None;
    };

    let base_url = match (&raw.base_url, kind.default_base_url()) {
        (Some(url), _) => url.trim_end_matches('/').to_owned(),
        (None, Some(default)) => default.to_owned(),
        (None, None) if matches!(kind, BackendKind::Mock | BackendKind::GeminiCliAcp) => {
            String::new()
        }
        (None, None) => {
            problems.push(format!(
                "backends.{id}.base_url is missing: a back-end of type '{}' needs the server's \
                 API root, e.g. http://127.0.0.1:11434/v1",
                kind.name()
            ));
            String::new()
        }
    };
    if kind != BackendKind::Mock
        && !base_url.is_empty()
        && !(base_url.starts_with("http://") || base_url.starts_with("https://"))
    {
        problems.push(bad(
            layered,
            &key("base_url"),
            format!("'{base_url}'"),
            "must start with http:// or https://",
        ));
    }

    let mut timeout = |field: &str, value: Option<f64>, default: f64| -> Duration {
        let seconds = value.unwrap_or(default);
        if !(seconds > 0.0 && seconds.is_finite()) {
            problems.push(bad(
                layered,
                &key(field),
                seconds,
                "must be a positive number of seconds",
            ));
            return Duration::from_secs_f64(default);
        }
        Duration::from_secs_f64(seconds)
    };
    let timeouts = Timeouts {
        connect: timeout("connect_timeout_seconds", raw.connect_timeout_seconds, 10.0),
        first_byte: timeout(
            "first_byte_timeout_seconds",
            raw.first_byte_timeout_seconds,
            300.0,
        ),
        idle: timeout("idle_timeout_seconds", raw.idle_timeout_seconds, 120.0),
    };

    let only_for = |field: &str, set: bool, allowed: BackendKind, problems: &mut Vec<String>| {
        if set && kind != allowed {
            problems.push(format!(
                "{} (from {}): only applies to back-ends of type '{}', not '{}'",
                key(field),
                layered.source_of(&key(field)),
                allowed.name(),
                kind.name()
            ));
        }
    };
    only_for(
        "response_text",
        raw.response_text.is_some(),
        BackendKind::Mock,
        problems,
    );
    only_for("chunks", raw.chunks.is_some(), BackendKind::Mock, problems);
    only_for(
        "chunk_delay_ms",
        raw.chunk_delay_ms.is_some(),
        BackendKind::Mock,
        problems,
    );
    only_for(
        "app_url",
        raw.app_url.is_some(),
        BackendKind::OpenRouter,
        problems,
    );
    only_for(
        "app_title",
        raw.app_title.is_some(),
        BackendKind::OpenRouter,
        problems,
    );
    let api = match raw.api.as_deref() {
        None | Some("chat") => OpenAiApi::Chat,
        Some("responses") if kind.provider().responses_api => OpenAiApi::Responses,
        Some("responses") => {
            problems.push(bad(
                layered,
                &key("api"),
                "'responses'",
                format!(
                    "only back-ends of type openai or openai-compatible speak the Responses API, not '{}'",
                    kind.name()
                ),
            ));
            OpenAiApi::Chat
        }
        Some(other) => {
            problems.push(bad(
                layered,
                &key("api"),
                format!("'{other}'"),
                "expected 'chat' or 'responses'",
            ));
            OpenAiApi::Chat
        }
    };
    if raw.chunks == Some(0) {
        problems.push(bad(layered, &key("chunks"), 0, "must be at least 1"));
    }

    let api_key_env = raw
        .api_key_env
        .clone()
        .or_else(|| kind.default_key_env().map(str::to_owned));
    if let Some(name) = &api_key_env
        && (name.is_empty() || name.contains('='))
    {
        problems.push(bad(
            layered,
            &key("api_key_env"),
            format!("'{name}'"),
            "must be the name of an environment variable",
        ));
    }

    let api_keys_env = raw.api_keys_env.clone().unwrap_or_default();
    for name in &api_keys_env {
        if name.is_empty() || name.contains('=') {
            problems.push(bad(
                layered,
                &key("api_keys_env"),
                format!("'{name}'"),
                "must hold names of environment variables",
            ));
        }
    }
    let key_rotation = match raw.key_rotation.as_deref() {
        None | Some("on-failure") => KeyRotation::OnFailure,
        Some("round-robin") => KeyRotation::RoundRobin,
        Some(other) => {
            problems.push(bad(
                layered,
                &key("key_rotation"),
                format!("'{other}'"),
                "expected 'on-failure' or 'round-robin'",
            ));
            KeyRotation::OnFailure
        }
    };

    if let Some(identity) = &raw.identity {
        for (field, value) in [
            ("title", &identity.title),
            ("referer", &identity.referer),
            ("user_agent", &identity.user_agent),
        ] {
            if let Some(value) = value
                && reqwest::header::HeaderValue::from_str(value).is_err()
            {
                problems.push(bad(
                    layered,
                    &key(&format!("identity.{field}")),
                    format!("'{value}'"),
                    "not a valid HTTP header value",
                ));
            }
        }
    }

    if let Some(url) = raw.proxy_url.as_deref().filter(|url| !url.is_empty()) {
        let scheme_ok = ["http://", "https://", "socks5://", "socks5h://"]
            .iter()
            .any(|scheme| url.starts_with(scheme));
        if !scheme_ok || reqwest::Proxy::all(url).is_err() {
            problems.push(bad(
                layered,
                &key("proxy_url"),
                format!("'{url}'"),
                "expected an http://, https://, socks5:// or socks5h:// proxy URL",
            ));
        }
    }

    let extra_roots = match raw.ca_file.as_deref().filter(|path| !path.is_empty()) {
        Some(path) => ca_file_roots(path, env).unwrap_or_else(|why| {
            problems.push(bad(layered, &key("ca_file"), format!("'{path}'"), why));
            Vec::new()
        }),
        None => Vec::new(),
    };

    let login = login_settings(id, kind, raw, layered, env, problems);
    let acp = acp_settings(id, kind, raw, layered, env, problems);

    let mut headers = Vec::new();
    for (name, value) in raw.headers.iter().flatten() {
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
            || reqwest::header::HeaderValue::from_str(value).is_err()
        {
            problems.push(bad(
                layered,
                &key(&format!("headers.{name}")),
                format!("'{value}'"),
                "not a valid HTTP header",
            ));
        } else {
            headers.push((name.clone(), value.clone()));
        }
    }

    Some(BackendConfig {
        id: id.to_owned(),
        kind,
        api,
        base_url,
        api_key_env,
        api_keys_env,
        key_rotation,
        models: raw.models.clone(),
        headers,
        timeouts,
        models_cache: Duration::from_secs(raw.models_cache_seconds.unwrap_or(300)),
        app_url: raw
            .app_url
            .clone()
            .unwrap_or_else(|| "https://github.com/llmux/llmux".into()),
        app_title: raw.app_title.clone().unwrap_or_else(|| "llmux".into()),
        identity: raw.identity.clone().unwrap_or_default(),
        proxy_url: raw.proxy_url.clone().filter(|url| !url.is_empty()),
        extra_roots,
        mock: MockConfig {
            response_text: raw
                .response_text
                .clone()
                .unwrap_or_else(|| "Hello from the llmux mock back-end.".into()),
            chunks: raw.chunks.unwrap_or(4).max(1),
            chunk_delay: Duration::from_millis(raw.chunk_delay_ms.unwrap_or(0)),
        },
        login,
        acp,
    })
}

/// `path` with a leading `~` read as the home directory (`HOME`, else `USERPROFILE`); `None`
/// when it starts with `~` and neither is set.
fn home_expanded(
    path: &str,
    env: &(dyn Fn(&str) -> Option<String> + Send + Sync),
) -> Option<PathBuf> {
    match path
        .strip_prefix("~/")
        .or_else(|| (path == "~").then_some(""))
    {
        Some(rest) => env("HOME")
            .or_else(|| env("USERPROFILE"))
            .filter(|home| !home.is_empty())
            .map(|home| PathBuf::from(home).join(rest)),
        None => Some(PathBuf::from(path)),
    }
}

/// The CA certificates of a back-end's `ca_file` (`~` is the home directory): every PEM
/// certificate in it, each one rustls accepts as a root; the error says why not.
fn ca_file_roots(
    path: &str,
    env: &(dyn Fn(&str) -> Option<String> + Send + Sync),
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let path = home_expanded(path, env).ok_or("starts with ~ but HOME is not set")?;
    let pem = std::fs::read(path).map_err(|e| format!("cannot be read: {e}"))?;
    let roots = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM file of certificates: {e}"))?;
    if roots.is_empty() {
        return Err("no certificate in it (expected -----BEGIN CERTIFICATE----- blocks)".into());
    }
    let mut store = rustls::RootCertStore::empty();
    for (i, root) in roots.iter().enumerate() {
        store
            .add(root.clone())
            .map_err(|e| format!("certificate {} cannot be a root: {e}", i + 1))?;
    }
    Ok(roots)
}

/// The agent settings of a gemini-cli-acp back-end; `None` for other kinds, which may not
/// set these keys.
fn acp_settings(
    id: &str,
    kind: BackendKind,
    raw: &RawBackend,
    layered: &Layered,
    env: &(dyn Fn(&str) -> Option<String> + Send + Sync),
    problems: &mut Vec<String>,
) -> Option<AcpSettings> {
    let key = |field: &str| format!("backends.{id}.{field}");
    if kind != BackendKind::GeminiCliAcp {
        let set = [
            ("command", raw.command.is_some()),
            ("args", raw.args.is_some()),
            ("project_dir", raw.project_dir.is_some()),
            ("auto_accept", raw.auto_accept.is_some()),
            ("agent_idle_seconds", raw.agent_idle_seconds.is_some()),
        ];
        keys_of_other_kinds(
            id,
            kind,
            &set,
            "back-ends of type 'gemini-cli-acp'",
            layered,
            problems,
        );
        return None;
    }
    let agent_idle = match raw.agent_idle_seconds {
        Some(seconds) if seconds > 0.0 && seconds.is_finite() => Duration::from_secs_f64(seconds),
        Some(seconds) => {
            problems.push(bad(
                layered,
                &key("agent_idle_seconds"),
                seconds,
                "must be a positive number of seconds",
            ));
            Duration::from_secs(3600)
        }
        None => Duration::from_secs(3600),
    };
    Some(AcpSettings {
        command: raw.command.clone().unwrap_or_else(|| "gemini".into()),
        args: raw
            .args
            .clone()
            .unwrap_or_else(|| vec!["--experimental-acp".into()]),
        // The seed's order: the config file's project_dir, then GEMINI_CLI_WORKSPACE (a
        // session's !/project-dir wins over both, per request).
        workspace: raw
            .project_dir
            .clone()
            .or_else(|| env("GEMINI_CLI_WORKSPACE").filter(|w| !w.is_empty()))
            .map(PathBuf::from),
        auto_accept: raw.auto_accept.unwrap_or(true),
        agent_idle,
    })
}

/// The login settings of a subscription-login back-end: its credential files (the CLI's
/// own file when none is named) and the OAuth client it refreshes as. `None` for other
/// kinds, which may not set these keys.
fn login_settings(
    id: &str,
    kind: BackendKind,
    raw: &RawBackend,
    layered: &Layered,
    env: &(dyn Fn(&str) -> Option<String> + Send + Sync),
    problems: &mut Vec<String>,
) -> Option<crate::credentials::login::LoginSettings> {
    use crate::credentials::login::{LoginSettings, OAuthClient};
    let key = |field: &str| format!("backends.{id}.{field}");
    let Some(defaults) = &kind.provider().login else {
        let set = [
            ("credentials_path", raw.credentials_path.is_some()),
            ("token_url", raw.token_url.is_some()),
            ("client_id", raw.client_id.is_some()),
            ("refresh_ahead_seconds", raw.refresh_ahead_seconds.is_some()),
            ("project", raw.project.is_some()),
            ("onboard_poll_seconds", raw.onboard_poll_seconds.is_some()),
        ];
        let applies_to = format!(
            "subscription-login back-ends ({})",
            providers::login_kind_names()
        );
        keys_of_other_kinds(id, kind, &set, &applies_to, layered, problems);
        return None;
    };
    let expand = |path: &str| home_expanded(path, env);
    let named_file = defaults
        .file_env
        .and_then(|name| env(name).filter(|path| !path.is_empty()));
    let paths: Vec<PathBuf> = match &raw.credentials_path {
        Some(named) => named
            .iter()
            .filter_map(|path| {
                let expanded = expand(path);
                if expanded.is_none() {
                    problems.push(bad(
                        layered,
                        &key("credentials_path"),
                        format!("'{path}'"),
                        "starts with ~ but HOME is not set",
                    ));
                }
                expanded
            })
            .collect(),
        // A variable naming the file (GOOGLE_APPLICATION_CREDENTIALS), else the CLI's own
        // file: under its home variable when set (CODEX_HOME, ...), else under the user's
        // home. Without any, none: a request says what to set.
        None if named_file.is_some() => named_file.into_iter().map(PathBuf::from).collect(),
        None => defaults
            .home_env
            .and_then(|name| env(name).filter(|dir| !dir.is_empty()))
            .map(PathBuf::from)
            .or_else(|| home_expanded("~", env).map(|home| home.join(defaults.home_dir)))
            .map(|dir| vec![dir.join(defaults.file)])
            .unwrap_or_default(),
    };
    let refresh_ahead = match raw.refresh_ahead_seconds {
        Some(seconds) if !(seconds >= 0.0 && seconds.is_finite()) => {
            problems.push(bad(
                layered,
                &key("refresh_ahead_seconds"),
                seconds,
                "must be a number of seconds, 0 or more",
            ));
            Duration::from_secs(300)
        }
        Some(seconds) => Duration::from_secs_f64(seconds),
        None => Duration::from_secs(300),
    };
    let token_url = raw
        .token_url
        .clone()
        .unwrap_or_else(|| defaults.token_url.to_owned());
    if !(token_url.starts_with("http://") || token_url.starts_with("https://")) {
        problems.push(bad(
            layered,
            &key("token_url"),
            format!("'{token_url}'"),
            "must start with http:// or https://",
        ));
    }
    Some(LoginSettings {
        paths,
        client: OAuthClient {
            token_url,
            client_id: raw
                .client_id
                .clone()
                .unwrap_or_else(|| defaults.client_id.to_owned()),
            client_secret: defaults
                .client_secret_env
                .and_then(|name| env(name).filter(|s| !s.trim().is_empty()))
                .map(|s| crate::credentials::Secret::new(s.trim())),
            installed_cli: defaults
                .cli_executable
                .and_then(|name| find_on_path(name, env("PATH").as_deref())),
        },
        refresh_ahead,
        project: raw.project.clone().or_else(|| {
            // The Gemini CLI's variables name a Cloud project's; a personal login uses
            // the project its account has unless one is configured here.
            (kind == BackendKind::GeminiCliCloudProject)
                .then(|| env("GOOGLE_CLOUD_PROJECT").or_else(|| env("GOOGLE_CLOUD_PROJECT_ID")))
                .flatten()
                .filter(|p| !p.is_empty())
        }),
        onboard_poll: onboard_poll(raw, layered, &key, problems),
    })
}

/// A problem for each key in `set` that was set although only `applies_to` take it.
fn keys_of_other_kinds(
    id: &str,
    kind: BackendKind,
    set: &[(&str, bool)],
    applies_to: &str,
    layered: &Layered,
    problems: &mut Vec<String>,
) {
    for (field, _) in set.iter().filter(|(_, set)| *set) {
        let key = format!("backends.{id}.{field}");
        problems.push(format!(
            "{key} (from {}): only applies to {applies_to}, not '{}'",
            layered.source_of(&key),
            kind.name()
        ));
    }
}

/// `name` in the directories of `path` (a PATH value), when it is there.
pub(crate) fn find_on_path(name: &str, path: Option<&str>) -> Option<PathBuf> {
    std::env::split_paths(path?)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// `onboard_poll_seconds`: how often a Code Assist onboarding is polled (5 s).
fn onboard_poll(
    raw: &RawBackend,
    layered: &Layered,
    key: &dyn Fn(&str) -> String,
    problems: &mut Vec<String>,
) -> Duration {
    match raw.onboard_poll_seconds {
        Some(seconds) if seconds >= 0.0 && seconds.is_finite() => Duration::from_secs_f64(seconds),
        Some(seconds) => {
            problems.push(bad(
                layered,
                &key("onboard_poll_seconds"),
                seconds,
                "must be a number of seconds, 0 or more",
            ));
            Duration::from_secs(5)
        }
        None => Duration::from_secs(5),
    }
}

/// Where llmux looks for a config file when `--config` is not given.
pub fn default_config_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "llmux").map(|d| d.config_dir().join("llmux.toml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn defaults_listen_on_loopback_8000_with_builtin_backends() {
        let config = Config::defaults().unwrap();
        assert_eq!(config.host, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(config.port, 8000);
        assert_eq!(config.default_backend, "openai");
        assert_eq!(config.max_body_bytes, 32 * 1024 * 1024);
        for id in providers::builtin() {
            assert!(config.backends.contains_key(id), "{id}");
        }
        assert_eq!(providers::builtin().count(), 13);
        assert_eq!(config.auth.brute_force.max_failed_attempts, 5);
        assert_eq!(
            config.auth.brute_force.initial_block,
            Duration::from_secs(30)
        );
    }

    #[test]
    fn non_loopback_without_key_is_refused_and_disable_auth_forces_loopback() {
        let err = ConfigLoader::new()
            .env(no_env)
            .set("proxy.host", "0.0.0.0", "--host")
            .load()
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("proxy.host = '0.0.0.0' (from command line --host)"),
            "{err}"
        );

        let loaded = ConfigLoader::new()
            .env(no_env)
            .set("proxy.host", "0.0.0.0", "--host")
            .set("auth.disable_auth", true, "--disable-auth")
            .load()
            .unwrap();
        assert!(loaded.config.host.is_loopback());
    }

    #[test]
    fn unknown_backend_type_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[backends.x]\ntype = \"nope\"\n").unwrap();
        let err = ConfigLoader::new()
            .env(no_env)
            .file(&path, true)
            .load()
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("backends.x.type = 'nope'"), "{text}");
        assert!(text.contains(&path.display().to_string()), "{text}");
    }
}
