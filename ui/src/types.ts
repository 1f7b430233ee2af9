// The admin API's shapes. Everything but ServerInfo is generated from the engine's Rust
// types (src/admin, src/capture/store.rs) into generated/admin.ts.
export type {
  AdminStats as Stats,
  BackendStats,
  KeyHealth,
  ClientStatus,
  ClientAction,
  ClientChanges,
  LoginStatus,
  LegStats,
  ListParams,
  Replayed,
  ReplayParams,
  RequestRow,
  Saved,
  Settings,
  SettingsChange,
  SettingsProblem,
  SettingValue,
  SettingInfo,
  Kind,
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

// The desktop app's own commands (keys, proxy key, status), generated from src-tauri's types.
export type {
  BackendKeys,
  KeyInfo,
  ProxyKeyStatus,
  Release,
  Status as ProxyStatus,
  UpdateStatus,
} from "./generated/desktop";
