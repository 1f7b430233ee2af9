// Coding agents in the settings page: whether Claude Code, Codex CLI and Gemini CLI are
// installed, whether their settings point at llmux, when llmux last saw them, and a
// connect / disconnect that shows the change to their files before making it.
import { useEffect, useState } from "react";
import { api } from "./api";
import { formatTime } from "./format";
import type { ClientStatus } from "./types";

/** A change waiting for the user's yes: the diffs and what applying it does. */
interface Pending {
  id: string;
  undo: boolean;
  diffs: string[];
}

/** One line of what an agent's state is, for its row. */
export function clientState(client: ClientStatus): string {
  if (client.problem) return client.problem;
  if (client.connected) return "uses llmux";
  return client.installed ? "installed, not connected" : "not installed here";
}

export function ClientsSection() {
  const [clients, setClients] = useState<ClientStatus[]>([]);
  const [pending, setPending] = useState<Pending | null>(null);
  const [message, setMessage] = useState("");
  const refresh = () =>
    api
      .clients()
      .then(setClients)
      .catch((err) => setMessage(String(err.message ?? err)));
  useEffect(() => {
    refresh();
  }, []);
  const preview = (id: string, undo: boolean) =>
    api
      .changeClient(id, { undo, dry_run: true })
      .then((changes) => setPending({ id, undo, diffs: changes.diffs }))
      .catch((err) => setMessage(String(err.message ?? err)));
  const apply = (change: Pending) =>
    api
      .changeClient(change.id, { undo: change.undo, dry_run: false })
      .then((changes) => {
        setPending(null);
        setMessage(`${changes.status.name} ${change.undo ? "no longer uses" : "now uses"} llmux.`);
        refresh();
      })
      .catch((err) => setMessage(String(err.message ?? err)));
  return (
    <section data-testid="clients">
      <h2>Clients</h2>
      <p className="muted">
        Point your coding agents at llmux. llmux edits only the keys it needs in each agent&apos;s own settings, keeps a
        backup beside each file, and shows the change first.
      </p>
      <table>
        <thead>
          <tr>
            <th>agent</th>
            <th>state</th>
            <th>last request</th>
            <th></th>
          </tr>
        </thead>
        <tbody>
          {clients.map((client) => (
            <tr key={client.id} data-client={client.id}>
              <td>
                <strong>{client.name}</strong>
                {client.files.map((file) => (
                  <div key={file} className="muted">
                    <code>{file}</code>
                  </div>
                ))}
              </td>
              <td className={client.problem ? "err" : client.connected ? "" : "muted"}>{clientState(client)}</td>
              <td className="muted">{client.last_seen != null ? formatTime(client.last_seen) : "never"}</td>
              <td>
                {client.connected ? (
                  <button className="link" onClick={() => preview(client.id, true)}>
                    Disconnect
                  </button>
                ) : (
                  !client.problem && (
                    <button className="link" onClick={() => preview(client.id, false)}>
                      Connect
                    </button>
                  )
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {pending && (
        <div className="client-change" role="dialog" aria-label="client change">
          <p>{pending.diffs.length ? "These changes will be made:" : "Nothing needs to change."}</p>
          {pending.diffs.map((diff) => (
            <pre key={diff} className="diff">
              {diff}
            </pre>
          ))}
          <button onClick={() => apply(pending)}>Apply</button>{" "}
          <button className="link" onClick={() => setPending(null)}>
            Cancel
          </button>
        </div>
      )}
      {message && (
        <p role="status" className="muted">
          {message}
        </p>
      )}
    </section>
  );
}
