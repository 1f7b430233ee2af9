// Keys in the settings page: the desktop app's provider keys (OS keychain) and the proxy's
// own API key. Secrets go in through these forms and never come back.
import { useEffect, useState } from "react";
import { api } from "./api";
import { formatTime } from "./format";
import type { BackendKeys, BackendSetting, KeyHealth, ProxyKeyStatus, SettingValue } from "./types";

/** What the running proxy says of a key: resting until when, and its last failure. */
function KeyState({ health }: { health?: KeyHealth }) {
  if (!health) return null;
  if (health.cooling_until != null) {
    return (
      <span className="warn key-health" title={health.last_error ?? ""}>
        cooling down until {formatTime(health.cooling_until)}
      </span>
    );
  }
  return (
    <span className="muted key-health" title={health.last_error ?? ""}>
      {health.uses} uses{health.failures > 0 && `, ${health.failures} failed`}
    </span>
  );
}

/** The desktop app's keys: names and sources per back-end, a form to add one, and delete
 * for keychain keys. Secrets go in, never come back. */
export function KeysSection({ backends }: { backends: BackendSetting[] }) {
  const [keys, setKeys] = useState<BackendKeys[]>([]);
  const [health, setHealth] = useState<KeyHealth[]>([]);
  const [backend, setBackend] = useState(backends.find((b) => b.requires_key)?.id ?? "");
  const [name, setName] = useState("");
  const [secret, setSecret] = useState("");
  const [message, setMessage] = useState("");
  const [failed, setFailed] = useState(false);
  // Key health is the running proxy's; a proxy that is off has none to show.
  const refreshHealth = () =>
    api
      .stats()
      .then((stats) => setHealth(stats.keys))
      .catch(() => setHealth([]));
  useEffect(() => {
    refreshHealth();
    api
      .keys()
      .then(setKeys)
      .catch((err) => {
        setFailed(true);
        setMessage(String(err.message ?? err));
      });
  }, []);
  const done = (text: string) => (listed: BackendKeys[]) => {
    setKeys(listed);
    setFailed(false);
    setMessage(text);
    // The proxy applies the changed keys: ask it again in a moment.
    setTimeout(refreshHealth, 1000);
  };
  const fail = (err: Error) => {
    setFailed(true);
    setMessage(err.message);
  };
  const chosen = keys.find((k) => k.backend === backend);
  return (
    <>
      <h2>Keys</h2>
      <table className="backends" data-testid="keys">
        <thead>
          <tr>
            <th>back-end</th>
            <th>keys, in rotation order (a rate-limited key cools down and the next one is used)</th>
          </tr>
        </thead>
        <tbody>
          {keys
            .filter((k) => k.requires_key || k.keys.length)
            .map((k) => (
              <tr key={k.backend} data-keys={k.backend}>
                <td>{k.backend}</td>
                <td>
                  {k.keys.length === 0 && <span className="warn">none: add one below or set {k.key_env}</span>}
                  {k.keys.map((key) => (
                    <span key={key.name} className="key-chip">
                      {key.name}{" "}
                      <span className="muted">
                        {key.source.kind === "keychain" ? "keychain" : `environment ${key.source.variable}`}
                      </span>
                      <KeyState health={health.find((h) => h.backend === k.backend && h.name === key.name)} />
                      {key.source.kind === "keychain" && (
                        <button
                          className="link danger"
                          aria-label={`delete ${k.backend} key ${key.name}`}
                          onClick={() =>
                            api.deleteKey(k.backend, key.name).then(done(`Deleted ${key.name}.`)).catch(fail)
                          }
                        >
                          delete
                        </button>
                      )}
                    </span>
                  ))}
                </td>
              </tr>
            ))}
        </tbody>
      </table>
      <form
        className="backend-form"
        aria-label="add a key"
        onSubmit={(e) => {
          e.preventDefault();
          const keyName = name.trim() || chosen?.key_env || "default";
          api
            .saveKey(backend, keyName, secret)
            .then(done(`Saved ${keyName} for ${backend} in the keychain; the proxy uses it now.`))
            .then(() => setSecret(""))
            .catch(fail);
        }}
      >
        <select aria-label="key back-end" value={backend} onChange={(e) => setBackend(e.target.value)}>
          {backends.map((b) => (
            <option key={b.id}>{b.id}</option>
          ))}
        </select>
        <input
          aria-label="key name"
          placeholder={`name (default ${chosen?.key_env ?? "default"})`}
          value={name}
          onChange={(e) => setName(e.target.value)}
        />
        <input
          aria-label="key secret"
          type="password"
          autoComplete="off"
          placeholder="the key"
          value={secret}
          onChange={(e) => setSecret(e.target.value)}
        />
        <button type="submit" disabled={!backend || !secret}>
          Save key
        </button>
      </form>
      {message && (
        <p className={failed ? "err" : "ok"} role="status">
          {message}
        </p>
      )}
    </>
  );
}

/** Whether clients must send a key. The desktop app generates one into the keychain and
 * copies it to the clipboard; the server takes its keys from its environment or file. */
export function ProxyKeyRow({ keysSetting }: { keysSetting?: SettingValue }) {
  const [status, setStatus] = useState<ProxyKeyStatus | null>(null);
  const [message, setMessage] = useState("");
  const inApp = api.canStoreKeys();
  useEffect(() => {
    if (inApp) api.proxyKeyStatus().then(setStatus).catch((err) => setMessage(String(err.message ?? err)));
  }, [inApp]);
  const act = (call: Promise<ProxyKeyStatus | void>, done: string) =>
    call
      .then((s) => {
        if (s) setStatus(s);
        setMessage(done);
      })
      .catch((err) => setMessage(String(err.message ?? err)));
  const fromConfig = Array.isArray(keysSetting?.value) ? keysSetting.value.length : 0;
  const required = status ? status.required : fromConfig > 0;
  return (
    <div className="setting" data-key="proxy-key">
      <label>Proxy API key</label>
      <span data-testid="proxy-key-state">
        {required ? "required: clients must send it" : "not required (loopback clients only)"}
        {status?.in_keychain ? " · kept in the keychain" : ""}
        {(status?.other_keys ?? fromConfig) > 0 && !status?.in_keychain
          ? ` · from ${keysSetting?.source ?? "the config"}`
          : ""}
      </span>
      <span className="actions">
        {inApp && (
          <>
            <button onClick={() => act(api.generateProxyKey(), "A new key is on the clipboard: give it to your clients as their API key.")}>
              {status?.in_keychain ? "New key" : "Require a key"}
            </button>
            {status?.in_keychain && (
              <>
                <button onClick={() => act(api.copyProxyKey(), "The key is on the clipboard.")}>Copy key</button>
                <button className="danger" onClick={() => act(api.removeProxyKey(), "Clients no longer need the app's key.")}>
                  Stop requiring
                </button>
              </>
            )}
          </>
        )}
        {!inApp && <span className="muted">set LLM_INTERACTIVE_PROXY_API_KEY in llmux's environment</span>}
      </span>
      {message && (
        <div className="field-note" role="status">
          {message}
        </div>
      )}
    </div>
  );
}
