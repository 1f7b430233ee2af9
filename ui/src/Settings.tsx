import { useCallback, useEffect, useMemo, useState } from "react";
import { api, ApiError } from "./api";
import { AccountsSection } from "./Accounts";
import { ClientsSection } from "./Clients";
import { GuideSection, hasProvider } from "./Guide";
import { UpdatesSection } from "./Updates";
import { KeysSection, ProxyKeyRow } from "./Keys";
import type {
  BackendSetting,
  Kind,
  SettingInfo,
  Settings,
  SettingsChange,
  SettingsProblem,
  SettingValue,
} from "./types";

/** The values the "Server" section shows first; every other one is under "All settings". */
const SERVER_KEYS = ["proxy.host", "proxy.port", "proxy.anthropic_port", "default_backend"];
const LABELS: Record<string, string> = {
  "proxy.host": "Host",
  "proxy.port": "Port",
  "proxy.anthropic_port": "Anthropic port (0: off)",
  default_backend: "Default back-end",
};

type Draft = Record<string, unknown>;

/** Problems about `key` or anything under it. */
export function problemsFor(problems: SettingsProblem[], key: string): SettingsProblem[] {
  return problems.filter((p) => p.key === key || p.key?.startsWith(`${key}.`));
}

/** The kind of a setting's value: the settings table's word for it, else its value's type. */
export function kindOf(setting: Pick<SettingValue, "value" | "about">): Kind {
  if (setting.about) return setting.about.kind;
  const v = setting.value;
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  if (typeof v === "boolean") return "bool";
  if (Array.isArray(v)) return v.every((x) => typeof x === "string") ? "list" : "aliases";
  return "text";
}

/**
 * A draft value back in the type the setting has. An emptied field of a setting that had
 * no value is `null`: the key is left out of the file again.
 */
export function parseInput(setting: Pick<SettingValue, "value" | "about">, text: string): unknown {
  const kind = kindOf(setting);
  if (text.trim() === "" && setting.value === null) return null;
  if (kind === "integer" || kind === "number") {
    const n = Number(text);
    return text.trim() === "" || Number.isNaN(n) ? text : n;
  }
  if (kind === "list") {
    return text
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean);
  }
  return text;
}

/** Where else the value can come from: its environment variable and flags. */
function overrides(about: SettingInfo | null): string {
  if (!about) return "";
  return [about.env, ...about.flags].filter(Boolean).join(", ");
}

function display(value: unknown): string {
  if (Array.isArray(value)) return value.every((v) => typeof v === "string") ? value.join(", ") : JSON.stringify(value);
  if (value === null || value === undefined) return "";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

/** Secrets that must not go into the file from here (the proxy's keys). */
const SECRET_SETTINGS = new Set(["auth.api_keys"]);

/** Arrays of tables (model aliases) and secrets are shown, not edited, here. */
function editable(setting: SettingValue): boolean {
  if (SECRET_SETTINGS.has(setting.key) || kindOf(setting) === "aliases") return false;
  const v = setting.value;
  if (Array.isArray(v)) return v.every((x) => typeof x === "string" && x !== "****");
  return typeof v !== "object" || v === null;
}

function Problems({ list }: { list: SettingsProblem[] }) {
  return (
    <>
      {list.map((p, i) => (
        <div key={i} className="field-error" role="alert">
          {p.message}
        </div>
      ))}
    </>
  );
}

function SettingField({
  setting,
  draft,
  problems,
  onChange,
  options,
}: {
  setting: SettingValue;
  draft: Draft;
  problems: SettingsProblem[];
  onChange: (key: string, value: unknown) => void;
  options?: string[];
}) {
  const value = setting.key in draft ? draft[setting.key] : setting.value;
  const id = `setting-${setting.key}`;
  let input;
  if (options) {
    input = (
      <select id={id} value={String(value)} onChange={(e) => onChange(setting.key, e.target.value)}>
        {options.map((o) => (
          <option key={o}>{o}</option>
        ))}
      </select>
    );
  } else if (kindOf(setting) === "bool") {
    input = (
      <input
        id={id}
        type="checkbox"
        checked={Boolean(value)}
        onChange={(e) => onChange(setting.key, e.target.checked)}
      />
    );
  } else {
    input = (
      <input
        id={id}
        value={display(value)}
        readOnly={!editable(setting)}
        inputMode={kindOf(setting) === "integer" ? "numeric" : kindOf(setting) === "number" ? "decimal" : undefined}
        placeholder={setting.value === null ? "not set" : undefined}
        onChange={(e) => onChange(setting.key, parseInput(setting, e.target.value))}
      />
    );
  }
  const mine = problemsFor(problems, setting.key);
  return (
    <div className={`setting ${mine.length ? "invalid" : ""}`} data-key={setting.key}>
      <label htmlFor={id} title={setting.about?.help}>
        {LABELS[setting.key] ?? setting.key}
      </label>
      {input}
      <span className={`source ${setting.overridden ? "warn" : "muted"}`}>
        {setting.overridden ? `set by ${setting.source}: the file's value does not apply` : setting.source}
      </span>
      {setting.about && (
        <span className="help muted">
          {setting.about.help}
          {overrides(setting.about) && <> ({overrides(setting.about)})</>}
        </span>
      )}
      <Problems list={mine} />
    </div>
  );
}

const EMPTY_BACKEND = { id: "", type: "openai-compatible", base_url: "", api_key_env: "", models: "" };

function BackendForm({
  types,
  problems,
  onSave,
  start,
}: {
  types: string[];
  problems: SettingsProblem[];
  onSave: (id: string, set: Draft) => void;
  start: typeof EMPTY_BACKEND;
}) {
  const [form, setForm] = useState(start);
  const set = (change: Partial<typeof form>) => setForm((f) => ({ ...f, ...change }));
  const id = form.id.trim();
  return (
    <form
      className="backend-form"
      aria-label="back-end"
      onSubmit={(e) => {
        e.preventDefault();
        const models = form.models.split(",").map((m) => m.trim()).filter(Boolean);
        onSave(id, {
          [`backends.${id}.type`]: form.type,
          [`backends.${id}.base_url`]: form.base_url.trim() || null,
          [`backends.${id}.api_key_env`]: form.api_key_env.trim() || null,
          [`backends.${id}.models`]: models.length ? models : null,
        });
      }}
    >
      <input aria-label="back-end name" placeholder="name, e.g. local" value={form.id} onChange={(e) => set({ id: e.target.value })} />
      <select aria-label="back-end type" value={form.type} onChange={(e) => set({ type: e.target.value })}>
        {types.map((t) => (
          <option key={t}>{t}</option>
        ))}
      </select>
      <input
        aria-label="base URL"
        placeholder="base URL (default for the type)"
        value={form.base_url}
        onChange={(e) => set({ base_url: e.target.value })}
      />
      <input
        aria-label="key variable"
        placeholder="key env variable, e.g. LOCAL_KEY"
        value={form.api_key_env}
        onChange={(e) => set({ api_key_env: e.target.value })}
      />
      <input aria-label="models" placeholder="models, comma-separated" value={form.models} onChange={(e) => set({ models: e.target.value })} />
      <button type="submit" disabled={!id}>
        Save back-end
      </button>
      <Problems list={id ? problemsFor(problems, `backends.${id}`) : []} />
    </form>
  );
}

function keyNote(b: BackendSetting): string {
  if (b.key_source) return `key ${b.key_source}`;
  if (!b.requires_key) return "needs no key";
  const variable = b.api_key_env ?? "its key variable";
  return api.canStoreKeys()
    ? `no key: add one under Keys, or set ${variable}`
    : `no key: set ${variable} in llmux's environment`;
}

/** After a port or host change the page follows llmux to its new address. */
function newAddress(change: Draft, settings: Settings): URL | null {
  const host = change["proxy.host"];
  const port = change["proxy.port"];
  if (host === undefined && port === undefined) return null;
  if (typeof location === "undefined" || !location.protocol.startsWith("http")) return null;
  const url = new URL(location.href);
  if (typeof port === "number") url.port = String(port);
  const bind = typeof host === "string" ? host : String(settings.values.find((v) => v.key === "proxy.host")?.value ?? "");
  if (!["0.0.0.0", "::", ""].includes(bind)) url.hostname = bind.includes(":") ? `[${bind}]` : bind;
  return url;
}

async function waitUntilUp(url: URL, tries = 50): Promise<void> {
  for (let i = 0; i < tries; i++) {
    try {
      // Another origin: an opaque answer is enough to know it listens.
      await fetch(new URL("/health", url), { mode: "no-cors" });
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

/** The settings; retried for a few seconds, since the listeners restart after a port change. */
async function settingsWithRetry(attempts = 10): Promise<Settings> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await api.settings();
    } catch (err) {
      if (attempt >= attempts || (err instanceof ApiError && err.status === 401)) throw err;
      await new Promise((r) => setTimeout(r, 300));
    }
  }
}

export function SettingsPage({ onError }: { onError: (err: unknown) => void }) {
  const [settings, setSettings] = useState<Settings | null>(null);
  const [draft, setDraft] = useState<Draft>({});
  const [problems, setProblems] = useState<SettingsProblem[]>([]);
  const [notice, setNotice] = useState("");
  const [error, setError] = useState("");
  const [editing, setEditing] = useState<typeof EMPTY_BACKEND | null>(null);
  const [busy, setBusy] = useState(false);

  const load = useCallback(
    () =>
      settingsWithRetry()
        .then((s) => {
          setSettings(s);
          setError("");
        })
        .catch((err) => {
          setError(err instanceof Error ? err.message : String(err));
          onError(err);
        }),
    [onError],
  );
  useEffect(() => {
    load();
  }, [load]);

  const save = (change: SettingsChange, after?: () => void) => {
    if (!settings) return;
    setBusy(true);
    setNotice("");
    api
      .changeSettings(change)
      .then(async (saved) => {
        setProblems([]);
        setDraft({});
        after?.();
        const moved = newAddress(change.set, settings);
        const overridden = saved.overridden.length
          ? ` Not in effect while set elsewhere: ${saved.overridden.join(", ")}.`
          : "";
        if (moved && !api.canStoreKeys()) {
          setNotice(`Saved to ${saved.file}. llmux moved to ${moved.host}; following it…`);
          await waitUntilUp(moved);
          location.assign(moved.toString());
          return;
        }
        setNotice(`Saved to ${saved.file} and applied.${overridden}`);
        setTimeout(() => load(), 300);
      })
      .catch((err) => {
        if (err instanceof ApiError && err.problems.length) setProblems(err.problems);
        else {
          setError(err instanceof Error ? err.message : String(err));
          onError(err);
        }
      })
      .finally(() => setBusy(false));
  };

  const values = useMemo(() => new Map(settings?.values.map((v) => [v.key, v]) ?? []), [settings]);
  if (!settings) return <div className="empty">{error || "Loading settings…"}</div>;

  const change = (key: string, value: unknown) => setDraft((d) => ({ ...d, [key]: value }));
  const changed = Object.keys(draft).length;
  const fieldKeys = new Set(SERVER_KEYS);
  const unplaced = problems.filter((p) => !p.key || ![...values.keys()].some((k) => p.key === k || p.key?.startsWith(`${k}.`)));
  const others = settings.values.filter((v) => !fieldKeys.has(v.key));

  return (
    <div className="settings" data-testid="settings">
      <p className="muted">
        Saved to <code>{settings.file ?? "(no config file)"}</code>. Every change is checked by llmux's own
        validation, then applied at once: the next request uses it while running requests finish as they started
        (a new address or port restarts the listeners).
      </p>
      {notice && (
        <div className="notice" role="status">
          {notice}
        </div>
      )}
      {error && <div className="error-banner">{error}</div>}
      <Problems list={editing ? [] : unplaced} />
      {!hasProvider(settings.backends) && (
        <GuideSection backends={settings.backends} canStoreKeys={api.canStoreKeys()} />
      )}

      <h2>Server</h2>
      {SERVER_KEYS.map((key) => {
        const setting = values.get(key);
        return (
          setting && (
            <SettingField
              key={key}
              setting={setting}
              draft={draft}
              problems={problems}
              onChange={change}
              options={key === "default_backend" ? settings.backends.map((b) => b.id) : undefined}
            />
          )
        );
      })}

      <ProxyKeyRow keysSetting={values.get("auth.api_keys")} />

      <h2>Back-ends</h2>
      <table className="backends" data-testid="backends">
        <thead>
          <tr>
            <th>name</th>
            <th>type</th>
            <th>base URL</th>
            <th>models</th>
            <th>key</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {settings.backends.map((b) => (
            <tr key={b.id} data-backend={b.id}>
              <td>{b.id}</td>
              <td>{b.type}</td>
              <td className="url">{b.base_url}</td>
              <td>{b.models.join(", ") || <span className="muted">any</span>}</td>
              <td className={b.key_source || !b.requires_key ? "muted" : "warn"}>{keyNote(b)}</td>
              <td className="row-actions">
                <button
                  className="link"
                  onClick={() =>
                    setEditing({
                      id: b.id,
                      type: b.type,
                      base_url: b.base_url,
                      api_key_env: b.api_key_env ?? "",
                      models: b.models.join(", "),
                    })
                  }
                >
                  edit
                </button>
                {b.in_file && (
                  <button className="link danger" onClick={() => save({ set: {}, remove: [`backends.${b.id}`] })}>
                    {b.builtin ? "reset" : "remove"}
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {editing ? (
        <BackendForm
          key={editing.id || "new"}
          types={settings.backend_types}
          problems={problems}
          start={editing}
          onSave={(_id, set) => save({ set, remove: [] }, () => setEditing(null))}
        />
      ) : (
        <button onClick={() => setEditing(EMPTY_BACKEND)}>Add a back-end</button>
      )}
      <p className="muted">
        Keys are never written to the file.{" "}
        {api.canStoreKeys()
          ? "Keys entered below go to the OS keychain; environment variables still work."
          : "Give llmux a back-end's key through the environment variable named above, then restart it."}
      </p>
      {api.canStoreKeys() && <KeysSection backends={settings.backends} />}
      <AccountsSection />
      <ClientsSection />
      {api.canStoreKeys() && <UpdatesSection />}

      <h2>All settings</h2>
      <div className="all-settings">
        {others.map((setting) => (
          <SettingField key={setting.key} setting={setting} draft={draft} problems={problems} onChange={change} />
        ))}
      </div>

      <div className="save-bar">
        <button disabled={!changed || busy} onClick={() => save({ set: draft, remove: [] })}>
          {busy ? "Saving…" : changed ? `Save ${changed} change${changed > 1 ? "s" : ""}` : "No changes"}
        </button>
        {changed > 0 && (
          <button className="link" onClick={() => (setDraft({}), setProblems([]))}>
            discard
          </button>
        )}
      </div>
    </div>
  );
}
