// The admin API's shapes. Everything but ServerInfo is generated from the engine's Rust
// types (src/admin, src/capture/store.rs) into generated/admin.ts.
export type {
  AdminStats as Stats,
  BackendStats,
  ListParams,
  Replayed,
  ReplayParams,
  RequestRow,
  Saved,
  Settings,
  SettingsChange,
  SettingsProblem,
  SettingValue,
  BackendSetting,
  Timeline,
  TimelinePoint,
  Usage,
} from "./generated/admin";

/** GET / : what llmux serves and which back-ends it has (built ad hoc in src/frontend). */
export interface ServerInfo {
  name: string;
  version: string;
  default_backend: string;
  backends: { id: string; type: string; default: boolean; usable: boolean }[];
  auth: boolean;
}

/** A key's name and where it comes from (the desktop app's `list_keys`); never its value. */
export interface KeyInfo {
  name: string;
  source: { kind: "keychain" } | { kind: "env"; variable: string };
}

/** The keys of one back-end, in the order the engine rotates them. */
export interface BackendKeys {
  backend: string;
  kind: string;
  requires_key: boolean;
  key_env: string | null;
  keys: KeyInfo[];
}

/** The desktop app's proxy key: whether clients must send one, and where it is kept. */
export interface ProxyKeyStatus {
  required: boolean;
  in_keychain: boolean;
  other_keys: number;
}
