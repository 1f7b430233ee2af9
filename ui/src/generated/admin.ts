// Generated from the Rust types of the admin API (src/admin, src/capture/store.rs)
// by the `typescript` test in src/admin/mod.rs. Do not edit by hand.

export type RequestRow = { id: string, 
/**
 * Unix seconds.
 */
started_at: number, session_id: string, client_host: string, user_agent: string, frontend: string, backend: string, model_requested: string, model_used: string, key_name: string, status: number, stream: boolean, latency_ms: number, 
/**
 * From the request's arrival to the first answer event.
 */
ttfb_ms: number, 
/**
 * From sending to the provider to its last byte; `latency_ms - upstream_ms` is llmux's.
 */
upstream_ms: number, input_tokens: number, output_tokens: number, 
/**
 * The provider reported no usage; the token counts are llmux's estimate.
 */
tokens_estimated: boolean, error: string, 
/**
 * Every call to a back-end for this request, `backend:model=status` joined by `; `
 * (a failover route's legs; one entry otherwise).
 */
attempts: string, 
/**
 * What llmux's stages did to the request or its answer (a dangerous command stopped,
 * pytest output compressed, a loop cut, ...).
 */
interventions: Array<Intervention>, 
/**
 * The client's request headers as a JSON object; credentials masked.
 */
client_headers: string, 
/**
 * The provider's status line and response headers as a JSON object (`:status` first);
 * credentials masked.
 */
upstream_headers: string, 
/**
 * The client's request body, as received.
 */
client_request: string, 
/**
 * The body sent to the provider.
 */
upstream_request: string, 
/**
 * The provider's answer: its body, or its stream frames, one per line, each after its
 * arrival time in milliseconds since the provider request and a tab.
 */
upstream_response: string, 
/**
 * What llmux sent back to the client, as sent.
 */
client_response: string, 
/**
 * The user's text (for search) and the answer's text.
 */
prompt_text: string, response_text: string, 
/**
 * The tool calls of the answer as the client got it, whatever its protocol.
 */
tool_calls: Array<CapturedToolCall>, };

export type CapturedToolCall = { name: string, 
/**
 * The arguments as the model wrote them (JSON text, unless the model erred).
 */
arguments: string, };

export type ListParams = { 
/**
 * Full-text search over prompt and answer.
 */
q?: string, session?: string, backend?: string, model?: string, status?: number, 
/**
 * Unix seconds: requests started at or after `since` and before `until`.
 */
since?: number, until?: number, 
/**
 * Page size (default 50, at most 1000) and start.
 */
limit?: number, offset?: number, };

export type BackendStats = { backend: string, model: string, requests: number, errors: number, input_tokens: number, output_tokens: number, mean_latency_ms: number, };

export type Stats = { requests: number, 
/**
 * Rows dropped since start because the writer fell behind.
 */
dropped: number, backends: Array<BackendStats>, };

export type AdminStats = { 
/**
 * Whether the capture store is on.
 */
capture_store: boolean, 
/**
 * Records the JSONL wire capture dropped because its writer fell behind.
 */
wire_capture_dropped: number, process: ProcessStats, 
/**
 * Every back-end and model called since llmux started: attempts, answers and
 * failures (failover legs included).
 */
legs: Array<LegStats>, 
/**
 * Every provider key by back-end, in rotation order: uses, failures, whether it is
 * cooling down and its last failure. Names only, never values.
 */
keys: Array<KeyHealth>, 
/**
 * The circuit breaker of every back-end that has failed since llmux started.
 */
breakers: Array<BreakerState>, 
/**
 * Every subscription login (openai-oauth, ...): whose it is, until when its token is
 * good, its last refresh and last problem. Never a token.
 */
logins: Array<LoginStatus>, requests: number, 
/**
 * Rows dropped since start because the writer fell behind.
 */
dropped: number, backends: Array<BackendStats>, };

export type ProcessStats = { 
/**
 * Client connections open, both ports.
 */
open_connections: number, 
/**
 * File descriptors open (sockets, files); `null` where the OS does not tell.
 */
open_fds: number | null, 
/**
 * Tasks alive on the async runtime.
 */
tokio_tasks: number, };

export type LegStats = { backend: string, model: string, attempts: number, 
/**
 * Attempts that got an answer.
 */
answered: number, 
/**
 * Failed attempts by how they failed (`429`, `503`, `timeout`, `connect`, ...).
 */
failed: { [key in string]: number }, 
/**
 * Failures since the last answer.
 */
consecutive_failures: number, 
/**
 * The last failure's message, and when (Unix seconds).
 */
last_error: string | null, last_error_at: number | null, };

export type KeyHealth = { backend: string, 
/**
 * The key's name (its variable or keychain entry), never its value.
 */
name: string, 
/**
 * Requests sent with it.
 */
uses: number, 
/**
 * Failures that made it cool down.
 */
failures: number, 
/**
 * Unix seconds until which it is left alone; absent when it is usable.
 */
cooling_until: number | null, last_error: string | null, };

export type BreakerState = { backend: string, 
/**
 * `closed`, `open` or `probing`.
 */
state: string, 
/**
 * Outages in a row so far (closed).
 */
failures: number, 
/**
 * Seconds of cool-down left (open).
 */
open_for_seconds: number | null, };

export type LoginStatus = { backend: string, 
/**
 * The back-end type (`openai-oauth`, ...).
 */
kind: string, path: string, 
/**
 * Whether the credential file exists (false: the user has not logged in with the CLI).
 */
found: boolean, email: string | null, plan: string | null, 
/**
 * Unix seconds the access token is good until, when known.
 */
valid_until: number | null, 
/**
 * Unix seconds of the last refresh llmux made.
 */
last_refresh: number | null, refreshes: number, last_error: string | null, 
/**
 * What to run to log in again.
 */
login_command: string, };

export type Intervention = { stage: string, detail: string, };

export type Usage = { group: string, requests: number, errors: number, input_tokens: number, output_tokens: number, };

export type TimelinePoint = { 
/**
 * The bucket's start, Unix seconds.
 */
start: number, requests: number, errors: number, input_tokens: number, output_tokens: number, mean_latency_ms: number, max_latency_ms: number, };

export type TimelineParams = { 
/**
 * Unix seconds; default: one day ago.
 */
since?: number, 
/**
 * Bucket width in seconds; default: the window in about 60 buckets, at least 1 s.
 */
bucket?: number, };

export type Timeline = { 
/**
 * The window's start and end, Unix seconds.
 */
since: number, until: number, 
/**
 * Bucket width in seconds; each point's `start` is a multiple of it.
 */
bucket: number, data: Array<TimelinePoint>, };

export type ReplayParams = { backend?: string, model?: string, };

export type Replayed = { status: number, 
/**
 * The new request's id; it is captured like any other.
 */
request_id: string | null, 
/**
 * The model string the replay asked for (`backend:model` when a back-end was chosen).
 */
model: string, 
/**
 * The answer's body: JSON when it is JSON, else its text.
 */
body: unknown, };

export type Settings = { 
/**
 * The file changes are saved to; `null` when llmux has none (no home directory).
 */
file: string | null, 
/**
 * Every effective value outside `[backends]`, with its source.
 */
values: Array<SettingValue>, backends: Array<BackendSetting>, 
/**
 * The back-end types a new back-end can have.
 */
backend_types: Array<string>, };

export type SettingValue = { 
/**
 * Dotted, as in `llmux config print`: `proxy.port`.
 */
key: string, value: unknown, 
/**
 * `default`, `file ...`, `environment NAME` or `command line --flag`.
 */
source: string, 
/**
 * Set by an environment variable or a flag: a value saved in the file does not apply
 * while that is so.
 */
overridden: boolean, 
/**
 * What the settings table says of the key (its kind for the editor, help, variable
 * and flags), for keys in the table.
 */
about: SettingInfo | null, };

export type SettingInfo = { kind: Kind, help: string, env: string | null, flags: Array<string>, };

export type Kind = "text" | "integer" | "number" | "bool" | "list" | "aliases";

export type BackendSetting = { id: string, type: string, base_url: string, 
/**
 * The environment variable its key is read from.
 */
api_key_env: string | null, models: Array<string>, 
/**
 * The name of the key in use (its environment variable, or its name in the keychain),
 * or `null`: no key.
 */
key_source: string | null, requires_key: boolean, 
/**
 * One of the back-ends llmux always has; its file entry can be removed, not it.
 */
builtin: boolean, 
/**
 * It has a table in the config file.
 */
in_file: boolean, };

export type SettingsChange = { set: Record<string, unknown>, remove: Array<string>, };

export type SettingsProblem = { key: string | null, message: string, };

export type Saved = { file: string, 
/**
 * Changed keys an environment variable or flag overrides: saved, not in effect.
 */
overridden: Array<string>, };

export type ClientStatus = { 
/**
 * `claude`, `codex` or `gemini`.
 */
id: string, name: string, 
/**
 * Its command is on llmux's PATH.
 */
installed: boolean, 
/**
 * Its settings already point at this llmux.
 */
connected: boolean, 
/**
 * The files connect edits.
 */
files: Array<string>, 
/**
 * Unix seconds of the last request llmux stored from it (its user agent), when the
 * capture store is on.
 */
last_seen: number | null, 
/**
 * Why its settings cannot be read or edited, when they cannot.
 */
problem: string | null, };

export type ClientAction = { undo: boolean, dry_run: boolean, };

export type ClientChanges = { diffs: Array<string>, applied: boolean, status: ClientStatus, };
