// The only place that knows how the UI reaches the engine: Tauri `invoke` inside the
// desktop app, HTTP `/admin/api` everywhere else. Components import these functions only.
import { invoke, isTauri } from "@tauri-apps/api/core";
import type {
  BackendKeys,
  ClientAction,
  ClientChanges,
  ClientStatus,
  ListParams,
  ProxyKeyStatus,
  ReplayParams,
  Replayed,
  RequestRow,
  Saved,
  ServerInfo,
  Settings,
  SettingsChange,
  SettingsProblem,
  Stats,
  Timeline,
  UpdateStatus,
  Usage,
} from "./types";

/** An error the engine answered with, in its OpenAI shape, or a transport failure. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    /** Field-level problems, when the engine names them (a refused settings change). */
    readonly problems: SettingsProblem[] = [],
  ) {
    super(message);
    this.name = "ApiError";
  }
}


const KEY_STORAGE = "llmux.apiKey";

/** The proxy API key the browser sends, when the server asks for one. */
export function apiKey(): string {
  return globalThis.localStorage?.getItem(KEY_STORAGE) ?? "";
}

export function setApiKey(key: string): void {
  if (key) globalThis.localStorage?.setItem(KEY_STORAGE, key);
  else globalThis.localStorage?.removeItem(KEY_STORAGE);
}

/** `path` relative to the server root, whether the page is at /ui/ or elsewhere. */
function url(path: string, params?: object): string {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params ?? {})) {
    if (value !== undefined && value !== null && value !== "") query.set(name, String(value));
  }
  const qs = query.toString();
  return `${path}${qs ? `?${qs}` : ""}`;
}

async function http<T>(method: string, path: string, params?: object, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  const key = apiKey();
  if (key) headers.authorization = `Bearer ${key}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  let response: Response;
  try {
    response = await fetch(url(path, params), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(`llmux did not answer: ${String(err)}`, 0);
  }
  const text = await response.text();
  if (!response.ok) {
    let message = text || response.statusText;
    let problems: SettingsProblem[] = [];
    try {
      const error = (JSON.parse(text) as { error?: { message?: string; problems?: SettingsProblem[] } })
        .error;
      message = error?.message ?? message;
      problems = error?.problems ?? [];
    } catch {
      // not JSON: keep the text
    }
    throw new ApiError(message, response.status, problems);
  }
  const type = response.headers.get("content-type") ?? "";
  return (type.includes("json") && !type.includes("ndjson") ? JSON.parse(text) : text) as T;
}

/** One admin call: a Tauri command named `admin_<name>` or an HTTP request. */
async function call<T>(
  name: string,
  args: Record<string, unknown>,
  viaHttp: () => Promise<T>,
): Promise<T> {
  if (!isTauri()) return viaHttp();
  try {
    return await invoke<T>(`admin_${name}`, args);
  } catch (err) {
    const e = err as { message?: string; status?: number; problems?: SettingsProblem[] };
    throw new ApiError(e?.message ?? String(err), e?.status ?? 500, e?.problems ?? []);
  }
}

/** A command only the desktop app has (the keychain). */
async function desktop<T>(command: string, args: Record<string, unknown>): Promise<T> {
  if (!isTauri()) throw new ApiError("keys are kept by the desktop app; the server reads them from its environment", 404);
  try {
    return await invoke<T>(command, args);
  } catch (err) {
    throw new ApiError(typeof err === "string" ? err : String((err as Error)?.message ?? err), 400);
  }
}

export const api = {
  info: () => call("info", {}, () => http<ServerInfo>("GET", "/")),
  requests: (params: ListParams) =>
    call("requests", { params }, () =>
      http<{ data: RequestRow[] }>("GET", "/admin/api/requests", params).then((r) => r.data),
    ),
  request: (id: string) =>
    call("request", { id }, () =>
      http<RequestRow>("GET", `/admin/api/requests/${encodeURIComponent(id)}`),
    ),
  deleteRequest: (id: string) =>
    call("delete_request", { id }, () =>
      http<unknown>("DELETE", `/admin/api/requests/${encodeURIComponent(id)}`).then(() => undefined),
    ),
  curl: (id: string) =>
    call("curl", { id }, () =>
      http<string>("GET", `/admin/api/requests/${encodeURIComponent(id)}/curl`),
    ),
  replay: (id: string, target: ReplayParams) =>
    call("replay", { id, target }, () =>
      http<Replayed>("POST", `/admin/api/requests/${encodeURIComponent(id)}/replay`, undefined, target),
    ),
  stats: () => call("stats", {}, () => http<Stats>("GET", "/admin/api/stats")),
  usage: (by: string) =>
    call("usage", { by }, () =>
      http<{ data: Usage[] }>("GET", "/admin/api/usage", { by }).then((r) => r.data),
    ),
  timeline: (since: number, bucket?: number) =>
    call("timeline", { since, bucket }, () =>
      http<Timeline>("GET", "/admin/api/timeline", { since, bucket }),
    ),
  settings: () => call("settings", {}, () => http<Settings>("GET", "/admin/api/settings")),
  /** A short greeting to `model` through llmux, to check a provider works. */
  testRequest: (model: string) =>
    call("test", { model }, () => http<Replayed>("POST", "/admin/api/test", undefined, { model })),
  /** The coding agents on this machine and whether they use llmux. */
  clients: () => call("clients", {}, () => http<ClientStatus[]>("GET", "/admin/api/clients")),
  /** Connects (or with `undo` disconnects) an agent; `dry_run` only answers the diffs. */
  changeClient: (id: string, action: ClientAction) =>
    call("change_client", { id, action }, () =>
      http<ClientChanges>("POST", `/admin/api/clients/${encodeURIComponent(id)}`, undefined, action),
    ),
  /** Checks, saves and applies a change; refused changes throw an ApiError with problems. */
  changeSettings: (change: SettingsChange) =>
    call("change_settings", { change }, () =>
      http<Saved>("PUT", "/admin/api/settings", undefined, change),
    ),
  /** Whether keys can be stored from this window (the desktop app's keychain). */
  canStoreKeys: () => isTauri(),
  /** The desktop app's keys per back-end: names and sources, never values. */
  keys: () => desktop<BackendKeys[]>("list_keys", {}),
  /** Stores a key in the OS keychain; the proxy restarts with it. */
  saveKey: (backend: string, name: string, secret: string) =>
    desktop<BackendKeys[]>("save_key", { backend, name, secret }),
  deleteKey: (backend: string, name: string) =>
    desktop<BackendKeys[]>("delete_key", { backend, name }),
  proxyKeyStatus: () => desktop<ProxyKeyStatus>("proxy_key_status", {}),
  /** A new proxy key, kept in the keychain and put on the clipboard (never sent here). */
  generateProxyKey: () => desktop<ProxyKeyStatus>("generate_proxy_key", {}),
  copyProxyKey: () => desktop<void>("copy_proxy_key", {}),
  removeProxyKey: () => desktop<ProxyKeyStatus>("remove_proxy_key", {}),
  /** Whether this build checks for updates, and what the last check found. */
  updateStatus: () => desktop<UpdateStatus>("update_status", {}),
  checkForUpdate: () => desktop<UpdateStatus>("check_for_update", {}),
  /** Downloads the release found; kept only when its signature checks. */
  downloadUpdate: () => desktop<UpdateStatus>("download_update", {}),
  /** Installs the downloaded release and restarts the app into it. */
  installUpdate: () => desktop<void>("install_update", {}),
  /** The matching requests with their bodies, as JSON Lines. */
  exportJsonl: (params: ListParams) =>
    call("export", { params }, () => http<string>("GET", "/admin/api/export", params)),
};
