//! The config file's shape, as serde reads it: every key, its default, nothing validated.
//!
//! `deny_unknown_fields` everywhere so a typo is an error naming the key, not a silent
//! default. `config/llmux.example.toml` documents every key here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default = "default_backend")]
    pub default_backend: String,
    /// What starts an in-chat command.
    #[serde(default = "default_command_prefix")]
    pub command_prefix: String,
    /// Only commands on the last non-blank line of a message count.
    #[serde(default)]
    pub strict_command_detection: bool,
    #[serde(default)]
    pub session: RawSession,
    /// `[state]`: where session state lives (this process, or Redis for several).
    #[serde(default)]
    pub state: RawState,
    /// `[metrics]`: the Prometheus endpoint.
    #[serde(default)]
    pub metrics: RawMetrics,
    /// Send every request here (`backend:model`), unless a session override says otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub static_route: Option<String>,
    /// Replace every client's model with this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_model: Option<String>,
    /// Regex rewrites of model names, first match wins.
    #[serde(default)]
    pub model_aliases: Vec<RawAlias>,
    #[serde(default)]
    pub edit_precision: RawEditPrecision,
    #[serde(default)]
    pub structured_output: RawStructuredOutput,
    #[serde(default)]
    pub empty_response_recovery: RawEmptyResponse,
    #[serde(default)]
    pub circuit_breaker: RawCircuitBreaker,
    #[serde(default)]
    pub dangerous_command_prevention: RawDangerousCommands,
    #[serde(default)]
    pub tool_call_reactor: RawToolCallReactor,
    #[serde(default)]
    pub tool_call_repair: RawToolCallRepair,
    #[serde(default)]
    pub loop_detection: RawLoopDetection,
    #[serde(default)]
    pub think_tags: RawThinkTags,
    /// `[notifications]`: which kinds the desktop app shows.
    #[serde(default)]
    pub notifications: RawNotifications,
    #[serde(default)]
    pub redaction: RawRedaction,
    #[serde(default)]
    pub content_rewriting: RawContentRewriting,
    #[serde(default)]
    pub responses: RawResponses,
    #[serde(default)]
    pub capture: RawCapture,
    /// Per-model settings of the reasoning aliases (config/reasoning_aliases.toml format).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_aliases_file: Option<String>,
    #[serde(default)]
    pub proxy: RawProxy,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub logging: RawLogging,
    #[serde(default)]
    pub backends: BTreeMap<String, RawBackend>,
    /// Failover routes by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routes: BTreeMap<String, super::routes::RawRoute>,
    /// Per-model limits by `backend:model` or model.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub models: BTreeMap<String, super::limits::RawModel>,
    /// Per-model limits by model, below `models`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub model_defaults: BTreeMap<String, super::limits::RawModel>,
    /// The input limit of every model, in tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_context_window: Option<u64>,
    /// A request identical to one its session sent this many seconds ago is answered with
    /// that one's answer; 0: off.
    #[serde(default)]
    pub dedup_window_seconds: f64,
}

fn default_backend() -> String {
    "openai".into()
}

/// `[empty_response_recovery]`: an empty answer is asked for once more.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmptyResponse {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// What the model is told when its answer was empty.
    #[serde(default = "default_empty_prompt")]
    pub prompt: String,
}

impl Default for RawEmptyResponse {
    fn default() -> Self {
        Self {
            enabled: true,
            prompt: default_empty_prompt(),
        }
    }
}

fn default_empty_prompt() -> String {
    crate::pipeline::empty_response::DEFAULT_PROMPT.to_owned()
}

/// `[content_rewriting]`: REPLACE, PREPEND and APPEND rules (config/content_rewriting.toml
/// shows the format).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawContentRewriting {
    /// The rules file; no rewriting when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules_file: Option<String>,
}

/// `[redaction]`: secrets masked in prompts before they go to a provider.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedaction {
    #[serde(default)]
    pub prompts: bool,
}

/// `[notifications]`: the desktop app's notifications, one switch per kind (all on).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotifications {
    /// The proxy could not start (its port is taken, ...).
    #[serde(default = "yes")]
    pub proxy_failed: bool,
    /// A provider refused a key (401/403).
    #[serde(default = "yes")]
    pub key_refused: bool,
    /// A subscription login needs the user (logged out, refresh refused).
    #[serde(default = "yes")]
    pub login_needed: bool,
    /// A failover route moved past a failing leg.
    #[serde(default = "yes")]
    pub failover: bool,
    /// A back-end's circuit breaker opened.
    #[serde(default = "yes")]
    pub breaker: bool,
}

impl Default for RawNotifications {
    fn default() -> Self {
        Self {
            proxy_failed: true,
            key_refused: true,
            login_needed: true,
            failover: true,
            breaker: true,
        }
    }
}

/// `[think_tags]`: `<think>...</think>` at the start of an answer becomes reasoning.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawThinkTags {
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl Default for RawThinkTags {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// `[loop_detection]`: answers that repeat themselves and tool calls in circles.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLoopDetection {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "loop_buffer")]
    pub buffer_size: i64,
    #[serde(default = "loop_max_pattern")]
    pub max_pattern_length: i64,
    #[serde(default = "loop_interval")]
    pub analysis_interval: i64,
    #[serde(default = "loop_chunk")]
    pub chunk_size: i64,
    #[serde(default = "loop_threshold")]
    pub threshold: i64,
    #[serde(default = "loop_long_length")]
    pub long_pattern_length: i64,
    #[serde(default = "loop_long_repetitions")]
    pub long_pattern_repetitions: i64,
    #[serde(default = "loop_tool_calls")]
    pub tool_call_repetitions: i64,
}

impl Default for RawLoopDetection {
    fn default() -> Self {
        Self {
            enabled: false,
            buffer_size: loop_buffer(),
            max_pattern_length: loop_max_pattern(),
            analysis_interval: loop_interval(),
            chunk_size: loop_chunk(),
            threshold: loop_threshold(),
            long_pattern_length: loop_long_length(),
            long_pattern_repetitions: loop_long_repetitions(),
            tool_call_repetitions: loop_tool_calls(),
        }
    }
}

fn loop_buffer() -> i64 {
    16_384
}
fn loop_max_pattern() -> i64 {
    8_192
}
fn loop_interval() -> i64 {
    32
}
fn loop_chunk() -> i64 {
    80
}
fn loop_threshold() -> i64 {
    6
}
fn loop_long_length() -> i64 {
    100
}
fn loop_long_repetitions() -> i64 {
    3
}
fn loop_tool_calls() -> i64 {
    4
}

/// `[dangerous_command_prevention]`: destructive shell commands in tool calls are stopped.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawDangerousCommands {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// A rules file; the shipped config/dangerous_commands.toml when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules_file: Option<String>,
}

impl Default for RawDangerousCommands {
    fn default() -> Self {
        Self {
            enabled: true,
            rules_file: None,
        }
    }
}

/// `[tool_call_reactor]`: the user's rules on tool calls (config/tool_call_reactor.toml
/// shows the format).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawToolCallReactor {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// A rules file; the shipped config/tool_call_reactor.toml (one disabled example) when
    /// unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules_file: Option<String>,
}

impl Default for RawToolCallReactor {
    fn default() -> Self {
        Self {
            enabled: true,
            rules_file: None,
        }
    }
}

/// `[tool_call_repair]`: calls written as text become tool calls; malformed arguments are
/// repaired.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawToolCallRepair {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The most text held while a possible call written as text is read.
    #[serde(default = "default_repair_buffer")]
    pub buffer_bytes: i64,
}

impl Default for RawToolCallRepair {
    fn default() -> Self {
        Self {
            enabled: true,
            buffer_bytes: default_repair_buffer(),
        }
    }
}

fn default_repair_buffer() -> i64 {
    65_536
}

/// `[circuit_breaker]`: a back-end that fails too often in a row is left alone a while.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCircuitBreaker {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Outages in a row (5xx, timeouts, unreachable) that open it.
    #[serde(default = "default_breaker_failures")]
    pub failures: u32,
    #[serde(default = "default_breaker_cool_down")]
    pub cool_down_seconds: f64,
}

impl Default for RawCircuitBreaker {
    fn default() -> Self {
        Self {
            enabled: true,
            failures: default_breaker_failures(),
            cool_down_seconds: default_breaker_cool_down(),
        }
    }
}

fn default_breaker_failures() -> u32 {
    5
}

fn default_breaker_cool_down() -> f64 {
    30.0
}

/// `[backends.ID.identity]`: the seed's identity header override.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    /// Sent as X-Title (and X-OpenRouter-Title to OpenRouter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Sent as HTTP-Referer and Referer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referer: Option<String>,
    /// Sent as User-Agent instead of llmux's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlias {
    pub pattern: String,
    pub replacement: String,
}

/// `[capture]`: the seed's wire capture (its `logging.capture_*` keys).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCapture {
    /// The JSONL file; capture is off when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The SQLite capture store; off when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db: Option<String>,
    #[serde(default = "default_capture_buffer")]
    pub buffer_size: u64,
    #[serde(default = "default_capture_flush")]
    pub flush_interval: f64,
    #[serde(default = "default_capture_entries")]
    pub max_entries_per_flush: u64,
    #[serde(default = "default_capture_max_bytes")]
    pub max_bytes: u64,
    #[serde(default = "default_capture_max_files")]
    pub max_files: u64,
    #[serde(default = "default_capture_total")]
    pub total_max_bytes: u64,
    /// Regexes of secret-shaped text masked in both captures.
    #[serde(default = "default_redact_patterns")]
    pub redact_patterns: Vec<String>,
    /// Capture store rows older than this many days are deleted (0 keeps them).
    #[serde(default = "default_capture_db_retention_days")]
    pub db_retention_days: u64,
    /// The capture store's oldest rows go when it passes this size (0: no cap).
    #[serde(default = "default_capture_db_max_bytes")]
    pub db_max_bytes: u64,
    /// Open the capture store to browse it only: nothing is recorded or deleted in it
    /// (`llmux inspect FILE` sets it).
    #[serde(default)]
    pub db_read_only: bool,
}

fn default_capture_buffer() -> u64 {
    65536
}
fn default_capture_flush() -> f64 {
    1.0
}
fn default_capture_entries() -> u64 {
    100
}
fn default_capture_max_bytes() -> u64 {
    104_857_600
}
fn default_capture_max_files() -> u64 {
    5
}
fn default_capture_total() -> u64 {
    524_288_000
}
fn default_redact_patterns() -> Vec<String> {
    crate::capture::redact::DEFAULT_PATTERNS
        .iter()
        .map(|p| (*p).to_owned())
        .collect()
}
fn default_capture_db_retention_days() -> u64 {
    30
}
fn default_capture_db_max_bytes() -> u64 {
    1_073_741_824
}

impl Default for RawCapture {
    fn default() -> Self {
        Self {
            file: None,
            db: None,
            buffer_size: default_capture_buffer(),
            flush_interval: default_capture_flush(),
            max_entries_per_flush: default_capture_entries(),
            max_bytes: default_capture_max_bytes(),
            max_files: default_capture_max_files(),
            total_max_bytes: default_capture_total(),
            redact_patterns: default_redact_patterns(),
            db_retention_days: default_capture_db_retention_days(),
            db_max_bytes: default_capture_db_max_bytes(),
            db_read_only: false,
        }
    }
}

/// `[responses]`: stored Responses-API answers (for `previous_response_id`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawResponses {
    /// How many answers are kept (0 keeps none).
    #[serde(default = "default_max_stored")]
    pub max_stored: u64,
    /// How long an answer is kept, in seconds.
    #[serde(default = "default_retention")]
    pub retention_seconds: u64,
}

fn default_max_stored() -> u64 {
    1000
}
fn default_retention() -> u64 {
    86400
}

impl Default for RawResponses {
    fn default() -> Self {
        Self {
            max_stored: default_max_stored(),
            retention_seconds: default_retention(),
        }
    }
}

/// `[structured_output]`: checking answers against a requested JSON schema.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawStructuredOutput {
    /// Check (and repair) answers against the schema the client asked for.
    #[serde(default = "yes")]
    pub validate: bool,
    /// Ask the back-end once more, with the errors, when repair is not enough.
    #[serde(default = "yes")]
    pub retry: bool,
}

impl Default for RawStructuredOutput {
    fn default() -> Self {
        Self {
            validate: true,
            retry: true,
        }
    }
}

/// `[edit_precision]`: the seed's "Automated Model Tuning for Precision".
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawEditPrecision {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_edit_temperature")]
    pub temperature: f64,
    #[serde(default = "default_edit_min_top_p")]
    pub min_top_p: f64,
    #[serde(default)]
    pub override_top_p: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_agents_regex: Option<String>,
    /// A file of failed-edit patterns; the shipped config/edit_precision_patterns.toml
    /// when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patterns_file: Option<String>,
}

fn default_edit_temperature() -> f64 {
    0.1
}
fn default_edit_min_top_p() -> f64 {
    0.3
}

impl Default for RawEditPrecision {
    fn default() -> Self {
        Self {
            enabled: true,
            temperature: default_edit_temperature(),
            min_top_p: default_edit_min_top_p(),
            override_top_p: false,
            exclude_agents_regex: None,
            patterns_file: None,
        }
    }
}

fn default_command_prefix() -> String {
    "!/".into()
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSession {
    /// A session idle for this many seconds is forgotten.
    #[serde(default = "default_session_max_age")]
    pub max_age: u64,
    #[serde(default)]
    pub planning_phase: RawPlanning,
    /// Tool results that are pytest output lose their passing lines and timings.
    #[serde(default = "yes")]
    pub pytest_compression_enabled: bool,
    /// A call running the whole pytest suite needs to be made twice.
    #[serde(default)]
    pub pytest_full_suite_steering_enabled: bool,
}

/// `[session.planning_phase]`: the seed's "Planning-Phase Strong Model Overrides".
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlanning {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strong_model: Option<String>,
    #[serde(default = "default_planning_turns")]
    pub max_turns: u64,
    #[serde(default = "default_planning_writes")]
    pub max_file_writes: u64,
    #[serde(default)]
    pub overrides: RawPlanningOverrides,
}

fn default_planning_turns() -> u64 {
    10
}
fn default_planning_writes() -> u64 {
    1
}

impl Default for RawPlanning {
    fn default() -> Self {
        Self {
            enabled: false,
            strong_model: None,
            max_turns: default_planning_turns(),
            max_file_writes: default_planning_writes(),
            overrides: RawPlanningOverrides::default(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlanningOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking_budget: Option<u64>,
}

fn default_session_max_age() -> u64 {
    86400
}

/// `[metrics]`: the Prometheus endpoint `/metrics`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// Serve `/metrics` without the proxy key (a scraper on a trusted network).
    #[serde(default)]
    pub public: bool,
}

/// `[state]`: where session state lives.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    /// `memory` (this process) or `redis` (shared by every instance pointed at `url`).
    #[serde(default = "default_state_backend")]
    pub backend: String,
    /// `redis://host:port/db` (`rediss://` for TLS), for `backend = "redis"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The longest wait for Redis, in milliseconds, before this instance serves from its
    /// own memory.
    #[serde(default = "default_state_timeout_ms")]
    pub timeout_ms: u64,
    /// Put before every key llmux writes, so instances of separate teams can share a server.
    #[serde(default = "default_state_key_prefix")]
    pub key_prefix: String,
}

fn default_state_backend() -> String {
    "memory".into()
}

fn default_state_timeout_ms() -> u64 {
    250
}

fn default_state_key_prefix() -> String {
    "llmux:".into()
}

impl Default for RawState {
    fn default() -> Self {
        Self {
            backend: default_state_backend(),
            url: None,
            timeout_ms: default_state_timeout_ms(),
            key_prefix: default_state_key_prefix(),
        }
    }
}

impl Default for RawSession {
    fn default() -> Self {
        Self {
            max_age: default_session_max_age(),
            planning_phase: RawPlanning::default(),
            pytest_compression_enabled: true,
            pytest_full_suite_steering_enabled: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    #[serde(default = "default_host")]
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// The dedicated Anthropic port: main port + 1 when unset, 0 disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anthropic_port: Option<u16>,
    /// Request bodies above this many bytes get a 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// On SIGINT/SIGTERM, how long running streams may take to finish.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout_seconds: u64,
    /// Host names llmux answers besides loopback names and IP addresses; `"*"` turns the
    /// Host check off.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Web origins (`scheme://host[:port]`) allowed to call llmux from a browser, with CORS.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// A client must send a whole request head within this many seconds.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout_seconds: f64,
    /// An idle keep-alive connection is closed after this many seconds.
    #[serde(default = "default_keep_alive_timeout")]
    pub keep_alive_timeout_seconds: f64,
    /// Open client connections at most (both ports together); 0: sized from the fd limit.
    #[serde(default)]
    pub max_connections: u64,
    /// Requests one client address may have running at once; 0: no limit.
    #[serde(default)]
    pub max_concurrent_requests_per_ip: u64,
}

fn default_host() -> String {
    "127.0.0.1".into()
}
fn default_port() -> u16 {
    8000
}
fn default_max_body_bytes() -> u64 {
    32 * 1024 * 1024
}
fn default_shutdown_timeout() -> u64 {
    30
}
fn default_header_read_timeout() -> f64 {
    10.0
}
fn default_keep_alive_timeout() -> f64 {
    60.0
}

impl Default for RawProxy {
    fn default() -> Self {
        Self {
            host: default_host(),
            port: default_port(),
            anthropic_port: None,
            max_body_bytes: default_max_body_bytes(),
            shutdown_timeout_seconds: default_shutdown_timeout(),
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            header_read_timeout_seconds: default_header_read_timeout(),
            keep_alive_timeout_seconds: default_keep_alive_timeout(),
            max_connections: 0,
            max_concurrent_requests_per_ip: 0,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    #[serde(default)]
    pub disable_auth: bool,
    /// Keys clients must present. Prefer LLM_INTERACTIVE_PROXY_API_KEY over the file.
    #[serde(default)]
    pub api_keys: Vec<String>,
    /// Addresses or CIDR ranges that skip auth.
    #[serde(default)]
    pub trusted_ips: Vec<String>,
    #[serde(default)]
    pub brute_force_protection: RawBruteForce,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawBruteForce {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_max_failed")]
    pub max_failed_attempts: u32,
    #[serde(default = "default_ttl")]
    pub ttl_seconds: u64,
    #[serde(default = "default_initial_block")]
    pub initial_block_seconds: u64,
    #[serde(default = "default_multiplier")]
    pub block_multiplier: f64,
    #[serde(default = "default_max_block")]
    pub max_block_seconds: u64,
}

fn yes() -> bool {
    true
}
fn default_max_failed() -> u32 {
    5
}
fn default_ttl() -> u64 {
    900
}
fn default_initial_block() -> u64 {
    30
}
fn default_multiplier() -> f64 {
    2.0
}
fn default_max_block() -> u64 {
    3600
}

impl Default for RawBruteForce {
    fn default() -> Self {
        Self {
            enabled: true,
            max_failed_attempts: default_max_failed(),
            ttl_seconds: default_ttl(),
            initial_block_seconds: default_initial_block(),
            block_multiplier: default_multiplier(),
            max_block_seconds: default_max_block(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogging {
    /// A level (`info`) or a full filter (`llmux=debug,hyper=warn`); RUST_LOG wins.
    #[serde(default = "default_level")]
    pub level: String,
    /// `text` or `json`.
    #[serde(default = "default_format")]
    pub format: String,
}

fn default_level() -> String {
    "info".into()
}
fn default_format() -> String {
    "text".into()
}

impl Default for RawLogging {
    fn default() -> Self {
        Self {
            level: default_level(),
            format: default_format(),
        }
    }
}

/// One `[backends.<id>]` table. Keys that only make sense for some kinds are checked
/// in validation, so the error can say which kind accepts them.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// `chat` or `responses`: which OpenAI API the back-end is called with.
    pub api: Option<String>,
    pub base_url: Option<String>,
    /// The environment variable holding the provider key.
    pub api_key_env: Option<String>,
    /// More variables holding keys of the same provider, for rotation.
    pub api_keys_env: Option<Vec<String>>,
    /// `on-failure` (the first key until it is rate limited) or `round-robin`.
    pub key_rotation: Option<String>,
    /// The models this back-end serves; when set, requests for others get a 404.
    pub models: Option<Vec<String>>,
    /// Extra headers on every upstream request.
    pub headers: Option<BTreeMap<String, String>>,
    pub connect_timeout_seconds: Option<f64>,
    pub first_byte_timeout_seconds: Option<f64>,
    pub idle_timeout_seconds: Option<f64>,
    /// How long a model list fetched from the provider is reused.
    pub models_cache_seconds: Option<u64>,
    /// OpenRouter attribution: sent as HTTP-Referer.
    pub app_url: Option<String>,
    /// OpenRouter attribution: sent as X-Title and X-OpenRouter-Title.
    pub app_title: Option<String>,
    /// Headers that identify the client to the provider, replacing llmux's own.
    pub identity: Option<RawIdentity>,
    /// An outbound proxy for this back-end: `http://`, `https://`, `socks5://` or
    /// `socks5h://` (the proxy resolves names); otherwise HTTP_PROXY, HTTPS_PROXY, ALL_PROXY
    /// and NO_PROXY decide.
    pub proxy_url: Option<String>,
    /// A PEM file of CA certificates trusted for this back-end's `https://` URL besides the
    /// built-in roots (a self-hosted server with its own CA, a TLS-inspecting firewall).
    pub ca_file: Option<String>,
    /// Subscription logins: the CLI's credential file, or several (accounts that take
    /// turns like keys); the CLI's own file when absent.
    pub credentials_path: Option<OneOrMany>,
    /// Subscription logins: the OAuth token endpoint refreshes go to.
    pub token_url: Option<String>,
    /// Subscription logins: the OAuth client refreshes are made as (the CLI's by default).
    pub client_id: Option<String>,
    /// Subscription logins: how long before expiry the token is refreshed (300).
    pub refresh_ahead_seconds: Option<f64>,
    /// Gemini Code Assist logins: the Google Cloud project requests bill to.
    pub project: Option<String>,
    /// Gemini Code Assist logins: how often account onboarding is polled (5).
    pub onboard_poll_seconds: Option<f64>,
    /// gemini-cli-acp: the agent's executable (`gemini`).
    pub command: Option<String>,
    /// gemini-cli-acp: its arguments (`["--experimental-acp"]`); llmux adds `--model` and,
    /// with auto_accept, `--yolo`.
    pub args: Option<Vec<String>>,
    /// gemini-cli-acp: the workspace the agent works in (GEMINI_CLI_WORKSPACE).
    pub project_dir: Option<String>,
    /// gemini-cli-acp: approve the agent's tool calls (true).
    pub auto_accept: Option<bool>,
    /// gemini-cli-acp: an agent idle this long is ended (3600).
    pub agent_idle_seconds: Option<f64>,
    /// mock: the text it answers.
    pub response_text: Option<String>,
    /// mock: how many stream chunks the text is cut into.
    pub chunks: Option<u32>,
    /// mock: delay before each chunk, in milliseconds.
    pub chunk_delay_ms: Option<u64>,
}

/// A value given as one string or as a list of them.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let items: &[String] = match self {
            OneOrMany::One(one) => std::slice::from_ref(one),
            OneOrMany::Many(many) => many,
        };
        items.iter().map(String::as_str)
    }
}
