import { useCallback, useEffect, useState } from "react";
import { api, ApiError, apiKey, setApiKey } from "./api";
import { Inspector } from "./Inspector";
import { SettingsPage } from "./Settings";
import { UsagePage } from "./Usage";
import type { ServerInfo } from "./types";

type Page = "inspector" | "usage" | "settings";

function pageOf(hash: string): Page {
  if (hash.startsWith("#/usage")) return "usage";
  if (hash.startsWith("#/settings")) return "settings";
  return "inspector";
}

/** Asks for the proxy API key when the server answers 401. */
function KeyPrompt({ refused, onSaved }: { refused: boolean; onSaved: () => void }) {
  const [key, setKey] = useState(apiKey());
  return (
    <form
      className="key-prompt"
      onSubmit={(e) => {
        e.preventDefault();
        setApiKey(key.trim());
        onSaved();
      }}
    >
      <h2>This llmux needs its API key</h2>
      <p>
        The admin API sits behind the proxy key (<code>LLM_INTERACTIVE_PROXY_API_KEY</code> or{" "}
        <code>auth.api_keys</code>), the same key clients send. It is kept in this browser only.
      </p>
      {refused && (
        <p className="err" role="alert">
          llmux refused that key. Enter the key its clients use.
        </p>
      )}
      <input
        type="password"
        aria-label="API key"
        placeholder="proxy API key"
        value={key}
        onChange={(e) => setKey(e.target.value)}
        autoFocus
      />
      <button type="submit">Continue</button>
    </form>
  );
}

export function App() {
  const [page, setPage] = useState<Page>(pageOf(location.hash));
  const [info, setInfo] = useState<ServerInfo | null>(null);
  const [needKey, setNeedKey] = useState(false);
  const [generation, setGeneration] = useState(0);

  useEffect(() => {
    const onHash = () => setPage(pageOf(location.hash));
    window.addEventListener("hashchange", onHash);
    return () => window.removeEventListener("hashchange", onHash);
  }, []);

  useEffect(() => {
    let live = true;
    api
      .info()
      .then((i) => live && setInfo(i))
      .catch(() => live && setInfo(null));
    return () => {
      live = false;
    };
  }, [generation]);

  const onAuthError = useCallback((err: unknown) => {
    if (err instanceof ApiError && err.status === 401) setNeedKey(true);
  }, []);

  return (
    <div className="app">
      <header className="topbar">
        <span className="brand">llmux</span>
        <nav>
          <a href="#/" className={page === "inspector" ? "active" : ""}>
            Inspector
          </a>
          <a href="#/usage" className={page === "usage" ? "active" : ""}>
            Usage
          </a>
          <a href="#/settings" className={page === "settings" ? "active" : ""}>
            Settings
          </a>
        </nav>
        <span className="server">
          {info ? `v${info.version} · default back-end ${info.default_backend}` : ""}
        </span>
      </header>
      {needKey ? (
        <KeyPrompt
          refused={apiKey() !== ""}
          onSaved={() => {
            setNeedKey(false);
            setGeneration((g) => g + 1);
          }}
        />
      ) : page === "usage" ? (
        <UsagePage key={generation} onError={onAuthError} />
      ) : page === "settings" ? (
        <SettingsPage key={generation} onError={onAuthError} />
      ) : (
        <Inspector key={generation} info={info} onError={onAuthError} />
      )}
    </div>
  );
}
