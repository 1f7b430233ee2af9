// Updates in the desktop app's settings: the version running, a check for a newer release,
// and (once its package is downloaded and its signature checked) the button that installs
// it and restarts. Builds without an update address say so instead.
import { useEffect, useState } from "react";
import { api } from "./api";
import type { UpdateStatus } from "./types";

/** The line that says where updates stand. */
export function updateLine(status: UpdateStatus): string {
  if (!status.enabled) {
    return `Updates are off: ${status.disabled_reason ?? "this build has no update address"}.`;
  }
  if (status.available) {
    const ready = status.downloaded ? " Its package is downloaded and its signature checks." : "";
    return `llmux ${status.available.version} is available (you run ${status.current_version}).${ready}`;
  }
  return `You run llmux ${status.current_version}.`;
}

export function UpdatesSection() {
  const [status, setStatus] = useState<UpdateStatus | null>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    api.updateStatus().then(setStatus, (e: Error) => setError(e.message));
  }, []);

  const run = async (what: string, step: () => Promise<UpdateStatus | void>) => {
    setBusy(what);
    setError(null);
    try {
      const next = await step();
      if (next) setStatus(next);
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(null);
    }
  };

  if (!status) {
    return error ? <p className="err">{error}</p> : null;
  }
  return (
    <section className="updates">
      <h2>Updates</h2>
      <p data-update-line>{updateLine(status)}</p>
      {status.available?.notes && <pre className="release-notes">{status.available.notes}</pre>}
      {status.enabled && (
        <div className="row">
          <button disabled={busy != null} onClick={() => run("checking", api.checkForUpdate)}>
            {busy === "checking" ? "Checking…" : "Check for updates"}
          </button>
          {status.available && !status.downloaded && (
            <button disabled={busy != null} onClick={() => run("downloading", api.downloadUpdate)}>
              {busy === "downloading" ? "Downloading…" : `Download ${status.available.version}`}
            </button>
          )}
          {status.available && status.downloaded && (
            <button disabled={busy != null} onClick={() => run("installing", api.installUpdate)}>
              {busy === "installing" ? "Installing…" : "Install and restart"}
            </button>
          )}
        </div>
      )}
      {(error ?? status.last_error) && <p className="err">{error ?? status.last_error}</p>}
    </section>
  );
}
