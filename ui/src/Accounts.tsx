// Subscription logins in the settings page: which CLI login each subscription back-end
// uses, whose it is, until when its token is good, and what to run when it needs a new
// login. The tokens themselves never reach the page.
import { useEffect, useState } from "react";
import { api } from "./api";
import { formatTime } from "./format";
import type { LoginStatus } from "./types";

/** How a login stands now: usable, expiring, or waiting for the user to log in again. */
export function loginState(
  login: LoginStatus,
  now: number,
): { text: string; tone: "ok" | "warn" | "bad" | "none" } {
  if (!login.found) {
    return { text: login.last_error ?? "not logged in", tone: login.last_error ? "bad" : "none" };
  }
  if (login.last_error) {
    return { text: login.last_error, tone: "bad" };
  }
  if (login.valid_until == null) {
    return { text: "not read yet", tone: "warn" };
  }
  if (login.valid_until <= now) {
    // llmux refreshes an expired token on the next request; it is not broken yet.
    return { text: `token expired ${formatTime(login.valid_until)}; renewed on the next request`, tone: "warn" };
  }
  return { text: `valid until ${formatTime(login.valid_until)}`, tone: "ok" };
}

function LoginRow({ login, now }: { login: LoginStatus; now: number }) {
  const [showCommand, setShowCommand] = useState(false);
  const state = loginState(login, now);
  return (
    <tr data-login={`${login.backend}:${login.path}`}>
      <td>
        <strong>{login.backend}</strong>
        <div className="muted">{login.kind}</div>
      </td>
      <td>
        {login.email ?? <span className="muted">unknown account</span>}
        {login.plan && <div className="muted">plan: {login.plan}</div>}
        <div className="muted">
          <code>{login.path}</code>
        </div>
      </td>
      <td className={{ ok: "", none: "muted", warn: "warn", bad: "err" }[state.tone]}>
        {state.text}
        {login.last_refresh != null && (
          <div className="muted">
            refreshed {formatTime(login.last_refresh)} ({login.refreshes}×)
          </div>
        )}
      </td>
      <td>
        <button className="link" onClick={() => setShowCommand(!showCommand)}>
          How to log in
        </button>
        {showCommand && (
          <div className="login-command">
            Run <code>{login.login_command}</code> in a terminal; llmux picks the new login up by itself.
          </div>
        )}
      </td>
    </tr>
  );
}

/** Every subscription login the running proxy knows, read from its stats. */
export function AccountsSection() {
  const [logins, setLogins] = useState<LoginStatus[] | null>(null);
  // When the logins were read: what "expired" is measured against.
  const [readAt, setReadAt] = useState(0);
  const refresh = () =>
    api
      .stats()
      .then((stats) => {
        setReadAt(Date.now() / 1000);
        setLogins(stats.logins);
      })
      .catch(() => setLogins(null));
  useEffect(() => {
    refresh();
  }, []);
  if (logins == null || logins.length === 0) return null;
  return (
    <section data-testid="accounts">
      <h2>Subscription logins</h2>
      <p className="muted">
        Back-ends that use the login of an official CLI (Codex, Claude Code, Gemini CLI, Qwen Code) instead of an API
        key. llmux refreshes the tokens and writes them back the way the CLI does.
      </p>
      <table>
        <thead>
          <tr>
            <th>back-end</th>
            <th>account</th>
            <th>token</th>
            <th></th>
          </tr>
        </thead>
        <tbody>
          {logins.map((login) => (
            <LoginRow key={`${login.backend}:${login.path}`} login={login} now={readAt} />
          ))}
        </tbody>
      </table>
      <button className="link" onClick={refresh}>
        check again
      </button>
    </section>
  );
}
