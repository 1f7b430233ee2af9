// Generated from the desktop app's Rust types (src-tauri) by the `typescript` test in
// src-tauri/src/typescript.rs. Do not edit by hand.

export type State = "running" | "stopped" | "error";

export type Status = { state: State, 
/**
 * The main port's address: the bound one when running, else the configured one.
 */
address: string, 
/**
 * The dedicated Anthropic port, when configured.
 */
anthropic_address: string | null, default_backend: string, 
/**
 * Model requests served since the app started (both ports, every start): chat,
 * messages, responses and generateContent calls, not health checks, model lists, token
 * counts, the UI or the admin API.
 */
requests_served: number, 
/**
 * Input and output tokens of today's requests (local time), from the capture store;
 * none without one, or while the proxy is stopped.
 */
tokens_today: number | null, 
/**
 * Why the proxy is in the error state.
 */
error: string | null, 
/**
 * Running, but no back-end can reach a provider yet (no key, no login, nothing
 * added): only the mock answers.
 */
no_provider: boolean, };

export type KeySource = { "kind": "keychain" } | { "kind": "env", variable: string, };

export type KeyInfo = { name: string, source: KeySource, };

export type BackendKeys = { backend: string, kind: string, requires_key: boolean, 
/**
 * The environment variable read for this back-end's keys (and `_1` .. `_20`).
 */
key_env: string | null, 
/**
 * In the order the engine takes them (keychain first, then the environment); it uses
 * the first until key rotation lands.
 */
keys: Array<KeyInfo>, };

export type ProxyKeyStatus = { 
/**
 * Clients must send a key (this one, or one from the environment or the file).
 */
required: boolean, 
/**
 * The app keeps a key in the keychain.
 */
in_keychain: boolean, 
/**
 * How many keys come from elsewhere (LLM_INTERACTIVE_PROXY_API_KEY, auth.api_keys).
 */
other_keys: number, };

export type Release = { version: string, notes: string | null, 
/**
 * When it was published, as the manifest says (RFC 3339).
 */
date: string | null, };

export type UpdateStatus = { 
/**
 * Whether this build has an update source.
 */
enabled: boolean, 
/**
 * Why updates are off, or what is wrong with their settings.
 */
disabled_reason: string | null, current_version: string, 
/**
 * The newer release the last check found.
 */
available: Release | null, 
/**
 * Its package is downloaded and its signature checked: ready to install.
 */
downloaded: boolean, 
/**
 * Why the last check, download or install failed.
 */
last_error: string | null, };
